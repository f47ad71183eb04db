//! Opportunities (with their inline arrays and expanded applications) and the
//! per-opportunity child endpoints.

use super::forms::{score_system_value, write_fields, write_template};
use super::{Cell, Tables, get_arr, get_str};
use super::{Field, Kind, Value};
use crate::lever_tables::{Source, Table, tables_of};
use sha2::{Digest, Sha256};

/// A per-opportunity child endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    /// `/opportunities/:id/feedback`
    Feedback,
    /// `/opportunities/:id/notes`
    Notes,
    /// `/opportunities/:id/offers`
    Offers,
    /// `/opportunities/:id/interviews`
    Interviews,
    /// `/opportunities/:id/panels`
    Panels,
    /// `/opportunities/:id/forms`
    Forms,
    /// `/opportunities/:id/files`
    Files,
    /// `/opportunities/:id/resumes`
    Resumes,
    /// `/opportunities/:id/referrals`
    Referrals,
}

impl Endpoint {
    /// Every child endpoint.
    pub(crate) const ALL: [Endpoint; 9] = [
        Endpoint::Feedback,
        Endpoint::Notes,
        Endpoint::Offers,
        Endpoint::Interviews,
        Endpoint::Panels,
        Endpoint::Forms,
        Endpoint::Files,
        Endpoint::Resumes,
        Endpoint::Referrals,
    ];

    /// The path segment after `/opportunities/:id/`.
    pub(crate) fn segment(self) -> &'static str {
        match self {
            Endpoint::Feedback => "feedback",
            Endpoint::Notes => "notes",
            Endpoint::Offers => "offers",
            Endpoint::Interviews => "interviews",
            Endpoint::Panels => "panels",
            Endpoint::Forms => "forms",
            Endpoint::Files => "files",
            Endpoint::Resumes => "resumes",
            Endpoint::Referrals => "referrals",
        }
    }

    /// The metrics label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Feedback => "opportunities/:id/feedback",
            Endpoint::Notes => "opportunities/:id/notes",
            Endpoint::Offers => "opportunities/:id/offers",
            Endpoint::Interviews => "opportunities/:id/interviews",
            Endpoint::Panels => "opportunities/:id/panels",
            Endpoint::Forms => "opportunities/:id/forms",
            Endpoint::Files => "opportunities/:id/files",
            Endpoint::Resumes => "opportunities/:id/resumes",
            Endpoint::Referrals => "opportunities/:id/referrals",
        }
    }

    /// The tables this endpoint feeds (it is called when any of them is enabled), as
    /// declared in `lever_tables`.
    pub(crate) fn tables(self) -> &'static [&'static str] {
        tables_of(Source::Child(self))
    }
}

/// `contact_link._fivetran_id`: the first 32 hex chars of SHA-256 over `contact_id|link`.
pub(crate) fn link_id(contact: &str, link: &str) -> String {
    let mut h = Sha256::new();
    h.update(contact.as_bytes());
    h.update(b"|");
    h.update(link.as_bytes());
    let mut s = hex::encode(h.finalize());
    s.truncate(32);
    s
}

/// The contact id of an opportunity (`contact`, possibly expanded).
pub(crate) fn contact_of<'a>(opp: Value<'a>) -> Option<&'a str> {
    opp.field("contact").and_then(super::id_of)
}

/// The fields of an opportunity that the contact tables (`contact`, `contact_email`,
/// `contact_phone`, `contact_link`) are built from.
const CONTACT_FIELDS: [&str; 7] = [
    "name",
    "headline",
    "location",
    "isAnonymized",
    "emails",
    "phones",
    "links",
];

/// A digest of what the contact tables hold for this opportunity's contact: opportunities of
/// one person carry the same contact rows, so a run writes them again only when the digest
/// differs from the one it wrote last (a changed contact).
pub(crate) fn contact_digest(o: Value<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for name in CONTACT_FIELDS {
        name.hash(&mut h);
        match o.field(name) {
            Some(v) => hash_value(v, &mut h),
            None => 0u8.hash(&mut h),
        }
    }
    h.finish()
}

/// Feeds a JSON value into `h`, kind by kind (objects in their order on the wire).
fn hash_value(v: Value<'_>, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match v.kind() {
        Kind::Null => 1u8.hash(h),
        Kind::Bool(b) => (2u8, b).hash(h),
        Kind::Number(n) => (3u8, format!("{n:?}")).hash(h),
        Kind::Str(s) => (4u8, s).hash(h),
        Kind::Array(a) => {
            (5u8, a.len()).hash(h);
            for e in a.iter() {
                hash_value(e, h);
            }
        }
        Kind::Object(o) => {
            6u8.hash(h);
            for (k, e) in o.iter() {
                k.hash(h);
                hash_value(e, h);
            }
        }
    }
}

/// Writes one opportunity and its inline children. `new_contact` is false when this page
/// already wrote the contact's rows (opportunities of one person share them).
pub(crate) fn write_opportunity(t: &mut Tables, o: Value<'_>, new_contact: bool) {
    let Some(id) = get_str(o, "id") else { return };
    if let Some(w) = t.writer(Table::Opportunity) {
        w.push(o, &[]);
    }
    if let Some(w) = t.writer(Table::OpportunityStageHistory) {
        for sc in w.arr(o, "stageChanges") {
            w.push(sc, &[Cell::S(id)]);
        }
    }
    if let Some(w) = t.writer(Table::OpportunityTag) {
        for tag in w.arr(o, "tags") {
            w.push(tag, &[Cell::S(id)]);
        }
    }
    if let Some(w) = t.writer(Table::OpportunitySource) {
        for s in w.arr(o, "sources") {
            w.push(s, &[Cell::S(id)]);
        }
    }
    if let Some(contact) = contact_of(o).filter(|_| new_contact) {
        let c = Cell::S(contact);
        if let Some(w) = t.writer(Table::Contact) {
            w.push_with(|_, name| match name {
                "id" => c,
                "name" => Cell::from(o.field("name")),
                "headline" => Cell::from(o.field("headline")),
                "location" => Cell::from(o.field("location").and_then(|l| match l.kind() {
                    Kind::Object(m) => m.field("name"),
                    _ => Some(l),
                })),
                "is_anonymized" => Cell::from(o.field("isAnonymized")),
                _ => Cell::Null,
            });
        }
        if let Some(w) = t.writer(Table::ContactEmail) {
            for e in w.arr(o, "emails") {
                w.push(e, &[Cell::Null, Cell::Null, c]);
            }
        }
        if let Some(w) = t.writer(Table::ContactPhone) {
            for (i, p) in w.arr(o, "phones").iter().enumerate() {
                w.push(p, &[Cell::Null, Cell::I(i as i64), c]);
            }
        }
        if let Some(w) = t.writer(Table::ContactLink) {
            for l in w.arr(o, "links") {
                let Some(link) = l.as_str() else { continue };
                let h = link_id(contact, link);
                w.push(l, &[Cell::Null, Cell::Null, c, Cell::S(&h)]);
            }
        }
    }
    for app in get_arr(o, "applications") {
        if !app.is_object() {
            continue;
        }
        let Some(app_id) = get_str(app, "id") else {
            continue;
        };
        let opp_id = get_str(app, "opportunityId").unwrap_or(id);
        if let Some(w) = t.writer(Table::Application) {
            w.push(app, &[Cell::S(opp_id)]);
        }
        for q in get_arr(app, "customQuestions") {
            let Some(form_id) = get_str(q, "id") else {
                write_template(t, q);
                continue;
            };
            if let Some(w) = t.writer(Table::PostingForm) {
                w.push(q, &[Cell::S(id), Cell::Null, Cell::Null, Cell::S(app_id)]);
            }
            write_fields(t, Table::PostingFormField, q, form_id);
        }
    }
}

/// Writes the rows of one child endpoint's answer for opportunity `opp` (contact `contact`).
pub(crate) fn write_children<'a>(
    t: &mut Tables,
    ep: Endpoint,
    opp: &str,
    contact: Option<&str>,
    items: impl IntoIterator<Item = Value<'a>>,
) {
    let parent = [Cell::S(opp), Cell::Null, Cell::from(contact)];
    match ep {
        Endpoint::Feedback => {
            for f in items {
                let Some(fid) = get_str(f, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::FeedbackForm) {
                    let ssv = Cell::from(score_system_value(f));
                    w.push(f, &[Cell::S(opp), Cell::Null, Cell::Null, ssv]);
                }
                write_fields(t, Table::FeedbackFormField, f, fid);
            }
        }
        Endpoint::Notes => {
            for n in items {
                let Some(nid) = get_str(n, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::Note) {
                    w.push(n, &parent);
                }
                if let Some(w) = t.writer(Table::NoteField) {
                    for (i, fld) in w.arr(n, "fields").iter().enumerate() {
                        w.push(fld, &[Cell::S(nid), Cell::I(i as i64)]);
                    }
                }
            }
        }
        Endpoint::Offers => {
            for of in items {
                let Some(oid) = get_str(of, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::Offer) {
                    w.push(of, &parent);
                }
                if let Some(w) = t.writer(Table::OfferField) {
                    for (i, fld) in w.arr(of, "fields").iter().enumerate() {
                        w.push(fld, &[Cell::S(oid), Cell::I(i as i64)]);
                    }
                }
            }
        }
        Endpoint::Interviews => {
            for iv in items {
                let Some(iid) = get_str(iv, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::Interview) {
                    w.push(iv, &parent);
                }
                let me = [Cell::S(iid)];
                if let Some(w) = t.writer(Table::InterviewFeedback) {
                    for x in w.arr(iv, "feedbackForms") {
                        w.push(x, &me);
                    }
                }
                if let Some(w) = t.writer(Table::InterviewUser) {
                    for x in w.arr(iv, "interviewers") {
                        w.push(x, &me);
                    }
                }
                if let Some(w) = t.writer(Table::PostingInterview) {
                    for x in w.arr(iv, "postings") {
                        w.push(x, &me);
                    }
                }
            }
        }
        Endpoint::Panels => {
            for p in items {
                let Some(pid) = get_str(p, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::Panel) {
                    w.push(p, &parent);
                }
                let me = [Cell::S(pid)];
                if let Some(w) = t.writer(Table::PanelApplication) {
                    for x in w.arr(p, "applications") {
                        w.push(x, &me);
                    }
                }
                if let Some(w) = t.writer(Table::PanelInterview) {
                    for x in w.arr(p, "interviews") {
                        w.push(x, &me);
                    }
                }
            }
        }
        Endpoint::Forms => {
            for f in items {
                let Some(fid) = get_str(f, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::ProfileForm) {
                    w.push(f, &parent);
                }
                write_fields(t, Table::ProfileFormField, f, fid);
            }
        }
        Endpoint::Files => {
            if let Some(w) = t.writer(Table::File) {
                for f in items {
                    w.push(f, &parent);
                }
            }
        }
        Endpoint::Resumes => {
            for r in items {
                let Some(rid) = get_str(r, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::Resume) {
                    w.push(r, &parent);
                }
                let parsed = r.field("parsedData");
                if let Some(w) = t.writer(Table::OpportunityPosition) {
                    let positions = parsed.map(|p| w.arr(p, "positions"));
                    for (i, x) in positions.into_iter().flatten().enumerate() {
                        w.push(x, &[Cell::S(rid), Cell::I(i as i64)]);
                    }
                }
                if let Some(w) = t.writer(Table::OpportunitySchool) {
                    let schools = parsed.map(|p| w.arr(p, "schools"));
                    for (i, x) in schools.into_iter().flatten().enumerate() {
                        w.push(x, &[Cell::S(rid), Cell::I(i as i64)]);
                    }
                }
            }
        }
        Endpoint::Referrals => {
            for f in items {
                let Some(fid) = get_str(f, "id") else {
                    continue;
                };
                if let Some(w) = t.writer(Table::ReferralForm) {
                    w.push(f, &parent);
                }
                write_fields(t, Table::ReferralFormField, f, fid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;
    use crate::decode::Tables;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    fn col(
        out: &[(String, arrow::record_batch::RecordBatch)],
        t: &str,
        c: &str,
    ) -> arrow::array::ArrayRef {
        let b = &out.iter().find(|(n, _)| n == t).unwrap().1;
        b.column(b.schema().index_of(c).unwrap()).clone()
    }

    /// The opportunity example of API.md §4.1 (abridged).
    fn example() -> Value<'static> {
        crate::json::bv(json!({
            "id": "250d8f03-738a-4bba-a671-8a3d73477145",
            "name": "Shane Smith", "headline": "Brickly LLC, Vandelay Industries",
            "contact": "7f23e772-b3de-4f8c-8ba1-2a1c1b0b4b7c",
            "stage": {"id": "00922a60-7c15-422b-b086-f62000824fd7", "text": "Screen"},
            "stageChanges": [{"toStageId": "lead-new", "toStageIndex": 0, "updatedAt": 1407460071043i64, "userId": "df0e3f9b"}],
            "confidentiality": "non-confidential",
            "location": "Oakland",
            "phones": [{"type": null, "value": "(123) 456-7891"}],
            "emails": ["shane@exampleq3.com"],
            "links": ["indeed.com/r/Shane/0f0ea9d4b8b3e8e6"],
            "archived": {"reason": "63dd55b2-a99f-4e7b-985f-22c7bf80ab42", "archivedAt": "1417588008282"},
            "tags": ["San Francisco", "Full-time"],
            "sources": ["linkedin"],
            "origin": "sourced", "sourcedBy": "df0e3f9b", "owner": "df0e3f9b",
            "followers": ["df0e3f9b"],
            "applications": [{"id": "cdb7cad5", "type": "posting", "posting": "f2f01e16", "user": null,
                "links": ["a", "b"], "archived": null,
                "customQuestions": [{"id": "pf1", "type": "posting", "baseTemplateId": "t1", "fields": [{"type": "text", "text": "Q", "value": "A"}]}]}],
            "createdAt": 1407460071043i64, "updatedAt": null, "lastInteractionAt": 1417587916778i64,
            "lastAdvancedAt": 1417587916781i64, "snoozedUntil": null,
            "dataProtection": {"store": {"allowed": true, "expiresAt": 1522540800000i64}, "contact": {"allowed": false, "expiresAt": null}},
            "isAnonymized": false
        }))
    }

    #[test]
    fn opportunity_and_inline_children() {
        let mut t = Tables::new(catalog().iter(), crate::lever_tables::inline_tables());
        write_opportunity(&mut t, example(), true);
        let out = t.finish_all().unwrap();
        let rows = |n: &str| out.iter().find(|(x, _)| x == n).unwrap().1.num_rows();
        assert_eq!(rows("opportunity"), 1);
        assert_eq!(rows("opportunity_tag"), 2);
        assert_eq!(rows("contact_phone"), 1);
        assert_eq!(rows("posting_form_field"), 1);
        assert_eq!(
            col(&out, "opportunity", "stage_id")
                .as_string::<i32>()
                .value(0),
            "00922a60-7c15-422b-b086-f62000824fd7"
        );
        assert_eq!(
            col(&out, "opportunity", "archived_at")
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_417_588_008_282_000
        );
        assert!(col(&out, "opportunity", "updated_at").is_null(0));
        assert!(
            col(&out, "opportunity", "data_protection_store_allowed")
                .as_boolean()
                .value(0)
        );
        assert!(col(&out, "opportunity", "data_protection_contact_expires_at").is_null(0));
        assert_eq!(
            col(&out, "application", "opportunity_id")
                .as_string::<i32>()
                .value(0),
            "250d8f03-738a-4bba-a671-8a3d73477145"
        );
        assert_eq!(
            col(&out, "application", "links")
                .as_string::<i32>()
                .value(0),
            r#"["a","b"]"#
        );
        assert_eq!(
            col(&out, "posting_form", "application_id")
                .as_string::<i32>()
                .value(0),
            "cdb7cad5"
        );
        assert_eq!(
            col(&out, "contact_phone", "index")
                .as_primitive::<Int64Type>()
                .value(0),
            0
        );
        assert!(col(&out, "contact_phone", "type").is_null(0));
        let link = "indeed.com/r/Shane/0f0ea9d4b8b3e8e6";
        assert_eq!(
            col(&out, "contact_link", "_fivetran_id")
                .as_string::<i32>()
                .value(0),
            link_id("7f23e772-b3de-4f8c-8ba1-2a1c1b0b4b7c", link)
        );
        assert_eq!(link_id("c", "l").len(), 32);
    }

    #[test]
    fn child_endpoints() {
        let names: Vec<&str> = Endpoint::ALL
            .iter()
            .flat_map(|e| e.tables().iter().copied())
            .collect();
        let mut t = Tables::new(catalog().iter(), &names);
        write_children(
            &mut t,
            Endpoint::Interviews,
            "o1",
            Some("c1"),
            [crate::json::bv(json!({
                "id": "i1", "panel": "p1", "interviewers": [{"id": "u1", "name": "A"}, {"id": "u2"}],
                "feedbackForms": ["f1"], "postings": ["po1"], "duration": "60", "date": 1000
            }))],
        );
        write_children(
            &mut t,
            Endpoint::Files,
            "o1",
            Some("c1"),
            [crate::json::bv(
                json!({"id": "fi1", "size": "1000", "uploadedAt": "1468953420000"}),
            )],
        );
        write_children(
            &mut t,
            Endpoint::Resumes,
            "o1",
            Some("c1"),
            [crate::json::bv(
                json!({"id": "r1", "file": {"name": "cv.pdf"},
            "parsedData": {"positions": [{"org": "X", "start": {"year": 2019, "month": 3}}], "schools": []}}),
            )],
        );
        write_children(
            &mut t,
            Endpoint::Panels,
            "o1",
            None,
            [crate::json::bv(
                json!({"id": "p1", "end": 5, "applications": ["a1"], "interviews": [{"id": "i1"}]}),
            )],
        );
        let out = t.finish_all().unwrap();
        let rows = |n: &str| out.iter().find(|(x, _)| x == n).unwrap().1.num_rows();
        assert_eq!(rows("interview_user"), 2);
        assert_eq!(
            col(&out, "interview", "duration")
                .as_primitive::<Int64Type>()
                .value(0),
            60
        );
        assert_eq!(
            col(&out, "file", "contact_id").as_string::<i32>().value(0),
            "c1"
        );
        assert_eq!(
            col(&out, "file", "size")
                .as_primitive::<Int64Type>()
                .value(0),
            1000
        );
        assert_eq!(
            col(&out, "resume", "file_name").as_string::<i32>().value(0),
            "cv.pdf"
        );
        assert_eq!(
            col(&out, "opportunity_position", "start_year")
                .as_primitive::<Int64Type>()
                .value(0),
            2019
        );
        assert_eq!(
            col(&out, "panel", "ends")
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            5000
        );
        assert_eq!(
            col(&out, "panel_interview", "interview_id")
                .as_string::<i32>()
                .value(0),
            "i1"
        );
    }

    #[test]
    fn link_ids_match_known_sha256_prefixes() {
        // `printf '%s' 'contact-9f|https://www.linkedin.com/in/jane' | sha256sum`, first 32.
        assert_eq!(
            super::link_id("contact-9f", "https://www.linkedin.com/in/jane"),
            "dabdd6d2f2574cf81f14ffcc51aa2184"
        );
    }

    #[test]
    fn the_contact_digest_follows_every_contact_field() {
        let digest = |text: &str| {
            let doc = crate::json::Doc::parse(text.as_bytes()).unwrap();
            super::contact_digest(doc.value())
        };
        let base = r#"{"id": "o1", "stage": "s1", "name": "Ann", "headline": "x", "emails": ["a@x"], "phones": [], "links": []}"#;
        let other_opportunity = r#"{"id": "o2", "stage": "s9", "name": "Ann", "headline": "x", "emails": ["a@x"], "phones": [], "links": []}"#;
        assert_eq!(
            digest(base),
            digest(other_opportunity),
            "opportunity fields do not count"
        );
        for changed in [
            r#"{"id": "o1", "name": "Anna", "headline": "x", "emails": ["a@x"], "phones": [], "links": []}"#,
            r#"{"id": "o1", "name": "Ann", "headline": "x", "emails": ["a@y"], "phones": [], "links": []}"#,
            r#"{"id": "o1", "name": "Ann", "headline": "x", "emails": ["a@x"], "phones": [{"value": "1"}], "links": []}"#,
            r#"{"id": "o1", "name": "Ann", "headline": "x", "emails": ["a@x"], "phones": [], "links": ["l"]}"#,
            r#"{"id": "o1", "name": "Ann", "headline": "x", "emails": ["a@x"], "phones": [], "links": [], "isAnonymized": true}"#,
            r#"{"id": "o1", "name": "Ann", "headline": "x", "location": "Paris", "emails": ["a@x"], "phones": [], "links": []}"#,
        ] {
            assert_ne!(digest(base), digest(changed), "{changed}");
        }
    }
}
