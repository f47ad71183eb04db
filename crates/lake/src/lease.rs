//! The destination lease: `<root>/_sluice/lease.json`, created with put-if-not-exists by
//! `open`, kept alive by a background task while the sink is open ([`LeaseKeeper`]),
//! checked once more right before each manifest write (fencing), deleted by `close`/`abort`.
//!
//! Every change to the lease after its creation is a conditional replace
//! (`PutMode::Update` against the ETag this session last saw): a renewal fails if anyone
//! else wrote the lease in between, and of two runs taking over the same expired lease
//! exactly one succeeds. Local destinations get the conditional replace from
//! [`crate::local_store`].
//!
//! A lease not renewed for its TTL (default 10 minutes, `sink.lease_ttl_secs`) is abandoned
//! (the run was killed) and may be taken over. So is, at once, a lease whose holder was a
//! process of this very machine and boot (same `/proc/sys/kernel/random/boot_id`), of this
//! PID namespace, that no longer exists or whose PID now belongs to a process started at
//! another time. Host names and PIDs alone prove nothing: containers on different machines
//! share them.

use crate::error::{LakeError, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// The `expires_at_ms` of a lease its holder released (see [`LeaseKeeper::release`]).
pub(crate) const RELEASED: i64 = 0;

/// The content of the lease object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaseDoc {
    /// The holding session's unique id.
    pub owner: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the holder took the lease (epoch ms).
    pub acquired_at_ms: i64,
    /// When the lease expires unless renewed (epoch ms).
    pub expires_at_ms: i64,
    /// The holder's PID namespace (`/proc/self/ns/pid` link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
    /// The holder machine's boot id (`/proc/sys/kernel/random/boot_id`): random per boot,
    /// so equal only on the same machine since the same boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder process's start time (clock ticks since boot, `/proc/<pid>/stat`), which
    /// tells it apart from a later process given the same PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
}

/// The PID namespace of this process, when the platform exposes it.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// This machine's boot id, when the platform exposes it.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` when there is
/// no such process (or no `/proc`).
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `held` was taken by a process that no longer runs: a process of this machine
/// since its last boot, in this PID namespace, whose PID is gone or now belongs to a process
/// started at another time. Its lease can be taken over at once instead of after the TTL.
/// Anything less certain (another machine or boot, another namespace, a holder that did
/// not record these) waits for the TTL.
fn holder_is_dead(held: &LeaseDoc) -> bool {
    let same = |theirs: &Option<String>, ours: Option<String>| theirs.is_some() && *theirs == ours;
    if !same(&held.boot_id, boot_id())
        || !same(&held.pid_ns, pid_namespace())
        || held.host != host_name()
        || held.pid == std::process::id()
    {
        return false;
    }
    match start_time(&held.pid.to_string()) {
        None => !std::path::Path::new(&format!("/proc/{}", held.pid)).exists(),
        Some(now) => held.started.is_some_and(|then| then != now),
    }
}

/// A lease this session holds.
#[derive(Debug)]
pub(crate) struct Lease {
    doc: LeaseDoc,
    version: UpdateVersion,
    ttl: Duration,
    /// Why the lease is known to be lost (a renewal found another writer's version).
    lost: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

struct Ctx<'a> {
    store: &'a dyn ObjectStore,
    path: &'a Path,
    dest: &'a str,
}

impl Ctx<'_> {
    async fn read(&self) -> Result<Option<(LeaseDoc, UpdateVersion)>> {
        match self.store.get(self.path).await {
            Ok(r) => {
                let version = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| LakeError::store("reading", self.path, e))?;
                let doc = serde_json::from_slice(&bytes).map_err(|e| LakeError::Manifest {
                    path: self.path.to_string(),
                    detail: format!("unreadable lease ({e}); delete it if no run is active"),
                })?;
                Ok(Some((doc, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::store("reading", self.path, e)),
        }
    }

    async fn put(&self, doc: &LeaseDoc, mode: PutMode) -> object_store::Result<UpdateVersion> {
        let body = serde_json::to_vec_pretty(doc).expect("lease serializes");
        let r = self
            .store
            .put_opts(self.path, PutPayload::from(body), PutOptions::from(mode))
            .await?;
        Ok(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    fn in_use(&self, held: &LeaseDoc) -> LakeError {
        LakeError::InUse {
            dest: self.dest.to_owned(),
            pid: held.pid,
            host: held.host.clone(),
            since: rfc3339(held.acquired_at_ms),
            until: rfc3339(held.expires_at_ms),
            lease: format!("{}/_sluice/lease.json", self.dest.trim_end_matches('/')),
        }
    }
}

impl Lease {
    /// Takes the lease for session `owner`, or fails with [`LakeError::InUse`].
    pub(crate) async fn acquire(
        store: &dyn ObjectStore,
        path: &Path,
        dest: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease> {
        let ctx = Ctx { store, path, dest };
        let now = now_ms();
        let doc = LeaseDoc {
            owner: owner.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            acquired_at_ms: now,
            expires_at_ms: now + ttl.as_millis() as i64,
            pid_ns: pid_namespace(),
            boot_id: boot_id(),
            started: start_time("self"),
        };
        for _ in 0..3 {
            match ctx.put(&doc, PutMode::Create).await {
                Ok(version) => return Ok(Lease::held(doc, version, ttl)),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(LakeError::store("creating the lease", path, e)),
            }
            let Some((held, version)) = ctx.read().await? else {
                continue; // released in between: try again
            };
            let dead = holder_is_dead(&held);
            if held.expires_at_ms > now_ms() && held.owner != owner && !dead {
                return Err(ctx.in_use(&held));
            }
            if held.expires_at_ms == RELEASED {
                tracing::debug!(lease = %path, "taking the lease a finished run released");
            } else {
                tracing::warn!(
                    lease = %path, pid = held.pid, host = %held.host,
                    expired = %rfc3339(held.expires_at_ms), holder_dead = dead,
                    "taking over the lease of an interrupted run"
                );
            }
            // Replaces exactly the version read: of several runs taking over, one wins.
            match ctx.put(&doc, PutMode::Update(version)).await {
                Ok(version) => return Ok(Lease::held(doc, version, ttl)),
                // Someone else took it over or released it first: look again.
                Err(
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                ) => {}
                Err(e) => return Err(LakeError::store("taking over the lease", path, e)),
            }
        }
        match ctx.read().await? {
            Some((held, _)) => Err(ctx.in_use(&held)),
            None => Err(LakeError::LeaseLost {
                dest: dest.to_owned(),
                detail: "the lease kept changing while taking it".to_owned(),
            }),
        }
    }

    fn held(doc: LeaseDoc, version: UpdateVersion, ttl: Duration) -> Lease {
        Lease {
            doc,
            version,
            ttl,
            lost: None,
        }
    }

    /// Extends the lease with a conditional replace of the version this session wrote last,
    /// failing with [`LakeError::LeaseLost`] if anyone else wrote it since.
    async fn renew(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        if let Some(detail) = &self.lost {
            return Err(LakeError::LeaseLost {
                dest: ctx.dest.to_owned(),
                detail: detail.clone(),
            });
        }
        let mut doc = self.doc.clone();
        doc.expires_at_ms = now_ms() + self.ttl.as_millis() as i64;
        match ctx.put(&doc, PutMode::Update(self.version.clone())).await {
            Ok(version) => {
                self.doc = doc;
                self.version = version;
                Ok(())
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                let detail = describe_holder(ctx).await;
                self.lost = Some(detail.clone());
                Err(LakeError::LeaseLost {
                    dest: ctx.dest.to_owned(),
                    detail,
                })
            }
            Err(e) => Err(LakeError::store("renewing the lease", ctx.path, e)),
        }
    }
}

async fn describe_holder(ctx: &Ctx<'_>) -> String {
    match ctx.read().await {
        Ok(Some((held, _))) => format!(
            "now held by pid {} on {} since {}",
            held.pid,
            held.host,
            rfc3339(held.acquired_at_ms)
        ),
        Ok(None) => "the lease object was deleted".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// The lease of an open sink and the task renewing it every third of its TTL, so that it
/// stays held through long phases (a commit writing for longer than the TTL) without the
/// sink's own steps renewing it. Dropping the keeper stops the renewals (as a killed run's
/// stop), so the lease then expires after its TTL.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    lease: Arc<tokio::sync::Mutex<Lease>>,
    store: Arc<dyn ObjectStore>,
    path: Path,
    dest: String,
    renewals: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    /// Takes the lease (see [`Lease::acquire`]) and starts renewing it.
    pub(crate) async fn acquire(
        store: Arc<dyn ObjectStore>,
        path: Path,
        dest: String,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseKeeper> {
        let lease = Lease::acquire(store.as_ref(), &path, &dest, owner, ttl).await?;
        let lease = Arc::new(tokio::sync::Mutex::new(lease));
        // Renewals log inside the opener's span (a server run's connection id).
        let renewals = tokio::spawn(
            renew_periodically(
                Arc::clone(&lease),
                Arc::clone(&store),
                path.clone(),
                dest.clone(),
                ttl,
            )
            .in_current_span(),
        );
        Ok(LeaseKeeper {
            lease,
            store,
            path,
            dest,
            renewals,
        })
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: self.store.as_ref(),
            path: &self.path,
            dest: &self.dest,
        }
    }

    /// Proves the lease is still this session's by renewing it conditionally; call right
    /// before writing anything that commits (the manifest). Fails with
    /// [`LakeError::LeaseLost`] when another run took it over, with a store error when
    /// it cannot be checked.
    pub(crate) async fn fence(&self) -> Result<()> {
        self.lease.lock().await.renew(&self.ctx()).await
    }

    /// Stops the renewals and releases the lease if this session still holds it: a
    /// conditional replace of the version it wrote last by a released document
    /// ([`RELEASED`]), which the next run takes over at once. The lease object is not
    /// deleted: a delete cannot be conditional on every store, and an unconditional one could
    /// remove the lease of a run that took over in between.
    pub(crate) async fn release(self) -> Result<()> {
        self.renewals.abort();
        let lease = self.lease.lock().await;
        if lease.lost.is_some() {
            return Ok(());
        }
        let ctx = self.ctx();
        let mut released = lease.doc.clone();
        released.expires_at_ms = RELEASED;
        let mut version = lease.version.clone();
        for _ in 0..3 {
            match ctx.put(&released, PutMode::Update(version)).await {
                Ok(_) => return Ok(()),
                Err(
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                ) => {
                    // A renewal cut short by the abort above may have replaced the version
                    // this session knows: a lease still this session's is released against
                    // the version read; one taken over or removed since is left alone.
                    match ctx.read().await? {
                        Some((held, v))
                            if held.owner == lease.doc.owner && held.expires_at_ms != RELEASED =>
                        {
                            version = v;
                        }
                        _ => return Ok(()),
                    }
                }
                Err(e) => return Err(LakeError::store("releasing the lease", &self.path, e)),
            }
        }
        Ok(())
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.renewals.abort();
    }
}

/// Renews `lease` every third of `ttl` until it is lost. Store errors are only logged (the
/// next renewal, or the fence before the next manifest, tries again).
async fn renew_periodically(
    lease: Arc<tokio::sync::Mutex<Lease>>,
    store: Arc<dyn ObjectStore>,
    path: Path,
    dest: String,
    ttl: Duration,
) {
    let ctx = Ctx {
        store: store.as_ref(),
        path: &path,
        dest: &dest,
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        match lease.lock().await.renew(&ctx).await {
            Ok(()) => {}
            Err(e @ LakeError::LeaseLost { .. }) => {
                tracing::error!(error = %e, "lost the destination lease; the next commit fails");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the destination lease; retrying"),
        }
    }
}

#[cfg(test)]
mod dead_holder_tests {
    use super::*;

    fn doc(pid: u32, started: Option<u64>) -> LeaseDoc {
        LeaseDoc {
            owner: "o".into(),
            host: host_name(),
            pid,
            acquired_at_ms: 0,
            expires_at_ms: i64::MAX,
            pid_ns: pid_namespace(),
            boot_id: boot_id(),
            started,
        }
    }

    #[test]
    fn only_a_vanished_process_of_this_boot_and_namespace_is_dead() {
        if boot_id().is_none() || pid_namespace().is_none() {
            eprintln!("no /proc here: every holder waits for the TTL");
            return;
        }
        // PIDs are below 2^22 on Linux: this one cannot exist.
        let gone = u32::MAX - 1;
        assert!(holder_is_dead(&doc(gone, Some(1))));
        assert!(
            !holder_is_dead(&doc(std::process::id(), None)),
            "this process"
        );
        // Another machine (or boot) with the same host name and namespace: alive.
        let mut other_machine = doc(gone, Some(1));
        other_machine.boot_id = Some("00000000-0000-0000-0000-000000000000".into());
        assert!(!holder_is_dead(&other_machine));
        // A holder that recorded no boot id (an older sluice): only the TTL.
        let mut old = doc(gone, None);
        old.boot_id = None;
        assert!(!holder_is_dead(&old));
        let mut other_ns = doc(gone, Some(1));
        other_ns.pid_ns = Some("pid:[1]".into());
        assert!(!holder_is_dead(&other_ns));
        let mut other_host = doc(gone, Some(1));
        other_host.host = "other-host".into();
        assert!(!holder_is_dead(&other_host));

        // A live process: alive with its own start time, dead if the PID was reused.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = start_time(&pid.to_string()).expect("child's start time");
        assert!(!holder_is_dead(&doc(pid, Some(started))));
        assert!(
            !holder_is_dead(&doc(pid, None)),
            "no start time recorded: alive"
        );
        assert!(holder_is_dead(&doc(pid, Some(started + 1))), "PID reused");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(holder_is_dead(&doc(pid, Some(started))), "exited");
    }
}
