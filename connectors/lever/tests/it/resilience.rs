//! 429 storms, injected faults and invalid offset tokens give the same output as a clean run.

use crate::common::*;
use serde_json::json;
use sluice_lever_emulator::{EmulatorConfig, FaultConfig, RateLimit};
use sluice_testkit::MemoryDestination;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storm_gives_the_clean_output() {
    let env = Env::with(EmulatorConfig {
        opportunities: 25,
        rate_limit: Some(RateLimit {
            per_second: 60.0,
            burst: 5,
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    // Client-side limit well above the server's: the server answers 429 often.
    config["rate_limit_per_second"] = json!(200);
    config["rate_limit_burst"] = json!(50);
    // The storm pauses the whole account again and again; what is checked here is the
    // output, so the per-request time budget must not run out on a loaded test machine.
    config["max_retry_secs"] = json!(900);
    let dest = MemoryDestination::new("lever");
    let report = sync(&config, &dest, at(1_000))
        .await
        .expect("sync under 429s");
    let c = env.emu.counters();
    assert!(c.rate_limited > 0, "the storm happened: {c:?}");
    assert_eq!(report.throttled, c.rate_limited, "429s counted in metrics");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_give_the_clean_output() {
    let env = Env::with(EmulatorConfig {
        opportunities: 40,
        rate_limit: None,
        faults: FaultConfig {
            error_rate: 0.05,
            drop_rate: 0.05,
            seed: 3,
        },
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    config["max_retries"] = json!(10);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("sync despite faults");
    let c = env.emu.counters();
    assert!(
        c.faults > 10 && c.dropped > 0,
        "faults were injected: {c:?}"
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_fail_with_an_upstream_error_naming_the_endpoint() {
    let env = Env::with(EmulatorConfig {
        opportunities: 5,
        rate_limit: None,
        faults: FaultConfig {
            error_rate: 1.0,
            drop_rate: 0.0,
            seed: 1,
        },
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    config["max_retries"] = json!(2);
    let dest = MemoryDestination::new("lever");
    let r = sync(&config, &dest, at(1_000)).await;
    assert_kind(&r, sluice_core::ErrorKind::Upstream);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("/users"), "{msg}");
    assert_eq!(env.emu.counters().total, 3, "bounded retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_offset_token_restarts_the_walk() {
    let env = Env::with(EmulatorConfig {
        opportunities: 60,
        rate_limit: None,
        latency: Duration::from_millis(5),
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    config["page_size"] = json!(20);
    // A plain walk: the page counts below are those of one list (a priority-first walk is
    // killed and resumed in it::priority).
    config["priority_first"] = json!(false);
    let dest = MemoryDestination::new("lever");
    let emu = env.emu.clone();
    let expirer = tokio::spawn(async move {
        // Once the first opportunity page is out, invalidate every token issued so far.
        loop {
            if emu.counters().endpoint("GET /opportunities").requests >= 1 {
                emu.expire_offset_tokens();
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    sync(&config, &dest, at(1_000))
        .await
        .expect("sync with an expired token");
    expirer.await.unwrap();
    let c = env.emu.counters().endpoint("GET /opportunities");
    assert!(
        c.by_status.get(&400).copied().unwrap_or(0) >= 1,
        "a token was rejected: {c:?}"
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_from_the_committed_page() {
    let env = Env::start(60).await;
    let mut config = env.config();
    config["page_size"] = json!(20);
    // A plain walk: the page counts below are those of one list (a priority-first walk is
    // killed and resumed in it::priority).
    config["priority_first"] = json!(false);
    let dest = MemoryDestination::new("lever");
    // Fail the destination at the third write of the first run (after a page checkpoint).
    dest.fail_at(sluice_testkit::FailPoint::Write(150));
    let r = sync(&config, &dest, at(1_000)).await;
    assert!(r.is_err());
    let state = dest.state().expect("a page was committed");
    let walk = state.extra.get("walk").cloned();
    assert!(
        walk.is_some(),
        "page position checkpointed: {:?}",
        state.extra
    );
    env.emu.reset_counters();
    sync(&config, &dest, at(2_000)).await.expect("resumed run");
    let pages = env.emu.counters().endpoint("GET /opportunities").requests;
    assert!(pages < 3, "resumed mid-walk ({pages} list pages read)");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}
