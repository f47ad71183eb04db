//! SIGKILL at 20 points spread over a sync (reading, writing files, committing), each followed
//! by a recovery run: the output must equal the truth, with no key twice and no file in a table
//! folder that the manifest does not list.

use crate::harness::{Lever, assert_matches_truth, output, walk};
use std::path::Path;
use std::time::{Duration, Instant};

/// `sluice run lever --sink parquet --dest <dest> --config <cfg>`, quiet.
fn sync_command(lever: &Lever, dest: &str, cfg: &str) -> tokio::process::Command {
    lever.command(&[
        "--no-progress",
        "run",
        "lever",
        "--sink",
        "parquet",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twenty_points_then_rerun_matches_truth() {
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
        let mut child = sync_command(&lever, &d, &cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(at).await;
        // SIGKILL (tokio's kill sends SIGKILL on Unix).
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

        let o = output(sync_command(&lever, &d, &cfg)).await;
        assert!(
            o.status.success(),
            "recovery run after kill {i} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_matches_truth(&dest, &lever.emu).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_at_a_consistent_point_with_exit_130() {
    let lever = Lever::start(20).await;
    lever.emu.set_latency(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_pages_config(dir.path());
    let dest = dir.path().join("lake");
    let d = dest.to_str().unwrap().to_owned();
    let child = sync_command(&lever, &d, &cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first commit is durable (the state exists), mid-sync.
    let state = dest.join("_sluice");
    let t = Instant::now();
    while !state.exists() && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops promptly after Ctrl-C")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // It either stopped at a checkpoint (130) or had already finished (0).
    assert!(
        matches!(out.status.code(), Some(130) | Some(0)),
        "{:?}: {err}",
        out.status
    );
    if out.status.code() == Some(130) {
        assert!(err.contains("interrupted"), "{err}");
    }
    let o = output(sync_command(&lever, &d, &cfg)).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_matches_truth(&dest, &lever.emu).await;
}
