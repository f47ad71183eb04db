//! Proof, at open, that the destination's store keeps the conditional writes the commit
//! protocol rests on: the lease and every manifest version are created with
//! create-if-absent (`If-None-Match: *` on S3), and the lease is renewed and taken over with
//! a replace-if-unchanged (`If-Match`). A store that ignores either (some S3-compatible
//! servers and proxies do) would let two writers both "win": such a destination is refused
//! before anything is written to it.
//!
//! The probe is a small object under `<root>/_sluice/probe/`: created (must succeed),
//! created again (must fail with "already exists"), replaced against a version it never had
//! (must fail with "precondition"), then deleted. Probes a killed run left behind are
//! deleted after a day.

use crate::error::{LakeError, Result};
use crate::layout;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// Probes older than this are leftovers of killed runs.
const STALE_PROBE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Fails with [`LakeError::Unsafe`] unless `store` honours create-if-absent and
/// replace-if-unchanged under `root` (see the module docs).
pub(crate) async fn require_conditional_writes(
    store: &dyn ObjectStore,
    root: &Path,
    dest: &str,
) -> Result<()> {
    let dir = layout::probe_dir(root);
    let path = dir
        .clone()
        .join(format!("{}.json", uuid::Uuid::new_v4().simple()));
    let outcome = probe(store, &path, dest).await;
    match store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(error = %e, probe = %path, "cannot delete the write probe"),
    }
    if outcome.is_ok() {
        remove_stale_probes(store, &dir).await;
    }
    outcome
}

async fn probe(store: &dyn ObjectStore, path: &Path, dest: &str) -> Result<()> {
    let unsafe_store = |detail: &str| LakeError::Unsafe {
        dest: dest.to_owned(),
        detail: detail.to_owned(),
    };
    let put = |mode: PutMode| {
        store.put_opts(
            path,
            PutPayload::from_static(b"{\"probe\":\"sluice conditional writes\"}"),
            PutOptions::from(mode),
        )
    };
    match put(PutMode::Create).await {
        Ok(_) => {}
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(unsafe_store("it cannot create objects only if absent"));
        }
        Err(e) => return Err(LakeError::store("writing", path, e)),
    }
    match put(PutMode::Create).await {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Ok(_) => {
            return Err(unsafe_store(
                "creating an object that already exists succeeded (the store ignores \
                 If-None-Match)",
            ));
        }
        Err(e) => return Err(LakeError::store("writing", path, e)),
    }
    let never = UpdateVersion {
        e_tag: Some("\"sluice-probe-no-such-version\"".to_owned()),
        version: None,
    };
    match put(PutMode::Update(never)).await {
        Err(object_store::Error::Precondition { .. }) => Ok(()),
        Ok(_) => Err(unsafe_store(
            "replacing an object against a version it never had succeeded (the store ignores \
             If-Match)",
        )),
        Err(object_store::Error::NotImplemented { .. }) => {
            Err(unsafe_store("it cannot replace objects only if unchanged"))
        }
        Err(e) => Err(LakeError::store("writing", path, e)),
    }
}

/// Deletes probes older than [`STALE_PROBE`] (left by killed runs). Best effort.
async fn remove_stale_probes(store: &dyn ObjectStore, dir: &Path) {
    let listed: Vec<_> = match store.list(Some(dir)).try_collect().await {
        Ok(l) => l,
        Err(_) => return,
    };
    let cutoff = stale_before_ms();
    for meta in listed {
        if meta.last_modified.timestamp_millis() < cutoff
            && let Err(e) = store.delete(&meta.location).await
        {
            tracing::warn!(error = %e, probe = %meta.location, "cannot delete an old write probe");
        }
    }
}

fn stale_before_ms() -> i64 {
    sluice_core::now_ms() - STALE_PROBE.as_millis() as i64
}
