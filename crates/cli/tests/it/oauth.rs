//! OAuth with refresh-token rotation as a new user meets it, against an emulator whose
//! rotated tokens die at once and whose reuse detection revokes the whole authorization: a
//! token rotated by `check`, by a run that fails before its first commit, or by a run killed
//! right after a refresh is never lost.

use crate::harness::*;
use sluice_lever_emulator::{EmulatorConfig, FaultConfig, RotationPolicy};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the parquet sink keeps the rotated refresh token.
fn token_file(dest: &Path) -> PathBuf {
    dest.join("_sluice")
        .join("secrets")
        .join("lever_oauth_refresh_token")
}

/// An emulator with strict rotation, a registered OAuth app and its first refresh token, and
/// a configuration file for it.
struct OAuthAccount {
    lever: Lever,
    dir: tempfile::TempDir,
    config: String,
    first_token: String,
}

impl OAuthAccount {
    async fn start(config: EmulatorConfig, extra_source: &str) -> OAuthAccount {
        let lever = Lever::with(EmulatorConfig {
            oauth_rotation: RotationPolicy {
                grace: Duration::ZERO,
                reuse_revokes_family: true,
            },
            ..config
        })
        .await;
        let (id, secret) = lever.emu.register_oauth_client();
        let first_token = lever.emu.issue_refresh_token(&id, true);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            format!(
                "commit_interval_secs = 0\n[source]\nbase_url = \"{}\"\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n{extra_source}\n[source.oauth]\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\nrefresh_token = \"{first_token}\"\ntoken_url = \"{}/oauth/token\"\n",
                lever.server.base_url(),
                lever.server.root_url()
            ),
        )
        .unwrap();
        OAuthAccount {
            lever,
            config: path.to_str().unwrap().to_owned(),
            dir,
            first_token,
        }
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let dest = self.dest();
        let mut all = vec!["--no-progress"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dest", dest.to_str().unwrap(), "--config", &self.config]);
        base_command(&all)
    }

    fn run(&self) -> tokio::process::Command {
        self.command(&["run", "lever", "--sink", "parquet"])
    }

    fn saved_token(&self) -> Option<String> {
        std::fs::read_to_string(token_file(&self.dest())).ok()
    }

    /// The saved token is private, and appears in no other file of the destination.
    fn assert_token_kept_once_and_private(&self) {
        let token = self.saved_token().expect("a token is saved");
        assert_ne!(
            token, self.first_token,
            "the saved token is the rotated one"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_file(&self.dest()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for file in walk(&self.dest()) {
            if file == token_file(&self.dest()) {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "the refresh token is also in {}",
                file.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn small() -> EmulatorConfig {
    EmulatorConfig {
        opportunities: 20,
        rate_limit: None,
        ..EmulatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_then_run_uses_the_token_check_rotated() {
    let a = OAuthAccount::start(small(), "").await;
    let o = output(a.command(&["check", "lever"])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "check: {err}");
    assert!(out.contains("OAuth"), "{out}");
    assert!(a.saved_token().is_some(), "check saved the rotated token");
    let o = output(a.run()).await;
    assert!(o.status.success(), "run after check: {}", text(&o).1);
    assert_matches_truth(&a.dest(), &a.lever.emu).await;
    a.assert_token_kept_once_and_private();
    let o = output(a.run()).await;
    assert!(o.status.success(), "second run: {}", text(&o).1);
    a.assert_token_kept_once_and_private();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failing_before_its_first_commit_then_a_rerun_syncs() {
    let a = OAuthAccount::start(small(), "max_retries = 0\n").await;
    // Every data request answers 500: the run fails after it refreshed the token.
    a.lever.emu.set_faults(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let o = output(a.run()).await;
    assert_eq!(o.status.code(), Some(4), "{}", text(&o).1);
    assert!(a.saved_token().is_some(), "the rotated token was saved");
    a.lever.emu.set_faults(FaultConfig::default());
    let o = output(a.run()).await;
    assert!(o.status.success(), "rerun: {}", text(&o).1);
    assert_matches_truth(&a.dest(), &a.lever.emu).await;
    a.assert_token_kept_once_and_private();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_a_refresh_then_a_rerun_syncs() {
    // Access tokens live one second: a run refreshes every second or so.
    let a = OAuthAccount::start(
        EmulatorConfig {
            access_token_ttl: Duration::from_secs(1),
            latency: Duration::from_millis(20),
            ..small()
        },
        "page_size = 2\nmax_concurrency = 2\n",
    )
    .await;
    let mut child = a
        .run()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the second rotation the run saves, then kill it at once.
    let t = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 2 && t.elapsed() < Duration::from_secs(60) {
        if let Some(tok) = a.saved_token()
            && seen.last() != Some(&tok)
        {
            seen.push(tok);
        }
        if seen.len() < 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(seen.len(), 2, "the run refreshed twice");
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal, not finished");
    let o = output(a.run()).await;
    assert!(o.status.success(), "rerun after SIGKILL: {}", text(&o).1);
    assert_matches_truth(&a.dest(), &a.lever.emu).await;
    a.assert_token_kept_once_and_private();
}
