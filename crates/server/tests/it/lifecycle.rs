//! The whole lifecycle: create → credentials → schema patch → sync now → lake equals truth →
//! re-sync one table → run history → metrics match the runs → restart keeps everything and
//! the schedule resumes.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const SALT: &str = "pepper-salt-7f3a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_from_create_to_restart() {
    let lever = Lever::start(30).await;
    let s = TestServer::start().await;
    let id = s.lever_connection(&lever, 5).await;
    let conn = s.get(&format!("/v1/connections/{id}")).await;
    assert_eq!(conn["authorized"], true, "{conn}");
    assert_eq!(conn["credentials"]["api_key"], true);
    assert_eq!(
        conn["schedule"],
        json!({"every_minutes": 5, "paused": false})
    );

    // Credentials: the salt, then the same check as `sluice check`.
    s.send(
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"hash_salt": SALT}),
        StatusCode::OK,
    )
    .await;
    let check = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/check"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["message"].as_str().unwrap().contains("API key"),
        "{check}"
    );

    // Schema: block a table, hash a column.
    let schema = s
        .send(
            Method::PATCH,
            &format!("/v1/connections/{id}/schema"),
            json!({"tables": {
                "opportunity_source": {"enabled": false},
                "users": {"hashed_columns": ["email"]},
            }}),
            StatusCode::OK,
        )
        .await;
    let table = |name: &str| {
        schema["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(table("opportunity_source")["enabled"], false);
    let users = table("users");
    let email = users["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "email")
        .unwrap();
    assert_eq!(email["hashed"], true);
    assert_eq!(email["blocked"], false);

    // Sync now; a second one while it runs is a conflict.
    let run = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/sync"),
            json!({}),
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(run["status"], "queued");
    assert_eq!(run["trigger"], "manual");
    let (status, body) = s
        .call(Method::POST, &format!("/v1/connections/{id}/sync"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let first = s.wait_run(run["id"].as_str().unwrap()).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert!(first["started_at"].as_i64().unwrap() <= first["ended_at"].as_i64().unwrap());
    assert!(first["requests"].as_u64().unwrap() > 0);
    assert!(first["bytes_written"].as_u64().unwrap() > 0);
    assert!(first["tables"]["opportunity"]["inserted"].as_u64().unwrap() > 0);
    assert!(
        first["tables"].get("opportunity_source").is_none(),
        "{first}"
    );
    s.wait_until_idle(&id).await;
    assert_lake_matches(
        &s.lake(),
        &lever.emu,
        &["opportunity_source"],
        &[("users", "email")],
        SALT,
    )
    .await;

    // Re-sync one table.
    let resync = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/resync"),
            json!({"table": "users"}),
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(resync["resync"], json!(["users"]));
    let second = s.wait_run(resync["id"].as_str().unwrap()).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["trigger"], "resync");
    assert!(
        second["tables"]["users"]["received"].as_u64().unwrap() > 0,
        "{second}"
    );
    s.wait_until_idle(&id).await;
    assert_lake_matches(
        &s.lake(),
        &lever.emu,
        &["opportunity_source"],
        &[("users", "email")],
        SALT,
    )
    .await;

    // History, newest first.
    let runs = s.get(&format!("/v1/connections/{id}/runs")).await;
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            second["id"].as_str().unwrap(),
            first["id"].as_str().unwrap()
        ]
    );

    // Metrics equal the runs' summaries.
    let m = s.metrics().await;
    let c = ("connection_id", id.as_str());
    assert_eq!(
        metric(&m, "sluice_runs_total", &[c, ("status", "succeeded")]),
        2.0,
        "{m}"
    );
    for change in ["inserted", "updated", "deleted"] {
        for table in ["opportunity", "users"] {
            let want: u64 = [&first, &second]
                .iter()
                .map(|r| r["tables"][table][change].as_u64().unwrap_or(0))
                .sum();
            let got = metric(
                &m,
                "sluice_rows_total",
                &[c, ("table", table), ("change", change)],
            );
            assert_eq!(got, want as f64, "{table} {change}");
        }
    }
    let requests: u64 = [&first, &second]
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(metric(&m, "sluice_requests_total", &[c]), requests as f64);
    // Every request got one answer (or `error`), by endpoint and status.
    let answers: u64 = [&first, &second]
        .iter()
        .flat_map(|r| r["responses_by_status"].as_object().unwrap().values())
        .flat_map(|by_status| by_status.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(answers, requests, "one answer per request");
    assert_eq!(metric(&m, "sluice_responses_total", &[c]), requests as f64);
    assert!(
        metric(&m, "sluice_responses_total", &[c, ("status", "200")]) > 0.0,
        "answers by status"
    );
    let bytes: u64 = [&first, &second]
        .iter()
        .map(|r| r["bytes_written"].as_u64().unwrap())
        .sum();
    assert_eq!(metric(&m, "sluice_bytes_written_total", &[c]), bytes as f64);
    assert_eq!(metric(&m, "sluice_run_duration_seconds_count", &[c]), 2.0);
    let last_success = metric(&m, "sluice_last_success_timestamp_seconds", &[c]);
    assert_eq!(
        last_success as i64,
        second["ended_at"].as_i64().unwrap() / 1000
    );

    // The committed state, secrets redacted.
    let state = s.get(&format!("/v1/connections/{id}/state")).await;
    assert_eq!(state["state"]["source"], "lever");
    assert!(state["state"]["tables"]["users"].is_object(), "{state}");

    // Restart: connections, runs and secrets are still there; the schedule resumes.
    let dir = s.stop().await;
    let mut o = options(&dir.path().join("data"));
    o.schedule_minute = Duration::from_millis(40);
    let s = TestServer::start_with(dir, o).await;
    // The last success time is there from the start (seeded from the run history).
    let m = s.metrics().await;
    assert!(
        metric(&m, "sluice_last_success_timestamp_seconds", &[c])
            >= (second["ended_at"].as_i64().unwrap() / 1000) as f64,
        "{m}"
    );
    let conn = s.get(&format!("/v1/connections/{id}")).await;
    assert_eq!(conn["credentials"]["api_key"], true);
    assert_eq!(conn["credentials"]["hash_salt"], true);
    // The history survived (the scheduler may already have queued a newer run).
    let runs = s.get(&format!("/v1/connections/{id}/runs")).await;
    let kept: Vec<&Value> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == first["id"] || r["id"] == second["id"])
        .collect();
    assert_eq!(kept.len(), 2, "{runs}");
    assert!(kept.iter().all(|r| r["status"] == "succeeded"));
    let check = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/check"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(check["ok"], true, "secrets survive a restart: {check}");
    let scheduled = s.wait_for_run(&id, |r| r["trigger"] == "schedule").await;
    let scheduled = s.wait_run(scheduled["id"].as_str().unwrap()).await;
    assert_eq!(scheduled["status"], "succeeded", "{scheduled}");
    // The schedule fires every 200 ms here: pause it and let a run in progress end, so the
    // lake is not read while a commit replaces its files.
    s.send(
        Method::POST,
        &format!("/v1/connections/{id}/pause"),
        json!({}),
        StatusCode::OK,
    )
    .await;
    s.wait_until_idle(&id).await;
    assert_lake_matches(
        &s.lake(),
        &lever.emu,
        &["opportunity_source"],
        &[("users", "email")],
        SALT,
    )
    .await;

    // Secrets: never in responses, files of the data dir, or logs.
    let key = lever.emu.api_key();
    let secrets = [key.as_str(), SALT];
    for path in [
        format!("/v1/connections/{id}"),
        "/v1/connections".to_owned(),
        format!("/v1/connections/{id}/runs"),
        format!("/v1/connections/{id}/state"),
        format!("/v1/connections/{id}/schema"),
    ] {
        let body = s.get(&path).await.to_string();
        for secret in secrets {
            assert!(!body.contains(secret), "{path} shows a secret");
        }
    }
    let dir = s.stop().await;
    // The data dir holds no secret in clear (the lake's secret store is the sink's business).
    assert_no_file_holds(&dir.path().join("data"), &secrets);
    let logs = log_text();
    for secret in secrets {
        assert!(!logs.contains(secret), "a log line shows a secret");
    }
    // Every log line of a run names its connection.
    let run_lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"] == "sync starting" || v["fields"]["message"] == "sync succeeded"
        })
        .collect();
    assert!(run_lines.len() >= 3, "{logs}");
    for line in run_lines {
        assert_eq!(line["span"]["connection_id"], id.as_str(), "{line}");
        if line["fields"]["message"] == "sync starting" {
            let trigger = line["fields"]["trigger"].as_str().unwrap();
            assert!(
                ["manual", "resync", "schedule", "retry"].contains(&trigger),
                "the trigger is logged as the API names it: {line}"
            );
        }
    }
}
