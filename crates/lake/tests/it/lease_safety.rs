//! The lease and the commit protocol on stores that would let two writers both win: the
//! store must honour conditional writes, takeovers are atomic, the lease is renewed through
//! long commits, and a writer that lost its lease never writes its manifest.

use crate::common::*;
use crate::hooks::{HookStore, PutHook};
use futures::FutureExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use sluice_core::{ErrorKind, Sink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

both!(
    concurrent_takeovers_of_an_expired_lease_have_one_winner,
    a_takeover_right_before_a_release_keeps_its_lease,
    a_store_ignoring_conditional_writes_is_refused,
    a_lease_stolen_during_a_commit_fails_it_before_the_manifest,
    the_lease_is_renewed_through_a_commit_longer_than_its_ttl,
);

/// A put hook that, the first time a put goes to a path `when` picks, first writes another
/// holder's unexpired lease over the lake's lease (a thief); the flag says it did.
fn lease_thief(
    lake: &Lake,
    when: impl Fn(&Path) -> bool + Send + Sync + 'static,
) -> (PutHook, Arc<AtomicBool>) {
    let real = lake.dest().store;
    let lease = lease_path(lake);
    let stolen = Arc::new(AtomicBool::new(false));
    let stolen2 = Arc::clone(&stolen);
    let hook: PutHook = Arc::new(move |path: Path, mode| {
        let steal = when(&path) && !stolen2.swap(true, Ordering::SeqCst);
        let (real, lease) = (Arc::clone(&real), lease.clone());
        async move {
            if steal {
                let doc = serde_json::json!({
                    "owner": "thief", "host": "elsewhere", "pid": 4242,
                    "acquired_at_ms": now_ms(), "expires_at_ms": now_ms() + 3_600_000,
                });
                let body = PutPayload::from(serde_json::to_vec(&doc).unwrap());
                real.put(&lease, body).await.unwrap();
            }
            Ok(mode)
        }
        .boxed()
    });
    (hook, stolen)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn lease_path(lake: &Lake) -> Path {
    lake.dest().root.clone().join("_sluice").join("lease.json")
}

/// Writes a lease of another run (on another machine) that expires at `expires_at_ms`.
async fn plant_lease(lake: &Lake, owner: &str, expires_at_ms: i64) {
    let doc = serde_json::json!({
        "owner": owner, "host": "elsewhere", "pid": 4242,
        "acquired_at_ms": expires_at_ms - 600_000, "expires_at_ms": expires_at_ms,
    });
    let body = PutPayload::from(serde_json::to_vec(&doc).unwrap());
    lake.dest()
        .store
        .put(&lease_path(lake), body)
        .await
        .unwrap();
}

/// The owner of the lease, unless it is released (or absent).
async fn lease_owner(lake: &Lake) -> Option<String> {
    let got = lake.dest().store.get(&lease_path(lake)).await.ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&got.bytes().await.unwrap()).unwrap();
    if doc["expires_at_ms"] == 0 {
        return None;
    }
    doc["owner"].as_str().map(str::to_owned)
}

fn is_lease(p: &Path) -> bool {
    p.as_ref().ends_with("_sluice/lease.json")
}

async fn manifests(lake: &Lake) -> Vec<String> {
    lake.objects("_sluice/manifest").await
}

/// Two runs find the same expired lease and replace it at the same instant (both wait at a
/// barrier right before their conditional replace): exactly one gets it, the other is told
/// the destination is in use.
async fn concurrent_takeovers_of_an_expired_lease_have_one_winner(mut lake: Lake) {
    lake.config.lease_ttl_secs = 60;
    for round in 0..3 {
        plant_lease(&lake, &format!("killed-{round}"), now_ms() - 1_000).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let racer = |barrier: Arc<tokio::sync::Barrier>| {
            let first = Arc::new(AtomicBool::new(true));
            let hook: PutHook = Arc::new(move |path, mode| {
                let wait = is_lease(&path)
                    && matches!(mode, PutMode::Update(_))
                    && first.swap(false, Ordering::SeqCst);
                let barrier = Arc::clone(&barrier);
                async move {
                    if wait {
                        // Bounded: a racer that never arrives fails the assertion below.
                        let _ = tokio::time::timeout(Duration::from_secs(20), barrier.wait()).await;
                    }
                    Ok(mode)
                }
                .boxed()
            });
            lake.sink_on(move |s| Arc::new(HookStore::new(s, hook)))
        };
        let (mut a, mut b) = (racer(Arc::clone(&barrier)), racer(barrier));
        let tables = specs();
        let (ra, rb) = tokio::join!(a.open(&tables), b.open(&tables));
        assert!(
            ra.is_ok() != rb.is_ok(),
            "{} round {round}: exactly one takeover wins: {ra:?} / {rb:?}",
            lake.kind
        );
        let loser = ra.as_ref().err().or(rb.as_ref().err()).unwrap();
        assert_eq!(loser.kind(), ErrorKind::Destination);
        assert!(
            loser.to_string().contains("in use by another sluice run"),
            "{loser}"
        );
        let (winner, other) = if ra.is_ok() {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        winner
            .write(stamp(opp_rows("opp", &[("w", "W", 1)]), T1))
            .await
            .unwrap();
        winner
            .commit(&state(round))
            .await
            .expect("the winner commits");
        winner.close().await.unwrap();
        other.abort().await.unwrap();
        assert!(
            lease_owner(&lake).await.is_none(),
            "the winner released the lease"
        );
    }
}

/// A store that accepts conditional writes but ignores their conditions (turns them into
/// plain overwrites) is refused at open, naming the destination, before anything is written.
async fn a_store_ignoring_conditional_writes_is_refused(lake: Lake) {
    let hook: PutHook = Arc::new(|_, _| async { Ok(PutMode::Overwrite) }.boxed());
    let mut s = lake.sink_on(move |s| Arc::new(HookStore::new(s, hook)));
    let err = s.open(&specs()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    let msg = err.to_string();
    let url = lake.dest().url;
    assert!(msg.contains(&url), "names the destination {url}: {msg}");
    assert!(msg.contains("If-None-Match"), "{msg}");
    assert!(
        !msg.contains('\n') && !msg.contains("TOP-SECRET-KEY"),
        "{msg}"
    );
    assert!(
        lake.objects("_sluice").await.is_empty(),
        "no lease, no probe left: {:?}",
        lake.objects("_sluice").await
    );
    // The same destination on the real store opens.
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
}

/// Another run takes the lease over while this run writes its data files (as after a stall
/// past the TTL): the commit fails before its manifest, the other run's lease stays, and
/// the destination keeps the last committed content.
async fn a_lease_stolen_during_a_commit_fails_it_before_the_manifest(lake: Lake) {
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.close().await.unwrap();
    let before = manifests(&lake).await;

    let (hook, stolen) = lease_thief(&lake, |path| path.as_ref().contains("/part-b"));
    let mut s = lake.sink_on(move |s| Arc::new(HookStore::new(s, hook)));
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("b", "B", 2), ("a", "A2", 2)]), T2))
        .await
        .unwrap();
    let err = s.commit(&state(2)).await.unwrap_err();
    assert!(
        stolen.load(Ordering::SeqCst),
        "the lease was stolen mid-commit"
    );
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    assert!(err.to_string().contains("lost the lease"), "{err}");
    assert_eq!(manifests(&lake).await, before, "no manifest was written");
    s.abort().await.unwrap();
    assert_eq!(
        lease_owner(&lake).await.as_deref(),
        Some("thief"),
        "the other run's lease stays"
    );

    lake.dest().store.delete(&lease_path(&lake)).await.unwrap();
    let r = lake.sink();
    assert_eq!(r.read_state().await.unwrap(), Some(state(1)));
    let rows = scan(&r, &opp()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows["a"]["name"], "A");
    lake.assert_no_orphans(&["opp"]).await;
}

/// A commit that takes longer than the lease TTL (its first data file is held for 2.5 TTLs)
/// keeps the lease: another run trying to open meanwhile finds it in use, and the commit
/// succeeds.
async fn the_lease_is_renewed_through_a_commit_longer_than_its_ttl(mut lake: Lake) {
    lake.config.lease_ttl_secs = 1;
    let slowed = Arc::new(AtomicBool::new(false));
    let slowed2 = Arc::clone(&slowed);
    let hook: PutHook = Arc::new(move |path: Path, mode| {
        let slow = path.as_ref().contains("/part-b") && !slowed2.swap(true, Ordering::SeqCst);
        async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(2_500)).await;
            }
            Ok(mode)
        }
        .boxed()
    });
    let mut a = lake.sink_on(move |s| Arc::new(HookStore::new(s, hook)));
    a.open(&specs()).await.unwrap();
    a.write(stamp(opp_rows("opp", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    let mut b = lake.sink();
    let st = state(1);
    let (committed, contender) = tokio::join!(a.commit(&st), async {
        // Past the TTL, while `a` is still writing its data file.
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        b.open(&specs()).await
    });
    assert!(slowed.load(Ordering::SeqCst));
    let err = contender.expect_err("the lease is still held");
    assert!(
        err.to_string().contains("in use by another sluice run"),
        "{err}"
    );
    committed.expect("the long commit keeps its lease and commits");
    a.close().await.unwrap();
    assert_eq!(lake.sink().read_state().await.unwrap(), Some(state(1)));
}

/// A run that takes the lease over at the last instant before another run releases it (the
/// other run stalled past its TTL) keeps it: the release is a conditional replace of the
/// releasing run's own version, never a delete of whatever lease is there.
async fn a_takeover_right_before_a_release_keeps_its_lease(lake: Lake) {
    let path = lease_path(&lake);
    let armed = Arc::new(AtomicBool::new(false));
    let armed2 = Arc::clone(&armed);
    let (hook, stolen) = lease_thief(&lake, move |p| *p == path && armed2.load(Ordering::SeqCst));
    let mut s = lake.sink_on(move |st| Arc::new(HookStore::new(st, hook)));
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("a", "A", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    armed.store(true, Ordering::SeqCst);
    s.close().await.unwrap();
    assert!(
        stolen.load(Ordering::SeqCst),
        "the release touched the lease"
    );
    assert_eq!(
        lease_owner(&lake).await.as_deref(),
        Some("thief"),
        "the run that took over keeps its lease"
    );
}
