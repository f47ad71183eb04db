//! Re-imported lists: users, stages, archive reasons, postings, requisitions and requisition
//! fields, with their child tables.

use super::{Cell, Tables, get_arr, get_str};
use super::{Field, Kind, Value};
use crate::lever_tables::Table;

/// Writes one object of a flat lookup list (users, stage, archive_reason, requisition_fields).
pub(crate) fn write_flat(t: &mut Tables, table: Table, item: Value<'_>) {
    if let Some(w) = t.writer(table) {
        w.push(item, &[]);
    }
}

/// Writes a posting and its tags, content lists and distribution channels.
pub(crate) fn write_posting(t: &mut Tables, p: Value<'_>) {
    let Some(id) = get_str(p, "id") else { return };
    if let Some(w) = t.writer(Table::Posting) {
        w.push(p, &[]);
    }
    let me = [Cell::S(id)];
    if let Some(w) = t.writer(Table::PostingTag) {
        for x in w.arr(p, "tags") {
            w.push(x, &me);
        }
    }
    if let Some(w) = t.writer(Table::PostingDistributionChannel) {
        for x in w.arr(p, "distributionChannels") {
            w.push(x, &me);
        }
    }
    if let Some(w) = t.writer(Table::PostingContentList) {
        let lists = p.field("content").map(|c| get_arr(c, "lists"));
        for (i, x) in lists.into_iter().flatten().enumerate() {
            w.push(x, &[Cell::S(id), Cell::I(i as i64)]);
        }
    }
}

/// `requisition.headcount_infinite`: `headcountInfinite` when Lever sends it (older
/// payloads), else whether `headcountTotal` is the string `unlimited` (`"false"` otherwise,
/// also when `headcountTotal` is absent).
pub(crate) fn headcount_infinite(r: Value<'_>) -> Option<&'static str> {
    match r.field("headcountInfinite").map(Value::kind) {
        Some(Kind::Bool(true)) => return Some("true"),
        Some(Kind::Bool(false)) => return Some("false"),
        Some(Kind::Str("true")) => return Some("true"),
        Some(Kind::Str("false")) => return Some("false"),
        _ => {}
    }
    match r.field("headcountTotal").map(Value::kind) {
        Some(Kind::Str(s)) if s.eq_ignore_ascii_case("unlimited") => Some("true"),
        _ => Some("false"),
    }
}

/// Writes a requisition (custom-field columns come from the writer's extractors) and its
/// posting and offer links.
pub(crate) fn write_requisition(t: &mut Tables, r: Value<'_>) {
    let Some(id) = get_str(r, "id") else { return };
    if let Some(w) = t.writer(Table::Requisition) {
        let hi = Cell::from(headcount_infinite(r));
        w.push(r, &[Cell::Null, Cell::Null, Cell::Null, hi]);
    }
    let me = [Cell::S(id)];
    if let Some(w) = t.writer(Table::RequisitionPosting) {
        for x in w.arr(r, "postings") {
            w.push(x, &me);
        }
    }
    if let Some(w) = t.writer(Table::RequisitionOffer) {
        for x in w.arr(r, "offerIds") {
            w.push(x, &me);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;
    use arrow::array::{Array, AsArray};
    use serde_json::json;

    #[test]
    fn requisition_strings_and_links() {
        let mut t = Tables::new(
            catalog().iter(),
            &["requisition", "requisition_posting", "requisition_offer"],
        );
        let r = crate::json::bv(json!({
            "id": "r1", "headcountTotal": "unlimited", "headcountHired": 2,
            "compensationBand": {"currency": "USD", "min": 85000, "max": 120000.5},
            "approval": {"id": "a1", "startedAt": 1000, "steps": []},
            "postings": ["p1", "p2"], "offerIds": ["o1"], "creator": {"id": "u1"}
        }));
        write_requisition(&mut t, r);
        let out = t.finish_all().unwrap();
        let b = &out.iter().find(|(n, _)| n == "requisition").unwrap().1;
        let s = |c: &str| {
            let a = b.column(b.schema().index_of(c).unwrap());
            if a.is_null(0) {
                None
            } else {
                Some(a.as_string::<i32>().value(0).to_owned())
            }
        };
        assert_eq!(s("headcount_total").as_deref(), Some("unlimited"));
        assert_eq!(s("headcount_hired").as_deref(), Some("2"));
        assert_eq!(s("headcount_infinite").as_deref(), Some("true"));
        assert_eq!(s("compensation_band_min").as_deref(), Some("85000"));
        assert_eq!(s("compensation_band_max").as_deref(), Some("120000.5"));
        assert_eq!(s("creator_id").as_deref(), Some("u1"));
        assert_eq!(s("approval_id").as_deref(), Some("a1"));
        let rp = &out
            .iter()
            .find(|(n, _)| n == "requisition_posting")
            .unwrap()
            .1;
        assert_eq!(rp.num_rows(), 2);
    }

    #[test]
    fn posting_children() {
        let mut t = Tables::new(
            catalog().iter(),
            &[
                "posting",
                "posting_tag",
                "posting_content_list",
                "posting_distribution_channel",
            ],
        );
        write_posting(
            &mut t,
            crate::json::bv(
                json!({"id": "p1", "tags": ["a"], "distributionChannels": ["public", "internal"],
                "categories": {"team": "Eng"}, "content": {"description": "d", "lists": [{"text": "h", "content": "<li>"}]},
                "reqCode": "R-1"}),
            ),
        );
        let out = t.finish_all().unwrap();
        let n = |x: &str| out.iter().find(|(y, _)| y == x).unwrap().1.num_rows();
        assert_eq!(n("posting"), 1);
        assert_eq!(n("posting_tag"), 1);
        assert_eq!(n("posting_distribution_channel"), 2);
        assert_eq!(n("posting_content_list"), 1);
    }
}
