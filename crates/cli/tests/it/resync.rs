//! `sluice resync lever --table opportunity` through the binary: the state flag it commits
//! makes the next `sluice run` re-walk the opportunities and soft-delete the ones gone from
//! Lever without a row in `/opportunities/deleted`.

use crate::harness::{Lever, assert_matches_truth, base_command, catalog, output, read_dest, text};
use serde_json::Value;
use sluice_lever_emulator::Truth;
use sluice_lever_emulator::expected::{self, ExpectedOptions};
use sluice_testkit::rows_by_key;
use std::collections::BTreeSet;
use std::path::Path;

/// The `_fivetran_deleted` flags of the `opportunity` rows with id `id`.
async fn deleted_flags(dest: &Path, id: &str) -> Vec<Option<Value>> {
    read_dest(dest)
        .await
        .remove("opportunity")
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.get("id").and_then(Value::as_str) == Some(id))
        .map(|r| r.get("_fivetran_deleted").cloned())
        .collect()
}

/// Compares the live keys of every table with the truth. Rows of removed opportunities stay
/// only in tables that do not capture deletes (Fivetran leaves them there).
async fn assert_live_keys_match_truth(dest: &Path, truth: &Truth) {
    let opts = ExpectedOptions { confidential: true };
    let expected = expected::tables(truth, &opts);
    let removed = expected::tables(
        &Truth {
            opportunities: truth.removed_opportunities.clone(),
            children: truth.removed_children.clone(),
            ..truth.clone()
        },
        &opts,
    );
    let actual = read_dest(dest).await;
    for spec in catalog() {
        let key: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
        let keys = |rows: Option<&Vec<_>>| -> BTreeSet<String> {
            rows_by_key(rows.map_or(&[][..], Vec::as_slice), &key)
                .into_keys()
                .collect()
        };
        let live: Vec<_> = actual
            .get(&spec.name)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.get("_fivetran_deleted") != Some(&Value::Bool(true)))
            .filter(|r| r.get("_fivetran_active") != Some(&Value::Bool(false)))
            .collect();
        let live = keys(Some(&live));
        let want = keys(expected.get(&spec.name));
        let gone = keys(removed.get(&spec.name));
        let missing: Vec<_> = want.difference(&live).collect();
        assert!(missing.is_empty(), "{}: missing {missing:?}", spec.name);
        let extra: Vec<_> = live.difference(&want).collect();
        if spec.capture_deletes {
            assert!(extra.is_empty(), "{}: not deleted {extra:?}", spec.name);
        } else {
            let stray: Vec<_> = extra.iter().filter(|k| !gone.contains(**k)).collect();
            assert!(stray.is_empty(), "{}: stray rows {stray:?}", spec.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_opportunity_soft_deletes_vanished_ones() {
    let lever = Lever::start(30).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lake");
    let d = dest.to_str().unwrap();
    let run = || lever.command(&["run", "lever", "--sink", "parquet", "--dest", d]);
    let o = output(run()).await;
    assert!(o.status.success(), "{}", text(&o).1);
    assert_matches_truth(&dest, &lever.emu).await;

    let gone = lever.emu.truth().opportunities[3]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lever.emu.vanish_opportunity(&gone);
    // An incremental run cannot see it go: Lever lists no deletion for it.
    let o = output(run()).await;
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        deleted_flags(&dest, &gone).await,
        vec![Some(Value::Bool(false))]
    );

    let o = output(base_command(&[
        "resync",
        "lever",
        "--table",
        "opportunity",
        "--dest",
        d,
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o).1);
    let o = output(run()).await;
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        deleted_flags(&dest, &gone).await,
        vec![Some(Value::Bool(true))],
        "the vanished opportunity is soft-deleted"
    );
    assert_live_keys_match_truth(&dest, &lever.emu.truth()).await;
}
