//! The 46 destination tables, declared once.
//!
//! The declarations are generated at startup from `destination_schema.json` (the contract
//! with Fivetran's dbt package, kept once in this crate): names,
//! columns, types and keys come from there verbatim; legacy-origin columns and `_fivetran_*`
//! system columns are left out (the engine and sinks add the system columns), except
//! `contact_link._fivetran_id`, which is a data column this source computes. What the JSON does
//! not say — how each table is read (its `SyncKind`), its parent, its file bucket, its
//! sensitive columns and its special cases — is its declaration in `lever_tables`.

use crate::lever_tables::Table;
use serde::Deserialize;
use sluice_core::{ColumnSpec, ColumnType, TableSpec};
use std::sync::OnceLock;

/// The destination schema: every table, column, type and key (the contract with dbt_lever).
pub const DESTINATION_SCHEMA_JSON: &str = include_str!("destination_schema.json");

/// The table every incremental read starts from.
pub const OPPORTUNITY: &str = "opportunity";

#[derive(Debug, Deserialize)]
pub(crate) struct SchemaFile {
    pub(crate) tables: Vec<SchemaTable>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SchemaTable {
    pub(crate) name: String,
    pub(crate) api: String,
    pub(crate) sync: String,
    pub(crate) capture_deletes: bool,
    pub(crate) history_mode: bool,
    pub(crate) primary_key: Vec<String>,
    pub(crate) note: Option<String>,
    pub(crate) columns: Vec<SchemaColumn>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SchemaColumn {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) ty: String,
    pub(crate) origin: String,
    pub(crate) api: String,
    #[serde(default)]
    pub(crate) note: Option<String>,
}

impl SchemaColumn {
    /// Whether this source writes the column (not legacy, not a system column).
    pub(crate) fn written(&self) -> bool {
        self.origin != "legacy" && (self.origin != "system" || self.name == "_fivetran_id")
    }
}

/// The parsed vendored schema.
pub(crate) fn schema_file() -> &'static SchemaFile {
    static FILE: OnceLock<SchemaFile> = OnceLock::new();
    FILE.get_or_init(|| {
        serde_json::from_str(DESTINATION_SCHEMA_JSON).expect("vendored destination_schema.json")
    })
}

/// The API path (`api` of the schema) of `table.column`, used by the decoders.
pub(crate) fn column_api(table: &str, column: &str) -> Option<&'static str> {
    schema_file()
        .tables
        .iter()
        .find(|t| t.name == table)?
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.api.as_str())
}

/// Maps a schema type name to a column type.
pub(crate) fn column_type(ty: &str) -> ColumnType {
    match ty {
        "STRING" => ColumnType::String,
        "BOOLEAN" => ColumnType::Boolean,
        "INT" => ColumnType::Int64,
        "DOUBLE" => ColumnType::Float64,
        "TIMESTAMP" => ColumnType::Timestamp,
        "JSON" => ColumnType::Json,
        other => panic!("destination_schema.json: unknown column type {other}"),
    }
}

fn build_catalog() -> Vec<TableSpec> {
    let mut out = Vec::new();
    for t in &schema_file().tables {
        let decl = Table::named(&t.name)
            .unwrap_or_else(|| panic!("table `{}` has no declaration in lever_tables", t.name))
            .decl();
        let mut spec = TableSpec::new(t.name.clone(), decl.sync_kind());
        spec.description = match &t.note {
            Some(note) => format!("{} — {}. {note}", t.api, t.sync),
            None => format!("{} — {}", t.api, t.sync),
        };
        if let Some(note) = decl.doc_note {
            spec.description = format!("{}. {note}", spec.description);
        }
        spec.origin = t.api.clone();
        for c in t.columns.iter().filter(|c| c.written()) {
            let mut col =
                ColumnSpec::new(c.name.clone(), column_type(&c.ty)).describe(match &c.note {
                    Some(n) => format!("{} ({n})", c.api),
                    None => c.api.clone(),
                });
            if decl.sensitive.contains(&c.name.as_str()) {
                col = col.sensitive();
            }
            spec = spec.column(col);
        }
        spec = spec.key(t.primary_key.iter().cloned());
        spec.capture_deletes = t.capture_deletes || decl.always_capture_deletes;
        // Lever marks deleted forms and notes with `deletedAt`, and dbt_lever drops feedback
        // forms by `deleted_at`: a row seen gone gets the time it was seen gone.
        if spec.capture_deletes && spec.find("deleted_at").is_some() {
            spec.deleted_at_column = Some("deleted_at".to_owned());
        }
        // History mode is offered (history_default) as the schema says, on where declared.
        spec.history_default = t.history_mode;
        spec.history = decl.history;
        spec.bucket_column = decl.bucket.map(str::to_owned);
        out.push(spec);
    }
    out
}

/// Every table this source produces (46), in the contract's order.
pub fn catalog() -> &'static [TableSpec] {
    static CATALOG: OnceLock<Vec<TableSpec>> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

/// The declaration of `name`.
pub fn spec(name: &str) -> &'static TableSpec {
    catalog()
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no table `{name}` in the catalog"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn catalog_is_valid_and_complete() {
        let c = catalog();
        assert_eq!(c.len(), 46);
        let names: BTreeSet<_> = c.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 46);
        for t in c {
            t.validate().unwrap();
        }
        assert!(spec("opportunity").capture_deletes);
        for t in ["feedback_form", "note", "profile_form"] {
            assert_eq!(
                spec(t).deleted_at_column.as_deref(),
                Some("deleted_at"),
                "{t}"
            );
        }
        assert!(!spec("opportunity_stage_history").history);
        assert!(spec("opportunity_stage_history").history_default);
        assert!(spec("candidate_stage_history").history_default);
        assert_eq!(
            spec("feedback_form_field").bucket_column(),
            "feedback_form_id"
        );
        assert_eq!(spec("note").bucket_column(), "opportunity_id");
        assert!(spec("contact_link").find("_fivetran_id").is_some());
        assert!(spec("opportunity_tag").find("tag").is_none());
    }
}
