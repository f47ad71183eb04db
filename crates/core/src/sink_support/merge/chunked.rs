//! [`ChunkedMerge`]: [`merge`] applied to a table's stored rows one chunk at a time, so that
//! a sink can rewrite a large table (or bucket) while holding one chunk of it, not all of it.
//!
//! Every change either names keys (upserts, deletes) or a scope (`DeleteMissing`). A key's
//! fate depends only on its own stored row (in history mode: its active version) and on the
//! changes naming it, in order; a scope delete acts on each row in its scope on its own. So
//! the changes are routed: the upserted and deleted rows of a key go with the chunk that
//! holds the key's row, the rows of keys that no chunk holds (new keys) go to a last merge
//! against no stored rows, and every scope delete goes to every merge, keeping its place in
//! the sequence. Each row and each change row is then merged exactly once, by the shared
//! [`merge`], so the union of the results is [`merge`]'s result over the whole table, with
//! the same counts; only the order of rows differs (a key's new history version follows its
//! chunk rather than the table). Tested against [`merge`] on the model test's random cases.

use super::{ScopeMatcher, bool_col, key_columns, key_layout, merge, pick};
use crate::error::{Error, Result};
use crate::message::{Change, Scope, SinkChange};
use crate::sink::TableCommitStats;
use crate::sink_support::KeyIndex;
use crate::spec::{ACTIVE, DELETED, END, START, SYNCED, TableSpec};
use arrow::array::{Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::RowConverter;

/// A change row: (index of the change, row in its batch).
type ChangeRow = (u32, u32);

/// Merges `changes` into stored rows given chunk by chunk (see the module documentation).
pub struct ChunkedMerge<'a> {
    spec: &'a TableSpec,
    changes: &'a [SinkChange],
    key_idx: Vec<usize>,
    key_conv: RowConverter,
    /// Keys of upserted and deleted rows that no chunk has claimed yet, with their rows.
    pending: KeyIndex<Vec<ChangeRow>>,
    stats: TableCommitStats,
}

/// What [`ChunkedMerge::merge_chunk`] made of a chunk.
#[derive(Debug)]
pub enum Chunk {
    /// No change concerns the chunk: its rows stay as they were.
    Unchanged,
    /// The chunk's rows after the changes that concern it.
    Merged(RecordBatch),
}

impl<'a> ChunkedMerge<'a> {
    /// Indexes the keys of `changes` (`Scope::Via` must be resolved already).
    pub fn new(spec: &'a TableSpec, changes: &'a [SinkChange]) -> Result<ChunkedMerge<'a>> {
        let (key_idx, key_conv) = key_layout(&spec.arrow_schema(), spec)?;
        let mut pending: KeyIndex<Vec<ChangeRow>> = KeyIndex::default();
        for (ci, c) in changes.iter().enumerate() {
            let keyed = match &c.change {
                Change::Upsert { batch, .. } => batch,
                Change::Delete { keys, .. } => keys,
                Change::DeleteMissing {
                    scope: Scope::Via { .. },
                    ..
                } => {
                    return Err(Error::internal(
                        "a Via scope must be resolved by the sink before merging",
                    ));
                }
                Change::DeleteMissing { .. } => continue,
            };
            let cols = key_columns(spec, keyed, "a change")?;
            let set = pending.add_rows(key_conv.convert_columns(&cols)?);
            for row in 0..keyed.num_rows() as u32 {
                pending.entry(set, row).push((ci as u32, row));
            }
        }
        Ok(ChunkedMerge {
            spec,
            changes,
            key_idx,
            key_conv,
            pending,
            stats: TableCommitStats::default(),
        })
    }

    /// Merges the changes that concern `stored`, a chunk of stored rows (aligned to the
    /// table's schema). Every stored row must be in exactly one chunk.
    pub fn merge_chunk(&mut self, stored: &[RecordBatch]) -> Result<Chunk> {
        let mut routed: Vec<ChangeRow> = Vec::new();
        for b in stored {
            let keys = self.key_conv.convert_columns(&pick(b, &self.key_idx))?;
            // In history mode a key's changes go with its active version.
            let active = self.spec.versioned().then(|| bool_col(b, ACTIVE)).flatten();
            for row in 0..b.num_rows() {
                if active
                    .as_ref()
                    .is_some_and(|a| a.is_valid(row) && !a.value(row))
                {
                    continue;
                }
                if let Some(rows) = self.pending.remove_key(keys.row(row).data()) {
                    routed.extend(rows);
                }
            }
        }
        if routed.is_empty() && !self.scopes_touch(stored)? && !has_unset_system_values(stored) {
            return Ok(Chunk::Unchanged);
        }
        routed.sort_unstable();
        let changes = self.subset(&routed)?;
        let (out, s) = merge(self.spec, stored, &changes)?;
        self.stats.add(&s);
        Ok(Chunk::Merged(out))
    }

    /// After the last chunk: the rows of keys no chunk held, merged against no stored rows,
    /// and the counts of the whole merge.
    pub fn finish(mut self) -> Result<(RecordBatch, TableCommitStats)> {
        let mut rest: Vec<ChangeRow> = self.pending.drain_values().flatten().collect();
        rest.sort_unstable();
        let changes = self.subset(&rest)?;
        let (out, s) = merge(self.spec, &[], &changes)?;
        self.stats.add(&s);
        Ok((out, self.stats))
    }

    /// Whether a scope delete may act on a row of `stored` (then the chunk is merged).
    fn scopes_touch(&self, stored: &[RecordBatch]) -> Result<bool> {
        for c in self.changes {
            let Change::DeleteMissing { scope, .. } = &c.change else {
                continue;
            };
            for b in stored {
                let m = ScopeMatcher::new(scope, b)?;
                if (0..b.num_rows()).any(|r| m.matches(r)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The changes restricted to `rows` (sorted), with every scope delete, in order.
    fn subset(&self, rows: &[ChangeRow]) -> Result<Vec<SinkChange>> {
        let mut out = Vec::new();
        let mut at = 0;
        for (ci, c) in self.changes.iter().enumerate() {
            let from = at;
            while at < rows.len() && rows[at].0 == ci as u32 {
                at += 1;
            }
            let mine = UInt32Array::from_iter_values(rows[from..at].iter().map(|r| r.1));
            let change = match &c.change {
                Change::DeleteMissing { .. } => c.change.clone(),
                _ if mine.is_empty() => continue,
                Change::Upsert { table, batch } => Change::Upsert {
                    table: table.clone(),
                    batch: take_record_batch(batch, &mine)?,
                },
                Change::Delete { table, keys } => Change::Delete {
                    table: table.clone(),
                    keys: take_record_batch(keys, &mine)?,
                },
            };
            out.push(SinkChange {
                change,
                synced_at_us: c.synced_at_us,
            });
        }
        Ok(out)
    }
}

/// Whether a system column of `stored` has NULLs, which [`merge`] fills (a column added
/// after the rows were written: history mode or soft deletes switched on later). Such a
/// chunk is merged even without changes, so that its rows come out as a whole-table merge
/// would write them.
fn has_unset_system_values(stored: &[RecordBatch]) -> bool {
    stored.iter().any(|b| {
        [SYNCED, DELETED, START, END, ACTIVE]
            .iter()
            .filter_map(|c| b.column_by_name(c))
            .any(|c| c.null_count() > 0)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Splits `stored` into chunks of `size` rows.
    fn chunks(stored: &[RecordBatch], size: usize) -> Vec<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for b in stored {
            let mut at = 0;
            while at < b.num_rows() {
                let n = size.min(b.num_rows() - at);
                out.push(vec![b.slice(at, n)]);
                at += n;
            }
        }
        out
    }

    /// The rows of `batches` as sorted lines of text (order-free comparison).
    pub(crate) fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            // Timestamps as their microsecond values (formatting a zone needs chrono-tz).
            let cols: Vec<arrow::array::ArrayRef> = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    arrow::datatypes::DataType::Timestamp(..) => {
                        arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).unwrap()
                    }
                    _ => c.clone(),
                })
                .collect();
            let f: Vec<_> = cols
                .iter()
                .map(|c| {
                    arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                        .unwrap()
                })
                .collect();
            for r in 0..b.num_rows() {
                out.push(
                    f.iter()
                        .map(|x| x.value(r).to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                );
            }
        }
        out.sort();
        out
    }

    /// [`ChunkedMerge`] over `stored` in chunks of `size` rows: the rows and counts.
    pub(crate) fn chunked(
        spec: &TableSpec,
        stored: &[RecordBatch],
        changes: &[SinkChange],
        size: usize,
    ) -> (Vec<RecordBatch>, TableCommitStats) {
        let mut m = ChunkedMerge::new(spec, changes).unwrap();
        let mut out = Vec::new();
        for chunk in chunks(stored, size) {
            match m.merge_chunk(&chunk).unwrap() {
                Chunk::Unchanged => out.extend(chunk),
                Chunk::Merged(b) => out.push(b),
            }
        }
        let (rest, stats) = m.finish().unwrap();
        out.push(rest);
        (out, stats)
    }
}
