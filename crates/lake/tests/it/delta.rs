//! The `delta` sink: the shared scenarios again, deletion vectors instead
//! of rewrites, and the Delta log read by the `deltalake` Python package.

use crate::common::*;
use object_store::ObjectStoreExt;
use sluice_core::{Change, Scope, Sink};
use std::collections::BTreeSet;

both!(
    delta_conformance,
    delta_conformance_in_small_chunks,
    delta_engine_matches_memory_sink,
    delta_faults,
    delta_schema_evolution,
    delta_small_changes_write_small_files,
    delta_published_log_texts_leave_the_manifest,
);

fn delta(lake: Lake) -> Lake {
    lake.delta()
}

async fn delta_conformance(lake: Lake) {
    crate::scenarios::conformance(delta(lake)).await;
}

async fn delta_conformance_in_small_chunks(lake: Lake) {
    crate::scenarios::conformance_in_small_chunks(delta(lake)).await;
}

async fn delta_engine_matches_memory_sink(lake: Lake) {
    crate::scenarios::engine_matches_memory_sink(delta(lake)).await;
}

async fn delta_faults(lake: Lake) {
    crate::scenarios::faults(delta(lake)).await;
}

async fn delta_schema_evolution(lake: Lake) {
    crate::scenarios::schema_evolution(delta(lake)).await;
}

/// The file names of a table's live files, and those with a deletion vector.
async fn files_and_vectors(lake: &Lake, table: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let entry = lake.manifest_entry(table).await;
    let files = entry["files"].as_array().expect("files");
    let names = files
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    let with_dv = files
        .iter()
        .filter(|f| f.get("dv").is_some())
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    (names, with_dv)
}

/// A 1 % change of a one-bucket table writes about 1 % of it (a new file and a deletion
/// vector) and rewrites nothing; once a file's deleted share reaches `max_deleted_share`
/// it is folded into the commit's new file; scoped deletes are vectors too.
async fn delta_small_changes_write_small_files(lake: Lake) {
    let mut lake = delta(lake);
    lake.delta_config().max_deleted_share = 0.3;
    let ids: Vec<String> = (0..10_000).map(|i| format!("opp-{i:05}")).collect();
    // Names that do not compress to nothing, so that file sizes mean something.
    let names: Vec<String> = (0..10_000u64)
        .map(|i| format!("name {:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let rows: Vec<(&str, &str, i64)> = ids
        .iter()
        .zip(&names)
        .map(|(i, n)| (i.as_str(), n.as_str(), 1))
        .collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    let notes: Vec<(String, String)> = ids
        .iter()
        .take(2000)
        .map(|i| (format!("note-{i}"), i.clone()))
        .collect();
    let nrows: Vec<(&str, &str, &str)> = notes
        .iter()
        .map(|(n, o)| (n.as_str(), o.as_str(), "b"))
        .collect();
    s.write(stamp(note_rows(&nrows), T1)).await.unwrap();
    let full = s.commit(&state(1)).await.unwrap().tables["opp"];
    let (first, _) = files_and_vectors(&lake, "opp").await;

    // 1 %: 100 keys.
    let pct: Vec<(&str, &str, i64)> = ids
        .iter()
        .step_by(100)
        .map(|i| (i.as_str(), "again", 2))
        .collect();
    s.write(stamp(opp_rows("opp", &pct), T2)).await.unwrap();
    let t = s.commit(&state(2)).await.unwrap().tables["opp"];
    assert_eq!(
        (t.updated, t.inserted, t.bytes_rewritten),
        (100, 0, 0),
        "{t:?}"
    );
    assert!(
        t.bytes_written * 10 < full.bytes_written,
        "a 1% change wrote {} of {} bytes",
        t.bytes_written,
        full.bytes_written
    );
    eprintln!(
        "[{}] 100 of 10000 keys: wrote {} B in {} files (full: {} B)",
        lake.kind, t.bytes_written, t.files_written, full.bytes_written
    );
    // Delta readers take the schema from the log: no data file carries an Arrow schema
    // copy (1–6 KB of footer each), which a small commit's bytes would be mostly made of.
    let footers = lake.footer_keys("opp").await;
    assert!(footers.len() >= 2, "{footers:?}");
    assert!(
        footers.iter().flatten().all(|k| k != "ARROW:schema"),
        "{footers:?}"
    );
    let (files, vectors) = files_and_vectors(&lake, "opp").await;
    assert!(first.is_subset(&files), "the first files stay");
    assert_eq!(vectors, first, "the first files got deletion vectors");

    // A scoped delete of one parent's notes: a vector, no new data file needed.
    s.write(stamp(
        Change::DeleteMissing {
            table: "note".into(),
            scope: Scope::Where {
                column: "opp_id".into(),
                values: vec![ids[7].clone()],
            },
            keep: keys(&[]),
        },
        T3,
    ))
    .await
    .unwrap();
    let r = s.commit(&state(3)).await.unwrap();
    assert_eq!(r.tables["note"].deleted, 1);
    assert_eq!(r.tables["note"].bytes_rewritten, 0);

    // 35 % of the keys: the first file passes 30 % deleted and is folded.
    let many: Vec<(&str, &str, i64)> = ids
        .iter()
        .take(3_500)
        .map(|i| (i.as_str(), "many", 4))
        .collect();
    s.write(stamp(opp_rows("opp", &many), T4)).await.unwrap();
    let t = s.commit(&state(4)).await.unwrap().tables["opp"];
    assert!(t.bytes_rewritten > 0, "{t:?}");
    let (files, vectors) = files_and_vectors(&lake, "opp").await;
    assert!(first.is_disjoint(&files), "folded: {files:?}");
    assert!(vectors.len() <= 1, "{vectors:?}");
    s.close().await.unwrap();

    let reader = lake.sink();
    let all = scan(&reader, &opp()).await;
    assert_eq!(all.len(), 10_000);
    assert_eq!(all["opp-00100"]["name"], "many");
    assert_eq!(all["opp-09900"]["name"], "again");
    assert_eq!(all["opp-05001"]["name"], names[5001].as_str());
    let notes = scan(&reader, &note()).await;
    assert_eq!(notes.len(), 1999, "the scoped delete removed one note");
    assert!(!notes.contains_key("note-opp-00007"));
    lake.assert_no_orphans(&["opp", "note"]).await;
}

/// A manifest carries a Delta version's text only while it may still need publishing (the
/// next open publishes what a stopped run did not); once published, the next manifest drops
/// it. A published version that then goes missing from the table folder is a clear error at
/// the next open, naming the table, and nothing is written.
async fn delta_published_log_texts_leave_the_manifest(lake: Lake) {
    let lake = delta(lake);
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o1", "a", 1)]), T1))
        .await
        .unwrap();
    s.write(stamp(note_rows(&[("n1", "o1", "b")]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o2", "c", 1)]), T2))
        .await
        .unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();

    // `opp` changed in commit 2: its new version was unpublished when the manifest was
    // written. `note` did not: its version 0 was published after commit 1.
    let opp_log = &lake.manifest_entry("opp").await["delta"];
    assert_eq!(opp_log["version"], 1);
    assert!(
        opp_log["commit"]
            .as_str()
            .is_some_and(|t| t.contains("\"add\""))
    );
    let note_log = &lake.manifest_entry("note").await["delta"];
    assert_eq!(note_log["version"], 0);
    assert!(note_log.get("commit").is_none(), "{note_log}");

    // Both tables read back whole after a reopen.
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(scan(&lake.sink(), &opp()).await.len(), 2);

    // A published version removed from the folder behind sluice's back.
    let version = lake
        .objects("note")
        .await
        .into_iter()
        .filter(|o| o.contains("/_delta_log/") && o.ends_with(".json"))
        .max()
        .expect("a log version");
    lake.dest()
        .store
        .delete(&object_store::path::Path::from(version.as_str()))
        .await
        .unwrap();
    let before = lake.objects("").await;
    let err = lake
        .sink()
        .open(&specs())
        .await
        .expect_err("a missing published version is refused")
        .to_string();
    assert!(
        err.contains("`note`") && err.contains("log version 0"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    // The lease taken by the failed open is the only change.
    let after: Vec<String> = lake
        .objects("")
        .await
        .into_iter()
        .filter(|o| !o.ends_with("lease.json"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|o| !o.ends_with("lease.json"))
        .collect();
    assert_eq!(after, before);
}

/// Whether python3 with deltalake and pyarrow is there (see [`python_modules_available`]).
fn deltalake_available() -> bool {
    python_modules_available("deltalake, pyarrow", "deltalake pyarrow")
}

/// The rows `deltalake` reads from a table folder, as `id -> name`, and the table version.
fn deltalake_read(dir: &std::path::Path) -> (std::collections::BTreeMap<String, String>, u64) {
    let script = format!(
        r#"
import json
from deltalake import DeltaTable, QueryBuilder
import pyarrow
t = DeltaTable({dir:?})
batches = QueryBuilder().register("t", t).execute("select id, name from t").read_all()
rows = pyarrow.table(batches).to_pylist()
print(json.dumps({{"version": t.version(), "rows": rows}}))
"#,
        dir = dir.display().to_string()
    );
    let v = python_json("deltalake", &script);
    let mut rows = std::collections::BTreeMap::new();
    for r in v["rows"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap().to_owned();
        let prev = rows.insert(id.clone(), r["name"].as_str().unwrap_or("").to_owned());
        assert!(prev.is_none(), "deltalake reads {id} twice");
    }
    (rows, v["version"].as_u64().unwrap())
}

/// `deltalake` (delta-rs) reads each version's rows, deletion vectors applied, equal to the
/// sink's own scan; a version left unpublished by a stopped run is published by the next.
#[tokio::test]
async fn deltalake_reads_the_tables_with_deletion_vectors() {
    if !deltalake_available() {
        return;
    }
    let lake = delta(Lake::local());
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let ids: Vec<String> = (0..3_000).map(|i| format!("opp-{i:05}")).collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v1", 1)).collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();

    let check =
        |version: u64, sink_rows: &std::collections::BTreeMap<String, sluice_testkit::Row>| {
            let (read, v) = deltalake_read(&dir);
            assert_eq!(v, version);
            let want: std::collections::BTreeMap<String, String> = sink_rows
                .iter()
                .map(|(k, r)| (k.clone(), r["name"].as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(read, want, "version {version}");
        };
    check(0, &scan(&lake.sink(), &opp()).await);

    // Updates, hard deletes, and new keys: vectors on the first file.
    let upd: Vec<(&str, &str, i64)> = ids
        .iter()
        .step_by(7)
        .map(|i| (i.as_str(), "v2", 2))
        .chain([("opp-new", "v2", 2)])
        .collect();
    s.write(stamp(opp_rows("opp", &upd), T2)).await.unwrap();
    s.write(stamp(
        Change::Delete {
            table: "opp".into(),
            keys: keys(&["opp-00001", "opp-00002"]),
        },
        T2,
    ))
    .await
    .unwrap();
    s.commit(&state(2)).await.unwrap();
    let (_, vectors) = files_and_vectors(&lake, "opp").await;
    assert!(!vectors.is_empty());
    let now = scan(&lake.sink(), &opp()).await;
    assert_eq!(now["opp-00007"]["name"], "v2");
    check(1, &now);

    // The log version of a commit goes missing (a run stopped before publishing it): the
    // next open publishes it again, byte for byte.
    let upd: Vec<(&str, &str, i64)> = ids
        .iter()
        .step_by(11)
        .map(|i| (i.as_str(), "v3", 3))
        .collect();
    s.write(stamp(opp_rows("opp", &upd), T3)).await.unwrap();
    s.commit(&state(3)).await.unwrap();
    s.close().await.unwrap();
    let log = dir.join("_delta_log/00000000000000000002.json");
    let text = std::fs::read(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    assert_eq!(std::fs::read(&log).unwrap(), text);
    s.close().await.unwrap();
    check(2, &scan(&lake.sink(), &opp()).await);

    // The `parquet` sink refuses the destination, naming the way out.
    let mut p = lake.parquet_sink();
    let e = p.open(&specs()).await.unwrap_err();
    assert!(e.to_string().contains("--sink delta"), "{e}");
    lake.assert_no_orphans(&["opp"]).await;
}

/// Every 10th Delta version gets a checkpoint and `_last_checkpoint`; delta-rs reads the
/// table from the checkpoint alone (the versions before it removed), deletion vectors and
/// schema included.
#[tokio::test]
async fn deltalake_reads_the_table_from_a_checkpoint() {
    if !deltalake_available() {
        return;
    }
    let lake = delta(Lake::local());
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let ids: Vec<String> = (0..500).map(|i| format!("opp-{i:05}")).collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v0", 1)).collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    // Versions 1..=11: each updates a few keys (new files and deletion vectors).
    let names: Vec<String> = (1..=11).map(|v| format!("v{v}")).collect();
    for (v, name) in names.iter().enumerate() {
        let upd: Vec<(&str, &str, i64)> = ids
            .iter()
            .skip(v)
            .step_by(37)
            .map(|i| (i.as_str(), name.as_str(), 2))
            .collect();
        s.write(stamp(opp_rows("opp", &upd), T2)).await.unwrap();
        s.commit(&state(2 + v as i64)).await.unwrap();
    }
    s.close().await.unwrap();
    let log = dir.join("_delta_log");
    assert!(log.join("00000000000000000010.checkpoint.parquet").exists());
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap();
    assert_eq!(last["version"], 10);
    for v in 0..10 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let (read, version) = deltalake_read(&dir);
    assert_eq!(version, 11);
    let want: std::collections::BTreeMap<String, String> = scan(&lake.sink(), &opp())
        .await
        .iter()
        .map(|(k, r)| (k.clone(), r["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(read.len(), 500);
    assert_eq!(read, want);
}
