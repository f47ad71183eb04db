//! The commit: every staged table's new files (`table_commit`), then one manifest version
//! created with put-if-not-exists (the commit point), then the format's log versions
//! published, then superseded files deleted.

use crate::error::{LakeError, Result};
use crate::layout;
use crate::manifest::{self, FileEntry, RetiredFile};
use crate::sink::{LakeSink, internal};
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sluice_core::sink_support::select_values;
use sluice_core::{Change, CommitReport, Scope, SinkChange, State, TableSpec};
use std::collections::{BTreeMap, BTreeSet};

impl LakeSink {
    /// Turns a `Scope::Via` into a `Scope::Where` using the parent's committed rows.
    pub(crate) fn resolve<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Scope>> {
        async move {
            let Scope::Via {
                column,
                parent_table,
                parent_column,
                parent_scope,
            } = scope
            else {
                return Ok(scope.clone());
            };
            let parent_scope = self.resolve(parent_scope).await?;
            let entry = self
                .manifest
                .as_ref()
                .and_then(|m| m.tables.get(parent_table));
            let values = match entry {
                None => Vec::new(),
                // The parent started empty in this run and holds no row of these parents:
                // nothing to read.
                Some(entry)
                    if matches!(&parent_scope, Scope::Where { column, values }
                        if *column == entry.bucket_column
                            && self
                                .written
                                .lock()
                                .expect("written-keys index lock")
                                .proves_no_rows_with(parent_table, column, values)) =>
                {
                    Vec::new()
                }
                Some(entry) => {
                    let buckets: Option<BTreeSet<u32>> = match &parent_scope {
                        Scope::Where { column, values } if *column == entry.bucket_column => Some(
                            values
                                .iter()
                                .map(|v| layout::bucket_of(v, entry.buckets))
                                .collect(),
                        ),
                        _ => None,
                    };
                    let files: Vec<FileEntry> = entry
                        .files
                        .iter()
                        .filter(|f| buckets.as_ref().is_none_or(|b| b.contains(&f.bucket)))
                        .cloned()
                        .collect();
                    // Only the parent's scope column and the column the values come from.
                    let mut columns = vec![parent_column.clone()];
                    if let Scope::Where { column, .. } = &parent_scope
                        && column != parent_column
                    {
                        columns.push(column.clone());
                    }
                    self.select_in_files(
                        parent_table,
                        files,
                        &columns,
                        &parent_scope,
                        parent_column,
                    )
                    .await?
                }
            };
            Ok(Scope::Where {
                column: column.clone(),
                values,
            })
        }
        .boxed()
    }

    /// The distinct values of `column` in the rows of `files` (of `table`) that `scope`
    /// selects, reading only `columns`, one batch at a time: memory holds a row group of
    /// those columns and the selected values, not the files.
    async fn select_in_files(
        &self,
        table: &str,
        files: Vec<FileEntry>,
        columns: &[String],
        scope: &Scope,
        column: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for f in files {
            let mut batches = self.live_batches(table, &f, Some(columns), None).await?;
            while let Some(b) = batches.try_next().await? {
                out.extend(select_values(&[b], scope, column)?);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub(crate) async fn delete_quietly(&self, paths: &[Path], why: &str) {
        for p in paths {
            match self.dest.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %e, file = %p, "cannot delete {why}; the next run removes it")
                }
            }
        }
    }

    pub(crate) async fn commit_inner(&mut self, state: &State) -> Result<CommitReport> {
        if self.lease.is_none() {
            return Err(internal("commit on a sink that is not open"));
        }
        let pending = std::mem::take(&mut self.pending);
        self.written
            .lock()
            .expect("written-keys index lock")
            .begin_commit();
        let base = self.manifest.clone();
        let mut by_table: BTreeMap<String, Vec<SinkChange>> = BTreeMap::new();
        for mut c in pending {
            if let Change::DeleteMissing { scope, .. } = &mut c.change
                && matches!(scope, Scope::Via { .. })
            {
                *scope = self.resolve(scope).await?;
            }
            by_table
                .entry(c.change.table().to_owned())
                .or_default()
                .push(c);
        }

        // (1) New data files, under new unique names.
        let mut next = base.clone().unwrap_or_default();
        let mut report = CommitReport::default();
        let mut new_files = Vec::new();
        let mut superseded = Vec::new();
        // Superseded files that the format keeps for a while, by table.
        let mut retiring: Vec<(String, Vec<Path>)> = Vec::new();
        let retention = self.format.retention();
        for (table, changes) in &by_table {
            let spec = self
                .specs
                .get(table)
                .ok_or_else(|| internal(format!("write to undeclared table `{table}`")))?;
            let old = base.as_ref().and_then(|m| m.tables.get(table));
            match self.commit_table(spec, old, changes, &mut new_files).await {
                Ok((entry, stats, gone)) => {
                    next.tables.insert(table.clone(), entry);
                    report.tables.insert(table.clone(), stats);
                    if retention.is_zero() {
                        superseded.extend(gone);
                    } else {
                        retiring.push((table.clone(), gone));
                    }
                }
                Err(e) => {
                    self.delete_quietly(&new_files, "a data file of a failed commit")
                        .await;
                    return Err(e);
                }
            }
        }
        for (name, spec) in &self.specs {
            if let Some(entry) = next.tables.get_mut(name) {
                entry.absorb(spec);
            }
        }
        // Retention: this commit's superseded files join the retired ones; retired files
        // whose retention is over leave the manifest and are deleted after the commit.
        let now = sluice_core::now_ms();
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        for (table, gone) in retiring {
            if let Some(entry) = next.tables.get_mut(&table) {
                let names = gone.iter().filter_map(|p| p.filename().map(str::to_owned));
                entry.retired.extend(names.map(|name| RetiredFile {
                    name,
                    since_ms: now,
                }));
            }
        }
        for (table, entry) in next.tables.iter_mut() {
            let dir = layout::table_dir(&self.dest.root, table);
            entry.retired.retain(|r| {
                let over = r.since_ms.saturating_add(keep_ms) <= now;
                if over {
                    superseded.push(dir.clone().join(r.name.as_str()));
                }
                !over
            });
        }
        // Each changed table's next log version (formats with a log), published after the
        // manifest. Versions an earlier commit left unpublished go first.
        if let Err(e) = self.publish_logs().await {
            self.delete_quietly(&new_files, "a data file of a failed commit")
                .await;
            return Err(e);
        }
        let mut to_publish = BTreeSet::new();
        for (name, entry) in next.tables.iter_mut() {
            let old = base.as_ref().and_then(|m| m.tables.get(name));
            let key = self
                .specs
                .get(name)
                .map(TableSpec::storage_key)
                .unwrap_or_default();
            let log = self.format.next_log(name, &key, old, entry, now);
            if log.is_some() && log != entry.log {
                to_publish.insert(name.clone());
            }
            entry.log = log;
        }
        next.format = next.required_format();
        next.version = base.as_ref().map_or(1, |m| m.version + 1);
        next.commit_id = uuid::Uuid::new_v4().to_string();
        next.committed_at_ms = sluice_core::now_ms();
        next.state = Some(
            serde_json::from_slice(&state.to_json())
                .map_err(|e| internal(format!("state does not round-trip: {e}")))?,
        );

        // Fencing: the lease must still be ours right before the manifest is written (a
        // run that lost it, say after stalling past its TTL, stops here). The renewal just
        // made leaves a whole TTL before anyone may take the lease over.
        let renewed = match &self.lease {
            Some(lease) => lease.fence().await,
            None => Err(internal("commit on a sink that is not open")),
        };
        if let Err(e) = renewed {
            self.delete_quietly(&new_files, "a data file of a failed commit")
                .await;
            return Err(e);
        }

        // (2) One manifest version, created only if it does not exist yet.
        let path = layout::manifest_path(&self.dest.root, next.version);
        let put = self
            .dest
            .store
            .put_opts(
                &path,
                PutPayload::from(next.to_json()),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Ours after a retried request, or another run's?
                let theirs =
                    manifest::read(self.dest.store.as_ref(), &self.dest.root, next.version).await;
                if !matches!(&theirs, Ok(m) if m.commit_id == next.commit_id) {
                    self.delete_quietly(&new_files, "a data file of a lost commit")
                        .await;
                    return Err(LakeError::Conflict {
                        dest: self.dest.url.clone(),
                        version: next.version,
                    });
                }
            }
            Err(e) => {
                // The outcome is unknown (the request may have succeeded): keep the new files;
                // the next open removes them if the manifest did not land.
                return Err(LakeError::store("writing", &path, e));
            }
        }
        self.manifest = Some(next);
        self.unpublished.extend(to_publish);
        if let Err(e) = self.publish_logs().await {
            // Committed: the next commit or run publishes the missing versions first. Until
            // then the format's readers read the last published version, which still names
            // the files this commit superseded: they stay until it is published.
            tracing::warn!(error = %e, "cannot publish a table log version; it is retried at the next commit");
            self.superseded_unpublished.extend(superseded);
        } else {
            // (3) Only now delete what the new manifest (and log) no longer lists.
            let earlier = std::mem::take(&mut self.superseded_unpublished);
            self.delete_quietly(&earlier, "a superseded data file")
                .await;
            self.delete_quietly(&superseded, "a superseded data file")
                .await;
        }
        self.prune_manifests().await;
        Ok(report)
    }

    /// Publishes the log version of every table in [`LakeSink::unpublished`] (see
    /// [`TableFormat::publish`](crate::TableFormat::publish)).
    ///
    /// A published version's text is dropped from the in-memory manifest, so that the next
    /// manifest does not carry it (it is in the table folder now): a manifest holds only the
    /// texts of versions that may still need publishing.
    pub(crate) async fn publish_logs(&mut self) -> Result<()> {
        let Some(m) = self.manifest.as_mut() else {
            return Ok(());
        };
        for table in std::mem::take(&mut self.unpublished) {
            let Some(entry) = m.tables.get_mut(&table) else {
                continue;
            };
            match &entry.log {
                None => continue,
                Some(log) if log.commit.is_empty() => {
                    return Err(LakeError::Damaged {
                        path: layout::table_dir(&self.dest.root, &table).to_string(),
                        detail: format!(
                            "log version {} of table `{table}` is missing from the table folder \
                             although it was published; its log was changed outside sluice \
                             (re-sync the table to write it anew)",
                            log.version
                        ),
                    });
                }
                Some(_) => {}
            }
            let dir = layout::table_dir(&self.dest.root, &table);
            if let Err(e) = self
                .format
                .publish(self.dest.store.as_ref(), &dir, entry)
                .await
            {
                let rest = m.tables.keys().filter(|t| **t >= table).cloned();
                self.unpublished.extend(rest);
                return Err(e);
            }
            if let Some(log) = entry.log.as_mut() {
                log.commit.clear();
            }
        }
        Ok(())
    }
}
