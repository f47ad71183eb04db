//! Per-table settings (blocking, hashing, history mode), validated against the table specs,
//! and the transforms that apply them to Arrow batches.

use crate::error::{Error, Result};
use crate::message::{Change, Scope};
use crate::secret::Secret;
use crate::spec::{ColumnType, META_HASHED, SYNCED, TableSpec};
use arrow::array::{Array, ArrayRef, StringArray, StringBuilder, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The user's settings for one table (`[tables.<name>]` in `sluice.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TableSettings {
    /// `false` blocks the table: it is never requested and gets no folder.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Columns never written.
    #[serde(default)]
    pub blocked_columns: Vec<String>,
    /// Columns replaced by `hex(sha256(salt || value))`.
    #[serde(default)]
    pub hashed_columns: Vec<String>,
    /// Keep every version of a row (`None`: the source's default).
    #[serde(default)]
    pub history: Option<bool>,
}

fn enabled_by_default() -> bool {
    true
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings {
            enabled: true,
            blocked_columns: Vec::new(),
            hashed_columns: Vec::new(),
            history: None,
        }
    }
}

impl TableSettings {
    /// Sets [`TableSettings::enabled`] (`false` blocks the table).
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
    /// Sets [`TableSettings::blocked_columns`].
    pub fn with_blocked_columns(mut self, columns: Vec<String>) -> Self {
        self.blocked_columns = columns;
        self
    }
    /// Sets [`TableSettings::hashed_columns`].
    pub fn with_hashed_columns(mut self, columns: Vec<String>) -> Self {
        self.hashed_columns = columns;
        self
    }
    /// Turns history mode on or off for the table, whatever the source's default.
    pub fn with_history(mut self, history: bool) -> Self {
        self.history = Some(history);
        self
    }
}

/// Settings of one sync: per-table settings and the hashing salt.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SyncSettings {
    /// Per-table settings; tables not listed use the defaults.
    pub tables: BTreeMap<String, TableSettings>,
    /// The salt for column hashing (required when any column is hashed).
    pub hash_salt: Option<Secret>,
}

impl SyncSettings {
    /// Sets [`SyncSettings::tables`].
    pub fn with_tables(mut self, tables: BTreeMap<String, TableSettings>) -> Self {
        self.tables = tables;
        self
    }
    /// Sets the hashing salt.
    pub fn with_hash_salt(mut self, salt: Secret) -> Self {
        self.hash_salt = Some(salt);
        self
    }
}

/// One table as it will be synced: its source declaration and its destination declaration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedTable {
    /// As the source produces it (history flag applied).
    pub source: TableSpec,
    /// As the sink stores it: blocked columns removed, hashed columns as strings.
    pub dest: TableSpec,
    /// Columns to drop.
    pub blocked: BTreeSet<String>,
    /// Columns to hash.
    pub hashed: BTreeSet<String>,
}

/// The validated sync plan: enabled tables with their transforms.
#[derive(Debug, Clone)]
pub struct Plan {
    tables: BTreeMap<String, PlannedTable>,
    salt: Option<Secret>,
}

impl Plan {
    /// Validates `settings` against `catalog` and builds the plan. Every problem is a config
    /// error naming the key: `tables.<t>.<setting>: ...`.
    pub fn new(catalog: &[TableSpec], settings: &SyncSettings) -> Result<Plan> {
        let by_name: BTreeMap<&str, &TableSpec> =
            catalog.iter().map(|t| (t.name.as_str(), t)).collect();
        for name in settings.tables.keys() {
            if !by_name.contains_key(name.as_str()) {
                return Err(Error::config(format!(
                    "tables.{name}: unknown table `{name}` (list them with `sluice tables <source>`)"
                )));
            }
        }
        let mut tables = BTreeMap::new();
        let mut any_hashed = false;
        for spec in catalog {
            let s = settings.tables.get(&spec.name).cloned().unwrap_or_default();
            let planned = plan_table(spec, &s)?;
            if !s.enabled {
                continue;
            }
            any_hashed |= !planned.hashed.is_empty();
            tables.insert(spec.name.clone(), planned);
        }
        if any_hashed && settings.hash_salt.as_ref().is_none_or(Secret::is_empty) {
            return Err(Error::config(
                "hash_salt: columns are configured to be hashed but no salt is set (set SLUICE_HASH_SALT or `hash_salt` in sluice.toml)",
            ));
        }
        Ok(Plan {
            tables,
            salt: settings.hash_salt.clone(),
        })
    }

    /// The enabled tables.
    pub fn tables(&self) -> &BTreeMap<String, PlannedTable> {
        &self.tables
    }

    /// The enabled table `name`.
    pub fn table(&self, name: &str) -> Option<&PlannedTable> {
        self.tables.get(name)
    }

    /// Marks tables that were stored with history-mode versions (per `state`) but now have
    /// history off: their versions and version columns are kept
    /// ([`TableSpec::history_retained`]).
    pub(crate) fn retain_history(&mut self, state: &crate::State) {
        for (name, t) in &mut self.tables {
            if state.table(name).versioned && !t.dest.history {
                t.dest.history_retained = true;
                t.source.history_retained = true;
            }
        }
    }

    /// Destination declarations of the enabled tables.
    pub(crate) fn dest_specs(&self) -> Vec<TableSpec> {
        self.tables.values().map(|t| t.dest.clone()).collect()
    }

    /// Replaces a table's source declaration mid-sync (schema evolution); returns the new
    /// destination declaration. Settings stay as planned.
    pub fn update(&mut self, spec: TableSpec) -> Result<&TableSpec> {
        let Some(old) = self.tables.get(&spec.name) else {
            return Err(Error::internal(format!(
                "source announced a schema for blocked or unknown table `{}`",
                spec.name
            )));
        };
        let settings = TableSettings {
            enabled: true,
            blocked_columns: old.blocked.iter().cloned().collect(),
            hashed_columns: old.hashed.iter().cloned().collect(),
            history: Some(old.source.history),
        };
        let retained = old.dest.history_retained;
        spec.validate()?;
        let mut planned = plan_table(&spec, &settings)?;
        planned.source.history_retained = retained;
        planned.dest.history_retained = retained;
        let entry = self
            .tables
            .entry(spec.name.clone())
            .or_insert(planned.clone());
        *entry = planned;
        Ok(&entry.dest)
    }

    /// Applies blocking, hashing and `_fivetran_synced` to a change. Returns `None` for
    /// changes of blocked tables.
    pub fn apply(&self, change: Change, synced_at_us: i64) -> Result<Option<Change>> {
        let Some(t) = self.tables.get(change.table()) else {
            return Ok(None);
        };
        Ok(Some(match change {
            Change::Upsert { table, batch } => Change::Upsert {
                batch: self.transform_batch(t, &batch, synced_at_us)?,
                table,
            },
            Change::DeleteMissing { table, scope, keep } => Change::DeleteMissing {
                scope: self.transform_scope(t, scope),
                table,
                keep,
            },
            delete @ Change::Delete { .. } => delete,
        }))
    }

    fn transform_scope(&self, t: &PlannedTable, scope: Scope) -> Scope {
        match scope {
            Scope::Where { column, values } if t.hashed.contains(&column) => {
                let salt = self.salt.as_ref().expect("validated: salt present");
                Scope::Where {
                    values: values
                        .iter()
                        .map(|v| hash_value(salt, v.as_bytes()))
                        .collect(),
                    column,
                }
            }
            other => other,
        }
    }

    fn transform_batch(
        &self,
        t: &PlannedTable,
        batch: &RecordBatch,
        synced_at_us: i64,
    ) -> Result<RecordBatch> {
        let schema = batch.schema();
        let mut fields = Vec::with_capacity(schema.fields().len() + 1);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 1);
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let name = field.name();
            if t.blocked.contains(name) {
                continue;
            }
            let Some(dest) = t.dest.find(name) else {
                return Err(Error::internal(format!(
                    "table `{}`: the source sent undeclared column `{name}`",
                    t.dest.name
                )));
            };
            if t.hashed.contains(name) {
                let salt = self.salt.as_ref().expect("validated: salt present");
                columns.push(Arc::new(hash_array(salt, column)?));
                let mut meta = field.metadata().clone();
                meta.insert(META_HASHED.to_owned(), "true".to_owned());
                fields.push(Field::new(name, DataType::Utf8, true).with_metadata(meta));
            } else {
                if field.data_type() != &dest.ty.arrow_type() {
                    return Err(Error::internal(format!(
                        "table `{}` column `{name}`: the source sent {} but the spec says {}",
                        t.dest.name,
                        field.data_type(),
                        dest.ty.arrow_type()
                    )));
                }
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
        let synced = TimestampMicrosecondArray::from(vec![synced_at_us; batch.num_rows()])
            .with_timezone("UTC");
        fields.push(Field::new(
            SYNCED,
            ColumnType::Timestamp.arrow_type(),
            false,
        ));
        columns.push(Arc::new(synced));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

fn plan_table(spec: &TableSpec, s: &TableSettings) -> Result<PlannedTable> {
    let name = &spec.name;
    let mut blocked = BTreeSet::new();
    for c in &s.blocked_columns {
        if spec.find(c).is_none() {
            return Err(Error::config(format!(
                "tables.{name}.blocked_columns: unknown column `{c}`"
            )));
        }
        if spec.is_key(c) {
            return Err(Error::config(format!(
                "tables.{name}.blocked_columns: `{c}` is part of the primary key and cannot be blocked"
            )));
        }
        blocked.insert(c.clone());
    }
    let mut hashed = BTreeSet::new();
    for c in &s.hashed_columns {
        if c.starts_with("_fivetran") {
            return Err(Error::config(format!(
                "tables.{name}.hashed_columns: system column `{c}` cannot be hashed"
            )));
        }
        if spec.find(c).is_none() {
            return Err(Error::config(format!(
                "tables.{name}.hashed_columns: unknown column `{c}`"
            )));
        }
        if spec.is_key(c) {
            return Err(Error::config(format!(
                "tables.{name}.hashed_columns: `{c}` is part of the primary key and cannot be hashed"
            )));
        }
        if blocked.contains(c) {
            return Err(Error::config(format!(
                "tables.{name}.hashed_columns: `{c}` is also blocked"
            )));
        }
        hashed.insert(c.clone());
    }
    let mut source = spec.clone();
    if let Some(h) = s.history {
        source.history = h;
    }
    let mut dest = source.clone();
    dest.columns.retain(|c| !blocked.contains(&c.name));
    for c in &mut dest.columns {
        if hashed.contains(&c.name) {
            c.ty = ColumnType::String;
        }
    }
    if dest
        .bucket_column
        .as_ref()
        .is_some_and(|b| blocked.contains(b))
    {
        dest.bucket_column = None;
    }
    if let crate::spec::SyncKind::Child { parent_column, .. } = &dest.sync
        && blocked.contains(parent_column)
    {
        return Err(Error::config(format!(
            "tables.{name}.blocked_columns: `{parent_column}` links the table to its parent and cannot be blocked"
        )));
    }
    Ok(PlannedTable {
        source,
        dest,
        blocked,
        hashed,
    })
}

/// `hex(sha256(salt || value))`, lowercase.
pub fn hash_value(salt: &Secret, value: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt.expose().as_bytes());
    h.update(value);
    hex::encode(h.finalize())
}

/// Hashes every non-null value of `array` on its canonical text form (strings as they are,
/// numbers and booleans as Arrow prints them, timestamps as RFC 3339).
pub(crate) fn hash_array(salt: &Secret, array: &ArrayRef) -> Result<StringArray> {
    let text = cast(array, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 yields StringArray");
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 64);
    for v in text.iter() {
        match v {
            Some(v) => out.append_value(hash_value(salt, v.as_bytes())),
            None => out.append_null(),
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ColumnSpec, SyncKind};

    fn users() -> TableSpec {
        TableSpec::new("users", SyncKind::Reimport)
            .column(ColumnSpec::new("id", ColumnType::String))
            .column(ColumnSpec::new("email", ColumnType::String))
            .column(ColumnSpec::new("photo", ColumnType::String))
            .column(ColumnSpec::new("created_at", ColumnType::Int64))
            .key(["id"])
    }

    fn settings(t: TableSettings, salt: Option<&str>) -> SyncSettings {
        SyncSettings {
            tables: [("users".to_owned(), t)].into(),
            hash_salt: salt.map(Secret::new),
        }
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            users().source_schema(),
            vec![
                Arc::new(StringArray::from(vec!["u1", "u2"])),
                Arc::new(StringArray::from(vec![Some("a@x.io"), None])),
                Arc::new(StringArray::from(vec!["p1", "p2"])),
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap()
    }

    fn upsert(plan: &Plan) -> RecordBatch {
        let c = Change::Upsert {
            table: "users".into(),
            batch: batch(),
        };
        match plan.apply(c, 7).unwrap().unwrap() {
            Change::Upsert { batch, .. } => batch,
            _ => unreachable!(),
        }
    }

    #[test]
    fn blocking_drops_columns_and_adds_synced() {
        let s = TableSettings {
            blocked_columns: vec!["photo".into()],
            ..Default::default()
        };
        let plan = Plan::new(&[users()], &settings(s, None)).unwrap();
        let out = upsert(&plan);
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "email", "created_at", SYNCED]);
        assert!(plan.table("users").unwrap().dest.find("photo").is_none());
    }

    #[test]
    fn hashing_is_deterministic_per_salt() {
        let s = TableSettings {
            hashed_columns: vec!["email".into(), "created_at".into()],
            ..Default::default()
        };
        let a = upsert(&Plan::new(&[users()], &settings(s.clone(), Some("salt-a"))).unwrap());
        let a2 = upsert(&Plan::new(&[users()], &settings(s.clone(), Some("salt-a"))).unwrap());
        let b = upsert(&Plan::new(&[users()], &settings(s, Some("salt-b"))).unwrap());
        let email = |b: &RecordBatch| {
            b.column_by_name("email")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        assert_eq!(email(&a), email(&a2));
        assert_ne!(email(&a).value(0), email(&b).value(0));
        assert!(email(&a).is_null(1), "NULL stays NULL");
        assert_eq!(email(&a).value(0).len(), 64);
        assert_eq!(
            email(&a).value(0),
            hash_value(&Secret::new("salt-a"), b"a@x.io")
        );
        assert_eq!(
            a.column_by_name("created_at").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(!format!("{a:?}").contains("salt-a"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (
                TableSettings {
                    blocked_columns: vec!["id".into()],
                    ..Default::default()
                },
                "tables.users.blocked_columns: `id` is part of the primary key",
            ),
            (
                TableSettings {
                    blocked_columns: vec!["nope".into()],
                    ..Default::default()
                },
                "tables.users.blocked_columns: unknown column `nope`",
            ),
            (
                TableSettings {
                    hashed_columns: vec!["id".into()],
                    ..Default::default()
                },
                "tables.users.hashed_columns: `id` is part of the primary key",
            ),
            (
                TableSettings {
                    hashed_columns: vec!["email".into()],
                    ..Default::default()
                },
                "hash_salt: columns are configured to be hashed but no salt",
            ),
        ];
        for (s, expected) in cases {
            let e = Plan::new(&[users()], &settings(s, None)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
            assert!(e.to_string().contains(expected), "{e}");
        }
        let unknown = SyncSettings {
            tables: [("nope".to_owned(), TableSettings::default())].into(),
            hash_salt: None,
        };
        assert!(
            Plan::new(&[users()], &unknown)
                .unwrap_err()
                .to_string()
                .contains("tables.nope: unknown table")
        );
    }

    #[test]
    fn blocked_tables_are_not_planned() {
        let s = TableSettings {
            enabled: false,
            ..Default::default()
        };
        let plan = Plan::new(&[users()], &settings(s, None)).unwrap();
        assert!(plan.table("users").is_none());
        let c = Change::Upsert {
            table: "users".into(),
            batch: batch(),
        };
        assert!(plan.apply(c, 1).unwrap().is_none());
    }

    #[test]
    fn hashes_match_known_sha256_values() {
        // Expected values computed independently: `printf '%s' 'pepper-2024<value>' | sha256sum`.
        let salt = Secret::new("pepper-2024");
        assert_eq!(
            hash_value(&salt, b"jane@example.com"),
            "737a4d854fdad7336f3e51974df7a7087a861202f1e7825c04c4c1f184c4af84"
        );
        let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("jane@example.com"), None]));
        let hashed = hash_array(&salt, &strings).unwrap();
        assert_eq!(
            hashed.value(0),
            "737a4d854fdad7336f3e51974df7a7087a861202f1e7825c04c4c1f184c4af84"
        );
        assert!(hashed.is_null(1), "NULL stays NULL");
        let ints: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![42]));
        assert_eq!(
            hash_array(&salt, &ints).unwrap().value(0),
            "665ffda1e9e7cb76350583f8c85b5008840921e0ed7815da1ca367ec7d229152"
        );
        let bools: ArrayRef = Arc::new(arrow::array::BooleanArray::from(vec![true]));
        assert_eq!(
            hash_array(&salt, &bools).unwrap().value(0),
            "2d28a26c9141eb0b6c3ff1427b5370c42ed43886f5cd8f714e7fd8e08d26f1a6"
        );
    }
}
