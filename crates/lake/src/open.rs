//! Opening a lake and recovering from an interrupted run: the live manifest (a torn newest
//! one set aside), unpublished log versions published, orphan files of interrupted commits
//! and staging leftovers removed, old manifest versions pruned.

use crate::deletion_vector;
use crate::error::{LakeError, Result};
use crate::layout;
use crate::manifest;
use crate::sink::{LakeSink, dv_files, with_companions};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sluice_core::{State, TableSpec};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// Age after which a staging file of an object written without the lease (the lease, a
/// write probe) is a leftover of a killed run rather than another run's write in progress.
const UNLEASED_STAGING_AGE: Duration = Duration::from_secs(3600);

impl LakeSink {
    pub(crate) async fn open_inner(&mut self, tables: &[TableSpec]) -> Result<Option<State>> {
        let live = manifest::live(self.dest.store.as_ref(), &self.dest.root).await?;
        let manifest = match live {
            None => None,
            Some(live) => {
                if let Some(torn) = live.torn {
                    self.set_aside_torn_manifest(torn).await?;
                }
                Some(live.manifest)
            }
        };
        if let Some(m) = &manifest {
            for spec in tables {
                if let Some(entry) = m.tables.get(&spec.name) {
                    entry.check(spec)?;
                }
            }
        }
        self.specs = tables.iter().map(|t| (t.name.clone(), t.clone())).collect();
        let state = match &manifest {
            Some(m) => m.state()?,
            None => None,
        };
        if let Some(m) = &manifest {
            let logged = m
                .tables
                .values()
                .any(|e| e.log.is_some() || e.files.iter().any(|f| f.dv.is_some()));
            // The format whose log a table has (deletion vectors without a log are Delta's).
            let other = m.tables.iter().find_map(|(t, e)| match &e.log {
                Some(l) if l.format_name() != self.format.name() => Some((t, l.format_name())),
                _ => None,
            });
            if let Some((table, other)) = other {
                return Err(LakeError::Config(format!(
                    "destination {} holds `{other}` tables (`{table}` among them); write to it \
                     with `--sink {other}`",
                    self.dest.url
                )));
            }
            if logged && !self.format.keeps_log() {
                return Err(LakeError::Config(format!(
                    "destination {} holds tables with deletion vectors (written by the `delta` \
                     sink); write to it with `--sink delta`",
                    self.dest.url
                )));
            }
            // The tables whose recorded log version is missing.
            self.unpublished.clear();
            for (table, entry) in &m.tables {
                let Some(log) = &entry.log else {
                    continue;
                };
                let dir = layout::table_dir(&self.dest.root, table);
                if !self
                    .format
                    .is_published(self.dest.store.as_ref(), &dir, log)
                    .await?
                {
                    self.unpublished.insert(table.clone());
                }
            }
        }
        self.manifest = manifest;
        // A run stopped between a manifest commit and its log versions: publish them.
        self.publish_logs().await?;
        self.remove_orphans().await;
        self.remove_staging_leftovers().await;
        self.prune_manifests().await;
        Ok(state)
    }

    /// Moves a torn newest manifest (see [`manifest::live`]) to `<version>.json.torn`, out of
    /// the versions, so that the next commit can create that version again.
    pub(crate) async fn set_aside_torn_manifest(&self, version: u64) -> Result<()> {
        let from = layout::manifest_path(&self.dest.root, version);
        let to = Path::from(format!("{from}.torn"));
        tracing::warn!(manifest = %from, kept_as = %to, "setting a torn manifest aside");
        self.dest
            .store
            .rename(&from, &to)
            .await
            .map_err(|e| LakeError::store("setting aside", &from, e))
    }

    /// Deletes data files in table folders that the live manifest does not list (left by an
    /// interrupted run). Best effort: failures are logged and retried at the next open.
    pub(crate) async fn remove_orphans(&self) {
        let empty = BTreeMap::new();
        let tables = self.manifest.as_ref().map_or(&empty, |m| &m.tables);
        let names: BTreeSet<&String> = tables.keys().chain(self.specs.keys()).collect();
        let companion = self.format.dv_companion_extension();
        let is_vector_or_companion = |name: &str| {
            deletion_vector::is_dv_file(name)
                || companion.is_some_and(|e| deletion_vector::is_companion(name, e))
        };
        for table in names {
            let live: HashSet<&str> = tables
                .get(table)
                .map(|e| e.files.iter().map(|f| f.name.as_str()).collect())
                .unwrap_or_default();
            let live_dvs: HashSet<String> = tables
                .get(table)
                .map(|e| with_companions(self.format.as_ref(), &dv_files(&e.files)))
                .unwrap_or_default()
                .into_iter()
                .collect();
            let retired: HashSet<&str> = tables
                .get(table)
                .map(|e| e.retired.iter().map(|r| r.name.as_str()).collect())
                .unwrap_or_default();
            let dir = layout::table_dir(&self.dest.root, table);
            let listed: Vec<_> = {
                use futures::TryStreamExt;
                match self
                    .dest
                    .store
                    .list(Some(&dir))
                    .try_collect::<Vec<_>>()
                    .await
                {
                    Ok(l) => l,
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, dir = %dir, "cannot list a table folder for orphan files");
                        continue;
                    }
                }
            };
            for meta in listed {
                let Some(name) = meta.location.filename() else {
                    continue;
                };
                let orphan = !retired.contains(name)
                    && ((layout::is_data_file(name) && !live.contains(name))
                        || (is_vector_or_companion(name) && !live_dvs.contains(name)));
                if orphan {
                    tracing::info!(file = %meta.location, "removing a data file of an interrupted commit");
                    if let Err(e) = self.dest.store.delete(&meta.location).await {
                        tracing::warn!(error = %e, file = %meta.location, "cannot remove an orphan file");
                    }
                }
            }
        }
    }

    /// On local disk: deletes the staging files of puts that a killed run left in the
    /// table folders and `_sluice` (object_store's local store writes `<name>#<n>` and
    /// renames or links it into place; its listings hide such names, so
    /// [`Self::remove_orphans`] cannot see them).
    /// Best effort, like orphan removal; the lease keeps other writers out meanwhile, except
    /// from the lease object itself and the write probes, which runs write before holding
    /// the lease: their staging files are only removed once an hour old.
    pub(crate) async fn remove_staging_leftovers(&self) {
        let Some(root) = self.dest.fs_path(&self.dest.root) else {
            return;
        };
        let tables: BTreeSet<&String> = self
            .specs
            .keys()
            .chain(self.manifest.iter().flat_map(|m| m.tables.keys()))
            .collect();
        let mut dirs: Vec<std::path::PathBuf> = tables.into_iter().map(|t| root.join(t)).collect();
        let sluice = root.join(layout::SLUICE_DIR);
        let probes = self.dest.fs_path(&layout::probe_dir(&self.dest.root));
        let probes = probes.unwrap_or_default();
        dirs.push(sluice.clone());
        while let Some(dir) = dirs.pop() {
            let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
                continue;
            };
            while let Ok(Some(e)) = entries.next_entry().await {
                let path = e.path();
                if e.file_type().await.is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                } else if layout::is_staging_leftover(&e.file_name().to_string_lossy()) {
                    let unleased = dir == probes
                        || (dir == sluice
                            && e.file_name().to_string_lossy().starts_with("lease.json#"));
                    let young = |m: std::fs::Metadata| {
                        m.modified()
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_none_or(|age| age < UNLEASED_STAGING_AGE)
                    };
                    if unleased && e.metadata().await.map_or(true, young) {
                        continue;
                    }
                    tracing::info!(file = %path.display(), "removing a partial write of an interrupted run");
                    if let Err(err) = tokio::fs::remove_file(&path).await {
                        tracing::warn!(error = %err, file = %path.display(), "cannot remove a partial write");
                    }
                }
            }
        }
    }

    /// Deletes manifest versions older than the `keep_manifests` newest.
    pub(crate) async fn prune_manifests(&self) {
        let versions = match manifest::versions(self.dest.store.as_ref(), &self.dest.root).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list manifest versions");
                return;
            }
        };
        let keep = self.config.keep_manifests.max(1);
        if versions.len() <= keep {
            return;
        }
        for v in &versions[..versions.len() - keep] {
            let path = layout::manifest_path(&self.dest.root, *v);
            if let Err(e) = self.dest.store.delete(&path).await {
                tracing::warn!(error = %e, manifest = %path, "cannot remove an old manifest");
            }
        }
    }
}
