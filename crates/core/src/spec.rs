//! Table declarations: each table is declared once as a [`TableSpec`], and that declaration
//! drives the JSON→Arrow decoding of sources, the destination schema, config validation and the
//! generated docs.

use crate::error::{Error, Result};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// `_fivetran_synced`: when the row was last written by a sync (every table).
pub const SYNCED: &str = "_fivetran_synced";
/// `_fivetran_deleted`: soft-delete flag (tables that capture deletes).
pub const DELETED: &str = "_fivetran_deleted";
/// `_fivetran_start`: when this version began (history mode).
pub const START: &str = "_fivetran_start";
/// `_fivetran_end`: when this version was superseded (history mode).
pub const END: &str = "_fivetran_end";
/// `_fivetran_active`: whether this is the current version (history mode).
pub const ACTIVE: &str = "_fivetran_active";
/// `_fivetran_end` of an active version: 9999-12-31T23:59:59.999Z, in microseconds.
pub const END_OF_TIME_US: i64 = 253_402_300_799_999_000;

/// Names of the system columns the engine and sinks manage; sources never emit them.
pub const SYSTEM_COLUMNS: [&str; 5] = [SYNCED, DELETED, START, END, ACTIVE];

/// Arrow field metadata key: `"true"` on primary-key columns.
pub(crate) const META_PRIMARY_KEY: &str = "sluice.primary_key";
/// Arrow field metadata key: `"true"` on sensitive columns (personal data).
pub(crate) const META_SENSITIVE: &str = "sluice.sensitive";
/// Arrow field metadata key: `"true"` on columns whose values were hashed.
pub(crate) const META_HASHED: &str = "sluice.hashed";
/// Arrow field metadata key: the logical [`ColumnType`] (`json` vs `string` share Utf8).
pub(crate) const META_TYPE: &str = "sluice.type";
/// Arrow schema metadata key: the table name.
pub(crate) const META_TABLE: &str = "sluice.table";
/// Arrow schema metadata key: comma-separated primary key.
pub(crate) const META_KEY: &str = "sluice.key";
/// Arrow schema metadata key: `"true"` when the table keeps history.
pub(crate) const META_HISTORY: &str = "sluice.history";

/// The logical type of a column. Each maps to exactly one Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// true/false.
    Boolean,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// An instant: microseconds since the epoch, UTC (`Timestamp(Microsecond, "UTC")`).
    Timestamp,
    /// JSON text (arrays and objects that are not unnested), stored as UTF-8.
    Json,
}

impl ColumnType {
    /// The Arrow type of this column type.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
    /// The lower-case name used in docs and metadata.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Boolean => "boolean",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ColumnSpec {
    /// Lower-case snake_case name, exactly as written to the destination.
    pub name: String,
    /// Logical type.
    pub ty: ColumnType,
    /// Whether NULL is allowed. Primary-key columns are never null.
    pub nullable: bool,
    /// Holds personal or confidential data (a hint for hashing and docs).
    pub sensitive: bool,
    /// One line for the generated table reference.
    pub description: String,
}

impl ColumnSpec {
    /// A nullable, non-sensitive column.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        ColumnSpec {
            name: name.into(),
            ty,
            nullable: true,
            sensitive: false,
            description: String::new(),
        }
    }
    /// Sets the description.
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
    /// Marks the column sensitive.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    /// Whether this is one of the engine-managed system columns.
    pub fn is_system(&self) -> bool {
        SYSTEM_COLUMNS.contains(&self.name.as_str())
    }
}

/// How a table is read from its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SyncKind {
    /// Read with a server-side filter on `cursor` (a column of the table).
    Incremental {
        /// The column whose maximum is the next sync's starting point.
        cursor: String,
    },
    /// Re-read whenever a row of `parent` changes.
    Child {
        /// The parent table.
        parent: String,
        /// The column of this table holding the parent's key (used to scope deletes).
        parent_column: String,
    },
    /// Read in full, at most once per re-import interval; rows gone from the list are deleted.
    Reimport,
}

/// The declaration of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TableSpec {
    /// Lower-case snake_case table name (the destination folder name).
    pub name: String,
    /// One line for the generated table reference.
    pub description: String,
    /// The columns the source produces, in order, without system columns.
    pub columns: Vec<ColumnSpec>,
    /// Primary-key column names (at least one).
    pub primary_key: Vec<String>,
    /// How the table is read.
    pub sync: SyncKind,
    /// Whether rows that disappear from the source are soft-deleted (`_fivetran_deleted`).
    pub capture_deletes: bool,
    /// Whether every version of a row is kept (`_fivetran_start/_end/_active`).
    pub history: bool,
    /// History mode was on earlier and is now off: the stored versions and their
    /// `_fivetran_start/_end/_active` columns are kept, and new data updates the active
    /// version in place. Set by the engine from the stored state; sources leave it false.
    #[serde(default)]
    pub history_retained: bool,
    /// Whether history mode is offered by the source for this table (documentation only; the
    /// user may switch it on for any table).
    pub history_default: bool,
    /// Column used by sinks to group rows into files (defaults to the first key column). Child
    /// tables use their parent column so a parent's re-read touches few files.
    pub bucket_column: Option<String>,
    /// The source-side API call this table comes from (for docs).
    pub origin: String,
    /// A timestamp column that a soft delete sets to the sync time (besides
    /// `_fivetran_deleted`), for tables whose source marks deleted objects with a deletion time
    /// (Lever's `deletedAt`). Needs `capture_deletes`; an upsert writes the source's value
    /// again. Ignored when the column is blocked or hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_column: Option<String>,
}

impl TableSpec {
    /// A new table with no columns; add them with [`TableSpec::column`].
    pub fn new(name: impl Into<String>, sync: SyncKind) -> Self {
        TableSpec {
            name: name.into(),
            description: String::new(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            sync,
            capture_deletes: false,
            history: false,
            history_retained: false,
            history_default: false,
            bucket_column: None,
            origin: String::new(),
            deleted_at_column: None,
        }
    }

    /// Adds a column.
    pub fn column(mut self, column: ColumnSpec) -> Self {
        self.columns.push(column);
        self
    }

    /// Sets the primary key (columns must be declared).
    pub fn key<S: Into<String>>(mut self, key: impl IntoIterator<Item = S>) -> Self {
        self.primary_key = key.into_iter().map(Into::into).collect();
        self
    }

    /// Looks a column up by name.
    pub fn find(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether `name` is part of the primary key.
    pub fn is_key(&self, name: &str) -> bool {
        self.primary_key.iter().any(|k| k == name)
    }

    /// The column sinks bucket files by.
    pub fn bucket_column(&self) -> &str {
        self.bucket_column
            .as_deref()
            .unwrap_or_else(|| self.primary_key[0].as_str())
    }

    /// Whether stored rows carry version columns (history on, or retained after it was on).
    pub fn versioned(&self) -> bool {
        self.history || self.history_retained
    }

    /// The key that identifies one stored row: the primary key, plus `_fivetran_start` when
    /// the table keeps (or kept) history.
    pub fn storage_key(&self) -> Vec<String> {
        let mut key = self.primary_key.clone();
        if self.versioned() {
            key.push(START.to_owned());
        }
        key
    }

    /// The system columns this table carries in the destination, in order.
    pub fn system_columns(&self) -> Vec<ColumnSpec> {
        let mut cols = vec![
            ColumnSpec::new(SYNCED, ColumnType::Timestamp)
                .describe("when the row was last written by a sync"),
        ];
        if self.capture_deletes {
            cols.push(
                ColumnSpec::new(DELETED, ColumnType::Boolean)
                    .describe("true once the object is gone from the source"),
            );
        }
        if self.versioned() {
            cols.push(ColumnSpec::new(START, ColumnType::Timestamp).describe("version start"));
            cols.push(
                ColumnSpec::new(END, ColumnType::Timestamp)
                    .describe("version end; 9999-12-31T23:59:59.999Z while active"),
            );
            cols.push(
                ColumnSpec::new(ACTIVE, ColumnType::Boolean)
                    .describe("true for the current version"),
            );
        }
        cols
    }

    /// The Arrow schema of the rows a source emits (no system columns).
    pub fn source_schema(&self) -> SchemaRef {
        self.schema_of(self.columns.iter())
    }

    /// The Arrow schema of the destination table: source columns then system columns.
    pub fn arrow_schema(&self) -> SchemaRef {
        let system = self.system_columns();
        self.schema_of(self.columns.iter().chain(system.iter()))
    }

    fn schema_of<'a>(&self, columns: impl Iterator<Item = &'a ColumnSpec>) -> SchemaRef {
        let fields: Vec<Field> = columns
            .map(|c| {
                let key = self.is_key(&c.name);
                let mut meta = HashMap::new();
                meta.insert(META_TYPE.to_owned(), c.ty.name().to_owned());
                if key {
                    meta.insert(META_PRIMARY_KEY.to_owned(), "true".to_owned());
                }
                if c.sensitive {
                    meta.insert(META_SENSITIVE.to_owned(), "true".to_owned());
                }
                Field::new(&c.name, c.ty.arrow_type(), c.nullable && !key).with_metadata(meta)
            })
            .collect();
        let mut meta = HashMap::new();
        meta.insert(META_TABLE.to_owned(), self.name.clone());
        meta.insert(META_KEY.to_owned(), self.storage_key().join(","));
        meta.insert(META_HISTORY.to_owned(), self.history.to_string());
        Arc::new(Schema::new_with_metadata(fields, meta))
    }

    /// Checks the declaration: snake_case names, unique columns, a declared non-empty primary
    /// key, a declared cursor and parent column, no system column names.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::internal(format!(
                "table spec `{}`: {what}",
                self.name
            )))
        };
        if !is_snake_case(&self.name) {
            return bad("table name is not lower-case snake_case".into());
        }
        if self.columns.is_empty() {
            return bad("no columns".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.columns {
            if !is_snake_case(&c.name) {
                return bad(format!("column `{}` is not lower-case snake_case", c.name));
            }
            if c.is_system() {
                return bad(format!("column `{}` is a system column", c.name));
            }
            if !seen.insert(c.name.as_str()) {
                return bad(format!("column `{}` declared twice", c.name));
            }
        }
        if self.primary_key.is_empty() {
            return bad("no primary key".into());
        }
        for k in &self.primary_key {
            if self.find(k).is_none() {
                return bad(format!("primary-key column `{k}` is not declared"));
            }
        }
        match &self.sync {
            SyncKind::Incremental { cursor } if self.find(cursor).is_none() => {
                return bad(format!("cursor column `{cursor}` is not declared"));
            }
            SyncKind::Child { parent_column, .. } if self.find(parent_column).is_none() => {
                return bad(format!("parent column `{parent_column}` is not declared"));
            }
            _ => {}
        }
        if let Some(b) = &self.bucket_column
            && self.find(b).is_none()
        {
            return bad(format!("bucket column `{b}` is not declared"));
        }
        if let Some(d) = &self.deleted_at_column {
            match self.find(d) {
                None => return bad(format!("deleted-at column `{d}` is not declared")),
                Some(c) if c.ty != ColumnType::Timestamp => {
                    return bad(format!("deleted-at column `{d}` is not a timestamp"));
                }
                Some(_) if self.is_key(d) => {
                    return bad(format!(
                        "deleted-at column `{d}` is part of the primary key"
                    ));
                }
                Some(_) if !self.capture_deletes => {
                    return bad(format!(
                        "deleted-at column `{d}` needs a table that captures deletes"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Whether `s` is a lower-case snake_case identifier (`[a-z_][a-z0-9_]*`).
fn is_snake_case(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Converts a camelCase or free-text name into a lower-case snake_case identifier:
/// `createdAt` → `created_at`, `Target hire date` → `target_hire_date`.
pub fn to_snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower_or_digit = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower_or_digit {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower_or_digit = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower_or_digit = true;
        } else {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            prev_lower_or_digit = false;
        }
    }
    let trimmed = out.trim_matches('_');
    let mut name = trimmed.to_owned();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableSpec {
        TableSpec::new(
            "note",
            SyncKind::Child {
                parent: "opportunity".into(),
                parent_column: "opportunity_id".into(),
            },
        )
        .column(ColumnSpec::new("id", ColumnType::String))
        .column(ColumnSpec::new("opportunity_id", ColumnType::String))
        .column(ColumnSpec::new("created_at", ColumnType::Timestamp))
        .key(["id"])
    }

    #[test]
    fn arrow_schema_carries_types_keys_and_system_columns() {
        let mut t = table();
        t.capture_deletes = true;
        let s = t.arrow_schema();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["id", "opportunity_id", "created_at", SYNCED, DELETED]
        );
        assert_eq!(
            s.field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert!(!s.field(0).is_nullable());
        assert_eq!(s.field(0).metadata()[META_PRIMARY_KEY], "true");
        assert_eq!(s.metadata()[META_KEY], "id");
        t.history = true;
        assert_eq!(t.arrow_schema().metadata()[META_KEY], format!("id,{START}"));
        assert_eq!(t.arrow_schema().fields().len(), 8);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        assert!(table().validate().is_ok());
        let mut t = table();
        t.name = "Note".into();
        assert!(t.validate().is_err());
        let t = table().key(Vec::<String>::new());
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("no primary key")
        );
        let t = table().key(["nope"]);
        assert!(t.validate().is_err());
        let mut t = table();
        t.sync = SyncKind::Incremental {
            cursor: "updated_at".into(),
        };
        assert!(t.validate().unwrap_err().to_string().contains("cursor"));
        let t = table().column(ColumnSpec::new(SYNCED, ColumnType::Timestamp));
        assert!(t.validate().is_err());
        let t = table().column(ColumnSpec::new("id", ColumnType::String));
        assert!(t.validate().is_err());
    }

    #[test]
    fn a_deleted_at_column_is_a_declared_timestamp_of_a_table_capturing_deletes() {
        let with = |column: &str, capture: bool| {
            let mut t = table();
            t.capture_deletes = capture;
            t.deleted_at_column = Some(column.into());
            t.validate()
        };
        assert!(with("created_at", true).is_ok());
        let why = |r: Result<()>| r.unwrap_err().to_string();
        assert!(why(with("nope", true)).contains("not declared"));
        assert!(why(with("opportunity_id", true)).contains("not a timestamp"));
        assert!(why(with("created_at", false)).contains("captures deletes"));
    }

    #[test]
    fn snake_case_conversion() {
        assert_eq!(to_snake_case("createdAt"), "created_at");
        assert_eq!(to_snake_case("Target hire date"), "target_hire_date");
        assert_eq!(to_snake_case("9lives"), "_9lives");
        assert_eq!(to_snake_case("already_snake"), "already_snake");
        assert!(is_snake_case("a_b1"));
        assert!(!is_snake_case("aB"));
    }
}
