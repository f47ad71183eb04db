//! Runs syncs: at most one run per connection, at most `max_concurrent_runs` at once, each
//! through `sluice_core::run_sync` exactly as `sluice run` does, recorded in the store and
//! counted in the metrics. Every log line of a run carries its connection and run ids.

use crate::error::{ApiError, ApiResult};
use crate::metrics::ServerMetrics;
use crate::model::{Run, RunStatus, TableRows, Trigger};
use crate::store::Store;
use crate::sync_config::sync_config;
use sluice_core::{Error, ErrorKind, Registry, Result, SyncReport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Starts and tracks runs. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    metrics: ServerMetrics,
    /// Connection id → its queued or running run.
    active: Mutex<HashMap<String, String>>,
    permits: Arc<Semaphore>,
    /// Cancelled on shutdown: every run stops at its last committed checkpoint.
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runner")
    }
}

impl Runner {
    /// A runner allowing `max_concurrent_runs` runs at once.
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        metrics: ServerMetrics,
        max_concurrent_runs: usize,
    ) -> Runner {
        Runner {
            inner: Arc::new(Inner {
                store,
                registry,
                metrics,
                active: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(max_concurrent_runs.max(1))),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queued or running run of a connection.
    pub fn active_run(&self, connection_id: &str) -> Option<String> {
        self.active().get(connection_id).cloned()
    }

    /// Deletes a connection unless it has a run queued or running (409), under the lock
    /// that queueing takes: no run can be queued between the check and the delete.
    pub fn delete_connection(&self, connection_id: &str) -> ApiResult<()> {
        let active = self.active();
        if let Some(run) = active.get(connection_id) {
            return Err(ApiError::conflict(format!(
                "connection `{connection_id}` has run `{run}` queued or running: wait for it to end"
            )));
        }
        self.inner.store.delete_connection(connection_id)?;
        drop(active);
        Ok(())
    }

    /// Queues a run of a connection; 409 when one is already queued or running, 404 for an
    /// unknown connection.
    pub fn start(
        &self,
        connection_id: &str,
        trigger: Trigger,
        resync: Vec<String>,
    ) -> ApiResult<Run> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ApiError::conflict("the server is shutting down"));
        }
        let mut active = self.active();
        if let Some(run_id) = active.get(connection_id) {
            return Err(ApiError::conflict(format!(
                "connection `{connection_id}` already has run `{run_id}` queued or running"
            )));
        }
        if self.inner.store.connection(connection_id)?.is_none() {
            return Err(ApiError::not_found("connection", connection_id));
        }
        let run = Run {
            id: format!("run_{}", uuid::Uuid::new_v4().simple()),
            connection_id: connection_id.to_owned(),
            status: RunStatus::Queued,
            trigger,
            resync,
            queued_at: sluice_core::now_ms(),
            started_at: None,
            ended_at: None,
            tables: Default::default(),
            requests: 0,
            requests_by_endpoint: Default::default(),
            responses_by_status: Default::default(),
            throttled: 0,
            bytes_written: 0,
            error_kind: None,
            error_message: None,
        };
        self.inner.store.put_run(&run)?;
        active.insert(connection_id.to_owned(), run.id.clone());
        drop(active);
        self.inner.metrics.run_queued();
        let span = tracing::info_span!("run", connection_id = %run.connection_id, run_id = %run.id);
        let this = self.clone();
        let queued = run.clone();
        self.inner.tasks.spawn(Box::pin(
            async move { this.execute(queued).await }.instrument(span),
        ));
        Ok(run)
    }

    /// Stops every run at its last committed checkpoint and waits for them to be recorded.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    async fn execute(self, mut run: Run) {
        let inner = &self.inner;
        let permit = tokio::select! {
            p = Arc::clone(&inner.permits).acquire_owned() => p.ok(),
            _ = inner.shutdown.cancelled() => None,
        };
        // The permit is held until the run's end is recorded: a run waiting for it never
        // starts before the one holding it has ended.
        let result = if permit.is_some() {
            run.status = RunStatus::Running;
            run.started_at = Some(sluice_core::now_ms());
            if let Err(e) = inner.store.put_run(&run) {
                tracing::error!(error = %e, "recording the run's start failed");
            }
            tracing::info!(trigger = run.trigger.as_str(), resync = ?run.resync, "sync starting");
            let counters = sluice_core::Metrics::new();
            let result = Box::pin(self.sync(&run, counters.clone())).await;
            // A failed run still reports what it did before failing.
            run.requests = counters.total_requests();
            run.throttled = counters.total_throttled();
            run.responses_by_status = counters.responses();
            run.requests_by_endpoint = counters
                .tables()
                .into_iter()
                .filter(|(_, t)| t.requests > 0)
                .map(|(table, t)| (table, t.requests))
                .collect();
            result
        } else {
            Err(Error::cancelled())
        };
        run.ended_at = Some(sluice_core::now_ms());
        match result {
            Ok(report) => {
                record_report(&mut run, &report);
                run.status = RunStatus::Succeeded;
                tracing::info!(
                    requests = run.requests,
                    throttled = run.throttled,
                    bytes_written = run.bytes_written,
                    "sync succeeded"
                );
            }
            Err(e) => {
                run.status = if e.kind() == ErrorKind::Cancelled {
                    RunStatus::Cancelled
                } else {
                    RunStatus::Failed
                };
                run.error_kind = Some(e.kind().name().to_owned());
                run.error_message = Some(e.to_string());
                tracing::warn!(status = run.status.as_str(), error = %e, "sync did not succeed");
            }
        }
        if let Err(e) = inner.store.put_run(&run) {
            tracing::error!(error = %e, "recording the run's end failed");
        }
        inner.metrics.run_finished(&run);
        drop(permit);
        let mut active = self.active();
        if active.get(&run.connection_id) == Some(&run.id) {
            active.remove(&run.connection_id);
        }
    }

    /// One sync, built like `sluice run` builds it.
    async fn sync(&self, run: &Run, counters: sluice_core::Metrics) -> Result<SyncReport> {
        let inner = &self.inner;
        let c = inner.store.connection(&run.connection_id)?.ok_or_else(|| {
            Error::config(format!("connection `{}` was deleted", run.connection_id))
        })?;
        let config = sync_config(&inner.store, &c)?;
        let source = (inner.registry.source(&c.source)?.build)();
        let mut sink = (inner.registry.sink(&c.sink)?.build)(&config.sink)?;
        let mut options = config.run.sync_options();
        options.cancel = inner.shutdown.child_token();
        options.force_resync = run.resync.iter().cloned().collect();
        options.metrics = counters;
        sluice_core::run_sync(
            &c.source,
            source.as_ref(),
            &config.source,
            sink.as_mut(),
            options,
        )
        .await
    }
}

/// Copies a sync's summary into its run.
fn record_report(run: &mut Run, report: &SyncReport) {
    let mut tables = std::collections::BTreeMap::new();
    for (table, stats) in &report.tables {
        let rows: &mut TableRows = tables.entry(table.clone()).or_default();
        rows.inserted = stats.inserted;
        rows.updated = stats.updated;
        rows.deleted = stats.deleted;
        run.bytes_written += stats.bytes_written;
    }
    for (table, n) in &report.rows_received {
        tables.entry(table.clone()).or_default().received = *n;
    }
    run.tables = tables;
    run.requests = report.requests;
    run.requests_by_endpoint = report.requests_by_endpoint.clone();
    run.responses_by_status = report.responses_by_status.clone();
    run.throttled = report.throttled;
}
