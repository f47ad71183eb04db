use serde_json::json;
use sluice_core::{ErrorKind, Secret, SyncOptions, SyncSettings, TableSettings};
use sluice_testkit::{
    FailPoint, MemoryDestination, TestSource, sink_conformance, source_conformance, sync_with,
};
use std::collections::BTreeMap;

const SOURCE: &str = "test";
const STARTED: i64 = 1_750_000_000_000;

fn options(at: i64) -> SyncOptions {
    SyncOptions::default().with_started_at_ms(at)
}

fn config(version: i64, lookup: &[&str]) -> serde_json::Value {
    json!({"parents": 7, "children_per_parent": 2, "version": version, "lookup": lookup, "checkpoint_every": 3})
}

#[tokio::test]
async fn test_source_runs_end_to_end_into_memory_sink() {
    let dest = MemoryDestination::new(SOURCE);
    let report = sync_with(
        &TestSource,
        &config(1, &["a", "b"]),
        &dest,
        options(STARTED),
    )
    .await
    .unwrap();
    // 3 parent pages + lookup/final checkpoint.
    assert_eq!(report.commits, 4);
    assert_eq!(report.tables["parent"].inserted, 7);
    assert_eq!(report.tables["child"].inserted, 14);
    assert_eq!(dest.committed_rows("parent").len(), 7);
    let row = &dest.committed_rows("parent")[0];
    assert_eq!(row["_fivetran_synced"], STARTED * 1000);
    assert_eq!(row["name"], "parent p0000 v1");
    // An incremental sync with nothing new touches only the re-imported lookup.
    let report = sync_with(&TestSource, &config(1, &["a"]), &dest, options(STARTED + 1))
        .await
        .unwrap();
    assert!(!report.tables.contains_key("parent"));
    let lookup = dest.committed_rows("lookup");
    assert_eq!(
        lookup
            .iter()
            .filter(|r| r["_fivetran_deleted"] == true)
            .count(),
        1
    );
}

/// A sink failing at each step leaves the state unadvanced, and a rerun produces exactly the
/// output of a run that never failed.
#[tokio::test]
async fn failures_at_every_commit_step_leave_state_unadvanced_and_rerun_converges() {
    let clean = MemoryDestination::new(SOURCE);
    sync_with(
        &TestSource,
        &config(1, &["a", "b"]),
        &clean,
        options(STARTED),
    )
    .await
    .unwrap();
    sync_with(
        &TestSource,
        &config(2, &["b"]),
        &clean,
        options(STARTED + 10),
    )
    .await
    .unwrap();
    let expected = clean.snapshot();

    let points = [
        FailPoint::Open,
        FailPoint::Write(0),
        FailPoint::Write(3),
        FailPoint::Write(8),
        FailPoint::BeforeData,
        FailPoint::BeforeState,
    ];
    for point in points {
        let dest = MemoryDestination::new(SOURCE);
        sync_with(
            &TestSource,
            &config(1, &["a", "b"]),
            &dest,
            options(STARTED),
        )
        .await
        .unwrap();
        let before = dest.state();
        dest.fail_at(point);
        let err = sync_with(
            &TestSource,
            &config(2, &["b"]),
            &dest,
            options(STARTED + 10),
        )
        .await
        .expect_err("injected failure must fail the sync");
        assert_eq!(err.kind(), ErrorKind::Destination, "{point:?}: {err}");
        let after = dest.state().unwrap();
        // Checkpoints before the failure may have committed, but the cursor that covers the
        // whole sync must not have advanced.
        assert_eq!(
            after.table("parent").cursor,
            before.as_ref().unwrap().table("parent").cursor,
            "{point:?}: state advanced past a failure"
        );
        sync_with(
            &TestSource,
            &config(2, &["b"]),
            &dest,
            options(STARTED + 10),
        )
        .await
        .unwrap();
        assert_eq!(dest.snapshot(), expected, "{point:?}: rerun output differs");
        assert_eq!(
            dest.state().unwrap().tables,
            clean.state().unwrap().tables,
            "{point:?}"
        );
    }
}

#[tokio::test]
async fn a_failing_source_commits_nothing_past_its_last_checkpoint() {
    let dest = MemoryDestination::new(SOURCE);
    let mut cfg = config(1, &["a"]);
    cfg["fail_after_messages"] = json!(5);
    let err = sync_with(&TestSource, &cfg, &dest, options(STARTED))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    // 4 messages per page: one page committed, the second page's upsert was not.
    assert_eq!(dest.commits(), 1);
    assert_eq!(dest.committed_rows("parent").len(), 3);
    assert!(dest.state().unwrap().table("parent").cursor.is_none());
    sync_with(&TestSource, &config(1, &["a"]), &dest, options(STARTED))
        .await
        .unwrap();
    assert_eq!(dest.committed_rows("parent").len(), 7);
}

/// A sink that fails while the source is blocked on a full channel ends the run with the
/// sink's error instead of waiting forever: with room for one message and 2,000 to send
/// (500 pages of four), the source waits on the full channel when the first write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_failing_while_the_source_waits_on_a_full_channel_ends_the_run() {
    let dest = MemoryDestination::new(SOURCE);
    dest.fail_at(FailPoint::Write(0));
    let cfg = json!({"parents": 500, "children_per_parent": 2, "version": 1, "lookup": ["a"], "checkpoint_every": 1});
    let run = sync_with(
        &TestSource,
        &cfg,
        &dest,
        options(STARTED).with_channel_capacity(1),
    );
    // A guard against a hang, not a measurement: the run ends at once.
    let err = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the run ends instead of waiting on the full channel")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    assert_eq!(dest.commits(), 0);
}

#[tokio::test]
async fn blocking_and_hashing_apply_end_to_end() {
    let dest = MemoryDestination::new(SOURCE);
    let settings = SyncSettings::default()
        .with_tables(BTreeMap::from([
            (
                "child".to_owned(),
                TableSettings::default().with_enabled(false),
            ),
            (
                "parent".to_owned(),
                TableSettings::default()
                    .with_blocked_columns(vec!["score".into()])
                    .with_hashed_columns(vec!["name".into()]),
            ),
        ]))
        .with_hash_salt(Secret::new("pepper"));
    sync_with(
        &TestSource,
        &config(1, &[]),
        &dest,
        options(STARTED).with_settings(settings),
    )
    .await
    .unwrap();
    assert!(
        !dest.table_names().contains(&"child".to_owned()),
        "blocked table written"
    );
    let row = &dest.committed_rows("parent")[0];
    assert!(!row.contains_key("score"), "blocked column written");
    let expected = sluice_core::hash_value(&Secret::new("pepper"), b"parent p0000 v1");
    assert_eq!(row["name"], expected.as_str());
}

#[tokio::test]
async fn config_errors_fail_before_touching_the_destination() {
    let dest = MemoryDestination::new(SOURCE);
    let settings = SyncSettings::default().with_tables(BTreeMap::from([(
        "parent".to_owned(),
        TableSettings::default().with_blocked_columns(vec!["id".into()]),
    )]));
    let err = sync_with(
        &TestSource,
        &config(1, &[]),
        &dest,
        SyncOptions::default().with_settings(settings),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.exit_code(), 2);
    let err = sync_with(
        &TestSource,
        &json!({"bogus": 1}),
        &dest,
        SyncOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("bogus"), "{err}");
    assert!(dest.state().is_none());
}

#[tokio::test]
async fn resync_forces_a_full_reread() {
    let dest = MemoryDestination::new(SOURCE);
    sync_with(&TestSource, &config(1, &["a"]), &dest, options(STARTED))
        .await
        .unwrap();
    let mut opts = options(STARTED + 5);
    opts.force_resync.insert("parent".into());
    let report = sync_with(&TestSource, &config(1, &["a"]), &dest, opts)
        .await
        .unwrap();
    assert_eq!(report.tables["parent"].unchanged, 7);
}

#[tokio::test]
async fn memory_sink_passes_the_sink_conformance_suite() {
    let dest = MemoryDestination::new("conformance");
    sink_conformance::run(|| Box::new(dest.sink())).await;
}

#[tokio::test]
async fn test_source_passes_the_source_conformance_suite() {
    source_conformance::run(SOURCE, &TestSource, &config(1, &["a", "b"])).await;
}

#[tokio::test]
async fn checkpoints_are_coalesced_by_interval_and_staged_rows() {
    // A long interval: one commit at the end, holding everything.
    let dest = MemoryDestination::new(SOURCE);
    let opts = options(STARTED).with_commit_interval(std::time::Duration::from_secs(3600));
    let report = sync_with(&TestSource, &config(1, &["a"]), &dest, opts)
        .await
        .unwrap();
    assert_eq!(report.commits, 1);
    assert_eq!(dest.committed_rows("parent").len(), 7);
    assert_eq!(
        dest.state().unwrap().table("parent").cursor,
        Some(sluice_core::Cursor::Int(1))
    );

    // The staged-row bound forces commits despite the interval: a page of 3 parents stages
    // 15 rows (3 parents, 6 children, 6 kept child keys), so the first two pages commit at
    // their checkpoints; the small last page and the lookup commit together at the end.
    let dest = MemoryDestination::new(SOURCE);
    let opts = options(STARTED)
        .with_commit_interval(std::time::Duration::from_secs(3600))
        .with_commit_max_rows(9);
    let report = sync_with(&TestSource, &config(1, &["a"]), &dest, opts)
        .await
        .unwrap();
    assert_eq!(report.commits, 3);

    // A failure loses only what was not committed; the rerun converges.
    let dest = MemoryDestination::new(SOURCE);
    let mut cfg = config(1, &["a"]);
    cfg["fail_after_messages"] = json!(9);
    let opts = options(STARTED).with_commit_interval(std::time::Duration::from_secs(3600));
    assert!(sync_with(&TestSource, &cfg, &dest, opts).await.is_err());
    assert_eq!(dest.commits(), 0);
    sync_with(&TestSource, &config(1, &["a"]), &dest, options(STARTED))
        .await
        .unwrap();
    assert_eq!(dest.committed_rows("child").len(), 14);
}

fn history(on: bool) -> SyncSettings {
    SyncSettings::default().with_tables(BTreeMap::from([(
        "parent".to_owned(),
        TableSettings::default().with_history(on),
    )]))
}

/// History mode on any table: switching it on keeps every version from then on; switching
/// it off keeps what exists and updates the active version in place.
#[tokio::test]
async fn history_mode_can_be_switched_on_and_off() {
    let dest = MemoryDestination::new(SOURCE);
    let run = |version: i64, on: bool, at: i64| {
        let dest = dest.clone();
        async move {
            let mut opts = options(at);
            opts.settings = history(on);
            sync_with(&TestSource, &config(version, &[]), &dest, opts)
                .await
                .unwrap();
        }
    };
    run(1, false, STARTED).await;
    assert!(!dest.committed_rows("parent")[0].contains_key("_fivetran_active"));
    // On: existing rows become the active versions, starting at their last sync.
    run(2, true, STARTED + 1_000).await;
    let rows = dest.committed_rows("parent");
    assert_eq!(rows.len(), 14, "7 keys x 2 versions");
    let p0: Vec<_> = rows.iter().filter(|r| r["id"] == "p0000").collect();
    assert_eq!(p0.len(), 2);
    let old = p0.iter().find(|r| r["_fivetran_active"] == false).unwrap();
    let new = p0.iter().find(|r| r["_fivetran_active"] == true).unwrap();
    assert_eq!(old["_fivetran_start"], STARTED * 1000);
    assert_eq!(old["_fivetran_end"], (STARTED + 1_000) * 1000 - 1_000);
    assert_eq!(new["_fivetran_start"], (STARTED + 1_000) * 1000);
    assert_eq!(new["name"], "parent p0000 v2");
    assert!(dest.state().unwrap().table("parent").versioned);
    // Off: versions stay; new data updates the active version in place.
    run(3, false, STARTED + 2_000).await;
    let rows = dest.committed_rows("parent");
    assert_eq!(
        rows.len(),
        14,
        "no new versions once history is off, none lost"
    );
    let p0: Vec<_> = rows.iter().filter(|r| r["id"] == "p0000").collect();
    let active: Vec<_> = p0
        .iter()
        .filter(|r| r["_fivetran_active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["name"], "parent p0000 v3");
    assert_eq!(active[0]["_fivetran_start"], (STARTED + 1_000) * 1000);
    // And on again: versions resume from the active one.
    run(4, true, STARTED + 3_000).await;
    assert_eq!(dest.committed_rows("parent").len(), 21);
}
