//! JSON → Arrow decoding, driven by the table declarations.
//!
//! Each table gets a [`Writer`]: one Arrow builder per declared column, and for each column an
//! [`Ex`]tractor derived from the schema's `api` path (`archived.archivedAt` → the nested
//! field; `stageChanges[].toStageId` → a field of the array element; `tags[]` → the element
//! itself; `(parent opportunity id)` → the parent id the caller passes), with hand-written
//! overrides for computed columns. Values are converted leniently into the column's type:
//! numbers and timestamps may arrive as numeric strings, epoch milliseconds become
//! `Timestamp(µs, UTC)`, absent or null fields become NULL.

pub(crate) mod forms;
pub(crate) mod lookups;
pub(crate) mod opportunity;

use crate::catalog;
use crate::lever_tables::Table;
use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use sluice_core::{ColumnType, Result, TableSpec};
use std::sync::Arc;

/// A JSON value of a parsed response body (a handle into its tape; see `crate::json`).
pub(crate) use crate::json::{Array as JsonArray, Field, Kind, Number, Value};

/// A cell value before conversion into the column type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    /// NULL.
    Null,
    /// A JSON value (converted leniently).
    J(Value<'a>),
    /// Text.
    S(&'a str),
    /// An integer.
    I(i64),
}

impl<'a> From<Option<Value<'a>>> for Cell<'a> {
    fn from(v: Option<Value<'a>>) -> Self {
        match v {
            Some(v) if !v.is_null() => Cell::J(v),
            _ => Cell::Null,
        }
    }
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Cell::Null, Cell::S)
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum Ex {
    /// A (nested) field of the current object.
    Path(Vec<String>),
    /// The current element itself (arrays of scalars).
    Elem,
    /// Caller-provided value `n` (parent ids, positions, computed values).
    Slot(usize),
}

/// Extractors that cannot be derived from the schema's `api` text: the slots its
/// declaration names (`lever_tables`). Tables with run-time columns add theirs.
fn overrides(table: &str) -> Vec<(String, Ex)> {
    Table::named(table)
        .map(|t| t.decl().slots)
        .unwrap_or_default()
        .iter()
        .map(|(column, slot)| ((*column).to_owned(), Ex::Slot(*slot)))
        .collect()
}

/// Writers of the enabled tables among a set (one decode unit: a page, a list).
pub(crate) struct Tables {
    writers: Vec<Writer>,
    /// Template ids whose field definitions were written already.
    pub(crate) templates: std::collections::HashSet<String>,
}

impl Tables {
    /// Writers for those of `names` that are declared in `enabled`.
    pub(crate) fn new<'a>(
        enabled: impl IntoIterator<Item = &'a TableSpec>,
        names: &[&str],
    ) -> Tables {
        let writers = enabled
            .into_iter()
            .filter(|t| names.contains(&t.name.as_str()))
            .map(|t| Writer::new(t, &[]))
            .collect();
        Tables {
            writers,
            templates: Default::default(),
        }
    }

    /// Adds a writer built by the caller (tables with run-time columns).
    pub(crate) fn insert(&mut self, w: Writer) {
        self.writers.retain(|x| x.table() != w.table());
        self.writers.push(w);
    }

    /// The writer of `table`, when enabled.
    #[inline]
    pub(crate) fn writer(&mut self, table: Table) -> Option<&mut Writer> {
        let name = table.name();
        self.writers.iter_mut().find(|w| w.table() == name)
    }

    /// Takes every table's rows (including empty ones, which callers need for deletes).
    pub(crate) fn finish_all(&mut self) -> Result<Vec<(String, RecordBatch)>> {
        self.writers
            .iter_mut()
            .map(|w| Ok((w.table().to_owned(), w.finish()?)))
            .collect()
    }

    /// Moves the data problems met so far (after [`Tables::finish_all`]) into `into`.
    pub(crate) fn drain_issues(&mut self, into: &mut Issues) {
        for w in &mut self.writers {
            w.drain_issues(into);
        }
    }
}

/// Counts of values of an unexpected JSON type, per (table, column): written as NULL, or, in
/// a primary-key column, the row dropped. Reported once per (table, column) at the end of a
/// sync, not once per row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Issues {
    /// (table, column or field) → (values written as NULL, rows dropped).
    pub(crate) counts: std::collections::BTreeMap<(String, String), (u64, u64)>,
}

impl Issues {
    /// Adds `nulled` values written as NULL and `dropped` rows of `table`.`column`.
    pub(crate) fn add(&mut self, table: &str, column: &str, nulled: u64, dropped: u64) {
        if nulled == 0 && dropped == 0 {
            return;
        }
        let e = self
            .counts
            .entry((table.to_owned(), column.to_owned()))
            .or_default();
        e.0 += nulled;
        e.1 += dropped;
    }

    /// Adds every count of `other`.
    pub(crate) fn merge(&mut self, other: Issues) {
        for ((t, c), (n, d)) in other.counts {
            self.add(&t, &c, n, d);
        }
    }

    /// Logs one warning per (table, column).
    pub(crate) fn report(&self) {
        for ((table, column), (nulled, dropped)) in &self.counts {
            if *nulled > 0 {
                tracing::warn!(
                    table = %table,
                    column = %column,
                    count = nulled,
                    "Lever sent {nulled} value(s) of an unexpected JSON type for {table}.{column}: written as NULL (rows kept)"
                );
            }
            if *dropped > 0 {
                tracing::warn!(
                    table = %table,
                    column = %column,
                    count = dropped,
                    "{dropped} {table} row(s) dropped: primary-key column {column} missing, null or of an unexpected JSON type"
                );
            }
        }
    }
}

/// Slot conventions used by the derived extractors.
pub(crate) const SLOT_PARENT: usize = 0;
/// The position in the parent's array.
pub(crate) const SLOT_INDEX: usize = 1;
/// The contact id of the parent opportunity.
pub(crate) const SLOT_CONTACT: usize = 2;
/// First slot free for table-specific computed values.
pub(crate) const SLOT_EXTRA: usize = 3;

/// Derives the extractor of `table.column` from the schema's `api` text.
pub(crate) fn derive_ex(table: &str, column: &str, ty: ColumnType) -> Option<Ex> {
    let api = catalog::column_api(table, column)?;
    if api.starts_with("(parent") {
        return Some(Ex::Slot(SLOT_PARENT));
    }
    if api.starts_with("(position") {
        return Some(Ex::Slot(SLOT_INDEX));
    }
    if api.starts_with("(opportunity.contact)") {
        return Some(Ex::Slot(SLOT_CONTACT));
    }
    if api.starts_with('(') {
        return None;
    }
    let token = api.split_whitespace().next()?;
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '[' || c == ']')
    {
        return None;
    }
    if let Some(arr) = token.strip_suffix("[]") {
        if arr.contains("[]") {
            return Some(Ex::Elem);
        }
        if ty == ColumnType::Json {
            return Some(Ex::Path(split_path(arr)));
        }
        return Some(Ex::Elem);
    }
    let rel = token.rsplit("[].").next().unwrap_or(token);
    Some(Ex::Path(split_path(rel)))
}

fn split_path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_owned).collect()
}

/// Looks `path` up in `v`: `Ok(None)` when a step is absent or null, `Err(())` when a step
/// that must hold an object holds something else (`archived: 5` for `archived.archivedAt`).
#[inline]
pub(crate) fn lookup<'a, S: AsRef<str>>(
    v: Value<'a>,
    path: &[S],
) -> std::result::Result<Option<Value<'a>>, ()> {
    let mut cur = v;
    for k in path {
        cur = match cur.kind() {
            Kind::Object(o) => match o.get(k.as_ref()) {
                Some(x) => x,
                None => return Ok(None),
            },
            Kind::Null => return Ok(None),
            _ => return Err(()),
        };
    }
    Ok(if cur.is_null() { None } else { Some(cur) })
}

/// The fields of the object a [`Writer`] is reading, for its columns' lookups: objects of one
/// endpoint list their fields in the same order, so each column first tries the field index
/// where it found its key in the previous object, and searches only when that misses.
#[derive(Default)]
struct FieldGuesses {
    /// Node positions of the current object's keys and values ([`Object::positions_into`]).
    positions: Vec<(u32, u32)>,
    /// Per column, the field index where its path's first key was last found.
    guesses: Vec<usize>,
}

impl FieldGuesses {
    fn new(columns: usize) -> FieldGuesses {
        FieldGuesses {
            positions: Vec::new(),
            guesses: vec![0; columns],
        }
    }

    /// Reads the positions of `v`'s fields (none when it is not an object).
    fn read(&mut self, v: Value<'_>) {
        self.positions.clear();
        if let Some(o) = v.as_object() {
            o.positions_into(&mut self.positions);
        }
    }

    /// [`lookup`] of column `column`'s `path` in `v`, the object last given to
    /// [`FieldGuesses::read`].
    #[inline]
    fn lookup<'a>(
        &mut self,
        v: Value<'a>,
        column: usize,
        path: &[String],
    ) -> std::result::Result<Option<Value<'a>>, ()> {
        let (Some((first, rest)), Some(o)) = (path.split_first(), v.as_object()) else {
            return lookup(v, path);
        };
        let guess = &mut self.guesses[column];
        let found = match self.positions.get(*guess).map(|p| o.field_at(*p)) {
            Some((k, x)) if k == first => x,
            _ => {
                let hit = self
                    .positions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i, o.field_at(*p)))
                    .find(|(_, (k, _))| k == first);
                match hit {
                    Some((i, (_, x))) => {
                        *guess = i;
                        x
                    }
                    None => return Ok(None),
                }
            }
        };
        lookup(found, rest)
    }
}

/// A string field.
#[inline]
pub(crate) fn get_str<'a>(v: Value<'a>, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An array field (empty when absent or not an array).
#[inline]
pub(crate) fn get_arr<'a>(v: Value<'a>, key: &str) -> JsonArray<'a> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| JsonArray::empty())
}

/// An id that may arrive as a string or as an expanded object with `id`.
pub(crate) fn id_of(v: Value<'_>) -> Option<&str> {
    match v.kind() {
        Kind::Str(s) => Some(s),
        Kind::Object(o) => o.get("id").and_then(Value::as_str),
        _ => None,
    }
}

enum Builder {
    Str(StringBuilder),
    Json(StringBuilder),
    Bool(BooleanBuilder),
    Int(Int64Builder),
    F64(Float64Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    /// Rows appended so far.
    fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match self {
            Builder::Str(b) | Builder::Json(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Int(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Ts(b) => b.len(),
        }
    }
}

/// What a [`Writer`] derives from its table's declaration once: the extractors (from the
/// schema's `api` paths and the overrides), the key columns and the Arrow schema. Cached per
/// table so that the writers of every page do not derive them again.
struct Template {
    spec: Arc<TableSpec>,
    schema: arrow::datatypes::SchemaRef,
    ex: Arc<[Option<Ex>]>,
    is_key: Arc<[bool]>,
    sizes: Arc<LastSizes>,
}

/// How many rows, and per text column how many bytes, the table's last finished writer held:
/// the next writer's builders start at that capacity instead of growing to it (pages of one
/// endpoint are alike). A hint only, shared by the writers of every thread.
struct LastSizes {
    rows: std::sync::atomic::AtomicUsize,
    bytes: Box<[std::sync::atomic::AtomicUsize]>,
}

impl LastSizes {
    /// Capacities beyond these are not reserved up front (one unusual page must not make
    /// every later writer allocate for it).
    const MAX_ROWS: usize = 1 << 16;
    const MAX_BYTES: usize = 1 << 22;

    fn new(columns: usize) -> LastSizes {
        LastSizes {
            rows: Default::default(),
            bytes: (0..columns).map(|_| Default::default()).collect(),
        }
    }

    fn rows(&self) -> usize {
        self.rows
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(Self::MAX_ROWS)
    }

    fn bytes(&self, column: usize) -> usize {
        self.bytes[column]
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(Self::MAX_BYTES)
    }

    fn remember(&self, rows: usize, column_bytes: impl Iterator<Item = (usize, usize)>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rows.store(rows, Relaxed);
        for (i, b) in column_bytes {
            self.bytes[i].store(b, Relaxed);
        }
    }
}

impl Template {
    fn build(spec: &TableSpec, extra: &[(String, Ex)]) -> Template {
        let mut overrides = overrides(&spec.name);
        overrides.extend(extra.iter().cloned());
        let ex = spec
            .columns
            .iter()
            .map(|c| {
                overrides
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map(|(_, e)| e.clone())
                    .or_else(|| derive_ex(&spec.name, &c.name, c.ty))
            })
            .collect();
        Template {
            schema: spec.source_schema(),
            spec: Arc::new(spec.clone()),
            ex,
            is_key: spec.columns.iter().map(|c| spec.is_key(&c.name)).collect(),
            sizes: Arc::new(LastSizes::new(spec.columns.len())),
        }
    }

    /// The template of `spec` (without extra extractors), from the cache when the cached
    /// declaration is the same.
    fn cached(spec: &TableSpec) -> Arc<Template> {
        type Cache = std::sync::Mutex<std::collections::HashMap<String, Arc<Template>>>;
        static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(t) = cache.lock().expect("template cache").get(&spec.name)
            && *t.spec == *spec
        {
            return t.clone();
        }
        let t = Arc::new(Template::build(spec, &[]));
        cache
            .lock()
            .expect("template cache")
            .insert(spec.name.clone(), t.clone());
        t
    }
}

/// Rows of one table being built: one Arrow builder per declared column.
pub(crate) struct Writer {
    spec: Arc<TableSpec>,
    schema: arrow::datatypes::SchemaRef,
    ex: Arc<[Option<Ex>]>,
    /// Field positions of the object being read, and where each column found its key.
    fields: FieldGuesses,
    builders: Vec<Builder>,
    scratch: String,
    /// Whether column `i` is part of the primary key.
    is_key: Arc<[bool]>,
    /// The table's last writer's sizes (the builders' starting capacity).
    sizes: Arc<LastSizes>,
    /// Values of an unexpected type written as NULL, per column (key columns excluded: their
    /// rows are dropped and counted in `dropped`).
    nulled: Vec<u64>,
    /// Rows dropped, per key column (the first NULL key column of the row).
    dropped: Vec<u64>,
    /// Array fields of an unexpected type (no child rows written), per field name.
    bad_arrays: std::collections::BTreeMap<String, u64>,
}

impl Writer {
    /// A writer for `spec`, with extractors derived from the schema and the table's
    /// [`overrides`] plus `extra`.
    pub(crate) fn new(spec: &TableSpec, extra: &[(String, Ex)]) -> Writer {
        let t = if extra.is_empty() {
            Template::cached(spec)
        } else {
            Arc::new(Template::build(spec, extra))
        };
        let rows = t.sizes.rows();
        let builders = spec
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let text = || StringBuilder::with_capacity(rows, t.sizes.bytes(i));
                match c.ty {
                    ColumnType::String => Builder::Str(text()),
                    ColumnType::Json => Builder::Json(text()),
                    ColumnType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
                    ColumnType::Int64 => Builder::Int(Int64Builder::with_capacity(rows)),
                    ColumnType::Float64 => Builder::F64(Float64Builder::with_capacity(rows)),
                    ColumnType::Timestamp => Builder::Ts(
                        TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
                    ),
                }
            })
            .collect();
        let n = spec.columns.len();
        Writer {
            schema: t.schema.clone(),
            spec: t.spec.clone(),
            ex: t.ex.clone(),
            fields: FieldGuesses::new(n),
            builders,
            scratch: String::new(),
            is_key: t.is_key.clone(),
            sizes: t.sizes.clone(),
            nulled: vec![0; n],
            dropped: vec![0; n],
            bad_arrays: Default::default(),
        }
    }

    /// The array `key` of `obj`, for one child row per element: empty when absent or null;
    /// also empty, and counted as a problem of this table, when it is not an array.
    pub(crate) fn arr<'a>(&mut self, obj: Value<'a>, key: &str) -> JsonArray<'a> {
        match obj.field(key).map(Value::kind) {
            Some(Kind::Array(a)) => a,
            None | Some(Kind::Null) => JsonArray::empty(),
            Some(_) => {
                *self.bad_arrays.entry(key.to_owned()).or_default() += 1;
                JsonArray::empty()
            }
        }
    }

    fn drain_issues(&mut self, into: &mut Issues) {
        let table = &self.spec.name;
        for (i, c) in self.spec.columns.iter().enumerate() {
            into.add(table, &c.name, self.nulled[i], self.dropped[i]);
            self.nulled[i] = 0;
            self.dropped[i] = 0;
        }
        for (k, n) in std::mem::take(&mut self.bad_arrays) {
            into.add(table, &k, n, 0);
        }
    }

    /// Columns of the table without an extractor (must be empty for a complete mapping).
    #[cfg(test)]
    pub(crate) fn unmapped(&self) -> Vec<&str> {
        self.spec
            .columns
            .iter()
            .zip(self.ex.iter())
            .filter(|(_, e)| e.is_none())
            .map(|(c, _)| c.name.as_str())
            .collect()
    }

    /// The table name.
    pub(crate) fn table(&self) -> &str {
        &self.spec.name
    }

    /// Appends one row: each column from `obj` (or the element `elem`) via its extractor, or
    /// from `slots`.
    pub(crate) fn push(&mut self, obj: Value<'_>, slots: &[Cell<'_>]) {
        self.fields.read(obj);
        for i in 0..self.builders.len() {
            let cell = match &self.ex[i] {
                Some(Ex::Path(p)) => match self.fields.lookup(obj, i, p) {
                    Ok(v) => Cell::from(v),
                    Err(()) => {
                        self.bad(i);
                        Cell::Null
                    }
                },
                Some(Ex::Elem) => Cell::from(Some(obj)),
                Some(Ex::Slot(n)) => slots.get(*n).copied().unwrap_or(Cell::Null),
                None => Cell::Null,
            };
            if !append(&mut self.builders[i], cell, &mut self.scratch) {
                self.bad(i);
            }
        }
    }

    /// Counts a value of an unexpected type in column `i` (written as NULL).
    #[cold]
    fn bad(&mut self, i: usize) {
        if !self.is_key[i] {
            self.nulled[i] += 1;
        }
    }

    /// Appends one row whose every column comes from `cell_of(column index)`.
    pub(crate) fn push_with<'a>(&mut self, mut cell_of: impl FnMut(usize, &str) -> Cell<'a>) {
        for i in 0..self.builders.len() {
            let cell = cell_of(i, &self.spec.columns[i].name);
            if !append(&mut self.builders[i], cell, &mut self.scratch) {
                self.bad(i);
            }
        }
    }

    /// Takes the rows built so far as a batch with the table's source schema.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let text_bytes = self
            .builders
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b {
                Builder::Str(b) | Builder::Json(b) => Some((i, b.values_slice().len())),
                _ => None,
            });
        let rows = self.builders.first().map_or(0, Builder::len);
        self.sizes.remember(rows, text_bytes);
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Str(b) | Builder::Json(b) => Arc::new(b.finish()),
                    Builder::Bool(b) => Arc::new(b.finish()),
                    Builder::Int(b) => Arc::new(b.finish()),
                    Builder::F64(b) => Arc::new(b.finish()),
                    Builder::Ts(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let mut columns = columns;
        // Rows without a full primary key cannot be stored: drop them.
        let key_idx: Vec<usize> = self
            .spec
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| self.spec.is_key(&c.name))
            .map(|(i, _)| i)
            .collect();
        if key_idx.iter().any(|&i| columns[i].null_count() > 0) {
            let n = columns[0].len();
            let mut dropped = std::mem::take(&mut self.dropped);
            let mask: arrow::array::BooleanArray = (0..n)
                .map(|r| match key_idx.iter().find(|&&i| columns[i].is_null(r)) {
                    Some(&i) => {
                        dropped[i] += 1;
                        Some(false)
                    }
                    None => Some(true),
                })
                .collect();
            self.dropped = dropped;
            tracing::debug!(
                table = %self.spec.name,
                dropped = mask.false_count(),
                "rows without a primary key value dropped"
            );
            columns = columns
                .iter()
                .map(|c| arrow::compute::filter(c, &mask))
                .collect::<std::result::Result<_, _>>()?;
        }
        // One row per key within a batch: the first occurrence wins (a template's fields are
        // repeated by every form that uses it; Lever may repeat a tag).
        if columns[0].len() > 1 {
            // FxHash: keys of API data, not hash-flooding input; SipHash cost more here.
            let mask: arrow::array::BooleanArray = match key_idx.as_slice() {
                // One text key (most tables): its values themselves, no row conversion.
                [k] if columns[*k].as_any().is::<arrow::array::StringArray>() => {
                    let keys = columns[*k]
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .expect("checked");
                    let mut seen: rustc_hash::FxHashSet<Option<&str>> =
                        rustc_hash::FxHashSet::with_capacity_and_hasher(
                            keys.len(),
                            Default::default(),
                        );
                    keys.iter().map(|v| Some(seen.insert(v))).collect()
                }
                _ => {
                    let fields = key_idx
                        .iter()
                        .map(|&i| arrow::row::SortField::new(columns[i].data_type().clone()))
                        .collect();
                    let conv = arrow::row::RowConverter::new(fields)?;
                    let keys: Vec<ArrayRef> = key_idx.iter().map(|&i| columns[i].clone()).collect();
                    let rows = conv.convert_columns(&keys)?;
                    let mut seen: rustc_hash::FxHashSet<arrow::row::Row<'_>> =
                        rustc_hash::FxHashSet::with_capacity_and_hasher(
                            rows.num_rows(),
                            Default::default(),
                        );
                    rows.iter().map(|r| Some(seen.insert(r))).collect()
                }
            };
            if mask.false_count() > 0 {
                columns = columns
                    .iter()
                    .map(|c| arrow::compute::filter(c, &mask))
                    .collect::<std::result::Result<_, _>>()?;
            }
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(columns[0].len()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// Appends `cell` converted into the builder's type; returns false when the value had an
/// unexpected type and NULL was written instead.
fn append(b: &mut Builder, cell: Cell<'_>, scratch: &mut String) -> bool {
    let v = match b {
        Builder::Str(b) => {
            match cell {
                Cell::Null => b.append_null(),
                Cell::S(s) => b.append_value(s),
                Cell::J(v) => match v.kind() {
                    Kind::Str(s) => b.append_value(s),
                    Kind::Number(n) => {
                        scratch.clear();
                        use std::fmt::Write;
                        let _ = write!(scratch, "{n}");
                        b.append_value(&*scratch)
                    }
                    Kind::Bool(x) => b.append_value(if x { "true" } else { "false" }),
                    Kind::Object(_) => match id_of(v) {
                        Some(id) => b.append_value(id),
                        None => {
                            b.append_null();
                            return false;
                        }
                    },
                    Kind::Array(_) => {
                        b.append_null();
                        return false;
                    }
                    Kind::Null => {
                        b.append_null();
                        return true;
                    }
                },
                Cell::I(i) => b.append_value(i.to_string()),
            }
            return true;
        }
        Builder::Json(b) => {
            match cell {
                Cell::Null => b.append_null(),
                Cell::J(v) => b.append_value(v.to_string()),
                Cell::S(s) => b.append_value(serde_json::Value::from(s).to_string()),
                Cell::I(i) => b.append_value(i.to_string()),
            }
            return true;
        }
        Builder::Bool(b) => {
            let v = to_bool(cell);
            b.append_option(v);
            v.is_some()
        }
        Builder::Int(b) => {
            let v = to_i64(cell);
            b.append_option(v);
            v.is_some()
        }
        Builder::F64(b) => {
            let v = to_f64(cell);
            b.append_option(v);
            v.is_some()
        }
        Builder::Ts(b) => {
            let v = to_ts_us(cell);
            b.append_option(v);
            v.is_some()
        }
    };
    v || match cell {
        Cell::Null => true,
        Cell::J(v) => v.is_null(),
        _ => false,
    }
}

/// The text of a string cell.
fn text<'a>(cell: Cell<'a>) -> Option<&'a str> {
    match cell {
        Cell::J(v) => v.as_str(),
        Cell::S(s) => Some(s),
        _ => None,
    }
}

/// Lenient boolean: JSON booleans and the strings `true`/`false`.
pub(crate) fn to_bool(cell: Cell<'_>) -> Option<bool> {
    if let Some(s) = text(cell) {
        return match s.trim() {
            "true" | "TRUE" | "True" => Some(true),
            "false" | "FALSE" | "False" => Some(false),
            _ => None,
        };
    }
    match cell {
        Cell::J(v) => v.as_bool(),
        _ => None,
    }
}

/// Lenient integer: integers, integral floats and numeric strings.
pub(crate) fn to_i64(cell: Cell<'_>) -> Option<i64> {
    if let Some(s) = text(cell) {
        let s = s.trim();
        return s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(float_to_i64));
    }
    match cell {
        Cell::I(i) => Some(i),
        Cell::J(v) => v
            .as_number()
            .and_then(|n| n.as_i64().or_else(|| float_to_i64(n.as_f64()))),
        _ => None,
    }
}

fn float_to_i64(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

/// Lenient float: numbers and numeric strings.
pub(crate) fn to_f64(cell: Cell<'_>) -> Option<f64> {
    if let Some(s) = text(cell) {
        return s.trim().parse::<f64>().ok();
    }
    match cell {
        Cell::I(i) => Some(i as f64),
        Cell::J(v) => v.as_number().map(Number::as_f64),
        _ => None,
    }
}

/// Epoch milliseconds (number or numeric string) → microseconds.
pub(crate) fn to_ts_us(cell: Cell<'_>) -> Option<i64> {
    let ms = if let Some(s) = text(cell) {
        let s = s.trim();
        s.parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
    } else {
        match cell {
            Cell::I(i) => Some(i),
            Cell::J(v) => v
                .as_number()
                .map(|n| n.as_i64().unwrap_or(n.as_f64() as i64)),
            _ => None,
        }
    }?;
    ms.checked_mul(1_000)
}

/// Epoch milliseconds of a JSON value (lenient), for cursors.
pub(crate) fn ms_of(v: Option<Value<'_>>) -> Option<i64> {
    to_ts_us(Cell::from(v)).map(|us| us / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{catalog, spec};
    use crate::json::bv;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    #[test]
    fn lenient_conversions() {
        assert_eq!(to_i64(Cell::J(bv(json!("1000")))), Some(1000));
        assert_eq!(to_i64(Cell::J(bv(json!(12.0)))), Some(12));
        assert_eq!(to_i64(Cell::J(bv(json!(12.5)))), None);
        assert_eq!(to_i64(Cell::J(bv(json!("unlimited")))), None);
        assert_eq!(
            to_ts_us(Cell::J(bv(json!("1468953420000")))),
            Some(1_468_953_420_000_000)
        );
        assert_eq!(to_ts_us(Cell::J(bv(json!(1)))), Some(1000));
        assert_eq!(to_f64(Cell::J(bv(json!("2.5")))), Some(2.5));
        assert_eq!(to_bool(Cell::J(bv(json!("true")))), Some(true));
        assert_eq!(to_bool(Cell::J(bv(json!(1)))), None);
    }

    #[test]
    fn every_column_has_an_extractor_or_override() {
        // Computed columns are slots of their table's declaration (`lever_tables`).
        for t in catalog() {
            let w = Writer::new(t, &[]);
            assert!(w.unmapped().is_empty(), "{}: {:?}", t.name, w.unmapped());
        }
    }

    #[test]
    fn writer_builds_typed_columns() {
        let mut w = Writer::new(spec("opportunity_stage_history"), &[]);
        let change =
            bv(json!({"toStageId": "s1", "toStageIndex": "2", "userId": "u", "updatedAt": 1500}));
        w.push(change, &[Cell::S("opp1")]);
        w.push(bv(json!({"updatedAt": 2000})), &[Cell::S("opp2")]);
        // A row without its key (updated_at) is dropped.
        w.push(bv(json!({})), &[Cell::S("opp3")]);
        let b = w.finish().unwrap();
        assert_eq!(b.num_rows(), 2);
        let idx = b.schema().index_of("to_stage_index").unwrap();
        assert_eq!(b.column(idx).as_primitive::<Int64Type>().value(0), 2);
        let ts = b.schema().index_of("updated_at").unwrap();
        assert_eq!(
            b.column(ts)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_500_000
        );
        let stage = b.schema().index_of("stage_id").unwrap();
        assert!(b.column(stage).is_null(1));
        assert_eq!(b.column(0).as_string::<i32>().value(1), "opp2");
    }

    #[test]
    fn one_row_per_key_within_a_batch_first_wins() {
        // A single text key (`users.id`) and a composite key (`opportunity_tag`).
        let mut w = Writer::new(spec("users"), &[]);
        for (id, name) in [("u1", "first"), ("u2", "other"), ("u1", "second")] {
            w.push(bv(json!({"id": id, "name": name})), &[]);
        }
        let b = w.finish().unwrap();
        assert_eq!(b.num_rows(), 2);
        let name = b.schema().index_of("name").unwrap();
        assert_eq!(b.column(name).as_string::<i32>().value(0), "first");

        let mut w = Writer::new(spec("opportunity_tag"), &[]);
        for (opp, tag) in [("o1", "a"), ("o1", "b"), ("o1", "a"), ("o2", "a")] {
            w.push(bv(json!(tag)), &[Cell::S(opp)]);
        }
        assert_eq!(w.finish().unwrap().num_rows(), 3);
    }
}
