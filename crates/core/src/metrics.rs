//! Live counters of a running sync, shared by the source, the engine and the progress display.
//!
//! They include the CPU time by [`CpuPhase`] of a sync, for benchmarks. Off by default
//! ([`Metrics::account_cpu`] turns it on): each measurement reads the thread's CPU clock
//! twice. Synchronous sections are measured with [`Metrics::cpu_phase`], futures with
//! [`Metrics::metered`] (the CPU time of each `poll`, so time spent waiting is never
//! counted). Phases nest exclusively: a decode inside a fetch counts as decode only.

use crate::cpu::{CpuPhase, exclusive};
use crate::sink::TableCommitStats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

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
    /// Whether CPU time is accounted by [`CpuPhase`].
    account_cpu: std::sync::atomic::AtomicBool,
    cpu_ns: [AtomicU64; 4],
    /// Commits made so far and what they did per table.
    committed: Mutex<(u64, BTreeMap<String, TableCommitStats>)>,
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
    /// Counts one commit and adds what it did per table.
    pub fn committed(&self, tables: &BTreeMap<String, TableCommitStats>) {
        let mut c = self.0.committed.lock().expect("metrics lock");
        c.0 += 1;
        for (name, stats) in tables {
            c.1.entry(name.clone()).or_default().add(stats);
        }
    }
    /// Commits made so far, and what they did per table: what a failed or stopped run leaves
    /// committed.
    pub fn commits(&self) -> (u64, BTreeMap<String, TableCommitStats>) {
        self.0.committed.lock().expect("metrics lock").clone()
    }
    /// A copy of the per-table counters.
    pub fn tables(&self) -> BTreeMap<String, TableCounters> {
        self.0.tables.lock().expect("metrics lock").clone()
    }
    /// Turns on CPU accounting by phase (see [`Metrics::cpu_phase`]).
    pub fn account_cpu(&self) {
        self.0.account_cpu.store(true, Ordering::Relaxed);
    }
    /// Whether CPU time is accounted by phase.
    pub fn accounts_cpu(&self) -> bool {
        self.0.account_cpu.load(Ordering::Relaxed)
    }
    pub(crate) fn add_cpu_ns(&self, phase: CpuPhase, ns: u64) {
        self.0.cpu_ns[phase as usize].fetch_add(ns, Ordering::Relaxed);
    }
    /// CPU seconds charged to `phase` so far (0 unless [`Metrics::account_cpu`] was called).
    pub fn cpu_seconds(&self, phase: CpuPhase) -> f64 {
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

impl Metrics {
    /// Runs `f`, charging its CPU time to `phase` when accounting is on.
    pub fn cpu_phase<T>(&self, phase: CpuPhase, f: impl FnOnce() -> T) -> T {
        if !self.accounts_cpu() {
            return f();
        }
        let (out, ns) = exclusive(f);
        self.add_cpu_ns(phase, ns);
        out
    }

    /// `fut`, charging the CPU time of its polls to `phase` when accounting is on.
    pub fn metered<F: Future>(&self, phase: CpuPhase, fut: F) -> Metered<F> {
        Metered {
            inner: fut,
            phase,
            metrics: self.accounts_cpu().then(|| self.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls are charged to a [`CpuPhase`] (see [`Metrics::metered`]).
    pub struct Metered<F> {
        #[pin]
        inner: F,
        phase: CpuPhase,
        metrics: Option<Metrics>,
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        match this.metrics {
            None => this.inner.poll(cx),
            Some(m) => {
                let (out, ns) = exclusive(|| this.inner.poll(cx));
                m.add_cpu_ns(*this.phase, ns);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::thread_cpu_ns;

    fn spin(ms: u64) {
        let t0 = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - t0 < ms * 1_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn nested_phases_are_exclusive_and_off_costs_nothing() {
        let off = Metrics::new();
        off.cpu_phase(CpuPhase::Decode, || spin(2));
        assert_eq!(off.cpu_seconds(CpuPhase::Decode), 0.0);

        let m = Metrics::new();
        m.account_cpu();
        m.cpu_phase(CpuPhase::Fetch, || {
            spin(20);
            m.cpu_phase(CpuPhase::Decode, || spin(30));
        });
        let fetch = m.cpu_seconds(CpuPhase::Fetch);
        let decode = m.cpu_seconds(CpuPhase::Decode);
        assert!(decode >= 0.030, "decode {decode}");
        assert!(
            (0.020..0.030).contains(&fetch),
            "fetch {fetch} must exclude decode"
        );
    }

    #[tokio::test]
    async fn metered_futures_count_polls_not_waits() {
        let m = Metrics::new();
        m.account_cpu();
        m.metered(CpuPhase::Write, async {
            spin(10);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        })
        .await;
        let write = m.cpu_seconds(CpuPhase::Write);
        assert!((0.010..0.040).contains(&write), "write {write}");
    }

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
