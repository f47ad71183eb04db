//! Priority-first walks: newest windows first, each committed with its children before the
//! next; kills at several points resume without loss; boundaries; changes during the
//! backfill; the request overhead against a plain walk.

use crate::common::*;
use serde_json::{Value, json};
use sluice_lever_emulator::expected::{self, ExpectedOptions};
use sluice_lever_emulator::{EmulatorConfig, FaultConfig, ListHook, Truth};
use sluice_testkit::{MemoryDestination, rows_by_key};
use std::collections::BTreeSet;
use std::sync::Arc;

const DAY: i64 = 86_400_000;
const PAGE: usize = 25;
const OPPORTUNITIES: usize = 200;

/// An emulator whose updates spread over the last year (a quarter of the opportunities are
/// touched at instants spread over 400 days before now), and a config reading it in small
/// pages.
async fn recent_activity_env() -> (Env, Value) {
    let env = Env::with(EmulatorConfig {
        opportunities: OPPORTUNITIES,
        rate_limit: None,
        ..EmulatorConfig::default()
    })
    .await;
    let ids: Vec<String> = env.emu.opportunity_ids_in_list_order();
    // Touch every fourth opportunity at a rising instant: old ones first, the newest last.
    let touched: Vec<&String> = ids.iter().step_by(4).collect();
    let step = 400 * DAY / touched.len() as i64;
    for id in touched.iter().rev() {
        env.emu.advance_clock(step);
        env.emu.update_opportunity(id);
    }
    let mut config = env.config();
    config["page_size"] = json!(PAGE);
    (env, config)
}

/// `updatedAt` of every live opportunity of `truth`.
fn updated_at(truth: &Truth) -> Vec<(String, Option<i64>)> {
    truth
        .opportunities
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap_or_default().to_owned(),
                o["updatedAt"].as_i64(),
            )
        })
        .collect()
}

/// Every oracle row of `ids`' opportunities, in every table keyed to an opportunity, is in
/// `dest` with the oracle's values.
fn assert_opportunities_complete(dest: &MemoryDestination, truth: &Truth, ids: &BTreeSet<String>) {
    let expected = expected::tables(truth, &ExpectedOptions { confidential: true });
    let mut problems = Vec::new();
    for spec in sluice_source_lever::catalog::catalog() {
        let column = if spec.name == "opportunity" {
            "id"
        } else if spec.find("opportunity_id").is_some() {
            "opportunity_id"
        } else {
            continue;
        };
        let key: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
        let want: Vec<_> = expected
            .get(&spec.name)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r.get(column)
                    .and_then(Value::as_str)
                    .is_some_and(|o| ids.contains(o))
            })
            .collect();
        let got = rows_by_key(&live_rows(dest, &spec.name), &key);
        for (k, w) in rows_by_key(&want, &key) {
            match got.get(&k) {
                None => problems.push(format!("{}: missing row {k}", spec.name)),
                Some(g) => {
                    for (col, wv) in &w {
                        let gv = g.get(col).unwrap_or(&Value::Null);
                        let same = gv == wv || gv.as_f64().is_some() && gv.as_f64() == wv.as_f64();
                        if !same {
                            problems.push(format!("{}[{k}].{col}: got {gv}, want {wv}", spec.name));
                        }
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// After a run stopped inside a priority-first walk: the state names the window being read;
/// every opportunity updated since the start of the last window done is committed with all
/// its child rows; nothing older than the window being read has been committed.
fn assert_newest_first(dest: &MemoryDestination, truth: &Truth) -> usize {
    let state = dest.state().expect("a commit");
    let windows = &state.extra["walk"]["windows"];
    let starts: Vec<i64> = windows["starts"]
        .as_array()
        .expect("a priority-first walk")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let current = windows["current"].as_u64().expect("current") as usize;
    let updated = updated_at(truth);
    if current > 0 {
        let back_to = starts[current - 1];
        let recent: BTreeSet<String> = updated
            .iter()
            .filter(|(_, u)| u.is_some_and(|u| u >= back_to))
            .map(|(id, _)| id.clone())
            .collect();
        assert!(!recent.is_empty(), "the data has recent opportunities");
        assert_opportunities_complete(dest, truth, &recent);
        let text = state.extra["walk"]["complete_back_to"]
            .as_str()
            .unwrap_or("");
        assert!(
            text.starts_with("opportunities complete back to "),
            "{text}"
        );
    }
    if let Some(&oldest) = starts.get(current) {
        let committed: BTreeSet<String> = live_rows(dest, "opportunity")
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        for (id, u) in &updated {
            if committed.contains(id) {
                assert!(
                    u.is_some_and(|u| u >= oldest),
                    "opportunity {id} (updatedAt {u:?}) older than window {current} was committed before it"
                );
            }
        }
    }
    current
}

/// Stops the first sync at the `n`th `/opportunities` list request (every later request
/// fails), checks what was committed, then resumes and checks the whole output.
async fn kill_at_list_request_then_resume(n: u64) -> usize {
    let (env, mut config) = recent_activity_env().await;
    config["max_retries"] = json!(0);
    let hook: ListHook = Arc::new(move |emu, k| {
        if k == n {
            emu.set_faults(FaultConfig {
                error_rate: 1.0,
                drop_rate: 0.0,
                seed: 3,
            });
        }
    });
    env.emu.set_list_hook(Some(hook));
    let dest = MemoryDestination::new("lever");
    assert!(sync(&config, &dest, at(1_000)).await.is_err(), "stopped");
    let window = assert_newest_first(&dest, &env.emu.truth());
    env.emu.set_list_hook(None);
    env.emu.set_faults(FaultConfig::default());
    sync(&config, &dest, at(2_000)).await.expect("resumed run");
    assert!(
        dest.state().unwrap().extra.get("walk").is_none(),
        "walk done"
    );
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    window
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_first_walk_killed_at_several_points_resumes_newest_first_to_the_truth() {
    let mut windows = BTreeSet::new();
    for n in [2, 4, 5, 7, 9] {
        windows.insert(kill_at_list_request_then_resume(n).await);
    }
    assert!(
        windows.len() >= 3,
        "the kills hit several windows: {windows:?}"
    );
}

/// Opportunities whose `updatedAt` equals a window's start and the instant before it are each
/// read once, in their own window: the first run stops after window 0 (the one at the start
/// is committed), the resumed run reads window 1 (the one before) and never the first again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunities_on_a_window_boundary_are_read_once_in_their_window() {
    let (env, mut config) = recent_activity_env().await;
    config["max_retries"] = json!(0);
    let ids = env.emu.opportunity_ids_in_list_order();
    let (before, at_start) = (ids[1].clone(), ids[2].clone());
    // b on a whole second: the server's clock comes in `Date` headers, to the second.
    let b = (env.emu.now_ms() / 1000 + 1) * 1000;
    env.emu.advance_clock(b - 2 - env.emu.now_ms());
    env.emu.update_opportunity(&before); // at b − 1
    env.emu.update_opportunity(&at_start); // at b
    assert_eq!(env.emu.now_ms(), b);
    // The windows are anchored at the server's clock: window 0 starts at exactly b.
    env.emu.advance_clock(DAY);
    let hook: ListHook = Arc::new(move |emu, k| {
        if k == 2 {
            emu.set_faults(FaultConfig {
                error_rate: 1.0,
                drop_rate: 0.0,
                seed: 5,
            });
        }
    });
    env.emu.set_list_hook(Some(hook));
    let dest = MemoryDestination::new("lever");
    assert!(
        sync(&config, &dest, at(1_000)).await.is_err(),
        "stopped in window 1"
    );
    let truth = env.emu.truth();
    assert_eq!(truth.opportunity(&at_start).unwrap()["updatedAt"], json!(b));
    assert_eq!(
        truth.opportunity(&before).unwrap()["updatedAt"],
        json!(b - 1)
    );
    assert_eq!(
        dest.state().unwrap().extra["walk"]["windows"]["current"],
        json!(1)
    );
    assert_opportunities_complete(&dest, &truth, &BTreeSet::from([at_start.clone()]));
    env.emu.set_list_hook(None);
    env.emu.set_faults(FaultConfig::default());
    sync(&config, &dest, at(2_000)).await.expect("resumed run");
    assert_matches_oracle(&dest, &truth, true);
    let notes = env.emu.counters().endpoint("GET /opportunities/:id/notes");
    let ok = notes.by_status.get(&200).copied().unwrap_or(0);
    assert_eq!(
        ok,
        truth.opportunities.len() as u64,
        "each opportunity read once"
    );
}

/// Changes made while the backfill runs, to an opportunity of a window already read and to
/// one of a window not read yet, are synced by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_the_backfill_are_synced_next_time() {
    let (env, config) = recent_activity_env().await;
    let updated = updated_at(&env.emu.truth());
    let newest = updated.iter().max_by_key(|(_, u)| *u).unwrap().0.clone();
    let oldest = updated
        .iter()
        .filter(|(_, u)| u.is_some())
        .min_by_key(|(_, u)| *u)
        .unwrap()
        .0
        .clone();
    // An hour in, a change to the newest (window 0, read); three hours later a change to the
    // oldest (in the rest, not read yet), which the walk then reads with its new `updatedAt`:
    // only a cursor that stays at the walk's start brings the first change next time.
    let hook: ListHook = Arc::new(move |emu, k| match k {
        4 => {
            emu.advance_clock(3_600_000);
            emu.add_note(&newest);
        }
        6 => {
            emu.advance_clock(3 * 3_600_000);
            emu.change_stage(&oldest);
            emu.add_feedback(&oldest);
        }
        _ => {}
    });
    env.emu.set_list_hook(Some(hook));
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000)).await.expect("first sync");
    env.emu.set_list_hook(None);
    env.emu.advance_clock(60_000);
    sync(&config, &dest, at(2_000)).await.expect("next sync");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

/// A priority-first first sync makes at most 2 % more requests than a plain walk, and the
/// setting turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_first_costs_at_most_two_percent_more_requests() {
    let mut requests = Vec::new();
    for priority in [true, false] {
        let (env, mut config) = recent_activity_env().await;
        config["page_size"] = json!(100);
        config["priority_first"] = json!(priority);
        let dest = MemoryDestination::new("lever");
        let report = sync(&config, &dest, at(1_000)).await.expect("first sync");
        assert_matches_oracle(&dest, &env.emu.truth(), true);
        let with_windows = dest.state().unwrap().extra.get("walk").is_none()
            && report.status.as_deref() == Some("opportunities complete (every window read)");
        assert_eq!(with_windows, priority, "status {:?}", report.status);
        requests.push(report.requests as f64);
    }
    let overhead = requests[0] / requests[1] - 1.0;
    assert!(
        overhead <= 0.02,
        "priority-first {} vs plain {} requests: +{:.2} %",
        requests[0],
        requests[1],
        overhead * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_shared_across_windows_is_written_once_unless_it_changes() {
    let (env, config) = recent_activity_env().await;
    let truth = env.emu.truth();
    let contacts: BTreeSet<&str> = truth
        .opportunities
        .iter()
        .filter_map(|o| o["contact"].as_str())
        .collect();
    assert!(
        contacts.len() < truth.opportunities.len(),
        "the emulator gives some people several opportunities"
    );
    let dest = MemoryDestination::new("lever");
    let report = sync(&config, &dest, at(truth.now_ms)).await.expect("sync");
    assert_eq!(
        report.rows_received["contact"],
        contacts.len() as u64,
        "each contact's rows were sent once, though its opportunities sit in different windows and pages"
    );
    assert_matches_oracle(&dest, &truth, true);
}

/// At the CLI's default commit interval (30 s, far longer than these runs), each window is
/// still committed with all its child tables before the next one starts: a run stopped in a
/// later window has committed every window before it, and one commit per window finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_window_is_committed_before_the_next_at_the_default_commit_interval() {
    for n in [4, 7] {
        let (env, mut config) = recent_activity_env().await;
        config["max_retries"] = json!(0);
        let hook: ListHook = Arc::new(move |emu, k| {
            if k == n {
                emu.set_faults(FaultConfig {
                    error_rate: 1.0,
                    drop_rate: 0.0,
                    seed: 3,
                });
            }
        });
        env.emu.set_list_hook(Some(hook));
        let dest = MemoryDestination::new("lever");
        let options = sluice_core::RunSettings::default()
            .sync_options()
            .with_started_at_ms(1_000);
        assert!(sync(&config, &dest, options).await.is_err(), "stopped");
        assert!(
            dest.state().is_some(),
            "kill at list request {n}: the windows read before it were committed"
        );
        let current = assert_newest_first(&dest, &env.emu.truth());
        assert!(current >= 1, "kill at list request {n}: window {current}");
        assert!(
            dest.commits() >= current as u64,
            "{} commits for {current} windows",
            dest.commits()
        );
    }
}

/// The `_fivetran_synced` of every committed opportunity, by id.
fn synced_by_id(dest: &MemoryDestination) -> std::collections::BTreeMap<String, Value> {
    dest.committed_rows("opportunity")
        .into_iter()
        .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r["_fivetran_synced"].clone())))
        .collect()
}

/// A re-sync of the opportunities reads the newest first too: stopped at several points, the
/// opportunities it has re-written are exactly the newest (everything updated since the last
/// window done, nothing older than the window being read); resumed, it ends at the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_reads_the_newest_first_and_resumes_to_the_truth() {
    let mut windows = BTreeSet::new();
    for n in [3, 5, 7] {
        let (env, mut config) = recent_activity_env().await;
        config["max_retries"] = json!(0);
        let dest = MemoryDestination::new("lever");
        sync(&config, &dest, at(1_000)).await.expect("first sync");
        let before = synced_by_id(&dest);
        let hook: ListHook = Arc::new(move |emu, k| {
            if k == n {
                emu.set_faults(FaultConfig {
                    error_rate: 1.0,
                    drop_rate: 0.0,
                    seed: 3,
                });
            }
        });
        env.emu.set_list_hook(Some(hook));
        let resync = || at(2_000).with_force_resync(["opportunity".to_owned()].into());
        assert!(sync(&config, &dest, resync()).await.is_err(), "stopped");
        let truth = env.emu.truth();
        let state = dest.state().expect("state");
        let walk = &state.extra["walk"];
        assert_eq!(walk["reimport"], json!(true), "a re-sync walk: {walk}");
        let starts: Vec<i64> = walk["windows"]["starts"]
            .as_array()
            .expect("a priority-first re-sync")
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        let current = walk["windows"]["current"].as_u64().unwrap() as usize;
        windows.insert(current);
        let after = synced_by_id(&dest);
        let reread: BTreeSet<&String> = after
            .iter()
            .filter(|(id, s)| before.get(*id) != Some(*s))
            .map(|(id, _)| id)
            .collect();
        for (id, u) in updated_at(&truth) {
            let newer_than_done = current > 0 && u.is_some_and(|u| u >= starts[current - 1]);
            if newer_than_done {
                assert!(reread.contains(&id), "kill {n}: {id} ({u:?}) not re-read");
            }
            if reread.contains(&id) {
                assert!(
                    starts
                        .get(current)
                        .is_none_or(|s| u.is_some_and(|u| u >= *s)),
                    "kill {n}: {id} ({u:?}) older than window {current} re-read first"
                );
            }
        }
        env.emu.set_list_hook(None);
        env.emu.set_faults(FaultConfig::default());
        sync(&config, &dest, resync())
            .await
            .expect("resumed re-sync");
        assert!(dest.state().unwrap().extra.get("walk").is_none(), "done");
        assert_matches_oracle(&dest, &env.emu.truth(), true);
    }
    assert!(windows.len() >= 2, "kills in several windows: {windows:?}");
}
