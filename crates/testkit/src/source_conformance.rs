//! The conformance suite every source runs on itself, against a [`MemoryDestination`]:
//! a valid catalog, a full sync that ends in a checkpoint with one row per key, an
//! incremental sync that keeps one row per key, blocking honoured, and prompt cancellation.

use crate::memory_sink::MemoryDestination;
use crate::rows::rows_by_key;
use crate::sync_with;
use sluice_core::{DynSource, ErrorKind, SyncOptions, SyncSettings, TableSettings};
use std::collections::BTreeSet;
use std::time::Duration;

/// Runs the suite. `config` must make the source read a small, reachable data set; `name`
/// is the source's registered name.
pub async fn run(name: &str, source: &dyn DynSource, config: &serde_json::Value) {
    let catalog = source.catalog();
    assert!(!catalog.is_empty(), "empty catalog");
    let mut names = BTreeSet::new();
    for spec in &catalog {
        spec.validate().expect("valid table spec");
        assert!(
            names.insert(spec.name.clone()),
            "table {} declared twice",
            spec.name
        );
    }

    // A full sync commits at least once and leaves one row per key.
    let dest = MemoryDestination::new(name);
    let report = sync_with(source, config, &dest, SyncOptions::default())
        .await
        .expect("full sync");
    assert!(report.commits >= 1, "a sync must end with a checkpoint");
    assert!(dest.state().is_some(), "state committed");
    let mut written = 0;
    for spec in &catalog {
        let key = spec.storage_key();
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        let rows = dest.committed_rows(&spec.name);
        written += rows.len();
        rows_by_key(&rows, &key); // panics on a duplicate key
    }
    assert!(written > 0, "a full sync wrote nothing");

    // A second (incremental) sync keeps one row per key.
    sync_with(source, config, &dest, SyncOptions::default())
        .await
        .expect("incremental sync");
    for spec in &catalog {
        let key = spec.storage_key();
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        rows_by_key(&dest.committed_rows(&spec.name), &key);
    }

    // Blocking every table but the first writes only that table.
    let keep = &catalog[0].name;
    let settings = SyncSettings::default().with_tables(
        catalog
            .iter()
            .filter(|t| &t.name != keep)
            .map(|t| (t.name.clone(), TableSettings::default().with_enabled(false)))
            .collect(),
    );
    let blocked = MemoryDestination::new(name);
    sync_with(
        source,
        config,
        &blocked,
        SyncOptions::default().with_settings(settings),
    )
    .await
    .expect("sync with blocked tables");
    for t in blocked.table_names() {
        assert_eq!(&t, keep, "blocked table {t} was written");
    }

    // Cancellation stops the sync promptly with the Cancelled kind and commits nothing new.
    let cancelled = MemoryDestination::new(name);
    let options = SyncOptions::default();
    options.cancel.cancel();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        sync_with(source, config, &cancelled, options),
    )
    .await
    .expect("cancellation must stop the sync promptly");
    let err = result.expect_err("a cancelled sync must fail");
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(
        cancelled.state().is_none(),
        "a cancelled first sync committed state"
    );
}
