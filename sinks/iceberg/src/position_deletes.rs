//! Position-delete files (Iceberg format 2): the rows a commit deleted from data files, as
//! Parquet rows `(file_path, pos)` sorted by path then position, with the field ids the
//! specification reserves for them. The lake engine writes one per table and commit, beside
//! the deletion vector file of the same rows (see
//! [`TableFormat::encode_deleted_rows`](sluice_lake::TableFormat::encode_deleted_rows)).

use arrow::array::{ArrayBuilder, ArrayRef, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sluice_lake::{LakeError, Result, RoaringTreemap};
use std::collections::HashMap;
use std::sync::Arc;

/// Field id of `file_path` in a position-delete file (reserved by the specification).
const FILE_PATH_ID: i32 = 2_147_483_546;
/// Field id of `pos` in a position-delete file (reserved by the specification).
const POS_ID: i32 = 2_147_483_545;
/// Rows per written batch.
const BATCH_ROWS: usize = 64 * 1024;

fn field(name: &str, ty: DataType, id: i32) -> Field {
    Field::new(name, ty, false).with_metadata(HashMap::from([(
        PARQUET_FIELD_ID_META_KEY.to_owned(),
        id.to_string(),
    )]))
}

/// The bytes of the position-delete file of `deleted` (data file names in the table folder
/// `location`, as readers address it, and their deleted row positions).
pub(crate) fn encode(location: &str, deleted: &[(String, RoaringTreemap)]) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![
        field("file_path", DataType::Utf8, FILE_PATH_ID),
        field("pos", DataType::Int64, POS_ID),
    ]));
    // No column statistics: readers apply every row, and the bounds of `file_path` (long
    // paths, twice per column chunk and page) would be half of a small file.
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(concat!("sluice ", env!("CARGO_PKG_VERSION")).to_owned())
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let fail = |e: parquet::errors::ParquetError| {
        LakeError::Config(format!("writing a position-delete file: {e}"))
    };
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new_with_options(&mut out, Arc::clone(&schema), options).map_err(fail)?;
    let mut order: Vec<&(String, RoaringTreemap)> = deleted.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut paths = StringBuilder::new();
    let mut positions = Int64Builder::new();
    let mut flush = |paths: &mut StringBuilder, positions: &mut Int64Builder| -> Result<()> {
        let columns: Vec<ArrayRef> = vec![Arc::new(paths.finish()), Arc::new(positions.finish())];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
            .map_err(|e| LakeError::Config(format!("a position-delete batch: {e}")))?;
        writer.write(&batch).map_err(fail)
    };
    for (name, rows) in order {
        let path = format!("{location}/{name}");
        for pos in rows.iter() {
            paths.append_value(&path);
            positions.append_value(pos as i64);
            if positions.len() == BATCH_ROWS {
                flush(&mut paths, &mut positions)?;
            }
        }
    }
    if !positions.is_empty() {
        flush(&mut paths, &mut positions)?;
    }
    writer.close().map_err(fail)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn rows_are_sorted_by_path_then_position_with_the_reserved_field_ids() {
        let deleted = vec![
            ("part-b.parquet".to_owned(), [9u64, 2].into_iter().collect()),
            ("part-a.parquet".to_owned(), [5u64].into_iter().collect()),
        ];
        let bytes = encode("file:///l/opp", &deleted).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let fields = reader.parquet_schema().root_schema().get_fields().to_vec();
        let ids: Vec<i32> = fields.iter().map(|f| f.get_basic_info().id()).collect();
        assert_eq!(ids, vec![FILE_PATH_ID, POS_ID]);
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let mut got = Vec::new();
        for b in &batches {
            let p = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                got.push((p.value(i).to_owned(), n.value(i)));
            }
        }
        assert_eq!(
            got,
            vec![
                ("file:///l/opp/part-a.parquet".to_owned(), 5),
                ("file:///l/opp/part-b.parquet".to_owned(), 2),
                ("file:///l/opp/part-b.parquet".to_owned(), 9),
            ]
        );
    }
}
