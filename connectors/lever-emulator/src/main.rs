//! `lever-emulator`: serve the Lever Data API v1 emulator on 127.0.0.1.

use std::time::{Duration, Instant};

use clap::Parser;
use sluice_lever_emulator::{Emulator, EmulatorConfig, FaultConfig, ListOrder, RateLimit};

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
    /// Order of `/opportunities`: `insertion` or `created-at` (ascending createdAt, id).
    #[arg(long, value_enum, default_value_t = OrderArg::Insertion)]
    list_order: OrderArg,
    /// Measure RSS and page-render latency instead of serving.
    #[arg(long)]
    bench: bool,
}

/// `--list-order` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OrderArg {
    /// Storage order (generated opportunities first, created ones last).
    Insertion,
    /// Ascending `(createdAt, id)`.
    CreatedAt,
}

impl From<OrderArg> for ListOrder {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::Insertion => ListOrder::Insertion,
            OrderArg::CreatedAt => ListOrder::CreatedAt,
        }
    }
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

fn stats(times: &mut [Duration]) -> String {
    times.sort();
    let n = times.len().max(1);
    let total: Duration = times.iter().sum();
    format!(
        "mean {:?}, p50 {:?}, p99 {:?}, max {:?}",
        total / n as u32,
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    )
}

/// One keep-alive HTTP/1.1 connection: GET `path`, return the body.
async fn http_get(
    stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    path: &str,
    auth: &str,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\r\n");
    stream.get_mut().write_all(req.as_bytes()).await?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn bench(args: &Args) -> std::io::Result<()> {
    use base64::Engine as _;
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
    let mut bytes = 0;
    for p in 0..pages {
        let t = Instant::now();
        let (n, b) = emu.render_page(p * 100, 100);
        times.push(t.elapsed());
        items += n;
        bytes += b;
    }
    println!(
        "in-process: {pages} pages of 100 ({items} opportunities, expand=applications, {:.1} KB/page serialized): {}; RSS {:.1} MB",
        bytes as f64 / pages.max(1) as f64 / 1024.0,
        stats(&mut times),
        rss_mb()
    );
    // the same walk over HTTP on one keep-alive connection, following `next`
    let server = emu.start().await?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:", emu.api_key()));
    let mut stream = tokio::io::BufReader::new(tokio::net::TcpStream::connect(server.addr).await?);
    stream.get_ref().set_nodelay(true)?;
    let mut times = Vec::new();
    let mut offset: Option<String> = None;
    let mut seen = 0;
    loop {
        let mut path =
            "/v1/opportunities?limit=100&expand=applications&confidentiality=all".to_string();
        if let Some(o) = &offset {
            path.push_str("&offset=");
            path.push_str(o);
        }
        let t = Instant::now();
        let body = http_get(&mut stream, &path, &auth).await?;
        times.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
        seen += v["data"].as_array().map_or(0, Vec::len);
        match v["next"].as_str() {
            Some(n) if v["hasNext"] == true => offset = Some(n.to_string()),
            _ => break,
        }
    }
    println!(
        "HTTP walk: {} pages, {seen} opportunities: {}; RSS {:.1} MB",
        times.len(),
        stats(&mut times),
        rss_mb()
    );
    let t = Instant::now();
    let summary = emu.mutate_fraction(0.02, 1);
    println!(
        "mutate_fraction(0.02) in {:?}: {} updated, {} created, {} deleted; RSS {:.1} MB",
        t.elapsed(),
        summary.updated.len(),
        summary.created.len(),
        summary.deleted.len(),
        rss_mb()
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    if args.bench {
        return bench(&args).await;
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
        list_order: args.list_order.into(),
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
