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

/// Deletes one child of every opportunity silently, of a kind picked in turn among tables
/// that capture deletes (notes, feedback, profile forms) and tables that do not (interviews,
/// offers, files); returns `(table, id)` of each.
fn delete_one_child_of_each(env: &Env, round: usize) -> Vec<(&'static str, String)> {
    let truth = env.emu.truth();
    let mut gone = Vec::new();
    for (i, (opp, c)) in truth.children.iter().enumerate() {
        let mut kinds = [
            ("note", &c.notes),
            ("feedback_form", &c.feedback),
            ("profile_form", &c.forms),
            ("interview", &c.interviews),
            ("offer", &c.offers),
            ("file", &c.files),
        ];
        kinds.rotate_left((i + round) % 6);
        let pick = kinds.into_iter().find_map(|(t, list)| {
            list.first()
                .map(|x| (t, x["id"].as_str().unwrap().to_owned()))
        });
        if let Some((table, id)) = pick {
            env.emu.delete_child_silently(opp, &id);
            gone.push((table, id));
        }
    }
    gone
}

/// Whether the silently deleted child `(table, id)` is gone from the destination: no live
/// row of it or of its grand-children, and, in a table with `deleted_at`, the time it was seen
/// gone.
fn seen_gone(dest: &MemoryDestination, table: &str, id: &str) -> bool {
    let grand_children: &[(&str, &str)] = match table {
        "interview" => &[
            ("interview_feedback", "interview_id"),
            ("interview_user", "interview_id"),
            ("posting_interview", "interview_id"),
        ],
        "offer" => &[("offer_field", "offer_id")],
        "feedback_form" => &[("feedback_form_field", "feedback_form_id")],
        "profile_form" => &[("profile_form_field", "profile_form_id")],
        "note" => &[("note_field", "note_id")],
        _ => &[],
    };
    let live = |t: &str, column: &str| live_rows(dest, t).iter().any(|r| r[column] == id);
    if live(table, "id") || grand_children.iter().any(|(t, c)| live(t, c)) {
        return false;
    }
    let spec = sluice_source_lever::catalog::spec(table);
    if spec.capture_deletes && spec.find("deleted_at").is_some() {
        assert!(
            !row(dest, table, id)["deleted_at"].is_null(),
            "{table} {id}"
        );
    }
    true
}

/// Requests to the child endpoints (`/opportunities/:id/…`) since the counters were reset.
fn child_requests(env: &Env) -> u64 {
    env.emu
        .counters()
        .by_endpoint
        .iter()
        .filter(|(k, _)| k.starts_with("GET /opportunities/:id/"))
        .map(|(_, c)| c.requests)
        .sum()
}

/// At the default settings (30 days, 10 % share) on a quiet account (no activity, so 10 % of a
/// run is nothing), syncing every three days for three intervals: children deleted silently
/// just after each interval begins (one per opportunity, in tables that capture deletes and in
/// tables that do not, with their grand-children) are all gone by the interval's end, in every
/// interval, not only the first; the passes follow each other; and each sync re-reads only its
/// slice of the account, not the whole of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opportunity_is_rescanned_in_every_interval_at_the_default_settings() {
    rescanned_in_every_interval(None).await;
}

/// The same with no budget limit (`rescan_max_share = 1`): a pass that has counted the whole
/// account still ends, and the next one begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opportunity_is_rescanned_in_every_interval_without_a_budget_limit() {
    rescanned_in_every_interval(Some(1.0)).await;
}

async fn rescanned_in_every_interval(max_share: Option<f64>) {
    const OPPS: u64 = 60;
    let env = Env::start(OPPS as usize).await;
    let mut config = env.config();
    if let Some(share) = max_share {
        config["rescan_max_share"] = json!(share);
    }
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(T)).await.expect("first sync");
    let endpoints = child_requests(&env) / OPPS;
    assert_eq!(dest.state().unwrap().extra["rescan"]["total"], json!(OPPS));
    let mut pass_starts = BTreeSet::new();
    for interval in 0..3i64 {
        let gone = delete_one_child_of_each(&env, interval as usize);
        assert!(gone.len() as u64 >= OPPS * 3 / 4, "{} deleted", gone.len());
        for table in ["interview", "offer", "file", "note", "feedback_form"] {
            assert!(gone.iter().any(|(t, _)| *t == table), "{table} in {gone:?}");
        }
        for k in 1..=10 {
            let now = T + interval * 30 * DAY + k * 3 * DAY;
            env.emu.advance_clock(3 * DAY);
            env.emu.reset_counters();
            sync(&config, &dest, at(now)).await.expect("sync");
            // A slice: about a tenth of the account per sync (twice that at a pass's first
            // sync, which also covers the time until the next), never all of it at once.
            let slice = OPPS.div_ceil(10);
            let read = child_requests(&env);
            assert!(
                read <= endpoints * (2 * slice + 1),
                "interval {interval}, sync {k}: {read} child requests ({endpoints} per opportunity)"
            );
            let rescan = &dest.state().unwrap().extra["rescan"];
            pass_starts.insert(rescan["pass_started_ms"].as_i64().unwrap());
        }
        let missed: Vec<_> = gone
            .iter()
            .filter(|(table, id)| !seen_gone(&dest, table, id))
            .collect();
        assert!(
            missed.is_empty(),
            "interval {interval}: {} of {} silent deletes unseen by its end: {missed:?}",
            missed.len(),
            gone.len()
        );
    }
    assert!(
        pass_starts.len() >= 3,
        "passes began at {pass_starts:?}: the first pass ended and later ones followed"
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

/// A first sync killed part-way and resumed counts every opportunity for the re-scan's first
/// pass (not only those read after the resume), so the pass re-reads the whole account within
/// the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_first_sync_sizes_the_rescan_by_the_whole_account() {
    use sluice_lever_emulator::{FaultConfig, ListHook};
    const OPPS: u64 = 60;
    let env = Env::start(OPPS as usize).await;
    let mut config = env.config();
    config["page_size"] = json!(10);
    config["max_retries"] = json!(0);
    config["priority_first"] = json!(false);
    let hook: ListHook = std::sync::Arc::new(|emu, k| {
        if k == 4 {
            emu.set_faults(FaultConfig {
                error_rate: 1.0,
                drop_rate: 0.0,
                seed: 7,
            });
        }
    });
    env.emu.set_list_hook(Some(hook));
    let dest = MemoryDestination::new("lever");
    assert!(sync(&config, &dest, at(T)).await.is_err(), "stopped");
    env.emu.set_list_hook(None);
    env.emu
        .set_faults(sluice_lever_emulator::FaultConfig::default());
    sync(&config, &dest, at(T + 3_600_000))
        .await
        .expect("resumed run");
    assert!(
        dest.state().unwrap().extra.get("walk").is_none(),
        "walk done"
    );
    assert_eq!(
        dest.state().unwrap().extra["rescan"]["total"],
        json!(OPPS),
        "the whole account, not only what the resumed run read"
    );
    let gone = delete_one_child_of_each(&env, 0);
    for k in 1..=10 {
        env.emu.advance_clock(3 * DAY);
        sync(&config, &dest, at(T + 3_600_000 + k * 3 * DAY))
            .await
            .expect("sync");
    }
    let missed: Vec<_> = gone
        .iter()
        .filter(|(table, id)| !seen_gone(&dest, table, id))
        .collect();
    assert!(missed.is_empty(), "unseen: {missed:?}");
}
