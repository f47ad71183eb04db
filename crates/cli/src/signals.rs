//! Stop signals: Ctrl-C (SIGINT) and SIGTERM (Kubernetes, Docker, systemd) both stop a sync at
//! its last committed checkpoint and release the destination's lease, so that the next run
//! (or pod) takes over at once. A second signal exits at once: the commit protocol leaves the
//! destination valid at any instant.

use std::sync::atomic::{AtomicI32, Ordering};
use tokio_util::sync::CancellationToken;

/// The exit code for the signal that stopped the process (128 + its number), 0 while none has.
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// Exit code of a run stopped by Ctrl-C.
pub(crate) const SIGINT_EXIT: i32 = 130;
/// Exit code of a run stopped by SIGTERM.
pub(crate) const SIGTERM_EXIT: i32 = 143;

/// The exit code a cancelled run ends with: 128 + the signal's number (130 when no signal was
/// seen, as for Ctrl-C).
pub(crate) fn cancelled_exit_code() -> i32 {
    match STOPPED_BY.load(Ordering::SeqCst) {
        0 => SIGINT_EXIT,
        code => code,
    }
}

/// Cancels `cancel` on the first SIGINT or SIGTERM; exits the process on the second. The
/// handlers are installed before this returns, so a signal right after start is not missed.
pub(crate) fn stop_on_signals(cancel: CancellationToken) {
    let Some(mut signals) = Signals::install() else {
        tracing::warn!("cannot listen for SIGINT/SIGTERM: a stop signal kills the run");
        return;
    };
    tokio::spawn(async move {
        let first = signals.next().await;
        STOPPED_BY.store(first.exit_code, Ordering::SeqCst);
        tracing::warn!(
            signal = first.name,
            "stopping at the last committed checkpoint (send it again to exit at once)"
        );
        cancel.cancel();
        let second = signals.next().await;
        eprintln!(
            "sluice: {} again: exiting at once; the destination keeps its last commit",
            second.name
        );
        std::process::exit(second.exit_code);
    });
}

/// A received stop signal.
struct Signal {
    name: &'static str,
    exit_code: i32,
}

/// The installed signal listeners.
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Signals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal { name: "SIGINT", exit_code: SIGINT_EXIT },
            _ = self.term.recv() => Signal { name: "SIGTERM", exit_code: SIGTERM_EXIT },
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Option<Signals> {
        Some(Signals)
    }

    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal {
            name: "Ctrl-C",
            exit_code: SIGINT_EXIT,
        }
    }
}
