//! `sluice run --summary-json PATH|-`: the run's outcome as one JSON document for
//! orchestrators (Airflow, Dagster, Kubernetes jobs), written whether the run succeeded,
//! failed or was stopped. The fields are documented in docs/deploy.md; `schema` names the
//! version of this layout, and a field is only ever added under the same version.

use serde::Serialize;
use sluice_core::{Error, ErrorKind, Metrics, State, SyncReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// The version of the document's layout.
pub(crate) const SCHEMA: &str = "sluice.run-summary/1";

/// The run's outcome.
#[derive(Debug, Serialize)]
pub(crate) struct RunSummary {
    /// [`SCHEMA`].
    pub(crate) schema: &'static str,
    /// `succeeded`, `failed` or `cancelled`.
    pub(crate) status: &'static str,
    /// The process's exit code.
    pub(crate) exit_code: i32,
    /// Why the run did not succeed.
    pub(crate) error: Option<ErrorSummary>,
    /// Source plugin.
    pub(crate) source: String,
    /// Sink plugin.
    pub(crate) sink: String,
    /// Start and end, RFC 3339 UTC.
    pub(crate) started_at: String,
    /// See `started_at`.
    pub(crate) finished_at: String,
    /// Wall time in seconds.
    pub(crate) duration_secs: f64,
    /// HTTP requests made.
    pub(crate) requests: u64,
    /// Answers 429 waited out.
    pub(crate) throttled: u64,
    /// Commits made by this run.
    pub(crate) commits: u64,
    /// Bytes of data files written by this run's commits.
    pub(crate) bytes_written: u64,
    /// Per table: rows received and what the commits did.
    pub(crate) tables: BTreeMap<String, TableSummary>,
    /// The destination's committed state after the run (also after a failure: what the
    /// next run resumes from).
    pub(crate) committed: Option<CommittedState>,
    /// The source's last status line (Lever: how far back the opportunities are complete,
    /// "opportunities complete back to 2025-09-01 00:00 UTC"), also after a failure.
    pub(crate) source_status: Option<String>,
}

/// An error's kind and one-line message (no secrets: errors never hold any).
#[derive(Debug, Serialize)]
pub(crate) struct ErrorSummary {
    /// `config`, `auth`, `upstream`, `destination`, `internal` or `cancelled`.
    pub(crate) kind: String,
    /// The one-line message.
    pub(crate) message: String,
    /// Whether running again later may succeed.
    pub(crate) retryable: bool,
}

/// One table's figures.
#[derive(Debug, Default, Serialize)]
pub(crate) struct TableSummary {
    /// Rows the source sent.
    pub(crate) rows_received: u64,
    /// Keys that did not exist before.
    pub(crate) inserted: u64,
    /// Keys whose values changed (history mode: new versions).
    pub(crate) updated: u64,
    /// Keys deleted (soft or hard).
    pub(crate) deleted: u64,
    /// Bytes of new data files.
    pub(crate) bytes_written: u64,
}

/// The committed state, as far as an orchestrator needs it.
#[derive(Debug, Serialize)]
pub(crate) struct CommittedState {
    /// When it was committed, RFC 3339 UTC.
    pub(crate) committed_at: String,
    /// Cursor per incremental table (the committed position).
    pub(crate) cursors: BTreeMap<String, serde_json::Value>,
}

/// What the run produced, for [`RunSummary::new`].
pub(crate) struct Outcome<'a> {
    pub(crate) source: &'a str,
    pub(crate) sink: &'a str,
    pub(crate) started: SystemTime,
    pub(crate) result: &'a Result<SyncReport, Error>,
    pub(crate) exit_code: i32,
    pub(crate) metrics: &'a Metrics,
    pub(crate) state: Option<State>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl RunSummary {
    /// The summary of `outcome`.
    pub(crate) fn new(outcome: Outcome<'_>) -> RunSummary {
        let finished = SystemTime::now();
        let mut tables: BTreeMap<String, TableSummary> = BTreeMap::new();
        for (name, c) in outcome.metrics.tables() {
            if c.rows > 0 {
                tables.entry(name).or_default().rows_received = c.rows;
            }
        }
        let (status, error, commits) = match outcome.result {
            Ok(report) => {
                for (name, s) in &report.tables {
                    let t = tables.entry(name.clone()).or_default();
                    t.inserted = s.inserted;
                    t.updated = s.updated;
                    t.deleted = s.deleted;
                    t.bytes_written = s.bytes_written;
                }
                ("succeeded", None, report.commits)
            }
            Err(e) => {
                // What the commits made before the failure did.
                let (commits, committed) = outcome.metrics.commits();
                for (name, s) in &committed {
                    let t = tables.entry(name.clone()).or_default();
                    t.inserted = s.inserted;
                    t.updated = s.updated;
                    t.deleted = s.deleted;
                    t.bytes_written = s.bytes_written;
                }
                let status = if e.kind() == ErrorKind::Cancelled {
                    "cancelled"
                } else {
                    "failed"
                };
                let error = ErrorSummary {
                    kind: e.kind().name().to_owned(),
                    message: e.to_string(),
                    retryable: e.is_retryable(),
                };
                (status, Some(error), commits)
            }
        };
        RunSummary {
            schema: SCHEMA,
            status,
            exit_code: outcome.exit_code,
            error,
            source: outcome.source.to_owned(),
            sink: outcome.sink.to_owned(),
            started_at: rfc3339(outcome.started),
            finished_at: rfc3339(finished),
            duration_secs: finished
                .duration_since(outcome.started)
                .unwrap_or_default()
                .as_secs_f64(),
            requests: outcome.metrics.total_requests(),
            throttled: outcome.metrics.total_throttled(),
            commits,
            bytes_written: tables.values().map(|t| t.bytes_written).sum(),
            tables,
            committed: outcome.state.map(committed),
            source_status: outcome.metrics.status(),
        }
    }

    /// Writes the summary to `path` (`-`: standard output). A file is replaced atomically.
    pub(crate) fn write(&self, path: &Path) -> Result<(), Error> {
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::internal("serializing the run summary").with_source(e))?;
        json.push(b'\n');
        if path == Path::new("-") {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            return out
                .write_all(&json)
                .and_then(|()| out.flush())
                .map_err(|e| Error::config(format!("--summary-json -: writing to stdout: {e}")));
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, &json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::config(format!("--summary-json {}: {e}", path.display()))
            })
    }
}

fn committed(state: State) -> CommittedState {
    let at = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(state.committed_at_ms.max(0) as u64);
    CommittedState {
        committed_at: rfc3339(at),
        cursors: state
            .tables
            .iter()
            .filter_map(|(name, t)| {
                let c = t.cursor.as_ref()?;
                Some((name.clone(), serde_json::to_value(c).ok()?))
            })
            .collect(),
    }
}
