//! The append fast path and compaction: commits that only add new keys write new files next
//! to the existing ones; anything that changes a stored row rewrites its bucket.

use crate::common::*;
use sluice_core::Sink;

/// `(id, opp_id, body)` rows of `page` for the measurement: 1000 new notes over 100 parents.
fn page_rows(page: usize, per_page: usize) -> Vec<(String, String, String)> {
    (0..per_page)
        .map(|i| {
            let n = page * per_page + i;
            (
                format!("note-{n:07}"),
                format!("opp-{:06}", n / 10),
                format!("body of note {n}, some text to compress"),
            )
        })
        .collect()
}

/// Commits `pages` pages of `per_page` new child rows into `note` (16 buckets), one commit
/// per page, and prints total bytes written/rewritten and wall time. A measurement, not a
/// timed test: run with `--run-ignored only measure_appends`.
async fn measure(mut lake: Lake, pages: usize, per_page: usize) -> (u64, u64, u64) {
    // The layout these figures were first measured with (docs/parquet-sink.md).
    lake.config.table_buckets.insert("note".into(), 16);
    let started = std::time::Instant::now();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let (mut written, mut rewritten, mut files) = (0, 0, 0);
    for page in 0..pages {
        let rows = page_rows(page, per_page);
        let refs: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        s.write(stamp(note_rows(&refs), T1 + page as i64))
            .await
            .unwrap();
        let r = s.commit(&state(page as i64)).await.unwrap();
        let t = r.tables["note"];
        assert_eq!(t.inserted, per_page as u64);
        written += t.bytes_written;
        rewritten += t.bytes_rewritten;
        files += t.files_written;
    }
    s.close().await.unwrap();
    let elapsed = started.elapsed();
    let live = lake.sink().live_files("note").await.unwrap().len();
    eprintln!(
        "[{}] {pages} commits x {per_page} new rows (16 buckets): wrote {written} B in {files} files, \
         rewrote {rewritten} B, {live} live files, {:.1} s",
        lake.kind,
        elapsed.as_secs_f64()
    );
    let rows = scan(&lake.sink(), &note()).await;
    assert_eq!(rows.len(), pages * per_page);
    (written, rewritten, live as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --run-ignored only"]
async fn measure_appends_local() {
    measure(Lake::local(), 100, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --run-ignored only"]
async fn measure_appends_s3() {
    if let Some(lake) = Lake::s3() {
        measure(lake, 100, 1000).await;
    }
}

both!(
    disjoint_keys_append,
    changed_rows_rewrite,
    compaction,
    compaction_is_size_tiered,
    small_row_groups_merge_once_they_make_a_large_one,
    buckets_follow_table_size,
    history_appends,
    crash_with_appended_files,
);

use crate::failing::{FailingStore, Op};
use sluice_core::{Change, ColumnSpec, ColumnType, Scope, SyncKind, TableSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A grand-child of `opp` (through `note`), bucketed by its parent column.
fn field() -> TableSpec {
    let mut t = TableSpec::new(
        "field",
        SyncKind::Child {
            parent: "note".into(),
            parent_column: "note_id".into(),
        },
    )
    .column(ColumnSpec::new("id", ColumnType::String))
    .column(ColumnSpec::new("note_id", ColumnType::String))
    .key(["id"]);
    t.bucket_column = Some("note_id".into());
    t
}

fn all_specs() -> Vec<TableSpec> {
    let mut t = specs();
    t.push(field());
    t
}

fn field_rows(rows: &[(&str, &str)]) -> Change {
    Change::Upsert {
        table: "field".into(),
        batch: sluice_core::arrow::array::RecordBatch::try_new(
            field().source_schema(),
            vec![
                Arc::new(sluice_core::arrow::array::StringArray::from_iter_values(
                    rows.iter().map(|r| r.0),
                )),
                Arc::new(sluice_core::arrow::array::StringArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
            ],
        )
        .unwrap(),
    }
}

fn st(change: Change, at: i64) -> sluice_core::SinkChange {
    stamp_with(&all_specs(), change, at)
}

/// `n` notes `note-<tag>-<i>` spread over `n / 2` parents `p-<tag>-<j>`.
fn notes(tag: &str, n: usize) -> Vec<(String, String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("note-{tag}-{i}"),
                format!("p-{tag}-{}", i / 2),
                "body".to_owned(),
            )
        })
        .collect()
}

fn note_change(rows: &[(String, String, String)]) -> Change {
    let refs: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    note_rows(&refs)
}

async fn live(lake: &Lake, table: &str) -> BTreeSet<String> {
    lake.sink()
        .live_files(table)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Live files per bucket (from the `part-bNNNNN-` file names).
async fn per_bucket(lake: &Lake, table: &str) -> BTreeMap<u32, usize> {
    let mut out = BTreeMap::new();
    for f in live(lake, table).await {
        let name = f.rsplit('/').next().unwrap();
        let b: u32 = name["part-b".len().."part-b".len() + 5].parse().unwrap();
        *out.entry(b).or_default() += 1;
    }
    out
}

/// New keys only: every commit adds files, replaces none, and the table has one row per key.
async fn disjoint_keys_append(lake: Lake) {
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    let mut all_notes = 0;
    let mut all_opps = 0;
    for round in 0..4 {
        let before_notes = live(&lake, "note").await;
        let before_opps = live(&lake, "opp").await;
        let rows = notes(&format!("r{round}"), 60);
        s.write(st(note_change(&rows), T1 + round)).await.unwrap();
        let ids: Vec<String> = (0..40).map(|i| format!("opp-{round}-{i}")).collect();
        let orows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "N", 1)).collect();
        s.write(st(opp_rows("opp", &orows), T1 + round))
            .await
            .unwrap();
        let r = s.commit(&state(round)).await.unwrap();
        all_notes += 60;
        all_opps += 40;
        for (t, before) in [("note", &before_notes), ("opp", &before_opps)] {
            let stats = r.tables[t];
            assert_eq!(
                stats.bytes_rewritten, 0,
                "{}: round {round} {t}: {stats:?}",
                lake.kind
            );
            assert!(stats.bytes_written > 0 && stats.files_written > 0);
            let after = live(&lake, t).await;
            assert!(
                after.is_superset(before),
                "round {round} {t}: old files must stay listed"
            );
            assert_eq!(
                after.len(),
                before.len() + stats.files_written as usize,
                "round {round} {t}"
            );
        }
        assert_eq!(r.tables["note"].inserted, 60);
        assert_eq!(r.tables["opp"].inserted, 40);
    }
    // Plain Parquet files carry their Arrow schema (`ARROW:schema`) for readers that restore
    // Arrow types from it.
    let footers = lake.footer_keys("opp").await;
    assert!(!footers.is_empty());
    assert!(
        footers
            .iter()
            .all(|keys| keys.iter().any(|k| k == "ARROW:schema")),
        "{footers:?}"
    );
    s.close().await.unwrap();
    assert!(
        per_bucket(&lake, "note").await.values().any(|&c| c > 1),
        "buckets hold several files"
    );
    let reader = lake.sink();
    assert_eq!(scan(&reader, &note()).await.len(), all_notes);
    assert_eq!(scan(&reader, &opp()).await.len(), all_opps);
    lake.assert_no_orphans(&["opp", "note"]).await;
}

/// Commits `change` (plus some new notes) and returns the note stats and the buckets whose
/// files changed.
async fn rewrite_case(
    lake: &Lake,
    round: i64,
    changes: Vec<Change>,
) -> (sluice_core::TableCommitStats, usize) {
    let before = live(lake, "note").await;
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    for c in changes {
        s.write(st(c, T2 + round)).await.unwrap();
    }
    let r = s.commit(&state(100 + round)).await.unwrap();
    s.close().await.unwrap();
    let after = live(lake, "note").await;
    let t = r.tables["note"];
    assert!(t.bytes_rewritten > 0, "round {round}: {t:?}");
    (t, before.difference(&after).count())
}

/// Anything that changes a stored row rewrites its bucket; one row per key everywhere.
async fn changed_rows_rewrite(mut lake: Lake) {
    lake.config.table_buckets.insert("note".into(), 8);
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    let (a, b) = (notes("a", 40), notes("b", 40));
    s.write(st(note_change(&a), T1)).await.unwrap();
    s.write(st(
        field_rows(&[("f1", "note-a-0"), ("f2", "note-a-1"), ("f3", "note-a-2")]),
        T1,
    ))
    .await
    .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(st(note_change(&b), T1 + 1)).await.unwrap();
    let r = s.commit(&state(2)).await.unwrap();
    assert_eq!(r.tables["note"].bytes_rewritten, 0);
    s.close().await.unwrap();

    // An upsert of an existing key (and one moving to another parent).
    let (t, gone) = rewrite_case(
        &lake,
        1,
        vec![note_rows(&[
            ("note-a-3", "p-a-1", "changed"),
            ("note-b-5", "p-new", "moved"),
        ])],
    )
    .await;
    assert_eq!((t.updated, t.inserted), (2, 0), "{t:?}");
    assert!(gone >= 1);
    let rows = scan(&lake.sink(), &note()).await;
    assert_eq!(rows.len(), 80);
    assert_eq!(rows["note-a-3"]["body"], "changed");
    assert_eq!(rows["note-b-5"]["opp_id"], "p-new");

    // A delete (notes delete hard).
    let (t, _) = rewrite_case(
        &lake,
        2,
        vec![Change::Delete {
            table: "note".into(),
            keys: keys(&["note-b-7"]),
        }],
    )
    .await;
    assert_eq!(t.deleted, 1);
    let rows = scan(&lake.sink(), &note()).await;
    assert_eq!(rows.len(), 79);
    assert!(!rows.contains_key("note-b-7"));

    // A scoped DeleteMissing: the re-read parent p-a-4 keeps note-a-8 only.
    let (t, gone) = rewrite_case(
        &lake,
        3,
        vec![Change::DeleteMissing {
            table: "note".into(),
            scope: Scope::Where {
                column: "opp_id".into(),
                values: vec!["p-a-4".into()],
            },
            keep: keys(&["note-a-8"]),
        }],
    )
    .await;
    assert_eq!(t.deleted, 1);
    assert!(
        (1..=2).contains(&gone),
        "one bucket rewritten, {gone} files replaced"
    );
    let rows = scan(&lake.sink(), &note()).await;
    assert_eq!(rows.len(), 78);
    assert!(!rows.contains_key("note-a-9") && rows.contains_key("note-a-8"));

    // A Via scope: the notes of parent p-a-0 are re-read; deleting the missing fields of those
    // notes removes f1, f2 (of note-a-0 and note-a-1) but not f3.
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    s.write(st(
        Change::DeleteMissing {
            table: "field".into(),
            scope: Scope::Via {
                column: "note_id".into(),
                parent_table: "note".into(),
                parent_column: "id".into(),
                parent_scope: Box::new(Scope::Where {
                    column: "opp_id".into(),
                    values: vec!["p-a-0".into()],
                }),
            },
            keep: keys(&["f2"]),
        },
        T3,
    ))
    .await
    .unwrap();
    s.write(st(field_rows(&[("f4", "note-b-0")]), T3))
        .await
        .unwrap();
    let r = s.commit(&state(200)).await.unwrap();
    s.close().await.unwrap();
    let f = r.tables["field"];
    assert_eq!((f.deleted, f.inserted), (1, 1), "{f:?}");
    assert!(f.bytes_rewritten > 0);
    let fields = scan(&lake.sink(), &field()).await;
    assert_eq!(
        fields.keys().collect::<Vec<_>>(),
        ["f2", "f3", "f4"],
        "{fields:?}"
    );
    lake.assert_no_orphans(&["note", "field"]).await;
}

/// Upserts `n` new `opp` keys `<tag>-<round>-<i>` and commits; returns the commit's `opp`
/// figures.
async fn commit_new_opps(
    s: &mut sluice_lake::LakeSink,
    tag: &str,
    round: i64,
    n: usize,
) -> sluice_core::TableCommitStats {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{round}-{i}")).collect();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "N", 1)).collect();
    s.write(st(opp_rows("opp", &rows), T1 + round))
        .await
        .unwrap();
    s.commit(&state(round)).await.unwrap().tables["opp"]
}

/// A bucket that would exceed `max_files_per_bucket` is rewritten into one file.
async fn compaction(mut lake: Lake) {
    lake.config.table_buckets.insert("opp".into(), 2);
    lake.config.max_files_per_bucket = 3;
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    let mut compacted = 0;
    let mut total = 0;
    for round in 0..8 {
        let t = commit_new_opps(&mut s, "c", round, 20).await;
        total += 20;
        assert_eq!((t.inserted, t.updated), (20, 0));
        if t.bytes_rewritten > 0 {
            compacted += 1;
        }
        let counts = per_bucket(&lake, "opp").await;
        assert!(
            counts.values().all(|&c| c <= 3),
            "round {round}: {counts:?}"
        );
        assert_eq!(counts.len(), 2);
    }
    s.close().await.unwrap();
    assert!(compacted >= 2, "compaction ran {compacted} times");
    assert_eq!(scan(&lake.sink(), &opp()).await.len(), total);
    lake.assert_no_orphans(&["opp"]).await;
}

/// Without a fixed bucket count, a table starts with one bucket and, when a commit would
/// leave more than `bucket_rows` rows per bucket, first splits its buckets 4 ways. Rows stay
/// one per key, and updates after a split find their stored rows (the probe reads only the
/// key's bucket of `opp`, so a row in the wrong bucket would come back as a duplicate key).
async fn buckets_follow_table_size(mut lake: Lake) {
    lake.config.bucket_rows = 40;
    lake.config.max_files_per_bucket = 3;
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut counts = Vec::new();
    let mut expected = 1u64;
    for round in 0..10 {
        let new: Vec<String> = (0..30).map(|i| format!("g-{round}-{i}")).collect();
        let updated: Vec<String> = ids.iter().take(5).cloned().collect();
        let mut rows: Vec<(&str, &str, i64)> = new.iter().map(|i| (i.as_str(), "N", 1)).collect();
        rows.extend(updated.iter().map(|i| (i.as_str(), "U", round)));
        s.write(st(opp_rows("opp", &rows), T1 + round))
            .await
            .unwrap();
        let t = s.commit(&state(round)).await.unwrap().tables["opp"];
        assert_eq!((t.inserted, t.updated), (30, updated.len() as u64));
        // The documented rule: stored rows plus the commit's upserted rows per bucket.
        while ids.len() as u64 + rows.len() as u64 > expected * 40 {
            expected *= 4;
        }
        ids.extend(new);
        let entry = lake.manifest_entry("opp").await;
        let buckets = entry["buckets"].as_u64().unwrap();
        assert_eq!(buckets, expected, "round {round}: {entry}");
        let files = entry["files"].as_array().unwrap();
        let stored: u64 = files.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
        assert_eq!(stored, ids.len() as u64, "round {round}");
        assert!(
            files
                .iter()
                .all(|f| f["bucket"].as_u64().unwrap() < buckets)
        );
        counts.push(buckets);
        assert_eq!(scan(&lake.sink(), &opp()).await.len(), ids.len());
    }
    assert_eq!(counts.first(), Some(&1));
    assert!(counts.contains(&4) && counts.contains(&16), "{counts:?}");
    // Every key updated at once: each replaces its stored row.
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "Z", 9)).collect();
    s.write(st(opp_rows("opp", &rows), T2)).await.unwrap();
    let t = s.commit(&state(99)).await.unwrap().tables["opp"];
    assert_eq!((t.inserted, t.updated), (0, ids.len() as u64));
    s.close().await.unwrap();
    let all = scan(&lake.sink(), &opp()).await;
    assert_eq!(all.len(), ids.len());
    assert!(
        all.values().all(|r| r["name"] == serde_json::json!("Z")),
        "{all:?}"
    );
    lake.assert_no_orphans(&["opp"]).await;
}

/// Compaction is size-tiered: once the bucket holds one large file, compactions merge the
/// small recent files (and the new rows) and leave the large one as it is.
async fn compaction_is_size_tiered(mut lake: Lake) {
    lake.config.table_buckets.insert("opp".into(), 1);
    lake.config.max_files_per_bucket = 4;
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    let (mut live, mut partial, mut whole) = (0u64, 0, 0);
    for round in 0..24 {
        let t = commit_new_opps(&mut s, "t", round, 10).await;
        assert_eq!((t.inserted, t.updated), (10, 0));
        if t.bytes_rewritten > 0 {
            if t.bytes_rewritten < live {
                partial += 1;
            } else {
                whole += 1;
            }
        }
        live = live + t.bytes_written - t.bytes_rewritten;
        let counts = per_bucket(&lake, "opp").await;
        assert!(
            counts.values().all(|&c| c <= 4),
            "round {round}: {counts:?}"
        );
    }
    s.close().await.unwrap();
    assert!(
        partial > whole && whole >= 1,
        "compactions: {partial} partial, {whole} of the whole bucket"
    );
    assert_eq!(scan(&lake.sink(), &opp()).await.len(), 240);
    lake.assert_no_orphans(&["opp"]).await;
}

/// The row groups of the live files of `table`, rows each, read from their footers.
async fn row_groups(lake: &Lake, table: &str) -> Vec<i64> {
    use object_store::ObjectStoreExt;
    use parquet::file::metadata::ParquetMetaDataReader;
    let store = lake.dest().store;
    let mut out = Vec::new();
    for path in lake.sink().live_files(table).await.unwrap() {
        let path = object_store::path::Path::from(path);
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        out.extend(meta.row_groups().iter().map(|g| g.num_rows()));
    }
    out
}

/// Commits of a few rows each into one bucket: their small row groups are copied by the
/// compactions until they add up to a large one (a sixteenth of `row_group_rows`), then merged
/// into it, so the live files hold few small row groups however many commits were made.
async fn small_row_groups_merge_once_they_make_a_large_one(mut lake: Lake) {
    lake.config.table_buckets.insert("opp".into(), 1);
    lake.config.max_files_per_bucket = 4;
    // A row group of under 100 rows is small; each commit writes one of 10 rows.
    lake.config.row_group_rows = 1600;
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    for round in 0..60 {
        let t = commit_new_opps(&mut s, "t", round, 10).await;
        assert_eq!(t.inserted, 10);
    }
    s.close().await.unwrap();
    let groups = row_groups(&lake, "opp").await;
    assert_eq!(groups.iter().sum::<i64>(), 600);
    let small = groups.iter().filter(|&&g| g < 100).count();
    // Without merging, one small row group per commit (60) would stay; merging at every
    // compaction or once they add up, at most the ~10 rows of each commit since the last
    // merge per file: a few per file.
    assert!(small <= 4 * 10, "{groups:?}");
    assert!(groups.iter().any(|&g| g >= 100), "{groups:?}");
    assert_eq!(scan(&lake.sink(), &opp()).await.len(), 600);
    lake.assert_no_orphans(&["opp"]).await;
}

/// History: new keys append; a changed key closes its active version; one active per key.
async fn history_appends(lake: Lake) {
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    let ids: Vec<String> = (0..30).map(|i| format!("h{i}")).collect();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v1", 1)).collect();
    s.write(st(opp_rows("hist", &rows[..15]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(st(opp_rows("hist", &rows[15..]), T2))
        .await
        .unwrap();
    let r = s.commit(&state(2)).await.unwrap();
    assert_eq!(r.tables["hist"].bytes_rewritten, 0);
    // h3 changes, h4 is re-sent unchanged, h5 is deleted.
    s.write(st(
        opp_rows(
            "hist",
            &[("h3", "v2", 2), ("h4", "v1", 1), ("new", "v1", 1)],
        ),
        T3,
    ))
    .await
    .unwrap();
    s.write(st(
        Change::Delete {
            table: "hist".into(),
            keys: keys(&["h5"]),
        },
        T3,
    ))
    .await
    .unwrap();
    let r = s.commit(&state(3)).await.unwrap();
    let t = r.tables["hist"];
    assert_eq!(
        (t.updated, t.unchanged, t.inserted, t.deleted),
        (1, 1, 1, 1),
        "{t:?}"
    );
    assert!(t.bytes_rewritten > 0);
    s.close().await.unwrap();
    let rows = scan(&lake.sink(), &hist()).await; // by storage key: panics on duplicates
    assert_eq!(rows.len(), 32, "30 + a second version of h3 + new");
    let mut active: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.values() {
        if r["_fivetran_active"] == true {
            *active
                .entry(r["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert!(active.values().all(|&c| c == 1), "{active:?}");
    assert_eq!(active.len(), 30, "h5 has no active version");
    assert!(!active.contains_key("h5"));
    lake.assert_no_orphans(&["hist"]).await;
}

/// Crashes in an append commit and in a rewrite of a bucket with several files recover to
/// the last committed content with no orphans.
async fn crash_with_appended_files(mut lake: Lake) {
    lake.config.lease_ttl_secs = 1;
    lake.config.table_buckets.insert("note".into(), 2);
    let mut s = lake.sink();
    s.open(&all_specs()).await.unwrap();
    for round in 0..3 {
        s.write(st(
            note_change(&notes(&format!("k{round}"), 10)),
            T1 + round,
        ))
        .await
        .unwrap();
        s.commit(&state(round)).await.unwrap();
    }
    s.close().await.unwrap();
    assert!(per_bucket(&lake, "note").await.values().all(|&c| c == 3));

    let cases: [(Op, &str, usize, bool, bool); 4] = [
        (Op::Put, "/part-b", 1, false, false),
        (Op::Put, "_sluice/manifest/", 0, false, false),
        (Op::Put, "/part-b", 0, true, false),
        (Op::Delete, "/part-b", 0, true, true),
    ];
    for (i, (op, path, nth, rewrite, commits)) in cases.into_iter().enumerate() {
        let reader = lake.sink();
        let before = scan(&reader, &note()).await;
        let st_before = reader.read_state().await.unwrap();
        let failing = Arc::new(FailingStore::new(
            Arc::clone(&lake.dest().store),
            op,
            path,
            nth,
        ));
        let f2 = Arc::clone(&failing);
        let mut s = lake.sink_on(move |_| f2);
        s.open(&all_specs()).await.unwrap();
        let mut rows = notes(&format!("x{i}"), 10);
        if rewrite {
            rows.push(("note-k0-0".into(), "p-k0-0".into(), format!("new {i}")));
        }
        s.write(st(note_change(&rows), T2 + i as i64))
            .await
            .unwrap();
        let result = s.commit(&state(50 + i as i64)).await;
        assert_eq!(result.is_ok(), commits, "case {i}: {result:?}");
        assert!(failing.tripped(), "case {i}: fault not reached");
        drop(s);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let mut r = lake.sink();
        let got = r.open(&all_specs()).await.unwrap();
        let after = scan(&r, &note()).await;
        if commits {
            assert_eq!(got, Some(state(50 + i as i64)));
            assert_eq!(after.len(), before.len() + 10);
            assert_eq!(after["note-k0-0"]["body"], format!("new {i}"));
        } else {
            assert_eq!(got, st_before, "case {i}");
            assert_eq!(after, before, "case {i}");
        }
        r.close().await.unwrap();
        lake.assert_no_orphans(&["note"]).await;
    }
}
