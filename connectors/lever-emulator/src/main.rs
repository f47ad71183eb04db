//! `lever-emulator`: serve the Lever Data API v1 emulator on 127.0.0.1.

use std::time::{Duration, Instant};

use clap::Parser;
use sluice_lever_emulator::{Emulator, EmulatorConfig, FaultConfig, RateLimit};

/// Command line of the emulator.
#[derive(Debug, Parser)]
#[command(
    name = "lever-emulator",
    about = "A deterministic emulator of the Lever Data API v1"
)]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of opportunities.
    #[arg(long, default_value_t = 1000)]
    opportunities: usize,
    /// Steady rate limit per credential (requests/s); 0 disables rate limiting.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Burst size of the rate limit.
    #[arg(long, default_value_t = 20)]
    burst: u32,
    /// Added latency per data request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of data requests answering 500/503 (half as much again drops the connection).
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Measure RSS and page-render latency instead of serving.
    #[arg(long)]
    bench: bool,
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench(args: &Args) {
    let t = Instant::now();
    let emu = Emulator::new(EmulatorConfig {
        seed: args.seed,
        opportunities: args.opportunities,
        rate_limit: None,
        ..EmulatorConfig::default()
    });
    println!(
        "generated {} opportunities in {:?}; RSS {:.1} MB",
        args.opportunities,
        t.elapsed(),
        rss_mb()
    );
    let pages = args.opportunities.div_ceil(100);
    let mut times = Vec::with_capacity(pages);
    let mut items = 0;
    for p in 0..pages {
        let t = Instant::now();
        items += emu.render_page(p * 100, 100);
        times.push(t.elapsed());
    }
    times.sort();
    let total: Duration = times.iter().sum();
    println!(
        "rendered {pages} pages ({items} opportunities, expand=applications, serialized): mean {:?}, p50 {:?}, p99 {:?}, max {:?}; RSS {:.1} MB",
        total / pages.max(1) as u32,
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1],
        rss_mb()
    );
    let summary = emu.mutate_fraction(0.02, 1);
    println!(
        "mutate_fraction(0.02): {} updated, {} created, {} deleted; RSS {:.1} MB",
        summary.updated.len(),
        summary.created.len(),
        summary.deleted.len(),
        rss_mb()
    );
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    if args.bench {
        bench(&args);
        return Ok(());
    }
    let emu = Emulator::new(EmulatorConfig {
        seed: args.seed,
        opportunities: args.opportunities,
        rate_limit: (args.rate > 0.0).then_some(RateLimit {
            per_second: args.rate,
            burst: args.burst,
        }),
        latency: Duration::from_millis(args.latency_ms),
        faults: FaultConfig {
            error_rate: args.fault_rate,
            drop_rate: args.fault_rate / 2.0,
            seed: args.seed,
        },
        ..EmulatorConfig::default()
    });
    let server = emu.start_on(args.port).await?;
    println!("Lever emulator listening");
    println!("  base URL: {}", server.base_url());
    println!("  API key:  {}", emu.api_key());
    println!("  admin:    {}/admin/truth", server.root_url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
