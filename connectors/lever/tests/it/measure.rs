//! Wall time against the rate-limit floor with 150 ms latency (run on demand:
//! `cargo nextest run -p sluice-source-lever --run-ignored only -E 'test(rate_limit_floor)'`).

use crate::common::*;
use serde_json::json;
use sluice_lever_emulator::{EmulatorConfig, RateLimit};
use sluice_testkit::MemoryDestination;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes about a minute; a measurement, not a check"]
async fn rate_limit_floor_with_150ms_latency() {
    let env = Env::with(EmulatorConfig {
        opportunities: 50,
        rate_limit: Some(RateLimit::default()),
        latency: Duration::from_millis(150),
        ..EmulatorConfig::default()
    })
    .await;
    let config = json!({"api_key": env.emu.api_key(), "base_url": env.server.base_url()});
    let dest = MemoryDestination::new("lever");
    let t = Instant::now();
    let report = sync(&config, &dest, at(1_000)).await.expect("sync");
    let wall = t.elapsed().as_secs_f64();
    let c = env.emu.counters();
    let floor = c.total as f64 / 10.0;
    println!(
        "requests {} (429: {}), wall {wall:.1}s, floor {floor:.1}s (requests / 10 per s), ratio {:.3}, client requests {}",
        c.total,
        c.rate_limited,
        wall / floor,
        report.requests
    );
    assert!(wall <= floor * 1.10, "wall {wall:.1}s vs floor {floor:.1}s");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}
