//! Arrow batches as JSON rows, the common currency of ground-truth comparisons.

use sluice_core::arrow::array::{Array, AsArray};
use sluice_core::arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use sluice_core::arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;

/// One row: column name → JSON value. Strings, booleans, i64, f64; timestamps as i64
/// microseconds since the epoch (UTC); NULL as `null`.
pub type Row = BTreeMap<String, serde_json::Value>;

/// The rows of `batch`.
pub fn batch_rows(batch: &RecordBatch) -> Vec<Row> {
    let schema = batch.schema();
    let mut rows = vec![Row::new(); batch.num_rows()];
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        for (r, row) in rows.iter_mut().enumerate() {
            let v = if col.is_null(r) {
                serde_json::Value::Null
            } else {
                match field.data_type() {
                    DataType::Utf8 => col.as_string::<i32>().value(r).into(),
                    DataType::Boolean => col.as_boolean().value(r).into(),
                    DataType::Int64 => col.as_primitive::<Int64Type>().value(r).into(),
                    DataType::Float64 => col.as_primitive::<Float64Type>().value(r).into(),
                    DataType::Timestamp(_, _) => col
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(r)
                        .into(),
                    other => panic!("unexpected column type {other} in {}", field.name()),
                }
            };
            row.insert(field.name().clone(), v);
        }
    }
    rows
}

/// Rows indexed by the values of `key` columns joined with `|`; panics on a duplicate key
/// (a destination must hold one row per key).
pub fn rows_by_key(rows: &[Row], key: &[&str]) -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    for row in rows {
        let k = key
            .iter()
            .map(|c| match row.get(*c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "∅".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("|");
        if out.insert(k.clone(), row.clone()).is_some() {
            panic!("duplicate key {k}");
        }
    }
    out
}
