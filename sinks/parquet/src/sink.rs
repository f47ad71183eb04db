//! [`ParquetSink`]: the [`Sink`] implementation (open, stage, commit, scan).

use crate::config::{Destination, ParquetSinkConfig, TableFormat};
use crate::delta_log;
use crate::dv::{self, Descriptor};
use crate::error::{ParquetSinkError, Result};
use crate::io;
use crate::layout::{self, buckets_of};
use crate::lease::LeaseKeeper;
use crate::manifest::{self, FileEntry, Manifest, TableEntry};
use crate::partition::Partitioned;
use crate::probe::{self, Findings, Probe};
use crate::session_index::{Proof, SessionIndex};
use crate::store_check;
use arrow::array::UInt32Array;
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use roaring::RoaringTreemap;
use rustc_hash::FxHashMap;
use sluice_core::merge::{Chunk, ChunkedMerge, align, merge_into_empty, select_values};
use sluice_core::{
    Change, CommitReport, Scope, Sink, SinkChange, SinkFactory, State, SyncKind, TableCommitStats,
    TableSpec, async_trait,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Builds [`ParquetSink`]s from the `[sink]` section (registered as `parquet`).
pub struct ParquetSinkFactory;

impl SinkFactory for ParquetSinkFactory {
    type Config = ParquetSinkConfig;
    fn build(config: ParquetSinkConfig) -> sluice_core::Result<Box<dyn Sink>> {
        Ok(Box::new(ParquetSink::new(config)?))
    }
}

/// Builds [`ParquetSink`]s in Delta mode (registered as `delta`): the `[sink]` section of the
/// `parquet` sink with `table_format = "delta"`.
pub struct DeltaSinkFactory;

impl SinkFactory for DeltaSinkFactory {
    type Config = ParquetSinkConfig;
    fn build(mut config: ParquetSinkConfig) -> sluice_core::Result<Box<dyn Sink>> {
        config.table_format = TableFormat::Delta;
        Ok(Box::new(ParquetSink::new(config)?))
    }
}

/// A Parquet lake on local disk or S3. See the crate docs for the layout and commit protocol.
pub struct ParquetSink {
    dest: Destination,
    config: ParquetSinkConfig,
    session: String,
    lease: Option<LeaseKeeper>,
    manifest: Option<Manifest>,
    specs: BTreeMap<String, TableSpec>,
    pending: Vec<SinkChange>,
    /// Keys this run wrote to tables that started empty (see `session_index`).
    index: std::sync::Mutex<BTreeMap<String, SessionIndex>>,
    /// Delta mode: tables whose Delta log lacks the version the live manifest records.
    unpublished: BTreeSet<String>,
    /// Delta mode: files superseded by commits whose Delta log versions are not published
    /// yet (Delta readers still read them), deleted once they are.
    superseded_unpublished: Vec<Path>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("dest", &self.dest)
            .field("config", &self.config)
            .field("session", &self.session)
            .field("open", &self.lease.is_some())
            .field("pending", &self.pending.len())
            .finish()
    }
}

fn internal(m: impl Into<String>) -> ParquetSinkError {
    ParquetSinkError::Core(sluice_core::Error::internal(m))
}

impl ParquetSink {
    /// A sink for `config` (no I/O until `open`, `read_state` or `scan`).
    pub fn new(config: ParquetSinkConfig) -> Result<ParquetSink> {
        config.validate()?;
        let dest = Destination::from_config(&config)?;
        Ok(Self::with_destination(dest, config))
    }

    /// A sink on an already resolved destination (for example a store wrapped to count or
    /// inject failures in tests). `config.dest` is ignored.
    pub fn with_destination(dest: Destination, config: ParquetSinkConfig) -> ParquetSink {
        ParquetSink {
            dest,
            config,
            session: uuid::Uuid::new_v4().to_string(),
            lease: None,
            manifest: None,
            specs: BTreeMap::new(),
            pending: Vec::new(),
            index: std::sync::Mutex::default(),
            unpublished: BTreeSet::new(),
            superseded_unpublished: Vec::new(),
        }
    }

    /// Whether table folders are Delta tables (deletion vectors instead of rewrites).
    fn delta(&self) -> bool {
        self.config.table_format == TableFormat::Delta
    }

    /// The rows of the stored file `f` of `table` that are no longer live (Delta mode).
    async fn deleted_rows(&self, table: &str, f: &FileEntry) -> Result<Option<RoaringTreemap>> {
        match &f.dv {
            None => Ok(None),
            Some(d) => Ok(Some(
                dv::read(
                    &self.dest.store,
                    &layout::table_dir(&self.dest.root, table),
                    d,
                )
                .await?,
            )),
        }
    }

    /// Publishes the Delta log version of every table in [`Self::unpublished`].
    async fn publish_delta(&mut self) -> Result<()> {
        let Some(m) = &self.manifest else {
            return Ok(());
        };
        for table in std::mem::take(&mut self.unpublished) {
            let Some(entry) = m.tables.get(&table) else {
                continue;
            };
            let Some(state) = entry.delta.as_ref() else {
                continue;
            };
            let dir = layout::table_dir(&self.dest.root, &table);
            let store = self.dest.store.as_ref();
            match delta_log::publish(store, &dir, state).await {
                Ok(true) if delta_log::checkpoint_due(state.version) => {
                    // Optional for readers (they can replay every version): a failure is
                    // only logged, and the next checkpoint is 10 versions on.
                    if let Err(e) = delta_log::write_checkpoint(store, &dir, entry, state).await {
                        tracing::warn!(error = %e, table = %table, "cannot write a Delta checkpoint");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let rest = m.tables.keys().filter(|t| **t >= table).cloned();
                    self.unpublished.extend(rest);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The resolved destination.
    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// The live data files of `table` according to the committed manifest, as object paths
    /// (for verification tools and tests; readers may use them for a consistent snapshot).
    /// In Delta mode these files can hold deleted rows: read such tables through Delta.
    pub async fn live_files(&self, table: &str) -> sluice_core::Result<Vec<String>> {
        let m = manifest::latest(self.dest.store.as_ref(), &self.dest.root).await?;
        Ok(m.and_then(|m| m.tables.get(table).cloned())
            .map(|e| {
                e.files
                    .iter()
                    .map(|f| self.file_path(table, &f.name).to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Every object of `table` the committed manifest refers to: its live data files and,
    /// in Delta mode, their deletion vector files (the `_delta_log` folder aside).
    pub async fn live_objects(&self, table: &str) -> sluice_core::Result<Vec<String>> {
        let m = manifest::latest(self.dest.store.as_ref(), &self.dest.root).await?;
        let Some(entry) = m.and_then(|m| m.tables.get(table).cloned()) else {
            return Ok(Vec::new());
        };
        let names = entry
            .files
            .iter()
            .map(|f| f.name.clone())
            .chain(dv_files(&entry.files));
        Ok(names
            .map(|n| self.file_path(table, &n).to_string())
            .collect())
    }

    fn lease_path(&self) -> Path {
        layout::lease_path(&self.dest.root)
    }

    fn file_path(&self, table: &str, name: &str) -> Path {
        layout::table_dir(&self.dest.root, table).join(name)
    }

    /// The bucket count of a new table: fixed by config, 1 for re-imported tables, else 1
    /// to start with (see [`Self::grown_buckets`]).
    fn buckets_for(&self, spec: &TableSpec) -> u32 {
        if let Some(&n) = self.config.table_buckets.get(&spec.name) {
            return n;
        }
        match spec.sync {
            SyncKind::Reimport => 1,
            _ => self.config.buckets.unwrap_or(1),
        }
    }

    /// Whether the table's bucket count follows its size (no fixed count configured).
    fn sized_by_rows(&self, spec: &TableSpec) -> bool {
        self.config.buckets.is_none()
            && !self.config.table_buckets.contains_key(&spec.name)
            && spec.sync != SyncKind::Reimport
    }

    /// The bucket count a table sized by its rows needs once `incoming` more rows arrive:
    /// the current count times a power of 4, so that at most `bucket_rows` rows fall in a
    /// bucket; `None` when the current count suffices. Splitting by 4 rather than 2 rewrites
    /// the table fewer times as it grows (each split rewrites it once).
    fn grown_buckets(&self, spec: &TableSpec, entry: &TableEntry, incoming: u64) -> Option<u32> {
        if !self.sized_by_rows(spec) {
            return None;
        }
        let rows = entry.files.iter().map(FileEntry::live_rows).sum::<u64>() + incoming;
        let mut n = entry.buckets.max(1);
        while rows > u64::from(n) * self.config.bucket_rows && n < MAX_SIZED_BUCKETS {
            n *= 4;
        }
        (n != entry.buckets).then_some(n)
    }

    /// Re-buckets every stored file of `entry` into `to` buckets (a multiple of the current
    /// count, so each old bucket's rows spread over the new buckets congruent to it), one old
    /// bucket at a time. Rows are copied as they are; the replaced files are returned.
    async fn split_buckets(
        &self,
        out: &mut GroupWriter<'_>,
        entry: &mut TableEntry,
    ) -> Result<Vec<FileEntry>> {
        let mut by_bucket: BTreeMap<u32, Vec<FileEntry>> = BTreeMap::new();
        for f in entry.files.drain(..) {
            by_bucket.entry(f.bucket).or_default().push(f);
        }
        let from = entry.buckets;
        let mut replaced = Vec::new();
        for (bucket, files) in by_bucket {
            let targets: BTreeSet<u32> = (bucket..out.n).step_by(from as usize).collect();
            out.redistribute(&files, &targets).await?;
            replaced.extend(files);
        }
        entry.buckets = out.n;
        Ok(replaced)
    }

    async fn release(&mut self) -> Result<()> {
        if let Some(lease) = self.lease.take() {
            lease.release().await?;
        }
        Ok(())
    }

    async fn open_inner(&mut self, tables: &[TableSpec]) -> Result<Option<State>> {
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
            let delta_tables = m
                .tables
                .values()
                .any(|e| e.delta.is_some() || e.files.iter().any(|f| f.dv.is_some()));
            if delta_tables && !self.delta() {
                return Err(ParquetSinkError::Config(format!(
                    "destination {} holds Delta tables with deletion vectors (written by the \
                     `delta` sink); write to it with `--sink delta` (or table_format = \"delta\")",
                    self.dest.url
                )));
            }
            if self.delta() {
                // The tables whose recorded log version is missing (one HEAD each).
                self.unpublished.clear();
                for (table, entry) in &m.tables {
                    let Some(state) = &entry.delta else {
                        continue;
                    };
                    let dir = layout::table_dir(&self.dest.root, table);
                    let path = delta_log::log_path(&dir, state.version);
                    if self.dest.store.head(&path).await.is_err() {
                        self.unpublished.insert(table.clone());
                    }
                }
            }
        }
        self.manifest = manifest;
        // A run stopped between a manifest commit and its Delta log versions: publish them.
        self.publish_delta().await?;
        self.remove_orphans().await;
        self.remove_staging_leftovers().await;
        self.prune_manifests().await;
        Ok(state)
    }

    /// Moves a torn newest manifest (see [`manifest::live`]) to `<version>.json.torn`, out of
    /// the versions, so that the next commit can create that version again.
    async fn set_aside_torn_manifest(&self, version: u64) -> Result<()> {
        let from = layout::manifest_path(&self.dest.root, version);
        let to = Path::from(format!("{from}.torn"));
        tracing::warn!(manifest = %from, kept_as = %to, "setting a torn manifest aside");
        self.dest
            .store
            .rename(&from, &to)
            .await
            .map_err(|e| ParquetSinkError::store("setting aside", &from, e))
    }

    /// Deletes data files in table folders that the live manifest does not list (left by an
    /// interrupted run). Best effort: failures are logged and retried at the next open.
    async fn remove_orphans(&self) {
        let empty = BTreeMap::new();
        let tables = self.manifest.as_ref().map_or(&empty, |m| &m.tables);
        let names: BTreeSet<&String> = tables.keys().chain(self.specs.keys()).collect();
        for table in names {
            let live: HashSet<&str> = tables
                .get(table)
                .map(|e| e.files.iter().map(|f| f.name.as_str()).collect())
                .unwrap_or_default();
            let live_dvs: HashSet<String> = tables
                .get(table)
                .map(|e| dv_files(&e.files))
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
                let orphan = (layout::is_data_file(name) && !live.contains(name))
                    || (dv::is_dv_file(name) && !live_dvs.contains(name));
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
    async fn remove_staging_leftovers(&self) {
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
    async fn prune_manifests(&self) {
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

    /// Reads the given files of `table` (only declared columns when `keep` is set).
    async fn read_files(
        &self,
        table: &str,
        files: Vec<FileEntry>,
        columns: Option<&[String]>,
        keep: Option<&arrow::datatypes::SchemaRef>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for f in files {
            let path = self.file_path(table, &f.name);
            let deleted = self.deleted_rows(table, &f).await?;
            let mut first = 0;
            for b in io::read_file(&self.dest.store, &path, f.size, columns, keep).await? {
                let n = b.num_rows() as u64;
                out.push(without_deleted(b, deleted.as_ref(), first)?);
                first += n;
            }
        }
        Ok(out)
    }

    /// Turns a `Scope::Via` into a `Scope::Where` using the parent's committed rows.
    fn resolve<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Scope>> {
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
                                .index
                                .lock()
                                .expect("session index lock")
                                .get(parent_table)
                                .is_some_and(|ix| ix.proves_no_rows_with(values))) =>
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
                    let batches = self
                        .read_files(parent_table, files, Some(&columns), None)
                        .await?;
                    select_values(&batches, &parent_scope, parent_column)?
                }
            };
            Ok(Scope::Where {
                column: column.clone(),
                values,
            })
        }
        .boxed()
    }

    /// Merges `changes` into the touched buckets of one table and writes the new files.
    /// Returns the new entry, stats and the superseded files.
    async fn commit_table(
        &self,
        spec: &TableSpec,
        base: Option<&TableEntry>,
        changes: &[SinkChange],
        new_files: &mut Vec<Path>,
    ) -> Result<(TableEntry, TableCommitStats, Vec<Path>)> {
        let mut entry = base
            .cloned()
            .unwrap_or_else(|| TableEntry::new(spec, self.buckets_for(spec)));
        entry.check(spec)?;
        entry.absorb(spec);
        let schema = spec.arrow_schema();
        let bcol = entry.bucket_column.clone();
        if schema.field_with_name(&bcol).is_err() {
            return Err(ParquetSinkError::Core(sluice_core::Error::destination(
                format!(
                    "table `{}`: its files are bucketed by column `{bcol}`, which is no longer \
                 declared; re-sync the table into a new destination",
                    spec.name
                ),
            )));
        }
        let key_in_bucket = spec.primary_key.contains(&bcol);

        // 0. A table sized by its rows that would outgrow its buckets is re-bucketed first
        //    (a new table just starts with enough buckets). The new files take the old ones'
        //    place for the rest of the commit.
        let incoming: u64 = changes
            .iter()
            .map(|c| match &c.change {
                Change::Upsert { batch, .. } => batch.num_rows() as u64,
                _ => 0,
            })
            .sum();
        let mut split = (TableCommitStats::default(), Vec::new());
        if let Some(to) = self.grown_buckets(spec, &entry, incoming) {
            if entry.files.is_empty() {
                entry.buckets = to;
            } else {
                let mut w = GroupWriter {
                    sink: self,
                    spec,
                    bcol: &bcol,
                    n: to,
                    props: io::writer_properties(spec, self.config.row_group_rows),
                    keys_distinct: false,
                    stats: TableCommitStats::default(),
                    written: Vec::new(),
                    new_files,
                };
                let replaced = self.split_buckets(&mut w, &mut entry).await?;
                tracing::debug!(table = %spec.name, buckets = to, files = replaced.len(), "buckets split");
                entry.files = std::mem::take(&mut w.written);
                for f in &replaced {
                    w.stats.bytes_rewritten += f.size;
                }
                split = (w.stats, replaced);
            }
        }
        let n = entry.buckets;

        // 1. Index the staged changes, then check the stored rows they can reach, reading
        //    only the columns the check needs (key, scope and flag columns). A table that
        //    started empty in this run: its index of written keys can prove that nothing
        //    stored is affected, without reading any file; if no key is upserted twice either
        //    (or keys cannot move between buckets), the probe only counts new rows per bucket.
        let parts = Partitioned::new(changes, &bcol, n)?;
        let proof = {
            let mut index = self.index.lock().expect("session index lock");
            index
                .entry(spec.name.clone())
                .or_insert_with(|| SessionIndex::new(base.map_or(0, |e| e.files.len())))
                .prove(spec, &bcol, changes)
        };
        let untouched = matches!(proof, Proof::Untouched { .. });
        let probe = match proof {
            Proof::Untouched { unique_keys } if unique_keys || n == 1 || key_in_bucket => {
                Probe::targets_only(spec, &bcol, changes, &parts)?
            }
            _ => Probe::new(spec, n, &bcol, changes, &parts)?,
        };
        let mut stored: BTreeMap<u32, Vec<FileEntry>> = BTreeMap::new();
        for f in &entry.files {
            stored.entry(f.bucket).or_default().push(f.clone());
        }
        let mut found = Findings::default();
        // Delta mode: the affected rows of each stored file, with its deleted rows after them.
        let mut hits: FxHashMap<String, Hit> = FxHashMap::default();
        let columns = probe.columns();
        for (&bucket, files) in &stored {
            if untouched || !probe.must_check(bucket) {
                continue;
            }
            for f in files {
                let path = self.file_path(&spec.name, &f.name);
                let batches =
                    io::read_file(&self.dest.store, &path, f.size, Some(&columns), None).await?;
                if self.delta() {
                    let deleted = self.deleted_rows(&spec.name, f).await?;
                    let (mut first, mut rows) = (0, RoaringTreemap::new());
                    for b in &batches {
                        probe.check_rows(
                            bucket,
                            b,
                            &mut found,
                            first,
                            deleted.as_ref(),
                            &mut rows,
                        )?;
                        first += b.num_rows() as u64;
                    }
                    if !rows.is_empty() {
                        let mut after = deleted.unwrap_or_default();
                        after |= &rows;
                        hits.insert(
                            f.name.clone(),
                            Hit {
                                rows,
                                deleted: after,
                            },
                        );
                    }
                    continue;
                }
                for b in &batches {
                    probe.check(bucket, b, &mut found)?;
                }
                if key_in_bucket && found.affected.contains(&bucket) {
                    break;
                }
            }
        }

        // 2. The buckets to write (new rows or affected rows), grouped so that the old and new
        //    rows of every changed key are merged together (a key moving to another parent
        //    joins two buckets; usually every group is one bucket). A group with an affected
        //    row is rewritten from all its files; a bucket that would exceed
        //    `max_files_per_bucket` merges some of its files with its new rows; any other
        //    group gets the merged new rows as additional files.
        let mut work: BTreeSet<u32> = probe.targets.keys().copied().collect();
        work.extend(found.affected.iter().copied());
        let mut links = std::mem::take(&mut found.links);
        links.extend(probe.own_links());
        let groups = probe::groups(&work, &links);
        let mut out = GroupWriter {
            sink: self,
            spec,
            bcol: &bcol,
            n,
            props: io::writer_properties(spec, self.config.row_group_rows),
            keys_distinct: matches!(proof, Proof::Untouched { unique_keys: true }),
            stats: TableCommitStats::default(),
            written: Vec::new(),
            new_files,
        };
        // Files replaced by this commit's rewrites and compactions.
        let mut replaced: HashSet<String> = HashSet::new();
        // Delta mode: the new deletion vectors of files that stay.
        let mut deletions: Vec<(String, RoaringTreemap)> = Vec::new();
        let mut appended: Vec<BTreeSet<u32>> = Vec::new();
        for group in groups {
            let affected = group.iter().any(|b| found.affected.contains(b));
            let files_of = |b: &u32| stored.get(b).into_iter().flatten().cloned();
            if affected && self.delta() {
                // Delta mode: the affected rows are merged and written to a new file, and
                // marked deleted where they were; files mostly deleted are folded in.
                let files: Vec<FileEntry> = group.iter().flat_map(files_of).collect();
                let group_changes: Cow<'_, [SinkChange]> = if n > 1 {
                    Cow::Owned(parts.restrict(&group)?)
                } else {
                    Cow::Borrowed(changes)
                };
                let folded = out
                    .patch(&group, &files, &hits, &group_changes, &mut deletions)
                    .await?;
                replaced.extend(folded);
                continue;
            }
            // A group with an affected row is rewritten from all its files. Otherwise only
            // buckets about to exceed `max_files_per_bucket` merge some of their files with
            // the new rows (size-tiered, see `compaction_set`); the rest append.
            let to_read: Vec<FileEntry> = if affected {
                group.iter().flat_map(files_of).collect()
            } else {
                group
                    .iter()
                    .flat_map(|b| {
                        let files: Vec<FileEntry> = files_of(b).collect();
                        let new_rows = probe.targets.get(b).copied().unwrap_or(0);
                        self.compaction_set(&files, new_rows)
                    })
                    .collect()
            };
            if !affected && to_read.is_empty() {
                appended.push(group);
                continue;
            }
            replaced.extend(to_read.iter().map(|f| f.name.clone()));
            let group_changes: Cow<'_, [SinkChange]> = if n > 1 {
                Cow::Owned(parts.restrict(&group)?)
            } else {
                Cow::Borrowed(changes)
            };
            // A compaction of one bucket (no stored row affected) copies the stored rows as
            // they are, batch by batch; anything else (a rewrite, or a compaction of buckets
            // joined by a key staged under two parents) merges the group's rows.
            let one_bucket = group.first().filter(|_| group.len() == 1).copied();
            if let (false, Some(bucket)) = (affected, one_bucket) {
                out.compact(bucket, &to_read, &group_changes).await?;
                continue;
            }
            out.rewrite(&group, &to_read, &group_changes).await?;
        }
        // Groups on the append fast path merge against no stored rows, so several are merged
        // together: their keys are disjoint, so this equals merging each alone, and spares a
        // pass over every change per group. They are packed into `APPEND_PASSES` passes (not
        // one) to bound the memory a pass holds: its merged rows and their per-bucket copies.
        let per_pass = (n as usize).div_ceil(APPEND_PASSES).max(1);
        let mut pass: BTreeSet<u32> = BTreeSet::new();
        let mut passes = Vec::new();
        for group in appended {
            pass.extend(group);
            if pass.len() >= per_pass {
                passes.push(std::mem::take(&mut pass));
            }
        }
        passes.push(pass);
        for buckets in passes.into_iter().filter(|p| !p.is_empty()) {
            let group_changes: Cow<'_, [SinkChange]> = if n > 1 {
                Cow::Owned(parts.restrict(&buckets)?)
            } else {
                Cow::Borrowed(changes)
            };
            out.append(&buckets, &group_changes).await?;
        }
        let GroupWriter {
            mut stats, written, ..
        } = out;
        let (split_stats, split_replaced) = split;
        stats.add(&split_stats);

        // Delta mode: this commit's deletion vectors, all in one new vector file.
        let mut vectors: FxHashMap<String, Descriptor> = FxHashMap::default();
        if !deletions.is_empty() {
            let mut file = dv::FileBuilder::new();
            for (name, rows) in &deletions {
                vectors.insert(name.clone(), file.push(rows));
            }
            let path = self.file_path(&spec.name, &file.name());
            new_files.push(path.clone());
            let bytes = file.into_bytes();
            stats.bytes_written += bytes.len() as u64;
            stats.files_written += 1;
            self.dest
                .store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| ParquetSinkError::store("writing", &path, e))?;
        }
        let vectors_before = base.map(|e| dv_files(&e.files)).unwrap_or_default();

        // 3. The new file list: replaced files go, every other file stays as it was.
        let mut superseded: Vec<Path> = split_replaced
            .iter()
            .map(|f| self.file_path(&spec.name, &f.name))
            .collect();
        let mut files = Vec::new();
        for mut f in entry.files.drain(..) {
            if replaced.contains(&f.name) {
                stats.bytes_rewritten += f.size;
                superseded.push(self.file_path(&spec.name, &f.name));
            } else {
                if let Some(d) = vectors.remove(&f.name) {
                    f.dv = Some(d);
                }
                files.push(f);
            }
        }
        files.extend(written);
        files.sort_by(|a, b| (a.bucket, &a.name).cmp(&(b.bucket, &b.name)));
        entry.files = files;
        // Vector files no live file refers to any more.
        let vectors_after = dv_files(&entry.files);
        superseded.extend(
            vectors_before
                .difference(&vectors_after)
                .map(|name| self.file_path(&spec.name, name)),
        );
        Ok((entry, stats, superseded))
    }

    /// The files of a bucket to merge with `new_rows` appended rows so that the bucket keeps
    /// at most `max_files_per_bucket` files; empty when appending a file keeps it within.
    ///
    /// Size-tiered: the smallest files are taken first, and beyond what the limit needs, a
    /// file is absorbed only while it is no larger than the rows merged so far; no merged
    /// file exceeds `max_rows_per_file`. Over a first sync of equal commits this rewrites
    /// each row O(log commits) times, where rewriting the whole bucket at the limit rewrote
    /// it O(commits / max_files_per_bucket) times.
    fn compaction_set(&self, files: &[FileEntry], new_rows: u64) -> Vec<FileEntry> {
        let max = self.config.max_files_per_bucket.max(1);
        if files.len() < max {
            return Vec::new();
        }
        let cap = self.config.max_rows_per_file as u64;
        let mut by_size: Vec<&FileEntry> = files.iter().collect();
        by_size.sort_by(|a, b| (a.rows, &a.name).cmp(&(b.rows, &b.name)));
        let mut merged = new_rows;
        let mut chosen = Vec::new();
        for f in by_size {
            // Files the bucket holds after merging `chosen` and the new rows into one.
            let after = files.len() - chosen.len() + 1;
            if (after <= max && f.rows > merged) || merged + f.rows > cap {
                break;
            }
            merged += f.rows;
            chosen.push(f.clone());
        }
        chosen
    }

    async fn delete_quietly(&self, paths: &[Path], why: &str) {
        for p in paths {
            match self.dest.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %e, file = %p, "cannot delete {why}; the next run removes it")
                }
            }
        }
    }

    async fn commit_inner(&mut self, state: &State) -> Result<CommitReport> {
        if self.lease.is_none() {
            return Err(internal("commit on a sink that is not open"));
        }
        let pending = std::mem::take(&mut self.pending);
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
                    superseded.extend(gone);
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
        // Delta mode: each changed table's next log version, published after the manifest.
        let mut to_publish = BTreeSet::new();
        if self.delta() {
            if let Err(e) = self.publish_delta().await {
                self.delete_quietly(&new_files, "a data file of a failed commit")
                    .await;
                return Err(e);
            }
            let now = sluice_core::now_ms();
            for (name, entry) in next.tables.iter_mut() {
                let old = base.as_ref().and_then(|m| m.tables.get(name));
                let state = delta_log::next_state(old, entry, now);
                if state.as_ref().map(|s| s.version) != entry.delta.as_ref().map(|s| s.version)
                    || entry.delta.is_none()
                {
                    to_publish.insert(name.clone());
                }
                entry.delta = state;
            }
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
                    return Err(ParquetSinkError::Conflict {
                        dest: self.dest.url.clone(),
                        version: next.version,
                    });
                }
            }
            Err(e) => {
                // The outcome is unknown (the request may have succeeded): keep the new files;
                // the next open removes them if the manifest did not land.
                return Err(ParquetSinkError::store("writing", &path, e));
            }
        }
        self.manifest = Some(next);
        self.unpublished.extend(to_publish);
        if let Err(e) = self.publish_delta().await {
            // Committed: the next commit or run publishes the missing versions first. Until
            // then Delta readers read the last published version, which still names the
            // files this commit superseded: they stay until it is published.
            tracing::warn!(error = %e, "cannot publish a Delta log version; it is retried at the next commit");
            self.superseded_unpublished.extend(superseded);
        } else {
            // (3) Only now delete what the new manifest (and Delta log) no longer lists.
            let earlier = std::mem::take(&mut self.superseded_unpublished);
            self.delete_quietly(&earlier, "a superseded data file")
                .await;
            self.delete_quietly(&superseded, "a superseded data file")
                .await;
        }
        self.prune_manifests().await;
        Ok(report)
    }
}

/// Age after which a staging file of an object written without the lease (the lease, a
/// write probe) is a leftover of a killed run rather than another run's write in progress.
const UNLEASED_STAGING_AGE: Duration = Duration::from_secs(3600);

/// Passes over a table's append-path buckets per commit (see `commit_table`).
const APPEND_PASSES: usize = 2;

/// Most buckets a table sized by its rows grows to (4^6).
const MAX_SIZED_BUCKETS: u32 = 4096;

/// Merges one set of buckets and writes the result as new files of those buckets.
struct GroupWriter<'a> {
    sink: &'a ParquetSink,
    spec: &'a TableSpec,
    bcol: &'a str,
    n: u32,
    props: parquet::file::properties::WriterProperties,
    /// The session index proved that no key is upserted twice in this commit (see
    /// [`GroupWriter::merge_new`]).
    keys_distinct: bool,
    stats: TableCommitStats,
    written: Vec<FileEntry>,
    new_files: &'a mut Vec<Path>,
}

impl<'a> GroupWriter<'a> {
    /// Adds rows written to the table's session index (when it keeps one).
    fn record(&self, rows: &RecordBatch) {
        if let Some(ix) = self
            .sink
            .index
            .lock()
            .expect("session index lock")
            .get_mut(&self.spec.name)
        {
            ix.record(self.spec, self.bcol, rows);
        }
    }

    /// The rows `changes` give against no stored rows (the append path: no stored row of
    /// the buckets is affected), in parts. When the commit's upserted keys are proved
    /// distinct, these are the upserted batches themselves with their system columns, unless
    /// a delete of the commit removes one ([`merge_into_empty`] checks, and merges otherwise).
    fn merge_new(&self, changes: &[SinkChange]) -> Result<(Vec<RecordBatch>, TableCommitStats)> {
        Ok(merge_into_empty(self.spec, changes, self.keys_distinct)?)
    }

    /// Appends the rows `changes` give against no stored rows to `buckets`: one new file per
    /// bucket (another past `max_rows_per_file` rows), written part by part.
    async fn append(&mut self, buckets: &BTreeSet<u32>, changes: &[SinkChange]) -> Result<()> {
        let (parts, s) = self.merge_new(changes)?;
        self.stats.add(&s);
        let mut open = OpenFiles::new();
        for part in &parts {
            self.record(part);
            self.write_open(&mut open, buckets, part).await?;
        }
        self.finish_open(open).await
    }

    /// Starts a new data file of `bucket`: its name and writer.
    fn start_file(&mut self, bucket: u32, schema: SchemaRef) -> Result<(String, io::FileWriter)> {
        let name = layout::new_file_name(bucket);
        let path = self.sink.file_path(&self.spec.name, &name);
        self.new_files.push(path.clone());
        let w = io::FileWriter::create(&self.sink.dest.store, &path, schema, self.props.clone())?;
        Ok((name, w))
    }

    /// Completes a file from [`Self::start_file`] (durable when this returns) and records it.
    async fn finish_file(
        &mut self,
        bucket: u32,
        (name, w): (String, io::FileWriter),
    ) -> Result<()> {
        let rows = w.rows();
        let size = w.finish().await?;
        self.stats.bytes_written += size;
        self.stats.files_written += 1;
        self.written.push(FileEntry {
            name,
            bucket,
            size,
            rows,
            dv: None,
        });
        Ok(())
    }

    /// The bucket of each row of `batch`, each checked to be in `buckets`.
    fn buckets_in(&self, batch: &RecordBatch, buckets: &BTreeSet<u32>) -> Result<Vec<u32>> {
        let of = match batch.column_by_name(self.bcol) {
            Some(col) => buckets_of(col.as_ref(), self.n)?,
            None => vec![0; batch.num_rows()],
        };
        if let Some(b) = of.iter().find(|b| !buckets.contains(b)) {
            return Err(internal(format!(
                "table `{}`: row falls in bucket {b}, outside its group",
                self.spec.name
            )));
        }
        Ok(of)
    }

    /// The rows of the stored file `f`, batch by batch, aligned to `schema` (columns added
    /// since the file was written are NULL).
    async fn stored_batches(
        &self,
        f: &FileEntry,
        schema: &SchemaRef,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let deleted = self.sink.deleted_rows(&self.spec.name, f).await?;
        self.stored_batches_without(f, schema, deleted).await
    }

    /// [`Self::stored_batches`] without the rows at the positions in `deleted`.
    async fn stored_batches_without(
        &self,
        f: &FileEntry,
        schema: &SchemaRef,
        deleted: Option<RoaringTreemap>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let path = self.sink.file_path(&self.spec.name, &f.name);
        let store = &self.sink.dest.store;
        let batches = io::open_file(store, &path, f.size, None, Some(schema)).await?;
        let (schema, table) = (Arc::clone(schema), self.spec.name.clone());
        let mut first = 0;
        Ok(batches
            .map(move |b| {
                let b = b.map_err(|e| ParquetSinkError::parquet("reading", &path, e))?;
                let n = b.num_rows() as u64;
                let b = without_deleted(b, deleted.as_ref(), first)?;
                first += n;
                Ok(align(&b, &schema, &table)?)
            })
            .try_filter(|b| futures::future::ready(b.num_rows() > 0))
            .boxed())
    }

    /// Compacts `bucket`, which no change affects: the changes merged into an empty table,
    /// then the rows of `files`, go into one new file. Exact for the fast path's reason (their
    /// keys are disjoint). Stored row groups are spliced in as encoded
    /// ([`io::FileWriter::splice`]; small ones are re-encoded together), or, for a file of an
    /// older schema, copied batch by batch; either way it holds one row group at a time, not
    /// the bucket.
    async fn compact(
        &mut self,
        bucket: u32,
        files: &[FileEntry],
        changes: &[SinkChange],
    ) -> Result<()> {
        let (new, s) = self.merge_new(changes)?;
        self.stats.add(&s);
        let only = BTreeSet::from([bucket]);
        let schema = self.spec.arrow_schema();
        let mut file = self.start_file(bucket, Arc::clone(&schema))?;
        for part in &new {
            self.record(part);
            self.buckets_in(part, &only)?;
            file.1.write(part).await?;
        }
        drop(new);
        for f in files {
            // Row groups are copied as encoded when the file has the table's current schema
            // (their rows were checked to be in this bucket when they were written).
            let path = self.sink.file_path(&self.spec.name, &f.name);
            if f.dv.is_none() && file.1.splice(&self.sink.dest.store, &path, f.size).await? {
                continue;
            }
            let mut batches = self.stored_batches(f, &schema).await?;
            while let Some(batch) = batches.try_next().await? {
                self.buckets_in(&batch, &only)?;
                file.1.write(&batch).await?;
            }
        }
        self.finish_file(bucket, file).await
    }

    /// Delta mode: merges `changes` into the buckets `buckets` (a group with an affected row)
    /// without rewriting their files. The affected rows of each file (`hits`, by position) are
    /// read, merged with the changes chunk by chunk (as [`ChunkedMerge`] would merge them with
    /// the whole group: unaffected rows are exactly those no change alters) and written, with
    /// the rows of new keys, to new files; their old positions join the files' deletion vectors
    /// (pushed to `deletions`). A file whose deleted share reaches `max_deleted_share`, or
    /// the smallest files of a bucket about to exceed `max_files_per_bucket`, are folded:
    /// their remaining live rows are copied into the new files and they go. Returns the
    /// folded files' names.
    async fn patch(
        &mut self,
        buckets: &BTreeSet<u32>,
        files: &[FileEntry],
        hits: &FxHashMap<String, Hit>,
        changes: &[SinkChange],
        deletions: &mut Vec<(String, RoaringTreemap)>,
    ) -> Result<Vec<String>> {
        let spec = self.spec;
        let schema = spec.arrow_schema();
        // 1. Each touched file's deleted rows once the affected ones are added (known from
        //    the probe, which read the file's vector already).
        let mut deleted: FxHashMap<&str, RoaringTreemap> = files
            .iter()
            .filter_map(|f| Some((f.name.as_str(), hits.get(&f.name)?.deleted.clone())))
            .collect();
        // 2. Which files to fold.
        let share = self.sink.config.max_deleted_share;
        let dead = |f: &FileEntry| {
            deleted
                .get(f.name.as_str())
                .map_or_else(|| f.rows - f.live_rows(), RoaringTreemap::len)
        };
        let mut fold: BTreeSet<&str> = files
            .iter()
            .filter(|f| dead(f) as f64 >= share * f.rows as f64)
            .map(|f| f.name.as_str())
            .collect();
        let max = self.sink.config.max_files_per_bucket.max(1);
        for b in buckets {
            let mut kept: Vec<&FileEntry> = files
                .iter()
                .filter(|f| f.bucket == *b && !fold.contains(f.name.as_str()))
                .collect();
            // The new file of this commit comes on top of the kept ones.
            if kept.len() < max {
                continue;
            }
            kept.sort_by_key(|f| (f.rows - dead(f), f.name.as_str()));
            for f in &kept[..kept.len() + 1 - max] {
                fold.insert(f.name.as_str());
            }
        }
        // 3. The affected rows, read by position and merged `rewrite_chunk_rows` at a time
        //    (memory holds one chunk even when a change touches most of a table), then the
        //    rows of new keys, then the folded files' remaining live rows.
        let mut merge = self.chunked(changes)?;
        let mut open = OpenFiles::new();
        for f in files {
            let Some(hit) = hits.get(&f.name) else {
                continue;
            };
            let path = self.sink.file_path(&spec.name, &f.name);
            let store = &self.sink.dest.store;
            let mut batches = io::open_rows(store, &path, f.size, &hit.rows, Some(&schema)).await?;
            while let Some(b) = batches
                .try_next()
                .await
                .map_err(|e| ParquetSinkError::parquet("reading", &path, e))?
            {
                let b = align(&b, &schema, &spec.name)?;
                self.feed(&mut merge, &mut open, buckets, &b).await?;
            }
        }
        self.finish_merge(merge, &mut open, buckets).await?;
        for f in files.iter().filter(|f| fold.contains(f.name.as_str())) {
            let gone = match deleted.remove(f.name.as_str()) {
                Some(d) => Some(d),
                None => self.sink.deleted_rows(&spec.name, f).await?,
            };
            let mut batches = self.stored_batches_without(f, &schema, gone).await?;
            while let Some(batch) = batches.try_next().await? {
                self.write_open(&mut open, buckets, &batch).await?;
            }
        }
        self.finish_open(open).await?;
        // 4. The files that stay get their new deletion vectors.
        for (name, rows) in deleted {
            if !fold.contains(name) {
                deletions.push((name.to_owned(), rows));
            }
        }
        Ok(fold.into_iter().map(str::to_owned).collect())
    }

    /// Copies the rows of `files` into new files of the buckets `targets` (after a split),
    /// batch by batch, starting another file of a bucket at `max_rows_per_file` rows.
    async fn redistribute(&mut self, files: &[FileEntry], targets: &BTreeSet<u32>) -> Result<()> {
        let schema = self.spec.arrow_schema();
        let mut open = OpenFiles::new();
        for f in files {
            let mut batches = self.stored_batches(f, &schema).await?;
            while let Some(batch) = batches.try_next().await? {
                self.write_open(&mut open, targets, &batch).await?;
            }
        }
        self.finish_open(open).await
    }

    /// Rewrites the buckets `buckets` (a group with an affected row, or a compaction of
    /// buckets joined by a moved key): the rows of `files` merged with `changes`, streamed.
    /// Stored rows are read and merged `rewrite_chunk_rows` rows at a time ([`ChunkedMerge`]: each chunk with the changes of its keys), then the rows of
    /// new keys; everything goes into new files of its bucket as it comes. So a rewrite holds
    /// one chunk of stored rows and the open files' row groups, not the group: the bucket
    /// size is no longer bounded by memory.
    async fn rewrite(
        &mut self,
        buckets: &BTreeSet<u32>,
        files: &[FileEntry],
        changes: &[SinkChange],
    ) -> Result<()> {
        let schema = self.spec.arrow_schema();
        let mut merge = self.chunked(changes)?;
        let mut open = OpenFiles::new();
        for f in files {
            let mut batches = self.stored_batches(f, &schema).await?;
            while let Some(batch) = batches.try_next().await? {
                self.feed(&mut merge, &mut open, buckets, &batch).await?;
            }
        }
        self.finish_merge(merge, &mut open, buckets).await?;
        self.finish_open(open).await
    }

    /// A streamed merge of `changes` with stored rows given batch by batch
    /// ([`Self::feed`]), `rewrite_chunk_rows` rows at a time.
    fn chunked<'c>(&self, changes: &'c [SinkChange]) -> Result<Chunked<'c>>
    where
        'a: 'c,
    {
        Ok(Chunked {
            merger: ChunkedMerge::new(self.spec, changes)?,
            chunk: Vec::new(),
            rows: 0,
            cap: self.sink.config.rewrite_chunk_rows.max(1),
        })
    }

    /// Adds stored rows (aligned to the table schema) to `merge`; each full chunk is merged
    /// and written to the open files of `buckets`.
    async fn feed(
        &mut self,
        merge: &mut Chunked<'_>,
        open: &mut OpenFiles,
        buckets: &BTreeSet<u32>,
        batch: &RecordBatch,
    ) -> Result<()> {
        let mut at = 0;
        while at < batch.num_rows() {
            let take = (merge.cap - merge.rows).min(batch.num_rows() - at);
            merge.chunk.push(batch.slice(at, take));
            merge.rows += take;
            at += take;
            if merge.rows == merge.cap {
                self.merge_chunk(merge, open, buckets).await?;
            }
        }
        Ok(())
    }

    /// Merges the last chunk, then writes the rows of the keys no chunk held.
    async fn finish_merge(
        &mut self,
        mut merge: Chunked<'_>,
        open: &mut OpenFiles,
        buckets: &BTreeSet<u32>,
    ) -> Result<()> {
        if !merge.chunk.is_empty() {
            self.merge_chunk(&mut merge, open, buckets).await?;
        }
        let (new, stats) = merge.merger.finish()?;
        self.record(&new);
        self.write_open(open, buckets, &new).await?;
        self.stats.add(&stats);
        Ok(())
    }

    /// One chunk of a streamed merge: merged, written to the open files, then emptied.
    async fn merge_chunk(
        &mut self,
        merge: &mut Chunked<'_>,
        open: &mut OpenFiles,
        buckets: &BTreeSet<u32>,
    ) -> Result<()> {
        let chunk = std::mem::take(&mut merge.chunk);
        merge.rows = 0;
        match merge.merger.merge_chunk(&chunk)? {
            Chunk::Unchanged => {
                for batch in &chunk {
                    self.write_open(open, buckets, batch).await?;
                }
            }
            Chunk::Merged(out) => {
                self.record(&out);
                self.write_open(open, buckets, &out).await?;
            }
        }
        Ok(())
    }

    /// Writes the rows of `batch` to the open file of their bucket (every row must fall in
    /// `targets`), starting a file where none is open or the open one has
    /// `max_rows_per_file` rows.
    async fn write_open(
        &mut self,
        open: &mut OpenFiles,
        targets: &BTreeSet<u32>,
        batch: &RecordBatch,
    ) -> Result<()> {
        let cap = self.sink.config.max_rows_per_file.max(1);
        let mut rows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (i, b) in self.buckets_in(batch, targets)?.into_iter().enumerate() {
            rows.entry(b).or_default().push(i as u32);
        }
        for (b, idx) in rows {
            let mut part = if idx.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(idx))
                    .map_err(sluice_core::Error::from)?
            };
            while part.num_rows() > 0 {
                let mut file = match open.remove(&b) {
                    Some(file) if (file.1.rows() as usize) < cap => file,
                    Some(full) => {
                        self.finish_file(b, full).await?;
                        self.start_file(b, part.schema())?
                    }
                    None => self.start_file(b, part.schema())?,
                };
                let room = cap - file.1.rows() as usize;
                let now = part.slice(0, room.min(part.num_rows()));
                part = part.slice(now.num_rows(), part.num_rows() - now.num_rows());
                file.1.write(&now).await?;
                open.insert(b, file);
            }
        }
        Ok(())
    }

    /// Completes every file of [`Self::write_open`].
    async fn finish_open(&mut self, open: OpenFiles) -> Result<()> {
        for (b, file) in open {
            self.finish_file(b, file).await?;
        }
        Ok(())
    }
}

/// Delta mode: what the probe found in one stored file.
struct Hit {
    /// Positions of the affected rows.
    rows: RoaringTreemap,
    /// The file's deleted rows once the affected ones are added.
    deleted: RoaringTreemap,
}

/// A streamed merge in progress (see [`GroupWriter::feed`]): the merger and the chunk of
/// stored rows being gathered.
struct Chunked<'c> {
    merger: ChunkedMerge<'c>,
    chunk: Vec<RecordBatch>,
    rows: usize,
    cap: usize,
}

/// `batch` without the rows whose positions are in `deleted`; row `i` of the batch is
/// position `first + i` of its file.
fn without_deleted(
    batch: RecordBatch,
    deleted: Option<&RoaringTreemap>,
    first: u64,
) -> Result<RecordBatch> {
    match deleted.and_then(|d| dv::live_mask(d, first, batch.num_rows())) {
        None => Ok(batch),
        Some(mask) => Ok(filter_record_batch(&batch, &mask).map_err(sluice_core::Error::from)?),
    }
}

/// The deletion vector files the given data files refer to.
fn dv_files(files: &[FileEntry]) -> HashSet<String> {
    files
        .iter()
        .filter_map(|f| f.dv.as_ref())
        .filter_map(|d| d.file_name().ok())
        .collect()
}

/// The file being written for each bucket (its name and writer), see
/// [`GroupWriter::write_open`].
type OpenFiles = BTreeMap<u32, (String, io::FileWriter)>;

#[async_trait]
impl Sink for ParquetSink {
    fn secret_store(&self) -> Option<Arc<dyn sluice_core::SecretStore>> {
        Some(Arc::new(crate::secrets::DestinationSecrets::new(
            self.dest.clone(),
        )))
    }

    async fn read_state(&self) -> sluice_core::Result<Option<State>> {
        match manifest::latest(self.dest.store.as_ref(), &self.dest.root).await? {
            Some(m) => m.state(),
            None => Ok(None),
        }
    }

    async fn open(&mut self, tables: &[TableSpec]) -> sluice_core::Result<Option<State>> {
        if self.lease.is_some() {
            return Err(sluice_core::Error::internal(
                "the parquet sink is already open",
            ));
        }
        store_check::require_conditional_writes(
            self.dest.store.as_ref(),
            &self.dest.root,
            &self.dest.url,
        )
        .await?;
        let ttl = Duration::from_secs(self.config.lease_ttl_secs);
        let lease = LeaseKeeper::acquire(
            Arc::clone(&self.dest.store),
            self.lease_path(),
            self.dest.url.clone(),
            &self.session,
            ttl,
        )
        .await?;
        self.lease = Some(lease);
        self.pending.clear();
        match self.open_inner(tables).await {
            Ok(state) => Ok(state),
            Err(e) => {
                if let Err(release) = self.release().await {
                    tracing::warn!(error = %release, "cannot release the lease after a failed open");
                }
                Err(e.into())
            }
        }
    }

    async fn update_table(&mut self, spec: &TableSpec) -> sluice_core::Result<()> {
        if let Some(entry) = self
            .manifest
            .as_ref()
            .and_then(|m| m.tables.get(&spec.name))
        {
            entry.check(spec)?;
        }
        self.specs.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn write(&mut self, change: SinkChange) -> sluice_core::Result<()> {
        if self.lease.is_none() {
            return Err(sluice_core::Error::internal(
                "write on a parquet sink that is not open",
            ));
        }
        if !self.specs.contains_key(change.change.table()) {
            return Err(sluice_core::Error::internal(format!(
                "write to undeclared table `{}`",
                change.change.table()
            )));
        }
        self.pending.push(change);
        Ok(())
    }

    async fn commit(&mut self, state: &State) -> sluice_core::Result<CommitReport> {
        Ok(self.commit_inner(state).await?)
    }

    async fn abort(&mut self) -> sluice_core::Result<()> {
        self.pending.clear();
        Ok(self.release().await?)
    }

    async fn close(&mut self) -> sluice_core::Result<()> {
        let dropped = std::mem::take(&mut self.pending).len();
        self.release().await?;
        if dropped > 0 {
            return Err(sluice_core::Error::internal(format!(
                "close with {dropped} uncommitted changes (they were dropped)"
            )));
        }
        Ok(())
    }

    async fn scan(&self, table: &TableSpec) -> sluice_core::Result<Vec<RecordBatch>> {
        let Some(m) = manifest::latest(self.dest.store.as_ref(), &self.dest.root).await? else {
            return Ok(Vec::new());
        };
        let Some(entry) = m.tables.get(&table.name) else {
            return Ok(Vec::new());
        };
        entry.check(table)?;
        let schema = table.arrow_schema();
        let batches = self
            .read_files(&table.name, entry.files.clone(), None, Some(&schema))
            .await?;
        batches
            .iter()
            .map(|b| align(b, &schema, &table.name))
            .collect()
    }
}
