//! Full sync compared with the oracle, table by table.

use crate::common::*;
use sluice_testkit::MemoryDestination;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_matches_the_oracle() {
    let env = Env::start(120).await;
    let dest = MemoryDestination::new("lever");
    let report = sync(&env.config(), &dest, at(1_000))
        .await
        .expect("full sync");
    assert!(report.commits >= 2, "page checkpoints expected");
    let c = counts(&dest);
    for t in [
        "opportunity",
        "application",
        "feedback_form_field",
        "note",
        "users",
        "requisition",
        "interview",
    ] {
        assert!(c[t] > 0, "{t} is empty: {c:?}");
    }
    assert_eq!(c["candidate_stage_history"], 0);
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    let state = dest.state().expect("state");
    assert!(state.table("opportunity").cursor.is_some());
    assert!(state.extra.get("walk").is_none(), "walk finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let env = Env::start(30).await;
    sluice_testkit::source_conformance::run("lever", &source(), &env.config()).await;
}
