//! The rolling re-scan of the opportunities' children (children deleted without their
//! opportunity changing) and requisitions read on every sync.

use crate::common::*;
use serde_json::{Value, json};
use sluice_lever_emulator::EmulatorConfig;
use sluice_testkit::MemoryDestination;
use std::collections::{BTreeMap, BTreeSet};

const DAY: i64 = 86_400_000;
/// The first sync's start (epoch ms); later syncs follow every three days.
const T: i64 = 1_800_000_000_000;

/// Deletes a note, feedback form or profile form of every `every`th opportunity silently;
/// returns their keys per table, and the opportunities.
fn delete_children_silently(env: &Env, every: usize) -> (Gone, BTreeSet<String>) {
    let truth = env.emu.truth();
    let mut gone = Gone::new();
    let mut parents = BTreeSet::new();
    for (i, (opp, c)) in truth.children.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        // Each kind in turn (the next one when this opportunity has none).
        let mut kinds = [
            ("note", &c.notes),
            ("feedback_form", &c.feedback),
            ("profile_form", &c.forms),
        ];
        kinds.rotate_left(i / every % 3);
        let pick = kinds.into_iter().find_map(|(t, list)| {
            list.first()
                .map(|x| (t, x["id"].as_str().unwrap().to_owned()))
        });
        if let Some((table, id)) = pick {
            env.emu.delete_child_silently(opp, &id);
            gone.entry(table).or_default().push(id);
            parents.insert(opp.clone());
        }
    }
    (gone, parents)
}

/// Keys per table.
type Gone = BTreeMap<&'static str, Vec<String>>;

/// The committed row of `table` with this `id`.
fn row(dest: &MemoryDestination, table: &str, id: &str) -> BTreeMap<String, Value> {
    dest.committed_rows(table)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{table} {id} is kept"))
        .into_iter()
        .collect()
}

/// Children deleted without their opportunity moving are all marked deleted (with
/// `deleted_at` = the time the sync saw them gone) by the syncs of one re-scan interval, while
/// each sync's re-scan stays within its share of the run's requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_child_deletes_are_found_within_one_interval_and_the_budget() {
    let env = Env::with(EmulatorConfig {
        opportunities: 60,
        rate_limit: None,
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    config["rescan_interval_days"] = json!(30);
    config["rescan_max_share"] = json!(0.5);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(T)).await.expect("first sync");
    let (gone, parents) = delete_children_silently(&env, 5);
    assert!(
        gone.len() == 3,
        "a note, a feedback form and a profile form: {gone:?}"
    );
    // The activity never touches the parents of the deleted children.
    let busy: Vec<String> = env
        .emu
        .opportunity_ids_in_list_order()
        .into_iter()
        .filter(|id| !parents.contains(id))
        .take(12)
        .collect();
    let mut found_at: BTreeMap<String, i64> = BTreeMap::new();
    for k in 1..=10 {
        let now = T + k * 3 * DAY;
        // Some activity, so that each run has requests to take a share of.
        for id in &busy {
            env.emu.update_opportunity(id);
        }
        env.emu.advance_clock(3 * DAY);
        let report = sync(&config, &dest, at(now)).await.expect("sync");
        let rescan = &dest.state().unwrap().extra["rescan"];
        let spent = rescan["last_requests"].as_u64().unwrap();
        assert_eq!(rescan["last_run_requests"].as_u64(), Some(report.requests));
        assert!(
            spent as f64 <= 0.5 * report.requests as f64,
            "sync {k}: the re-scan made {spent} of {} requests",
            report.requests
        );
        for (table, keys) in &gone {
            for id in keys {
                let r = row(&dest, table, id);
                if r["_fivetran_deleted"] == json!(true) && !found_at.contains_key(id) {
                    found_at.insert(id.clone(), now);
                    // Seen gone by this sync: deleted_at is its start, as _fivetran_synced.
                    assert_eq!(r["deleted_at"], r["_fivetran_synced"], "{table} {id}");
                    assert!(!r["deleted_at"].is_null(), "{table} {id}");
                }
            }
        }
    }
    let all: usize = gone.values().map(Vec::len).sum();
    assert_eq!(found_at.len(), all, "found: {found_at:?} of {gone:?}");
    assert!(found_at.values().all(|t| *t <= T + 30 * DAY));
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

/// With the re-scan off, a silent delete is never seen (the test above depends on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_rescan_silent_deletes_stay_unseen() {
    let env = Env::start(30).await;
    let mut config = env.config();
    config["rescan_interval_days"] = json!(0);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(T)).await.expect("first sync");
    let (gone, _) = delete_children_silently(&env, 3);
    for k in 1..=4 {
        env.emu.advance_clock(10 * DAY);
        sync(&config, &dest, at(T + k * 10 * DAY))
            .await
            .expect("sync");
    }
    for (table, keys) in &gone {
        for id in keys {
            assert_eq!(row(&dest, table, id)["_fivetran_deleted"], json!(false));
        }
    }
}

/// An edited and a deleted requisition reach the destination on the next sync, an hour
/// later, while the other lookups wait for their daily re-import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requisitions_are_read_every_sync() {
    let env = Env::start(20).await;
    let config = env.config();
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(T)).await.expect("first sync");
    let truth = env.emu.truth();
    let gone = truth.requisitions[0]["id"].as_str().unwrap().to_owned();
    env.emu.delete_requisition(&gone);
    env.emu.add_requisition_field("rescan_test_code", "text");
    env.emu.advance_clock(3_600_000);
    sync(&config, &dest, at(T + 3_600_000))
        .await
        .expect("next sync");
    let c = env.emu.counters();
    assert_eq!(
        c.endpoint("GET /users").requests,
        1,
        "users wait for their interval"
    );
    assert_eq!(c.endpoint("GET /requisitions").requests, 2);
    assert_eq!(
        row(&dest, "requisition", &gone)["_fivetran_deleted"],
        json!(true)
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}
