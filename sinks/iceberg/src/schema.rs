//! The Iceberg schema of a table: its stored columns with field ids that never change.
//!
//! A column keeps the id it got when it first appeared; a new column (a custom requisition
//! field) gets the next id after the highest ever given (`last-column-id`). The schema is
//! kept in the manifest ([`sluice_lake::TableLog::schema`]), so ids survive every commit.

use serde_json::{Value, json};
use sluice_core::ColumnType;
use sluice_lake::StoredColumn;

/// One field of the schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) ty: &'static str,
}

/// A table schema with its id and the highest field id ever given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schema {
    pub(crate) schema_id: i64,
    pub(crate) last_column_id: i64,
    pub(crate) fields: Vec<Field>,
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
    /// The schema of `columns`, keeping the ids of `prev` (the table's schema so far, `None`
    /// for a new table). The schema id goes up when the fields change.
    pub(crate) fn of(columns: &[StoredColumn], prev: Option<&Schema>) -> Schema {
        let mut last = prev.map_or(0, |p| p.last_column_id);
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let ty = iceberg_type(c.ty);
                let id = prev
                    .and_then(|p| p.fields.iter().find(|f| f.name == c.name))
                    .map(|f| f.id)
                    .unwrap_or_else(|| {
                        last += 1;
                        last
                    });
                Field {
                    id,
                    name: c.name.clone(),
                    ty,
                }
            })
            .collect();
        let schema_id = match prev {
            Some(p) if p.fields == fields => p.schema_id,
            Some(p) => p.schema_id + 1,
            None => 0,
        };
        Schema {
            schema_id,
            last_column_id: last,
            fields,
        }
    }

    /// The schema as Iceberg's table metadata writes it (every field optional: sluice's
    /// columns are nullable, key columns included, as in the other sinks).
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "type": "struct",
            "schema-id": self.schema_id,
            "fields": self.fields.iter().map(|f| json!({
                "id": f.id,
                "name": f.name,
                "required": false,
                "type": f.ty,
            })).collect::<Vec<_>>(),
        })
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
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Schema {
            schema_id: v["schema-id"].as_i64()?,
            last_column_id: v["last-column-id"].as_i64()?,
            fields,
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
        );
        assert_eq!(b.schema_id, 1);
        assert_eq!(b.last_column_id, 4);
        assert_eq!(b.fields[3].id, 4);
        assert_eq!(b.fields[2].ty, "timestamptz");
        let back = Schema::from_stored(&b.to_stored()).expect("round trip");
        assert_eq!(back, b);
    }
}
