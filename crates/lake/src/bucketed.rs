//! The staged changes of one table split by bucket, computed once per commit.
//!
//! A commit writes a table group by group (usually one bucket each). Each group needs the
//! changes restricted to its buckets. Filtering every change once per group cost
//! `groups × rows` bucket hashes and filter passes (16× the work for a 16-bucket table);
//! [`BucketedChanges`] hashes each row once and hands every group exactly its rows.
//!
//! Restriction rules (what [`sluice_core::sink_support::merge`] needs to give the same result on
//! a group as on the whole table, restricted to that group):
//! * `Upsert` rows go to the bucket of their bucket column (bucket 0 without one, as they
//!   are stored);
//! * `Delete` keys go to the bucket of their bucket column when they carry it; otherwise
//!   they are kept whole (a delete of a key the group lacks is a no-op);
//! * a `DeleteMissing` scoped `Where` on the bucket column keeps only the values of the
//!   group's buckets (rows of other values live in other buckets); any other scope is kept
//!   whole (it applies row by row);
//! * a change left with nothing to do in a group (no rows, no scope values) is dropped.

use crate::error::Result;
use crate::layout::{bucket_of, buckets_of};
use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use sluice_core::{Change, Scope, SinkChange};
use std::collections::BTreeSet;

/// How one change splits over the buckets.
enum Split {
    /// Rows of a batch by bucket: `of_row[i]` is row `i`'s bucket, `rows[b]` the row
    /// indices in bucket `b`.
    ByRow {
        of_row: Vec<u32>,
        rows: Vec<Vec<u32>>,
    },
    /// Rows all in bucket 0: upserts without a bucket column, or of a one-bucket table.
    AllInZero,
    /// Applies to every group as it is.
    Whole,
    /// A `Where` scope on the bucket column: `values[b]` are the values of bucket `b`.
    ByValue(Vec<Vec<String>>),
}

/// The changes of one table with the bucket of every row computed once.
pub(crate) struct BucketedChanges<'a> {
    changes: &'a [SinkChange],
    splits: Vec<Split>,
}

impl<'a> BucketedChanges<'a> {
    /// Splits `changes` over `n` buckets by column `bcol`.
    pub(crate) fn new(
        changes: &'a [SinkChange],
        bcol: &str,
        n: u32,
    ) -> Result<BucketedChanges<'a>> {
        let by_rows = |batch: &RecordBatch| -> Result<Option<Split>> {
            let Some(col) = batch.column_by_name(bcol) else {
                return Ok(None);
            };
            let of_row = buckets_of(col.as_ref(), n)?;
            let mut rows = vec![Vec::new(); n as usize];
            for (i, &b) in of_row.iter().enumerate() {
                rows[b as usize].push(i as u32);
            }
            Ok(Some(Split::ByRow { of_row, rows }))
        };
        let splits = changes
            .iter()
            .map(|c| {
                Ok(match &c.change {
                    // With one bucket every row is in bucket 0: no per-row split to build.
                    Change::Upsert { .. } if n == 1 => Split::AllInZero,
                    Change::Upsert { batch, .. } => by_rows(batch)?.unwrap_or(Split::AllInZero),
                    Change::Delete { keys, .. } => by_rows(keys)?.unwrap_or(Split::Whole),
                    Change::DeleteMissing {
                        scope: Scope::Where { column, values },
                        ..
                    } if column == bcol => {
                        let mut by_bucket = vec![Vec::new(); n as usize];
                        for v in values {
                            by_bucket[bucket_of(v, n) as usize].push(v.clone());
                        }
                        Split::ByValue(by_bucket)
                    }
                    Change::DeleteMissing { .. } => Split::Whole,
                })
            })
            .collect::<Result<_>>()?;
        Ok(BucketedChanges { changes, splits })
    }

    /// The bucket of each row of change `i` (upserted rows, or delete keys), when it carries
    /// the bucket column.
    pub(crate) fn row_buckets(&self, i: usize) -> Option<&[u32]> {
        match &self.splits[i] {
            Split::ByRow { of_row, .. } => Some(of_row),
            _ => None,
        }
    }

    /// The changes restricted to the buckets of `group`, in their original order.
    pub(crate) fn restrict(&self, group: &BTreeSet<u32>) -> Result<Vec<SinkChange>> {
        let mut out = Vec::with_capacity(self.changes.len());
        for (c, split) in self.changes.iter().zip(&self.splits) {
            let change = match (split, &c.change) {
                (Split::Whole, change) => Some(change.clone()),
                (Split::AllInZero, change) => group.contains(&0).then(|| change.clone()),
                (Split::ByRow { rows, .. }, Change::Upsert { table, batch }) => {
                    take_rows(batch, rows, group)?.map(|batch| Change::Upsert {
                        table: table.clone(),
                        batch,
                    })
                }
                (Split::ByRow { rows, .. }, Change::Delete { table, keys }) => {
                    take_rows(keys, rows, group)?.map(|keys| Change::Delete {
                        table: table.clone(),
                        keys,
                    })
                }
                (
                    Split::ByValue(by_bucket),
                    Change::DeleteMissing {
                        table,
                        scope: Scope::Where { column, .. },
                        keep,
                    },
                ) => {
                    let values: Vec<String> = group
                        .iter()
                        .flat_map(|b| by_bucket[*b as usize].iter().cloned())
                        .collect();
                    (!values.is_empty()).then(|| Change::DeleteMissing {
                        table: table.clone(),
                        scope: Scope::Where {
                            column: column.clone(),
                            values,
                        },
                        keep: keep.clone(),
                    })
                }
                (_, change) => Some(change.clone()),
            };
            if let Some(change) = change {
                out.push(SinkChange {
                    change,
                    synced_at_us: c.synced_at_us,
                });
            }
        }
        Ok(out)
    }
}

/// The rows of `batch` in the buckets of `group` (in their original order), or `None` when
/// there are none.
fn take_rows(
    batch: &RecordBatch,
    rows: &[Vec<u32>],
    group: &BTreeSet<u32>,
) -> Result<Option<RecordBatch>> {
    let count: usize = group.iter().map(|b| rows[*b as usize].len()).sum();
    if count == 0 {
        return Ok(None);
    }
    if count == batch.num_rows() {
        return Ok(Some(batch.clone()));
    }
    let mut idx: Vec<u32> = group
        .iter()
        .flat_map(|b| rows[*b as usize].iter().copied())
        .collect();
    idx.sort_unstable();
    Ok(Some(
        take_record_batch(batch, &UInt32Array::from(idx)).map_err(sluice_core::Error::from)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[&str], parents: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("parent_id", DataType::Utf8, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids.to_vec())),
            Arc::new(StringArray::from(parents.to_vec())),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn ids(b: &RecordBatch) -> Vec<String> {
        let c = b.column_by_name("id").unwrap();
        let s = c.as_any().downcast_ref::<StringArray>().unwrap();
        s.iter().map(|v| v.unwrap().to_owned()).collect()
    }

    fn sc(change: Change) -> SinkChange {
        SinkChange {
            change,
            synced_at_us: 1,
        }
    }

    #[test]
    fn every_row_lands_in_exactly_one_group_in_order() {
        let n = 4;
        let parents: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let ids_: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
        let b = batch(
            &ids_.iter().map(String::as_str).collect::<Vec<_>>(),
            &parents.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let changes = vec![
            sc(Change::Upsert {
                table: "t".into(),
                batch: b.clone(),
            }),
            sc(Change::DeleteMissing {
                table: "t".into(),
                scope: Scope::Where {
                    column: "parent_id".into(),
                    values: parents.clone(),
                },
                keep: b.clone(),
            }),
            sc(Change::DeleteMissing {
                table: "t".into(),
                scope: Scope::All,
                keep: b.clone(),
            }),
        ];
        let p = BucketedChanges::new(&changes, "parent_id", n).unwrap();
        let mut seen_rows = Vec::new();
        let mut seen_values = Vec::new();
        for bucket in 0..n {
            let group = BTreeSet::from([bucket]);
            let out = p.restrict(&group).unwrap();
            for c in &out {
                match &c.change {
                    Change::Upsert { batch, .. } => {
                        let got = ids(batch);
                        let mut sorted = got.clone();
                        sorted.sort_by_key(|s| s[1..].parse::<u32>().unwrap());
                        assert_eq!(got, sorted, "original order kept");
                        for (i, parent) in batch
                            .column_by_name("parent_id")
                            .unwrap()
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .unwrap()
                            .iter()
                            .enumerate()
                        {
                            assert_eq!(bucket_of(parent.unwrap(), n), bucket, "row {i}");
                        }
                        seen_rows.extend(got);
                    }
                    Change::DeleteMissing {
                        scope: Scope::Where { values, .. },
                        ..
                    } => {
                        assert!(values.iter().all(|v| bucket_of(v, n) == bucket));
                        seen_values.extend(values.iter().cloned());
                    }
                    Change::DeleteMissing {
                        scope: Scope::All, ..
                    } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(
                out.iter().any(|c| matches!(
                    &c.change,
                    Change::DeleteMissing {
                        scope: Scope::All,
                        ..
                    }
                )),
                "a whole-table scope reaches every group"
            );
        }
        seen_rows.sort();
        let mut all = ids_.clone();
        all.sort();
        assert_eq!(seen_rows, all);
        seen_values.sort();
        let mut all = parents.clone();
        all.sort();
        assert_eq!(seen_values, all);
    }

    #[test]
    fn changes_without_the_bucket_column() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let keys = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef],
        )
        .unwrap();
        let changes = vec![
            sc(Change::Upsert {
                table: "t".into(),
                batch: keys.clone(),
            }),
            sc(Change::Delete {
                table: "t".into(),
                keys: keys.clone(),
            }),
        ];
        let p = BucketedChanges::new(&changes, "parent_id", 8).unwrap();
        // Upserts without the column are stored in bucket 0; deletes reach every group.
        let zero = p.restrict(&BTreeSet::from([0, 5])).unwrap();
        assert_eq!(zero.len(), 2);
        let other = p.restrict(&BTreeSet::from([3])).unwrap();
        assert_eq!(other.len(), 1);
        assert!(matches!(other[0].change, Change::Delete { .. }));
    }
}
