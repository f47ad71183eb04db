//! The sync engine: source → bounded channel → transforms → sink, committing at every
//! checkpoint (data first, then state) and never past a failure.

use crate::cpu::CpuPhase;
use crate::error::{Error, ErrorKind, Result};
use crate::message::{SinkChange, SourceMessage};
use crate::metrics::Metrics;
use crate::sink::{CommitReport, Sink, TableCommitStats};
use crate::source::{DynSource, Emitter, ReadContext};
use crate::state::{Origin, STATE_VERSION, State};
use crate::transform::{Plan, SyncSettings};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How to run one sync.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Per-table settings and the hashing salt.
    pub settings: SyncSettings,
    /// Tables to re-import from scratch this run (besides those flagged in the state).
    pub force_resync: BTreeSet<String>,
    /// Capacity of the source→engine channel, in messages (backpressure bound).
    pub channel_capacity: usize,
    /// Fires on Ctrl-C.
    pub cancel: CancellationToken,
    /// Live counters.
    pub metrics: Metrics,
    /// The sync's start in epoch ms; `None` = now. Fixed values make tests reproducible.
    pub started_at_ms: Option<i64>,
    /// Commit at a source checkpoint only when at least this long has passed since the last
    /// commit (or [`SyncOptions::commit_max_rows`] rows are staged); a
    /// [`SourceMessage::CheckpointNow`] commits at once. Zero commits at every checkpoint. Fewer, larger commits rewrite less; a killed run re-reads at most this much.
    pub commit_interval: Duration,
    /// Commit at the next checkpoint once this many rows are staged, whatever the interval
    /// (bounds the sink's memory).
    pub commit_max_rows: u64,
    /// Accept a source whose [`Origin`] differs from the one recorded in the destination's
    /// state (a moved proxy, a new base URL of the same account) and record the new one.
    /// Off by default: a different origin is refused.
    pub allow_origin_change: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            settings: SyncSettings::default(),
            force_resync: BTreeSet::new(),
            channel_capacity: 64,
            cancel: CancellationToken::new(),
            metrics: Metrics::new(),
            started_at_ms: None,
            commit_interval: Duration::ZERO,
            commit_max_rows: 250_000,
            allow_origin_change: false,
        }
    }
}

impl SyncOptions {
    /// Sets [`SyncOptions::settings`].
    pub fn with_settings(mut self, settings: SyncSettings) -> Self {
        self.settings = settings;
        self
    }
    /// Sets [`SyncOptions::force_resync`].
    pub fn with_force_resync(mut self, tables: BTreeSet<String>) -> Self {
        self.force_resync = tables;
        self
    }
    /// Sets [`SyncOptions::channel_capacity`].
    pub fn with_channel_capacity(mut self, messages: usize) -> Self {
        self.channel_capacity = messages;
        self
    }
    /// Sets [`SyncOptions::cancel`].
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
    /// Sets [`SyncOptions::metrics`].
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
    /// Fixes the sync's start at `ms` (epoch ms) instead of now.
    pub fn with_started_at_ms(mut self, ms: i64) -> Self {
        self.started_at_ms = Some(ms);
        self
    }
    /// Sets [`SyncOptions::commit_interval`].
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }
    /// Sets [`SyncOptions::commit_max_rows`].
    pub fn with_commit_max_rows(mut self, rows: u64) -> Self {
        self.commit_max_rows = rows;
        self
    }
    /// Sets [`SyncOptions::allow_origin_change`].
    pub fn with_allow_origin_change(mut self, allow: bool) -> Self {
        self.allow_origin_change = allow;
        self
    }
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    /// Per-table totals over all commits.
    pub tables: BTreeMap<String, TableCommitStats>,
    /// Number of commits.
    pub commits: u64,
    /// Rows received from the source per table.
    pub rows_received: BTreeMap<String, u64>,
    /// HTTP requests the source made.
    pub requests: u64,
    /// Requests per endpoint (or table) as the source counted them.
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Answers by endpoint, then by HTTP status (`error`: no answer came).
    pub responses_by_status: BTreeMap<String, BTreeMap<String, u64>>,
    /// 429 answers the source got (and waited out).
    pub throttled: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The source's status line at the end of the run ([`Metrics::set_status`]).
    pub status: Option<String>,
}

impl SyncReport {
    fn absorb(&mut self, commit: CommitReport, metrics: &Metrics) {
        metrics.committed(&commit.tables);
        self.commits += 1;
        for (table, stats) in commit.tables {
            self.tables.entry(table).or_default().add(&stats);
        }
    }
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs one sync of `source` (named `source_name`, configured by `config`) into `sink`.
///
/// Guarantees: the sink's state advances only through [`Sink::commit`], which the engine
/// calls at each source checkpoint and at the end; on any error or cancellation the engine
/// calls [`Sink::abort`] and the previously committed state and data stay as they were.
pub async fn run_sync(
    source_name: &str,
    source: &dyn DynSource,
    config: &serde_json::Value,
    sink: &mut dyn Sink,
    options: SyncOptions,
) -> Result<SyncReport> {
    let started = Instant::now();
    source.validate_config(config)?;
    let origin = source.origin(config)?;
    let catalog = source.catalog();
    let mut plan = Plan::new(&catalog, &options.settings)?;
    let started_at_ms = options.started_at_ms.unwrap_or_else(now_ms);
    let synced_at_us = started_at_ms * 1_000;

    // Tables that were stored with history versions keep them when history is switched off.
    if let Some(stored) = sink.read_state().await? {
        plan.retain_history(&stored);
    }
    let previous = sink.open(&plan.dest_specs()).await?;
    let result = drive(
        source_name,
        source,
        config,
        &mut *sink,
        &mut plan,
        previous,
        origin,
        started_at_ms,
        synced_at_us,
        &options,
    )
    .await;
    match result {
        Ok(mut report) => {
            sink.close().await?;
            report.requests = options.metrics.total_requests();
            report.throttled = options.metrics.total_throttled();
            let counters = options.metrics.tables();
            report.rows_received = counters
                .iter()
                .filter(|(_, c)| c.rows > 0)
                .map(|(t, c)| (t.clone(), c.rows))
                .collect();
            report.responses_by_status = options.metrics.responses();
            report.requests_by_endpoint = counters
                .iter()
                .filter(|(_, c)| c.requests > 0)
                .map(|(t, c)| (t.clone(), c.requests))
                .collect();
            report.elapsed = started.elapsed();
            report.status = options.metrics.status();
            Ok(report)
        }
        Err(e) => {
            if let Err(abort) = sink.abort().await {
                tracing::warn!(error = %abort, "releasing the destination after a failure also failed");
            }
            Err(e)
        }
    }
}

/// Checks the source's origin against the one the destination's state records, and records
/// it: a destination filled from one origin (an account's endpoint, or demo data) never
/// receives rows of another unless `allow_change` says so.
fn adopt_origin(mut state: State, origin: Option<&Origin>, allow_change: bool) -> Result<State> {
    let Some(origin) = origin else {
        return Ok(state);
    };
    match &state.origin {
        Some(stored) if stored != origin && !allow_change => {
            return Err(Error::config(format!(
                "the destination holds data read from {stored}, but this run reads from {origin}: use another destination, or pass --allow-origin-change if this is the same account"
            )));
        }
        Some(stored) if stored != origin => {
            tracing::warn!(from = %stored, to = %origin, "the destination's origin changes (--allow-origin-change)");
        }
        Some(_) => {}
        None if state.committed_at_ms > 0 => {
            tracing::warn!(
                origin = %origin,
                "the destination was written by an older sluice that did not record where its data came from: recording this run's origin; if it may hold demo data or another account's, sync into a new destination"
            );
        }
        None => {}
    }
    state.origin = Some(origin.clone());
    Ok(state)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    source_name: &str,
    source: &dyn DynSource,
    config: &serde_json::Value,
    sink: &mut dyn Sink,
    plan: &mut Plan,
    previous: Option<State>,
    origin: Option<Origin>,
    started_at_ms: i64,
    synced_at_us: i64,
    options: &SyncOptions,
) -> Result<SyncReport> {
    let state = match previous {
        Some(s) if s.source != source_name => {
            return Err(Error::config(format!(
                "the destination holds data of source `{}`, not `{source_name}`: use another destination",
                s.source
            )));
        }
        Some(s) => s,
        None => State::new(source_name),
    };
    let state = adopt_origin(state, origin.as_ref(), options.allow_origin_change)?;
    let ctx = ReadContext {
        state: state.clone(),
        tables: plan
            .tables()
            .iter()
            .map(|(n, t)| (n.clone(), t.source.clone()))
            .collect(),
        force_resync: options.force_resync.clone(),
        started_at_ms,
        cancel: options.cancel.clone(),
        metrics: options.metrics.clone(),
        secrets: sink.secret_store(),
    };
    let (tx, rx) = mpsc::channel::<SourceMessage>(options.channel_capacity.max(1));
    let emitter = Emitter::new(tx);
    let cancel = options.cancel.clone();
    let metrics = options.metrics.clone();

    let read = source.read(config, ctx, emitter);
    let consume = async {
        // The consumer owns the receiving end: when it stops (a sink failure), the channel
        // closes and a source blocked on a full channel stops too instead of waiting forever.
        let mut rx = rx;
        let mut report = SyncReport::default();
        let mut last_state = state;
        let mut pending = false;
        let mut staged_rows: u64 = 0;
        let mut last_commit = Instant::now();
        loop {
            let message = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Error::cancelled()),
                m = rx.recv() => m,
            };
            let Some(message) = message else { break };
            let (message, commit_now) = match message {
                SourceMessage::CheckpointNow(state) => (SourceMessage::Checkpoint(state), true),
                other => (other, false),
            };
            match message {
                SourceMessage::Schema(spec) => {
                    if plan.table(&spec.name).is_none() {
                        continue;
                    }
                    let dest = plan.update(spec)?.clone();
                    sink.update_table(&dest).await?;
                }
                SourceMessage::Change(change) => {
                    let table = change.table().to_owned();
                    let rows = change.rows() as u64;
                    let is_upsert = matches!(change, crate::Change::Upsert { .. });
                    let applied = metrics
                        .cpu_phase(CpuPhase::Transform, || plan.apply(change, synced_at_us))?;
                    let Some(change) = applied else {
                        continue;
                    };
                    if is_upsert {
                        metrics.rows(&table, rows);
                    } else {
                        metrics.deletes(&table, rows);
                    }
                    metrics
                        .metered(
                            CpuPhase::Write,
                            sink.write(SinkChange {
                                change,
                                synced_at_us,
                            }),
                        )
                        .await?;
                    staged_rows += rows;
                    pending = true;
                }
                SourceMessage::Checkpoint(mut state) | SourceMessage::CheckpointNow(mut state) => {
                    state.version = STATE_VERSION;
                    state.source = source_name.to_owned();
                    state.origin = origin.clone().or(state.origin);
                    // The newest checkpoint covers everything staged before it; when a commit
                    // is not due yet, the data stays staged and a later commit carries it.
                    last_state = state;
                    pending = true;
                    let due = commit_now
                        || last_commit.elapsed() >= options.commit_interval
                        || staged_rows >= options.commit_max_rows;
                    for (name, t) in plan.tables() {
                        if t.dest.versioned() {
                            last_state.table_mut(name).versioned = true;
                        }
                    }
                    if due {
                        last_state.committed_at_ms = now_ms();
                        report.absorb(
                            metrics
                                .metered(CpuPhase::Write, sink.commit(&last_state))
                                .await?,
                            &metrics,
                        );
                        tracing::debug!(
                            commits = report.commits,
                            staged_rows,
                            "checkpoint committed"
                        );
                        last_commit = Instant::now();
                        staged_rows = 0;
                        pending = false;
                    }
                }
            }
        }
        Ok::<_, Error>((report, last_state, pending))
    };
    let (read_result, consume_result) = tokio::join!(read, consume);
    // A consumer failure is the root cause; the source then only saw a closed channel.
    let (mut report, last_state, pending) = match (consume_result, read_result) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) if e.kind() == ErrorKind::Cancelled && options.cancel.is_cancelled() => {
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(e),
        (Ok(done), Ok(())) => done,
    };
    if options.cancel.is_cancelled() {
        return Err(Error::cancelled());
    }
    if pending {
        // Data or state staged since the last commit (coalesced checkpoints, or a source that
        // ended without a final checkpoint): commit it with the newest state.
        let mut state = last_state;
        for (name, t) in plan.tables() {
            if t.dest.versioned() {
                state.table_mut(name).versioned = true;
            }
        }
        state.committed_at_ms = now_ms();
        report.absorb(
            options
                .metrics
                .metered(CpuPhase::Write, sink.commit(&state))
                .await?,
            &options.metrics,
        );
    }
    Ok(report)
}
