//! CPU time by phase of a sync (fetch, decode, transform, write), for benchmarks.
//!
//! Off by default ([`Metrics::account_cpu`] turns it on): each measurement reads the
//! thread's CPU clock twice. Synchronous sections are measured with [`Metrics::cpu_phase`],
//! futures with [`Metrics::metered`] (the CPU time of each `poll`, so time spent waiting is
//! never counted). Phases nest exclusively: a decode inside a fetch counts as decode only.
//! Work a phase hands to other threads (for example a blocking-pool file write) is not in
//! the phase; the benchmark reports it as the remainder of the process's CPU time.

use crate::metrics::Metrics;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A phase of a sync whose CPU time is accounted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPhase {
    /// HTTP requests: building, sending, receiving (transport and client library).
    Fetch = 0,
    /// Turning response bodies into Arrow batches (JSON parsing included).
    Decode = 1,
    /// The engine's per-batch work: blocking, hashing, system columns.
    Transform = 2,
    /// The sink: staging, merging, encoding and storing files, committing.
    Write = 3,
}

impl CpuPhase {
    /// Every phase, in report order.
    pub const ALL: [CpuPhase; 4] = [
        CpuPhase::Fetch,
        CpuPhase::Decode,
        CpuPhase::Transform,
        CpuPhase::Write,
    ];

    /// The phase's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            CpuPhase::Fetch => "fetch",
            CpuPhase::Decode => "decode",
            CpuPhase::Transform => "transform",
            CpuPhase::Write => "write",
        }
    }
}

/// CPU nanoseconds this thread has used (rustix: the safe wrapper of `clock_gettime`).
#[cfg(unix)]
pub(crate) fn thread_cpu_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU nanoseconds this thread has used (unsupported platform: always 0).
#[cfg(not(unix))]
pub(crate) fn thread_cpu_ns() -> u64 {
    0
}

thread_local! {
    /// CPU time measured by phases nested in the one running on this thread.
    static NESTED_NS: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f`, returning its result and its CPU time less that of phases nested in it; tells
/// the enclosing phase (if any) how much to leave out.
fn exclusive<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let outer = NESTED_NS.with(|n| n.replace(0));
    let t0 = thread_cpu_ns();
    let out = f();
    let total = thread_cpu_ns().saturating_sub(t0);
    let inner = NESTED_NS.with(|n| n.replace(outer + total));
    (out, total.saturating_sub(inner))
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
}
