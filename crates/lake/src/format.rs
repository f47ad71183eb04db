//! [`TableFormat`]: what a table format adds to the lake engine.
//!
//! The engine ([`LakeSink`](crate::LakeSink)) owns everything every format shares: buckets,
//! Parquet files, the manifest (the single commit point), the lease, compaction and recovery.
//! A format decides three things, and nothing else:
//!
//! * how a commit records stored rows that it replaces or deletes ([`DeletedRows`]);
//! * what it publishes after a manifest commit: a per-table log version computed before the
//!   manifest is written ([`TableFormat::next_log`], stored in the manifest as [`TableLog`])
//!   and published after it ([`TableFormat::publish`]), so that no reader of the format is
//!   ever ahead of the state;
//! * what it cleans up: how long files that a commit superseded stay for the format's readers
//!   ([`TableFormat::retention`]).

use crate::error::Result;
use crate::manifest::{TableEntry, TableLog};
use object_store::ObjectStore;
use object_store::path::Path;
use roaring::RoaringTreemap;
use sluice_core::async_trait;
use std::time::Duration;

/// How a commit records stored rows that its changes replace or delete.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DeletedRows {
    /// The files holding them are rewritten (copy-on-write): the live files hold exactly the
    /// live rows.
    Rewrite,
    /// Their positions go into deletion vectors ([`FileEntry::dv`](crate::FileEntry::dv)) and their new versions
    /// into new files; a file whose deleted share reaches `max_deleted_share` is rewritten
    /// without them at the next commit that touches it.
    Vectors {
        /// See above; above 0 and at most 1.
        max_deleted_share: f64,
    },
}

/// What a table format adds to the lake engine; see the module docs. Every method but
/// [`TableFormat::name`] has a default: a format with no log of its own (plain Parquet)
/// implements only the name.
#[async_trait]
pub trait TableFormat: std::fmt::Debug + Send + Sync + 'static {
    /// The sink's name (`parquet`, `delta`): one format, one sink.
    fn name(&self) -> &'static str;

    /// How a commit records stored rows that it replaces or deletes (default: rewrite).
    fn deleted_rows(&self) -> DeletedRows {
        DeletedRows::Rewrite
    }

    /// Whether this format keeps a per-table log ([`TableLog`]). A destination whose tables
    /// have a log or deletion vectors is refused by a format that keeps none (its readers
    /// would read deleted rows).
    fn keeps_log(&self) -> bool {
        false
    }

    /// The log of `table` after a manifest commit turned `old` (the previous entry, `None`
    /// for a new table) into `new` (whose `log` is still the previous one): `new.log` when
    /// nothing changed, else the next version with its text. `key` is the table's stored
    /// key (primary key, plus `_fivetran_start` in history mode; empty when the run did not
    /// declare the table). Called before the manifest is written. The previous version's
    /// text is empty once it was published (see [`TableLog::commit`]): what the next version
    /// needs of it must be in the other fields.
    fn next_log(
        &self,
        table: &str,
        key: &[String],
        old: Option<&TableEntry>,
        new: &TableEntry,
        now_ms: i64,
    ) -> Option<TableLog> {
        let _ = (table, key, old, new, now_ms);
        None
    }

    /// Whether data files carry a copy of their Arrow schema in the Parquet footer
    /// (`ARROW:schema`, as Arrow's own writer adds it; default: yes). Plain Parquet readers
    /// use it to restore Arrow types; a format whose readers take the schema from the
    /// format's own log can leave it out (it is 1–6 KB per file, half the footer of a small
    /// file).
    fn embeds_arrow_schema(&self) -> bool {
        true
    }

    /// Whether the engine records each new data file's column statistics
    /// ([`FileEntry::stats`](crate::FileEntry::stats)) for [`TableFormat::next_log`] to publish
    /// (default: no).
    fn records_file_stats(&self) -> bool {
        false
    }

    /// The extension of the format's own file of deleted rows (see
    /// [`TableFormat::encode_deleted_rows`]; Iceberg's position-delete files: `parquet`);
    /// default: none, the deletion vectors are the only record. The file is named like the
    /// vector file of the same commit with this extension in place of `bin`; the engine
    /// retires and removes it with that vector file, and removes it as an orphan when no
    /// manifest has it.
    fn dv_companion_extension(&self) -> Option<&'static str> {
        None
    }

    /// The bytes of the format's file holding `deleted`: for each data file of `table` that
    /// a commit gave a new deletion vector, its name and every deleted row position (the
    /// vector's rows). Called, before the manifest commit, only for formats with a
    /// [`TableFormat::dv_companion_extension`].
    fn encode_deleted_rows(
        &self,
        table: &str,
        deleted: &[(String, RoaringTreemap)],
    ) -> Result<Vec<u8>> {
        let _ = (table, deleted);
        Err(crate::LakeError::Config(format!(
            "the {} format keeps no file of deleted rows",
            self.name()
        )))
    }

    /// Whether `log`'s version is published in the table folder `dir` (at `open`, for each
    /// table with a log).
    async fn is_published(
        &self,
        store: &dyn ObjectStore,
        dir: &Path,
        log: &TableLog,
    ) -> Result<bool> {
        let _ = (store, dir, log);
        Ok(true)
    }

    /// Publishes `entry.log`'s version in the table folder `dir` after the manifest that
    /// records it was committed; a version already there with the same text is success.
    async fn publish(&self, store: &dyn ObjectStore, dir: &Path, entry: &TableEntry) -> Result<()> {
        let _ = (store, dir, entry);
        Ok(())
    }

    /// How long a file superseded by a commit stays in the table folder after that commit,
    /// for readers of the format holding an older snapshot (default: zero, deleted as soon as
    /// the commit, and its log version, is published).
    fn retention(&self) -> Duration {
        Duration::ZERO
    }
}
