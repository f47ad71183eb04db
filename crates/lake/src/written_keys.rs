//! The written-keys index: for each table that was empty when this run first touched it,
//! what the run has written to it, as the hashes of the values of its first key column and
//! of its bucket column.
//!
//! A first sync commits many times into tables that start empty. Without the index, every
//! commit proves that its staged changes touch no stored row by reading the key columns of
//! every stored file of the table, which makes a first sync quadratic. Every stored row of
//! such a table was written by this run, so the index answers the same question from memory:
//! when no staged or deleted key starts with a value written before, and no scoped parent
//! value was written before, no stored row can be affected and the commit appends without
//! reading anything. Any hit (or a change the index cannot decide) falls back to the exact
//! check on the files, so a hash collision, or a new key under a parent written earlier,
//! costs a file read, never correctness. Tables that held rows before the run always use the
//! files.
//!
//! The first key column rather than the whole key: a stored row with the staged key has the
//! staged first value, so a first value never written proves the key new. A composite key
//! names its parent first (`feedback_form_field` is keyed by form, field and value index), and
//! a first sync writes a parent's children in one commit, so the proof holds as often as one
//! over whole keys, at one entry per parent instead of one per row.
//!
//! The values are kept once per column name for all tables ([`WrittenIndex`]): the child
//! tables of opportunities all hold the same opportunity ids, and a union of them still
//! proves that a value is in none (a value of another table is only a false "maybe"). Values
//! written by a commit join the union when the next commit starts
//! ([`WrittenIndex::begin_commit`]): a commit's tables share its parents (a page of
//! opportunities), and the union must not hold them while the commit's other tables prove
//! that their stored rows lack them. Proofs are about stored rows, which are those of
//! earlier commits.
//!
//! Memory: about 4 bytes (5 at the peak before a merge) per distinct value of each of those
//! columns ([`HashRuns`]): about 20 million values, 90 MB, for a first sync of 45 million
//! rows from a million opportunities.

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

/// What the written-keys index proves about a commit's staged changes (see [`WrittenIndex::prove`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    /// Nothing: the stored files must be checked.
    None,
    /// No stored row is affected; `unique_keys`: no key is upserted twice in the commit.
    Untouched { unique_keys: bool },
}

/// What this run wrote: per table whether it keeps an index, per column name the values
/// written to it (see the module docs).
#[derive(Default)]
pub(crate) struct WrittenIndex {
    tables: BTreeMap<String, WrittenTable>,
    /// Per column name, the values written to it as a first key column or a bucket column
    /// by the tables that keep an index, up to the previous commit.
    values: BTreeMap<String, HashRuns>,
    /// Per column name, the values written in the commit in progress.
    new_values: BTreeMap<String, Vec<u64>>,
}

impl WrittenIndex {
    /// What the index proves about `changes`, one commit's staged changes of the table of
    /// `spec` (bucketed by `bucket_column`), which held `stored_files` files when this run
    /// first touched it: whether they touch no stored row (so the commit may append without
    /// reading its files), and whether every upserted key is distinct (so no key moves
    /// between buckets within the commit). `Proof::None` means "read the files".
    pub(crate) fn prove(
        &mut self,
        spec: &TableSpec,
        bucket_column: &str,
        changes: &[SinkChange],
        stored_files: usize,
    ) -> Proof {
        let table = self
            .tables
            .entry(spec.name.clone())
            .or_insert_with(|| WrittenTable::new(stored_files));
        if !table.complete {
            return Proof::None;
        }
        let Some(first) = spec.primary_key.first() else {
            return Proof::None;
        };
        let empty = HashRuns::default();
        let firsts = self.values.get(first.as_str()).unwrap_or(&empty);
        let parents = self.values.get(bucket_column).unwrap_or(&empty);
        let fresh = |batch: &RecordBatch| {
            value_hashes(batch, first).is_some_and(|h| h.iter().all(|v| !firsts.contains(*v)))
        };
        let mut upserted: Vec<u64> = Vec::new();
        let untouched = changes.iter().all(|c| match &c.change {
            Change::Upsert { batch, .. } => {
                fresh(batch)
                    && key_hashes(spec, batch).is_some_and(|h| {
                        upserted.extend(h);
                        true
                    })
            }
            Change::Delete { keys, .. } => fresh(keys),
            Change::DeleteMissing { scope, .. } => match scope {
                Scope::Where { column, values } if column == bucket_column => {
                    values.iter().all(|v| !parents.contains(hash(v.as_bytes())))
                }
                _ => !table.wrote,
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
    /// index); their values count from the next commit on.
    pub(crate) fn record(&mut self, spec: &TableSpec, bucket_column: &str, batch: &RecordBatch) {
        let Some(table) = self.tables.get_mut(&spec.name) else {
            return;
        };
        if !table.complete {
            return;
        }
        table.wrote |= batch.num_rows() > 0;
        let mut columns: Vec<&str> = spec
            .primary_key
            .first()
            .map(String::as_str)
            .into_iter()
            .collect();
        if !columns.contains(&bucket_column) {
            columns.push(bucket_column);
        }
        for column in columns {
            match value_hashes(batch, column) {
                Some(h) => self
                    .new_values
                    .entry(column.to_owned())
                    .or_default()
                    .extend(h),
                // Cannot index these rows: stop vouching for the table.
                None => table.complete = false,
            }
        }
    }

    /// Adds the values the previous commits wrote to the union (called as a commit starts,
    /// before anything of it is resolved or proved).
    pub(crate) fn begin_commit(&mut self) {
        for (column, hashes) in std::mem::take(&mut self.new_values) {
            self.values.entry(column).or_default().extend(hashes);
        }
    }
}

/// Whether a table keeps an index, and whether this run wrote to it (see the module docs).
struct WrittenTable {
    /// The table held no rows when this run first touched it, and every row written since
    /// could be indexed.
    complete: bool,
    /// This run has written a row to the table.
    wrote: bool,
}

impl WrittenTable {
    /// A table that had `stored_files` files when the run first touched it.
    fn new(stored_files: usize) -> Self {
        WrittenTable {
            complete: stored_files == 0,
            wrote: false,
        }
    }
}

/// The hash of each row's primary key, from the key columns' values themselves (no
/// row-format conversion): for one text column the hash of its text; for several columns of
/// text and integer types, the hashes of the columns' values combined in order; for other
/// types, the hash of the Arrow row format.
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

/// The hashes of the values of `column` in `batch` as text, except that a value equal to the
/// previous row's is hashed once (child rows of one parent are adjacent). A NULL counts as
/// [`NULL_KEY`] (a key column is never NULL in practice).
fn value_hashes(batch: &RecordBatch, column: &str) -> Option<Vec<u64>> {
    let col = batch.column_by_name(column)?;
    let col = arrow::compute::cast(col, &DataType::Utf8).ok()?;
    let s = col.as_string::<i32>();
    let mut out = Vec::new();
    let mut last: Option<Option<&str>> = None;
    for r in 0..s.len() {
        let v = s.is_valid(r).then(|| s.value(r));
        if last != Some(v) {
            out.push(v.map_or(NULL_KEY, |v| hash(v.as_bytes())));
            last = Some(v);
        }
    }
    Some(out)
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

    /// A table keyed by (form, index), bucketed by opportunity.
    fn fields() -> TableSpec {
        TableSpec::new(
            "feedback_form_field",
            SyncKind::Child {
                parent: "opportunity".into(),
                parent_column: "opportunity_id".into(),
            },
        )
        .column(ColumnSpec::new("form_id", ColumnType::String))
        .column(ColumnSpec::new("index", ColumnType::Int64))
        .column(ColumnSpec::new("opportunity_id", ColumnType::String))
        .key(["form_id", "index"])
    }

    fn field_rows(keys: &[(&str, i64)], parent: &str) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "form_id",
                Arc::new(StringArray::from(
                    keys.iter().map(|k| k.0).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "index",
                Arc::new(arrow::array::Int64Array::from(
                    keys.iter().map(|k| k.1).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "opportunity_id",
                Arc::new(StringArray::from(vec![parent; keys.len()])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn field_change(change: Change) -> SinkChange {
        SinkChange {
            change,
            synced_at_us: 1,
        }
    }

    #[test]
    fn composite_keys_are_proved_new_by_their_first_column() {
        let t = fields();
        let mut ix = WrittenIndex::default();
        let upsert = |keys: &[(&str, i64)], parent: &str| {
            field_change(Change::Upsert {
                table: t.name.clone(),
                batch: field_rows(keys, parent),
            })
        };
        assert!(untouched(
            &mut ix,
            &t,
            &[upsert(&[("f1", 0), ("f1", 1)], "o1")]
        ));
        ix.record(&t, COL, &field_rows(&[("f1", 0), ("f1", 1)], "o1"));
        ix.begin_commit();
        // A new form: proved new without reading a file.
        assert_eq!(
            ix.prove(&t, COL, &[upsert(&[("f2", 0), ("f2", 1)], "o2")], 0),
            Proof::Untouched { unique_keys: true }
        );
        // The same key again, and a new key of a form written before: "maybe", the files
        // decide (one value per form is kept, not one per row).
        assert!(!untouched(&mut ix, &t, &[upsert(&[("f1", 1)], "o1")]));
        assert!(!untouched(&mut ix, &t, &[upsert(&[("f1", 7)], "o1")]));
        let delete = |keys: &[(&str, i64)]| {
            field_change(Change::Delete {
                table: t.name.clone(),
                keys: field_rows(keys, "o1"),
            })
        };
        assert!(!untouched(&mut ix, &t, &[delete(&[("f1", 0)])]));
        assert!(untouched(&mut ix, &t, &[delete(&[("f3", 0)])]));
        // Keys upserted twice within one commit are reported whatever their first column.
        assert_eq!(
            ix.prove(&t, COL, &[upsert(&[("f4", 0), ("f4", 0)], "o4")], 0),
            Proof::Untouched { unique_keys: false }
        );
        // First values of every table of a column name are shared: the `id` of another
        // table is a "maybe" here only if that table's first key column has this name.
        let mut forms = spec();
        forms.name = "feedback_form".into();
        ix.record(&forms, COL, &rows(&["f9"], &["o9"]));
        ix.begin_commit();
        assert!(untouched(&mut ix, &t, &[upsert(&[("f9", 0)], "o10")]));
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
