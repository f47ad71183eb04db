//! Prometheus metrics of the server (OpenMetrics text at `/metrics`), fed from each run's
//! summary.

use crate::model::{Run, RunStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    connection_id: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    connection_id: String,
    table: String,
    change: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    connection_id: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusCodeLabels {
    connection_id: String,
    endpoint: String,
    status: String,
}

type HistogramFamily = Family<ConnectionLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 s to ~4.5 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// The server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct ServerMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    runs: Family<StatusLabels, Counter>,
    rows: Family<RowLabels, Counter>,
    requests: Family<EndpointLabels, Counter>,
    responses: Family<StatusCodeLabels, Counter>,
    throttled: Family<ConnectionLabel, Counter>,
    bytes: Family<ConnectionLabel, Counter>,
    duration: HistogramFamily,
    last_success: Family<ConnectionLabel, Gauge>,
    in_progress: Gauge,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerMetrics")
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<StatusLabels, Counter>::default();
        let rows = Family::<RowLabels, Counter>::default();
        let requests = Family::<EndpointLabels, Counter>::default();
        let responses = Family::<StatusCodeLabels, Counter>::default();
        let throttled = Family::<ConnectionLabel, Counter>::default();
        let bytes = Family::<ConnectionLabel, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let last_success = Family::<ConnectionLabel, Gauge>::default();
        let in_progress = Gauge::default();
        registry.register(
            "sluice_runs",
            "Finished runs by connection and status",
            runs.clone(),
        );
        registry.register(
            "sluice_rows",
            "Rows changed in the destination by connection, table and change (inserted, updated, deleted)",
            rows.clone(),
        );
        registry.register(
            "sluice_requests",
            "HTTP requests to the source by connection and endpoint",
            requests.clone(),
        );
        registry.register(
            "sluice_responses",
            "Answers of the source by connection, endpoint and HTTP status (`error`: no answer came)",
            responses.clone(),
        );
        registry.register(
            "sluice_throttled_requests",
            "Requests the source answered with 429 (waited out and retried)",
            throttled.clone(),
        );
        registry.register(
            "sluice_bytes_written",
            "Bytes of data files written to the destination",
            bytes.clone(),
        );
        registry.register(
            "sluice_run_duration_seconds",
            "Wall time of finished runs",
            duration.clone(),
        );
        registry.register(
            "sluice_last_success_timestamp_seconds",
            "When the last successful run of a connection ended (Unix time)",
            last_success.clone(),
        );
        registry.register(
            "sluice_runs_in_progress",
            "Runs queued or running",
            in_progress.clone(),
        );
        ServerMetrics {
            inner: Arc::new(Inner {
                registry,
                runs,
                rows,
                requests,
                responses,
                throttled,
                bytes,
                duration,
                last_success,
                in_progress,
            }),
        }
    }

    /// A run was queued.
    pub fn run_queued(&self) {
        self.inner.in_progress.inc();
    }

    /// A run ended: counts it and its summary.
    pub fn run_finished(&self, run: &Run) {
        let m = &self.inner;
        m.in_progress.dec();
        let connection_id = run.connection_id.clone();
        let conn = ConnectionLabel {
            connection_id: connection_id.clone(),
        };
        m.runs
            .get_or_create(&StatusLabels {
                connection_id: connection_id.clone(),
                status: run.status.as_str().to_owned(),
            })
            .inc();
        for (table, rows) in &run.tables {
            for (change, n) in [
                ("inserted", rows.inserted),
                ("updated", rows.updated),
                ("deleted", rows.deleted),
            ] {
                m.rows
                    .get_or_create(&RowLabels {
                        connection_id: connection_id.clone(),
                        table: table.clone(),
                        change: change.to_owned(),
                    })
                    .inc_by(n);
            }
        }
        for (endpoint, n) in &run.requests_by_endpoint {
            m.requests
                .get_or_create(&EndpointLabels {
                    connection_id: connection_id.clone(),
                    endpoint: endpoint.clone(),
                })
                .inc_by(*n);
        }
        for (endpoint, by_status) in &run.responses_by_status {
            for (status, n) in by_status {
                m.responses
                    .get_or_create(&StatusCodeLabels {
                        connection_id: connection_id.clone(),
                        endpoint: endpoint.clone(),
                        status: status.clone(),
                    })
                    .inc_by(*n);
            }
        }
        m.throttled.get_or_create(&conn).inc_by(run.throttled);
        m.bytes.get_or_create(&conn).inc_by(run.bytes_written);
        if let (Some(start), Some(end)) = (run.started_at, run.ended_at) {
            m.duration
                .get_or_create(&conn)
                .observe((end - start).max(0) as f64 / 1000.0);
        }
        if run.status == RunStatus::Succeeded {
            m.last_success
                .get_or_create(&conn)
                .set(run.ended_at.unwrap_or_else(sluice_core::now_ms) / 1000);
        }
    }

    /// Sets a connection's last success time from the run history (at start, so the gauge
    /// survives a restart).
    pub fn seed_last_success(&self, connection_id: &str, ended_at_ms: i64) {
        self.inner
            .last_success
            .get_or_create(&ConnectionLabel {
                connection_id: connection_id.to_owned(),
            })
            .set(ended_at_ms / 1000);
    }

    /// The metrics in OpenMetrics text format (which Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}
