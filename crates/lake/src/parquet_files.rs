//! Reading and writing Parquet data files through object_store.

use crate::error::{LakeError, Result};
use crate::file_stats::{FileStats, file_stats};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::arrow::{
    ArrowSchemaConverter, ParquetRecordBatchStreamBuilder, ProjectionMask,
    add_encoded_arrow_schema_to_metadata,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, TypePtr};
use roaring::RoaringTreemap;
use sluice_core::TableSpec;
use std::ops::Range;
use std::sync::Arc;

/// Largest dictionary page before a column chunk falls back to plain encoding (parquet's
/// default is 1 MiB: a column of mostly distinct text was interned value by value that far).
const DICTIONARY_PAGE_LIMIT: usize = 128 * 1024;

/// Writer settings: zstd, page-level statistics, bounded row groups. Timestamps keep their
/// Arrow type `Timestamp(µs, "UTC")`, which Parquet records as `isAdjustedToUTC = true`; the
/// Arrow schema is embedded (`ARROW:schema`).
///
/// A single-column primary key is written without dictionary encoding: its values are
/// (nearly) unique in a file, so the dictionary never pays off, and building it (hashing and
/// interning every value until the writer gives up) was the largest single cost of encoding.
pub(crate) fn writer_properties(spec: &TableSpec, row_group_rows: usize) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
        .set_created_by(format!("sluice-sink-parquet {}", env!("CARGO_PKG_VERSION")));
    if let [key] = spec.primary_key.as_slice() {
        props = props.set_column_dictionary_enabled(ColumnPath::from(key.as_str()), false);
    }
    props.build()
}

/// A data file being written: batches are encoded into row groups as they arrive (a writer
/// holds the encoded pages of one row group, not its rows), and whole row groups of stored
/// files can be spliced in as they are ([`FileWriter::splice`]: their encoded column chunks
/// copied byte for byte, no decoding or encoding).
///
/// Built on parquet's lower-level writer (`SerializedFileWriter` with Arrow column writers,
/// which is what `ArrowWriter` does inside) because `ArrowWriter` cannot take already
/// encoded row groups. The file is encoded into a memory buffer that is handed to the object
/// store after each row group, as `AsyncArrowWriter` does.
pub(crate) struct FileWriter {
    file: SerializedFileWriter<Shared>,
    buffer: Shared,
    columns: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    sink: BufWriter,
    /// The row group being encoded: one writer per column, and its rows so far.
    open: Option<(Vec<ArrowColumnWriter>, usize)>,
    row_group_rows: usize,
    /// The row group ends once its column writers hold this many bytes.
    row_group_bytes: usize,
    path: Path,
    rows: u64,
    bytes: u64,
}

/// The writer's output buffer, shared with the parquet writer that appends to it.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("parquet buffer poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

/// A stored row group with fewer rows than `row_group_rows / SPLICE_MIN_SHARE` (8,192 by
/// default) and fewer bytes than `row_group_bytes / SPLICE_MIN_SHARE` (1 MiB) is small: when a
/// compaction's small row groups add up to a large one, [`FileWriter::splice`] decodes them
/// into the row group being written, so that tiny row groups merge; larger ones are always
/// copied as they are (a row group of very wide rows that ended at `row_group_bytes` is never
/// encoded again). At 16, the row groups a first sync's commits write for the tables that
/// hold most rows (5,000–30,000 rows each at 100,000 opportunities, one bucket) are copied.
const SPLICE_MIN_SHARE: usize = 16;

/// Most rows [`FileWriter::write`] encodes between two checks of the row group's size.
const WRITE_SLICE_ROWS: usize = 4096;

impl FileWriter {
    /// Starts a new object at `path` (nothing is visible until [`FileWriter::finish`]). With
    /// `arrow_schema`, the Arrow schema travels in the footer (`ARROW:schema`), as Arrow's
    /// own writer adds it (see [`crate::TableFormat::embeds_arrow_schema`]). A row group ends
    /// at the row count of `props` or once it holds `row_group_bytes`, whichever comes first.
    pub(crate) fn create(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        schema: SchemaRef,
        props: WriterProperties,
        row_group_bytes: usize,
        arrow_schema: bool,
    ) -> Result<FileWriter> {
        let err = |e| LakeError::parquet("writing", path, e);
        let mut props = props;
        if arrow_schema {
            add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        }
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)
            .map_err(err)?;
        let row_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let buffer = Shared::default();
        let file = SerializedFileWriter::new(
            buffer.clone(),
            parquet_schema.root_schema_ptr(),
            Arc::new(props),
        )
        .map_err(err)?;
        let columns = ArrowRowGroupWriterFactory::new(&file, Arc::clone(&schema));
        Ok(FileWriter {
            file,
            buffer,
            columns,
            schema,
            sink: BufWriter::new(Arc::clone(store), path.clone()),
            open: None,
            row_group_rows,
            row_group_bytes,
            path: path.clone(),
            rows: 0,
            bytes: 0,
        })
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    fn err(&self, e: ParquetError) -> LakeError {
        LakeError::parquet("writing", &self.path, e)
    }

    /// Appends `batch` (with the writer's schema), in slices of at most [`WRITE_SLICE_ROWS`]
    /// rows and a quarter of `row_group_bytes`, so that a row group ends close to
    /// `row_group_bytes`.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // Rows per slice: at most a quarter of `row_group_bytes` of the batch's memory (an
        // upper bound for a sliced batch, whose buffers are counted whole).
        let row_bytes = batch.get_array_memory_size() / batch.num_rows().max(1);
        let slice_rows = (self.row_group_bytes / 4 / row_bytes.max(1)).clamp(1, WRITE_SLICE_ROWS);
        let mut at = 0;
        while at < batch.num_rows() {
            let (writers, rows) = match self.open.take() {
                Some(open) => open,
                None => {
                    let index = self.file.flushed_row_groups().len();
                    let writers = self
                        .columns
                        .create_column_writers(index)
                        .map_err(|e| self.err(e))?;
                    (writers, 0)
                }
            };
            let n = (self.row_group_rows - rows)
                .min(batch.num_rows() - at)
                .min(slice_rows);
            let part = batch.slice(at, n);
            let mut writers = writers;
            let mut leaf_writers = writers.iter_mut();
            for (field, column) in self.schema.fields().iter().zip(part.columns()) {
                for leaf in compute_leaves(field, column).map_err(|e| self.err(e))? {
                    let w = leaf_writers.next().ok_or_else(|| {
                        self.err(ParquetError::General(
                            "more leaves than column writers".into(),
                        ))
                    })?;
                    w.write(&leaf).map_err(|e| self.err(e))?;
                }
            }
            at += n;
            self.rows += n as u64;
            let held: usize = writers.iter().map(ArrowColumnWriter::memory_size).sum();
            self.open = Some((writers, rows + n));
            if rows + n >= self.row_group_rows || held >= self.row_group_bytes {
                self.close_row_group().await?;
            }
        }
        Ok(())
    }

    /// Ends the row group being encoded (if any) and hands its bytes to the object store.
    async fn close_row_group(&mut self) -> Result<()> {
        let Some((writers, _)) = self.open.take() else {
            return Ok(());
        };
        let path = self.path.clone();
        let err = |e| LakeError::parquet("writing", &path, e);
        let mut group = self.file.next_row_group().map_err(err)?;
        for w in writers {
            w.close()
                .and_then(|chunk| chunk.append_to_row_group(&mut group))
                .map_err(err)?;
        }
        group.close().map_err(err)?;
        self.drain().await
    }

    /// Moves the encoded bytes so far to the object store.
    async fn drain(&mut self) -> Result<()> {
        let bytes = self.buffer.take();
        if bytes.is_empty() {
            return Ok(());
        }
        self.bytes += bytes.len() as u64;
        self.sink
            .write(Bytes::from(bytes))
            .await
            .map_err(|e| LakeError::parquet("writing", &self.path, e))
    }

    /// The writer's Parquet schema (for [`Self::spliceable`]).
    pub(crate) fn parquet_schema(&self) -> TypePtr {
        self.file.schema_descr().root_schema_ptr()
    }

    /// The footer of the stored file `path` (`size` bytes) when its Parquet schema is
    /// `schema`, a writer's ([`Self::parquet_schema`]), so that its row groups can be spliced
    /// in ([`Self::splice`]); `None` when it differs (a column added since): the caller then
    /// copies the file's rows by decoding.
    pub(crate) async fn spliceable(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        size: u64,
        schema: &TypePtr,
    ) -> Result<Option<Arc<ParquetMetaData>>> {
        let mut reader = ObjectReader {
            store: Arc::clone(store),
            path: path.clone(),
            size,
        };
        let meta = ParquetMetaDataReader::new()
            .with_prefetch_hint(Some(64 * 1024))
            .with_page_index_policy(PageIndexPolicy::Optional)
            .load_and_finish(&mut reader, size)
            .await
            .map_err(|e| LakeError::parquet("reading", path, e))?;
        let same = meta.file_metadata().schema_descr().root_schema() == schema.as_ref();
        Ok(same.then(|| Arc::new(meta)))
    }

    /// Whether a row group of `rows` rows and `bytes` encoded bytes is large: a sixteenth of
    /// `row_group_rows` rows or of `row_group_bytes` bytes, or more.
    pub(crate) fn is_large(&self, rows: usize, bytes: usize) -> bool {
        rows >= (self.row_group_rows / SPLICE_MIN_SHARE).max(1)
            || bytes >= self.row_group_bytes / SPLICE_MIN_SHARE
    }

    /// Whether a stored row group is small ([`Self::is_large`]): [`Self::splice`] may merge
    /// it into the row group being written rather than copy it.
    pub(crate) fn is_small(&self, group: &RowGroupMetaData) -> bool {
        !self.is_large(
            group.num_rows() as usize,
            group.compressed_size().max(0) as usize,
        )
    }

    /// Appends every row of the stored file `path` (`meta` from [`Self::spliceable`]): each
    /// row group is copied as encoded (with its statistics and page index), except that with
    /// `merge_small`, small ones ([`Self::is_small`]) are decoded into the row group being
    /// written.
    pub(crate) async fn splice(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        meta: Arc<ParquetMetaData>,
        merge_small: bool,
    ) -> Result<()> {
        let rerr = |e| LakeError::parquet("reading", path, e);
        let dest = self.path.clone();
        // How to decode the file's small row groups, built once per file (and only if it
        // has one).
        let mut decoding: Option<ArrowReaderMetadata> = None;
        for (i, group) in meta.row_groups().iter().enumerate() {
            let span = group_span(group);
            let bytes = store
                .get_range(path, span.clone())
                .await
                .map_err(|e| LakeError::store("reading", path.to_string(), e))?;
            let chunk = Span {
                start: span.start,
                bytes,
            };
            if merge_small && self.is_small(group) {
                let reader_meta = match &decoding {
                    Some(m) => m.clone(),
                    None => {
                        let options =
                            ArrowReaderOptions::new().with_schema(Arc::clone(&self.schema));
                        let m = ArrowReaderMetadata::try_new(Arc::clone(&meta), options)
                            .map_err(rerr)?;
                        decoding.insert(m).clone()
                    }
                };
                let batches =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(chunk, reader_meta)
                        .with_row_groups(vec![i])
                        .build()
                        .map_err(rerr)?;
                for batch in batches {
                    let batch = batch.map_err(|e| rerr(ParquetError::from(e)))?;
                    self.write(&batch).await?;
                }
                continue;
            }
            let werr = |e| LakeError::parquet("writing", &dest, e);
            let mut out = self.file.next_row_group().map_err(werr)?;
            for (j, column) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: meta.column_index().and_then(|c| c.get(i)?.get(j).cloned()),
                    offset_index: meta.offset_index().and_then(|o| o.get(i)?.get(j).cloned()),
                };
                out.append_column(&chunk, close).map_err(werr)?;
            }
            out.close().map_err(werr)?;
            self.rows += group.num_rows() as u64;
            self.drain().await?;
        }
        Ok(())
    }

    /// Writes the footer and completes the object; returns its size in bytes and its
    /// statistics. On error
    /// nothing became visible: a failed single PUT writes nothing, and an unfinished
    /// multipart upload is never listed (S3 lifecycle rules expire its parts).
    pub(crate) async fn finish(mut self) -> Result<(u64, FileStats)> {
        self.close_row_group().await?;
        let meta = self.file.finish().map_err(|e| self.err(e))?;
        let stats = file_stats(&meta, &self.schema);
        self.drain().await?;
        self.sink
            .complete()
            .await
            .map_err(|e| LakeError::parquet("writing", &self.path, e))?;
        Ok((self.bytes, stats))
    }
}

/// The bytes of a row group's column chunks in its file (they are contiguous).
fn group_span(group: &RowGroupMetaData) -> Range<u64> {
    let chunks = group.columns().iter().map(|c| {
        let start = c
            .dictionary_page_offset()
            .unwrap_or_else(|| c.data_page_offset()) as u64;
        start..start + c.compressed_size() as u64
    });
    let start = chunks.clone().map(|r| r.start).min().unwrap_or(0);
    let end = chunks.map(|r| r.end).max().unwrap_or(start);
    start..end
}

/// A byte range of a stored file, read at the file's own offsets.
struct Span {
    start: u64,
    bytes: Bytes,
}

impl Length for Span {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for Span {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.get_bytes(start, self.bytes.len())?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start
            .checked_sub(self.start)
            .map(|f| f as usize)
            .filter(|f| *f <= self.bytes.len())
            .ok_or_else(|| ParquetError::General(format!("read at {start} outside the span")))?;
        let to = (from + length).min(self.bytes.len());
        Ok(self.bytes.slice(from..to))
    }
}

/// An [`AsyncFileReader`] over one object of an object store.
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Reads a data file of `size` bytes. With `columns`, only those columns present in the file
/// are read; without, every column. Columns the file has but `keep` does not are dropped.
pub(crate) async fn read_file(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    columns: Option<&[String]>,
    keep: Option<&SchemaRef>,
) -> Result<Vec<RecordBatch>> {
    let err = |e| LakeError::parquet("reading", path, e);
    let stream = open_file(store, path, size, columns, keep).await?;
    stream.try_collect().await.map_err(err)
}

/// Like [`read_file`], batch by batch (a row group's column chunks at a time in memory).
pub(crate) async fn open_file(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    columns: Option<&[String]>,
    keep: Option<&SchemaRef>,
) -> Result<ParquetRecordBatchStream<ObjectReader>> {
    let builder = stream_builder(store, path, size, ArrowReaderOptions::new()).await?;
    let mask = projection(&builder, columns, keep);
    builder
        .with_projection(mask)
        .build()
        .map_err(|e| LakeError::parquet("reading", path, e))
}

/// Like [`open_file`] (every column), only the rows at the positions in `rows`: pages
/// without any of them are skipped (page index).
pub(crate) async fn open_rows(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    rows: &RoaringTreemap,
    keep: Option<&SchemaRef>,
) -> Result<ParquetRecordBatchStream<ObjectReader>> {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder = stream_builder(store, path, size, options).await?;
    let total = builder.metadata().file_metadata().num_rows() as u64;
    let mask = projection(&builder, None, keep);
    // Runs of consecutive positions, as the selection's ranges.
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for p in rows.iter().take_while(|&p| p < total) {
        let p = p as usize;
        match ranges.last_mut() {
            Some(r) if r.end == p => r.end = p + 1,
            _ => ranges.push(p..p + 1),
        }
    }
    let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), total as usize);
    builder
        .with_projection(mask)
        .with_row_selection(selection)
        .build()
        .map_err(|e| LakeError::parquet("reading", path, e))
}

/// A stream reader of the data file `path` (footer read, nothing decoded yet).
async fn stream_builder(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
    options: ArrowReaderOptions,
) -> Result<ParquetRecordBatchStreamBuilder<ObjectReader>> {
    let reader = ObjectReader {
        store: Arc::clone(store),
        path: path.clone(),
        size,
    };
    ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
        .await
        .map_err(|e| LakeError::parquet("reading", path, e))
}

/// The file's columns that are in `columns` (all when `None`) and in `keep` (all when
/// `None`).
fn projection(
    builder: &ParquetRecordBatchStreamBuilder<ObjectReader>,
    columns: Option<&[String]>,
    keep: Option<&SchemaRef>,
) -> ProjectionMask {
    let wanted: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.is_none_or(|c| c.iter().any(|n| n == f.name())))
        .filter(|(_, f)| keep.is_none_or(|k| k.field_with_name(f.name()).is_ok()))
        .map(|(i, _)| i)
        .collect();
    ProjectionMask::roots(builder.parquet_schema(), wanted)
}

/// The whole content of the object `path`.
pub async fn get_all(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    let err = |e| LakeError::store("reading", path, e);
    store
        .get(path)
        .await
        .map_err(err)?
        .bytes()
        .await
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn rows(from: i64, to: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (from..to).map(|i| format!("k{i:05}")),
                )),
                Arc::new(Int64Array::from_iter(
                    (from..to).map(|i| (i % 7 != 0).then_some(i)),
                )),
            ],
        )
        .unwrap()
    }

    fn props(row_group_rows: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_data_page_row_count_limit(16)
            .set_write_batch_size(16)
            .build()
    }

    async fn write(store: &Arc<dyn ObjectStore>, name: &str, batches: &[RecordBatch]) -> u64 {
        let mut w = FileWriter::create(
            store,
            &Path::from(name),
            schema(),
            props(100),
            16 << 20,
            true,
        )
        .unwrap();
        for b in batches {
            w.write(b).await.unwrap();
        }
        w.finish().await.unwrap().0
    }

    /// The ids and values of `batches`, in order.
    fn values(batches: &[RecordBatch]) -> Vec<(String, Option<i64>)> {
        batches
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_string::<i32>().clone();
                let n = b.column(1).as_primitive::<Int64Type>().clone();
                (0..b.num_rows())
                    .map(move |r| (ids.value(r).to_owned(), n.is_valid(r).then(|| n.value(r))))
            })
            .collect()
    }

    /// Splices the stored file `name` into `w`; `false` (nothing written) when its schema
    /// is not the writer's.
    async fn splice(
        w: &mut FileWriter,
        store: &Arc<dyn ObjectStore>,
        name: &str,
        size: u64,
        merge_small: bool,
    ) -> bool {
        let path = Path::from(name);
        let schema = w.parquet_schema();
        match FileWriter::spliceable(store, &path, size, &schema)
            .await
            .unwrap()
        {
            Some(meta) => {
                w.splice(store, &path, meta, merge_small).await.unwrap();
                true
            }
            None => false,
        }
    }

    #[tokio::test]
    async fn small_row_groups_are_copied_when_not_merging() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // Row groups of 30 and 5 rows (below a sixteenth of 100 is 6): both copied.
        let b = write(&store, "b.parquet", &[rows(250, 280)]).await;
        let c = write(&store, "c.parquet", &[rows(280, 285)]).await;
        let out = Path::from("out.parquet");
        let mut w = FileWriter::create(&store, &out, schema(), props(100), 16 << 20, true).unwrap();
        w.write(&rows(285, 289)).await.unwrap();
        assert!(splice(&mut w, &store, "b.parquet", b, false).await);
        assert!(splice(&mut w, &store, "c.parquet", c, false).await);
        let size = w.finish().await.unwrap().0;
        // Copied in order; the new rows are their own row group, closed last.
        assert_eq!(row_group_rows_of(&store, &out, size).await, [30, 5, 4]);
        let mut want = values(&[rows(250, 289)]);
        let mut got = values(&read_file(&store, &out, size, None, None).await.unwrap());
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn splicing_copies_large_row_groups_and_merges_small_ones() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // 250 rows in row groups of 100, 100 and 50; 30; 5 (below a sixteenth of 100).
        let a = write(&store, "a.parquet", &[rows(0, 120), rows(120, 250)]).await;
        let b = write(&store, "b.parquet", &[rows(250, 280)]).await;
        let c = write(&store, "c.parquet", &[rows(280, 285)]).await;

        let out = Path::from("out.parquet");
        let mut w = FileWriter::create(&store, &out, schema(), props(100), 16 << 20, true).unwrap();
        w.write(&rows(285, 300)).await.unwrap();
        for (name, size) in [("a.parquet", a), ("b.parquet", b), ("c.parquet", c)] {
            assert!(splice(&mut w, &store, name, size, true).await);
        }
        assert_eq!(w.rows(), 300);
        let size = w.finish().await.unwrap().0;

        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .load_and_finish(
                &mut ObjectReader {
                    store: Arc::clone(&store),
                    path: out.clone(),
                    size,
                },
                size,
            )
            .await
            .unwrap();
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        // Copied: 100, 100, 50 and 30; the new rows and c's 5 were encoded together.
        assert_eq!(groups, [100, 100, 50, 30, 20]);
        assert_eq!(meta.offset_index().map(Vec::len), Some(5));

        let mut want = values(&[rows(0, 300)]);
        let mut got = values(&read_file(&store, &out, size, None, None).await.unwrap());
        want.sort();
        got.sort();
        assert_eq!(got, want);

        // Page-level reads (through the copied offset indexes) land on the right rows.
        let reader = ObjectReader {
            store: Arc::clone(&store),
            path: out.clone(),
            size,
        };
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let selection = RowSelection::from(vec![RowSelector::skip(137), RowSelector::select(40)]);
        let picked: Vec<RecordBatch> =
            ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
                .await
                .unwrap()
                .with_row_selection(selection)
                .build()
                .unwrap()
                .try_collect()
                .await
                .unwrap();
        assert_eq!(values(&picked), values(&[rows(137, 177)]));
    }

    /// Rows `from..to` with ids of about 2 KB that do not compress.
    fn wide_rows(from: i64, to: i64) -> RecordBatch {
        let id = |i: i64| {
            (0..128)
                .map(|j| format!("{:016x}", twox_hash::XxHash64::oneshot(j, &i.to_le_bytes())))
                .collect::<String>()
        };
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values((from..to).map(id))),
                Arc::new(Int64Array::from_iter_values(from..to)),
            ],
        )
        .unwrap()
    }

    async fn row_group_rows_of(store: &Arc<dyn ObjectStore>, path: &Path, size: u64) -> Vec<i64> {
        let meta = ParquetMetaDataReader::new()
            .load_and_finish(
                &mut ObjectReader {
                    store: Arc::clone(store),
                    path: path.clone(),
                    size,
                },
                size,
            )
            .await
            .unwrap();
        meta.row_groups().iter().map(|g| g.num_rows()).collect()
    }

    #[tokio::test]
    async fn row_groups_of_wide_rows_end_at_the_byte_limit_and_are_spliced_as_they_are() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let big = |rows| {
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(rows))
                .build()
        };
        // 3,000 rows of 2 KB (6 MB) with a 1 MiB limit and room for 100,000 rows per group.
        let path = Path::from("wide.parquet");
        let mut w =
            FileWriter::create(&store, &path, schema(), big(100_000), 1 << 20, true).unwrap();
        w.write(&wide_rows(0, 3_000)).await.unwrap();
        let size = w.finish().await.unwrap().0;
        let groups = row_group_rows_of(&store, &path, size).await;
        assert!(groups.len() >= 5, "{groups:?}");
        assert!(groups.iter().all(|&g| g <= 1_000), "{groups:?}");
        assert_eq!(groups.iter().sum::<i64>(), 3_000);

        // Fewer rows than a sixteenth of the row limit, but more bytes than a sixteenth of the
        // byte limit: copied, not merged into the row group being written.
        let out = Path::from("out.parquet");
        let mut w =
            FileWriter::create(&store, &out, schema(), big(100_000), 1 << 20, true).unwrap();
        assert!(splice(&mut w, &store, "wide.parquet", size, true).await);
        let out_size = w.finish().await.unwrap().0;
        assert_eq!(row_group_rows_of(&store, &out, out_size).await, groups);
        let mut want = values(&[wide_rows(0, 3_000)]);
        let mut got = values(&read_file(&store, &out, out_size, None, None).await.unwrap());
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_file_of_another_schema_is_not_spliced() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = write(&store, "a.parquet", &[rows(0, 50)]).await;
        let wider = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("extra", DataType::Int64, true),
        ]));
        let out = Path::from("out.parquet");
        let mut w = FileWriter::create(&store, &out, wider, props(100), 16 << 20, true).unwrap();
        assert!(!splice(&mut w, &store, "a.parquet", a, true).await);
        assert_eq!(w.rows(), 0);
    }
}
