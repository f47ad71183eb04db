//! Authentication: bad keys, OAuth rotation, confidential access, secrets in logs, demo mode.

use crate::common::*;
use serde_json::{Value, json};
use sluice_core::{CheckContext, DynSource, ErrorKind, SecretStore};
use sluice_lever_emulator::{EmulatorConfig, RotationPolicy};
use sluice_source_lever::REFRESH_TOKEN_STATE_KEY;
use sluice_testkit::{FailPoint, MemoryDestination};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_api_key_fails_fast_with_auth() {
    let env = Env::start(5).await;
    let mut config = env.config();
    config["api_key"] = json!("not-a-valid-key");
    let dest = MemoryDestination::new("lever");
    let r = sync(&config, &dest, at(1_000)).await;
    assert_kind(&r, ErrorKind::Auth);
    assert!(
        env.emu.counters().total <= 2,
        "no retry storm: {:?}",
        env.emu.counters()
    );
    let msg = r.unwrap_err().to_string();
    assert!(!msg.contains("not-a-valid-key"), "{msg}");
    assert!(msg.contains("API key"), "{msg}");
    let check = source().check(&config, CheckContext::default()).await;
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

/// An emulator whose OAuth access tokens live `ttl`, and an OAuth configuration for a fresh
/// authorization of a new client. Rotation is strict: a rotated refresh token dies at once,
/// and presenting it again revokes the whole authorization.
async fn oauth_env(ttl: Duration) -> (Env, Value, String) {
    let env = Env::with(EmulatorConfig {
        opportunities: 20,
        rate_limit: None,
        access_token_ttl: ttl,
        latency: Duration::from_millis(3),
        oauth_rotation: RotationPolicy {
            grace: Duration::ZERO,
            reuse_revokes_family: true,
        },
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
    (env, config, refresh)
}

fn saved_token(dest: &MemoryDestination) -> String {
    dest.secrets()
        .get(REFRESH_TOKEN_STATE_KEY)
        .expect("a refresh token is saved")
        .expose()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refresh_token_rotates_across_runs() {
    let (env, config, refresh) = oauth_env(Duration::from_secs(2)).await;
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("first OAuth run");
    let rotated = saved_token(&dest);
    assert_ne!(rotated, refresh, "the refresh token rotated");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    let state = dest.state().unwrap().to_json();
    assert!(
        !String::from_utf8(state).unwrap().contains(&rotated),
        "the token is kept once, in the secret store, not in the state"
    );
    // The second run starts from the saved token (the configuration's is spent).
    sync(&config, &dest, at(2_000))
        .await
        .expect("second OAuth run");
    let again = saved_token(&dest);
    assert_ne!(again, rotated);
    // The configuration's token was rotated long ago: presenting it on a fresh destination
    // is reuse, which revokes the authorization (every later token of it).
    let fresh = MemoryDestination::new("lever");
    let r = sync(&config, &fresh, at(3_000)).await;
    assert_kind(&r, ErrorKind::Auth);
    assert!(r.unwrap_err().to_string().contains("refresh token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_check_then_run_starts_from_the_token_check_rotated() {
    let (env, config, refresh) = oauth_env(Duration::from_secs(3600)).await;
    let dest = MemoryDestination::new("lever");
    let store: Arc<dyn SecretStore> = Arc::new(dest.secrets().clone());
    let line = source()
        .check(&config, CheckContext::new(Some(store)))
        .await
        .expect("check");
    assert!(line.contains("OAuth"), "{line}");
    let after_check = saved_token(&dest);
    assert_ne!(
        after_check, refresh,
        "check rotated the token and saved the new one"
    );
    sync(&config, &dest, at(1_000))
        .await
        .expect("the run after check starts from the token check saved");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    // Without a store, OAuth refuses to start instead of losing the rotated token.
    let r = source().check(&config, CheckContext::default()).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_failing_run_then_rerun_keeps_a_working_token() {
    let (env, config, _) = oauth_env(Duration::from_secs(3600)).await;
    let dest = MemoryDestination::new("lever");
    // The first write fails: the run stops before its first commit, after it refreshed.
    dest.fail_at(FailPoint::Write(0));
    let r = sync(&config, &dest, at(1_000)).await;
    assert!(r.is_err(), "the injected failure stops the run");
    assert!(dest.table_names().is_empty(), "no data was committed");
    assert_eq!(
        dest.secrets().saves(),
        1,
        "the rotated token was saved anyway"
    );
    sync(&config, &dest, at(2_000))
        .await
        .expect("the rerun starts from the saved token");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_that_cannot_be_saved_is_never_used() {
    let (env, config, _) = oauth_env(Duration::from_secs(3600)).await;
    let dest = MemoryDestination::new("lever");
    dest.secrets().fail_saves(true);
    let r = sync(&config, &dest, at(1_000)).await;
    assert_kind(&r, ErrorKind::Destination);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("saving the rotated OAuth refresh token"),
        "{msg}"
    );
    let data_requests = env
        .emu
        .counters()
        .by_endpoint
        .iter()
        .filter(|(k, _)| !k.contains("oauth"))
        .map(|(_, v)| v.requests)
        .sum::<u64>();
    assert_eq!(
        data_requests, 0,
        "no request used the unsaved token's access token"
    );
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
    let rotated = saved_token(&dest2);
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
async fn demo_mode_only_when_asked() {
    let src = source();
    // No credentials is a config error naming the variable, not a demo.
    let none: Value = json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE"});
    let e = src.check(&none, CheckContext::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("SLUICE_TEST_NO_SUCH_VARIABLE"),
        "{e}"
    );
    assert!(e.to_string().contains("--demo"), "{e}");
    let dest = MemoryDestination::new("lever");
    assert_kind(&sync(&none, &dest, at(1_000)).await, ErrorKind::Config);
    assert!(dest.state().is_none() && dest.table_names().is_empty());
    // Asked for, the built-in emulator serves demo data, and the state says so.
    let demo: Value = json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE", "demo": true});
    let line = src
        .check(&demo, CheckContext::default())
        .await
        .expect("demo check");
    assert!(line.contains("emulator"), "{line}");
    sync(&demo, &dest, at(1_000)).await.expect("demo sync");
    assert_eq!(dest.committed_rows("opportunity").len(), 200);
    let origin = dest.state().unwrap().origin.expect("origin recorded");
    assert!(origin.demo, "{origin:?}");
    // Demo with credentials or a base URL is ambiguous: refused.
    for bad in [
        json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE", "demo": true, "api_key": "k"}),
        json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE", "demo": true, "base_url": "http://127.0.0.1:9/v1"}),
        json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE", "api_key": " "}),
    ] {
        let e = src.check(&bad, CheckContext::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_of_another_origin_is_refused() {
    let env = Env::start(5).await;
    let dest = MemoryDestination::new("lever");
    let demo: Value = json!({"api_key_env": "SLUICE_TEST_NO_SUCH_VARIABLE", "demo": true});
    sync(&demo, &dest, at(1_000)).await.expect("demo sync");
    let committed = dest.commits();
    let before = dest.snapshot();
    // A real account's run into the demo lake is refused before anything is requested.
    let r = sync(&env.config(), &dest, at(2_000)).await;
    assert_kind(&r, ErrorKind::Config);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("demo data") && msg.contains(&env.server.base_url()),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert_eq!(env.emu.counters().total, 0, "nothing was requested");
    assert_eq!(dest.commits(), committed);
    assert_eq!(dest.snapshot(), before, "the demo lake is untouched");
    // And the other way round: an account's lake never receives demo rows.
    let real = MemoryDestination::new("lever");
    sync(&env.config(), &real, at(1_000))
        .await
        .expect("real sync");
    assert_kind(&sync(&demo, &real, at(2_000)).await, ErrorKind::Config);
    // Explicitly allowed (a new base URL of the same account), the new origin is recorded.
    let mut moved = env.config();
    moved["base_url"] = json!(format!("{}/", env.server.base_url()));
    sync(&moved, &real, at(3_000))
        .await
        .expect("a trailing slash is the same origin");
    let options = sluice_core::SyncOptions::default()
        .with_allow_origin_change(true)
        .with_started_at_ms(4_000);
    sluice_testkit::sync_with(&source(), &demo, &real, options)
        .await
        .expect("allowed origin change");
    assert!(real.state().unwrap().origin.unwrap().demo);
}

/// Lever extras of a newer build (a newer `extra.format`, or a field this build does not know)
/// are refused with one line saying to upgrade, before any request and without a commit;
/// they are never reset to defaults. Extras that record no format (format 1) are read.
#[tokio::test]
async fn state_extras_of_a_newer_build_are_refused() {
    let env = Env::start(5).await;
    let dest = MemoryDestination::new("lever");
    sync(&env.config(), &dest, at(1_000))
        .await
        .expect("first sync");
    let written = dest.state().unwrap();
    assert_eq!(written.extra["format"], json!(1), "{}", written.extra);
    // Extras written before the format was recorded.
    let mut unrecorded = written.clone();
    unrecorded.extra.as_object_mut().unwrap().remove("format");
    dest.replace_state(unrecorded);
    sync(&env.config(), &dest, at(2_000))
        .await
        .expect("extras without a format are read");
    let mut newer_format = dest.state().unwrap().extra;
    newer_format["format"] = json!(99);
    let mut unknown_walk_field = dest.state().unwrap().extra;
    unknown_walk_field["walk"] =
        json!({"offset": "t", "pages": 3, "full": true, "started_ms": 5, "lane": 2});
    let mut unknown_field = dest.state().unwrap().extra;
    unknown_field["cursor_v2"] = json!(7);
    for extra in [newer_format, unknown_walk_field, unknown_field] {
        let mut state = dest.state().unwrap();
        state.extra = extra.clone();
        dest.replace_state(state);
        let (requests, commits) = (env.emu.counters().total, dest.commits());
        let r = sync(&env.config(), &dest, at(3_000)).await;
        assert_kind(&r, ErrorKind::Destination);
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("upgrade sluice"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(env.emu.counters().total, requests, "nothing was requested");
        assert_eq!(dest.commits(), commits, "nothing was committed");
        assert_eq!(dest.state().unwrap().extra, extra, "the extras are kept");
    }
}

/// A destination whose state records no origin (written by an older sluice) is adopted with a
/// warning that names the risk, and the origin is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_without_a_recorded_origin_is_adopted_with_a_warning() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber in this process");
    let env = Env::start(5).await;
    let dest = MemoryDestination::new("lever");
    sync(&env.config(), &dest, at(1_000))
        .await
        .expect("first sync");
    let mut older = dest.state().unwrap();
    older.origin = None;
    dest.replace_state(older);
    sync(&env.config(), &dest, at(2_000))
        .await
        .expect("adopted");
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("WARN") && logs.contains("did not record where its data came from"),
        "{logs}"
    );
    assert!(dest.state().unwrap().origin.is_some());
}
