//! Form fields (feedback, profile, posting and referral forms): one row per value, routed to
//! the value column of the field's type (DESTINATION_SCHEMA.md §5), plus the template field
//! definitions.

use super::{Cell, SLOT_EXTRA, SLOT_INDEX, SLOT_PARENT, Tables, get_arr, get_str};
use super::{Field, Kind, Value};
use crate::lever_tables::Table;

/// Slots of a form-field row (after parent and index).
pub(crate) const S_CODE_LANGUAGE: usize = SLOT_EXTRA;
/// `currency`.
pub(crate) const S_CURRENCY: usize = SLOT_EXTRA + 1;
/// `value_date`.
pub(crate) const S_DATE: usize = SLOT_EXTRA + 2;
/// `value_decimal`.
pub(crate) const S_DECIMAL: usize = SLOT_EXTRA + 3;
/// `value_file_id`.
pub(crate) const S_FILE: usize = SLOT_EXTRA + 4;
/// `value_number`.
pub(crate) const S_NUMBER: usize = SLOT_EXTRA + 5;
/// `value_text`.
pub(crate) const S_TEXT: usize = SLOT_EXTRA + 6;
/// `value_index`.
pub(crate) const S_VALUE_INDEX: usize = SLOT_EXTRA + 7;
const N_SLOTS: usize = SLOT_EXTRA + 8;

/// The value rows of one field: slots per row (parent and field index filled by caller).
fn route<'a>(field: Value<'a>, mut emit: impl FnMut(&[Cell<'a>; N_SLOTS])) {
    let ty = get_str(field, "type").unwrap_or("");
    let value = field.field("value").filter(|v| !v.is_null());
    let mut row = [Cell::Null; N_SLOTS];
    row[S_VALUE_INDEX] = Cell::I(0);
    let scalar_text = |v: Value<'a>| -> Cell<'a> { Cell::J(v) };
    match (ty, value.map(|v| (v, v.kind()))) {
        (_, None) => emit(&row),
        ("multiple-select", Some((_, Kind::Array(items)))) => {
            if items.is_empty() {
                emit(&row);
            }
            for (i, item) in items.iter().enumerate() {
                let mut r = row;
                r[S_VALUE_INDEX] = Cell::I(i as i64);
                r[S_TEXT] = scalar_text(item);
                emit(&r);
            }
        }
        ("scorecard", Some((_, Kind::Array(items)))) => {
            if items.is_empty() {
                emit(&row);
            }
            for (i, item) in items.iter().enumerate() {
                let mut r = row;
                r[S_VALUE_INDEX] = Cell::I(i as i64);
                r[S_NUMBER] = Cell::from(item.field("score"));
                r[S_TEXT] = Cell::from(item.field("comment"));
                emit(&r);
            }
        }
        ("score", Some((v, _))) => {
            row[S_NUMBER] = Cell::J(v);
            emit(&row);
        }
        ("currency", Some((v, _))) => {
            row[S_DECIMAL] = Cell::J(v);
            row[S_CURRENCY] = Cell::from(field.field("currency"));
            emit(&row);
        }
        ("date", Some((v, _))) => {
            row[S_DATE] = Cell::J(v);
            emit(&row);
        }
        ("file-upload", Some((v, kind))) => {
            row[S_FILE] = match kind {
                Kind::Object(o) => Cell::from(o.field("id")),
                _ => Cell::J(v),
            };
            emit(&row);
        }
        ("code", Some((v, kind))) => {
            match kind {
                Kind::Object(o) => {
                    row[S_TEXT] = Cell::from(o.field("code").or_else(|| o.field("value")));
                    row[S_CODE_LANGUAGE] = Cell::from(o.field("language"));
                }
                _ => {
                    row[S_TEXT] = Cell::J(v);
                    row[S_CODE_LANGUAGE] = Cell::from(field.field("language"));
                }
            }
            emit(&row);
        }
        (_, Some((_, Kind::Array(items)))) => {
            if items.is_empty() {
                emit(&row);
            }
            for (i, item) in items.iter().enumerate() {
                let mut r = row;
                r[S_VALUE_INDEX] = Cell::I(i as i64);
                route_untyped(item, &mut r);
                emit(&r);
            }
        }
        (_, Some((v, _))) => {
            route_untyped(v, &mut row);
            emit(&row);
        }
    }
}

/// Text-like types and unknown types: by JSON value kind.
fn route_untyped<'a>(v: Value<'a>, row: &mut [Cell<'a>; N_SLOTS]) {
    match v.as_number() {
        Some(n) if n.is_integer() => row[S_NUMBER] = Cell::J(v),
        Some(_) => row[S_DECIMAL] = Cell::J(v),
        None => row[S_TEXT] = Cell::J(v),
    }
}

/// Writes the field rows of `form` into `field_table` (keyed by `form_id`), and the template
/// definitions into `template_field` / `score_card_sub_field`.
pub(crate) fn write_fields(t: &mut Tables, field_table: Table, form: Value<'_>, form_id: &str) {
    if let Some(w) = t.writer(field_table) {
        let fields = w.arr(form, "fields");
        for (i, field) in fields.iter().enumerate() {
            route(field, |slots| {
                let mut s = *slots;
                s[SLOT_PARENT] = Cell::S(form_id);
                s[SLOT_INDEX] = Cell::I(i as i64);
                w.push(field, &s);
            });
        }
    }
    write_template(t, form);
}

/// Template field definitions from a form's `fields[]` (keyed by `baseTemplateId`).
pub(crate) fn write_template(t: &mut Tables, form: Value<'_>) {
    let Some(template) = get_str(form, "baseTemplateId") else {
        return;
    };
    if !t.templates.insert(template.to_owned()) {
        return; // the first form seen for a template wins
    }
    let fields = get_arr(form, "fields");
    if let Some(w) = t.writer(Table::TemplateField) {
        for (i, field) in fields.iter().enumerate() {
            w.push(field, &[Cell::S(template), Cell::I(i as i64)]);
        }
    }
    if let Some(w) = t.writer(Table::ScoreCardSubField) {
        for (i, field) in fields.iter().enumerate() {
            for (j, score) in get_arr(field, "scores").iter().enumerate() {
                w.push(
                    score,
                    &[
                        Cell::S(template),
                        Cell::I(j as i64),
                        Cell::Null,
                        Cell::I(i as i64),
                    ],
                );
            }
        }
    }
}

/// The text of a form's score-system answer (`feedback_form.score_system_value`).
pub(crate) fn score_system_value(form: Value<'_>) -> Option<Value<'_>> {
    get_arr(form, "fields")
        .iter()
        .find(|f| get_str(*f, "type") == Some("score-system"))
        .and_then(|f| f.field("value"))
        .filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;
    use crate::decode::Tables;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    #[test]
    fn values_are_routed_by_field_type() {
        let mut t = Tables::new(
            catalog().iter(),
            &[
                "feedback_form_field",
                "template_field",
                "score_card_sub_field",
            ],
        );
        let form = crate::json::bv(json!({
            "id": "f1", "baseTemplateId": "tpl",
            "fields": [
                {"type": "score-system", "text": "Overall", "value": "3 - Hire"},
                {"type": "multiple-select", "value": ["a", "b"]},
                {"type": "scorecard", "scores": [{"text": "Algo", "description": "d"}],
                 "value": [{"score": 3, "comment": "ok"}]},
                {"type": "currency", "currency": "EUR", "value": 1000.5},
                {"type": "date", "value": "1468953420000"},
                {"type": "file-upload", "value": {"id": "file1"}},
                {"type": "code", "language": "python", "value": "print()"},
                {"type": "score", "value": null},
                {"type": "yes-no", "value": "yes"}
            ]
        }));
        write_fields(&mut t, Table::FeedbackFormField, form, "f1");
        let out = t.finish_all().unwrap();
        let b = &out
            .iter()
            .find(|(n, _)| n == "feedback_form_field")
            .unwrap()
            .1;
        assert_eq!(b.num_rows(), 10);
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        assert_eq!(col("value_text").as_string::<i32>().value(0), "3 - Hire");
        assert_eq!(col("value_text").as_string::<i32>().value(2), "b");
        assert_eq!(col("value_index").as_primitive::<Int64Type>().value(2), 1);
        assert_eq!(col("value_number").as_primitive::<Int64Type>().value(3), 3);
        assert_eq!(col("value_text").as_string::<i32>().value(3), "ok");
        assert_eq!(
            col("value_decimal").as_primitive::<Float64Type>().value(4),
            1000.5
        );
        assert_eq!(col("currency").as_string::<i32>().value(4), "EUR");
        assert_eq!(
            col("value_date")
                .as_primitive::<TimestampMicrosecondType>()
                .value(5),
            1_468_953_420_000_000
        );
        assert_eq!(col("value_file_id").as_string::<i32>().value(6), "file1");
        assert_eq!(col("code_language").as_string::<i32>().value(7), "python");
        assert!(col("value_number").is_null(8));
        assert_eq!(col("field_index").as_primitive::<Int64Type>().value(9), 8);
        let tf = &out.iter().find(|(n, _)| n == "template_field").unwrap().1;
        assert_eq!(tf.num_rows(), 9);
        let sc = &out
            .iter()
            .find(|(n, _)| n == "score_card_sub_field")
            .unwrap()
            .1;
        assert_eq!(sc.num_rows(), 1);
        assert_eq!(
            sc.column(sc.schema().index_of("field_index").unwrap())
                .as_primitive::<Int64Type>()
                .value(0),
            2
        );
        assert_eq!(score_system_value(form).unwrap().as_str(), Some("3 - Hire"));
    }
}
