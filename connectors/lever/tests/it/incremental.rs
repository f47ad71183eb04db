//! Incremental syncs: updates, creates and deletes; re-import deletes; custom fields; request
//! counts.

use crate::common::*;
use serde_json::Value;
use sluice_testkit::MemoryDestination;
use std::collections::BTreeSet;

const HOUR: i64 = 3_600_000;
const DAY0: i64 = 1_700_000_000_000;
/// Child endpoints per opportunity when every table is enabled.
const ENDPOINTS: u64 = 9;
/// Re-import lists (users, stages, archive reasons, postings, requisition fields, requisitions).
const LISTS: u64 = 6;

fn flagged(dest: &MemoryDestination, table: &str, key: &str, id: &str) -> Option<bool> {
    dest.committed_rows(table)
        .into_iter()
        .find(|r| r.get(key).and_then(Value::as_str) == Some(id))
        .map(|r| r.get("_fivetran_deleted") == Some(&Value::Bool(true)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_applies_updates_creates_and_deletes() {
    let env = Env::start(150).await;
    let config = env.config();
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(DAY0)).await.expect("first sync");
    let first_requests = env.emu.counters().total;
    // Full sync bound: list pages + every opportunity × child endpoints + lists + deleted poll.
    let bound = 2 + 150 * ENDPOINTS + LISTS * 2 + 1;
    assert!(
        first_requests <= bound,
        "full sync used {first_requests} requests (bound {bound})"
    );

    env.emu.advance_clock(2 * HOUR);
    let t = env.emu.truth();
    let ids: Vec<String> = t
        .opportunities
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    let (note_opp, note_id) = t
        .children
        .iter()
        .find_map(|(o, c)| {
            c.notes
                .first()
                .map(|n| (o.clone(), n["id"].as_str().unwrap().to_owned()))
        })
        .unwrap();
    let (fb_opp, fb_id) = t
        .children
        .iter()
        .filter(|(o, _)| **o != note_opp)
        .find_map(|(o, c)| {
            c.feedback
                .first()
                .map(|f| (o.clone(), f["id"].as_str().unwrap().to_owned()))
        })
        .unwrap();
    env.emu.delete_note(&note_opp, &note_id);
    env.emu.delete_feedback(&fb_opp, &fb_id);
    let summary = env.emu.mutate_fraction(0.08, 7);
    let created = env.emu.create_opportunity();
    let victim = ids
        .iter()
        .find(|i| **i != note_opp && **i != fb_opp && !summary.deleted.contains(i))
        .unwrap()
        .clone();
    env.emu.delete_opportunity(&victim);
    env.emu.reset_counters();

    sync(&config, &dest, at(DAY0 + HOUR))
        .await
        .expect("incremental sync");
    let truth = env.emu.truth();
    assert_matches_oracle(&dest, &truth, true);

    // Soft deletes are visible.
    assert_eq!(
        flagged(&dest, "note", "id", &note_id),
        Some(true),
        "deleted note flagged"
    );
    assert_eq!(
        flagged(&dest, "feedback_form", "id", &fb_id),
        Some(true),
        "deleted feedback flagged"
    );
    assert_eq!(
        flagged(&dest, "opportunity", "id", &victim),
        Some(true),
        "deleted opportunity flagged"
    );
    for d in &summary.deleted {
        assert_eq!(flagged(&dest, "opportunity", "id", d), Some(true));
    }
    assert_eq!(flagged(&dest, "opportunity", "id", &created), Some(false));

    // Request bound: pages + changed opportunities × endpoints + deleted poll (lists not due).
    let changed: BTreeSet<&String> = summary
        .updated
        .iter()
        .chain(&summary.created)
        .chain([&note_opp, &fb_opp, &created])
        .collect();
    let n = changed.len() as u64;
    let bound = (n / 100 + 2) + n * ENDPOINTS + 2;
    let used = env.emu.counters().total;
    assert!(
        used <= bound,
        "incremental sync used {used} requests for {n} changed opportunities (bound {bound})"
    );
    assert_eq!(
        env.emu.counters().endpoint("GET /users").requests,
        0,
        "users not due"
    );

    // A third sync with nothing changed reads (almost) nothing but the list.
    env.emu.reset_counters();
    sync(&config, &dest, at(DAY0 + 2 * HOUR))
        .await
        .expect("quiet sync");
    let used = env.emu.counters().total;
    // The list, the deleted opportunities, and the two requisition lists (read every sync).
    assert!(used <= 5, "quiet sync used {used} requests");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimport_flags_deleted_lookups() {
    let env = Env::start(40).await;
    let config = env.config();
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(DAY0)).await.expect("first sync");
    let t = env.emu.truth();
    let active: Vec<String> = t
        .users
        .iter()
        .filter(|u| u["deactivatedAt"].is_null())
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    let (deactivated, deleted_user) = (
        active[active.len() - 1].clone(),
        active[active.len() - 2].clone(),
    );
    env.emu.deactivate_user(&deactivated);
    env.emu.delete_user(&deleted_user);
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let posting = id(t.postings.last().unwrap());
    let stage = id(t.stages.last().unwrap());
    let reason = id(t.archive_reasons.last().unwrap());
    let requisition = id(t.requisitions.last().unwrap());
    env.emu.delete_posting(&posting);
    env.emu.delete_stage(&stage);
    env.emu.delete_archive_reason(&reason);
    env.emu.delete_requisition(&requisition);

    // Within the interval nothing is re-imported.
    env.emu.reset_counters();
    sync(&config, &dest, at(DAY0 + 3_600_000)).await.unwrap();
    assert_eq!(env.emu.counters().endpoint("GET /users").requests, 0);
    assert_eq!(flagged(&dest, "users", "id", &deleted_user), Some(false));

    // After the interval everything is, and vanished rows are flagged.
    sync(&config, &dest, at(DAY0 + 25 * 3_600_000))
        .await
        .unwrap();
    assert_eq!(flagged(&dest, "users", "id", &deleted_user), Some(true));
    assert_eq!(flagged(&dest, "users", "id", &deactivated), Some(false));
    let u = dest
        .committed_rows("users")
        .into_iter()
        .find(|r| r["id"] == deactivated.as_str())
        .unwrap();
    assert!(
        !u["deactivated_at"].is_null(),
        "deactivated user keeps deactivated_at"
    );
    assert_eq!(flagged(&dest, "posting", "id", &posting), Some(true));
    assert_eq!(flagged(&dest, "stage", "id", &stage), Some(true));
    assert_eq!(flagged(&dest, "archive_reason", "id", &reason), Some(true));
    assert_eq!(
        flagged(&dest, "requisition", "id", &requisition),
        Some(true)
    );
    assert!(
        dest.committed_rows("posting_tag")
            .iter()
            .filter(|r| r["posting_id"] == posting.as_str())
            .all(|r| r["_fivetran_deleted"] == Value::Bool(true))
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);

    // A forced re-sync of one table re-imports it within the interval and clears the flag.
    env.emu.reset_counters();
    let mut options = at(DAY0 + 26 * 3_600_000);
    options.force_resync.insert("stage".into());
    sync(&config, &dest, options).await.unwrap();
    assert_eq!(env.emu.counters().endpoint("GET /stages").requests, 1);
    assert_eq!(env.emu.counters().endpoint("GET /users").requests, 0);
    assert!(!dest.state().unwrap().table("stage").resync_requested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requisition_custom_field_added_between_syncs() {
    let env = Env::start(30).await;
    let config = env.config();
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(DAY0)).await.unwrap();
    let before = dest.committed_batch("requisition").unwrap().schema();
    assert!(
        before
            .fields()
            .iter()
            .any(|f| f.name().starts_with("custom_field_"))
    );
    assert!(
        before
            .field_with_name("custom_field_employee_referral_bonus")
            .is_err()
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);

    env.emu
        .add_requisition_field("employee_referral_bonus", "number");
    let options = at(DAY0 + 3_600_000)
        .with_force_resync(["requisition".to_owned(), "requisition_fields".to_owned()].into());
    sync(&config, &dest, options).await.unwrap();
    let after = dest.committed_batch("requisition").unwrap().schema();
    assert!(
        after
            .field_with_name("custom_field_employee_referral_bonus")
            .is_ok()
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    // Stable across further runs.
    sync(&config, &dest, at(DAY0 + 30 * 3_600_000))
        .await
        .unwrap();
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

/// The requisition lists are read on every sync (Lever has no updated-at filter for them)
/// and written again only when what they hold changed: an unchanged list costs a request,
/// not a rewrite of its tables; a deleted requisition or a new custom field lands at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requisitions_are_written_again_only_when_they_change() {
    const TABLES: [&str; 4] = [
        "requisition",
        "requisition_fields",
        "requisition_posting",
        "requisition_offer",
    ];
    let env = Env::start(30).await;
    let config = env.config();
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(DAY0)).await.expect("first sync");
    // Each table's rows, with when they were last written (`_fivetran_synced`).
    let synced = |table: &str| -> BTreeSet<String> {
        let rows = dest.committed_rows(table);
        assert!(!rows.is_empty(), "{table} has rows");
        rows.iter().map(|r| format!("{r:?}")).collect()
    };
    let first: Vec<BTreeSet<String>> = TABLES.iter().map(|t| synced(t)).collect();

    // Nothing changed: both lists are read, no row of their tables is written.
    env.emu.reset_counters();
    sync(&config, &dest, at(DAY0 + HOUR))
        .await
        .expect("quiet sync");
    assert_eq!(env.emu.counters().endpoint("GET /requisitions").requests, 1);
    assert_eq!(
        env.emu
            .counters()
            .endpoint("GET /requisition_fields")
            .requests,
        1
    );
    for (table, before) in TABLES.iter().zip(&first) {
        assert_eq!(&synced(table), before, "{table} was written again");
    }
    assert_matches_oracle(&dest, &env.emu.truth(), true);

    // A requisition deleted within the re-import interval is flagged by the next sync.
    let t = env.emu.truth();
    let gone = t.requisitions.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.emu.delete_requisition(&gone);
    sync(&config, &dest, at(DAY0 + 2 * HOUR)).await.unwrap();
    assert_eq!(flagged(&dest, "requisition", "id", &gone), Some(true));
    assert_ne!(synced("requisition"), first[0]);
    assert_matches_oracle(&dest, &env.emu.truth(), true);

    // A new custom field with values: its column and values land without a re-sync.
    env.emu
        .add_requisition_field("employee_referral_bonus", "number");
    sync(&config, &dest, at(DAY0 + 3 * HOUR)).await.unwrap();
    let schema = dest.committed_batch("requisition").unwrap().schema();
    assert!(
        schema
            .field_with_name("custom_field_employee_referral_bonus")
            .is_ok()
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}
