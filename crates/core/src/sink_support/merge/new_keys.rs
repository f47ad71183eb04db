//! [`merge_new_keys`]: [`merge`] of changes whose upserted keys are all new, without the key
//! index.
//!
//! A first sync's commits only add rows: a sink that has proved that no staged key is stored
//! and that no key is upserted twice in the commit (the Parquet sink's session index) knows
//! the merge against the stored rows is the upserted rows themselves, in order, with their
//! system columns, unless a delete in the same commit removes one of them. This checks that
//! no delete can, and builds the rows directly: no row-format keys, no hash table of keys, no
//! scope index (which [`merge`] pays for on every commit of a first sync). It declines (returns
//! `None`) whenever it cannot decide cheaply; the caller then merges.

use super::{END_OF_TIME_US, align, merge, ts};
use crate::error::{Error, Result};
use crate::message::{Change, Scope, SinkChange};
use crate::sink::TableCommitStats;
use crate::spec::{ACTIVE, DELETED, END, START, SYNCED, TableSpec};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use arrow::row::{RowConverter, Rows, SortField};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

/// `merge(spec, &[], changes)`, as one batch per upsert (their concatenation is `merge`'s
/// batch; not copying them into one saves a copy of every row), for changes whose upserted
/// keys are pairwise distinct, which
/// the caller guarantees (for example by distinct key hashes). Returns `None` when a delete in
/// `changes` might remove an upserted row (a `Delete` with keys, or a `DeleteMissing` whose
/// scope holds an upserted row that its `keep` lacks); the caller then uses [`merge`].
pub(crate) fn merge_new_keys(
    spec: &TableSpec,
    changes: &[SinkChange],
) -> Result<Option<(Vec<RecordBatch>, TableCommitStats)>> {
    let schema = spec.arrow_schema();
    let mut upserts: Vec<(RecordBatch, i64)> = Vec::new();
    for c in changes {
        match &c.change {
            Change::Upsert { batch, .. } => {
                upserts.push((align(batch, &schema, &spec.name)?, c.synced_at_us))
            }
            Change::Delete { keys, .. } if keys.num_rows() > 0 => return Ok(None),
            Change::Delete { .. } | Change::DeleteMissing { .. } => {}
        }
    }
    if changes
        .iter()
        .any(|c| matches!(c.change, Change::DeleteMissing { .. }))
        && !kept_by_every_scope_delete(spec, changes, &upserts)?
    {
        return Ok(None);
    }
    let mut stats = TableCommitStats::default();
    let mut parts = Vec::with_capacity(upserts.len());
    for (b, at) in upserts {
        let rows = b.num_rows();
        stats.inserted += rows as u64;
        // Each row's sync time: its `_fivetran_synced`, else its change's.
        let synced: Vec<i64> = match b
            .column_by_name(SYNCED)
            .map(|c| c.as_primitive::<TimestampMicrosecondType>())
        {
            Some(t) => (0..rows)
                .map(|r| if t.is_valid(r) { t.value(r) } else { at })
                .collect(),
            None => vec![at; rows],
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| -> ArrayRef {
                match field.name().as_str() {
                    SYNCED | START => Arc::new(ts(synced.iter().copied())),
                    DELETED => Arc::new(BooleanArray::from(vec![false; rows])),
                    END => Arc::new(ts(std::iter::repeat_n(END_OF_TIME_US, rows))),
                    ACTIVE => Arc::new(BooleanArray::from(vec![true; rows])),
                    _ => b.column(i).clone(),
                }
            })
            .collect();
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        parts.push(RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            columns,
            &options,
        )?);
    }
    Ok(Some((parts, stats)))
}

/// The primary keys of some batches: the text of a single text key column, else the Arrow
/// row format of the key columns (one converter, so keys of different batches compare).
enum Keys {
    Text(Vec<ArrayRef>),
    Rows(Vec<Rows>),
}

impl Keys {
    /// The key of row `row` of batch `batch`, as bytes (`None`: a NULL text key).
    fn key(&self, batch: usize, row: usize) -> Option<&[u8]> {
        match self {
            Keys::Text(cols) => {
                let s = cols[batch].as_string::<i32>();
                s.is_valid(row).then(|| s.value(row).as_bytes())
            }
            Keys::Rows(rows) => Some(rows[batch].row(row).data()),
        }
    }
}

/// How the keys of a table are compared: by text (one text key column) or by row format.
struct KeyCodec<'s> {
    spec: &'s TableSpec,
    rows: Option<RowConverter>,
}

impl<'s> KeyCodec<'s> {
    fn new(spec: &'s TableSpec) -> Result<Self> {
        let schema = spec.arrow_schema();
        let fields = spec
            .primary_key
            .iter()
            .map(|k| Ok(schema.field_with_name(k)?.data_type().clone()))
            .collect::<Result<Vec<_>>>()?;
        let rows = match fields.as_slice() {
            [DataType::Utf8] => None,
            _ => Some(RowConverter::new(
                fields.into_iter().map(SortField::new).collect(),
            )?),
        };
        Ok(KeyCodec { spec, rows })
    }

    /// The keys of `batches`, or `None` when a batch's key column is not of the declared type.
    fn keys(&self, batches: &[&RecordBatch]) -> Result<Option<Keys>> {
        let mut text = Vec::new();
        let mut rows = Vec::new();
        for b in batches {
            let mut cols = Vec::with_capacity(self.spec.primary_key.len());
            for k in &self.spec.primary_key {
                match b.column_by_name(k) {
                    Some(c) => cols.push(c.clone()),
                    None => return Ok(None),
                }
            }
            match &self.rows {
                None if cols[0].as_string_opt::<i32>().is_some() => text.push(cols.remove(0)),
                None => return Ok(None),
                Some(conv) => match conv.convert_columns(&cols) {
                    Ok(r) => rows.push(r),
                    Err(_) => return Ok(None),
                },
            }
        }
        Ok(Some(match self.rows {
            None => Keys::Text(text),
            Some(_) => Keys::Rows(rows),
        }))
    }
}

/// Whether every upserted row that a `DeleteMissing` of `changes` covers is in its `keep`
/// (then no scope delete removes an upserted row; rows stored before are none).
fn kept_by_every_scope_delete(
    spec: &TableSpec,
    changes: &[SinkChange],
    upserts: &[(RecordBatch, i64)],
) -> Result<bool> {
    let batches: Vec<&RecordBatch> = upserts.iter().map(|(b, _)| b).collect();
    let codec = KeyCodec::new(spec)?;
    let Some(keys) = codec.keys(&batches)? else {
        return Ok(false);
    };
    // The upserted rows by scope-column value, per column scoped on (built once).
    let mut columns: Vec<(String, Vec<ArrayRef>)> = Vec::new();
    for c in changes {
        if let Change::DeleteMissing {
            scope: Scope::Where { column, .. },
            ..
        } = &c.change
            && !columns.iter().any(|(n, _)| n == column)
        {
            let mut values = Vec::with_capacity(batches.len());
            for b in &batches {
                let col = b.column_by_name(column).ok_or_else(|| {
                    Error::internal(format!("delete scope names unknown column `{column}`"))
                })?;
                values.push(arrow::compute::cast(col, &DataType::Utf8)?);
            }
            columns.push((column.clone(), values));
        }
    }
    // Per scoped column: the first upserted row of each value, and each row's next row of
    // the same value (chains in two flat arrays, not a vector per value).
    let offsets: Vec<usize> = batches
        .iter()
        .scan(0, |at, b| {
            let first = *at;
            *at += b.num_rows();
            Some(first)
        })
        .collect();
    let locate = |flat: usize| {
        let bi = offsets.partition_point(|&o| o <= flat) - 1;
        (bi, flat - offsets[bi])
    };
    const END: u32 = u32::MAX;
    let chains: Vec<(HashMap<&str, u32>, Vec<u32>)> = columns
        .iter()
        .map(|(_, arrays)| {
            let mut first: HashMap<&str, u32> = HashMap::default();
            let mut next: Vec<u32> = Vec::with_capacity(offsets.last().map_or(0, |o| o + 1));
            for (bi, a) in arrays.iter().enumerate() {
                let s = a.as_string::<i32>();
                for r in 0..s.len() {
                    let flat = (offsets[bi] + r) as u32;
                    let prev = if s.is_valid(r) {
                        first.insert(s.value(r), flat).unwrap_or(END)
                    } else {
                        END
                    };
                    next.push(prev);
                }
            }
            (first, next)
        })
        .collect();
    for c in changes {
        let Change::DeleteMissing { scope, keep, .. } = &c.change else {
            continue;
        };
        // A `keep` projected from an upserted batch (what a source sends when it replaces a
        // parent's children) keeps every row of that batch: no key of it needs hashing.
        let own = batch_of_keep(spec, keep, &batches);
        // The scope's upserted rows outside that batch, which `keep` must list.
        let mut others: Vec<(usize, usize)> = Vec::new();
        match scope {
            Scope::All => {
                for (bi, b) in batches.iter().enumerate() {
                    if Some(bi) != own {
                        others.extend((0..b.num_rows()).map(|r| (bi, r)));
                    }
                }
            }
            Scope::Where { column, values } => {
                let at = columns
                    .iter()
                    .position(|(n, _)| n == column)
                    .expect("indexed above");
                let (first, next) = &chains[at];
                for v in values {
                    let mut row = first.get(v.as_str()).copied().unwrap_or(END);
                    while row != END {
                        let (bi, r) = locate(row as usize);
                        if Some(bi) != own {
                            others.push((bi, r));
                        }
                        row = next[row as usize];
                    }
                }
            }
            Scope::Via { .. } => return Ok(false),
        }
        if others.is_empty() {
            continue;
        }
        let Some(kept_keys) = codec.keys(&[keep])? else {
            return Ok(false);
        };
        let kept: HashSet<&[u8]> = (0..keep.num_rows())
            .filter_map(|r| kept_keys.key(0, r))
            .collect();
        let all_kept = others
            .into_iter()
            .all(|(bi, r)| keys.key(bi, r).is_some_and(|k| kept.contains(k)));
        if !all_kept {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The upserted batch whose key columns are `keep`'s own arrays (same buffers, offset and
/// length), if any: `keep` then lists exactly that batch's keys.
fn batch_of_keep(spec: &TableSpec, keep: &RecordBatch, batches: &[&RecordBatch]) -> Option<usize> {
    let keep_columns: Vec<arrow::array::ArrayData> = spec
        .primary_key
        .iter()
        .map(|k| keep.column_by_name(k).map(|c| c.to_data()))
        .collect::<Option<_>>()?;
    batches.iter().position(|b| {
        b.num_rows() == keep.num_rows()
            && spec.primary_key.iter().zip(&keep_columns).all(|(k, kept)| {
                b.column_by_name(k)
                    .is_some_and(|c| c.to_data().ptr_eq(kept))
            })
    })
}

/// `merge(spec, &[], changes)`: the merge of `changes` into a table with no stored rows.
///
/// When the caller guarantees that the upserted keys are pairwise distinct (`keys_distinct`)
/// and no delete of `changes` can remove an upserted row, the result is the upserted batches
/// themselves with their system columns, one batch per upsert (no key index, no copy);
/// otherwise it is [`merge`]'s one batch.
pub fn merge_into_empty(
    spec: &TableSpec,
    changes: &[SinkChange],
    keys_distinct: bool,
) -> Result<(Vec<RecordBatch>, TableCommitStats)> {
    if keys_distinct && let Some(done) = merge_new_keys(spec, changes)? {
        return Ok(done);
    }
    let (out, stats) = merge(spec, &[], changes)?;
    Ok((vec![out], stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Scope;
    use crate::sink_support::merge::tests::{spec, up};
    use arrow::array::StringArray;

    /// A key batch of `(id, opportunity_id)` pairs: both columns for a composite key.
    fn key_rows(pairs: &[(&str, &str)], composite: bool) -> RecordBatch {
        let id: ArrayRef = Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| p.0)));
        let mut cols = vec![("id", id)];
        if composite {
            let opp: ArrayRef = Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| p.1)));
            cols.push(("opportunity_id", opp));
        }
        RecordBatch::try_from_iter(cols).unwrap()
    }

    /// On random commits of new keys (upserts, deletes, scoped and whole-table
    /// `DeleteMissing`), for a single text key and a composite key, `merge_new_keys` either
    /// declines or gives exactly `merge`'s batch and counts; both outcomes occur.
    #[test]
    fn equals_merge_or_declines() {
        let (mut taken, mut declined, mut taken_composite) = (0, 0, 0);
        for seed in 1..=400u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut below = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            for (soft, history, composite) in [
                (false, false, false),
                (true, false, false),
                (false, true, false),
                (true, true, false),
                (false, false, true),
                (true, true, true),
            ] {
                let mut t = spec(soft, history);
                if composite {
                    t.primary_key = vec!["id".into(), "opportunity_id".into()];
                }
                let opps = ["o1", "o2", "o3"];
                let mut upserted: Vec<(String, &str)> = Vec::new();
                let mut changes = Vec::new();
                let mut at = 1_000_000;
                for _ in 0..1 + below(6) {
                    at += 1_000_000;
                    match below(8) {
                        0..=2 => {
                            let first = upserted.len();
                            for _ in 0..1 + below(4) {
                                let id = format!("k{}", upserted.len());
                                upserted.push((id, opps[below(3) as usize]));
                            }
                            let rows: Vec<(&str, &str, i64)> = upserted[first..]
                                .iter()
                                .map(|(i, o)| (i.as_str(), *o, below(3) as i64))
                                .collect();
                            changes.push(up(&t, &rows, at));
                        }
                        3 => {
                            // A delete of an upserted key, of an unknown key, or of none.
                            let which: Vec<(&str, &str)> = match below(3) {
                                0 if !upserted.is_empty() => {
                                    let (i, o) = &upserted[below(upserted.len() as u64) as usize];
                                    vec![(i.as_str(), *o)]
                                }
                                1 => vec![("unknown", "o1")],
                                _ => vec![],
                            };
                            changes.push(SinkChange {
                                change: Change::Delete {
                                    table: t.name.clone(),
                                    keys: key_rows(&which, composite),
                                },
                                synced_at_us: at,
                            });
                        }
                        7 => {
                            // A parent's children replaced: `keep` projects the last upsert's
                            // key columns (the same arrays), scoped to one parent.
                            let Some(batch) = changes.iter().rev().find_map(|c| match &c.change {
                                Change::Upsert { batch, .. } => Some(batch.clone()),
                                _ => None,
                            }) else {
                                continue;
                            };
                            let key_idx: Vec<usize> = t
                                .primary_key
                                .iter()
                                .map(|k| batch.schema().index_of(k).unwrap())
                                .collect();
                            changes.push(SinkChange {
                                change: Change::DeleteMissing {
                                    table: t.name.clone(),
                                    scope: Scope::Where {
                                        column: "opportunity_id".into(),
                                        values: vec![opps[below(3) as usize].into()],
                                    },
                                    keep: batch.project(&key_idx).unwrap(),
                                },
                                synced_at_us: at,
                            });
                        }
                        n => {
                            // Keep every key so far, or all but one.
                            let skip = (below(2) == 0 && !upserted.is_empty())
                                .then(|| below(upserted.len() as u64) as usize);
                            let keep: Vec<(&str, &str)> = upserted
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| Some(*i) != skip)
                                .map(|(_, (k, o))| (k.as_str(), *o))
                                .collect();
                            let scope = if n == 6 {
                                Scope::All
                            } else {
                                Scope::Where {
                                    column: "opportunity_id".into(),
                                    values: vec![opps[below(3) as usize].into()],
                                }
                            };
                            changes.push(SinkChange {
                                change: Change::DeleteMissing {
                                    table: t.name.clone(),
                                    scope,
                                    keep: key_rows(&keep, composite),
                                },
                                synced_at_us: at,
                            });
                        }
                    }
                }
                let case =
                    format!("seed {seed} soft {soft} history {history} composite {composite}");
                let (want, ws) = merge(&t, &[], &changes).unwrap();
                match merge_new_keys(&t, &changes).unwrap() {
                    Some((parts, gs)) => {
                        let got = arrow::compute::concat_batches(&want.schema(), &parts).unwrap();
                        assert_eq!(got, want, "{case}");
                        assert_eq!(
                            (gs.inserted, gs.updated, gs.deleted, gs.unchanged),
                            (ws.inserted, ws.updated, ws.deleted, ws.unchanged),
                            "{case}"
                        );
                        taken += 1;
                        taken_composite += usize::from(composite);
                    }
                    None => declined += 1,
                }
            }
        }
        assert!(
            taken > 300 && declined > 300 && taken_composite > 100,
            "taken {taken} ({taken_composite} composite), declined {declined}"
        );
    }

    /// A `keep` that is the projection of an upserted batch keeps that batch's rows without
    /// hashing them, but rows of other batches in the scope still need to be in it.
    #[test]
    fn keep_projected_from_an_upsert_still_checks_the_other_batches() {
        let t = spec(false, false);
        let first = up(&t, &[("k0", "o1", 0), ("k1", "o1", 0)], 1_000_000);
        let second = up(&t, &[("k2", "o1", 0), ("k3", "o2", 0)], 2_000_000);
        let projected = |c: &SinkChange| match &c.change {
            Change::Upsert { batch, .. } => {
                let id = batch.schema().index_of("id").unwrap();
                batch.project(&[id]).unwrap()
            }
            _ => unreachable!(),
        };
        let replace = |keep: RecordBatch, opp: &str| SinkChange {
            change: Change::DeleteMissing {
                table: t.name.clone(),
                scope: Scope::Where {
                    column: "opportunity_id".into(),
                    values: vec![opp.into()],
                },
                keep,
            },
            synced_at_us: 3_000_000,
        };
        // o1's children replaced by the second batch's: k0 and k1 go, so it declines.
        let changes = [
            first.clone(),
            second.clone(),
            replace(projected(&second), "o1"),
        ];
        assert!(merge_new_keys(&t, &changes).unwrap().is_none());
        // o2's children replaced by the second batch's: every o2 row is in it.
        let changes = [
            first.clone(),
            second.clone(),
            replace(projected(&second), "o2"),
        ];
        let (parts, stats) = merge_new_keys(&t, &changes).unwrap().expect("taken");
        let (want, _) = merge(&t, &[], &changes).unwrap();
        let got = arrow::compute::concat_batches(&want.schema(), &parts).unwrap();
        assert_eq!(got, want);
        assert_eq!(stats.inserted, 4);
        // The first batch's own keys for o1: kept by construction.
        let changes = [first.clone(), replace(projected(&first), "o1")];
        assert!(merge_new_keys(&t, &changes).unwrap().is_some());
    }
}
