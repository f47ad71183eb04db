//! # sluice-sink-parquet
//!
//! The `parquet` sink: a Fivetran-compatible lake of Parquet files on local disk or S3, through
//! one object_store code path.
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
//! file; otherwise the bucket is rewritten (copy-on-write). A bucket that would exceed
//! `max_files_per_bucket` files merges its smallest files with the new rows (size-tiered
//! compaction). A key is never in two files.
//!
//! ## Commit protocol
//!
//! 1. Each touched bucket gets an appended file of its new rows, or is read, merged with
//!    [`sluice_core::merge::merge`] and rewritten; new files get new unique names (uuid);
//!    local puts are durable when they return (`local_store`). Nothing refers to them yet,
//!    so readers of the manifest and of the previous files see no change.
//! 2. The lease is renewed conditionally (fencing: failing if another run took it; a
//!    background task also renews it every third of its TTL), then manifest version `N+1`
//!    (holding the state passed to `commit` and every table's live files with bucket, size and
//!    row count) is created with put-if-not-exists (`PutMode::Create`: a hard link on local
//!    disk, `If-None-Match: *` on S3). This single atomic step is the commit: state never
//!    runs ahead of data, and of two racing runs exactly one creates version `N+1`.
//! 3. Only then are the superseded files and old manifest versions deleted.
//!
//! `open` first proves that the store honours conditional writes (`store_check`) and
//! refuses it otherwise. A run killed at any instant leaves version `N` valid; the next `open` deletes data files
//! that no manifest lists (orphans of steps 1 and 3) and continues. See `docs/parquet-sink.md`.

mod config;
mod delta_log;
mod durable;
mod dv;
mod error;
mod hash_runs;
mod io;
mod layout;
mod lease;
mod local_store;
mod manifest;
mod partition;
mod probe;
mod secrets;
mod session_index;
mod sink;
mod store_check;

pub use config::{DEFAULT_DEST, Destination, ParquetSinkConfig, TableFormat};
pub use error::ParquetSinkError;
pub use sink::{DeltaSinkFactory, ParquetSink, ParquetSinkFactory};

sluice_core::inventory::submit! {
    sluice_core::SinkPlugin::new(
        "parquet",
        "Parquet files on local disk or S3 (object_store URL)",
        sluice_core::build_sink::<ParquetSinkFactory>,
    )
}

sluice_core::inventory::submit! {
    sluice_core::SinkPlugin::new(
        "delta",
        "Delta Lake tables with deletion vectors on local disk or S3 (the parquet sink, table_format = \"delta\")",
        sluice_core::build_sink::<DeltaSinkFactory>,
    )
}
