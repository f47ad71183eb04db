//! The opportunity cursor and long walks: changes made while a walk runs (hours of emulator
//! time, under both list orders), resumed walks, and timestamps from the future.

use crate::common::*;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sluice_core::Cursor;
use sluice_lever_emulator::{EmulatorConfig, FaultConfig, ListHook, ListOrder};
use sluice_testkit::MemoryDestination;
use std::sync::{Arc, Mutex};

const HOUR: i64 = 3_600_000;
const PAGE: usize = 50;
const OPPORTUNITIES: usize = 250;

/// An emulator listing in `order`, and a config reading it in pages of [`PAGE`].
async fn env_in(order: ListOrder) -> (Env, Value) {
    let env = Env::with(EmulatorConfig {
        opportunities: OPPORTUNITIES,
        rate_limit: None,
        list_order: order,
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    config["page_size"] = json!(PAGE);
    (env, config)
}

/// Changes spread over four hours of emulator time while the first (full) walk runs: records
/// of pages already read change first, a record of the last page last.
async fn changes_during_the_walk_are_synced_next_time(order: ListOrder) {
    let (env, config) = env_in(order).await;
    let ids = env.emu.opportunity_ids_in_list_order();
    let (early, late) = (ids[..PAGE].to_vec(), ids[ids.len() - PAGE..].to_vec());
    let hook: ListHook = Arc::new(move |emu, n| match n {
        // Before page 3 is served (pages 1 and 2 are read): change records of page 1.
        3 => {
            emu.advance_clock(HOUR);
            emu.update_opportunity(&early[0]);
            emu.add_note(&early[1]);
        }
        4 => {
            emu.advance_clock(HOUR);
            emu.change_stage(&early[2]);
            emu.add_feedback(&early[3]);
            emu.create_opportunity();
        }
        // Before the last page: a change the walk itself sees, two hours later.
        5 => {
            emu.advance_clock(2 * HOUR);
            emu.update_opportunity(&late[0]);
        }
        _ => {}
    });
    env.emu.set_list_hook(Some(hook));
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000)).await.expect("first sync");
    assert!(
        env.emu.counters().endpoint("GET /opportunities").requests >= 5,
        "the walk read every page"
    );
    env.emu.set_list_hook(None);
    env.emu.advance_clock(HOUR / 4);
    sync(&config, &dest, at(2_000)).await.expect("next sync");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_a_long_walk_in_insertion_order_are_synced_next_time() {
    changes_during_the_walk_are_synced_next_time(ListOrder::Insertion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_a_long_walk_in_created_order_are_synced_next_time() {
    changes_during_the_walk_are_synced_next_time(ListOrder::CreatedAt).await;
}

/// A walk killed after its first page and resumed hours later still bounds the cursor by the
/// start of the original walk: a change made before the kill to an already-read record is
/// synced by the run after the resumed one.
async fn resumed_walk_keeps_the_original_start(order: ListOrder) {
    let (env, mut config) = env_in(order).await;
    config["max_retries"] = json!(0);
    let ids = env.emu.opportunity_ids_in_list_order();
    let (early, late) = (ids[0].clone(), ids[ids.len() - 1].clone());
    let hook: ListHook = Arc::new(move |emu, n| match n {
        2 => {
            emu.advance_clock(HOUR);
            emu.update_opportunity(&early);
        }
        // From page 3 on every data request fails: the run dies before page 2 is committed.
        3 => emu.set_faults(FaultConfig {
            error_rate: 1.0,
            drop_rate: 0.0,
            seed: 1,
        }),
        _ => {}
    });
    env.emu.set_list_hook(Some(hook));
    let dest = MemoryDestination::new("lever");
    assert!(sync(&config, &dest, at(1_000)).await.is_err(), "killed");
    let state = dest.state().expect("page 1 committed");
    assert!(state.extra.get("walk").is_some(), "{:?}", state.extra);
    env.emu.set_list_hook(None);
    env.emu.set_faults(FaultConfig::default());
    env.emu.advance_clock(2 * HOUR);
    env.emu.update_opportunity(&late);
    sync(&config, &dest, at(2_000)).await.expect("resumed run");
    sync(&config, &dest, at(3_000)).await.expect("next run");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_walk_in_insertion_order_keeps_the_original_start() {
    resumed_walk_keeps_the_original_start(ListOrder::Insertion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_walk_in_created_order_keeps_the_original_start() {
    resumed_walk_keeps_the_original_start(ListOrder::CreatedAt).await;
}

/// The clock of the servers below: 2026-03-01T00:00:00Z.
const NOW_MS: i64 = 1_772_323_200_000;
/// A timestamp from the future: 2100-01-01T00:00:00Z.
const FUTURE_MS: i64 = 4_102_444_800_000;

/// Serves `path` from a server whose `Date` is [`NOW_MS`], listing `items` (every other list
/// is empty), and runs two syncs of the opportunity table (look-back one hour, plain walks);
/// returns the value of the query parameter `param` of each request of `path`, and the
/// opportunity cursor after the first sync.
async fn two_syncs_at_a_fixed_clock(
    path: &'static str,
    param: &'static str,
    items: Value,
) -> (Vec<Option<String>>, Option<Cursor>) {
    let asked: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = asked.clone();
    let app = axum::Router::new()
        .route(
            path,
            axum::routing::get(
                move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                    let (log, items) = (log.clone(), items.clone());
                    async move {
                        log.lock().unwrap().push(q.get(param).cloned());
                        let mut h = HeaderMap::new();
                        h.insert("date", "Sun, 01 Mar 2026 00:00:00 GMT".parse().unwrap());
                        h.insert("content-type", "application/json".parse().unwrap());
                        let body = json!({"data": items, "hasNext": false});
                        (h, body.to_string()).into_response()
                    }
                },
            ),
        )
        .fallback(|| async { axum::Json(json!({"data": [], "hasNext": false})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = json!({
        "api_key": "k",
        "base_url": format!("http://{addr}/v1"),
        "rate_limit_per_second": 1000,
        "rate_limit_burst": 1000,
        "lookback_secs": 3600,
        // One unfiltered first walk: the queries are a plain walk's.
        "priority_first": false,
    });
    let dest = MemoryDestination::new("lever");
    let tables = only(&["opportunity"]);
    let options = |ms| at(ms).with_settings(tables.clone());
    sync(&config, &dest, options(1_000)).await.expect("first");
    let first_cursor = dest.state().unwrap().table("opportunity").cursor;
    sync(&config, &dest, options(2_000)).await.expect("second");
    server.abort();
    let asked = asked.lock().unwrap().clone();
    (asked, first_cursor)
}

/// A server whose clock says 2026-03-01 lists an opportunity updated in 2100: the cursor stays
/// at the server's time, and the next walk asks from there less the look-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_from_the_future_does_not_pin_the_cursor() {
    let (asked, cursor) = two_syncs_at_a_fixed_clock(
        "/v1/opportunities",
        "updated_at_start",
        json!([
            {"id": "o-past", "createdAt": NOW_MS - HOUR, "updatedAt": NOW_MS - HOUR},
            {"id": "o-future", "createdAt": NOW_MS - HOUR, "updatedAt": FUTURE_MS},
        ]),
    )
    .await;
    assert_eq!(cursor, Some(Cursor::TimestampMs(NOW_MS)));
    assert_eq!(
        asked,
        vec![None, Some((NOW_MS - HOUR).to_string())],
        "the second walk starts at the server's time less the look-back"
    );
}

/// A `deletedAt` in 2100 leaves the deleted-opportunities cursor at the server's time, so the
/// next sync still asks for the deletions of the look-back window.
#[tokio::test]
async fn a_deletion_from_the_future_does_not_pin_the_deleted_cursor() {
    let (asked, _) = two_syncs_at_a_fixed_clock(
        "/v1/opportunities/deleted",
        "deleted_at_start",
        json!([
            {"id": "o-past", "deletedAt": NOW_MS - HOUR},
            {"id": "o-future", "deletedAt": FUTURE_MS},
        ]),
    )
    .await;
    assert_eq!(
        asked,
        vec![None, Some((NOW_MS - HOUR).to_string())],
        "the second sync asks for deletions from the server's time less the look-back"
    );
}
