//! `sluice serve` as a process: the API token printed once, JSON logs naming the connection
//! on its run's lines, SIGTERM stopping a running sync at its last checkpoint (recorded as
//! cancelled, lease released, exit 0), and a restart picking everything up.

use crate::harness::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A `sluice serve` process on 127.0.0.1:0 (address and data dir given by `SLUICE_LISTEN` and
/// `SLUICE_DATA_DIR`).
struct Serve {
    child: tokio::process::Child,
    base: String,
    token: Option<String>,
}

async fn serve(data_dir: &Path) -> Serve {
    serve_with_env(data_dir, &[]).await
}

async fn serve_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Serve {
    let mut command = base_command(&["serve"]);
    command
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DATA_DIR", data_dir)
        .envs(env.iter().copied());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    let base = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("sluice serve prints its address")
            .unwrap()
            .expect("a line");
        if let Some(t) = line.strip_prefix("API token") {
            token = Some(t.rsplit(' ').next().unwrap().to_owned());
        }
        if let Some(addr) = line.strip_prefix("sluice serve: listening on ") {
            break addr.to_owned();
        }
    };
    Serve { child, base, token }
}

impl Serve {
    async fn call(&self, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Sends SIGTERM; returns the exit status and stderr.
    async fn terminate(self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let out = tokio::time::timeout(Duration::from_secs(60), self.child.wait_with_output())
            .await
            .expect("stops promptly after SIGTERM")
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sigterm_stops_a_run_at_its_checkpoint_and_a_restart_picks_up() {
    use reqwest::Method;
    let lever = Lever::start(20).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = dir.path().join("lake");
    let s = serve(&data).await;
    let token = s.token.clone().expect("a token is printed on first start");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let c = s
        .call(
            &token,
            Method::POST,
            "/v1/connections",
            json!({"source": "lever", "sink": "parquet", "destination": lake.to_str().unwrap(),
                   "source_settings": {"base_url": lever.server.base_url(),
                       "rate_limit_per_second": 10000, "rate_limit_burst": 10000, "page_size": 5},
                   "schedule": {"every_minutes": 1440}}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let key = lever.emu.api_key();
    s.call(
        &token,
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"api_key": key}),
    )
    .await;
    lever.emu.set_latency(Duration::from_millis(300));
    let run = s
        .call(
            &token,
            Method::POST,
            &format!("/v1/connections/{id}/sync"),
            json!({}),
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    loop {
        let r = s
            .call(
                &token,
                Method::GET,
                &format!("/v1/runs/{run_id}"),
                json!({}),
            )
            .await;
        if r["status"] == "running" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run never started: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, stderr) = s.terminate().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(&key), "the API key reached the log");
    assert!(!stderr.contains(&token), "the API token reached the log");
    // JSON lines; the run's lines carry its connection.
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let starting = lines
        .iter()
        .find(|l| l["message"] == "sync starting")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(starting["span"]["connection_id"], id.as_str(), "{starting}");
    let lease: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join("_sluice").join("lease.json")).expect("the lease object"),
    )
    .unwrap();
    assert_eq!(lease["expires_at_ms"], 0, "the lease was released: {lease}");

    // Restart: no new token, the stopped run is recorded as cancelled, syncs work again.
    lever.emu.set_latency(Duration::ZERO);
    let s = serve(&data).await;
    assert_eq!(
        s.token, None,
        "the token is printed on the first start only"
    );
    let r = s
        .call(
            &token,
            Method::GET,
            &format!("/v1/runs/{run_id}"),
            json!({}),
        )
        .await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(r["error_kind"], "cancelled");
    let again = s
        .call(
            &token,
            Method::POST,
            &format!("/v1/connections/{id}/sync"),
            json!({}),
        )
        .await;
    let again_id = again["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let done = loop {
        let r = s
            .call(
                &token,
                Method::GET,
                &format!("/v1/runs/{again_id}"),
                json!({}),
            )
            .await;
        if !matches!(r["status"].as_str(), Some("queued" | "running")) {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run did not end: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let (status, stderr) = s.terminate().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_matches_truth(&lake, &lever.emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ignores_its_own_lever_environment() {
    use reqwest::Method;
    let lever = Lever::start(3).await;
    let key = lever.emu.api_key();
    let elsewhere = sluice_testkit::net::RecordingListener::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = "serve-env-test-token-0123456789";
    let s = serve_with_env(
        &dir.path().join("data"),
        &[
            ("SLUICE_API_TOKEN", token),
            ("LEVER_API_KEY", key.as_str()),
            ("LEVER_BASE_URL", elsewhere.url.as_str()),
        ],
    )
    .await;
    let c = s
        .call(
            token,
            Method::POST,
            "/v1/connections",
            json!({"source": "lever", "sink": "parquet",
                   "destination": dir.path().join("lake").to_str().unwrap(),
                   "source_settings": {"base_url": lever.server.base_url()}}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["authorized"], false, "{c}");
    // No credentials of its own: the server's LEVER_API_KEY does not stand in.
    let check = s
        .call(
            token,
            Method::POST,
            &format!("/v1/connections/{id}/check"),
            json!({}),
        )
        .await;
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("no Lever credentials"),
        "{check}"
    );
    // With its own key, it reaches its own base_url, not LEVER_BASE_URL.
    s.call(
        token,
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"api_key": key}),
    )
    .await;
    let check = s
        .call(
            token,
            Method::POST,
            &format!("/v1/connections/{id}/check"),
            json!({}),
        )
        .await;
    assert_eq!(check["ok"], true, "{check}");
    let (status, stderr) = s.terminate().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        elsewhere.received().is_empty(),
        "a request went to the server's LEVER_BASE_URL"
    );
}
