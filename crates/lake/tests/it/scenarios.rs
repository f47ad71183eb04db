//! Scenarios run on both backends (`local::*` and `s3::*`).

use crate::common::*;
use crate::failing::{FailingStore, Op, PrivateLease};
use sluice_core::{Change, ColumnSpec, ColumnType, ErrorKind, Scope, Sink, TableSpec};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

both!(
    conformance,
    conformance_in_small_chunks,
    merge_delete_history,
    incremental_touch,
    schema_evolution,
    evolved_rows_survive_compaction_and_split,
    lease,
    faults,
    manifest_race,
    engine_matches_memory_sink,
    engine_matches_memory_sink_in_small_chunks,
);

/// Whole syncs through the engine (with a failing run in between) leave the same rows as the
/// testkit's in-memory reference sink.
pub(crate) async fn engine_matches_memory_sink(lake: Lake) {
    use sluice_testkit::{MemoryDestination, TestSource, sync_with};
    let mem = MemoryDestination::new("test");
    let configs = [
        serde_json::json!({"parents": 30, "lookup": ["a", "b", "c"], "checkpoint_every": 7}),
        serde_json::json!({"parents": 30, "version": 2, "lookup": ["a", "c"], "fail_after_messages": 9}),
        serde_json::json!({"parents": 30, "version": 2, "lookup": ["a", "c"]}),
    ];
    for (i, cfg) in configs.iter().enumerate() {
        let opts = || {
            sluice_core::SyncOptions::default()
                .with_started_at_ms(1_700_000_000_000 + i as i64 * 60_000)
        };
        let expected = sync_with(&TestSource, cfg, &mem, opts()).await;
        let mut sink = lake.sink();
        let got = sluice_core::run_sync("test", &TestSource, cfg, &mut sink, opts()).await;
        assert_eq!(
            expected.is_ok(),
            got.is_ok(),
            "run {i}: {expected:?} vs {got:?}"
        );
        if let (Ok(e), Ok(g)) = (&expected, &got) {
            for (t, stats) in &e.tables {
                let gs = g.tables[t];
                assert_eq!(
                    (
                        stats.inserted,
                        stats.updated,
                        stats.deleted,
                        stats.unchanged
                    ),
                    (gs.inserted, gs.updated, gs.deleted, gs.unchanged),
                    "run {i} table {t}"
                );
            }
        }
    }
    let reference = mem.sink();
    let ours = lake.sink();
    for spec in TestSource::tables() {
        let want = scan(&reference, &spec).await;
        assert!(!want.is_empty(), "{}", spec.name);
        assert_eq!(scan(&ours, &spec).await, want, "table {}", spec.name);
    }
    let (a, b) = (
        reference.read_state().await.unwrap().unwrap(),
        ours.read_state().await.unwrap().unwrap(),
    );
    assert_eq!(a.tables, b.tables);
    lake.assert_no_orphans(&["parent", "child", "lookup"]).await;
}

pub(crate) async fn conformance(lake: Lake) {
    sluice_testkit::sink_conformance::run(|| Box::new(lake.sink()) as Box<dyn Sink>).await;
    lake.assert_no_orphans(&["parent", "child", "lookup", "grandchild", "parent_history"])
        .await;
}

/// The conformance suite with rewrites merging stored rows 2 at a time (many chunks per
/// rewritten bucket, see `rewrite_chunk_rows`).
pub(crate) async fn conformance_in_small_chunks(mut lake: Lake) {
    lake.config.rewrite_chunk_rows = 2;
    conformance(lake).await;
}

/// Whole syncs with rewrites merging stored rows 3 at a time.
async fn engine_matches_memory_sink_in_small_chunks(mut lake: Lake) {
    lake.config.rewrite_chunk_rows = 3;
    engine_matches_memory_sink(lake).await;
}

async fn merge_delete_history(lake: Lake) {
    let mut s = lake.sink();
    assert!(s.read_state().await.unwrap().is_none());
    assert!(s.open(&specs()).await.unwrap().is_none());
    s.write(stamp(
        opp_rows("opp", &[("a", "A", 1), ("b", "B", 1), ("c", "C", 1)]),
        T1,
    ))
    .await
    .unwrap();
    s.write(stamp(
        note_rows(&[("n1", "a", "x"), ("n2", "a", "y"), ("n3", "b", "z")]),
        T1,
    ))
    .await
    .unwrap();
    s.write(stamp(opp_rows("hist", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    let r = s.commit(&state(1)).await.unwrap();
    assert_eq!(r.tables["opp"].inserted, 3);
    assert_eq!(r.tables["note"].inserted, 3);
    assert!(r.tables["opp"].bytes_written > 0 && r.tables["opp"].files_written > 0);
    s.close().await.unwrap();

    let mut s = lake.sink();
    assert_eq!(s.open(&specs()).await.unwrap(), Some(state(1)));
    s.write(stamp(
        opp_rows("opp", &[("a", "A2", 2), ("b", "B", 1), ("d", "D", 2)]),
        T2,
    ))
    .await
    .unwrap();
    s.write(stamp(
        Change::Delete {
            table: "opp".into(),
            keys: keys(&["c"]),
        },
        T2,
    ))
    .await
    .unwrap();
    s.write(stamp(
        Change::DeleteMissing {
            table: "note".into(),
            scope: Scope::Where {
                column: "opp_id".into(),
                values: vec!["a".into()],
            },
            keep: keys(&["n1"]),
        },
        T2,
    ))
    .await
    .unwrap();
    s.write(stamp(
        Change::Delete {
            table: "note".into(),
            keys: keys(&["n3"]),
        },
        T2,
    ))
    .await
    .unwrap();
    s.write(stamp(opp_rows("hist", &[("a", "A2", 2)]), T2))
        .await
        .unwrap();
    let r = s.commit(&state(2)).await.unwrap();
    let o = r.tables["opp"];
    assert_eq!(
        (o.inserted, o.updated, o.unchanged, o.deleted),
        (1, 1, 1, 1),
        "{o:?}"
    );
    assert_eq!(r.tables["note"].deleted, 2);
    assert_eq!(r.tables["hist"].updated, 1);
    s.close().await.unwrap();

    let reader = lake.sink();
    assert_eq!(reader.read_state().await.unwrap(), Some(state(2)));
    let opp_rows_now = scan(&reader, &opp()).await;
    assert_eq!(opp_rows_now.len(), 4);
    assert_eq!(opp_rows_now["a"]["name"], "A2");
    assert_eq!(opp_rows_now["a"]["_fivetran_synced"], T2);
    assert_eq!(
        opp_rows_now["b"]["_fivetran_synced"], T2,
        "an unchanged upsert refreshes synced"
    );
    assert_eq!(
        opp_rows_now["c"]["_fivetran_deleted"], true,
        "soft delete keeps the row"
    );
    assert_eq!(opp_rows_now["c"]["_fivetran_synced"], T2);
    assert_eq!(opp_rows_now["d"]["_fivetran_deleted"], false);
    let notes = scan(&reader, &note()).await;
    assert_eq!(
        notes.keys().collect::<Vec<_>>(),
        ["n1"],
        "hard deletes remove rows"
    );
    let h = scan(&reader, &hist()).await;
    assert_eq!(h.len(), 2, "history keeps both versions: {h:?}");
    let active: Vec<_> = h
        .values()
        .map(|r| (r["name"].clone(), r["_fivetran_active"].clone()))
        .collect();
    assert!(
        active.contains(&("A".into(), false.into()))
            && active.contains(&("A2".into(), true.into()))
    );

    // A child row moving to another parent changes bucket: still one row per key.
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(note_rows(&[("n1", "d", "moved")]), T3))
        .await
        .unwrap();
    let r = s.commit(&state(3)).await.unwrap();
    assert_eq!(r.tables["note"].updated, 1);
    s.close().await.unwrap();
    let notes = scan(&lake.sink(), &note()).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes["n1"]["opp_id"], "d");
    lake.assert_no_orphans(&["opp", "note", "hist"]).await;
}

async fn incremental_touch(mut lake: Lake) {
    lake.config.table_buckets.insert("opp".into(), 64);
    let ids: Vec<String> = (0..10_000).map(|i| format!("opp-{i:05}")).collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "name", 1)).collect();
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
    let full = s.commit(&state(1)).await.unwrap();
    let before: BTreeSet<String> = s.live_files("opp").await.unwrap().into_iter().collect();
    assert_eq!(before.len(), 64, "one file per bucket");
    let total = full.tables["opp"].bytes_written;

    // Upsert 5 keys: at most 5 buckets are rewritten, every other file stays as it was.
    let few: Vec<(&str, &str, i64)> = ids
        .iter()
        .skip(1)
        .step_by(2000)
        .map(|i| (i.as_str(), "changed", 2))
        .collect();
    s.write(stamp(opp_rows("opp", &few), T2)).await.unwrap();
    let r = s.commit(&state(2)).await.unwrap();
    let t = r.tables["opp"];
    assert_eq!((t.updated, t.inserted), (5, 0));
    assert!(t.files_written <= 5, "{t:?}");
    let after: BTreeSet<String> = s.live_files("opp").await.unwrap().into_iter().collect();
    let kept = before.intersection(&after).count();
    assert!(kept >= 59, "untouched files must stay: kept {kept}");
    assert_eq!(after.len(), 64);
    assert!(
        t.bytes_rewritten > 0 && t.bytes_rewritten * 10 < total,
        "rewrote {} of {total}",
        t.bytes_rewritten
    );
    eprintln!(
        "[{}] 5 of 10000 keys (64 buckets): rewrote {} B of {} B ({:.1}%), wrote {} B in {} files",
        lake.kind,
        t.bytes_rewritten,
        total,
        100.0 * t.bytes_rewritten as f64 / total as f64,
        t.bytes_written,
        t.files_written
    );

    // A 1% change (100 keys).
    let pct: Vec<(&str, &str, i64)> = ids
        .iter()
        .step_by(100)
        .map(|i| (i.as_str(), "again", 3))
        .collect();
    s.write(stamp(opp_rows("opp", &pct), T3)).await.unwrap();
    let r = s.commit(&state(3)).await.unwrap();
    let t = r.tables["opp"];
    eprintln!(
        "[{}] 100 of 10000 keys (1%, 64 buckets): rewrote {} B of {} B ({:.1}%) in {} files",
        lake.kind,
        t.bytes_rewritten,
        total,
        100.0 * t.bytes_rewritten as f64 / total as f64,
        t.files_written
    );

    // A scoped re-read of one parent's notes touches one bucket of `note`.
    let note_before: BTreeSet<String> = s.live_files("note").await.unwrap().into_iter().collect();
    s.write(stamp(
        Change::DeleteMissing {
            table: "note".into(),
            scope: Scope::Where {
                column: "opp_id".into(),
                values: vec![ids[7].clone()],
            },
            keep: keys(&[]),
        },
        T4,
    ))
    .await
    .unwrap();
    let r = s.commit(&state(4)).await.unwrap();
    assert_eq!(r.tables["note"].deleted, 1);
    assert_eq!(r.tables["note"].files_written, 1);
    let note_after: BTreeSet<String> = s.live_files("note").await.unwrap().into_iter().collect();
    assert_eq!(
        note_before.difference(&note_after).count(),
        1,
        "only one note file replaced"
    );
    s.close().await.unwrap();

    let reader = lake.sink();
    let all = scan(&reader, &opp()).await;
    assert_eq!(all.len(), 10_000);
    assert_eq!(all["opp-02001"]["name"], "changed");
    assert_eq!(all["opp-00100"]["name"], "again");
    lake.assert_no_orphans(&["opp", "note"]).await;
}

fn with_extra(ty: ColumnType) -> TableSpec {
    let mut t = opp();
    t.columns.push(ColumnSpec::new("extra", ty));
    t
}

/// Files written before a column was added are copied batch by batch by compactions and
/// bucket splits: their rows get NULL in the new column, the newer rows keep their values.
async fn evolved_rows_survive_compaction_and_split(mut lake: Lake) {
    lake.config.bucket_rows = 20;
    lake.config.max_files_per_bucket = 2;
    let evolved = with_extra(ColumnType::Int64);
    let tables2 = vec![evolved.clone(), note(), hist()];
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let old: Vec<String> = (0..12).map(|i| format!("old-{i:02}")).collect();
    let rows: Vec<(&str, &str, i64)> = old.iter().map(|i| (i.as_str(), "O", 1)).collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    s.update_table(&evolved).await.unwrap();
    let mut new_ids = Vec::new();
    let mut rewritten = Vec::new();
    for round in 0..3i64 {
        let ids: Vec<String> = (0..4).map(|i| format!("new-{round}-{i}")).collect();
        let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "N", 2)).collect();
        let extra = Some(vec![Some(100 + round); ids.len()]);
        let change = crate::common::opp_rows_spec(&evolved, &rows, extra);
        s.write(stamp_with(&tables2, change, T2 + round))
            .await
            .unwrap();
        let t = s.commit(&state(2 + round)).await.unwrap().tables["opp"];
        rewritten.push(t.bytes_rewritten);
        new_ids.extend(ids.into_iter().map(|i| (i, 100 + round)));
    }
    s.close().await.unwrap();
    // Round 0 appends (2 files), round 1 compacts (the limit is 2), round 2 splits (24 rows
    // > 20 per bucket): each of the last two rewrote stored files.
    assert_eq!(rewritten[0], 0, "{rewritten:?}");
    assert!(rewritten[1] > 0 && rewritten[2] > 0, "{rewritten:?}");
    assert_eq!(lake.manifest_entry("opp").await["buckets"], 4);
    let rows = scan(&lake.sink(), &evolved).await;
    assert_eq!(rows.len(), old.len() + new_ids.len());
    for id in &old {
        assert_eq!(rows[id]["name"], "O");
        assert_eq!(rows[id]["extra"], serde_json::Value::Null, "{id}");
    }
    for (id, extra) in &new_ids {
        assert_eq!(rows[id]["extra"], *extra, "{id}");
    }
    lake.assert_no_orphans(&["opp"]).await;
}

pub(crate) async fn schema_evolution(mut lake: Lake) {
    lake.config.table_buckets.insert("opp".into(), 8);
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(
        opp_rows(
            "opp",
            &[("a", "A", 1), ("b", "B", 1), ("c", "C", 1), ("d", "D", 1)],
        ),
        T1,
    ))
    .await
    .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.close().await.unwrap();
    let old_files: BTreeSet<String> = lake
        .sink()
        .live_files("opp")
        .await
        .unwrap()
        .into_iter()
        .collect();

    // A new column, declared mid-sync through update_table.
    let evolved = with_extra(ColumnType::Int64);
    let tables2 = vec![evolved.clone(), note(), hist()];
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.update_table(&evolved)
        .await
        .expect("adding a column is allowed");
    let change = crate::common::opp_rows_spec(&evolved, &[("e", "E", 2)], Some(vec![Some(7)]));
    s.write(stamp_with(&tables2, change, T2)).await.unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();
    let new_files: BTreeSet<String> = lake
        .sink()
        .live_files("opp")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        old_files.intersection(&new_files).count() >= 1,
        "older files are kept as they are"
    );
    let rows = scan(&lake.sink(), &evolved).await;
    assert_eq!(rows.len(), 5);
    assert_eq!(rows["e"]["extra"], 7);
    assert_eq!(rows["a"]["extra"], serde_json::Value::Null);

    // Rewriting an old bucket fills NULLs in the new column.
    let mut s = lake.sink();
    s.open(&tables2).await.unwrap();
    let change = crate::common::opp_rows_spec(&evolved, &[("a", "A2", 3)], Some(vec![None]));
    s.write(stamp_with(&tables2, change, T3)).await.unwrap();
    s.commit(&state(3)).await.unwrap();
    // An incompatible type change through update_table is refused.
    let err = s
        .update_table(&with_extra(ColumnType::String))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination);
    s.close().await.unwrap();

    // … and at open, naming table, column and both types; nothing changes.
    let bad = vec![with_extra(ColumnType::String), note(), hist()];
    let mut s = lake.sink();
    let err = s.open(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    let msg = err.to_string();
    for needle in ["`opp`", "`extra`", "int64", "string"] {
        assert!(msg.contains(needle), "{needle} missing in: {msg}");
    }
    assert!(!msg.contains('\n'));
    let reader = lake.sink();
    assert_eq!(reader.read_state().await.unwrap(), Some(state(3)));
    let rows = scan(&reader, &evolved).await;
    assert_eq!(rows.len(), 5);
    assert_eq!(rows["a"]["name"], "A2");
    // The failed open released its lease.
    let mut s = lake.sink();
    s.open(&tables2)
        .await
        .expect("lease released after a failed open");
    s.close().await.unwrap();
    lake.assert_no_orphans(&["opp"]).await;
}

async fn lease(mut lake: Lake) {
    let mut a = lake.sink();
    a.open(&specs()).await.unwrap();
    let mut b = lake.sink();
    let err = b.open(&specs()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination);
    let msg = err.to_string();
    assert!(msg.contains("is in use by another sluice run"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(
        msg.contains("_sluice/lease.json") && msg.contains("wait until"),
        "{msg}"
    );
    // Reading state needs no lease.
    assert!(b.read_state().await.unwrap().is_none());
    a.close().await.unwrap();
    b.open(&specs()).await.expect("free after close");
    b.abort().await.unwrap();

    // A killed run's lease can be taken over once it expires.
    lake.config.lease_ttl_secs = 1;
    let mut dead = lake.sink();
    dead.open(&specs()).await.unwrap();
    drop(dead);
    let mut next = lake.sink();
    assert!(next.open(&specs()).await.is_err(), "lease still valid");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    next.open(&specs()).await.expect("expired lease taken over");
    next.write(stamp(opp_rows("opp", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    next.commit(&state(1)).await.unwrap();
    next.close().await.unwrap();
    use object_store::ObjectStoreExt;
    let dest = lake.dest();
    let path = dest.root.clone().join("_sluice").join("lease.json");
    let got = dest.store.get(&path).await.unwrap();
    let lease: serde_json::Value = serde_json::from_slice(&got.bytes().await.unwrap()).unwrap();
    assert_eq!(
        lease["expires_at_ms"], 0,
        "close releases the lease: {lease}"
    );
}

/// Commits state `n` with a few rows, returns what a scan shows.
async fn baseline(
    lake: &Lake,
    n: i64,
) -> Vec<std::collections::BTreeMap<String, sluice_testkit::Row>> {
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let id = format!("base{n}");
    s.write(stamp(
        opp_rows("opp", &[(id.as_str(), "B", n), ("a", "A", n)]),
        T1 + n,
    ))
    .await
    .unwrap();
    s.write(stamp(note_rows(&[(&format!("note{n}"), "a", "x")]), T1 + n))
        .await
        .unwrap();
    s.commit(&state(n)).await.unwrap();
    s.close().await.unwrap();
    let r = lake.sink();
    vec![scan(&r, &opp()).await, scan(&r, &note()).await]
}

pub(crate) async fn faults(mut lake: Lake) {
    lake.config.lease_ttl_secs = 1;
    lake.config.table_buckets.insert("opp".into(), 4);
    let cases: [(Op, &str, usize, &str, bool); 6] = [
        (Op::Put, "/part-b", 0, "writing the first data file", false),
        (Op::Put, "/part-b", 1, "writing the second data file", false),
        (
            Op::Put,
            "_sluice/manifest/",
            0,
            "after data files, before the manifest",
            false,
        ),
        // Lease puts of `open`: a create, refused (the baseline run's released lease is
        // there), then the takeover of that lease; the third is the fence renewal.
        (
            Op::Put,
            "_sluice/lease",
            2,
            "renewing the lease before the manifest",
            false,
        ),
        (
            Op::Delete,
            "/part-b",
            0,
            "after the manifest, before cleanup",
            true,
        ),
        (Op::Put, "_sluice/lease", 0, "taking the lease", false),
    ];
    for (i, (op, path, nth, what, commits)) in cases.into_iter().enumerate() {
        let n = 10 * (i as i64 + 1);
        let before = baseline(&lake, n).await;
        let failing = Arc::new(FailingStore::new(
            Arc::clone(&lake.dest().store),
            op,
            path,
            nth,
        ));
        let f2 = Arc::clone(&failing);
        let mut s = lake.sink_on(move |_| f2);
        let opened = s.open(&specs()).await;
        if what == "taking the lease" {
            let err = opened.expect_err("open must fail");
            assert_eq!(err.kind(), ErrorKind::Destination, "{what}: {err}");
        } else {
            opened.unwrap();
            let zid = format!("z{n}");
            s.write(stamp(
                opp_rows("opp", &[(zid.as_str(), "Z", n), ("a", "A-new", n + 1)]),
                T2 + n,
            ))
            .await
            .unwrap();
            s.write(stamp(
                Change::Delete {
                    table: "opp".into(),
                    keys: keys(&[&format!("base{n}")]),
                },
                T2 + n,
            ))
            .await
            .unwrap();
            s.write(stamp(
                Change::DeleteMissing {
                    table: "note".into(),
                    scope: Scope::Where {
                        column: "opp_id".into(),
                        values: vec!["a".into()],
                    },
                    keep: keys(&[]),
                },
                T2 + n,
            ))
            .await
            .unwrap();
            let result = s.commit(&state(n + 1)).await;
            assert_eq!(result.is_ok(), commits, "{what}: {result:?}");
            if let Err(e) = &result {
                assert_eq!(e.kind(), ErrorKind::Destination, "{what}: {e}");
            }
        }
        assert!(
            failing.tripped(),
            "{}: the fault at `{what}` was never reached",
            lake.kind
        );
        // The process dies here: no abort, no release.
        drop(s);

        // Recovery run (after the dead run's lease expired).
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let mut r = lake.sink();
        let st = r
            .open(&specs())
            .await
            .unwrap_or_else(|e| panic!("{what}: recovery open: {e}"));
        let after = vec![scan(&r, &opp()).await, scan(&r, &note()).await];
        if commits {
            assert_eq!(st, Some(state(n + 1)), "{what}");
            assert_eq!(after[0][&format!("z{n}")]["name"], "Z");
            assert_eq!(after[0]["a"]["name"], "A-new");
            assert_eq!(after[0][&format!("base{n}")]["_fivetran_deleted"], true);
            assert!(after[1].values().all(|r| r["opp_id"] != "a"));
        } else {
            assert_eq!(
                st,
                Some(state(n)),
                "{what}: state must be the last committed one"
            );
            assert_eq!(
                after, before,
                "{what}: content must be the last committed one"
            );
        }
        r.close().await.unwrap();
        lake.assert_no_orphans(&["opp", "note", "hist"]).await;
    }
}

async fn manifest_race(lake: Lake) {
    baseline(&lake, 1).await;
    for round in 0..3 {
        let mut a = lake.sink_on(|s| Arc::new(PrivateLease::new(s, "a")));
        let mut b = lake.sink_on(|s| Arc::new(PrivateLease::new(s, "b")));
        a.open(&specs()).await.unwrap();
        b.open(&specs()).await.unwrap();
        let (ia, ib) = (format!("ra{round}"), format!("rb{round}"));
        a.write(stamp(opp_rows("opp", &[(ia.as_str(), "A", 1)]), T2))
            .await
            .unwrap();
        b.write(stamp(opp_rows("opp", &[(ib.as_str(), "B", 1)]), T2))
            .await
            .unwrap();
        let (sa, sb) = (state(100 + round), state(200 + round));
        let (ra, rb) = tokio::join!(a.commit(&sa), b.commit(&sb));
        assert!(
            ra.is_ok() != rb.is_ok(),
            "exactly one commit wins: {ra:?} / {rb:?}"
        );
        let loser = ra.as_ref().err().or(rb.as_ref().err()).unwrap();
        assert!(loser.to_string().contains("concurrently"), "{loser}");
        a.close().await.unwrap();
        b.close().await.unwrap();
        let rows = scan(&lake.sink(), &opp()).await;
        assert!(
            rows.contains_key(&ia) != rows.contains_key(&ib),
            "only the winner's rows"
        );
        let st = lake.sink().read_state().await.unwrap().unwrap();
        assert_eq!(
            st,
            if ra.is_ok() {
                state(100 + round)
            } else {
                state(200 + round)
            }
        );
        lake.assert_no_orphans(&["opp"]).await;
    }
}

#[tokio::test]
async fn local_errors_name_the_path_and_keep_data() {
    let lake = Lake::local();
    let base = lake.tmp.as_ref().unwrap().path();
    // A destination below a regular file cannot be written.
    std::fs::write(base.join("file"), b"x").unwrap();
    let mut cfg = lake.config.clone();
    cfg.dest = Some(base.join("file/lake").display().to_string());
    let mut s = sluice_lake::LakeSink::new(cfg, lake.format()).unwrap();
    let err = s.open(&specs()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination);
    let msg = err.to_string();
    assert!(
        msg.contains("file/lake") && msg.contains("os error"),
        "{msg}"
    );

    // A table folder that cannot be created fails the commit; data and state stay.
    let before = baseline(&lake, 1).await;
    std::fs::write(base.join("lake/hist"), b"not a folder").unwrap();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("new", "N", 2)]), T2))
        .await
        .unwrap();
    s.write(stamp(opp_rows("hist", &[("h", "H", 2)]), T2))
        .await
        .unwrap();
    let err = s.commit(&state(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination);
    assert!(
        err.to_string().contains("lake/hist") && err.to_string().contains("os error"),
        "{err}"
    );
    s.abort().await.unwrap();
    let r = lake.sink();
    assert_eq!(r.read_state().await.unwrap(), Some(state(1)));
    assert_eq!(scan(&r, &opp()).await, before[0]);
    lake.assert_no_orphans(&["opp"]).await;
}

/// Staging files of puts a killed run left on local disk (`<name>#<n>`, which object_store
/// listings hide) are removed at the next open; other files are left alone.
#[tokio::test]
async fn open_removes_staging_files_of_killed_puts() {
    let lake = Lake::local();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.close().await.unwrap();
    let root = lake.tmp.as_ref().unwrap().path().join("lake");
    let leftovers = [
        root.join("opp/part-b00000-0123.parquet#1"),
        root.join("_sluice/manifest/00000000000000000002.json#3"),
    ];
    let foreign = root.join("opp/README#1");
    for p in leftovers.iter().chain([&foreign]) {
        std::fs::write(p, b"partial").unwrap();
    }
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    for p in &leftovers {
        assert!(!p.exists(), "{} left", p.display());
    }
    assert!(foreign.exists(), "a file sluice does not write stays");
    assert_eq!(scan(&lake.sink(), &opp()).await.len(), 1);
}

#[tokio::test]
async fn registered_and_configured_from_json() {
    let names: Vec<_> = sluice_core::inventory::iter::<sluice_core::SinkPlugin>
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(names.contains(&"parquet") && names.contains(&"delta"));
    // The delta sink takes the lake keys plus its own; `table_format` is gone.
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("d");
    let cfg = serde_json::json!({"dest": lake.display().to_string()});
    let mut sink = sluice_core::build_sink::<sluice_sink_delta::DeltaSinkFactory>(&cfg).unwrap();
    sink.open(&specs()).await.unwrap();
    sink.write(stamp(opp_rows("opp", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    sink.commit(&state(1)).await.unwrap();
    sink.close().await.unwrap();
    assert!(
        lake.join("opp/_delta_log/00000000000000000000.json")
            .exists()
    );
    let bad = serde_json::json!({"dest": "/tmp/x", "max_deleted_share": 0.0});
    let Err(err) = sluice_core::build_sink::<sluice_sink_delta::DeltaSinkFactory>(&bad) else {
        panic!("a share of 0 must be rejected")
    };
    assert!(err.to_string().contains("sink.max_deleted_share"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({"dest": tmp.path().join("l").display().to_string(), "buckets": 4});
    let mut sink =
        sluice_core::build_sink::<sluice_sink_parquet::ParquetSinkFactory>(&cfg).unwrap();
    sink.open(&specs()).await.unwrap();
    sink.close().await.unwrap();
    let bad = serde_json::json!({"dest": "ftp://x/y"});
    let Err(err) = sluice_core::build_sink::<sluice_sink_parquet::ParquetSinkFactory>(&bad) else {
        panic!("ftp:// must be rejected")
    };
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("sink.dest"), "{err}");
    let unknown = serde_json::json!({"dest": "/tmp/x", "nope": true});
    assert!(sluice_core::build_sink::<sluice_sink_parquet::ParquetSinkFactory>(&unknown).is_err());
    assert!(sluice_core::build_sink::<sluice_sink_delta::DeltaSinkFactory>(&unknown).is_err());
    for format in ["delta", "parquet"] {
        let old = serde_json::json!({"dest": "/tmp/x", "table_format": format});
        let parquet = sluice_core::build_sink::<sluice_sink_parquet::ParquetSinkFactory>(&old);
        let delta = sluice_core::build_sink::<sluice_sink_delta::DeltaSinkFactory>(&old);
        for err in [parquet.err().unwrap(), delta.err().unwrap()] {
            let msg = err.to_string();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(
                msg.contains("table_format") && msg.contains("--sink delta") && !msg.contains('\n'),
                "{msg}"
            );
        }
    }
}

#[test]
fn secrets_never_show() {
    let Some(lake) = Lake::s3() else { return };
    let s = lake.sink();
    let debug = format!("{s:?} {:?}", lake.config);
    assert!(!debug.contains("TOP-SECRET-KEY"), "{debug}");
}
