//! Applying changes to a table's stored rows: upserts by key, soft and hard deletes, and
//! history-mode versions. Shared by every sink, so all destinations agree on the semantics.
//!
//! The rows of a table are a list of Arrow batches with the table's destination schema
//! ([`TableSpec::arrow_schema`]). [`merge`] returns the new rows; it never duplicates a
//! storage key.

use super::key_index::KeyIndex;
use crate::error::{Error, Result};
use crate::message::{Change, Scope, SinkChange};
use crate::sink::TableCommitStats;
use crate::spec::{ACTIVE, DELETED, END, END_OF_TIME_US, START, SYNCED, TableSpec};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray, new_null_array,
};
use arrow::compute::{concat, interleave};
use arrow::datatypes::{Field, SchemaRef, TimestampMicrosecondType};
use arrow::row::{RowConverter, Rows, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

mod chunked;
mod new_keys;
pub use chunked::{Chunk, ChunkedMerge};
pub use new_keys::merge_into_empty;

/// Aligns `batch` to `schema` by column name: missing columns become NULL, extra columns are
/// an error, and a type change is an error (never a silent conversion).
pub fn align(batch: &RecordBatch, schema: &SchemaRef, table: &str) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => columns.push(c.clone()),
            Some(c) => {
                return Err(Error::destination(format!(
                    "table `{table}` column `{}`: stored type {} is incompatible with declared type {}",
                    field.name(),
                    c.data_type(),
                    field.data_type()
                )));
            }
            None => columns.push(new_null_array(field.data_type(), batch.num_rows())),
        }
    }
    for f in batch.schema().fields() {
        if schema.field_with_name(f.name()).is_err() {
            return Err(Error::internal(format!(
                "table `{table}`: column `{}` is not declared",
                f.name()
            )));
        }
    }
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    batch: usize,
    row: usize,
    synced: i64,
    deleted: bool,
    start: i64,
    end: i64,
    active: bool,
    live: bool,
    /// When a soft delete in this merge marked the row: the value of the table's
    /// [`TableSpec::deleted_at_column`] (else the column keeps the row's value).
    deleted_at: Option<i64>,
}

/// The string values of `column` in `batches` for rows in `scope` (including soft-deleted
/// rows). Used by sinks to resolve [`Scope::Via`] against a parent table.
pub fn select_values(batches: &[RecordBatch], scope: &Scope, column: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(values) = b.column_by_name(column) else {
            continue;
        };
        let matcher = ScopeMatcher::new(scope, b)?;
        let f = ArrayFormatter::try_new(values.as_ref(), &FormatOptions::default())?;
        for row in 0..b.num_rows() {
            if values.is_valid(row) && matcher.matches(row) {
                out.push(f.value(row).to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

struct ScopeMatcher<'a> {
    all: bool,
    values: Option<(ArrayRef, HashSet<&'a str>)>,
}

impl<'a> ScopeMatcher<'a> {
    fn new(scope: &'a Scope, batch: &RecordBatch) -> Result<Self> {
        match scope {
            Scope::All => Ok(ScopeMatcher {
                all: true,
                values: None,
            }),
            Scope::Where { column, values } => {
                let col = batch.column_by_name(column).ok_or_else(|| {
                    Error::internal(format!("delete scope names unknown column `{column}`"))
                })?;
                let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8)?;
                Ok(ScopeMatcher {
                    all: false,
                    values: Some((col, values.iter().map(String::as_str).collect())),
                })
            }
            Scope::Via { .. } => Err(Error::internal(
                "a Via scope must be resolved by the sink before merging",
            )),
        }
    }
    fn matches(&self, row: usize) -> bool {
        if self.all {
            return true;
        }
        let (col, set) = self.values.as_ref().expect("where scope");
        let s = col.as_string::<i32>();
        s.is_valid(row) && set.contains(s.value(row))
    }
}

/// The rows a merge works on: every batch seen (stored and upserted), their row-format keys
/// (indexed: the live slot of each key), their row-format values (computed only when a key
/// repeats), and one slot per row version.
struct Rowset {
    batches: Vec<RecordBatch>,
    /// Batch `i`'s keys are key set `i`; each key maps to its live slot.
    live: KeyIndex<usize>,
    values: Vec<Option<Rows>>,
    slots: Vec<Slot>,
    value_conv: RowConverter,
    value_idx: Vec<usize>,
}

impl Rowset {
    /// Registers a batch and its keys; returns its index.
    fn push(&mut self, batch: RecordBatch, keys: Rows) -> usize {
        let set = self.live.add_rows(keys) as usize;
        self.batches.push(batch);
        self.values.push(None);
        debug_assert_eq!(set, self.batches.len() - 1);
        set
    }

    /// The row-format key of slot `si`.
    fn key_of(&self, si: usize) -> &[u8] {
        let s = &self.slots[si];
        self.live.key(s.batch as u32, s.row as u32)
    }

    /// The live slot of `key`.
    fn find(&self, key: &[u8]) -> Option<usize> {
        self.live.get(key).copied()
    }

    /// Makes `si` the live slot of its key (replacing any other).
    fn set_live(&mut self, si: usize) {
        let s = self.slots[si];
        self.live.insert(s.batch as u32, s.row as u32, si);
    }

    /// Removes the key of `si` from the live slots.
    fn unset_live(&mut self, si: usize) {
        let s = self.slots[si];
        self.live.remove(s.batch as u32, s.row as u32);
    }

    /// Whether two rows hold the same values (system columns aside).
    fn same_values(&mut self, a: (usize, usize), b: (usize, usize)) -> Result<bool> {
        for bi in [a.0, b.0] {
            if self.values[bi].is_none() {
                let cols = pick(&self.batches[bi], &self.value_idx);
                self.values[bi] = Some(self.value_conv.convert_columns(&cols)?);
            }
        }
        let row = |(bi, r): (usize, usize)| self.values[bi].as_ref().map(|v| v.row(r));
        Ok(row(a) == row(b))
    }
}

/// Slots by their text value of one scope column, so a `DeleteMissing { Where }` visits the
/// rows of its values only instead of every live key. Extended lazily: new slots, and slots
/// replaced in place (whose value may have changed), are added before each use; lookups
/// re-check the slot's current value.
struct ScopeIndex {
    column: String,
    /// The column as text, per batch (`None`: the batch lacks it).
    text: Vec<Option<ArrayRef>>,
    by_value: HashMap<String, Vec<usize>>,
    slots_seen: usize,
    moved_seen: usize,
}

impl ScopeIndex {
    fn new(column: &str) -> ScopeIndex {
        ScopeIndex {
            column: column.to_owned(),
            text: Vec::new(),
            by_value: HashMap::default(),
            slots_seen: 0,
            moved_seen: 0,
        }
    }

    fn catch_up(&mut self, rows: &Rowset, moved: &[usize]) -> Result<()> {
        for b in &rows.batches[self.text.len()..] {
            let text = match b.column_by_name(&self.column) {
                Some(c) => Some(arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)?),
                None => {
                    return Err(Error::internal(format!(
                        "delete scope names unknown column `{}`",
                        self.column
                    )));
                }
            };
            self.text.push(text);
        }
        let new = self.slots_seen..rows.slots.len();
        let replaced = moved[self.moved_seen..].iter().copied();
        for si in new.chain(replaced) {
            if let Some(v) = text_value(&self.text, &rows.slots[si]) {
                // One `String` per distinct value, not per row.
                match self.by_value.get_mut(v) {
                    Some(slots) => slots.push(si),
                    None => {
                        let v = v.to_owned();
                        self.by_value.insert(v, vec![si]);
                    }
                }
            }
        }
        self.slots_seen = rows.slots.len();
        self.moved_seen = moved.len();
        Ok(())
    }

    fn value_of(&self, s: &Slot) -> Option<&str> {
        text_value(&self.text, s)
    }

    fn slots_with(&self, value: &str) -> &[usize] {
        self.by_value.get(value).map_or(&[], Vec::as_slice)
    }
}

/// The text of slot `s` in a scope column held as text per batch.
fn text_value<'t>(text: &'t [Option<ArrayRef>], s: &Slot) -> Option<&'t str> {
    let col = text.get(s.batch)?.as_ref()?;
    let col = col.as_string::<i32>();
    col.is_valid(s.row).then(|| col.value(s.row))
}

/// Applies `changes` (in order) to the stored rows `existing` of the table declared by `spec`
/// (its destination declaration). Returns the new rows as one batch and what changed.
///
/// Semantics: an upsert replaces the row with the same key (un-deleting it); a delete sets
/// `_fivetran_deleted` where the table has it, else removes the row; in history mode an
/// upsert with new values closes the active version (`_fivetran_end` = new start − 1 ms,
/// `_fivetran_active` = false) and adds a new one, and a delete closes the active version.
pub fn merge(
    spec: &TableSpec,
    existing: &[RecordBatch],
    changes: &[SinkChange],
) -> Result<(RecordBatch, TableCommitStats)> {
    merge_materialized(spec, existing, changes, RUN_FACTOR)
}

/// [`merge`], materializing the result from runs of consecutive rows (`concat` of slices)
/// when the runs average at least `run_factor` rows, else row by row (`interleave`). Both
/// give the same batch; tests run each.
pub(crate) fn merge_materialized(
    spec: &TableSpec,
    existing: &[RecordBatch],
    changes: &[SinkChange],
    run_factor: usize,
) -> Result<(RecordBatch, TableCommitStats)> {
    let mut merger = Merger::new(spec, existing, changes)?;
    for batch in existing {
        merger.load_stored(batch)?;
    }
    for SinkChange {
        change,
        synced_at_us,
    } in changes
    {
        merger.apply(change, *synced_at_us)?;
    }
    merger.materialize(run_factor)
}

/// One merge in progress: the table's layout, every row seen so far (stored, then each
/// change's), and what the changes did.
struct Merger<'a> {
    spec: &'a TableSpec,
    /// The table's destination schema.
    schema: SchemaRef,
    /// The positions of the primary-key columns in `schema`.
    key_idx: Vec<usize>,
    /// Converts those columns to the row format.
    key_conv: RowConverter,
    rows: Rowset,
    /// Slots by scope-column value, for `DeleteMissing { Where }` (built on first use).
    scopes: Vec<ScopeIndex>,
    /// Slots replaced in place (an update), whose scope value may have changed.
    moved: Vec<usize>,
    stats: TableCommitStats,
}

impl<'a> Merger<'a> {
    /// An empty merge of `spec`'s table, its key index sized for every stored and upserted
    /// row.
    fn new(
        spec: &'a TableSpec,
        existing: &[RecordBatch],
        changes: &[SinkChange],
    ) -> Result<Merger<'a>> {
        let schema = spec.arrow_schema();
        let (key_idx, key_conv) = key_layout(&schema, spec)?;
        let value_idx = value_columns(&schema);
        let value_conv = RowConverter::new(sort_fields(&schema, &value_idx))?;
        let rows = Rowset {
            batches: Vec::new(),
            live: KeyIndex::with_capacity(most_keys(existing, changes)),
            values: Vec::new(),
            slots: Vec::new(),
            value_conv,
            value_idx,
        };
        Ok(Merger {
            spec,
            schema,
            key_idx,
            key_conv,
            rows,
            scopes: Vec::new(),
            moved: Vec::new(),
            stats: TableCommitStats::default(),
        })
    }

    /// Aligns `batch` to the destination schema and registers it with its keys; returns its
    /// index.
    fn register(&mut self, batch: &RecordBatch) -> Result<usize> {
        let b = align(batch, &self.schema, &self.spec.name)?;
        let keys = self.key_conv.convert_columns(&pick(&b, &self.key_idx))?;
        Ok(self.rows.push(b, keys))
    }

    /// Loads one batch of stored rows: a slot per row with its system columns, live unless
    /// it is a closed version of a versioned table.
    fn load_stored(&mut self, batch: &RecordBatch) -> Result<()> {
        let bi = self.register(batch)?;
        let b = &self.rows.batches[bi];
        let synced = ts_col(b, SYNCED);
        let deleted = bool_col(b, DELETED);
        let start = ts_col(b, START);
        let end = ts_col(b, END);
        let active = bool_col(b, ACTIVE);
        let versioned = self.spec.versioned();
        for row in 0..b.num_rows() {
            let row_synced = synced.as_ref().map_or(0, |a| a.value(row));
            let slot = Slot {
                batch: bi,
                row,
                synced: row_synced,
                deleted: deleted
                    .as_ref()
                    .is_some_and(|a| a.is_valid(row) && a.value(row)),
                // Rows stored before history mode was switched on start at their last sync.
                start: start
                    .as_ref()
                    .filter(|a| a.is_valid(row))
                    .map_or(row_synced, |a| a.value(row)),
                end: end
                    .as_ref()
                    .filter(|a| a.is_valid(row))
                    .map_or(END_OF_TIME_US, |a| a.value(row)),
                active: active
                    .as_ref()
                    .is_none_or(|a| !a.is_valid(row) || a.value(row)),
                live: true,
                deleted_at: None,
            };
            let si = self.rows.slots.len();
            self.rows.slots.push(slot);
            if !versioned || slot.active {
                self.rows.set_live(si);
            }
        }
        Ok(())
    }

    /// Applies one change, synced at `at` (epoch µs).
    fn apply(&mut self, change: &Change, at: i64) -> Result<()> {
        match change {
            Change::Upsert { batch, .. } => self.upsert(batch, at),
            Change::Delete { keys, .. } => self.delete(keys, at),
            Change::DeleteMissing { scope, keep, .. } => self.delete_missing(scope, keep, at),
        }
    }

    /// Upserts the rows of `batch`, each synced at its `_fivetran_synced` value if it has
    /// one, else at `at`.
    fn upsert(&mut self, batch: &RecordBatch, at: i64) -> Result<()> {
        // Register the batch first: a key repeated within it refers back to it.
        let bi = self.register(batch)?;
        let synced = ts_col(&self.rows.batches[bi], SYNCED);
        for row in 0..self.rows.batches[bi].num_rows() {
            let row_synced = synced
                .as_ref()
                .filter(|a| a.is_valid(row))
                .map_or(at, |a| a.value(row));
            self.upsert_row(bi, row, row_synced)?;
        }
        Ok(())
    }

    /// Upserts row `row` of registered batch `bi`: a new key is inserted; a key with the same
    /// values (and not deleted) is unchanged; otherwise the key's live row is replaced in
    /// place or, in history mode, closed and followed by a new version.
    fn upsert_row(&mut self, bi: usize, row: usize, synced: i64) -> Result<()> {
        let fresh = Slot {
            batch: bi,
            row,
            synced,
            deleted: false,
            start: synced,
            end: END_OF_TIME_US,
            active: true,
            live: true,
            deleted_at: None,
        };
        let key = self.rows.live.key(bi as u32, row as u32);
        let Some(si) = self.rows.find(key) else {
            self.stats.inserted += 1;
            self.add_live(fresh);
            return Ok(());
        };
        let history = self.spec.history;
        let old = self.rows.slots[si];
        let same = self.rows.same_values((old.batch, old.row), (bi, row))?;
        if same && !old.deleted {
            self.stats.unchanged += 1;
            if history {
                self.rows.slots[si].synced = synced;
            } else {
                self.replace_in_place(si, fresh);
            }
            return Ok(());
        }
        self.stats.updated += 1;
        if history && old.start != synced {
            self.close_version(si, synced);
            self.add_live(fresh);
        } else {
            self.replace_in_place(si, fresh);
        }
        Ok(())
    }

    /// Adds `slot` as the live slot of its key.
    fn add_live(&mut self, slot: Slot) {
        let si = self.rows.slots.len();
        self.rows.slots.push(slot);
        self.rows.set_live(si);
    }

    /// Replaces slot `si` by `fresh`, keeping its start (an update in place).
    fn replace_in_place(&mut self, si: usize, fresh: Slot) {
        let start = self.rows.slots[si].start;
        self.rows.slots[si] = Slot { start, ..fresh };
        self.moved.push(si);
    }

    /// History mode: closes the active version `si` just before a new version starting at
    /// `next_start`, and takes it out of the live slots.
    fn close_version(&mut self, si: usize, next_start: i64) {
        self.rows.slots[si].active = false;
        self.rows.slots[si].end = next_start - 1_000;
        self.rows.unset_live(si);
    }

    /// Deletes the live rows of `keys` (rows of the key columns), at `at`.
    fn delete(&mut self, keys: &RecordBatch, at: i64) -> Result<()> {
        let cols = key_columns(self.spec, keys, "delete")?;
        let deleted = self.key_conv.convert_columns(&cols)?;
        for row in 0..keys.num_rows() {
            if let Some(si) = self.rows.find(deleted.row(row).as_ref()) {
                self.delete_live(si, at);
            }
        }
        Ok(())
    }

    /// Deletes the live rows in `scope` whose key is not among `keep`, at `at`.
    fn delete_missing(&mut self, scope: &Scope, keep: &RecordBatch, at: i64) -> Result<()> {
        let cols = key_columns(self.spec, keep, "delete-missing")?;
        let keep_rows = self.key_conv.convert_columns(&cols)?;
        let keep: HashSet<&[u8]> = (0..keep.num_rows())
            .map(|r| keep_rows.row(r).data())
            .collect();
        let gone = match scope {
            Scope::All => self.live_not_kept(&keep),
            Scope::Where { column, values } => self.live_where_not_kept(column, values, &keep)?,
            Scope::Via { .. } => {
                return Err(Error::internal(
                    "a Via scope must be resolved by the sink before merging",
                ));
            }
        };
        for si in gone {
            self.delete_live(si, at);
        }
        Ok(())
    }

    /// The live slots whose key is not in `keep`.
    fn live_not_kept(&self, keep: &HashSet<&[u8]>) -> Vec<usize> {
        let mut gone = Vec::new();
        for &si in self.rows.live.values() {
            if !keep.contains(self.rows.key_of(si)) {
                gone.push(si);
            }
        }
        gone
    }

    /// The live slots whose `column` holds one of `values` and whose key is not in `keep`,
    /// found through the column's scope index (built on first use, extended on each).
    fn live_where_not_kept(
        &mut self,
        column: &str,
        values: &[String],
        keep: &HashSet<&[u8]>,
    ) -> Result<Vec<usize>> {
        let at_scope = match self.scopes.iter().position(|x| x.column == column) {
            Some(i) => i,
            None => {
                self.scopes.push(ScopeIndex::new(column));
                self.scopes.len() - 1
            }
        };
        let rows = &self.rows;
        let scope_index = &mut self.scopes[at_scope];
        scope_index.catch_up(rows, &self.moved)?;
        let mut gone = Vec::new();
        let mut seen: HashSet<usize> = HashSet::default();
        for v in values {
            for &si in scope_index.slots_with(v) {
                // A slot listed under a value it no longer holds is skipped here and found
                // under its current value.
                if scope_index.value_of(&rows.slots[si]) == Some(v.as_str())
                    && seen.insert(si)
                    && rows.find(rows.key_of(si)) == Some(si)
                    && !keep.contains(rows.key_of(si))
                {
                    gone.push(si);
                }
            }
        }
        Ok(gone)
    }

    /// Deletes the live slot `si` at `at` (soft, hard, or closing its history version),
    /// counting it when anything changed, and takes it out of the live slots when it is gone
    /// or closed.
    fn delete_live(&mut self, si: usize, at: i64) {
        let history = self.spec.history;
        if delete_slot(
            &mut self.rows.slots[si],
            at,
            self.spec.capture_deletes,
            history,
        ) {
            self.stats.deleted += 1;
        }
        if !self.rows.slots[si].live || history {
            self.rows.unset_live(si);
        }
    }

    /// The merged rows as one batch (the slots still stored, in order) and the counts.
    fn materialize(self, run_factor: usize) -> Result<(RecordBatch, TableCommitStats)> {
        let Merger {
            spec,
            schema,
            rows,
            stats,
            ..
        } = self;
        let Rowset { batches, slots, .. } = rows;
        let live: Vec<&Slot> = slots.iter().filter(|s| s.live).collect();
        let picks: Vec<(usize, usize)> = live.iter().map(|s| (s.batch, s.row)).collect();
        let runs = runs_of(&picks);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let col = match system_column(field.name(), &live) {
                Some(col) => col,
                None => data_column(&batches, i, field, &picks, &runs, run_factor)?,
            };
            columns.push(col);
        }
        if let Some(i) = stamp_column(spec, &schema) {
            columns[i] = stamp_deleted_at(&columns[i], &live)?;
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(live.len()));
        let out = RecordBatch::try_new_with_options(schema, columns, &options)?;
        Ok((out, stats))
    }
}

/// The positions of the data columns of `schema` (all but the system columns): the values
/// compared to tell an update from an unchanged row.
fn value_columns(schema: &SchemaRef) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !crate::spec::SYSTEM_COLUMNS.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect()
}

/// The most distinct keys a merge can meet: every stored and every upserted row.
fn most_keys(existing: &[RecordBatch], changes: &[SinkChange]) -> usize {
    existing.iter().map(RecordBatch::num_rows).sum::<usize>()
        + changes
            .iter()
            .map(|c| match &c.change {
                Change::Upsert { batch, .. } => batch.num_rows(),
                _ => 0,
            })
            .sum::<usize>()
}

/// The system column `name` of the `live` slots (from the slots, not the batches); `None`
/// when `name` is a data column.
fn system_column(name: &str, live: &[&Slot]) -> Option<ArrayRef> {
    let col: ArrayRef = match name {
        SYNCED => Arc::new(ts(live.iter().map(|s| s.synced))),
        DELETED => Arc::new(BooleanArray::from_iter(
            live.iter().map(|s| Some(s.deleted)),
        )),
        START => Arc::new(ts(live.iter().map(|s| s.start))),
        END => Arc::new(ts(live.iter().map(|s| s.end))),
        ACTIVE => Arc::new(BooleanArray::from_iter(live.iter().map(|s| Some(s.active)))),
        _ => return None,
    };
    Some(col)
}

/// Data column `i` (declared as `field`) of the rows `picks` of `batches`: the slices of
/// `runs` concatenated when the runs average at least `run_factor` rows, else the rows
/// interleaved one by one.
fn data_column(
    batches: &[RecordBatch],
    i: usize,
    field: &Field,
    picks: &[(usize, usize)],
    runs: &[(usize, usize, usize)],
    run_factor: usize,
) -> Result<ArrayRef> {
    let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
    if picks.is_empty() {
        Ok(new_null_array(field.data_type(), 0))
    } else if runs.len().saturating_mul(run_factor) <= picks.len() {
        let parts: Vec<ArrayRef> = runs
            .iter()
            .map(|&(b, from, len)| arrays[b].slice(from, len))
            .collect();
        let parts: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
        Ok(concat(&parts)?)
    } else {
        Ok(interleave(&arrays, picks)?)
    }
}

/// Materializing by runs pays off when runs average at least this many rows (a first
/// sync's commit: each upserted batch is one run).
const RUN_FACTOR: usize = 8;

/// `picks` as runs of consecutive rows of one batch: `(batch, first row, rows)`.
fn runs_of(picks: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for &(b, r) in picks {
        match runs.last_mut() {
            Some((rb, from, len)) if *rb == b && *from + *len == r => *len += 1,
            _ => runs.push((b, r, 1)),
        }
    }
    runs
}

/// The position of `spec`'s [`TableSpec::deleted_at_column`] in `schema`, when the table
/// soft-deletes and the column reaches the destination as a timestamp (not blocked, not
/// hashed).
fn stamp_column(spec: &TableSpec, schema: &SchemaRef) -> Option<usize> {
    let name = spec.deleted_at_column.as_deref()?;
    let i = schema.index_of(name).ok()?;
    let is_ts = matches!(
        schema.field(i).data_type(),
        arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _)
    );
    (spec.capture_deletes && is_ts).then_some(i)
}

/// `column` (the materialized deleted-at column of `live`) with the deletion time of every
/// slot soft-deleted in this merge.
fn stamp_deleted_at(column: &ArrayRef, live: &[&Slot]) -> Result<ArrayRef> {
    if live.iter().all(|s| s.deleted_at.is_none()) {
        return Ok(column.clone());
    }
    let old = column.as_primitive::<TimestampMicrosecondType>();
    let stamped: TimestampMicrosecondArray = live
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.deleted_at
                .or_else(|| old.is_valid(i).then(|| old.value(i)))
        })
        .collect();
    Ok(Arc::new(stamped.with_timezone_opt(old.timezone())))
}

/// Deletes one slot; returns whether anything changed.
fn delete_slot(s: &mut Slot, at: i64, has_deleted: bool, history: bool) -> bool {
    if history {
        if !s.active {
            return false;
        }
        s.active = false;
        s.end = at;
        if has_deleted {
            s.deleted = true;
            s.deleted_at = Some(at);
        }
        return true;
    }
    if has_deleted {
        if s.deleted {
            return false;
        }
        s.deleted = true;
        s.synced = at;
        s.deleted_at = Some(at);
        true
    } else {
        s.live = false;
        true
    }
}

/// Row-format sort fields of the columns `idx` of `schema`.
fn sort_fields(schema: &SchemaRef, idx: &[usize]) -> Vec<SortField> {
    idx.iter()
        .map(|&i| SortField::new(schema.field(i).data_type().clone()))
        .collect()
}

/// The positions of `spec`'s primary-key columns in `schema` (its destination schema) and a
/// converter of those columns to the row format.
fn key_layout(schema: &SchemaRef, spec: &TableSpec) -> Result<(Vec<usize>, RowConverter)> {
    let key_idx: Vec<usize> = spec
        .primary_key
        .iter()
        .map(|k| schema.index_of(k))
        .collect::<std::result::Result<_, _>>()?;
    let conv = RowConverter::new(sort_fields(schema, &key_idx))?;
    Ok((key_idx, conv))
}

/// The primary-key columns of `batch` (the keys of a `what` change of `spec`'s table).
fn key_columns(spec: &TableSpec, batch: &RecordBatch, what: &str) -> Result<Vec<ArrayRef>> {
    spec.primary_key
        .iter()
        .map(|k| {
            batch.column_by_name(k).cloned().ok_or_else(|| {
                Error::internal(format!("{what} on `{}` lacks key column `{k}`", spec.name))
            })
        })
        .collect()
}

fn pick(b: &RecordBatch, idx: &[usize]) -> Vec<ArrayRef> {
    idx.iter().map(|&i| b.column(i).clone()).collect()
}

fn ts_col(b: &RecordBatch, name: &str) -> Option<TimestampMicrosecondArray> {
    b.column_by_name(name)
        .filter(|c| c.null_count() < c.len())
        .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone())
}

fn bool_col(b: &RecordBatch, name: &str) -> Option<BooleanArray> {
    b.column_by_name(name)
        .filter(|c| c.null_count() < c.len())
        .map(|c| c.as_boolean().clone())
}

fn ts(values: impl Iterator<Item = i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC")
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ColumnSpec, ColumnType, SyncKind};
    use arrow::array::{Int64Array, StringArray};

    pub(super) fn spec(capture_deletes: bool, history: bool) -> TableSpec {
        let mut t = TableSpec::new(
            "note",
            SyncKind::Child {
                parent: "opportunity".into(),
                parent_column: "opportunity_id".into(),
            },
        )
        .column(ColumnSpec::new("id", ColumnType::String))
        .column(ColumnSpec::new("opportunity_id", ColumnType::String))
        .column(ColumnSpec::new("score", ColumnType::Int64))
        .key(["id"]);
        t.capture_deletes = capture_deletes;
        t.history = history;
        t
    }

    fn rows(t: &TableSpec, data: &[(&str, &str, i64)], synced: i64) -> RecordBatch {
        let mut fields: Vec<_> = t
            .source_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(arrow::datatypes::Field::new(
            SYNCED,
            ColumnType::Timestamp.arrow_type(),
            false,
        ));
        RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            vec![
                Arc::new(StringArray::from_iter_values(data.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(data.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(data.iter().map(|r| r.2))),
                Arc::new(ts(data.iter().map(|_| synced))),
            ],
        )
        .unwrap()
    }

    pub(super) fn up(t: &TableSpec, data: &[(&str, &str, i64)], at: i64) -> SinkChange {
        SinkChange {
            change: Change::Upsert {
                table: t.name.clone(),
                batch: rows(t, data, at),
            },
            synced_at_us: at,
        }
    }

    pub(super) fn keys(ids: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(StringArray::from_iter_values(ids.iter().copied())) as ArrayRef,
        )])
        .unwrap()
    }

    /// The string value of `column` at `row` of `batch`.
    fn string_at(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
        let c = batch.column_by_name(column)?;
        if c.is_null(row) {
            return None;
        }
        if let Some(s) = c.as_any().downcast_ref::<StringArray>() {
            return Some(s.value(row).to_owned());
        }
        ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())
            .ok()
            .map(|f| f.value(row).to_string())
    }

    pub(super) fn col(b: &RecordBatch, name: &str) -> Vec<String> {
        (0..b.num_rows())
            .map(|r| string_at(b, name, r).unwrap_or_else(|| "∅".into()))
            .collect()
    }

    #[test]
    fn upserts_replace_by_key() {
        let t = spec(false, false);
        let (out, stats) =
            merge(&t, &[], &[up(&t, &[("a", "o1", 1), ("b", "o1", 2)], 10)]).unwrap();
        assert_eq!(stats.inserted, 2);
        let (out, stats) =
            merge(&t, &[out], &[up(&t, &[("a", "o1", 5), ("c", "o2", 3)], 20)]).unwrap();
        assert_eq!((stats.inserted, stats.updated), (1, 1));
        assert_eq!(col(&out, "id"), ["a", "b", "c"]);
        assert_eq!(col(&out, "score"), ["5", "2", "3"]);
        let (_, stats) = merge(&t, &[out], &[up(&t, &[("a", "o1", 5)], 30)]).unwrap();
        assert_eq!(stats.unchanged, 1);
    }

    #[test]
    fn a_key_repeated_within_one_batch_keeps_the_last_row() {
        let t = spec(false, false);
        let (out, stats) = merge(
            &t,
            &[],
            &[up(
                &t,
                &[("a", "o1", 1), ("a", "o1", 2), ("b", "o1", 3)],
                10,
            )],
        )
        .unwrap();
        assert_eq!(col(&out, "id"), ["a", "b"]);
        assert_eq!(col(&out, "score"), ["2", "3"]);
        assert_eq!((stats.inserted, stats.updated), (2, 1));
    }

    #[test]
    fn soft_and_hard_deletes() {
        let soft = spec(true, false);
        let (out, _) = merge(
            &soft,
            &[],
            &[up(&soft, &[("a", "o1", 1), ("b", "o1", 2)], 10)],
        )
        .unwrap();
        let del = SinkChange {
            change: Change::Delete {
                table: "note".into(),
                keys: keys(&["a", "zz"]),
            },
            synced_at_us: 20,
        };
        let (out, stats) = merge(&soft, &[out], std::slice::from_ref(&del)).unwrap();
        assert_eq!(stats.deleted, 1);
        assert_eq!(col(&out, DELETED), ["true", "false"]);
        // An upsert brings it back.
        let (out, stats) = merge(&soft, &[out], &[up(&soft, &[("a", "o1", 1)], 30)]).unwrap();
        assert_eq!(stats.updated, 1);
        assert_eq!(col(&out, DELETED), ["false", "false"]);

        let hard = spec(false, false);
        let (out, _) = merge(
            &hard,
            &[],
            &[up(&hard, &[("a", "o1", 1), ("b", "o1", 2)], 10)],
        )
        .unwrap();
        let (out, _) = merge(&hard, &[out], &[del]).unwrap();
        assert_eq!(col(&out, "id"), ["b"]);
    }

    /// A soft delete sets the declared deleted-at column to the sync time, through `Delete`
    /// and `DeleteMissing`; rows not deleted keep their value; an upsert brings the source's
    /// value back; a row already deleted keeps its first deletion time.
    #[test]
    fn soft_deletes_stamp_the_declared_deleted_at_column() {
        // Upserts carry no deleted-at value (aligned to NULL).
        let base = spec(true, false);
        let mut t = base
            .clone()
            .column(ColumnSpec::new("deleted_at", ColumnType::Timestamp));
        t.deleted_at_column = Some("deleted_at".into());
        t.validate().unwrap();
        let stamps = |b: &RecordBatch| -> Vec<Option<i64>> {
            let c = b.column_by_name("deleted_at").unwrap();
            c.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect()
        };
        let (out, _) = merge(
            &t,
            &[],
            &[up(
                &base,
                &[("a", "o1", 1), ("b", "o1", 2), ("c", "o2", 3)],
                10,
            )],
        )
        .unwrap();
        assert_eq!(stamps(&out), [None, None, None]);
        let gone = SinkChange {
            change: Change::DeleteMissing {
                table: "note".into(),
                scope: Scope::Where {
                    column: "opportunity_id".into(),
                    values: vec!["o1".into()],
                },
                keep: keys(&["b"]),
            },
            synced_at_us: 20_000_000,
        };
        let (out, stats) = merge(&t, &[out], std::slice::from_ref(&gone)).unwrap();
        assert_eq!(stats.deleted, 1);
        assert_eq!(col(&out, DELETED), ["true", "false", "false"]);
        assert_eq!(stamps(&out), [Some(20_000_000), None, None]);
        // Deleting it again later keeps the first deletion time.
        let again = SinkChange {
            synced_at_us: 30_000_000,
            ..gone
        };
        let del_c = SinkChange {
            change: Change::Delete {
                table: "note".into(),
                keys: keys(&["c"]),
            },
            synced_at_us: 30_000_000,
        };
        let (out, _) = merge(&t, &[out], &[again, del_c]).unwrap();
        assert_eq!(stamps(&out), [Some(20_000_000), None, Some(30_000_000)]);
        // An upsert writes the source's value (none) again.
        let (out, _) = merge(&t, &[out], &[up(&base, &[("a", "o1", 1)], 40)]).unwrap();
        assert_eq!(stamps(&out)[0], None);
        assert_eq!(col(&out, DELETED)[0], "false");
        // Without the declaration the column is left alone.
        let mut plain = t.clone();
        plain.deleted_at_column = None;
        let del = SinkChange {
            change: Change::Delete {
                table: "note".into(),
                keys: keys(&["b"]),
            },
            synced_at_us: 50_000_000,
        };
        let (out, _) = merge(&plain, &[out], &[del]).unwrap();
        assert_eq!(stamps(&out)[1], None);
        assert_eq!(col(&out, DELETED)[1], "true");
    }

    #[test]
    fn delete_missing_is_scoped() {
        let t = spec(true, false);
        let (out, _) = merge(
            &t,
            &[],
            &[up(
                &t,
                &[("a", "o1", 1), ("b", "o1", 2), ("c", "o2", 3)],
                10,
            )],
        )
        .unwrap();
        let dm = SinkChange {
            change: Change::DeleteMissing {
                table: "note".into(),
                scope: Scope::Where {
                    column: "opportunity_id".into(),
                    values: vec!["o1".into()],
                },
                keep: keys(&["b"]),
            },
            synced_at_us: 20,
        };
        let (out, stats) = merge(&t, &[out], &[dm]).unwrap();
        assert_eq!(stats.deleted, 1);
        assert_eq!(col(&out, DELETED), ["true", "false", "false"]);
        let all = SinkChange {
            change: Change::DeleteMissing {
                table: "note".into(),
                scope: Scope::All,
                keep: keys(&[]),
            },
            synced_at_us: 30,
        };
        let (out, stats) = merge(&t, &[out], &[all]).unwrap();
        assert_eq!(stats.deleted, 2);
        assert_eq!(col(&out, DELETED), ["true", "true", "true"]);
        assert_eq!(
            select_values(
                &[out],
                &Scope::Where {
                    column: "opportunity_id".into(),
                    values: vec!["o1".into()]
                },
                "id"
            )
            .unwrap(),
            ["a", "b"]
        );
    }

    #[test]
    fn history_keeps_versions() {
        let t = spec(false, true);
        let (out, _) = merge(&t, &[], &[up(&t, &[("a", "o1", 1)], 1_000_000)]).unwrap();
        let (out, s) = merge(&t, &[out], &[up(&t, &[("a", "o1", 1)], 2_000_000)]).unwrap();
        assert_eq!((s.unchanged, out.num_rows()), (1, 1));
        let (out, s) = merge(&t, &[out], &[up(&t, &[("a", "o1", 2)], 3_000_000)]).unwrap();
        assert_eq!((s.updated, out.num_rows()), (1, 2));
        assert_eq!(col(&out, ACTIVE), ["false", "true"]);
        let end = out
            .column_by_name(END)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(end.value(0), 2_999_000);
        assert_eq!(end.value(1), END_OF_TIME_US);
        let del = SinkChange {
            change: Change::Delete {
                table: "note".into(),
                keys: keys(&["a"]),
            },
            synced_at_us: 4_000_000,
        };
        let (out, s) = merge(&t, &[out], &[del]).unwrap();
        assert_eq!(s.deleted, 1);
        assert_eq!(col(&out, ACTIVE), ["false", "false"]);
        // Re-created later: a third version.
        let (out, _) = merge(&t, &[out], &[up(&t, &[("a", "o1", 2)], 5_000_000)]).unwrap();
        assert_eq!(col(&out, ACTIVE), ["false", "false", "true"]);
    }

    #[test]
    fn type_changes_are_errors() {
        let t = spec(false, false);
        let bad = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            ("score", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .unwrap();
        let e = merge(&t, &[bad], &[]).unwrap_err();
        assert!(e.to_string().contains("incompatible"), "{e}");
    }
}
