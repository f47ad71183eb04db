//! SIGKILL at 20 points spread over a sync (reading, writing files, committing), each followed
//! by a recovery run: the output must equal the truth, with no key twice and no file in a table
//! folder that the manifest does not list.

use crate::harness::{Lever, assert_matches_truth, output, walk};
use std::path::Path;
use std::time::{Duration, Instant};

/// `sluice run lever --sink parquet --dest <dest> --config <cfg>`, quiet.
fn sync_command(lever: &Lever, dest: &str, cfg: &str) -> tokio::process::Command {
    sync_command_to(lever, "parquet", dest, cfg)
}

/// `sluice run lever --sink <sink> --dest <dest> --config <cfg>`, quiet.
fn sync_command_to(lever: &Lever, sink: &str, dest: &str, cfg: &str) -> tokio::process::Command {
    lever.command(&[
        "--no-progress",
        "run",
        "lever",
        "--sink",
        sink,
        "--dest",
        dest,
        "--config",
        cfg,
    ])
}

/// Rows found by globbing every Parquet file of every table folder, as a reader like DuckDB
/// would; they must equal the committed (manifest) rows, so no orphan file is visible.
fn glob_rows(dest: &Path) -> std::collections::BTreeMap<String, usize> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dest).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !p.is_dir() || name.starts_with('_') {
            continue;
        }
        let mut rows = 0;
        for f in walk(&p) {
            if f.extension().is_some_and(|x| x == "parquet") {
                let r = SerializedFileReader::new(std::fs::File::open(&f).unwrap()).unwrap();
                rows += r.metadata().file_metadata().num_rows() as usize;
            }
        }
        out.insert(name, rows);
    }
    out
}

/// Writes a config with small pages (many checkpoints) committed at every checkpoint, so that
/// interruptions land in every phase, commits included. Returns its path.
fn small_pages_config(dir: &Path) -> String {
    let cfg = dir.join("sluice.toml");
    let text = format!(
        "commit_interval_secs = 0\n{}page_size = 4\n",
        crate::harness::FAST_SOURCE
    );
    std::fs::write(&cfg, text).unwrap();
    cfg.to_str().unwrap().to_owned()
}

/// Starts `run`, kills it with SIGKILL after `at` (tokio's kill sends SIGKILL on Unix), then
/// runs `rerun` to completion, which must succeed.
async fn kill_then_recover(
    mut run: tokio::process::Command,
    at: Duration,
    rerun: tokio::process::Command,
    kill: u32,
) {
    let mut child = run
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(at).await;
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let o = output(rerun).await;
    assert!(
        o.status.success(),
        "recovery run after kill {kill} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The live (highest) manifest version of the destination `dest`.
fn latest_manifest(dest: &Path) -> serde_json::Value {
    let latest = std::fs::read_dir(dest.join("_sluice/manifest"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .expect("a manifest");
    serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap()
}

/// Checks a Delta mode destination after a recovery run: every data file in a table folder
/// (outside `_delta_log`) is a live or retired (kept for its retention) file of the manifest, and
/// each table's Delta log has exactly the versions up to the one the manifest records.
/// Returns how many deletion vector files there are.
fn assert_delta_consistent(dest: &Path, kill: u32) -> usize {
    let mut vector_files = 0;
    let m = latest_manifest(dest);
    for (table, entry) in m["tables"].as_object().unwrap() {
        let folder = dest.join(table);
        let mut want: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for f in entry["files"].as_array().unwrap() {
            want.insert(f["name"].as_str().unwrap().to_owned());
        }
        // Files superseded by a commit stay for Delta readers of older versions until their
        // retention is over; the manifest lists them as retired.
        for f in entry["retired"].as_array().into_iter().flatten() {
            let name = f["name"].as_str().unwrap();
            if name.ends_with(".parquet") {
                want.insert(name.to_owned());
            }
        }
        let mut found = std::collections::BTreeSet::new();
        let mut versions = Vec::new();
        for f in walk(&folder) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if f.parent().is_some_and(|p| p.ends_with("_delta_log")) {
                // Checkpoints (every 10th version) may be there too, or may be missing if
                // the kill came before them; only the JSON versions must be complete.
                if name.ends_with(".json") {
                    versions.push(name);
                } else {
                    assert!(
                        name == "_last_checkpoint" || name.ends_with("0.checkpoint.parquet"),
                        "kill {kill}: unexpected {name} in the Delta log"
                    );
                }
            } else if name.ends_with(".parquet") {
                found.insert(name);
            } else {
                assert!(
                    name.starts_with("deletion_vector_"),
                    "kill {kill}: unexpected {name}"
                );
                vector_files += 1;
            }
        }
        assert_eq!(
            found, want,
            "kill {kill}: table {table} differs from the manifest"
        );
        let version = entry["delta"]["version"].as_u64().expect("a Delta version");
        versions.sort();
        let expected: Vec<String> = (0..=version).map(|v| format!("{v:020}.json")).collect();
        assert_eq!(versions, expected, "kill {kill}: table {table}'s Delta log");
    }
    vector_files
}

/// Checks an Iceberg destination after a recovery run: every file in a table folder
/// (outside `metadata/`) is a live or retired file of the manifest (data files,
/// position-delete files and their deletion vectors); `metadata/` holds
/// exactly versions 1 to the one the manifest records, the version hint names it, and the
/// manifest list and manifest each version names are there.
fn assert_iceberg_consistent(dest: &Path, kill: u32) {
    let m = latest_manifest(dest);
    for (table, entry) in m["tables"].as_object().unwrap() {
        let folder = dest.join(table);
        let mut want: std::collections::BTreeSet<String> = entry["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect();
        for f in entry["retired"].as_array().into_iter().flatten() {
            want.insert(f["name"].as_str().unwrap().to_owned());
        }
        // Each position-delete file, and the deletion vector file it was written beside.
        for f in entry["files"].as_array().unwrap() {
            if let Some(d) = f["delete_file"]["name"].as_str() {
                assert!(f["dv"].is_object(), "kill {kill}: {table}: {f}");
                want.insert(d.to_owned());
                want.insert(d.replace(".parquet", ".bin"));
            }
        }
        let mut found = std::collections::BTreeSet::new();
        let mut versions = Vec::new();
        let mut avro = std::collections::BTreeSet::new();
        for f in walk(&folder) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if f.parent().is_some_and(|p| p.ends_with("metadata")) {
                if let Some(v) = name
                    .strip_prefix('v')
                    .and_then(|n| n.strip_suffix(".metadata.json"))
                {
                    versions.push(v.parse::<u64>().unwrap());
                } else if name.ends_with(".avro") {
                    avro.insert(name);
                } else {
                    assert_eq!(name, "version-hint.text", "kill {kill}: unexpected {name}");
                }
            } else {
                found.insert(name);
            }
        }
        assert_eq!(
            found, want,
            "kill {kill}: table {table} differs from the manifest"
        );
        let version = entry["delta"]["version"]
            .as_u64()
            .expect("a metadata version");
        versions.sort_unstable();
        assert_eq!(
            versions,
            (1..=version).collect::<Vec<_>>(),
            "kill {kill}: table {table}'s metadata versions"
        );
        let hint = std::fs::read_to_string(folder.join("metadata/version-hint.text")).unwrap();
        assert_eq!(hint.trim(), version.to_string(), "kill {kill}: {table}");
        for v in 1..=version {
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(folder.join(format!("metadata/v{v}.metadata.json"))).unwrap(),
            )
            .unwrap();
            let list = meta["snapshots"][0]["manifest-list"].as_str().unwrap();
            let list = list.rsplit('/').next().unwrap();
            assert!(avro.contains(list), "kill {kill}: {table} v{v}: no {list}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twenty_points_then_rerun_matches_truth() {
    sigkill_at_twenty_points("parquet").await;
}

/// The same with the `delta` sink, whose commits also publish Delta log versions: after
/// each recovery run every table's log has exactly the versions its manifest records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twenty_points_then_rerun_matches_truth_with_the_delta_sink() {
    sigkill_at_twenty_points("delta").await;
}

/// The same with the `iceberg` sink, whose commits also publish Iceberg metadata versions:
/// after each recovery run the table folders and metadata match the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twenty_points_then_rerun_matches_truth_with_the_iceberg_sink() {
    sigkill_at_twenty_points("iceberg").await;
}

/// Changes half of the emulator's opportunities (notes, feedback, stage changes, field
/// updates, in turn) and creates two. No opportunity is deleted: the connector deliberately
/// keeps the other child rows of deleted opportunities (`connectors/lever/README.md`),
/// which the truth drops.
fn change_half(lever: &Lever, round: usize) {
    let ids: Vec<String> = lever
        .emu
        .truth()
        .opportunities
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect();
    for (n, id) in ids
        .iter()
        .enumerate()
        .filter(|(n, _)| (n + round).is_multiple_of(2))
    {
        match (n / 2 + round) % 4 {
            0 => drop(lever.emu.add_note(id)),
            1 => drop(lever.emu.add_feedback(id)),
            2 => lever.emu.change_stage(id),
            _ => lever.emu.update_opportunity(id),
        }
    }
    lever.emu.create_opportunity();
    lever.emu.create_opportunity();
}

/// The `delta` sink, killed at 10 points spread over incremental syncs that change stored
/// rows (so that commits write deletion vectors), then run again: the output equals the
/// truth, every data file is the manifest's, and each table's Delta log holds exactly the
/// versions the manifest records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_incremental_syncs_with_the_delta_sink() {
    let lever = Lever::start(20).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_pages_config(dir.path());
    let sync = |dest: &str| sync_command_to(&lever, "delta", dest, &cfg);

    // A clean full sync, a change, and a clean incremental sync measure the duration.
    let clean = dir.path().join("clean");
    let d = clean.to_str().unwrap().to_owned();
    assert!(output(sync(&d)).await.status.success());
    change_half(&lever, 1);
    let t = Instant::now();
    let o = output(sync(&d)).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let duration = t.elapsed();
    assert_matches_truth(&clean, &lever.emu).await;
    assert!(
        assert_delta_consistent(&clean, 0) > 0,
        "the incremental sync wrote no deletion vector"
    );

    let mut vector_files = 0;
    let points = 10u32;
    for i in 1..=points {
        let dest = dir.path().join(format!("k{i}"));
        let d = dest.to_str().unwrap().to_owned();
        assert!(output(sync(&d)).await.status.success());
        change_half(&lever, i as usize + 1);
        let at = duration.mul_f64(f64::from(i) / f64::from(points + 1));
        kill_then_recover(sync(&d), at, sync(&d), i).await;
        assert_matches_truth(&dest, &lever.emu).await;
        vector_files += assert_delta_consistent(&dest, i);
    }
    assert!(
        vector_files > 0,
        "no kill point left a deletion vector to check"
    );
}

async fn sigkill_at_twenty_points(sink: &str) {
    let sync_command =
        |lever: &Lever, dest: &str, cfg: &str| sync_command_to(lever, sink, dest, cfg);
    let lever = Lever::start(20).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_pages_config(dir.path());

    // A clean run measures the duration to spread the kill points over.
    let clean = dir.path().join("clean");
    let t = Instant::now();
    let o = output(sync_command(&lever, clean.to_str().unwrap(), &cfg)).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let duration = t.elapsed();
    assert_matches_truth(&clean, &lever.emu).await;

    let points = 20u32;
    for i in 1..=points {
        let dest = dir.path().join(format!("k{i}"));
        let d = dest.to_str().unwrap().to_owned();
        let at = duration.mul_f64(f64::from(i) / f64::from(points + 1));
        let (run, rerun) = (
            sync_command(&lever, &d, &cfg),
            sync_command(&lever, &d, &cfg),
        );
        kill_then_recover(run, at, rerun, i).await;
        assert_matches_truth(&dest, &lever.emu).await;
        if sink == "delta" {
            assert_delta_consistent(&dest, i);
            continue;
        }
        if sink == "iceberg" {
            assert_iceberg_consistent(&dest, i);
            continue;
        }
        let committed = crate::harness::read_dest(&dest).await;
        for (table, n) in glob_rows(&dest) {
            let want = committed.get(&table).map_or(0, Vec::len);
            assert_eq!(
                n, want,
                "kill {i}: table {table} has files outside the manifest"
            );
        }
    }
}

/// Sends `signal` to a sync once its first commit is durable, with the emulator slowed so
/// the sync is certainly still running; it must stop at its last committed checkpoint with
/// `exit_code`, release the lease, and a rerun must converge to the truth.
async fn stop_signal_stops_at_a_consistent_point(signal: &str, exit_code: i32) {
    let lever = Lever::start(20).await;
    lever.emu.set_latency(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_pages_config(dir.path());
    let dest = dir.path().join("lake");
    let d = dest.to_str().unwrap().to_owned();
    let summary = dir.path().join("summary.json");
    let child = sync_command(&lever, &d, &cfg)
        .arg("--summary-json")
        .arg(&summary)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let manifests = dest.join("_sluice").join("manifest");
    let t = Instant::now();
    while std::fs::read_dir(&manifests).map_or(0, |d| d.count()) == 0
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every request now takes a second: the sync cannot finish before the signal lands.
    lever.emu.set_latency(Duration::from_secs(1));
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops promptly after the signal")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit_code), "{signal}: {err}");
    assert!(
        err.contains(signal) && err.contains("last committed checkpoint"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no ANSI colour codes when stderr is a pipe: {err}"
    );
    let lease: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dest.join("_sluice").join("lease.json")).expect("the lease object"),
    )
    .unwrap();
    assert_eq!(
        lease["expires_at_ms"], 0,
        "{signal}: the lease was released, so the next run takes over at once: {lease}"
    );
    // The summary says the run was stopped, and counts the commit the wait above saw.
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["status"], "cancelled", "{s}");
    assert_eq!(s["exit_code"], exit_code, "{s}");
    assert_eq!(s["error"]["kind"], "cancelled", "{s}");
    assert!(s["commits"].as_u64().unwrap() >= 1, "{s}");
    assert!(!s["committed"].is_null(), "{s}");
    lever.emu.set_latency(Duration::ZERO);
    let o = output(sync_command(&lever, &d, &cfg)).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_matches_truth(&dest, &lever.emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_at_a_consistent_point_with_exit_130() {
    stop_signal_stops_at_a_consistent_point("INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_a_consistent_point_releases_the_lease_with_exit_143() {
    stop_signal_stops_at_a_consistent_point("TERM", 143).await;
}
