//! `sluice resync lever --table opportunity`: a full re-walk soft-deletes the opportunities
//! (and their notes, feedback and profile forms) that vanished from Lever without a row in
//! `/opportunities/deleted`, also when the re-walk was killed and resumed.

use crate::common::*;
use serde_json::{Value, json};
use sluice_core::SyncOptions;
use sluice_lever_emulator::{EmulatorConfig, FaultConfig, ListHook};
use sluice_testkit::MemoryDestination;
use std::sync::Arc;

/// Whether every row of `table` whose `column` is `id` is soft-deleted (and there is one).
fn all_flagged(dest: &MemoryDestination, table: &str, column: &str, id: &str) -> bool {
    let rows: Vec<_> = dest
        .committed_rows(table)
        .into_iter()
        .filter(|r| r.get(column).and_then(Value::as_str) == Some(id))
        .collect();
    !rows.is_empty()
        && rows
            .iter()
            .all(|r| r.get("_fivetran_deleted") == Some(&Value::Bool(true)))
}

/// Two opportunities with notes vanish; returns them.
fn vanish_two_with_notes(env: &Env) -> Vec<String> {
    let t = env.emu.truth();
    let gone: Vec<String> = t
        .children
        .iter()
        .filter(|(_, c)| !c.notes.is_empty())
        .map(|(id, _)| id.clone())
        .take(2)
        .collect();
    for id in &gone {
        env.emu.vanish_opportunity(id);
    }
    assert!(env.emu.truth().deleted_opportunities.is_empty());
    gone
}

fn resync_opportunity(ms: i64) -> SyncOptions {
    at(ms).with_force_resync(["opportunity".to_owned()].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_soft_deletes_opportunities_gone_from_lever() {
    let env = Env::start(60).await;
    let config = env.config();
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000)).await.expect("first sync");
    let gone = vanish_two_with_notes(&env);
    sync(&config, &dest, resync_opportunity(2_000))
        .await
        .expect("re-sync");
    for id in &gone {
        assert!(all_flagged(&dest, "opportunity", "id", id), "{id}");
        assert!(all_flagged(&dest, "note", "opportunity_id", id), "{id}");
    }
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    assert!(
        !dest.state().unwrap().table("opportunity").resync_requested,
        "flag cleared"
    );
}

/// The re-walk is killed after its first page and resumed: the opportunities read before the
/// kill are kept, the vanished ones are soft-deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_resync_soft_deletes_opportunities_gone_from_lever() {
    let env = Env::with(EmulatorConfig {
        opportunities: 120,
        rate_limit: None,
        ..EmulatorConfig::default()
    })
    .await;
    let mut config = env.config();
    config["page_size"] = json!(30);
    config["max_retries"] = json!(0);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000)).await.expect("first sync");
    let gone = vanish_two_with_notes(&env);
    let hook: ListHook = Arc::new(|emu, n| {
        if n == 3 {
            emu.set_faults(FaultConfig {
                error_rate: 1.0,
                drop_rate: 0.0,
                seed: 1,
            });
        }
    });
    env.emu.set_list_hook(Some(hook));
    assert!(
        sync(&config, &dest, resync_opportunity(2_000))
            .await
            .is_err(),
        "killed"
    );
    assert!(dest.state().unwrap().extra.get("walk").is_some());
    env.emu.set_list_hook(None);
    env.emu.set_faults(FaultConfig::default());
    sync(&config, &dest, at(3_000))
        .await
        .expect("resumed re-sync");
    for id in &gone {
        assert!(all_flagged(&dest, "opportunity", "id", id), "{id}");
    }
    assert_eq!(
        live_rows(&dest, "opportunity").len(),
        env.emu.truth().opportunities.len(),
        "the opportunities read before the kill are kept"
    );
    assert!(!dest.state().unwrap().table("opportunity").resync_requested);
}

/// A re-walk that fails deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_resync_deletes_nothing() {
    let env = Env::start(60).await;
    let mut config = env.config();
    config["page_size"] = json!(20);
    config["max_retries"] = json!(0);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000)).await.expect("first sync");
    vanish_two_with_notes(&env);
    let hook: ListHook = Arc::new(|emu, n| {
        if n == 3 {
            emu.set_faults(FaultConfig {
                error_rate: 1.0,
                drop_rate: 0.0,
                seed: 1,
            });
        }
    });
    env.emu.set_list_hook(Some(hook));
    assert!(
        sync(&config, &dest, resync_opportunity(2_000))
            .await
            .is_err()
    );
    assert!(
        dest.committed_rows("opportunity")
            .iter()
            .all(|r| r.get("_fivetran_deleted") == Some(&Value::Bool(false))),
        "nothing deleted by a walk that did not complete"
    );
}
