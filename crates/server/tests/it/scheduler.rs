//! The scheduler: connections sync on their own, failures are retried with backoff and
//! recorded, paused connections wait.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_connections_sync_on_their_own_and_failures_are_retried() {
    let lever = Lever::start(10).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("data"));
    // A schedule minute of 40 ms: "every 5 minutes" is every 200 ms.
    o.schedule_minute = Duration::from_millis(40);
    let s = TestServer::start_with(dir, o).await;
    let good = s.lever_connection(&lever, 5).await;

    let bad = s
        .send(
            Method::POST,
            "/v1/connections",
            json!({"source": "lever", "sink": "parquet",
                   "destination": s.dir.path().join("bad-lake").to_str().unwrap(),
                   "source_settings": lever.source_settings(), "schedule": {"every_minutes": 60}}),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.send(
        Method::PUT,
        &format!("/v1/connections/{bad}/credentials"),
        json!({"api_key": "not-a-key"}),
        StatusCode::OK,
    )
    .await;
    let paused = s
        .send(
            Method::POST,
            "/v1/connections",
            json!({"source": "lever", "sink": "parquet",
                   "destination": s.dir.path().join("paused-lake").to_str().unwrap(),
                   "source_settings": lever.source_settings(),
                   "schedule": {"every_minutes": 5, "paused": true}}),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Two scheduled runs of the good connection, one after the other.
    let mut succeeded = 0;
    for _ in 0..1200 {
        let runs = s.get(&format!("/v1/connections/{good}/runs")).await;
        succeeded = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "succeeded" && r["trigger"] == "schedule")
            .count();
        if succeeded >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        succeeded >= 2,
        "the scheduler did not run the connection twice"
    );
    let runs = s.get(&format!("/v1/connections/{good}/runs")).await;
    let runs = runs["runs"].as_array().unwrap();
    assert!(runs.iter().filter(|r| r["status"] == "succeeded").count() >= 2);
    // Never two runs of one connection at once: their intervals do not overlap.
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .filter_map(|r| Some((r["started_at"].as_i64()?, r["ended_at"].as_i64()?)))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping runs {w:?}");
    }

    // The failing connection: its first scheduled run fails (auth) and is retried.
    let retry = s
        .wait_for_run(&bad, |r| r["trigger"] == "retry" && r["status"] == "failed")
        .await;
    assert_eq!(retry["error_kind"], "auth", "{retry}");
    assert!(
        retry["requests"].as_u64().unwrap() >= 1,
        "a failed run reports its requests: {retry}"
    );
    let by_endpoint: u64 = retry["requests_by_endpoint"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        by_endpoint,
        retry["requests"].as_u64().unwrap(),
        "a failed run reports its requests by endpoint: {retry}"
    );
    assert!(!retry["error_message"].as_str().unwrap().contains('\n'));
    let runs = s.get(&format!("/v1/connections/{bad}/runs")).await;
    let failed = runs["runs"].as_array().unwrap();
    let ended: Vec<_> = failed.iter().filter(|r| r["ended_at"].is_i64()).collect();
    assert!(ended.len() >= 2);
    assert!(ended.iter().all(|r| r["status"] == "failed"), "{runs}");
    let m = s.metrics().await;
    assert!(
        metric(
            &m,
            "sluice_runs_total",
            &[("connection_id", &bad), ("status", "failed")]
        ) >= 2.0
    );
    assert!(
        metric(&m, "sluice_requests_total", &[("connection_id", &bad)]) >= 2.0,
        "requests of failed runs are counted by endpoint"
    );

    // The paused connection never ran; resuming schedules it.
    let runs = s.get(&format!("/v1/connections/{paused}/runs")).await;
    assert!(runs["runs"].as_array().unwrap().is_empty());
    let conn = s
        .send(
            Method::POST,
            &format!("/v1/connections/{paused}/resume"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(conn["schedule"]["paused"], false);
    assert!(conn["next_run_at"].as_i64().is_some());
    s.wait_for_run(&paused, |r| r["trigger"] == "schedule")
        .await;
    s.send(
        Method::POST,
        &format!("/v1/connections/{paused}/pause"),
        json!({}),
        StatusCode::OK,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_runs_holds_runs_of_other_connections_back() {
    let lever = Lever::start(10).await;
    lever.emu.set_latency(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("data"));
    o.max_concurrent_runs = 1;
    let s = TestServer::start_with(dir, o).await;
    let mut ids = Vec::new();
    for lake in ["lake-a", "lake-b"] {
        let c = s
            .send(
                Method::POST,
                "/v1/connections",
                json!({"source": "lever", "sink": "parquet",
                       "destination": s.dir.path().join(lake).to_str().unwrap(),
                       "source_settings": lever.source_settings(),
                       "schedule": {"every_minutes": 1440}}),
                StatusCode::CREATED,
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        s.send(
            Method::PUT,
            &format!("/v1/connections/{id}/credentials"),
            json!({"api_key": lever.emu.api_key()}),
            StatusCode::OK,
        )
        .await;
        ids.push(id);
    }
    let mut runs = Vec::new();
    for id in &ids {
        let run = s
            .send(
                Method::POST,
                &format!("/v1/connections/{id}/sync"),
                json!({}),
                StatusCode::ACCEPTED,
            )
            .await;
        runs.push(run["id"].as_str().unwrap().to_owned());
    }
    // A connection with a run queued or running is not deleted.
    let (status, v) = s
        .call(Method::DELETE, &format!("/v1/connections/{}", ids[1]), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    // While one runs, the other waits as queued.
    let mut saw_one_queued_while_the_other_ran = false;
    loop {
        let a = s.get(&format!("/v1/runs/{}", runs[0])).await;
        let b = s.get(&format!("/v1/runs/{}", runs[1])).await;
        let (sa, sb) = (a["status"].as_str().unwrap(), b["status"].as_str().unwrap());
        assert!(
            !(sa == "running" && sb == "running"),
            "two runs at once with max_concurrent_runs = 1"
        );
        if (sa, sb) == ("running", "queued") || (sa, sb) == ("queued", "running") {
            saw_one_queued_while_the_other_ran = true;
        }
        if !matches!(sa, "queued" | "running") && !matches!(sb, "queued" | "running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_one_queued_while_the_other_ran);
    let mut spans = Vec::new();
    for run in &runs {
        let r = s.wait_run(run).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        spans.push((
            r["started_at"].as_i64().unwrap(),
            r["ended_at"].as_i64().unwrap(),
        ));
    }
    spans.sort();
    assert!(spans[0].1 <= spans[1].0, "overlapping runs {spans:?}");
    s.stop().await;
}
