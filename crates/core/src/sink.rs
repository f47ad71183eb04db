//! The sink contract. Writing is not committing: a sink stages changes with
//! [`Sink::write`], and [`Sink::commit`] makes them durable first and the state that covers
//! them second, atomically.

use crate::error::Result;
use crate::message::SinkChange;
use crate::secret_store::SecretStore;
use crate::source::parse_config;
use crate::spec::TableSpec;
use crate::state::State;
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What one commit did to one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TableCommitStats {
    /// Keys that did not exist before.
    pub inserted: u64,
    /// Keys whose values (or deleted flag) changed; in history mode, new versions of a key.
    pub updated: u64,
    /// Keys deleted (soft, hard, or closed history versions).
    pub deleted: u64,
    /// Keys upserted with identical values.
    pub unchanged: u64,
    /// Bytes of new data files.
    pub bytes_written: u64,
    /// Bytes of existing data files that were replaced by rewritten ones.
    pub bytes_rewritten: u64,
    /// New data files.
    pub files_written: u64,
}

impl TableCommitStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &TableCommitStats) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.bytes_written += other.bytes_written;
        self.bytes_rewritten += other.bytes_rewritten;
        self.files_written += other.files_written;
    }
}

/// What one commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CommitReport {
    /// Per-table statistics of the tables the commit touched.
    pub tables: BTreeMap<String, TableCommitStats>,
}

/// A destination. Object-safe; plugins build one from their typed config through
/// [`SinkFactory`].
///
/// Protocol: `open` → (`write`* → `commit`)* → `close`; or `abort` at any point, which drops
/// staged changes. A commit must be atomic: after a crash at any instant the destination holds
/// either the previous commit or this one, and the committed state never covers data that is
/// not durable.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Reads the committed state without taking the lease (for `sluice state show`).
    async fn read_state(&self) -> Result<Option<State>>;

    /// Takes the destination's lease (failing clearly if another run holds it), recovers from
    /// an interrupted run, declares the tables (checking type compatibility with what is
    /// stored), and returns the committed state.
    async fn open(&mut self, tables: &[TableSpec]) -> Result<Option<State>>;

    /// A table's declaration changed during the sync (a new column).
    async fn update_table(&mut self, spec: &TableSpec) -> Result<()>;

    /// Stages a change. Nothing is visible to readers before `commit`.
    async fn write(&mut self, change: SinkChange) -> Result<()>;

    /// Makes every staged change durable, then the state, atomically.
    async fn commit(&mut self, state: &State) -> Result<CommitReport>;

    /// Drops staged changes and releases the lease. The last commit stays intact.
    async fn abort(&mut self) -> Result<()>;

    /// Releases the lease.
    async fn close(&mut self) -> Result<()>;

    /// Where sources keep secrets that must outlive a run (a rotated OAuth refresh token), next
    /// to the state of this destination. Available without `open` (for `sluice check`).
    /// Sinks that keep no state keep the default, `None`; a source that needs a store then
    /// refuses to run rather than lose a token.
    fn secret_store(&self) -> Option<Arc<dyn SecretStore>> {
        None
    }

    /// Reads the committed rows of `table` (destination schema). An optional capability used
    /// by the conformance suites and by verification tools; sinks that cannot read back keep
    /// the default, which fails.
    async fn scan(&self, table: &TableSpec) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        Err(crate::Error::internal(format!(
            "this sink cannot read back table `{}`",
            table.name
        )))
    }
}

/// Builds a sink from its typed config (the `[sink]` section, with `dest` set from `--dest`).
pub trait SinkFactory: 'static {
    /// The sink's settings.
    type Config: DeserializeOwned;
    /// Builds the sink (no I/O yet).
    fn build(config: Self::Config) -> Result<Box<dyn Sink>>;
}

/// The erased constructor stored in a [`crate::SinkPlugin`] for a [`SinkFactory`].
pub fn build_sink<F: SinkFactory>(config: &serde_json::Value) -> Result<Box<dyn Sink>> {
    F::build(parse_config::<F::Config>("sink", config)?)
}
