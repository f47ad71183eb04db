//! Helpers for sink authors: what a destination needs besides the [`Sink`](crate::Sink)
//! contract to store tables the way every sluice sink does.
//!
//! * [`merge`]: applies a commit's changes (upserts, deletes, `DeleteMissing` scopes,
//!   history versions) to a table's stored rows. Every sink uses it (or one of its forms
//!   below), so all destinations agree on the semantics of `docs/spec.md`.
//! * [`ChunkedMerge`] / [`Chunk`]: the same merge applied to the stored rows one chunk at a
//!   time, for tables too large to hold at once; [`merge_into_empty`]: the merge into a table
//!   with no stored rows (a first sync's commits).
//! * [`align`]: a stored or staged batch aligned to the table's declared schema (missing
//!   columns NULL, extra or retyped columns an error).
//! * [`select_values`]: the values of a column in a [`Scope`](crate::Scope), to resolve a
//!   `Scope::Via` against a parent table before merging.
//! * [`KeyIndex`]: a map from Arrow row-format keys to values that does not copy the keys.
//! * [`check_secret_name`]: the naming rule of a [`SecretStore`](crate::SecretStore).
//! * The system column names ([`SYNCED`], [`DELETED`], [`START`], [`END`], [`ACTIVE`],
//!   [`SYSTEM_COLUMNS`]) and the end of time of an open history version
//!   ([`END_OF_TIME_US`]).
//!
//! Sources never need this module.

mod key_index;
mod merge;

pub use crate::secret_store::check_secret_name;
pub use crate::spec::{ACTIVE, DELETED, END, END_OF_TIME_US, START, SYNCED, SYSTEM_COLUMNS};
pub use key_index::KeyIndex;
pub use merge::{Chunk, ChunkedMerge, align, merge, merge_into_empty, select_values};
