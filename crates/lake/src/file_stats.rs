//! [`FileStats`]: per-column bounds and null counts of a data file, taken from the Parquet
//! footer the writer just produced (no extra pass over the rows), so that a format can give
//! readers what they need to skip files by value (Delta's `minValues`/`maxValues`/
//! `nullCount`).

use arrow::datatypes::{DataType, Schema};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest text bound kept (in characters), as Delta writers do (`dataSkippingStringPrefixLength`,
/// 32): a longer minimum is cut to this prefix (still a lower bound); a longer maximum is
/// left out (a prefix would not be an upper bound).
pub const MAX_TEXT_BOUND: usize = 32;

/// The statistics of one data file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStats {
    /// Per top-level column: its bounds and NULL count. A column is missing when a row group
    /// did not record statistics for it.
    pub columns: BTreeMap<String, ColumnStats>,
}

/// Bounds and NULL count of one column of a file. Bounds are JSON values: text as strings,
/// integers and timestamps (microseconds since the epoch, UTC) as integers, floats as
/// numbers, booleans as booleans; absent when every value is NULL or a bound is unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnStats {
    /// A value no larger than any non-NULL value of the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// A value no smaller than any non-NULL value of the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// NULL values in the column.
    pub nulls: u64,
}

/// One row group's bound of a column as a comparable value.
#[derive(Clone, PartialEq, PartialOrd)]
enum Bound {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Bound {
    fn json(self) -> Value {
        match self {
            Bound::Int(v) => Value::from(v),
            Bound::Float(v) => Value::from(v),
            Bound::Bool(v) => Value::from(v),
            Bound::Text(v) => Value::from(v),
        }
    }
}

fn bounds(s: &Statistics) -> Option<(Option<Bound>, Option<Bound>)> {
    Some(match s {
        Statistics::Boolean(v) => (
            v.min_opt().map(|x| Bound::Bool(*x)),
            v.max_opt().map(|x| Bound::Bool(*x)),
        ),
        Statistics::Int64(v) => (
            v.min_opt().map(|x| Bound::Int(*x)),
            v.max_opt().map(|x| Bound::Int(*x)),
        ),
        Statistics::Int32(v) => (
            v.min_opt().map(|x| Bound::Int(i64::from(*x))),
            v.max_opt().map(|x| Bound::Int(i64::from(*x))),
        ),
        Statistics::Double(v) => (
            v.min_opt()
                .filter(|x| x.is_finite())
                .map(|x| Bound::Float(*x)),
            v.max_opt()
                .filter(|x| x.is_finite())
                .map(|x| Bound::Float(*x)),
        ),
        Statistics::ByteArray(v) => {
            let text = |b: &parquet::data_type::ByteArray| {
                std::str::from_utf8(b.data()).ok().map(str::to_owned)
            };
            // A truncated maximum from the Parquet writer is still an upper bound (it rounds
            // up); a truncated minimum a lower bound.
            (
                v.min_opt().and_then(text).map(Bound::Text),
                v.max_opt().and_then(text).map(Bound::Text),
            )
        }
        _ => return None,
    })
}

/// The statistics of a file from its footer (`meta`), for the columns of `schema`.
pub(crate) fn file_stats(meta: &ParquetMetaData, schema: &Schema) -> FileStats {
    let mut columns = BTreeMap::new();
    let descr = meta.file_metadata().schema_descr();
    'column: for field in schema.fields() {
        let supported = matches!(
            field.data_type(),
            DataType::Utf8
                | DataType::Int64
                | DataType::Float64
                | DataType::Boolean
                | DataType::Timestamp(_, _)
        );
        if !supported {
            continue;
        }
        let Some(index) =
            (0..descr.num_columns()).find(|&i| descr.column(i).path().string() == *field.name())
        else {
            continue;
        };
        let (mut min, mut max, mut nulls): (Option<Bound>, Option<Bound>, u64) = (None, None, 0);
        let (mut min_known, mut max_known) = (true, true);
        for group in meta.row_groups() {
            let column = group.column(index);
            let Some(stats) = column.statistics() else {
                continue 'column;
            };
            let Some(n) = stats.null_count_opt() else {
                continue 'column;
            };
            nulls += n;
            let Some((lo, hi)) = bounds(stats) else {
                continue 'column;
            };
            let non_null = (group.num_rows() as u64).saturating_sub(n) > 0;
            match lo {
                Some(lo) if min.as_ref().is_none_or(|m| lo < *m) => min = Some(lo),
                Some(_) => {}
                None if non_null => min_known = false,
                None => {}
            }
            match hi {
                Some(hi) if max.as_ref().is_none_or(|m| hi > *m) => max = Some(hi),
                Some(_) => {}
                None if non_null => max_known = false,
                None => {}
            }
        }
        let min = min.filter(|_| min_known).map(|b| match b {
            Bound::Text(t) if t.chars().count() > MAX_TEXT_BOUND => {
                Bound::Text(t.chars().take(MAX_TEXT_BOUND).collect())
            }
            other => other,
        });
        let max = max
            .filter(|_| max_known)
            .filter(|b| !matches!(b, Bound::Text(t) if t.chars().count() > MAX_TEXT_BOUND));
        columns.insert(
            field.name().clone(),
            ColumnStats {
                min: min.map(Bound::json),
                max: max.map(Bound::json),
                nulls,
            },
        );
    }
    FileStats { columns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, TimeUnit};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    #[test]
    fn bounds_and_null_counts_span_row_groups() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("long", DataType::Utf8, true),
        ]));
        let long = "x".repeat(40);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    None,
                    Some("a"),
                    Some("c"),
                ])) as ArrayRef,
                Arc::new(Int64Array::from(vec![Some(5), Some(-2), None, None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(10), Some(7), Some(3_000_001), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some(long.as_str()),
                    None,
                    None,
                    Some("y"),
                ])),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props)).unwrap();
        w.write(&batch).unwrap();
        let meta = w.close().unwrap();
        assert_eq!(meta.num_row_groups(), 2);
        let s = file_stats(&meta, &schema);
        let c = |n: &str| s.columns[n].clone();
        assert_eq!(
            (c("id").min, c("id").max, c("id").nulls),
            (Some("a".into()), Some("c".into()), 1)
        );
        assert_eq!(
            (c("n").min, c("n").max, c("n").nulls),
            (Some((-2).into()), Some(5.into()), 2)
        );
        assert_eq!(
            (c("t").min, c("t").max),
            (Some(7.into()), Some(3_000_001.into()))
        );
        assert_eq!(c("long").min, Some(Value::from("x".repeat(MAX_TEXT_BOUND))));
        // "y" is the largest; a longer maximum is left out.
        assert_eq!(c("long").max, Some(Value::from("y")));
        assert_eq!(c("id").max, Some(Value::from("c")));
    }
}
