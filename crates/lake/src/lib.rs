//! # sluice-lake
//!
//! The lake engine every table-format sink shares: Fivetran-compatible tables of Parquet
//! files on local disk or S3, through one object_store code path. A format crate
//! (`sluice-sink-parquet`, `sluice-sink-delta`) adds only what its format needs, through
//! [`TableFormat`]: how deleted rows are recorded, the log it publishes after each commit and
//! how long superseded files stay. See `docs/write-a-sink.md`.
//!
//! ## Layout
//!
//! ```text
//! <dest>/<table>/part-b00003-<uuid>.parquet     data files; together they hold the table
//! <dest>/_sluice/manifest/<version:020>.json    manifest versions; the highest is live
//! <dest>/_sluice/lease.json                     the lease of the run writing now
//! ```
//!
//! A table folder holds one row per primary key (history tables: one row per version);
//! soft-deleted rows stay with `_fivetran_deleted = true`. Rows are spread over a fixed number
//! of buckets by xxHash64 of [`TableSpec::bucket_column`](sluice_core::TableSpec::bucket_column),
//! so an incremental commit writes only the buckets it touches. A bucket may hold several
//! files: when no stored row of a bucket is affected by the staged changes (checked by reading
//! only key, scope and flag columns, see `probe`), the new rows are appended as an additional
//! file; otherwise the bucket is rewritten (copy-on-write), or, for a format recording deleted
//! rows in deletion vectors, the affected rows are marked deleted and their new versions
//! written to a new file (`patch`). A bucket that would exceed `max_files_per_bucket` files
//! merges its smallest files with the new rows (size-tiered compaction). A key is live in
//! one file only.
//!
//! ## Commit protocol
//!
//! 1. Each touched bucket gets new files under new unique names (uuid); local puts are
//!    durable when they return (`local_store`). Nothing refers to them yet, so readers of
//!    the manifest and of the previous files see no change.
//! 2. The format computes each changed table's next log version ([`TableFormat::next_log`]),
//!    recorded in the manifest. The lease is renewed conditionally (fencing), then manifest
//!    version `N+1` (the state passed to `commit`, every table's live files) is created with
//!    put-if-not-exists (`PutMode::Create`). This single atomic step is the commit: state
//!    never runs ahead of data, and of two racing runs exactly one creates version `N+1`.
//! 3. The format publishes the log versions ([`TableFormat::publish`]); a run stopped before
//!    that publishes them at its next open. Only then are superseded files deleted (after
//!    the format's [`TableFormat::retention`]) and old manifest versions pruned.
//!
//! `open` first proves that the store honours conditional writes (`store_check`) and
//! refuses it otherwise. A run killed at any instant leaves version `N` valid; the next
//! `open` deletes data files that no manifest lists (orphans of steps 1 and 3) and continues.

mod bucketed;
mod commit;
mod config;
mod deletion_vector;
mod durable;
mod error;
mod file_stats;
mod format;
mod group_writer;
mod hash_runs;
mod layout;
mod lease;
mod local_store;
mod manifest;
mod open;
mod parquet_files;
mod patch;
mod probe;
mod secrets;
mod sink;
mod store_check;
mod table_commit;
mod written_keys;

pub use config::{DEFAULT_DEST, Destination, LAKE_DEFAULTS, LakeConfig, TABLE_FORMAT_GONE};
pub use deletion_vector::{Descriptor, deleted_positions};
pub use error::{LakeError, Result};
pub use file_stats::{ColumnStats, FileStats, MAX_TEXT_BOUND};
pub use format::{DeletedRows, TableFormat};
pub use manifest::{
    DeleteFile, FileEntry, LogVersion, RetiredFile, StoredColumn, TableEntry, TableLog,
};
pub use parquet_files::get_all;
pub use roaring::RoaringTreemap;
pub use sink::LakeSink;
