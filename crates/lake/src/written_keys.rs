//! The written-keys index: for each table that was empty when this run first touched it, the
//! hashes of every primary key (and bucket-column value) the run has written to it.
//!
//! A first sync commits many times into tables that start empty. Without the index, every
//! commit proves that its staged changes touch no stored row by reading the key columns of
//! every stored file of the table, which makes a first sync quadratic. Every stored row of
//! such a table was written by this run, so the index answers the same question from memory:
//! when no staged key, deleted key or scoped parent value is in it, no stored row can be
//! affected and the commit appends without reading anything. Any hit (or a change the index
//! cannot decide) falls back to the exact check on the files, so a hash collision costs a
//! file read, never correctness. Tables that held rows before the run always use the files.
//!
//! The bucket-column values are kept once per column name for all tables ([`WrittenIndex`]):
//! the child tables of opportunities all hold the same opportunity ids, and a union of them
//! still proves that a value is in none (a value of another table is only a false "maybe").
//! Values written by a commit join the union when the next commit starts
//! ([`WrittenIndex::begin_commit`]): a commit's tables share its parents (a page of
//! opportunities), and the union must not hold them while the commit's other tables prove
//! that their stored rows lack them. Proofs are about stored rows, which are those of
//! earlier commits.
//!
//! Memory: about 4 bytes (5 at the peak before a merge) per key written in the run and per
//! distinct bucket-column value ([`HashRuns`]).

use crate::hash_runs::HashRuns;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use sluice_core::{Change, Scope, SinkChange, TableSpec};
use std::collections::BTreeMap;

/// The hash recorded for a NULL single-column key (keys are never NULL in practice).
const NULL_KEY: u64 = 0x6e75_6c6c_6b65_7900;

fn hash(bytes: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0x51u64, bytes)
}

/// The combined hashes of `rows` rows of key columns when every column is text or a 64-bit
/// integer or microsecond timestamp (`None` otherwise): per row, each column's value hash (NULL as
/// [`NULL_KEY`]) folded into the previous ones. Equal keys give equal hashes; that is all
/// the index needs (a collision only makes it check the files).
fn combined_hashes(cols: &[arrow::array::ArrayRef], rows: usize) -> Option<Vec<u64>> {
    let mut out = vec![0x9E37_79B9_7F4A_7C15u64; rows];
    for col in cols {
        let fold = |h: &mut u64, v: u64| *h = (h.rotate_left(29) ^ v).wrapping_mul(0x100_0000_01b3);
        match col.data_type() {
            DataType::Utf8 => {
                let s = col.as_string::<i32>();
                for (r, h) in out.iter_mut().enumerate() {
                    let v = if s.is_valid(r) {
                        hash(s.value(r).as_bytes())
                    } else {
                        NULL_KEY
                    };
                    fold(h, v);
                }
            }
            DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let values: &[i64] = match col.data_type() {
                    DataType::Int64 => col.as_primitive::<Int64Type>().values(),
                    _ => col.as_primitive::<TimestampMicrosecondType>().values(),
                };
                for (r, h) in out.iter_mut().enumerate() {
                    let v = if col.is_valid(r) {
                        hash(&values[r].to_le_bytes())
                    } else {
                        NULL_KEY
                    };
                    fold(h, v);
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// What the written-keys index proves about a commit's staged changes (see [`WrittenKeys::prove`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    /// Nothing: the stored files must be checked.
    None,
    /// No stored row is affected; `unique_keys`: no key is upserted twice in the commit.
    Untouched { unique_keys: bool },
}

/// What this run wrote: the keys of each table, the bucket-column values of all (see the
/// module docs).
#[derive(Default)]
pub(crate) struct WrittenIndex {
    tables: BTreeMap<String, WrittenKeys>,
    /// Per bucket-column name, the values written to it by the tables that keep an index,
    /// up to the previous commit.
    values: BTreeMap<String, HashRuns>,
    /// Per bucket-column name, the values written in the commit in progress.
    new_values: BTreeMap<String, Vec<u64>>,
}

impl WrittenIndex {
    /// What the index proves about `changes`, one commit's staged changes of the table of
    /// `spec`, which held `stored_files` files when this run first touched it (see
    /// [`WrittenKeys::prove`]).
    pub(crate) fn prove(
        &mut self,
        spec: &TableSpec,
        bucket_column: &str,
        changes: &[SinkChange],
        stored_files: usize,
    ) -> Proof {
        let values = self.values.entry(bucket_column.to_owned()).or_default();
        self.tables
            .entry(spec.name.clone())
            .or_insert_with(|| WrittenKeys::new(stored_files))
            .prove(spec, bucket_column, values, changes)
    }

    /// Whether the index proves that no stored row of `table` has one of `values` in its
    /// bucket column `bucket_column`.
    pub(crate) fn proves_no_rows_with(
        &self,
        table: &str,
        bucket_column: &str,
        values: &[String],
    ) -> bool {
        let Some(written) = self.tables.get(table) else {
            return false;
        };
        let empty = HashRuns::default();
        let known = self.values.get(bucket_column).unwrap_or(&empty);
        written.complete && values.iter().all(|v| !known.contains(hash(v.as_bytes())))
    }

    /// Records the rows of `batch` as written to the table of `spec` (when it keeps an
    /// index); their bucket-column values count from the next commit on.
    pub(crate) fn record(&mut self, spec: &TableSpec, bucket_column: &str, batch: &RecordBatch) {
        let Some(written) = self.tables.get_mut(&spec.name) else {
            return;
        };
        let values = self.new_values.entry(bucket_column.to_owned()).or_default();
        written.record(spec, bucket_column, values, batch);
    }

    /// Adds the values the previous commits wrote to the union (called as a commit starts,
    /// before anything of it is resolved or proved).
    pub(crate) fn begin_commit(&mut self) {
        for (column, hashes) in std::mem::take(&mut self.new_values) {
            self.values.entry(column).or_default().extend(hashes);
        }
    }
}

/// What this run wrote to one table (see the module docs).
#[derive(Default)]
pub(crate) struct WrittenKeys {
    /// The table held no rows when this run first touched it.
    complete: bool,
    keys: HashRuns,
}

impl WrittenKeys {
    /// An index for a table that had `stored_files` files when the run first touched it.
    pub(crate) fn new(stored_files: usize) -> Self {
        WrittenKeys {
            complete: stored_files == 0,
            ..Default::default()
        }
    }

    /// The hash of each row's primary key, from the key columns' values themselves (no
    /// row-format conversion): for one text column the hash of its text; for several
    /// columns of text and integer types, the hashes of the columns' values combined in
    /// order; for other types, the hash of the Arrow row format.
    fn key_hashes(spec: &TableSpec, batch: &RecordBatch) -> Option<Vec<u64>> {
        let cols = spec
            .primary_key
            .iter()
            .map(|k| batch.column_by_name(k).cloned())
            .collect::<Option<Vec<_>>>()?;
        if let [col] = cols.as_slice()
            && let Some(s) = col.as_string_opt::<i32>()
        {
            return Some(
                (0..s.len())
                    .map(|r| {
                        if s.is_valid(r) {
                            hash(s.value(r).as_bytes())
                        } else {
                            NULL_KEY
                        }
                    })
                    .collect(),
            );
        }
        if let Some(h) = combined_hashes(&cols, batch.num_rows()) {
            return Some(h);
        }
        let conv = RowConverter::new(
            cols.iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )
        .ok()?;
        let rows = conv.convert_columns(&cols).ok()?;
        Some(
            (0..batch.num_rows())
                .map(|r| hash(rows.row(r).as_ref()))
                .collect(),
        )
    }

    /// The hashes of the distinct values of `column` in `batch`, except that a value equal
    /// to the previous row's is hashed once (child rows of one parent are adjacent).
    fn value_hashes(batch: &RecordBatch, column: &str) -> Option<Vec<u64>> {
        let col = batch.column_by_name(column)?;
        let col = arrow::compute::cast(col, &DataType::Utf8).ok()?;
        let s = col.as_string::<i32>();
        let mut out = Vec::new();
        let mut last: Option<&str> = None;
        for r in 0..s.len() {
            if !s.is_valid(r) {
                continue;
            }
            let v = s.value(r);
            if last != Some(v) {
                out.push(hash(v.as_bytes()));
                last = Some(v);
            }
        }
        Some(out)
    }

    /// What the index proves about `changes`, one commit's staged changes of the table:
    /// whether they touch no stored row (so the commit may append without reading its files),
    /// and whether every upserted key is distinct (so no key moves between buckets within the
    /// commit). `Proof::None` means "read the files".
    /// `values`: the values of the bucket column written in this run (a superset of this
    /// table's).
    fn prove(
        &self,
        spec: &TableSpec,
        bucket_column: &str,
        values: &HashRuns,
        changes: &[SinkChange],
    ) -> Proof {
        if !self.complete {
            return Proof::None;
        }
        let empty = self.keys.is_empty();
        let mut upserted: Vec<u64> = Vec::new();
        let untouched = changes.iter().all(|c| match &c.change {
            Change::Upsert { batch, .. } => Self::key_hashes(spec, batch).is_some_and(|h| {
                let fresh = h.iter().all(|k| !self.keys.contains(*k));
                upserted.extend(h);
                fresh
            }),
            Change::Delete { keys, .. } => Self::key_hashes(spec, keys)
                .is_some_and(|h| h.iter().all(|k| !self.keys.contains(*k))),
            Change::DeleteMissing { scope, .. } => match scope {
                Scope::Where {
                    column,
                    values: scoped,
                } if column == bucket_column => {
                    scoped.iter().all(|v| !values.contains(hash(v.as_bytes())))
                }
                _ => empty,
            },
        });
        if !untouched {
            return Proof::None;
        }
        // Equal keys have equal hashes; a collision only reports a duplicate that is not.
        upserted.sort_unstable();
        Proof::Untouched {
            unique_keys: upserted.windows(2).all(|w| w[0] != w[1]),
        }
    }

    /// Records the rows of `batch` as written to the table, their bucket-column values in
    /// `values`.
    fn record(
        &mut self,
        spec: &TableSpec,
        bucket_column: &str,
        values: &mut Vec<u64>,
        batch: &RecordBatch,
    ) {
        if !self.complete {
            return;
        }
        match Self::key_hashes(spec, batch) {
            Some(h) => self.keys.extend(h),
            // Cannot index these rows: stop vouching for the table.
            None => self.complete = false,
        }
        match Self::value_hashes(batch, bucket_column) {
            Some(h) => values.extend(h),
            None => self.complete = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use sluice_core::{ColumnSpec, ColumnType, SyncKind};
    use std::sync::Arc;

    fn spec() -> TableSpec {
        TableSpec::new(
            "note",
            SyncKind::Child {
                parent: "opportunity".into(),
                parent_column: "opportunity_id".into(),
            },
        )
        .column(ColumnSpec::new("id", ColumnType::String))
        .column(ColumnSpec::new("opportunity_id", ColumnType::String))
        .key(["id"])
    }

    fn rows(ids: &[&str], parents: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(StringArray::from(ids.to_vec())) as ArrayRef),
            (
                "opportunity_id",
                Arc::new(StringArray::from(parents.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn upsert(ids: &[&str], parents: &[&str]) -> SinkChange {
        SinkChange {
            change: Change::Upsert {
                table: "note".into(),
                batch: rows(ids, parents),
            },
            synced_at_us: 1,
        }
    }

    fn missing(parents: &[&str]) -> SinkChange {
        SinkChange {
            change: Change::DeleteMissing {
                table: "note".into(),
                scope: Scope::Where {
                    column: "opportunity_id".into(),
                    values: parents.iter().map(|p| p.to_string()).collect(),
                },
                keep: rows(&[], &[]),
            },
            synced_at_us: 1,
        }
    }

    const COL: &str = "opportunity_id";

    fn untouched(ix: &mut WrittenIndex, t: &TableSpec, changes: &[SinkChange]) -> bool {
        matches!(ix.prove(t, COL, changes, 0), Proof::Untouched { .. })
    }

    #[test]
    fn reports_keys_upserted_twice_in_one_commit() {
        let t = spec();
        let mut ix = WrittenIndex::default();
        assert_eq!(
            ix.prove(&t, COL, &[upsert(&["a", "b"], &["o1", "o1"])], 0),
            Proof::Untouched { unique_keys: true }
        );
        // The same key under two parents (a key moving between buckets), across two upserts
        // and within one.
        assert_eq!(
            ix.prove(
                &t,
                COL,
                &[upsert(&["a"], &["o1"]), upsert(&["a"], &["o2"])],
                0
            ),
            Proof::Untouched { unique_keys: false }
        );
        assert_eq!(
            ix.prove(&t, COL, &[upsert(&["a", "a"], &["o1", "o2"])], 0),
            Proof::Untouched { unique_keys: false }
        );
        assert_eq!(
            WrittenIndex::default().prove(&t, COL, &[upsert(&["a"], &["o1"])], 1),
            Proof::None
        );
    }

    #[test]
    fn vouches_only_for_new_keys_and_parents_of_tables_that_started_empty() {
        let t = spec();
        let mut ix = WrittenIndex::default();
        assert!(untouched(
            &mut ix,
            &t,
            &[upsert(&["a"], &["o1"]), missing(&["o1"])]
        ));
        ix.record(&t, COL, &rows(&["a", "b"], &["o1", "o1"]));
        ix.begin_commit();
        assert!(untouched(
            &mut ix,
            &t,
            &[upsert(&["c"], &["o2"]), missing(&["o2"])]
        ));
        assert!(
            !untouched(&mut ix, &t, &[upsert(&["a"], &["o2"])]),
            "known key"
        );
        assert!(!untouched(&mut ix, &t, &[missing(&["o1"])]), "known parent");
        let all = SinkChange {
            change: Change::DeleteMissing {
                table: "note".into(),
                scope: Scope::All,
                keep: rows(&[], &[]),
            },
            synced_at_us: 1,
        };
        assert!(!untouched(&mut ix, &t, &[all]), "whole-table scope");
        assert!(ix.proves_no_rows_with("note", COL, &["o2".to_owned()]));
        assert!(!ix.proves_no_rows_with("note", COL, &["o2".to_owned(), "o1".to_owned()]));
        assert!(
            !ix.proves_no_rows_with("other", COL, &["o2".to_owned()]),
            "no index"
        );
        let mut stored_before = WrittenIndex::default();
        assert!(!untouched_with(
            &mut stored_before,
            &t,
            &[upsert(&["z"], &["o9"])],
            3
        ));
        assert!(!stored_before.proves_no_rows_with("note", COL, &["o2".to_owned()]));
    }

    fn untouched_with(
        ix: &mut WrittenIndex,
        t: &TableSpec,
        changes: &[SinkChange],
        stored_files: usize,
    ) -> bool {
        matches!(
            ix.prove(t, COL, changes, stored_files),
            Proof::Untouched { .. }
        )
    }

    #[test]
    fn bucket_values_are_shared_by_the_tables_of_a_column() {
        // Another table's value is a "maybe" for this one (the files are read), never a
        // missed row; a table that started with rows never adds values it does not record.
        let note = spec();
        let mut form = spec();
        form.name = "feedback_form".into();
        let mut ix = WrittenIndex::default();
        assert!(untouched(&mut ix, &note, &[missing(&["o1"])]));
        assert!(untouched(&mut ix, &form, &[missing(&["o1"])]));
        ix.record(&form, COL, &rows(&["f"], &["o1"]));
        // In the same commit, the note table's stored rows are those of earlier commits.
        assert!(
            untouched(&mut ix, &note, &[missing(&["o1"])]),
            "the commit's own parent"
        );
        ix.begin_commit();
        assert!(
            !untouched(&mut ix, &note, &[missing(&["o1"])]),
            "the form's parent"
        );
        assert!(!ix.proves_no_rows_with("note", COL, &["o1".to_owned()]));
        assert!(ix.proves_no_rows_with("note", COL, &["o2".to_owned()]));
        let mut old = spec();
        old.name = "offer".into();
        assert!(!untouched_with(&mut ix, &old, &[missing(&["o3"])], 2));
        ix.record(&old, COL, &rows(&["x"], &["o3"]));
        ix.begin_commit();
        assert!(ix.proves_no_rows_with("note", COL, &["o3".to_owned()]));
    }

    #[test]
    fn composite_keys_hash_by_value() {
        let text = |v: &[Option<&str>]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let ints =
            |v: &[Option<i64>]| Arc::new(arrow::array::Int64Array::from(v.to_vec())) as ArrayRef;
        let h = combined_hashes(
            &[
                text(&[Some("x"), Some("y"), Some("x"), Some("x"), None]),
                ints(&[Some(1), Some(1), Some(1), Some(2), Some(1)]),
            ],
            5,
        )
        .unwrap();
        assert_eq!(h[0], h[2], "equal keys");
        assert!(h[0] != h[1] && h[0] != h[3] && h[0] != h[4], "{h:?}");
        // Column boundaries matter: ("ab", "c") is not ("a", "bc").
        let h = combined_hashes(
            &[
                text(&[Some("ab"), Some("a")]),
                text(&[Some("c"), Some("bc")]),
            ],
            2,
        )
        .unwrap();
        assert_ne!(h[0], h[1]);
        // Equal keys in another batch (sliced, so at another offset) hash the same.
        let a = ints(&[Some(7), Some(8), Some(9)]);
        let whole =
            combined_hashes(&[text(&[Some("k"), Some("k"), Some("k")]), a.clone()], 3).unwrap();
        let part = combined_hashes(&[text(&[Some("k"), Some("k")]), a.slice(1, 2)], 2).unwrap();
        assert_eq!(&whole[1..], &part[..]);
        // Types it does not fold: the caller falls back to the row format.
        let b = Arc::new(arrow::array::BooleanArray::from(vec![true])) as ArrayRef;
        assert!(combined_hashes(&[b], 1).is_none());
    }
}
