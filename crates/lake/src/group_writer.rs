//! [`GroupWriter`]: writes the new files of one group of buckets, by one of its strategies:
//! append (new rows only), compact (a bucket's smallest files spliced with new rows),
//! rewrite (stored rows merged with the changes, streamed), redistribute (a bucket split);
//! `patch` (deletion vectors) is in its own file.

use crate::error::{LakeError, Result};
use crate::layout::{self, buckets_of};
use crate::manifest::FileEntry;
use crate::parquet_files;
use crate::sink::{LakeSink, internal, without_deleted};
use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use roaring::RoaringTreemap;
use sluice_core::sink_support::{Chunk, ChunkedMerge, align, merge_into_empty};
use sluice_core::{SinkChange, TableCommitStats, TableSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Merges one set of buckets and writes the result as new files of those buckets.
pub(crate) struct GroupWriter<'a> {
    pub(crate) sink: &'a LakeSink,
    pub(crate) spec: &'a TableSpec,
    pub(crate) bcol: &'a str,
    pub(crate) n: u32,
    pub(crate) props: parquet::file::properties::WriterProperties,
    /// The written-keys index proved that no key is upserted twice in this commit (see
    /// [`GroupWriter::merge_new`]).
    pub(crate) keys_distinct: bool,
    pub(crate) stats: TableCommitStats,
    pub(crate) written: Vec<FileEntry>,
    pub(crate) new_files: &'a mut Vec<Path>,
}

impl<'a> GroupWriter<'a> {
    /// Adds rows written to the table's written-keys index (when it keeps one).
    pub(crate) fn record(&self, rows: &RecordBatch) {
        self.sink
            .written
            .lock()
            .expect("written-keys index lock")
            .record(self.spec, self.bcol, rows);
    }

    /// The rows `changes` give against no stored rows (the append path: no stored row of
    /// the buckets is affected), in parts. When the commit's upserted keys are proved
    /// distinct, these are the upserted batches themselves with their system columns, unless
    /// a delete of the commit removes one ([`merge_into_empty`] checks, and merges otherwise).
    pub(crate) fn merge_new(
        &self,
        changes: &[SinkChange],
    ) -> Result<(Vec<RecordBatch>, TableCommitStats)> {
        Ok(merge_into_empty(self.spec, changes, self.keys_distinct)?)
    }

    /// Appends the rows `changes` give against no stored rows to `buckets`: one new file per
    /// bucket (another past `max_rows_per_file` rows), written part by part.
    pub(crate) async fn append(
        &mut self,
        buckets: &BTreeSet<u32>,
        changes: &[SinkChange],
    ) -> Result<()> {
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
    pub(crate) fn start_file(
        &mut self,
        bucket: u32,
        schema: SchemaRef,
    ) -> Result<(String, parquet_files::FileWriter)> {
        let name = layout::new_file_name(bucket);
        let path = self.sink.file_path(&self.spec.name, &name);
        self.new_files.push(path.clone());
        let w = parquet_files::FileWriter::create(
            &self.sink.dest.store,
            &path,
            schema,
            self.props.clone(),
            self.sink.config.row_group_bytes,
            self.sink.format.embeds_arrow_schema(),
        )?;
        Ok((name, w))
    }

    /// Completes a file from [`Self::start_file`] (durable when this returns) and records it.
    pub(crate) async fn finish_file(
        &mut self,
        bucket: u32,
        (name, w): (String, parquet_files::FileWriter),
    ) -> Result<()> {
        let rows = w.rows();
        let (size, stats) = w.finish().await?;
        self.stats.bytes_written += size;
        self.stats.files_written += 1;
        self.written.push(FileEntry {
            name,
            bucket,
            size,
            rows,
            dv: None,
            stats: self.sink.format.records_file_stats().then_some(stats),
            delete_file: None,
        });
        Ok(())
    }

    /// The bucket of each row of `batch`, each checked to be in `buckets`.
    pub(crate) fn buckets_in(
        &self,
        batch: &RecordBatch,
        buckets: &BTreeSet<u32>,
    ) -> Result<Vec<u32>> {
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
    pub(crate) async fn stored_batches(
        &self,
        f: &FileEntry,
        schema: &SchemaRef,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let deleted = self.sink.deleted_rows(&self.spec.name, f).await?;
        self.stored_batches_without(f, schema, deleted).await
    }

    /// [`Self::stored_batches`] without the rows at the positions in `deleted`.
    pub(crate) async fn stored_batches_without(
        &self,
        f: &FileEntry,
        schema: &SchemaRef,
        deleted: Option<RoaringTreemap>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let path = self.sink.file_path(&self.spec.name, &f.name);
        let store = &self.sink.dest.store;
        let batches = parquet_files::open_file(store, &path, f.size, None, Some(schema)).await?;
        let (schema, table) = (Arc::clone(schema), self.spec.name.clone());
        let mut first = 0;
        Ok(batches
            .map(move |b| {
                let b = b.map_err(|e| LakeError::parquet("reading", &path, e))?;
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
    /// ([`parquet_files::FileWriter::splice`]), or, for a file of an older schema or with
    /// deleted rows, copied batch by batch; either way it holds one row group at a time, not
    /// the bucket.
    ///
    /// Small row groups (a commit's rows of one bucket) are merged, decoded and encoded again,
    /// only once the new rows and the small row groups of `files` add up to a row group that
    /// is no longer small; until then they are copied like the others. So a row is encoded
    /// again at most once on its way into a large row group, not at every compaction while
    /// its row group grows: when a first sync's commits bring a few thousand rows per bucket,
    /// compactions copy them until a merge makes a large row group of them.
    pub(crate) async fn compact(
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
        // Row groups are copied as encoded when the file has the table's current schema
        // (their rows were checked to be in this bucket when they were written).
        let store = &self.sink.dest.store;
        let mut footers = Vec::with_capacity(files.len());
        // The new rows and the small row groups of `files`: merged only if they make a
        // large row group.
        let mut small_rows: usize = new.iter().map(RecordBatch::num_rows).sum();
        let mut small_bytes = 0;
        let parquet_schema = file.1.parquet_schema();
        for f in files {
            let path = self.sink.file_path(&self.spec.name, &f.name);
            let footer = match f.dv {
                None => {
                    parquet_files::FileWriter::spliceable(store, &path, f.size, &parquet_schema)
                        .await?
                }
                Some(_) => None,
            };
            for g in footer.iter().flat_map(|m| m.row_groups()) {
                if file.1.is_small(g) {
                    small_rows += g.num_rows() as usize;
                    small_bytes += g.compressed_size().max(0) as usize;
                }
            }
            footers.push((path, footer));
        }
        let merge_small = file.1.is_large(small_rows, small_bytes);
        for part in &new {
            self.record(part);
            self.buckets_in(part, &only)?;
            file.1.write(part).await?;
        }
        drop(new);
        for (f, (path, footer)) in files.iter().zip(footers) {
            if let Some(meta) = footer {
                file.1.splice(store, &path, meta, merge_small).await?;
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

    /// Copies the rows of `files` into new files of the buckets `targets` (after a split),
    /// batch by batch, starting another file of a bucket at `max_rows_per_file` rows.
    pub(crate) async fn redistribute(
        &mut self,
        files: &[FileEntry],
        targets: &BTreeSet<u32>,
    ) -> Result<()> {
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
    pub(crate) async fn rewrite(
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
    pub(crate) fn chunked<'c>(&self, changes: &'c [SinkChange]) -> Result<Chunked<'c>>
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
    pub(crate) async fn feed(
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
    pub(crate) async fn finish_merge(
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
    pub(crate) async fn merge_chunk(
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
    pub(crate) async fn write_open(
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
    pub(crate) async fn finish_open(&mut self, open: OpenFiles) -> Result<()> {
        for (b, file) in open {
            self.finish_file(b, file).await?;
        }
        Ok(())
    }
}

/// A streamed merge in progress (see [`GroupWriter::feed`]): the merger and the chunk of
/// stored rows being gathered.
pub(crate) struct Chunked<'c> {
    merger: ChunkedMerge<'c>,
    chunk: Vec<RecordBatch>,
    rows: usize,
    cap: usize,
}

/// The file being written for each bucket (its name and writer), see
/// [`GroupWriter::write_open`].
pub(crate) type OpenFiles = BTreeMap<u32, (String, parquet_files::FileWriter)>;
