//! Authentication: bad keys, OAuth rotation, confidential access, secrets in logs, demo mode.

use crate::common::*;
use serde_json::{Value, json};
use sluice_core::{DynSource, ErrorKind};
use sluice_lever_emulator::EmulatorConfig;
use sluice_source_lever::REFRESH_TOKEN_STATE_KEY;
use sluice_testkit::MemoryDestination;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_api_key_fails_fast_with_auth() {
    let env = Env::start(5).await;
    let mut config = env.config();
    config["api_key"] = json!("not-a-valid-key");
    let dest = MemoryDestination::new("lever");
    let t = Instant::now();
    let r = sync(&config, &dest, at(1_000)).await;
    assert_kind(&r, ErrorKind::Auth);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        env.emu.counters().total <= 2,
        "no retry storm: {:?}",
        env.emu.counters()
    );
    let msg = r.unwrap_err().to_string();
    assert!(!msg.contains("not-a-valid-key"), "{msg}");
    assert!(msg.contains("API key"), "{msg}");
    let check = source().check(&config).await;
    assert_eq!(check.unwrap_err().kind(), ErrorKind::Auth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_off_and_on() {
    let env = Env::start(60).await;
    let key = env.emu.create_api_key(false);
    let mut config = env.config();
    config["api_key"] = json!(key);
    // A key without confidential access cannot read confidential data.
    let dest = MemoryDestination::new("lever");
    assert_kind(&sync(&config, &dest, at(1_000)).await, ErrorKind::Auth);
    // With confidential data turned off it syncs what it may see.
    config["confidential"] = json!(false);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("non-confidential sync");
    assert_matches_oracle(&dest, &env.emu.truth(), false);
    let confidential = dest
        .committed_rows("opportunity")
        .iter()
        .filter(|r| r["confidentiality"] == "confidential")
        .count();
    assert_eq!(confidential, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refresh_token_rotates_across_runs() {
    let env = Env::with(EmulatorConfig {
        opportunities: 20,
        rate_limit: None,
        access_token_ttl: Duration::from_secs(2),
        latency: Duration::from_millis(3),
        ..EmulatorConfig::default()
    })
    .await;
    let (id, secret) = env.emu.register_oauth_client();
    let refresh = env.emu.issue_refresh_token(&id, true);
    let config = json!({
        "base_url": env.server.base_url(),
        "oauth": {
            "client_id": id, "client_secret": secret, "refresh_token": refresh,
            "token_url": format!("{}/oauth/token", env.server.root_url()),
        },
        "rate_limit_per_second": 2000, "rate_limit_burst": 2000,
    });
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("first OAuth run");
    let rotated = dest.state().unwrap().secrets[REFRESH_TOKEN_STATE_KEY]
        .expose()
        .to_owned();
    assert_ne!(rotated, refresh, "the refresh token rotated");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    // The second run starts from the state's token (the config's is spent).
    sync(&config, &dest, at(2_000))
        .await
        .expect("second OAuth run");
    let again = dest.state().unwrap().secrets[REFRESH_TOKEN_STATE_KEY]
        .expose()
        .to_owned();
    assert_ne!(again, rotated);
    // The old token is rejected by the emulator: a fresh destination with it fails (auth).
    let fresh = MemoryDestination::new("lever");
    let r = sync(&config, &fresh, at(3_000)).await;
    assert_kind(&r, ErrorKind::Auth);
    assert!(r.unwrap_err().to_string().contains("refresh token"));
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_trace_logs_errors_or_debug() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber in this process");
    let env = Env::start(10).await;
    let key = env.emu.api_key();
    let (id, secret) = env.emu.register_oauth_client();
    let refresh = env.emu.issue_refresh_token(&id, true);
    let oauth = json!({
        "base_url": env.server.base_url(),
        "oauth": {"client_id": id, "client_secret": secret, "refresh_token": refresh,
                  "token_url": format!("{}/oauth/token", env.server.root_url())},
        "rate_limit_per_second": 2000, "rate_limit_burst": 2000,
    });
    let dest = MemoryDestination::new("lever");
    sync(&env.config(), &dest, at(1_000)).await.unwrap();
    let dest2 = MemoryDestination::new("lever");
    sync(&oauth, &dest2, at(1_000)).await.unwrap();
    let rotated = dest2.state().unwrap().secrets[REFRESH_TOKEN_STATE_KEY]
        .expose()
        .to_owned();
    let mut bad = env.config();
    bad["api_key"] = json!("wrong-key-5f2e");
    let err = sync(&bad, &MemoryDestination::new("lever"), at(1_000))
        .await
        .unwrap_err();
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.len() > 1000, "trace logs were captured");
    let config_debug = format!(
        "{:?}",
        serde_json::from_value::<sluice_source_lever::LeverConfig>(oauth.clone()).unwrap()
    );
    for s in [
        key.as_str(),
        secret.as_str(),
        refresh.as_str(),
        rotated.as_str(),
        "wrong-key-5f2e",
    ] {
        assert!(!logs.contains(s), "a secret is in the logs");
        assert!(!err.to_string().contains(s));
        assert!(!format!("{err:?}").contains(s));
        assert!(!config_debug.contains(s));
        assert!(!format!("{:?}", dest2.state().unwrap()).contains(s));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_without_credentials() {
    let config: Value = json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE"});
    let src = source();
    let line = src.check(&config).await.expect("demo check");
    assert!(line.contains("emulator"), "{line}");
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000)).await.expect("demo sync");
    assert_eq!(dest.committed_rows("opportunity").len(), 200);
    // base_url without credentials is a config error, not a demo.
    let r = src
        .check(&json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE", "base_url": "http://127.0.0.1:9/v1"}))
        .await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Config);
}
