use crate::harness::{Lever, assert_matches_truth, base_command, output, text};

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
        .map(|u| sluice_core::transform::hash_value(&salt, u["id"].as_str().unwrap().as_bytes()))
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
