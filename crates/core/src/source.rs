//! The source contract: a typed trait for plugin authors and its object-safe twin for the
//! registry.

use crate::error::{Error, Result};
use crate::message::{Change, Scope, SourceMessage};
use crate::metrics::Metrics;
use crate::secret_store::SecretStore;
use crate::spec::TableSpec;
use crate::state::{Origin, State};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Everything a source needs to know to read one sync.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadContext {
    /// The committed state of the previous sync (empty on the first).
    pub state: State,
    /// The tables to produce, with their effective declarations (history mode applied).
    /// Tables not in here are blocked: never request them.
    pub tables: BTreeMap<String, TableSpec>,
    /// Tables whose re-import is forced this sync (`sluice resync`), besides those whose
    /// state says `resync_requested`.
    pub force_resync: BTreeSet<String>,
    /// The sync's start, epoch ms (the `_fivetran_synced` value of this sync).
    pub started_at_ms: i64,
    /// Cancelled on Ctrl-C: stop requesting and return [`Error::cancelled`].
    pub cancel: CancellationToken,
    /// Counters for the progress display and summary.
    pub metrics: Metrics,
    /// Where secrets that must outlive the run are saved (see [`SecretStore`]); the
    /// sink's store, `None` when the sink keeps none.
    pub secrets: Option<Arc<dyn SecretStore>>,
}

/// Everything a source needs for [`Source::check`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CheckContext {
    /// Where secrets that must outlive the check are saved: the same store a run of the same
    /// destination uses, so that a token rotated by `check` is the one `run` starts from.
    pub secrets: Option<Arc<dyn SecretStore>>,
}

impl CheckContext {
    /// A context saving secrets to `secrets`.
    pub fn new(secrets: Option<Arc<dyn SecretStore>>) -> Self {
        CheckContext { secrets }
    }
}

impl ReadContext {
    /// A context reading `tables` from `state`, for a sync started at `started_at_ms`: no
    /// forced re-import, a fresh cancellation token and counters, no secret store.
    pub fn new(state: State, tables: BTreeMap<String, TableSpec>, started_at_ms: i64) -> Self {
        ReadContext {
            state,
            tables,
            force_resync: BTreeSet::new(),
            started_at_ms,
            cancel: CancellationToken::new(),
            metrics: Metrics::new(),
            secrets: None,
        }
    }
    /// Sets [`ReadContext::force_resync`].
    pub fn with_force_resync(mut self, tables: BTreeSet<String>) -> Self {
        self.force_resync = tables;
        self
    }
    /// Sets [`ReadContext::cancel`].
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
    /// Sets [`ReadContext::metrics`].
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
    /// Sets the store secrets are saved to ([`ReadContext::secrets`]).
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.secrets = Some(secrets);
        self
    }
    /// Whether `table` is enabled (not blocked).
    pub fn is_enabled(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }
    /// Whether any of `tables` is enabled (to decide whether an endpoint is needed at all).
    pub fn any_enabled<'a>(&self, tables: impl IntoIterator<Item = &'a str>) -> bool {
        tables.into_iter().any(|t| self.is_enabled(t))
    }
    /// Whether `table` must be re-imported from scratch this sync.
    pub fn resync_requested(&self, table: &str) -> bool {
        self.force_resync.contains(table) || self.state.table(table).resync_requested
    }
}

/// The sending half of the bounded channel from a source to the engine. Sends wait when the
/// engine is behind (backpressure) and fail once the engine has stopped.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<SourceMessage>,
}

impl Emitter {
    /// Wraps a channel sender.
    pub(crate) fn new(tx: mpsc::Sender<SourceMessage>) -> Self {
        Emitter { tx }
    }

    /// Sends one message.
    pub async fn send(&self, message: SourceMessage) -> Result<()> {
        self.tx
            .send(message)
            .await
            .map_err(|_| Error::cancelled().context("the sync engine stopped"))
    }
    /// Upserts rows into `table`. Empty batches are skipped.
    pub async fn upsert(&self, table: &str, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.send(SourceMessage::Change(Change::Upsert {
            table: table.to_owned(),
            batch,
        }))
        .await
    }
    /// Deletes rows of `table` by primary key.
    pub async fn delete(&self, table: &str, keys: RecordBatch) -> Result<()> {
        if keys.num_rows() == 0 {
            return Ok(());
        }
        self.send(SourceMessage::Change(Change::Delete {
            table: table.to_owned(),
            keys,
        }))
        .await
    }
    /// Deletes the rows of `table` in `scope` whose key is not in `keep`.
    pub async fn delete_missing(&self, table: &str, scope: Scope, keep: RecordBatch) -> Result<()> {
        self.send(SourceMessage::Change(Change::DeleteMissing {
            table: table.to_owned(),
            scope,
            keep,
        }))
        .await
    }
    /// Announces a changed table declaration.
    pub async fn schema(&self, spec: TableSpec) -> Result<()> {
        self.send(SourceMessage::Schema(spec)).await
    }
    /// Everything sent so far may be committed with `state`.
    pub async fn checkpoint(&self, state: State) -> Result<()> {
        self.send(SourceMessage::Checkpoint(state)).await
    }
    /// A checkpoint the engine commits at once, whatever its commit interval: everything sent
    /// so far is durable with `state` before the source goes on. For points a user waits for
    /// (a window of recent data); plain [`Emitter::checkpoint`] elsewhere.
    pub async fn checkpoint_now(&self, state: State) -> Result<()> {
        self.send(SourceMessage::CheckpointNow(state)).await
    }
}

/// A source plugin, typed. Implement this; the registry holds it as a [`DynSource`].
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// The source's settings (the `[source]` section of `sluice.toml`).
    type Config: DeserializeOwned + Send + Sync;

    /// Every table this source can produce, independent of configuration. Columns discovered
    /// at run time (custom fields) are announced with [`Emitter::schema`].
    fn catalog(&self) -> Vec<TableSpec>;

    /// Where this configuration reads from (its endpoint, and whether it is demo data),
    /// recorded in the destination's state so that a run reading from somewhere else is
    /// refused instead of mixing two sources' rows. Derived from the configuration alone (no
    /// request). The default, `None`, records nothing.
    fn origin(&self, config: &Self::Config) -> Result<Option<Origin>> {
        let _ = config;
        Ok(None)
    }

    /// Verifies credentials and reachability with as few requests as possible; returns a
    /// one-line description of what was reached. Secrets rotated by the check (OAuth refresh
    /// tokens) are saved to `ctx.secrets`.
    async fn check(&self, config: &Self::Config, ctx: CheckContext) -> Result<String>;

    /// Reads one sync: sends changes and checkpoints to `out`. Must send a final checkpoint
    /// when done. Must stop promptly with [`Error::cancelled`] when `ctx.cancel` fires.
    async fn read(&self, config: &Self::Config, ctx: ReadContext, out: Emitter) -> Result<()>;
}

/// The object-safe twin of [`Source`], taking its configuration as JSON.
#[async_trait]
pub trait DynSource: Send + Sync {
    /// See [`Source::catalog`].
    fn catalog(&self) -> Vec<TableSpec>;
    /// Checks that `config` deserializes into the source's config type.
    fn validate_config(&self, config: &serde_json::Value) -> Result<()>;
    /// See [`Source::origin`].
    fn origin(&self, config: &serde_json::Value) -> Result<Option<Origin>>;
    /// See [`Source::check`].
    async fn check(&self, config: &serde_json::Value, ctx: CheckContext) -> Result<String>;
    /// See [`Source::read`].
    async fn read(&self, config: &serde_json::Value, ctx: ReadContext, out: Emitter) -> Result<()>;
}

/// Deserializes a plugin's config section, naming the offending key in a config error.
pub(crate) fn parse_config<T: DeserializeOwned>(
    section: &str,
    config: &serde_json::Value,
) -> Result<T> {
    let value = if config.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        config.clone()
    };
    serde_json::from_value(value).map_err(|e| Error::config(format!("[{section}]: {e}")))
}

#[async_trait]
impl<S: Source> DynSource for S {
    fn catalog(&self) -> Vec<TableSpec> {
        Source::catalog(self)
    }
    fn validate_config(&self, config: &serde_json::Value) -> Result<()> {
        parse_config::<S::Config>("source", config).map(|_| ())
    }
    fn origin(&self, config: &serde_json::Value) -> Result<Option<Origin>> {
        let config = parse_config::<S::Config>("source", config)?;
        Source::origin(self, &config)
    }
    async fn check(&self, config: &serde_json::Value, ctx: CheckContext) -> Result<String> {
        let config = parse_config::<S::Config>("source", config)?;
        Source::check(self, &config, ctx).await
    }
    async fn read(&self, config: &serde_json::Value, ctx: ReadContext, out: Emitter) -> Result<()> {
        let config = parse_config::<S::Config>("source", config)?;
        Source::read(self, &config, ctx, out).await
    }
}
