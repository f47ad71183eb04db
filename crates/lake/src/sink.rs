//! [`LakeSink`]: the [`Sink`] implementation every lake format shares. This file holds the
//! sink's state, its [`Sink`] methods and reads; opening and recovery are in `open`, the
//! commit in `commit` (the manifest and what the format publishes) and `table_commit` (one
//! table's new files), the file strategies in `group_writer` and `patch`.

use crate::config::{Destination, LakeConfig};
use crate::deletion_vector;
use crate::error::{LakeError, Result};
use crate::format::TableFormat;
use crate::layout;
use crate::lease::LeaseKeeper;
use crate::manifest::{self, FileEntry, Manifest};
use crate::parquet_files;
use crate::store_check;
use crate::written_keys::WrittenIndex;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use roaring::RoaringTreemap;
use sluice_core::sink_support::align;
use sluice_core::{CommitReport, Sink, SinkChange, State, TableSpec, async_trait};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// A lake of Parquet tables on local disk or S3, in one table format. See the crate docs for
/// the layout and commit protocol.
pub struct LakeSink {
    pub(crate) dest: Destination,
    pub(crate) config: LakeConfig,
    /// What the table format adds (its log, how it records deleted rows).
    pub(crate) format: Arc<dyn TableFormat>,
    /// This run's id as the lease holder.
    pub(crate) holder_id: String,
    pub(crate) lease: Option<LeaseKeeper>,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) specs: BTreeMap<String, TableSpec>,
    pub(crate) pending: Vec<SinkChange>,
    /// Keys this run wrote to tables that started empty (see `written_keys`).
    pub(crate) written: std::sync::Mutex<WrittenIndex>,
    /// Tables whose format log lacks the version the live manifest records.
    pub(crate) unpublished: BTreeSet<String>,
    /// Files superseded by commits whose log versions are not published yet (the format's
    /// readers still read them), deleted once they are.
    pub(crate) superseded_unpublished: Vec<Path>,
}

impl std::fmt::Debug for LakeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSink")
            .field("dest", &self.dest)
            .field("config", &self.config)
            .field("session", &self.holder_id)
            .field("open", &self.lease.is_some())
            .field("pending", &self.pending.len())
            .finish()
    }
}

pub(crate) fn internal(m: impl Into<String>) -> LakeError {
    LakeError::Core(sluice_core::Error::internal(m))
}

impl LakeSink {
    /// A sink for `config` (no I/O until `open`, `read_state` or `scan`).
    pub fn new(config: LakeConfig, format: Arc<dyn TableFormat>) -> Result<LakeSink> {
        config.validate()?;
        let dest = Destination::from_config(&config)?;
        Ok(Self::with_destination(dest, config, format))
    }

    /// A sink on an already resolved destination (for example a store wrapped to count or
    /// inject failures in tests). `config.dest` is ignored.
    pub fn with_destination(
        dest: Destination,
        config: LakeConfig,
        format: Arc<dyn TableFormat>,
    ) -> LakeSink {
        LakeSink {
            dest,
            config,
            format,
            holder_id: uuid::Uuid::new_v4().to_string(),
            lease: None,
            manifest: None,
            specs: BTreeMap::new(),
            pending: Vec::new(),
            written: std::sync::Mutex::default(),
            unpublished: BTreeSet::new(),
            superseded_unpublished: Vec::new(),
        }
    }

    /// The rows of the stored file `f` of `table` that are no longer live (Delta mode).
    pub(crate) async fn deleted_rows(
        &self,
        table: &str,
        f: &FileEntry,
    ) -> Result<Option<RoaringTreemap>> {
        match &f.dv {
            None => Ok(None),
            Some(d) => Ok(Some(
                deletion_vector::read(
                    &self.dest.store,
                    &layout::table_dir(&self.dest.root, table),
                    d,
                )
                .await?,
            )),
        }
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

    /// Every object of `table` the committed manifest refers to: its live data files, their
    /// deletion vector files and the superseded files kept for their retention (a format's
    /// log folder, such as `_delta_log`, aside).
    pub async fn live_objects(&self, table: &str) -> sluice_core::Result<Vec<String>> {
        let m = manifest::latest(self.dest.store.as_ref(), &self.dest.root).await?;
        let Some(entry) = m.and_then(|m| m.tables.get(table).cloned()) else {
            return Ok(Vec::new());
        };
        let names = entry
            .files
            .iter()
            .map(|f| f.name.clone())
            .chain(with_companions(
                self.format.as_ref(),
                &dv_files(&entry.files),
            ))
            .chain(entry.retired.iter().map(|r| r.name.clone()));
        Ok(names
            .map(|n| self.file_path(table, &n).to_string())
            .collect())
    }

    pub(crate) fn lease_path(&self) -> Path {
        layout::lease_path(&self.dest.root)
    }

    pub(crate) fn file_path(&self, table: &str, name: &str) -> Path {
        layout::table_dir(&self.dest.root, table).join(name)
    }

    pub(crate) async fn release(&mut self) -> Result<()> {
        if let Some(lease) = self.lease.take() {
            lease.release().await?;
        }
        Ok(())
    }

    /// Reads the given files of `table` (only declared columns when `keep` is set).
    pub(crate) async fn read_files(
        &self,
        table: &str,
        files: Vec<FileEntry>,
        columns: Option<&[String]>,
        keep: Option<&arrow::datatypes::SchemaRef>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for f in files {
            let mut batches = self.live_batches(table, &f, columns, keep).await?;
            while let Some(b) = batches.try_next().await? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// The live rows of the stored file `f` of `table` (its deleted rows dropped), batch by
    /// batch: only `columns` when given, only declared columns when `keep` is set.
    pub(crate) async fn live_batches(
        &self,
        table: &str,
        f: &FileEntry,
        columns: Option<&[String]>,
        keep: Option<&arrow::datatypes::SchemaRef>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let path = self.file_path(table, &f.name);
        let deleted = self.deleted_rows(table, f).await?;
        let batches =
            parquet_files::open_file(&self.dest.store, &path, f.size, columns, keep).await?;
        let mut first = 0;
        Ok(batches
            .map(move |b| {
                let b = b.map_err(|e| LakeError::parquet("reading", &path, e))?;
                let n = b.num_rows() as u64;
                let b = without_deleted(b, deleted.as_ref(), first)?;
                first += n;
                Ok(b)
            })
            .boxed())
    }
}

/// `batch` without the rows whose positions are in `deleted`; row `i` of the batch is
/// position `first + i` of its file.
pub(crate) fn without_deleted(
    batch: RecordBatch,
    deleted: Option<&RoaringTreemap>,
    first: u64,
) -> Result<RecordBatch> {
    match deleted.and_then(|d| deletion_vector::live_mask(d, first, batch.num_rows())) {
        None => Ok(batch),
        Some(mask) => Ok(filter_record_batch(&batch, &mask).map_err(sluice_core::Error::from)?),
    }
}

/// The deletion vector files the given data files refer to.
pub(crate) fn dv_files(files: &[FileEntry]) -> HashSet<String> {
    files
        .iter()
        .filter_map(|f| f.dv.as_ref())
        .filter_map(|d| d.file_name().ok())
        .collect()
}

/// The given vector files and, when the format derives a file from each (see
/// [`TableFormat::dv_companion_extension`]), those files too.
pub(crate) fn with_companions<'a>(
    format: &dyn TableFormat,
    dv_files: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let ext = format.dv_companion_extension();
    dv_files
        .into_iter()
        .flat_map(|n| {
            let companion = ext.map(|e| deletion_vector::companion_name(n, e));
            std::iter::once(n.clone()).chain(companion)
        })
        .collect()
}

#[async_trait]
impl Sink for LakeSink {
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
            &self.holder_id,
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
