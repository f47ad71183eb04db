//! `sluice-bench` (run through `cargo xtask bench`): end-to-end benchmarks of the Lever source
//! and the Parquet sink against the Lever emulator, printed as one table and written as JSON
//! under `target/bench/`.
//!
//! The emulator runs in a child process (this binary in `emulator` mode) so that the CPU time
//! and peak memory measured in this process are sluice's alone.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

mod freshness;

/// mimalloc instead of the system allocator: syncs allocate and free many small objects
/// (JSON DOM nodes, Arrow builders, key indexes) on several threads, where glibc malloc spent
/// ~20 % of the process's CPU in the throughput benchmark (see docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "sluice-bench", about = "sluice end-to-end benchmarks")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Which scenarios to run.
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// Opportunities in the rate-limited scenario.
    #[arg(long, default_value_t = 2_000)]
    rate_opportunities: usize,
    /// Emulator latency per request in the rate-limited scenario, ms.
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
    /// Requests per second (steady) and burst of the rate-limited scenario.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Burst of the rate-limited scenario.
    #[arg(long, default_value_t = 20)]
    burst: u32,
    /// Opportunities in the throughput and incremental scenarios.
    #[arg(long, default_value_t = 100_000)]
    throughput_opportunities: usize,
    /// Share of opportunities changed before the incremental sync.
    #[arg(long, default_value_t = 0.01)]
    change_fraction: f64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Extra `[sink]` settings as a JSON object, merged over `{"dest": …}` (to compare
    /// settings, e.g. `{"max_files_per_bucket": 16}`).
    #[arg(long, default_value = "{}")]
    sink_config: String,
    /// Extra `[source]` settings as a JSON object, merged over the emulator's (to compare,
    /// for example, `{"priority_first": false}`).
    #[arg(long, default_value = "{}")]
    source_config: String,
    /// Staged rows that force a commit (the CLI's default; to compare commit sizes).
    #[arg(long, default_value_t = 250_000)]
    commit_max_rows: u64,
    /// Keep the lakes the scenarios write, under `<out>/lakes/`, to inspect their files (the
    /// path of each is printed); without it they are removed when their scenario ends.
    #[arg(long)]
    keep_lakes: bool,
    /// Opportunities in the time-to-fresh-data scenario (rate-limited like scenario 1).
    #[arg(long, default_value_t = 300)]
    fresh_opportunities: usize,
    /// Share of opportunities updated over the last year in that scenario (more of them
    /// recently: see `Emulator::spread_recent_activity`).
    #[arg(long, default_value_t = 0.3)]
    recent_share: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    All,
    Rate,
    Throughput,
    /// The throughput and incremental syncs again with the `delta` sink (deletion vectors).
    Delta,
    /// The same with the `iceberg` sink (not part of `all`).
    Iceberg,
    /// Time to fresh data: a rate-limited first sync with and without priority-first.
    Freshness,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Internal: serve the emulator and print `LISTENING <base_url> <api_key>`.
    Emulator {
        #[arg(long)]
        opportunities: usize,
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        burst: u32,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Share of opportunities updated over the last year before serving.
        #[arg(long, default_value_t = 0.0)]
        recent_share: f64,
    },
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command name: state is index 0; utime is 11, stime is 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of this process in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

struct EmulatorProcess {
    child: tokio::process::Child,
    base_url: String,
    api_key: String,
}

impl EmulatorProcess {
    async fn spawn(opportunities: usize, rate: f64, burst: u32, latency_ms: u64) -> Result<Self> {
        Self::spawn_with_activity(opportunities, rate, burst, latency_ms, 0.0).await
    }

    async fn spawn_with_activity(
        opportunities: usize,
        rate: f64,
        burst: u32,
        latency_ms: u64,
        recent_share: f64,
    ) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .args(["emulator", "--opportunities", &opportunities.to_string()])
            .args(["--rate", &rate.to_string(), "--burst", &burst.to_string()])
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(["--recent-share", &recent_share.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the emulator process")?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(600), lines.next_line())
            .await
            .context("emulator start timed out")??
            .context("emulator exited before listening")?;
        let mut parts = line.split_whitespace();
        if parts.next() != Some("LISTENING") {
            bail!("unexpected emulator output: {line}");
        }
        let base_url = parts.next().context("no base url")?.to_owned();
        let api_key = parts.next().context("no api key")?.to_owned();
        Ok(EmulatorProcess {
            child,
            base_url,
            api_key,
        })
    }

    fn admin(&self, path: &str) -> String {
        format!("{}/admin{path}", self.base_url.trim_end_matches("/v1"))
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[derive(Debug, Serialize)]
struct SyncFigures {
    requests: u64,
    throttled: u64,
    rows: u64,
    wall_s: f64,
    cpu_s: f64,
    bytes_written: u64,
    bytes_rewritten: u64,
    /// CPU seconds by phase, measured on the threads doing the work (see `sluice_core::CpuPhase`).
    cpu_fetch_s: f64,
    cpu_decode_s: f64,
    cpu_transform_s: f64,
    cpu_write_s: f64,
    /// Process CPU time in no phase: the async runtime, HTTP connection tasks, blocking-pool
    /// file I/O, allocator returns.
    cpu_other_s: f64,
    /// Per table: rows received, data files and bytes written (sums over the commits).
    tables: std::collections::BTreeMap<String, TableFigures>,
    /// Bytes of the destination's files that the sync left new or changed: data files and
    /// deletion vectors as `bytes_written`, plus the format's logs and checkpoints and the
    /// manifests (files written and removed within the sync are not counted).
    dest_bytes_new: u64,
    /// Bytes of the whole destination after the sync.
    dest_bytes_total: u64,
}

/// Size and modification time of each file under `dir`.
fn dest_files(
    dir: &std::path::Path,
) -> std::collections::HashMap<std::path::PathBuf, (u64, std::time::SystemTime)> {
    let mut out = std::collections::HashMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else if let Ok(modified) = meta.modified() {
                out.insert(e.path(), (meta.len(), modified));
            }
        }
    }
    out
}

/// One table's share of a sync.
#[derive(Debug, Serialize)]
struct TableFigures {
    rows: u64,
    files_written: u64,
    bytes_written: u64,
}

impl SyncFigures {
    /// CPU seconds of decode + transform + write (the throughput target's denominator).
    fn pipeline_cpu_s(&self) -> f64 {
        self.cpu_decode_s + self.cpu_transform_s + self.cpu_write_s
    }
}

/// `--source-config`, merged into every sync's `[source]`.
static SOURCE_EXTRA: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>> =
    std::sync::OnceLock::new();

async fn sync(
    emu: &EmulatorProcess,
    dest: &str,
    sink_extra: &serde_json::Map<String, serde_json::Value>,
    limiter: (u32, u32),
    commit_max_rows: u64,
) -> Result<SyncFigures> {
    let registry = sluice_plugins::registry()?;
    let source = (registry.source("lever")?.build)();
    let mut sink_config = sink_extra.clone();
    sink_config.insert("dest".into(), dest.into());
    // `"sink"` names the sink (default `parquet`); the other keys are its `[sink]` section.
    let name = match sink_config.remove("sink") {
        Some(serde_json::Value::String(name)) => name,
        _ => "parquet".to_owned(),
    };
    let mut sink = (registry.sink(&name)?.build)(&serde_json::Value::Object(sink_config))?;
    let mut config = json!({
        "base_url": emu.base_url,
        "api_key": emu.api_key,
        "rate_limit_per_second": limiter.0,
        "rate_limit_burst": limiter.1,
    });
    if let Some(extra) = SOURCE_EXTRA.get() {
        for (k, v) in extra {
            config[k] = v.clone();
        }
    }
    let before = dest_files(std::path::Path::new(dest));
    let metrics = sluice_core::Metrics::new();
    metrics.account_cpu();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let report = sluice_core::run_sync(
        "lever",
        source.as_ref(),
        &config,
        sink.as_mut(),
        // The CLI's defaults: commit every 30 s or 250,000 staged rows.
        sluice_core::SyncOptions::default()
            .with_commit_interval(Duration::from_secs(30))
            .with_commit_max_rows(commit_max_rows)
            .with_metrics(metrics.clone()),
    )
    .await?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    let after = dest_files(std::path::Path::new(dest));
    let dest_bytes_total = after.values().map(|(len, _)| len).sum();
    let dest_bytes_new = after
        .iter()
        .filter(|(path, now)| before.get(*path) != Some(*now))
        .map(|(_, (len, _))| len)
        .sum();
    let mut written = 0;
    let mut rewritten = 0;
    let mut tables = std::collections::BTreeMap::new();
    for (name, s) in &report.tables {
        written += s.bytes_written;
        rewritten += s.bytes_rewritten;
        let figures = TableFigures {
            rows: report.rows_received.get(name).copied().unwrap_or(0),
            files_written: s.files_written,
            bytes_written: s.bytes_written,
        };
        tables.insert(name.clone(), figures);
    }
    use sluice_core::CpuPhase;
    let phase = |p: CpuPhase| metrics.cpu_seconds(p);
    let in_phases: f64 = CpuPhase::ALL.into_iter().map(phase).sum();
    Ok(SyncFigures {
        cpu_fetch_s: phase(CpuPhase::Fetch),
        cpu_decode_s: phase(CpuPhase::Decode),
        cpu_transform_s: phase(CpuPhase::Transform),
        cpu_write_s: phase(CpuPhase::Write),
        cpu_other_s: (cpu_s - in_phases).max(0.0),
        requests: report.requests,
        throttled: report.throttled,
        rows: report.rows_received.values().sum(),
        wall_s,
        cpu_s,
        bytes_written: written,
        bytes_rewritten: rewritten,
        tables,
        dest_bytes_new,
        dest_bytes_total,
    })
}

async fn serve_emulator(
    opportunities: usize,
    rate: f64,
    burst: u32,
    latency_ms: u64,
    recent_share: f64,
) -> Result<()> {
    use sluice_lever_emulator::{Emulator, EmulatorConfig, RateLimit};
    let emu = Emulator::new(EmulatorConfig {
        opportunities,
        rate_limit: (rate > 0.0).then_some(RateLimit {
            per_second: rate,
            burst,
        }),
        latency: Duration::from_millis(latency_ms),
        ..EmulatorConfig::default()
    });
    emu.spread_recent_activity(recent_share, 365);
    let handle = emu.start().await?;
    println!("LISTENING {} {}", handle.base_url(), emu.api_key());
    // Serve until the parent kills us.
    std::future::pending::<()>().await;
    drop(handle);
    Ok(())
}

fn row(out: &mut String, name: &str, value: String, target: &str) {
    out.push_str(&format!("| {name:<48} | {value:>18} | {target:<16} |\n"));
}

/// Changes `fraction` of the emulator's opportunities (updates, new ones, deletions; seeded)
/// and returns how many changed.
async fn mutate(emu: &EmulatorProcess, fraction: f64) -> Result<usize> {
    let summary: serde_json::Value = reqwest::Client::new()
        .post(emu.admin("/mutate"))
        .json(&json!({"fraction": fraction, "seed": 7}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(["updated", "created", "deleted"]
        .iter()
        .map(|k| summary[k].as_array().map_or(0, Vec::len))
        .sum::<usize>())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Mode::Emulator {
        opportunities,
        rate,
        burst,
        latency_ms,
        recent_share,
    }) = args.mode
    {
        return serve_emulator(opportunities, rate, burst, latency_ms, recent_share).await;
    }
    let sink_extra: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.sink_config).context("--sink-config must be a JSON object")?;
    let source_extra: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&args.source_config)
            .context("--source-config must be a JSON object")?;
    let _ = SOURCE_EXTRA.set(source_extra);
    std::fs::create_dir_all(&args.out)?;
    let mut table = String::from("| figure | value | target |\n| --- | ---: | --- |\n");
    let mut results = serde_json::Map::new();

    if matches!(args.scenario, Scenario::All | Scenario::Rate) {
        eprintln!(
            "bench 1: rate-limited full sync, {} opportunities, {} ms latency, {}/s burst {}",
            args.rate_opportunities, args.latency_ms, args.rate, args.burst
        );
        let emu = EmulatorProcess::spawn(
            args.rate_opportunities,
            args.rate,
            args.burst,
            args.latency_ms,
        )
        .await?;
        let dir = lake_dir(&args, "rate")?;
        let f = sync(
            &emu,
            dir.path().to_str().context("utf-8 path")?,
            &sink_extra,
            (args.rate.round().max(1.0) as u32, args.burst),
            args.commit_max_rows,
        )
        .await?;
        emu.stop().await;
        let floor = f.requests as f64 / args.rate;
        let ratio = f.wall_s / floor;
        row(
            &mut table,
            "1. requests (rate-limited full sync)",
            f.requests.to_string(),
            "",
        );
        row(
            &mut table,
            "1. wall time, s",
            format!("{:.1}", f.wall_s),
            "",
        );
        row(
            &mut table,
            "1. floor = requests / rate, s",
            format!("{floor:.1}"),
            "",
        );
        row(
            &mut table,
            "1. wall / floor",
            format!("{ratio:.3}"),
            "<= 1.10",
        );
        row(&mut table, "1. 429 answers", f.throttled.to_string(), "");
        results.insert("rate_limited".into(), json!({"opportunities": args.rate_opportunities, "latency_ms": args.latency_ms, "rate": args.rate, "burst": args.burst, "figures": f, "floor_s": floor, "wall_over_floor": ratio}));
    }

    if matches!(args.scenario, Scenario::All | Scenario::Throughput) {
        eprintln!(
            "bench 2: throughput, {} opportunities, no rate limit, no latency",
            args.throughput_opportunities
        );
        let emu = EmulatorProcess::spawn(args.throughput_opportunities, 0.0, 0, 0).await?;
        let dir = lake_dir(&args, "throughput")?;
        let dest = dir.path().to_str().context("utf-8 path")?.to_owned();
        let unlimited = (1_000_000, 1_000_000);
        let full = sync(&emu, &dest, &sink_extra, unlimited, args.commit_max_rows).await?;
        // Read now: the high-water mark of the full sync alone (the incremental run follows).
        let rss = peak_rss_mib();
        let per_cpu = full.rows as f64 / full.cpu_s.max(0.001);
        let per_pipeline_cpu = full.rows as f64 / full.pipeline_cpu_s().max(0.001);
        row(&mut table, "2. rows (full sync)", full.rows.to_string(), "");
        row(&mut table, "2. requests", full.requests.to_string(), "");
        row(
            &mut table,
            "2. wall time, s",
            format!("{:.1}", full.wall_s),
            "",
        );
        row(
            &mut table,
            "2. sluice CPU time, s",
            format!("{:.1}", full.cpu_s),
            "",
        );
        row(
            &mut table,
            "2. CPU s: fetch / decode / transform / write / other",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} / {:.1}",
                full.cpu_fetch_s,
                full.cpu_decode_s,
                full.cpu_transform_s,
                full.cpu_write_s,
                full.cpu_other_s
            ),
            "",
        );
        row(
            &mut table,
            "2. rows per CPU-s of decode + transform + write",
            format!("{per_pipeline_cpu:.0}"),
            ">= 200000",
        );
        row(
            &mut table,
            "2. rows per CPU-s of the whole process",
            format!("{per_cpu:.0}"),
            "",
        );
        row(&mut table, "2. peak RSS, MiB", format!("{rss:.0}"), "< 300");

        eprintln!(
            "bench 3: incremental after {}% of opportunities change",
            args.change_fraction * 100.0
        );
        let changed = mutate(&emu, args.change_fraction).await?;
        let inc = sync(&emu, &dest, &sink_extra, unlimited, args.commit_max_rows).await?;
        emu.stop().await;
        row(
            &mut table,
            "3. opportunities changed",
            changed.to_string(),
            "",
        );
        row(
            &mut table,
            "3. requests: incremental / full",
            format!("{} / {}", inc.requests, full.requests),
            "~ change share",
        );
        row(
            &mut table,
            "3. destination bytes new or changed (with manifests): incremental / full",
            dest_share(&inc, &full),
            "",
        );
        row(
            &mut table,
            "3. bytes written: incremental / full",
            format!("{} / {}", inc.bytes_written, full.bytes_written),
            "~ change share",
        );
        row(
            &mut table,
            "3. bytes rewritten (incremental)",
            inc.bytes_rewritten.to_string(),
            "",
        );
        results.insert("throughput".into(), json!({"opportunities": args.throughput_opportunities, "figures": full, "rows_per_cpu_second": per_cpu, "rows_per_pipeline_cpu_second": per_pipeline_cpu, "peak_rss_mib": rss}));
        let rss_after = peak_rss_mib();
        row(
            &mut table,
            "3. peak RSS after the incremental sync, MiB",
            format!("{rss_after:.0}"),
            "< 300",
        );
        results.insert("incremental".into(), json!({"change_fraction": args.change_fraction, "opportunities_changed": changed, "figures": inc, "full_requests": full.requests, "full_bytes_written": full.bytes_written, "peak_rss_mib": rss_after}));
    }

    if matches!(args.scenario, Scenario::All | Scenario::Delta) {
        format_scenario(&args, "delta", &sink_extra, &mut table, &mut results).await?;
    }
    if matches!(args.scenario, Scenario::Iceberg) {
        format_scenario(&args, "iceberg", &sink_extra, &mut table, &mut results).await?;
    }

    if matches!(args.scenario, Scenario::All | Scenario::Freshness) {
        freshness_scenario(&args, &mut table, &mut results).await?;
    }

    println!("{table}");
    let path = args.out.join("results.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&serde_json::Value::Object(results))?,
    )?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Scenario 5: time to fresh data with and without priority-first (see `freshness`).
async fn freshness_scenario(
    args: &Args,
    table: &mut String,
    results: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    eprintln!(
        "bench 5: time to fresh data, {} opportunities ({}% updated over the last year), {} ms latency, {}/s burst {}",
        args.fresh_opportunities,
        args.recent_share * 100.0,
        args.latency_ms,
        args.rate,
        args.burst
    );
    let limiter = (args.rate.round().max(1.0) as u32, args.burst);
    let mut runs = Vec::new();
    for priority in [true, false] {
        let emu = EmulatorProcess::spawn_with_activity(
            args.fresh_opportunities,
            args.rate,
            args.burst,
            args.latency_ms,
            args.recent_share,
        )
        .await?;
        let dir = lake_dir(args, "freshness")?;
        let dest = dir.path().to_str().context("utf-8 path")?;
        let f = freshness::first_sync(&emu.base_url, &emu.api_key, dest, limiter, priority).await;
        emu.stop().await;
        runs.push(f?);
    }
    let (with, without) = (&runs[0], &runs[1]);
    let overhead = with.requests as f64 / without.requests.max(1) as f64 - 1.0;
    row(
        table,
        "5. opportunities updated in the last 7 days",
        with.recent.to_string(),
        "",
    );
    row(
        table,
        "5. fresh after, share of the full sync: priority-first",
        format!(
            "{:.1} % ({:.0} s of {:.0} s)",
            100.0 * with.share,
            with.fresh_s,
            with.wall_s
        ),
        "<= 10 %",
    );
    row(
        table,
        "5. fresh after, share of the full sync: plain walk",
        format!(
            "{:.1} % ({:.0} s of {:.0} s)",
            100.0 * without.share,
            without.fresh_s,
            without.wall_s
        ),
        "",
    );
    row(
        table,
        "5. requests: priority-first / plain",
        format!(
            "{} / {} ({:+.2} %)",
            with.requests,
            without.requests,
            100.0 * overhead
        ),
        "<= +2 %",
    );
    results.insert(
        "freshness".into(),
        json!({"opportunities": args.fresh_opportunities, "recent_share": args.recent_share, "latency_ms": args.latency_ms, "rate": args.rate, "burst": args.burst, "runs": runs, "request_overhead": overhead}),
    );
    Ok(())
}

/// A folder for one scenario's lake: a temporary folder removed when the scenario ends, or
/// with `--keep-lakes` one under `<out>/lakes/` that stays (its path printed).
fn lake_dir(args: &Args, scenario: &str) -> Result<tempfile::TempDir> {
    if !args.keep_lakes {
        return Ok(tempfile::tempdir()?);
    }
    let parent = std::path::Path::new(&args.out).join("lakes");
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{scenario}-"))
        .disable_cleanup(true)
        .tempdir_in(&parent)?;
    eprintln!("keeping the {scenario} lake in {}", dir.path().display());
    Ok(dir)
}

/// `dest_bytes_new` of an incremental sync against its full sync's, with the share.
fn dest_share(inc: &SyncFigures, full: &SyncFigures) -> String {
    format!(
        "{} / {} ({:.2}%)",
        inc.dest_bytes_new,
        full.dest_bytes_new,
        100.0 * inc.dest_bytes_new as f64 / full.dest_bytes_new.max(1) as f64
    )
}

/// Scenario 4: the throughput and incremental syncs again with a table-format sink
/// (`delta`, `iceberg`).
async fn format_scenario(
    args: &Args,
    sink: &str,
    sink_extra: &serde_json::Map<String, serde_json::Value>,
    table: &mut String,
    results: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    eprintln!(
        "bench 4: the {sink} sink, {} opportunities, then {}% changed",
        args.throughput_opportunities,
        args.change_fraction * 100.0
    );
    let mut extra = sink_extra.clone();
    extra.insert("sink".into(), sink.into());
    let emu = EmulatorProcess::spawn(args.throughput_opportunities, 0.0, 0, 0).await?;
    let dir = lake_dir(args, sink)?;
    let dest = dir.path().to_str().context("utf-8 path")?.to_owned();
    let unlimited = (1_000_000, 1_000_000);
    let full = sync(&emu, &dest, &extra, unlimited, args.commit_max_rows).await?;
    let per_pipeline_cpu = full.rows as f64 / full.pipeline_cpu_s().max(0.001);
    let changed = mutate(&emu, args.change_fraction).await?;
    let inc = sync(&emu, &dest, &extra, unlimited, args.commit_max_rows).await?;
    emu.stop().await;
    let rss = peak_rss_mib();
    row(
        table,
        &format!("4. {sink}: rows per CPU-s of decode + transform + write (full sync)"),
        format!("{per_pipeline_cpu:.0}"),
        "",
    );
    row(
        table,
        &format!("4. {sink}: opportunities changed"),
        changed.to_string(),
        "",
    );
    row(
        table,
        &format!("4. {sink}: requests: incremental / full"),
        format!("{} / {}", inc.requests, full.requests),
        "~ change share",
    );
    row(
        table,
        &format!("4. {sink}: bytes written: incremental / full"),
        format!(
            "{} / {} ({:.2}%)",
            inc.bytes_written,
            full.bytes_written,
            100.0 * inc.bytes_written as f64 / full.bytes_written.max(1) as f64
        ),
        "~ change share",
    );
    row(
        table,
        &format!(
            "4. {sink}: destination bytes new or changed (with logs, manifests): incremental / full"
        ),
        dest_share(&inc, &full),
        "",
    );
    row(
        table,
        &format!("4. {sink}: bytes rewritten (incremental)"),
        inc.bytes_rewritten.to_string(),
        "",
    );
    row(
        table,
        &format!("4. {sink}: peak RSS, MiB"),
        format!("{rss:.0}"),
        "< 300",
    );
    results.insert(sink.into(), json!({"opportunities": args.throughput_opportunities, "change_fraction": args.change_fraction, "opportunities_changed": changed, "full": full, "incremental": inc, "rows_per_pipeline_cpu_second": per_pipeline_cpu, "peak_rss_mib": rss}));
    Ok(())
}
