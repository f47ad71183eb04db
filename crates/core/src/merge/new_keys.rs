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

use super::{END_OF_TIME_US, ScopeMatcher, align, merge, ts};
use crate::error::Result;
use crate::message::{Change, SinkChange};
use crate::sink::TableCommitStats;
use crate::spec::{ACTIVE, DELETED, END, START, SYNCED, TableSpec};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::concat;
use arrow::datatypes::TimestampMicrosecondType;
use rustc_hash::FxHashSet as HashSet;
use std::sync::Arc;

/// `merge(spec, &[], changes)` for changes whose upserted keys are pairwise distinct, which
/// the caller guarantees (for example by distinct key hashes). Returns `None` when a delete in
/// `changes` might remove an upserted row (a `Delete` with keys, or a `DeleteMissing` whose
/// scope holds an upserted row that its `keep` lacks), when the key is not one text column,
/// or when a key is NULL; the caller then uses [`merge`].
pub fn merge_new_keys(
    spec: &TableSpec,
    changes: &[SinkChange],
) -> Result<Option<(RecordBatch, TableCommitStats)>> {
    let [key] = spec.primary_key.as_slice() else {
        return Ok(None);
    };
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
    let mut key_columns = Vec::with_capacity(upserts.len());
    for (b, _) in &upserts {
        match b.column_by_name(key).and_then(|c| c.as_string_opt::<i32>()) {
            Some(k) if k.null_count() == 0 => key_columns.push(k),
            _ => return Ok(None),
        }
    }
    for c in changes {
        let Change::DeleteMissing { scope, keep, .. } = &c.change else {
            continue;
        };
        let Some(kept) = keep
            .column_by_name(key)
            .and_then(|c| c.as_string_opt::<i32>())
        else {
            return Ok(None);
        };
        let kept: HashSet<&str> = kept.iter().flatten().collect();
        for ((b, _), keys) in upserts.iter().zip(&key_columns) {
            let in_scope = ScopeMatcher::new(scope, b)?;
            if (0..b.num_rows()).any(|r| in_scope.matches(r) && !kept.contains(keys.value(r))) {
                return Ok(None);
            }
        }
    }

    let rows: usize = upserts.iter().map(|(b, _)| b.num_rows()).sum();
    // Each row's sync time: its `_fivetran_synced`, else its change's.
    let mut synced: Vec<i64> = Vec::with_capacity(rows);
    for (b, at) in &upserts {
        match b
            .column_by_name(SYNCED)
            .map(|c| c.as_primitive::<TimestampMicrosecondType>())
        {
            Some(t) => {
                synced.extend((0..t.len()).map(|r| if t.is_valid(r) { t.value(r) } else { *at }))
            }
            None => synced.extend(std::iter::repeat_n(*at, b.num_rows())),
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let col: ArrayRef = match field.name().as_str() {
            SYNCED | START => Arc::new(ts(synced.iter().copied())),
            DELETED => Arc::new(BooleanArray::from(vec![false; rows])),
            END => Arc::new(ts(std::iter::repeat_n(END_OF_TIME_US, rows))),
            ACTIVE => Arc::new(BooleanArray::from(vec![true; rows])),
            _ if rows == 0 => new_null_array(field.data_type(), 0),
            _ => {
                let parts: Vec<&dyn Array> =
                    upserts.iter().map(|(b, _)| b.column(i).as_ref()).collect();
                concat(&parts)?
            }
        };
        columns.push(col);
    }
    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    let out = RecordBatch::try_new_with_options(schema, columns, &options)?;
    let stats = TableCommitStats {
        inserted: rows as u64,
        ..Default::default()
    };
    Ok(Some((out, stats)))
}

/// [`merge_new_keys`] when it applies, else [`merge`] against no stored rows.
pub fn merge_into_empty(
    spec: &TableSpec,
    changes: &[SinkChange],
    keys_distinct: bool,
) -> Result<(RecordBatch, TableCommitStats)> {
    if keys_distinct && let Some(done) = merge_new_keys(spec, changes)? {
        return Ok(done);
    }
    merge(spec, &[], changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::{keys, spec, up};
    use crate::message::Scope;

    /// On random commits of new keys (upserts, deletes, scoped and whole-table
    /// `DeleteMissing`), `merge_new_keys` either declines or gives exactly `merge`'s batch and
    /// counts; both outcomes occur.
    #[test]
    fn equals_merge_or_declines() {
        let (mut taken, mut declined) = (0, 0);
        for seed in 1..=400u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut below = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            for (soft, history) in [(false, false), (true, false), (false, true), (true, true)] {
                let t = spec(soft, history);
                let opps = ["o1", "o2", "o3"];
                let mut ids: Vec<String> = Vec::new();
                let mut changes = Vec::new();
                let mut at = 1_000_000;
                for _ in 0..1 + below(6) {
                    at += 1_000_000;
                    match below(7) {
                        0..=2 => {
                            let first = ids.len();
                            for _ in 0..1 + below(4) {
                                ids.push(format!("k{}", ids.len()));
                            }
                            let rows: Vec<(&str, &str, i64)> = ids[first..]
                                .iter()
                                .map(|i| (i.as_str(), opps[below(3) as usize], below(3) as i64))
                                .collect();
                            changes.push(up(&t, &rows, at));
                        }
                        3 => {
                            // A delete of an upserted key, of an unknown key, or of none.
                            let which = match below(3) {
                                0 if !ids.is_empty() => {
                                    vec![ids[below(ids.len() as u64) as usize].clone()]
                                }
                                1 => vec!["unknown".to_owned()],
                                _ => vec![],
                            };
                            let which: Vec<&str> = which.iter().map(String::as_str).collect();
                            changes.push(SinkChange {
                                change: Change::Delete {
                                    table: t.name.clone(),
                                    keys: keys(&which),
                                },
                                synced_at_us: at,
                            });
                        }
                        n => {
                            // Keep every key so far, or all but one.
                            let skip = (below(2) == 0 && !ids.is_empty())
                                .then(|| below(ids.len() as u64) as usize);
                            let keep: Vec<&str> = ids
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| Some(*i) != skip)
                                .map(|(_, k)| k.as_str())
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
                                    keep: keys(&keep),
                                },
                                synced_at_us: at,
                            });
                        }
                    }
                }
                let (want, ws) = merge(&t, &[], &changes).unwrap();
                match merge_new_keys(&t, &changes).unwrap() {
                    Some((got, gs)) => {
                        assert_eq!(got, want, "seed {seed} soft {soft} history {history}");
                        assert_eq!(
                            (gs.inserted, gs.updated, gs.deleted, gs.unchanged),
                            (ws.inserted, ws.updated, ws.deleted, ws.unchanged),
                            "seed {seed}"
                        );
                        taken += 1;
                    }
                    None => declined += 1,
                }
            }
        }
        assert!(
            taken > 200 && declined > 200,
            "taken {taken}, declined {declined}"
        );
    }
}
