//! Requisition custom fields as `custom_field_<key>` columns of `requisition`
//! (DESTINATION_SCHEMA.md §6.5).
//!
//! * `<key>` is the requisition field id (the key of `customFields`), lower-cased snake_case
//!   (`to_snake_case`). A one-level object field becomes one column per subfield:
//!   `custom_field_<key>_<subfield id>`.
//! * Collisions (two keys, or a key and a key+subfield, that map to the same name) are resolved
//!   deterministically: the first claimant (in the order columns were first seen, keys sorted
//!   within a sync) keeps the name, later ones get `_2`, `_3`, … The mapping is stored in the
//!   state, so a column keeps its name and type forever (columns are never dropped).
//! * The type follows the JSON values seen when the column first appears: all integers → INT
//!   (Lever `date` fields arrive as epoch ms and stay INT, unconverted, as in dbt's fixtures),
//!   any other number → DOUBLE, booleans → BOOLEAN, strings → STRING, arrays → JSON, mixed
//!   kinds → STRING. Later values are converted leniently into the recorded type.

use crate::decode::Ex;
use crate::json::{Field, Kind, Value};
use serde::{Deserialize, Serialize};
use sluice_core::{ColumnSpec, ColumnType, TableSpec, to_snake_case};
use std::collections::{BTreeMap, BTreeSet};

/// One custom column, as remembered in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomColumn {
    /// The `customFields` key (requisition field id).
    pub(crate) key: String,
    /// The subfield id of an object field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sub: Option<String>,
    /// The column name.
    pub(crate) column: String,
    /// The column type.
    pub(crate) ty: ColumnType,
}

#[derive(Default, Clone, Copy)]
struct Kinds {
    int: bool,
    float: bool,
    boolean: bool,
    string: bool,
    array: bool,
}

impl Kinds {
    fn add(&mut self, v: Value<'_>) {
        match v.kind() {
            Kind::Number(n) if n.is_integer() => self.int = true,
            Kind::Number(_) => self.float = true,
            Kind::Bool(_) => self.boolean = true,
            Kind::Str(_) => self.string = true,
            Kind::Array(_) => self.array = true,
            _ => {}
        }
    }
    fn ty(self) -> ColumnType {
        let n = [
            self.int || self.float,
            self.boolean,
            self.string,
            self.array,
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            return ColumnType::String;
        }
        if self.float {
            ColumnType::Float64
        } else if self.int {
            ColumnType::Int64
        } else if self.boolean {
            ColumnType::Boolean
        } else if self.array {
            ColumnType::Json
        } else {
            ColumnType::String
        }
    }
}

/// Adds the columns of keys first seen in `requisitions` to `known` (in place); returns
/// whether anything was added.
pub(crate) fn discover<'a>(
    known: &mut Vec<CustomColumn>,
    requisitions: impl IntoIterator<Item = Value<'a>>,
) -> bool {
    let mut seen: BTreeMap<(String, Option<String>), Kinds> = BTreeMap::new();
    for r in requisitions {
        let Some(cf) = r.field("customFields").and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in cf.iter() {
            match v.kind() {
                Kind::Null => {}
                Kind::Object(o) => {
                    for (s, sv) in o.iter() {
                        if !sv.is_null() {
                            seen.entry((k.to_owned(), Some(s.to_owned())))
                                .or_default()
                                .add(sv);
                        }
                    }
                }
                _ => seen.entry((k.to_owned(), None)).or_default().add(v),
            }
        }
    }
    let have: BTreeSet<(String, Option<String>)> = known
        .iter()
        .map(|c| (c.key.clone(), c.sub.clone()))
        .collect();
    let mut used: BTreeSet<String> = known.iter().map(|c| c.column.clone()).collect();
    let mut added = false;
    for ((key, sub), kinds) in seen {
        if have.contains(&(key.clone(), sub.clone())) {
            continue;
        }
        let mut base = format!("custom_field_{}", to_snake_case(&key).to_ascii_lowercase());
        if let Some(s) = &sub {
            base = format!("{base}_{}", to_snake_case(s).to_ascii_lowercase());
        }
        let mut column = base.clone();
        let mut n = 2;
        while used.contains(&column) {
            column = format!("{base}_{n}");
            n += 1;
        }
        used.insert(column.clone());
        known.push(CustomColumn {
            key,
            sub,
            column,
            ty: kinds.ty(),
        });
        added = true;
    }
    added
}

/// The requisition declaration with the custom columns appended.
pub(crate) fn requisition_spec(base: &TableSpec, known: &[CustomColumn]) -> TableSpec {
    let mut spec = base.clone();
    for c in known {
        if spec.find(&c.column).is_none() {
            let what = match &c.sub {
                Some(s) => format!("customFields.{}.{s} (custom field)", c.key),
                None => format!("customFields.{} (custom field)", c.key),
            };
            spec.columns
                .push(ColumnSpec::new(c.column.clone(), c.ty).describe(what));
        }
    }
    spec
}

/// Extractors of the custom columns.
pub(crate) fn extractors(known: &[CustomColumn]) -> Vec<(String, Ex)> {
    known
        .iter()
        .map(|c| {
            let mut path = vec!["customFields".to_owned(), c.key.clone()];
            if let Some(s) = &c.sub {
                path.push(s.clone());
            }
            (c.column.clone(), Ex::Path(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_types_and_collisions() {
        let reqs = [
            crate::json::bv(
                json!({"customFields": {"cost_center": "A1", "budget_amount": 10, "location_details": {"city": "Berlin", "floor": 3}}}),
            ),
            crate::json::bv(
                json!({"customFields": {"budget_amount": 12.5, "Cost Center": "B", "target_start_date": 1700000000000i64, "flag": true}}),
            ),
            crate::json::bv(json!({"customFields": null})),
        ];
        let mut known = Vec::new();
        assert!(discover(&mut known, reqs.iter().copied()));
        let by = |c: &str| known.iter().find(|k| k.column == c).unwrap().ty;
        assert_eq!(by("custom_field_budget_amount"), ColumnType::Float64);
        assert_eq!(by("custom_field_cost_center"), ColumnType::String);
        assert_eq!(by("custom_field_cost_center_2"), ColumnType::String);
        assert_eq!(by("custom_field_location_details_city"), ColumnType::String);
        assert_eq!(by("custom_field_location_details_floor"), ColumnType::Int64);
        assert_eq!(by("custom_field_target_start_date"), ColumnType::Int64);
        assert_eq!(by("custom_field_flag"), ColumnType::Boolean);
        // "Cost Center" sorts before "cost_center": it claims the plain name.
        assert_eq!(
            known
                .iter()
                .find(|k| k.key == "Cost Center")
                .unwrap()
                .column,
            "custom_field_cost_center"
        );
        // Stable: nothing new the second time.
        assert!(!discover(&mut known, reqs.iter().copied()));
        let spec = requisition_spec(crate::catalog::spec("requisition"), &known);
        spec.validate().unwrap();
        assert_eq!(
            spec.columns.len(),
            crate::catalog::spec("requisition").columns.len() + known.len()
        );
    }
}
