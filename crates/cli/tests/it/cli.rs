use crate::harness::{
    FAST_SOURCE, Lever, assert_matches_truth, assert_summary_counts_the_stored_rows, base_command,
    output, read_dest, text,
};

fn write(dir: &std::path::Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_and_tables_list_the_registry() {
    let o = output(base_command(&["plugins"])).await;
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("lever") && out.contains("parquet"), "{out}");
    let o = output(base_command(&["tables", "lever"])).await;
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert_eq!(
        out.lines().filter(|l| !l.starts_with(' ')).count(),
        46,
        "{out}"
    );
    let o = output(base_command(&["tables", "nope"])).await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_exit_2_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let dest = dest.to_str().unwrap();
    let cases = [
        (
            "[tables.nope]\nenabled = false\n",
            "tables.nope: unknown table",
        ),
        (
            "[tables.users]\nblocked_columns = [\"nope\"]\n",
            "tables.users.blocked_columns: unknown column `nope`",
        ),
        (
            "[tables.users]\nblocked_columns = [\"id\"]\n",
            "tables.users.blocked_columns: `id` is part of the primary key",
        ),
        (
            "[tables.users]\nhashed_columns = [\"email\"]\n",
            "hash_salt",
        ),
        (
            "[tables.users]\nenabled = \"no\"\n",
            "tables.users.enabled: invalid type",
        ),
        ("[source]\nrate_limit_per_second = \"fast\"\n", "[source]"),
        ("[source]\nno_such_setting = 1\n", "no_such_setting"),
        ("[sink]\ndest = \"ftp://example/x\"\n", "dest"),
        ("[sink]\nbogus = true\n", "bogus"),
    ];
    for (i, (toml, expected)) in cases.iter().enumerate() {
        let cfg = write(dir.path(), &format!("c{i}.toml"), toml);
        let mut args = vec![
            "run", "lever", "--sink", "parquet", "--demo", "--config", &cfg,
        ];
        if !toml.starts_with("[sink]") {
            args.extend(["--dest", dest]);
        }
        let o = output(base_command(&args)).await;
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "case {toml:?}: {err}");
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains(expected),
            "case {toml:?}: last line {last:?} lacks {expected:?}"
        );
        assert!(last.starts_with("sluice: config error:"), "{last}");
    }
    assert!(
        !std::path::Path::new(dest).join("_sluice").exists(),
        "a config error touched the destination"
    );
    // Missing or empty credentials are config errors naming the variable, never a demo.
    let run = ["run", "lever", "--sink", "parquet", "--dest", dest];
    let o = output(base_command(&run)).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("LEVER_API_KEY") && err.contains("--demo"),
        "{err}"
    );
    let mut c = base_command(&run);
    c.env("LEVER_API_KEY", "");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("LEVER_API_KEY is set but empty"), "{err}");
    assert!(
        !std::path::Path::new(dest).exists(),
        "a missing key wrote to the destination"
    );
    // Unknown plugin names and a missing config file are config errors too.
    let o = output(base_command(&["run", "lever", "--sink", "nope"])).await;
    assert_eq!(o.status.code(), Some(2));
    let o = output(base_command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--config",
        "/nonexistent/sluice.toml",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2));
    // Usage errors (clap) exit 2 as well.
    let o = output(base_command(&["run"])).await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_api_key_exits_3_fast_without_retry_storm() {
    let lever = Lever::start(5).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let mut c = lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    c.env("LEVER_API_KEY", "definitely-not-a-key");
    lever.emu.reset_counters();
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        lever.emu.counters().total <= 3,
        "retry storm: {} requests",
        lever.emu.counters().total
    );
    assert!(!err.contains("definitely-not-a-key"), "key leaked: {err}");
    let mut c = lever.command(&["check", "lever"]);
    c.env("LEVER_API_KEY", "definitely-not-a-key");
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(3));
    let o = output(lever.command(&["check", "lever"])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_exits_4_and_unwritable_destination_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "fast.toml",
        "[source]\nmax_retries = 1\nrequest_timeout_secs = 2\n",
    );
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dest = dir.path().join("lake");
    let mut c = base_command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        dest.to_str().unwrap(),
        "--config",
        &cfg,
    ]);
    c.env("LEVER_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .env("LEVER_API_KEY", "k");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");

    // A destination below a regular file cannot be created (works as root too).
    let lever = Lever::start(5).await;
    let file = write(dir.path(), "not-a-dir", "x");
    let bad = format!("{file}/lake");
    let o = output(lever.command(&["run", "lever", "--sink", "parquet", "--dest", &bad])).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert_eq!(
        err.trim_end()
            .lines()
            .last()
            .map(|l| l.starts_with("sluice: destination error")),
        Some(true),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_state_resync_cycle_matches_truth() {
    let lever = Lever::start(30).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let d = dest.to_str().unwrap();
    let o = output(lever.command(&["run", "lever", "--sink", "parquet", "--dest", d])).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("TOTAL") && out.contains("opportunity"),
        "summary missing: {out}"
    );
    assert_matches_truth(&dest, &lever.emu).await;

    let o = output(base_command(&["state", "show", "--dest", d])).await;
    let (out, _) = text(&o);
    assert!(o.status.success());
    let state: serde_json::Value = serde_json::from_str(&out).expect("state is JSON");
    assert_eq!(state["source"], "lever");
    assert!(
        state["tables"]["opportunity"]["cursor"].is_object(),
        "{out}"
    );

    let o = output(base_command(&[
        "resync", "lever", "--table", "users", "--dest", d,
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o).1);
    let o = output(base_command(&["state", "show", "--dest", d])).await;
    let state: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(state["tables"]["users"]["resync_requested"], true);
    let o = output(base_command(&[
        "resync", "lever", "--table", "nope", "--dest", d,
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2));

    // Changes in Lever, then an incremental run that also honours the re-sync request.
    let opp = lever.emu.truth().opportunities[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lever.emu.add_note(&opp);
    lever.emu.change_stage(&opp);
    let user = lever.emu.truth().users[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lever.emu.delete_user(&user);
    let o = output(lever.command(&["run", "lever", "--sink", "parquet", "--dest", d])).await;
    assert!(o.status.success(), "{}", text(&o).1);
    assert_matches_truth(&dest, &lever.emu).await;
    let o = output(base_command(&["state", "show", "--dest", d])).await;
    let state: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_ne!(
        state["tables"]["users"]["resync_requested"], true,
        "re-sync flag not cleared"
    );
    let users = crate::harness::read_dest(&dest)
        .await
        .remove("users")
        .unwrap();
    let gone = users
        .iter()
        .find(|r| r["id"] == user.as_str())
        .expect("deleted user kept");
    assert_eq!(gone["_fivetran_deleted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_or_files() {
    let lever = Lever::start(5).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let salt = "pepper-salt-5f1c9e";
    let cfg = write(
        dir.path(),
        "sluice.toml",
        "[tables.contact_email]\nhashed_columns = []\n[tables.users]\nhashed_columns = [\"email\", \"name\"]\n",
    );
    let mut c = lever.command(&[
        "--log-format",
        "json",
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        dest.to_str().unwrap(),
        "--config",
        &cfg,
    ]);
    c.env("RUST_LOG", "trace").env("SLUICE_HASH_SALT", salt);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "{}",
        err.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(err.len() > 1000, "trace logging produced almost nothing");
    let key = lever.emu.api_key();
    for (what, secret) in [("api key", key.as_str()), ("salt", salt)] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{what} in output"
        );
        for entry in crate::harness::walk(&dest) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{what} written to {}",
                entry.display()
            );
        }
    }
    let users = crate::harness::read_dest(&dest)
        .await
        .remove("users")
        .unwrap();
    let email = users[0]["email"].as_str().unwrap();
    assert_eq!(email.len(), 64, "email not hashed: {email}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_example_config_is_valid_and_runs() {
    let lever = Lever::start(5).await;
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/sluice.example.toml"
    );
    let dest = dir.path().join("lake");
    let mut c = lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--config",
        example,
        "--dest",
        dest.to_str().unwrap(),
    ]);
    c.env("SLUICE_HASH_SALT", "example-salt");
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o).1);
    let tables = crate::harness::read_dest(&dest).await;
    let users = &tables["users"];
    assert!(!users.is_empty());
    let columns = crate::harness::file_columns(&dest, "users");
    assert!(
        columns.contains("email") && !columns.contains("photo"),
        "blocked column written: {columns:?}"
    );
    assert_eq!(
        users[0]["email"].as_str().map(str::len),
        Some(64),
        "email not hashed"
    );
    // Hashed columns stay joinable: every hashed owner id is the hash of a user id.
    let salt = sluice_core::Secret::new("example-salt");
    let user_hashes: std::collections::BTreeSet<String> = users
        .iter()
        .map(|u| sluice_core::hash_value(&salt, u["id"].as_str().unwrap().as_bytes()))
        .collect();
    let owners: Vec<&str> = tables["opportunity"]
        .iter()
        .filter_map(|o| o["owner_id"].as_str())
        .collect();
    assert!(!owners.is_empty());
    assert!(
        owners.iter().all(|o| user_hashes.contains(*o)),
        "hashed owner ids do not join users"
    );
    let history = crate::harness::file_columns(&dest, "opportunity_stage_history");
    assert!(
        history.contains("_fivetran_active") && history.contains("_fivetran_start"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_lake_refuses_a_real_account_and_keeps_its_data() {
    let lever = Lever::start(5).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let d = dest.to_str().unwrap();
    let o = output(base_command(&[
        "run", "lever", "--sink", "parquet", "--demo", "--dest", d,
    ]))
    .await;
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("--demo") && err.contains("emulator"), "{err}");
    let manifests = || {
        std::fs::read_dir(dest.join("_sluice").join("manifest"))
            .unwrap()
            .count()
    };
    let before = manifests();
    lever.emu.reset_counters();
    let o = output(lever.command(&["run", "lever", "--sink", "parquet", "--dest", d])).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sluice: config error:") && last.contains("demo data"),
        "{last}"
    );
    assert_eq!(lever.emu.counters().total, 0, "nothing was requested");
    assert_eq!(manifests(), before, "nothing was committed");
    let o = output(base_command(&["state", "show", "--dest", d])).await;
    let (out, _) = text(&o);
    assert!(out.contains("\"demo\": true"), "{out}");
}

/// The keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_describes_success_and_failure() {
    let lever = Lever::start(5).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let file = dir.path().join("summary.json");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "lever",
            "--sink",
            "parquet",
            "--dest",
            dest.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        lever.command(&args)
    };
    let o = output(run(&["--summary-json", file.to_str().unwrap()])).await;
    assert!(o.status.success(), "{}", text(&o).1);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        keys(&s),
        [
            "bytes_written",
            "commits",
            "committed",
            "duration_secs",
            "error",
            "exit_code",
            "finished_at",
            "requests",
            "schema",
            "sink",
            "source",
            "source_status",
            "started_at",
            "status",
            "tables",
            "throttled",
        ]
    );
    assert_eq!(s["schema"], "sluice.run-summary/1");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["exit_code"], 0);
    assert!(s["error"].is_null());
    assert_eq!(
        (s["source"].as_str(), s["sink"].as_str()),
        (Some("lever"), Some("parquet"))
    );
    assert!(s["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(s["duration_secs"].as_f64().unwrap() > 0.0);
    assert!(s["requests"].as_u64().unwrap() > 5);
    assert!(s["commits"].as_u64().unwrap() >= 1);
    let opp = &s["tables"]["opportunity"];
    assert_eq!(
        keys(opp),
        [
            "bytes_written",
            "deleted",
            "inserted",
            "rows_received",
            "updated"
        ]
    );
    assert_eq!(opp["inserted"], 5);
    assert_eq!(opp["rows_received"], 5);
    let table_bytes: u64 = s["tables"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["bytes_written"].as_u64().unwrap())
        .sum();
    assert_eq!(s["bytes_written"].as_u64(), Some(table_bytes));
    assert!(table_bytes > 0);
    assert_eq!(keys(&s["committed"]), ["committed_at", "cursors"]);
    assert_eq!(
        s["committed"]["cursors"]["opportunity"]["type"],
        "timestamp_ms"
    );

    // `-`: standard output holds the JSON alone.
    let o = output(run(&["--summary-json", "-"])).await;
    assert!(o.status.success(), "{}", text(&o).1);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(
        s["tables"]["opportunity"]["inserted"].as_u64().unwrap_or(0),
        0,
        "nothing new on the second run"
    );

    // A failing run still writes its summary: kind, message, exit code, the committed cursor.
    lever.emu.set_faults(sluice_lever_emulator::FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    let cfg = write(dir.path(), "no-retries.toml", "[source]\nmax_retries = 0\n");
    let o = output(run(&[
        "--config",
        &cfg,
        "--summary-json",
        file.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", text(&o).1);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(s["status"], "failed");
    assert_eq!(s["exit_code"], 4);
    assert_eq!(keys(&s["error"]), ["kind", "message", "retryable"]);
    assert_eq!(s["error"]["kind"], "upstream");
    assert!(!s["error"]["message"].as_str().unwrap().contains('\n'));
    assert_eq!(
        s["committed"]["cursors"]["opportunity"]["type"],
        "timestamp_ms"
    );
}

/// Reads the summary at `file`, checking the keys every summary has.
fn read_summary(file: &std::path::Path) -> serde_json::Value {
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(s["schema"], "sluice.run-summary/1");
    for key in [
        "status",
        "exit_code",
        "source",
        "sink",
        "started_at",
        "commits",
    ] {
        assert!(!s[key].is_null(), "{key} missing: {s}");
    }
    s
}

/// Failures before the sync starts (the configuration, the destination's credentials) still
/// write the summary: status `failed`, the exit code, the error's kind and one-line message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_is_written_when_configuration_or_destination_setup_fails() {
    let lever = Lever::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("summary.json");
    let dest = dir.path().join("lake");
    let summary = file.to_str().unwrap();
    let expect_config_failure = |o: &std::process::Output, needle: &str| {
        let (_, err) = text(o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let s = read_summary(&file);
        assert_eq!(s["status"], "failed", "{s}");
        assert_eq!(s["exit_code"], 2, "{s}");
        assert_eq!(s["error"]["kind"], "config", "{s}");
        let message = s["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(needle) && !message.contains('\n'),
            "{message}"
        );
        assert_eq!(s["commits"], 0, "{s}");
        assert!(s["committed"].is_null(), "{s}");
        std::fs::remove_file(&file).unwrap();
    };

    // A configuration file with an unknown key.
    let bad = write(dir.path(), "bad.toml", "bogus = 1\n");
    let o = output(lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        dest.to_str().unwrap(),
        "--config",
        &bad,
        "--summary-json",
        summary,
    ]))
    .await;
    expect_config_failure(&o, "bogus");

    // A bad SLUICE_* value (the summary's path from SLUICE_SUMMARY_JSON).
    let mut c = lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    c.env("SLUICE_TABLES__USERS__ENABLED", "\"maybe\"")
        .env("SLUICE_SUMMARY_JSON", summary);
    expect_config_failure(&output(c).await, "tables.users.enabled");

    // The destination's setup: an S3 profile that does not exist.
    let home = tempfile::tempdir().unwrap();
    let mut c = lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        "s3://lake/x",
        "--summary-json",
        summary,
    ]);
    c.env("HOME", home.path()).env("AWS_PROFILE", "nope");
    expect_config_failure(&output(c).await, "nope");
    assert_eq!(lever.emu.counters().total, 0, "nothing was requested");
}

/// A run that fails after some commits reports them: how many, and per table what they
/// inserted and wrote, equal to what the destination holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_of_a_run_failing_after_commits_reports_what_was_committed() {
    let lever = Lever::start(40).await;
    let hook: sluice_lever_emulator::ListHook = std::sync::Arc::new(|emu, n| {
        if n == 5 {
            emu.set_faults(sluice_lever_emulator::FaultConfig {
                error_rate: 1.0,
                ..Default::default()
            });
        }
    });
    lever.emu.set_list_hook(Some(hook));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let file = dir.path().join("summary.json");
    let cfg = write(
        dir.path(),
        "small.toml",
        &format!("commit_interval_secs = 0\n{FAST_SOURCE}page_size = 5\nmax_retries = 0\n"),
    );
    let o = output(lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        dest.to_str().unwrap(),
        "--config",
        &cfg,
        "--summary-json",
        file.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", text(&o).1);
    let s = read_summary(&file);
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["kind"], "upstream", "{s}");
    assert!(!s["committed"].is_null(), "{s}");
    // The figures are those of the committed data (which tables got there before the failure
    // depends on the order of concurrent requests).
    assert_summary_counts_the_stored_rows(&s, &read_dest(&dest).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_can_come_from_the_environment() {
    let lever = Lever::start(5).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("env-lake");
    // No file at all: the destination, rate limit and a blocked table come from variables.
    let mut c = base_command(&["run", "lever", "--sink", "parquet"]);
    c.current_dir(dir.path())
        .env("LEVER_BASE_URL", lever.server.base_url())
        .env("LEVER_API_KEY", lever.emu.api_key())
        .env("SLUICE_SINK__DEST", dest.to_str().unwrap())
        .env("SLUICE_SOURCE__RATE_LIMIT_PER_SECOND", "10000")
        .env("SLUICE_SOURCE__RATE_LIMIT_BURST", "10000")
        .env("SLUICE_TABLES__OPPORTUNITY_TAG__ENABLED", "false")
        .env("SLUICE_LOG_FORMAT", "json");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with('{') && l.contains("sync starting")),
        "SLUICE_LOG_FORMAT=json: {err}"
    );
    assert!(
        dest.join("opportunity").exists(),
        "SLUICE_SINK__DEST was used"
    );
    assert!(
        !dest.join("opportunity_tag").exists(),
        "the table blocked by a variable"
    );
    // A bad value from a variable is a config error naming the key.
    let mut c = base_command(&["run", "lever", "--sink", "parquet", "--demo"]);
    c.current_dir(dir.path())
        .env("SLUICE_SINK__DEST", dest.to_str().unwrap())
        .env("SLUICE_TABLES__USERS__ENABLED", "\"maybe\"");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tables.users.enabled") && err.contains("SLUICE_"),
        "{err}"
    );
    // `config show` merges the file and the variables, redacts secrets, says where each
    // value came from.
    let cfg = write(
        dir.path(),
        "sluice.toml",
        "[source]\npage_size = 50\napi_key = \"file-key-7\"\n[sink]\ndest = \"./lake\"\n",
    );
    let mut c = base_command(&["config", "show", "--config", &cfg]);
    c.env("SLUICE_SINK__DEST", "s3://bucket/lever")
        .env("SLUICE_SOURCE__OAUTH__CLIENT_SECRET", "env-secret-9")
        .env(
            "SLUICE_SINK__NETWORK__PROXY_URL",
            "http://proxy-user:p4ss@proxy:3128",
        )
        .env(
            "SLUICE_SOURCE__BASE_URL",
            "https://api.example/v1?sv=2020&sig=s1gn4ture",
        )
        .env("LEVER_API_KEY", "env-key-3");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains(&format!("page_size = 50  # from {cfg}")),
        "{out}"
    );
    assert!(
        out.contains("dest = \"s3://bucket/lever\"  # from environment SLUICE_SINK__DEST"),
        "{out}"
    );
    assert!(out.contains("# LEVER_API_KEY is set"), "{out}");
    assert!(
        out.contains(
            "proxy_url = \"http://***@proxy:3128\"  # from environment SLUICE_SINK__NETWORK__PROXY_URL"
        ),
        "{out}"
    );
    assert!(
        out.contains("base_url = \"https://api.example/v1?sv=2020&sig=***\""),
        "{out}"
    );
    // Defaults are shown and marked as such.
    for line in [
        "commit_interval_secs = 30  # default",
        "commit_max_rows = 250000  # default",
        "rate_limit_per_second = 10  # default",
        "lease_ttl_secs = 600  # default",
    ] {
        assert!(out.contains(line), "{line} missing: {out}");
    }
    for secret in [
        "file-key-7",
        "env-secret-9",
        "env-key-3",
        "p4ss",
        "proxy-user",
        "s1gn4ture",
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} shown: {out}"
        );
    }
}

/// `config show`: `--dest` and the sink named by `--sink` (its own keys' defaults), each value
/// marked with its origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_show_marks_defaults_file_environment_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "sluice.toml",
        "commit_interval_secs = 5\n[source]\npriority_first = false\n",
    );
    let mut c = base_command(&[
        "config",
        "show",
        "--config",
        &cfg,
        "--sink",
        "delta",
        "--dest",
        "/data/lake",
    ]);
    c.env("SLUICE_SINK__KEEP_MANIFESTS", "3");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for line in [
        format!("commit_interval_secs = 5  # from {cfg}"),
        "commit_max_rows = 250000  # default".to_owned(),
        format!("priority_first = false  # from {cfg}"),
        "page_size = 100  # default".to_owned(),
        "dest = \"/data/lake\"  # from flag --dest".to_owned(),
        "keep_manifests = 3  # from environment SLUICE_SINK__KEEP_MANIFESTS".to_owned(),
        "max_deleted_share = 0.25  # default".to_owned(),
    ] {
        assert!(out.contains(&line), "{line} missing: {out}");
    }
    // Every key line says where its value came from.
    for line in out.lines().filter(|l| l.contains(" = ")) {
        assert!(line.contains("  # "), "no origin: {line}");
    }
}

/// A priority-first first sync stopped part-way (at the CLI's default commit interval) says
/// how far back the committed data is complete: on stderr before the error, in
/// `--summary-json` (`source_status`) and in `sluice state show`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_priority_first_sync_says_how_far_back_the_data_is_complete() {
    use sluice_lever_emulator::{FaultConfig, ListHook};
    let lever = Lever::start(40).await;
    lever.emu.spread_recent_activity(0.5, 365);
    let hook: ListHook = std::sync::Arc::new(|emu, k| {
        if k == 4 {
            emu.set_faults(FaultConfig {
                error_rate: 1.0,
                drop_rate: 0.0,
                seed: 3,
            });
        }
    });
    lever.emu.set_list_hook(Some(hook));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let d = dest.to_str().unwrap();
    let file = dir.path().join("summary.json");
    let cfg = write(
        dir.path(),
        "small-pages.toml",
        &format!(
            "{}max_retries = 0\npage_size = 5\n",
            crate::harness::FAST_SOURCE
        ),
    );
    let o = output(lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        d,
        "--config",
        &cfg,
        "--summary-json",
        file.to_str().unwrap(),
    ]))
    .await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    let back_to = "opportunities complete back to ";
    assert!(err.lines().any(|l| l.starts_with(back_to)), "stderr: {err}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(s["status"], "failed");
    assert!(
        s["source_status"]
            .as_str()
            .is_some_and(|t| t.starts_with(back_to)),
        "{}",
        s["source_status"]
    );
    let o = output(base_command(&[
        "state", "show", "--sink", "parquet", "--dest", d,
    ]))
    .await;
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.contains("complete_back_to") && out.contains(back_to),
        "{out}"
    );
}
