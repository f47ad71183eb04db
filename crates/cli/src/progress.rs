//! Live progress: one bar for the current phase (requests, requests/s, 429s) and one per table
//! (rows, ETA when the source knows a total). Hidden when stderr is not a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_core::Metrics;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Creates the bar container: drawn on stderr only when it is a terminal (indicatif hides
/// itself otherwise) and `enabled`.
pub(crate) fn bars(enabled: bool) -> MultiProgress {
    if enabled {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5))
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    }
}

/// Refreshes the bars from `metrics` until `stop` fires, then clears them.
///
/// Lines: the phase (elapsed, requests, requests/s, 429s, retries); one line per endpoint
/// with its requests and rate; one line per table with its rows (a bar and an ETA when the
/// source knows the expected total).
pub(crate) async fn drive(bars: MultiProgress, metrics: Metrics, stop: CancellationToken) {
    let started = Instant::now();
    let phase = bars.add(ProgressBar::new_spinner());
    phase.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template"),
    );
    let counting = ProgressStyle::with_template("  {prefix:<32} {msg}").expect("valid template");
    let known =
        ProgressStyle::with_template("  {prefix:<32} {bar:24} {msg}").expect("valid template");
    let mut endpoints: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut tables: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let requests = metrics.total_requests();
        let status = metrics
            .status()
            .map(|s| format!(" | {s}"))
            .unwrap_or_default();
        phase.set_message(format!(
            "{}{status} | {requests} requests ({:.1}/s) | {} answered 429 | {} retries",
            metrics.phase(),
            requests as f64 / secs,
            metrics.total_throttled(),
            metrics.total_retries(),
        ));
        phase.tick();
        for (name, counters) in metrics.tables() {
            if counters.requests > 0 {
                let bar = endpoints.entry(name.clone()).or_insert_with(|| {
                    let b = bars.insert_after(&phase, ProgressBar::new(0));
                    b.set_style(counting.clone());
                    b.set_prefix(format!("GET {name}"));
                    b
                });
                bar.set_message(format!(
                    "{:>8} requests {:>7.1}/s",
                    counters.requests,
                    counters.requests as f64 / secs
                ));
            }
            if counters.rows == 0 {
                continue;
            }
            let bar = tables.entry(name.clone()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(0));
                b.set_style(counting.clone());
                b.set_prefix(name.clone());
                b
            });
            if counters.expected > 0 {
                bar.set_style(known.clone());
                bar.set_length(counters.expected.max(counters.rows));
                bar.set_position(counters.rows);
                let rate = counters.rows as f64 / secs;
                let left = counters.expected.saturating_sub(counters.rows) as f64;
                bar.set_message(format!(
                    "{:>9} rows  ETA {:.0}s",
                    counters.rows,
                    left / rate
                ));
            } else {
                bar.set_message(format!("{:>9} rows", counters.rows));
            }
        }
    }
    for bar in endpoints.values().chain(tables.values()) {
        bar.finish_and_clear();
    }
    phase.finish_and_clear();
    let _ = bars.clear();
}
