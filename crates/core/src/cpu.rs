//! The phases of a sync whose CPU time is accounted separately (fetch, decode, transform,
//! write), the thread CPU clock, and exclusive measurement of nested sections. The live
//! counters (`metrics.rs`) charge the measured time to their phases.
//!
//! Phases nest exclusively: a decode inside a fetch counts as decode only. Work a phase hands
//! to other threads (for example a blocking-pool file write) is not in the phase; the
//! benchmark reports it as the remainder of the process's CPU time.

use std::cell::Cell;

/// A phase of a sync whose CPU time is accounted separately, when accounting is on
/// ([`Metrics::account_cpu`](crate::Metrics::account_cpu)): sections are charged to a phase
/// with [`Metrics::cpu_phase`](crate::Metrics::cpu_phase) and
/// [`Metrics::metered`](crate::Metrics::metered). Phases nest exclusively: a decode inside a
/// fetch counts as decode only.
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
pub(crate) fn exclusive<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let outer = NESTED_NS.with(|n| n.replace(0));
    let t0 = thread_cpu_ns();
    let out = f();
    let total = thread_cpu_ns().saturating_sub(t0);
    let inner = NESTED_NS.with(|n| n.replace(outer + total));
    (out, total.saturating_sub(inner))
}
