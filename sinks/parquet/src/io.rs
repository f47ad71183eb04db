//! Reading and writing Parquet data files through object_store.

use crate::error::{ParquetSinkError, Result};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
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

/// A data file being written: batches are encoded into row groups as they arrive, so a
/// writer holds at most one row group of rows, not the whole file.
pub(crate) struct FileWriter {
    writer: AsyncArrowWriter<BufWriter>,
    path: Path,
    rows: u64,
}

impl FileWriter {
    /// Starts a new object at `path` (nothing is visible until [`FileWriter::finish`]).
    pub(crate) fn create(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        schema: SchemaRef,
        props: WriterProperties,
    ) -> Result<FileWriter> {
        let sink = BufWriter::new(Arc::clone(store), path.clone());
        let writer = AsyncArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|e| ParquetSinkError::parquet("writing", path, e))?;
        Ok(FileWriter {
            writer,
            path: path.clone(),
            rows: 0,
        })
    }

    /// Rows written so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends `batch` (with the writer's schema).
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .await
            .map_err(|e| ParquetSinkError::parquet("writing", &self.path, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the footer and completes the object; returns its size in bytes. On error
    /// nothing became visible: a failed single PUT writes nothing, and an unfinished
    /// multipart upload is never listed (S3 lifecycle rules expire its parts).
    pub(crate) async fn finish(mut self) -> Result<u64> {
        self.writer
            .finish()
            .await
            .map_err(|e| ParquetSinkError::parquet("writing", &self.path, e))?;
        Ok(self.writer.bytes_written() as u64)
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
    let err = |e| ParquetSinkError::parquet("reading", path, e);
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
    let err = |e| ParquetSinkError::parquet("reading", path, e);
    let reader = ObjectReader {
        store: Arc::clone(store),
        path: path.clone(),
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(err)?;
    let file_schema = Arc::clone(builder.schema());
    let wanted: Vec<usize> = file_schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.is_none_or(|c| c.iter().any(|n| n == f.name())))
        .filter(|(_, f)| keep.is_none_or(|k| k.field_with_name(f.name()).is_ok()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    builder.with_projection(mask).build().map_err(err)
}

/// Fsyncs a local file and its folder (object_store's local put renames a staged file into
/// place, which is atomic but not durable across power loss on its own).
pub(crate) async fn fsync(path: std::path::PathBuf) -> Result<()> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::File::open(&path)?.sync_all()?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| ParquetSinkError::Manifest {
        path: shown.clone(),
        detail: format!("fsync task failed: {e}"),
    })?
    .map_err(|e| {
        ParquetSinkError::store(
            "syncing",
            &shown,
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        )
    })
}
