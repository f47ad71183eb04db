//! The destination lease: `<root>/_sluice/lease.json`, created with put-if-not-exists by
//! `open`, renewed while the run writes and at each commit, deleted by `close`/`abort`.
//!
//! A lease that was not renewed for its TTL (default 10 minutes, `sink.lease_ttl_secs`) is
//! considered abandoned (the run was killed) and may be taken over; so is, at once, a lease
//! whose holder was a process of this host and PID namespace that no longer exists (a run
//! killed with SIGKILL, recovered on the same machine). Takeover happens: on S3 with a conditional
//! PUT on the expired lease's ETag (exactly one taker wins); on a local file system, which
//! has no compare-and-swap, by deleting it and creating a new one. The lease gives clear
//! errors; correctness under a race does not rest on it alone, because each manifest version
//! is itself created with put-if-not-exists.

use crate::error::{ParquetSinkError, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// The holder's PID namespace (`/proc/self/ns/pid` link), so a dead holder on the same
    /// host is recognised without mistaking a process of another container for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

/// The PID namespace of this process, when the platform exposes it.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether `held` was taken by a process of this host and PID namespace that no longer
/// exists (killed, crashed): its lease can be taken over at once instead of after the TTL.
fn holder_is_dead(held: &LeaseDoc) -> bool {
    let same_namespace = held.pid_ns.is_some() && held.pid_ns == pid_namespace();
    same_namespace
        && held.host == host_name()
        && held.pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{}", held.pid)).exists()
}

/// A lease this session holds.
#[derive(Debug)]
pub(crate) struct Lease {
    doc: LeaseDoc,
    version: UpdateVersion,
    ttl: Duration,
    renewed: SystemTime,
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
                    .map_err(|e| ParquetSinkError::store("reading", self.path, e))?;
                let doc =
                    serde_json::from_slice(&bytes).map_err(|e| ParquetSinkError::Manifest {
                        path: self.path.to_string(),
                        detail: format!("unreadable lease ({e}); delete it if no run is active"),
                    })?;
                Ok(Some((doc, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ParquetSinkError::store("reading", self.path, e)),
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

    fn in_use(&self, held: &LeaseDoc) -> ParquetSinkError {
        ParquetSinkError::InUse {
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
    /// Takes the lease for session `owner`, or fails with [`ParquetSinkError::InUse`].
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
        };
        for _ in 0..3 {
            match ctx.put(&doc, PutMode::Create).await {
                Ok(version) => return Ok(Lease::held(doc, version, ttl)),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(ParquetSinkError::store("creating the lease", path, e)),
            }
            let Some((held, version)) = ctx.read().await? else {
                continue; // released in between: try again
            };
            let dead = holder_is_dead(&held);
            if held.expires_at_ms > now_ms() && held.owner != owner && !dead {
                return Err(ctx.in_use(&held));
            }
            tracing::warn!(
                lease = %path, pid = held.pid, host = %held.host,
                expired = %rfc3339(held.expires_at_ms), holder_dead = dead,
                "taking over the lease of an interrupted run"
            );
            match ctx.put(&doc, PutMode::Update(version)).await {
                Ok(version) => return Ok(Lease::held(doc, version, ttl)),
                Err(object_store::Error::Precondition { .. }) => {
                    // Someone else took it over first.
                    if let Some((now_held, _)) = ctx.read().await? {
                        return Err(ctx.in_use(&now_held));
                    }
                }
                Err(object_store::Error::NotImplemented { .. }) => {
                    // Local file systems have no compare-and-swap: delete, then create.
                    match store.delete(path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(ParquetSinkError::store("deleting", path, e)),
                    }
                }
                Err(e) => return Err(ParquetSinkError::store("taking over the lease", path, e)),
            }
        }
        match ctx.read().await? {
            Some((held, _)) => Err(ctx.in_use(&held)),
            None => Err(ParquetSinkError::LeaseLost {
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
            renewed: SystemTime::now(),
        }
    }

    /// Whether a third of the TTL has passed since the last renewal.
    pub(crate) fn due(&self) -> bool {
        self.renewed.elapsed().unwrap_or_default() >= self.ttl / 3
    }

    /// Extends the lease, failing with [`ParquetSinkError::LeaseLost`] if another run took it.
    pub(crate) async fn renew(
        &mut self,
        store: &dyn ObjectStore,
        path: &Path,
        dest: &str,
    ) -> Result<()> {
        let ctx = Ctx { store, path, dest };
        let mut doc = self.doc.clone();
        doc.expires_at_ms = now_ms() + self.ttl.as_millis() as i64;
        let lost = |detail: String| ParquetSinkError::LeaseLost {
            dest: dest.to_owned(),
            detail,
        };
        let version = match ctx.put(&doc, PutMode::Update(self.version.clone())).await {
            Ok(v) => v,
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                return Err(lost(self.describe_holder(&ctx).await));
            }
            Err(object_store::Error::NotImplemented { .. }) => {
                match ctx.read().await? {
                    Some((held, _)) if held.owner == self.doc.owner => {}
                    _ => return Err(lost(self.describe_holder(&ctx).await)),
                }
                ctx.put(&doc, PutMode::Overwrite)
                    .await
                    .map_err(|e| ParquetSinkError::store("renewing the lease", path, e))?
            }
            Err(e) => return Err(ParquetSinkError::store("renewing the lease", path, e)),
        };
        self.doc = doc;
        self.version = version;
        self.renewed = SystemTime::now();
        Ok(())
    }

    async fn describe_holder(&self, ctx: &Ctx<'_>) -> String {
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

    /// Deletes the lease if this session still holds it.
    pub(crate) async fn release(
        self,
        store: &dyn ObjectStore,
        path: &Path,
        dest: &str,
    ) -> Result<()> {
        let ctx = Ctx { store, path, dest };
        match ctx.read().await? {
            Some((held, _)) if held.owner == self.doc.owner => match store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(ParquetSinkError::store("releasing the lease", path, e)),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod dead_holder_tests {
    use super::*;

    fn doc(pid: u32, ns: Option<String>, host: String) -> LeaseDoc {
        LeaseDoc {
            owner: "o".into(),
            host,
            pid,
            acquired_at_ms: 0,
            expires_at_ms: i64::MAX,
            pid_ns: ns,
        }
    }

    #[test]
    fn a_vanished_process_of_this_host_and_namespace_is_dead() {
        // PIDs are below 2^22 on Linux: this one cannot exist.
        assert!(holder_is_dead(&doc(
            u32::MAX - 1,
            pid_namespace(),
            host_name()
        )));
        assert!(!holder_is_dead(&doc(
            std::process::id(),
            pid_namespace(),
            host_name()
        )));
        assert!(
            !holder_is_dead(&doc(1, pid_namespace(), host_name())),
            "pid 1 is alive"
        );
        assert!(!holder_is_dead(&doc(
            u32::MAX - 1,
            Some("pid:[1]".into()),
            host_name()
        )));
        assert!(!holder_is_dead(&doc(u32::MAX - 1, None, host_name())));
        assert!(!holder_is_dead(&doc(
            u32::MAX - 1,
            pid_namespace(),
            "other-host".into()
        )));
    }
}
