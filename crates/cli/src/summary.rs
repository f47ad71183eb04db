//! The end-of-run summary table.

use sluice_core::SyncReport;
use std::fmt::Write;

/// Renders `report` as an aligned text table, one line per table plus a total.
pub(crate) fn render(report: &SyncReport) -> String {
    let mut names: Vec<&String> = report
        .tables
        .keys()
        .chain(report.rows_received.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "table", "received", "inserted", "updated", "deleted", "written", "rewritten"
    );
    let mut total = sluice_core::TableCommitStats::default();
    let mut received = 0;
    for name in names {
        let s = report.tables.get(name).copied().unwrap_or_default();
        let r = report.rows_received.get(name).copied().unwrap_or(0);
        total.add(&s);
        received += r;
        let _ = writeln!(
            out,
            "{name:<30} {r:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
            s.inserted,
            s.updated,
            s.deleted,
            bytes(s.bytes_written),
            bytes(s.bytes_rewritten)
        );
    }
    let _ = writeln!(
        out,
        "{:<30} {received:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "TOTAL",
        total.inserted,
        total.updated,
        total.deleted,
        bytes(total.bytes_written),
        bytes(total.bytes_rewritten)
    );
    if !report.requests_by_endpoint.is_empty() {
        let _ = writeln!(out, "\n{:<40} {:>10}", "endpoint", "requests");
        for (endpoint, n) in &report.requests_by_endpoint {
            let _ = writeln!(out, "{endpoint:<40} {n:>10}");
        }
    }
    if let Some(status) = &report.status {
        let _ = writeln!(out, "{status}");
    }
    let secs = report.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "{} requests ({:.1}/s), {} answered 429, {} commits, {:.1}s",
        report.requests,
        if secs > 0.0 {
            report.requests as f64 / secs
        } else {
            0.0
        },
        report.throttled,
        report.commits,
        secs
    );
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
