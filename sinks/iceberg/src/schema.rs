//! The Iceberg schema of a table: its stored columns with field ids that never change.
//!
//! A column keeps the id it got when it first appeared; a new column (a custom requisition
//! field) gets the next id after the highest ever given (`last-column-id`). The schema is
//! kept in the manifest ([`sluice_lake::TableLog::schema`]), so ids survive every commit.
//!
//! The identifier fields (Iceberg's primary key) are the table's stored key when each of its
//! columns is a required field. Key columns are required in a table's first schema (the
//! data files never hold NULL in them); a field that was optional stays optional (making it
//! required is not a compatible schema change), so a table whose first schema had optional
//! key fields declares no identifier fields. In history mode the key includes
//! `_fivetran_start`, an optional system column: such tables declare none either.

use serde_json::{Value, json};
use sluice_core::ColumnType;
use sluice_lake::StoredColumn;

/// One field of the schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) ty: &'static str,
    /// Whether the field never holds NULL (key columns of a table's first schema).
    pub(crate) required: bool,
}

/// A table schema with its id and the highest field id ever given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schema {
    pub(crate) schema_id: i64,
    pub(crate) last_column_id: i64,
    pub(crate) fields: Vec<Field>,
    /// The field ids of the table's key (Iceberg's `identifier-field-ids`); empty when the
    /// key has an optional field.
    pub(crate) identifier: Vec<i64>,
}

/// The Iceberg type of a column type: text and JSON text are `string`, instants
/// `timestamptz` (microseconds, UTC, as the Parquet files store them).
pub(crate) fn iceberg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Boolean => "boolean",
        ColumnType::Int64 => "long",
        ColumnType::Float64 => "double",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::String | ColumnType::Json => "string",
    }
}

impl Schema {
    /// The schema of `columns` with the stored key `key` (primary key, plus
    /// `_fivetran_start` in history mode; empty when unknown: the identifier fields of
    /// `prev` stay), keeping the ids and optional fields of `prev` (the table's schema so
    /// far, `None` for a new table). The schema id goes up when the fields or the identifier
    /// fields change.
    pub(crate) fn of(columns: &[StoredColumn], prev: Option<&Schema>, key: &[String]) -> Schema {
        let mut last = prev.map_or(0, |p| p.last_column_id);
        // Primary key columns hold no NULL in data files; system columns may.
        let primary =
            |name: &str| key.iter().any(|k| k == name) && name != sluice_core::sink_support::START;
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let ty = iceberg_type(c.ty);
                let before = prev.and_then(|p| p.fields.iter().find(|f| f.name == c.name));
                let id = before.map(|f| f.id).unwrap_or_else(|| {
                    last += 1;
                    last
                });
                let required = match (prev, before) {
                    (None, _) => primary(&c.name),
                    (Some(_), Some(f)) => f.required,
                    (Some(_), None) => false,
                };
                Field {
                    id,
                    name: c.name.clone(),
                    ty,
                    required,
                }
            })
            .collect();
        let identifier = if key.is_empty() {
            prev.map(|p| p.identifier.clone()).unwrap_or_default()
        } else {
            key.iter()
                .map(|k| {
                    fields
                        .iter()
                        .find(|f| &f.name == k && f.required)
                        .map(|f| f.id)
                })
                .collect::<Option<Vec<i64>>>()
                .unwrap_or_default()
        };
        let schema_id = match prev {
            Some(p) if p.fields == fields && p.identifier == identifier => p.schema_id,
            Some(p) => p.schema_id + 1,
            None => 0,
        };
        Schema {
            schema_id,
            last_column_id: last,
            fields,
            identifier,
        }
    }

    /// The schema as Iceberg's table metadata writes it.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({
            "type": "struct",
            "schema-id": self.schema_id,
            "fields": self.fields.iter().map(|f| json!({
                "id": f.id,
                "name": f.name,
                "required": f.required,
                "type": f.ty,
            })).collect::<Vec<_>>(),
        });
        if !self.identifier.is_empty() {
            v["identifier-field-ids"] = json!(self.identifier);
        }
        v
    }

    /// The schema with its `last-column-id`, as kept in the manifest.
    pub(crate) fn to_stored(&self) -> String {
        let mut v = self.to_json();
        v["last-column-id"] = json!(self.last_column_id);
        v.to_string()
    }

    /// Reads a schema kept by [`Schema::to_stored`]; `None` if it is not one.
    pub(crate) fn from_stored(text: &str) -> Option<Schema> {
        let v: Value = serde_json::from_str(text).ok()?;
        let fields = v["fields"]
            .as_array()?
            .iter()
            .map(|f| {
                Some(Field {
                    id: f["id"].as_i64()?,
                    name: f["name"].as_str()?.to_owned(),
                    ty: ICEBERG_TYPES
                        .iter()
                        .copied()
                        .find(|t| f["type"].as_str() == Some(*t))?,
                    required: f["required"].as_bool().unwrap_or(false),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Schema {
            schema_id: v["schema-id"].as_i64()?,
            last_column_id: v["last-column-id"].as_i64()?,
            fields,
            identifier: match v.get("identifier-field-ids") {
                None => Vec::new(),
                Some(ids) => ids
                    .as_array()?
                    .iter()
                    .map(Value::as_i64)
                    .collect::<Option<Vec<_>>>()?,
            },
        })
    }

    /// Iceberg's name mapping (`schema.name-mapping.default`): how readers find a field in
    /// data files that carry no field ids (sluice's Parquet files name their columns).
    pub(crate) fn name_mapping(&self) -> String {
        Value::Array(
            self.fields
                .iter()
                .map(|f| json!({"field-id": f.id, "names": [f.name]}))
                .collect(),
        )
        .to_string()
    }
}

const ICEBERG_TYPES: [&str; 5] = ["boolean", "long", "double", "timestamptz", "string"];

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColumnType) -> StoredColumn {
        StoredColumn {
            name: name.into(),
            ty,
        }
    }

    #[test]
    fn ids_are_kept_and_new_columns_get_the_next() {
        let a = Schema::of(
            &[
                col("id", ColumnType::String),
                col("n", ColumnType::Int64),
                col("at", ColumnType::Timestamp),
            ],
            None,
            &[],
        );
        assert_eq!(a.schema_id, 0);
        assert_eq!(a.last_column_id, 3);
        let same = Schema::of(
            &[
                col("id", ColumnType::String),
                col("n", ColumnType::Int64),
                col("at", ColumnType::Timestamp),
            ],
            Some(&a),
            &[],
        );
        assert_eq!(same, a);
        let b = Schema::of(
            &[
                col("id", ColumnType::String),
                col("n", ColumnType::Int64),
                col("at", ColumnType::Timestamp),
                col("custom_field_x", ColumnType::Float64),
            ],
            Some(&a),
            &[],
        );
        assert_eq!(b.schema_id, 1);
        assert_eq!(b.last_column_id, 4);
        assert_eq!(b.fields[3].id, 4);
        assert_eq!(b.fields[2].ty, "timestamptz");
        let back = Schema::from_stored(&b.to_stored()).expect("round trip");
        assert_eq!(back, b);
    }

    #[test]
    fn the_key_is_required_and_the_identifier_in_a_first_schema_only() {
        let key = ["id".to_owned()];
        let cols = [col("id", ColumnType::String), col("n", ColumnType::Int64)];
        let a = Schema::of(&cols, None, &key);
        assert_eq!(a.identifier, vec![1]);
        assert!(a.fields[0].required && !a.fields[1].required);
        assert_eq!(a.to_json()["identifier-field-ids"], json!([1]));
        let back = Schema::from_stored(&a.to_stored()).expect("round trip");
        assert_eq!(back, a);
        // Unknown key (the table not declared by this run): kept.
        assert_eq!(Schema::of(&cols, Some(&a), &[]), a);
        // History mode: the key takes `_fivetran_start`, an optional column: none declared.
        let mut hist = cols.to_vec();
        hist.push(col(sluice_core::sink_support::START, ColumnType::Timestamp));
        let h = Schema::of(
            &hist,
            Some(&a),
            &["id".into(), sluice_core::sink_support::START.into()],
        );
        assert!(h.identifier.is_empty() && h.schema_id == 1, "{h:?}");
        assert!(h.to_json().get("identifier-field-ids").is_none());
        // A table whose first schema had an optional key stays without identifier fields.
        let old = Schema::of(&cols, None, &[]);
        let later = Schema::of(&cols, Some(&old), &key);
        assert_eq!(later, old);
    }
}
