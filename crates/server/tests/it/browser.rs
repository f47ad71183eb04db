//! The status page in a real headless browser (Debian's chromium through Selenium): it loads,
//! shows the connection created through the API, and its "Sync now" button starts a run.
//! Skipped, saying so, only when chromium is absent and neither `CI=true` nor
//! `SLUICE_REQUIRE_BROWSER` is set (`.ci/run` sets the latter): in CI a missing browser fails.

use crate::harness::*;
use std::process::Command;

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a missing browser fails the test: in CI (`CI=true`, the convention of the other
/// tool tests) or when `SLUICE_REQUIRE_BROWSER` is set.
fn browser_required(require_browser: bool, ci: Option<&str>) -> bool {
    require_browser || ci == Some("true")
}

#[test]
fn a_missing_browser_fails_in_ci() {
    assert!(browser_required(false, Some("true")));
    assert!(browser_required(true, None));
    assert!(!browser_required(false, None));
    assert!(!browser_required(false, Some("false")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_connections_and_syncs_now_in_chromium() {
    let chromium = have("chromium") && have("chromedriver");
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(chromium && selenium) {
        let why = "chromium, chromedriver or python3's selenium is not installed (apt-get install chromium chromium-driver; pip install selenium)";
        if browser_required(
            std::env::var_os("SLUICE_REQUIRE_BROWSER").is_some(),
            std::env::var("CI").ok().as_deref(),
        ) {
            panic!("chromium is required here (CI=true or SLUICE_REQUIRE_BROWSER) but {why}");
        }
        println!("SKIPPED status_page_shows_connections_and_syncs_now_in_chromium: {why}");
        eprintln!("SKIPPED status_page_shows_connections_and_syncs_now_in_chromium: {why}");
        return;
    }
    let lever = Lever::start(10).await;
    let s = TestServer::start().await;
    let id = s.lever_connection(&lever, 30).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/status_page.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&s.base)
        .arg(TOKEN)
        .arg(&id)
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    // The button started a run through the same runner as the API.
    let run = s.wait_for_run(&id, |r| r["trigger"] == "manual").await;
    let run = s.wait_run(run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    s.stop().await;
}
