//! Rate limiting, latency, faults and counters.

use std::time::{Duration, Instant};

use sluice_lever_emulator::{EmulatorConfig, FaultConfig, RateLimit};

use crate::common::env;

#[tokio::test]
async fn burst_then_429_per_credential() {
    let env = env(EmulatorConfig {
        opportunities: 10,
        rate_limit: Some(RateLimit {
            per_second: 0.5,
            burst: 5,
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(env.get("/stages").await.0);
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let (status, body) = env.get("/stages").await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], "TooManyRequests");
    // another key has its own bucket
    let other = env.emu.create_api_key(true);
    assert_eq!(env.get_as("/stages", Some(&other)).await.0, 200);
    let c = env.emu.counters();
    assert!(c.rate_limited >= 3);
    assert_eq!(c.endpoint("GET /stages").rate_limited, c.rate_limited);
    assert_eq!(c.endpoint("GET /stages").ok, 6);
    // disabling lifts the limit
    env.emu.set_rate_limit(None);
    assert_eq!(env.get("/stages").await.0, 200);
    env.emu.reset_counters();
    assert_eq!(env.emu.counters().total, 0);
    env.stop().await;
}

#[tokio::test]
async fn injected_errors_follow_the_configured_rate() {
    let env = env(EmulatorConfig {
        opportunities: 10,
        rate_limit: None,
        faults: FaultConfig {
            error_rate: 0.3,
            drop_rate: 0.0,
            seed: 3,
        },
        ..EmulatorConfig::default()
    })
    .await;
    let mut errors = 0;
    for _ in 0..200 {
        let (status, body) = env.get("/stages").await;
        if status >= 500 {
            assert!(status == 500 || status == 503);
            assert!(body["code"].is_string());
            errors += 1;
        }
    }
    assert!((30..=95).contains(&errors), "{errors} errors of 200");
    let c = env.emu.counters();
    assert_eq!(c.faults, errors);
    assert_eq!(c.endpoint("GET /stages").server_errors, errors);
    env.stop().await;
}

#[tokio::test]
async fn dropped_bodies_are_client_errors() {
    let env = env(EmulatorConfig {
        opportunities: 30,
        rate_limit: None,
        faults: FaultConfig {
            error_rate: 0.0,
            drop_rate: 1.0,
            seed: 1,
        },
        ..EmulatorConfig::default()
    })
    .await;
    for _ in 0..3 {
        let resp = env
            .client
            .get(env.url("/opportunities?expand=applications"))
            .basic_auth(&env.key, Some(""))
            .send()
            .await;
        if let Ok(r) = resp {
            assert!(r.bytes().await.is_err(), "body should be truncated");
        }
    }
    env.emu.set_faults(FaultConfig::default());
    assert_eq!(env.get("/opportunities").await.0, 200);
    let c = env.emu.counters();
    assert_eq!(c.dropped, 3);
    assert_eq!(c.endpoint("GET /opportunities").dropped, 3);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_does_not_serialize_requests() {
    let env = env(EmulatorConfig {
        opportunities: 10,
        rate_limit: None,
        latency: Duration::from_millis(300),
        ..EmulatorConfig::default()
    })
    .await;
    let t = Instant::now();
    let futs: Vec<_> = (0..10).map(|_| env.get("/stages")).collect();
    let results = futures::future::join_all(futs).await;
    assert!(results.iter().all(|(s, _)| *s == 200));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "the latency was added"
    );
    let in_flight = env.emu.counters().max_in_flight;
    assert!(
        in_flight > 1,
        "10 concurrent requests were served one at a time (peak {in_flight} in flight)"
    );
    env.stop().await;
}
