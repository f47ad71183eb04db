//! Live counters of a running sync, shared by the source, the engine and the progress display.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one table during a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TableCounters {
    /// Rows received from the source (upserts).
    pub rows: u64,
    /// Keys deleted or checked for deletion.
    pub deletes: u64,
    /// Requests made for this table's endpoint.
    pub requests: u64,
    /// Expected total rows or requests when knowable (drives the ETA), else 0.
    pub expected: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    tables: Mutex<BTreeMap<String, TableCounters>>,
    phase: Mutex<String>,
    status: Mutex<Option<String>>,
    /// Answers per (endpoint, HTTP status or `error`).
    responses: Mutex<BTreeMap<(String, String), u64>>,
    /// Whether CPU time is accounted by [`crate::cpu::CpuPhase`].
    account_cpu: std::sync::atomic::AtomicBool,
    cpu_ns: [AtomicU64; 4],
}

/// Shared, cheap-to-clone sync counters.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

impl Metrics {
    /// New zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Counts one HTTP request made on behalf of `table`.
    pub fn request(&self, table: &str) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.with_table(table, |t| t.requests += 1);
    }
    /// Counts one answer to a request for `endpoint`: its HTTP status, or `None` when none
    /// came (a timeout, a refused or cut connection).
    pub fn response(&self, endpoint: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        *self
            .0
            .responses
            .lock()
            .expect("metrics lock")
            .entry((endpoint.to_owned(), status))
            .or_default() += 1;
    }
    /// Answers by endpoint, then by HTTP status (`error`: no answer).
    pub fn responses(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((endpoint, status), n) in self.0.responses.lock().expect("metrics lock").iter() {
            out.entry(endpoint.clone())
                .or_default()
                .insert(status.clone(), *n);
        }
        out
    }
    /// Counts one 429 answer.
    pub fn throttled(&self) {
        self.0.throttled.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts one retried request.
    pub fn retry(&self) {
        self.0.retries.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds upserted rows of `table`.
    pub fn rows(&self, table: &str, n: u64) {
        self.with_table(table, |t| t.rows += n);
    }
    /// Adds deleted or delete-checked keys of `table`.
    pub fn deletes(&self, table: &str, n: u64) {
        self.with_table(table, |t| t.deletes += n);
    }
    /// Sets the expected total for `table` (for an ETA).
    pub fn expect(&self, table: &str, n: u64) {
        self.with_table(table, |t| t.expected = n);
    }
    /// Names the current phase (shown by the progress display).
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.0.phase.lock().expect("metrics lock") = phase.into();
    }
    /// The current phase.
    pub fn phase(&self) -> String {
        self.0.phase.lock().expect("metrics lock").clone()
    }
    /// Sets the source's one-line status (e.g. how far back the data is complete), shown by
    /// the progress display and carried into the run's report.
    pub fn set_status(&self, status: impl Into<String>) {
        *self.0.status.lock().expect("metrics lock") = Some(status.into());
    }
    /// The source's status line, if it set one.
    pub fn status(&self) -> Option<String> {
        self.0.status.lock().expect("metrics lock").clone()
    }
    /// Total requests.
    pub fn total_requests(&self) -> u64 {
        self.0.requests.load(Ordering::Relaxed)
    }
    /// Total 429 answers.
    pub fn total_throttled(&self) -> u64 {
        self.0.throttled.load(Ordering::Relaxed)
    }
    /// Total retries.
    pub fn total_retries(&self) -> u64 {
        self.0.retries.load(Ordering::Relaxed)
    }
    /// A copy of the per-table counters.
    pub fn tables(&self) -> BTreeMap<String, TableCounters> {
        self.0.tables.lock().expect("metrics lock").clone()
    }
    /// Turns on CPU accounting by phase (see [`CpuPhase`](crate::CpuPhase)).
    pub fn account_cpu(&self) {
        self.0.account_cpu.store(true, Ordering::Relaxed);
    }
    /// Whether CPU time is accounted by phase.
    pub fn accounts_cpu(&self) -> bool {
        self.0.account_cpu.load(Ordering::Relaxed)
    }
    pub(crate) fn add_cpu_ns(&self, phase: crate::cpu::CpuPhase, ns: u64) {
        self.0.cpu_ns[phase as usize].fetch_add(ns, Ordering::Relaxed);
    }
    /// CPU seconds charged to `phase` so far (0 unless [`Metrics::account_cpu`] was called).
    pub fn cpu_seconds(&self, phase: crate::cpu::CpuPhase) -> f64 {
        self.0.cpu_ns[phase as usize].load(Ordering::Relaxed) as f64 / 1e9
    }
    fn with_table(&self, table: &str, f: impl FnOnce(&mut TableCounters)) {
        let mut tables = self.0.tables.lock().expect("metrics lock");
        if let Some(t) = tables.get_mut(table) {
            f(t);
        } else {
            let mut t = TableCounters::default();
            f(&mut t);
            tables.insert(table.to_owned(), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn responses_are_counted_by_endpoint_and_status() {
        let m = Metrics::new();
        m.response("users", Some(200));
        m.response("users", Some(200));
        m.response("users", Some(429));
        m.response("opportunities", None);
        let r = m.responses();
        assert_eq!(r["users"]["200"], 2);
        assert_eq!(r["users"]["429"], 1);
        assert_eq!(r["opportunities"]["error"], 1);
        assert_eq!(r.len(), 2);
    }
}
