//! The test oracle: the destination tables sluice must write for a given [`Truth`].
//!
//! Written independently of the connector's own mapping code, literally from
//! `DESTINATION_SCHEMA.md` (§3 conventions, §4 per-table mappings, §5 form-value routing, §6.5
//! requisition custom fields) by walking the truth JSON. A disagreement between this module and
//! sluice's output reveals a bug on one side. Table names, column lists and primary keys are
//! read from `destination_schema.json` (a copy lives in `data/`); the values are mapped here.
//!
//! # What a row holds
//!
//! * Exactly the columns of `destination_schema.json` minus `legacy` columns and minus the
//!   `_fivetran_*` system columns — except `contact_link._fivetran_id`, which is part of that
//!   table's key: the first 32 hex characters of SHA-256 over `contact_id + "|" + link` (§3.4).
//!   Requisition rows also carry `custom_field_*` columns (§6.5).
//! * Values: STRING → JSON string, BOOLEAN → bool, INT → i64, DOUBLE → f64, TIMESTAMP → i64
//!   **microseconds** since the epoch (Lever's milliseconds × 1000), JSON → a string holding the
//!   JSON text (`serde_json::to_string` of the value). Absent or null fields → JSON null.
//!
//! # Interpretation choices
//!
//! * **Live rows only.** The tables hold one row per object present in Lever now. Rows a sync
//!   keeps for deleted objects (soft-deleted with `_fivetran_deleted = true`, or retained in
//!   tables that do not capture deletes, such as the opportunity of a hard-deleted candidacy)
//!   are not included: compare after dropping them.
//! * **Confidentiality.** With `confidential: false`, confidential opportunities (and
//!   everything read from them or their children), confidential postings (and their
//!   tag/content-list/distribution-channel rows) and confidential requisitions (and their
//!   posting/offer rows) are left out. Nothing else is filtered: ids of confidential objects
//!   referenced from visible rows (e.g. `interview.postings[]`) stay.
//! * **Feedback, notes and profile forms with `deletedAt`** are still listed by Lever and are
//!   live rows with `deleted_at` set (dbt drops them itself). Hard-deleted ones are absent.
//! * **Contacts**: `contact`, `contact_email`, `contact_phone` and `contact_link` are derived
//!   from every visible opportunity; when several opportunities share a contact, the first
//!   opportunity in truth order wins (the emulator gives them identical contact data).
//!   `contact.location` is the opportunity's `location` string.
//! * **STRING columns given a non-string** (`headcount_total` = 3, `compensation_band_min`,
//!   offer field values) are written as the JSON number's text (`3`, `95000.5`); strings stay
//!   as they are; objects/arrays become JSON text.
//! * **`requisition.headcount_infinite`** (STRING): `headcountInfinite` rendered as text when
//!   the payload has it, else `"true"` when `headcountTotal` is the string `"unlimited"`, else
//!   `"false"`.
//! * **`application.referrer_id`** ← `application.user` whatever the application type (the
//!   column's documented source; Lever sets `user` for referrals and manually added ones).
//! * **`posting.requisition_code`** ← `reqCode` (§8.5).
//! * **`template_field` / `score_card_sub_field`** come from the field definitions inside the
//!   answered forms (feedback, profile forms, referrals and application `customQuestions`),
//!   keyed by the form's `baseTemplateId`; the first form seen for a template wins. Templates no
//!   visible form uses produce no rows. `score_card_sub_field` rows come from the `scores[]`
//!   definitions of `scorecard` fields.
//! * **`posting_form`** rows come from every entry of `applications[].customQuestions[]`
//!   (the emulator only produces type `posting` there), `application_id` = the application.
//! * **Form values (§5).** One row per value: `field_index` = position in `fields[]`,
//!   `value_index` = position inside an array value (`multiple-select`, `scorecard`), 0 for
//!   scalars. A field whose value is null or an empty array still gets one row (`value_index`
//!   0, value columns null) so its type is recorded. Routing: `value_text` for text, textarea,
//!   dropdown, multiple-choice, multiple-select items, yes-no, score-system, university and
//!   scorecard comments; `value_number` for score and scorecard scores; `value_decimal` +
//!   `currency` (from the field's `currency`) for currency; `value_date` for date;
//!   `value_file_id` = `value.id` for file-upload; code: `value_text` = the code string and
//!   `code_language` = the field's `language` (API.md) — or, if the value is an object,
//!   `value.code`/`value.language` (DESTINATION_SCHEMA.md's reading). Unknown types route by
//!   JSON kind (string → text, integer → number, other number → decimal, bool → text,
//!   object → JSON text). `currency` is only set on currency fields, `code_language` only on
//!   code fields.
//! * **`feedback_form.score_system_value`**: the value of the form's first `score-system`
//!   field, as text.
//! * **Requisition custom fields (§6.5)**: one column `custom_field_<key lower-cased>` for every
//!   key present in the `customFields` of any visible requisition (union over the truth; a
//!   connector that saw since-deleted requisitions may have more columns). String → STRING,
//!   integer → INT, other number → DOUBLE, boolean → BOOLEAN, date fields stay epoch-ms INT;
//!   a one-level object value becomes `custom_field_<key>_<subfield>` columns with the same
//!   typing (deeper objects/arrays → JSON text). Requisitions without a value get null.
//! * **`opportunity_stage_history.to_stage_index`** is INT (§3.2 exception).
//! * `candidate_stage_history` is always empty (deprecated endpoint).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Truth;

/// One destination row: column name → value.
pub type Row = BTreeMap<String, Value>;

/// Options of [`tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedOptions {
    /// Whether the sync reads confidential data (`confidentiality=all`). `false` = what a
    /// non-confidential sync sees. Default `true` (sluice syncs confidential data unless told
    /// otherwise).
    pub confidential: bool,
}

impl Default for ExpectedOptions {
    fn default() -> Self {
        Self { confidential: true }
    }
}

/// A table of `destination_schema.json`.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns written (legacy and `_fivetran_*` excluded, `contact_link._fivetran_id` kept),
    /// with their spec type.
    pub columns: Vec<(String, String)>,
    /// Primary key columns.
    pub primary_key: Vec<String>,
}

/// The 46 tables of `destination_schema.json`, in spec order.
pub fn schema() -> &'static [TableSchema] {
    static SCHEMA: OnceLock<Vec<TableSchema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let spec: Value = serde_json::from_str(include_str!("../data/destination_schema.json"))
            .unwrap_or(Value::Null);
        spec["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let name = t["name"].as_str().unwrap_or_default().to_string();
                let columns = t["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| {
                        let n = c["name"].as_str().unwrap_or_default();
                        let origin = c["origin"].as_str().unwrap_or_default();
                        origin != "legacy"
                            && (!n.starts_with("_fivetran_")
                                || (name == "contact_link" && n == "_fivetran_id"))
                    })
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_string(),
                            c["type"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let primary_key = t["primary_key"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect();
                TableSchema {
                    name,
                    columns,
                    primary_key,
                }
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// value helpers

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

/// STRING column.
fn s(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(x) => json!(x),
        Value::Number(n) => json!(n.to_string()),
        Value::Bool(b) => json!(b.to_string()),
        other => json!(other.to_string()),
    }
}

/// TIMESTAMP column: epoch ms (number or numeric string) → µs.
fn ts(v: &Value) -> Value {
    let ms = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(x) => x.trim().parse::<i64>().ok(),
        _ => None,
    };
    ms.map_or(Value::Null, |ms| json!(ms * 1000))
}

/// INT column.
fn int(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        Value::String(x) => x.trim().parse::<i64>().map_or(Value::Null, |i| json!(i)),
        _ => Value::Null,
    }
}

/// DOUBLE column.
fn dbl(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        Value::String(x) => x.trim().parse::<f64>().map_or(Value::Null, |f| json!(f)),
        _ => Value::Null,
    }
}

/// BOOLEAN column.
fn boolean(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!(b),
        Value::String(x) if x == "true" || x == "false" => json!(x == "true"),
        _ => Value::Null,
    }
}

/// JSON column.
fn json_text(v: &Value) -> Value {
    if v.is_null() {
        Value::Null
    } else {
        json!(v.to_string())
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn row(pairs: Vec<(&str, Value)>) -> Row {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn link_id(contact_id: &str, link: &str) -> String {
    let digest = Sha256::digest(format!("{contact_id}|{link}").as_bytes());
    hex::encode(digest)[..32].to_string()
}

/// Rows per table, with optional de-duplication by primary key (first row wins).
struct Out {
    tables: BTreeMap<String, Vec<Row>>,
    seen: BTreeMap<String, BTreeSet<String>>,
}

impl Out {
    fn push(&mut self, table: &str, r: Row) {
        self.tables.entry(table.to_string()).or_default().push(r);
    }

    /// Pushes unless a row with the same key values was pushed before.
    fn push_once(&mut self, table: &str, key: &[&str], r: Row) {
        let k = key
            .iter()
            .map(|c| r.get(*c).map_or_else(String::new, Value::to_string))
            .collect::<Vec<_>>()
            .join("\u{1}");
        if self.seen.entry(table.to_string()).or_default().insert(k) {
            self.push(table, r);
        }
    }
}

fn confidential(v: &Value) -> bool {
    v["confidentiality"] == "confidential"
}

/// Value rows of one form's fields (§5).
fn field_rows(out: &mut Out, table: &str, fk: &str, form_id: &Value, fields: &[Value]) {
    for (fi, field) in fields.iter().enumerate() {
        let kind = field["type"].as_str().unwrap_or_default();
        let base = |vi: usize| -> Row {
            row(vec![
                (fk, form_id.clone()),
                ("field_index", json!(fi as i64)),
                ("value_index", json!(vi as i64)),
                ("type", s(&field["type"])),
                ("code_language", Value::Null),
                (
                    "currency",
                    if kind == "currency" {
                        s(&field["currency"])
                    } else {
                        Value::Null
                    },
                ),
                ("value_date", Value::Null),
                ("value_decimal", Value::Null),
                ("value_file_id", Value::Null),
                ("value_number", Value::Null),
                ("value_text", Value::Null),
            ])
        };
        let value = &field["value"];
        let mut rows: Vec<Row> = Vec::new();
        match kind {
            "multiple-select" | "scorecard" => {
                for (vi, item) in arr(value).iter().enumerate() {
                    let mut r = base(vi);
                    if kind == "scorecard" {
                        r.insert("value_number".into(), int(&item["score"]));
                        r.insert("value_text".into(), s(&item["comment"]));
                    } else {
                        r.insert("value_text".into(), s(item));
                    }
                    rows.push(r);
                }
            }
            _ => {
                let mut r = base(0);
                let (col, v) = match kind {
                    "text" | "textarea" | "dropdown" | "multiple-choice" | "yes-no"
                    | "score-system" | "university" | "note" => ("value_text", s(value)),
                    "score" => ("value_number", int(value)),
                    "currency" => ("value_decimal", dbl(value)),
                    "date" => ("value_date", ts(value)),
                    "file-upload" => ("value_file_id", s(&value["id"])),
                    "code" => {
                        if value.is_object() {
                            r.insert("code_language".into(), s(&value["language"]));
                            (
                                "value_text",
                                s(if value["code"].is_null() {
                                    &value["text"]
                                } else {
                                    &value["code"]
                                }),
                            )
                        } else {
                            r.insert("code_language".into(), s(&field["language"]));
                            ("value_text", s(value))
                        }
                    }
                    _ => match value {
                        Value::Number(n) if n.is_i64() || n.is_u64() => {
                            ("value_number", int(value))
                        }
                        Value::Number(_) => ("value_decimal", dbl(value)),
                        _ => ("value_text", s(value)),
                    },
                };
                r.insert(col.into(), v);
                rows.push(r);
            }
        }
        if rows.is_empty() {
            rows.push(base(0));
        }
        for r in rows {
            out.push(table, r);
        }
    }
}

/// `template_field` and `score_card_sub_field` rows from an answered form.
fn template_rows(out: &mut Out, form: &Value) {
    let tid = &form["baseTemplateId"];
    if tid.is_null() {
        return;
    }
    for (fi, field) in arr(&form["fields"]).iter().enumerate() {
        out.push_once(
            "template_field",
            &["id", "field_index"],
            row(vec![
                ("id", s(tid)),
                ("field_index", json!(fi as i64)),
                ("text", s(&field["text"])),
                ("description", s(&field["description"])),
                ("required", boolean(&field["required"])),
                ("type", s(&field["type"])),
            ]),
        );
        if field["type"] == "scorecard" {
            for (si, score) in arr(&field["scores"]).iter().enumerate() {
                out.push_once(
                    "score_card_sub_field",
                    &["id", "field_index", "sub_field_index"],
                    row(vec![
                        ("id", s(tid)),
                        ("field_index", json!(fi as i64)),
                        ("sub_field_index", json!(si as i64)),
                        ("text", s(&score["text"])),
                        ("description", s(&score["description"])),
                    ]),
                );
            }
        }
    }
}

fn opportunity_rows(out: &mut Out, o: &Value) {
    let id = &o["id"];
    let contact = &o["contact"];
    out.push(
        "opportunity",
        row(vec![
            ("id", s(id)),
            ("archived_at", ts(at(o, "archived.archivedAt"))),
            ("archived_reason_id", s(at(o, "archived.reason"))),
            ("contact", s(contact)),
            ("created_at", ts(&o["createdAt"])),
            (
                "data_protection_contact_allowed",
                boolean(at(o, "dataProtection.contact.allowed")),
            ),
            (
                "data_protection_contact_expires_at",
                ts(at(o, "dataProtection.contact.expiresAt")),
            ),
            (
                "data_protection_store_allowed",
                boolean(at(o, "dataProtection.store.allowed")),
            ),
            (
                "data_protection_store_expires_at",
                ts(at(o, "dataProtection.store.expiresAt")),
            ),
            ("headline", s(&o["headline"])),
            ("is_anonymized", boolean(&o["isAnonymized"])),
            ("last_advanced_at", ts(&o["lastAdvancedAt"])),
            ("last_interaction_at", ts(&o["lastInteractionAt"])),
            ("location", s(&o["location"])),
            ("name", s(&o["name"])),
            ("origin", s(&o["origin"])),
            ("owner_id", s(&o["owner"])),
            ("snoozed_until", ts(&o["snoozedUntil"])),
            ("stage_id", s(&o["stage"])),
            ("updated_at", ts(&o["updatedAt"])),
            ("confidentiality", s(&o["confidentiality"])),
            ("sourced_by_id", s(&o["sourcedBy"])),
        ]),
    );
    for c in arr(&o["stageChanges"]) {
        out.push(
            "opportunity_stage_history",
            row(vec![
                ("opportunity_id", s(id)),
                ("updated_at", ts(&c["updatedAt"])),
                ("stage_id", s(&c["toStageId"])),
                ("to_stage_index", int(&c["toStageIndex"])),
                ("updater_id", s(&c["userId"])),
            ]),
        );
    }
    for t in arr(&o["tags"]) {
        out.push(
            "opportunity_tag",
            row(vec![("opportunity_id", s(id)), ("tags", s(t))]),
        );
    }
    for t in arr(&o["sources"]) {
        out.push(
            "opportunity_source",
            row(vec![("opportunity_id", s(id)), ("source", s(t))]),
        );
    }
    if !contact.is_null() {
        out.push_once(
            "contact",
            &["id"],
            row(vec![
                ("id", s(contact)),
                ("name", s(&o["name"])),
                ("headline", s(&o["headline"])),
                ("location", s(&o["location"])),
                ("is_anonymized", boolean(&o["isAnonymized"])),
            ]),
        );
        let cid = contact.as_str().unwrap_or_default();
        for e in arr(&o["emails"]) {
            out.push_once(
                "contact_email",
                &["contact_id", "email"],
                row(vec![("contact_id", s(contact)), ("email", s(e))]),
            );
        }
        for (i, p) in arr(&o["phones"]).iter().enumerate() {
            out.push_once(
                "contact_phone",
                &["contact_id", "index"],
                row(vec![
                    ("contact_id", s(contact)),
                    ("index", json!(i as i64)),
                    ("type", s(&p["type"])),
                    ("value", s(&p["value"])),
                ]),
            );
        }
        for l in arr(&o["links"]) {
            let link = l.as_str().unwrap_or_default();
            out.push_once(
                "contact_link",
                &["contact_id", "_fivetran_id"],
                row(vec![
                    ("contact_id", s(contact)),
                    ("_fivetran_id", json!(link_id(cid, link))),
                    ("link", s(l)),
                ]),
            );
        }
    }
    for a in arr(&o["applications"]) {
        out.push(
            "application",
            row(vec![
                ("id", s(&a["id"])),
                (
                    "opportunity_id",
                    s(if a["opportunityId"].is_null() {
                        id
                    } else {
                        &a["opportunityId"]
                    }),
                ),
                ("posting_id", s(&a["posting"])),
                ("posting_hiring_manager_id", s(&a["postingHiringManager"])),
                ("posting_owner_id", s(&a["postingOwner"])),
                ("referrer_id", s(&a["user"])),
                ("requisition_for_hire_id", s(at(a, "requisitionForHire.id"))),
                (
                    "requisition_for_hire_code",
                    s(at(a, "requisitionForHire.requisitionCode")),
                ),
                (
                    "requisition_for_hire_manager",
                    s(at(a, "requisitionForHire.hiringManagerOnHire")),
                ),
                ("archived_at", ts(at(a, "archived.archivedAt"))),
                ("archived_reason_id", s(at(a, "archived.reason"))),
                ("comments", s(&a["comments"])),
                ("company", s(&a["company"])),
                ("created_at", ts(&a["createdAt"])),
                ("type", s(&a["type"])),
                ("links", json_text(&a["links"])),
            ]),
        );
        for form in arr(&a["customQuestions"]) {
            out.push(
                "posting_form",
                row(vec![
                    ("id", s(&form["id"])),
                    ("opportunity_id", s(id)),
                    ("application_id", s(&a["id"])),
                    ("creator_id", s(&form["user"])),
                    ("template_id", s(&form["baseTemplateId"])),
                    ("completed_at", ts(&form["completedAt"])),
                    ("created_at", ts(&form["createdAt"])),
                    ("text", s(&form["text"])),
                    ("type", s(&form["type"])),
                ]),
            );
            field_rows(
                out,
                "posting_form_field",
                "posting_form_id",
                &s(&form["id"]),
                arr(&form["fields"]),
            );
            template_rows(out, form);
        }
    }
}

fn children_rows(out: &mut Out, o: &Value, ch: &crate::OpportunityChildren) {
    let oid = &o["id"];
    let contact = &o["contact"];
    for f in &ch.feedback {
        let score = arr(&f["fields"])
            .iter()
            .find(|x| x["type"] == "score-system")
            .map_or(Value::Null, |x| s(&x["value"]));
        out.push(
            "feedback_form",
            row(vec![
                ("id", s(&f["id"])),
                ("opportunity_id", s(oid)),
                ("creator_id", s(&f["user"])),
                ("interview_id", s(&f["interview"])),
                ("template_id", s(&f["baseTemplateId"])),
                ("completed_at", ts(&f["completedAt"])),
                ("created_at", ts(&f["createdAt"])),
                ("deleted_at", ts(&f["deletedAt"])),
                ("instructions", s(&f["instructions"])),
                ("score_system_value", score),
                ("text", s(&f["text"])),
                ("type", s(&f["type"])),
                ("panel_id", s(&f["panel"])),
            ]),
        );
        field_rows(
            out,
            "feedback_form_field",
            "feedback_form_id",
            &s(&f["id"]),
            arr(&f["fields"]),
        );
        template_rows(out, f);
    }
    for f in &ch.files {
        out.push(
            "file",
            row(vec![
                ("id", s(&f["id"])),
                ("contact_id", s(contact)),
                ("download_url", s(&f["downloadUrl"])),
                ("ext", s(&f["ext"])),
                ("name", s(&f["name"])),
                ("uploaded_at", ts(&f["uploadedAt"])),
                ("opportunity_id", s(oid)),
                ("status", s(&f["status"])),
                ("size", int(&f["size"])),
            ]),
        );
    }
    for iv in &ch.interviews {
        let iid = &iv["id"];
        out.push(
            "interview",
            row(vec![
                ("id", s(iid)),
                ("opportunity_id", s(oid)),
                ("canceled_at", ts(&iv["canceledAt"])),
                ("created_at", ts(&iv["createdAt"])),
                ("creator_id", s(&iv["user"])),
                ("date", ts(&iv["date"])),
                ("duration", int(&iv["duration"])),
                ("feedback_reminder", s(&iv["feedbackReminder"])),
                ("gcal_event_url", s(&iv["gcalEventUrl"])),
                ("location", s(&iv["location"])),
                ("note", s(&iv["note"])),
                ("panel_id", s(&iv["panel"])),
                ("stage_id", s(&iv["stage"])),
                ("subject", s(&iv["subject"])),
                ("timezone", s(&iv["timezone"])),
                ("feedback_template_id", s(&iv["feedbackTemplate"])),
            ]),
        );
        for f in arr(&iv["feedbackForms"]) {
            out.push(
                "interview_feedback",
                row(vec![("interview_id", s(iid)), ("feedback_form_id", s(f))]),
            );
        }
        for u in arr(&iv["interviewers"]) {
            out.push(
                "interview_user",
                row(vec![("interview_id", s(iid)), ("user_id", s(&u["id"]))]),
            );
        }
        for p in arr(&iv["postings"]) {
            out.push(
                "posting_interview",
                row(vec![("interview_id", s(iid)), ("posting_id", s(p))]),
            );
        }
    }
    for p in &ch.panels {
        let pid = &p["id"];
        out.push(
            "panel",
            row(vec![
                ("id", s(pid)),
                ("opportunity_id", s(oid)),
                ("creator_id", s(&p["user"])),
                ("stage_id", s(&p["stage"])),
                ("canceled_at", ts(&p["canceledAt"])),
                ("created_at", ts(&p["createdAt"])),
                ("start", ts(&p["start"])),
                ("ends", ts(&p["end"])),
                ("external_url", s(&p["externalUrl"])),
                ("externally_managed", boolean(&p["externallyManaged"])),
                ("feedback_reminder", s(&p["feedbackReminder"])),
                ("note", s(&p["note"])),
                ("timezone", s(&p["timezone"])),
            ]),
        );
        for a in arr(&p["applications"]) {
            out.push(
                "panel_application",
                row(vec![("panel_id", s(pid)), ("application_id", s(a))]),
            );
        }
        for i in arr(&p["interviews"]) {
            out.push(
                "panel_interview",
                row(vec![("panel_id", s(pid)), ("interview_id", s(&i["id"]))]),
            );
        }
    }
    for n in &ch.notes {
        let nid = &n["id"];
        out.push(
            "note",
            row(vec![
                ("id", s(nid)),
                ("opportunity_id", s(oid)),
                ("creator_id", s(&n["user"])),
                ("completed_at", ts(&n["completedAt"])),
                ("created_at", ts(&n["createdAt"])),
                ("deleted_at", ts(&n["deletedAt"])),
                ("secret", boolean(&n["secret"])),
                ("text", s(&n["text"])),
            ]),
        );
        for (i, f) in arr(&n["fields"]).iter().enumerate() {
            out.push(
                "note_field",
                row(vec![
                    ("note_id", s(nid)),
                    ("index", json!(i as i64)),
                    ("creator_id", s(&f["user"])),
                    ("stage_id", s(&f["stage"])),
                    ("created_at", ts(&f["createdAt"])),
                    ("text", s(&f["text"])),
                    ("value", s(&f["value"])),
                    ("type", s(&f["type"])),
                    ("score", int(&f["score"])),
                ]),
            );
        }
    }
    for of in &ch.offers {
        let ofid = &of["id"];
        out.push(
            "offer",
            row(vec![
                ("id", s(ofid)),
                ("opportunity_id", s(oid)),
                ("created_at", ts(&of["createdAt"])),
                ("creator_id", s(&of["creator"])),
                ("status", s(&of["status"])),
                (
                    "sent_document_file_name",
                    s(at(of, "sentDocument.fileName")),
                ),
                (
                    "sent_document_download_url",
                    s(at(of, "sentDocument.downloadUrl")),
                ),
                (
                    "sent_document_uploaded_at",
                    ts(at(of, "sentDocument.uploadedAt")),
                ),
                (
                    "signed_document_file_name",
                    s(at(of, "signedDocument.fileName")),
                ),
                (
                    "signed_document_download_url",
                    s(at(of, "signedDocument.downloadUrl")),
                ),
                (
                    "signed_document_uploaded_at",
                    ts(at(of, "signedDocument.uploadedAt")),
                ),
            ]),
        );
        for (i, f) in arr(&of["fields"]).iter().enumerate() {
            out.push(
                "offer_field",
                row(vec![
                    ("offer_id", s(ofid)),
                    ("index", json!(i as i64)),
                    ("identifier", s(&f["identifier"])),
                    ("text", s(&f["text"])),
                    ("value", s(&f["value"])),
                ]),
            );
        }
    }
    for r in &ch.resumes {
        let rid = &r["id"];
        out.push(
            "resume",
            row(vec![
                ("id", s(rid)),
                ("opportunity_id", s(oid)),
                ("created_at", ts(&r["createdAt"])),
                ("file_download_url", s(at(r, "file.downloadUrl"))),
                ("file_ext", s(at(r, "file.ext"))),
                ("file_name", s(at(r, "file.name"))),
                ("file_uploaded_at", ts(at(r, "file.uploadedAt"))),
                ("file_status", s(at(r, "file.status"))),
            ]),
        );
        for (i, p) in arr(at(r, "parsedData.positions")).iter().enumerate() {
            out.push(
                "opportunity_position",
                row(vec![
                    ("resume_id", s(rid)),
                    ("index", json!(i as i64)),
                    ("org", s(&p["org"])),
                    ("title", s(&p["title"])),
                    ("summary", s(&p["summary"])),
                    ("location", s(&p["location"])),
                    ("start_month", int(at(p, "start.month"))),
                    ("start_year", int(at(p, "start.year"))),
                    ("end_month", int(at(p, "end.month"))),
                    ("end_year", int(at(p, "end.year"))),
                ]),
            );
        }
        for (i, p) in arr(at(r, "parsedData.schools")).iter().enumerate() {
            out.push(
                "opportunity_school",
                row(vec![
                    ("resume_id", s(rid)),
                    ("index", json!(i as i64)),
                    ("org", s(&p["org"])),
                    ("degree", s(&p["degree"])),
                    ("field", s(&p["field"])),
                    ("summary", s(&p["summary"])),
                    ("start_month", int(at(p, "start.month"))),
                    ("start_year", int(at(p, "start.year"))),
                    ("end_month", int(at(p, "end.month"))),
                    ("end_year", int(at(p, "end.year"))),
                ]),
            );
        }
    }
    for f in &ch.forms {
        out.push(
            "profile_form",
            row(vec![
                ("id", s(&f["id"])),
                ("opportunity_id", s(oid)),
                ("creator_id", s(&f["user"])),
                ("template_id", s(&f["baseTemplateId"])),
                ("completed_at", ts(&f["completedAt"])),
                ("created_at", ts(&f["createdAt"])),
                ("text", s(&f["text"])),
                ("type", s(&f["type"])),
                ("stage_id", s(&f["stage"])),
                ("deleted_at", ts(&f["deletedAt"])),
                ("instructions", s(&f["instructions"])),
            ]),
        );
        field_rows(
            out,
            "profile_form_field",
            "profile_form_id",
            &s(&f["id"]),
            arr(&f["fields"]),
        );
        template_rows(out, f);
    }
    for f in &ch.referrals {
        out.push(
            "referral_form",
            row(vec![
                ("id", s(&f["id"])),
                ("opportunity_id", s(oid)),
                ("creator_id", s(&f["user"])),
                ("template_id", s(&f["baseTemplateId"])),
                ("completed_at", ts(&f["completedAt"])),
                ("created_at", ts(&f["createdAt"])),
                ("text", s(&f["text"])),
                ("type", s(&f["type"])),
                ("referrer_id", s(&f["referrer"])),
                ("stage_id", s(&f["stage"])),
                ("instructions", s(&f["instructions"])),
            ]),
        );
        field_rows(
            out,
            "referral_form_field",
            "referral_form_id",
            &s(&f["id"]),
            arr(&f["fields"]),
        );
        template_rows(out, f);
    }
}

/// Typed value of a requisition custom field (§6.5).
fn custom_typed(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => int(v),
        Value::Number(_) => dbl(v),
        Value::String(_) | Value::Bool(_) | Value::Null => v.clone(),
        other => json!(other.to_string()),
    }
}

fn requisition_rows(out: &mut Out, truth: &Truth, opts: &ExpectedOptions) {
    let visible: Vec<&Value> = truth
        .requisitions
        .iter()
        .filter(|r| opts.confidential || !confidential(r))
        .collect();
    // custom columns: union of keys over visible requisitions
    let mut custom_cols: BTreeSet<String> = BTreeSet::new();
    let custom_of = |r: &Value| -> Vec<(String, Value)> {
        let mut cols = Vec::new();
        if let Some(m) = r["customFields"].as_object() {
            for (k, v) in m {
                let key = format!("custom_field_{}", k.to_lowercase());
                match v.as_object() {
                    Some(sub) => {
                        for (sk, sv) in sub {
                            cols.push((format!("{key}_{}", sk.to_lowercase()), custom_typed(sv)));
                        }
                    }
                    None => cols.push((key, custom_typed(v))),
                }
            }
        }
        cols
    };
    for r in &visible {
        custom_cols.extend(custom_of(r).into_iter().map(|(k, _)| k));
    }
    for r in visible {
        let rid = &r["id"];
        let total = &r["headcountTotal"];
        let infinite = if r.get("headcountInfinite").is_some_and(|v| !v.is_null()) {
            s(&r["headcountInfinite"])
        } else if total.is_null() {
            Value::Null
        } else {
            json!(if total == "unlimited" {
                "true"
            } else {
                "false"
            })
        };
        let mut row_ = row(vec![
            ("id", s(rid)),
            ("creator_id", s(&r["creator"])),
            ("hiring_manager_id", s(&r["hiringManager"])),
            ("owner_id", s(&r["owner"])),
            ("backfill", boolean(&r["backfill"])),
            (
                "compensation_band_currency",
                s(at(r, "compensationBand.currency")),
            ),
            (
                "compensation_band_interval",
                s(at(r, "compensationBand.interval")),
            ),
            ("compensation_band_max", s(at(r, "compensationBand.max"))),
            ("compensation_band_min", s(at(r, "compensationBand.min"))),
            ("created_at", ts(&r["createdAt"])),
            ("employment_status", s(&r["employmentStatus"])),
            ("headcount_hired", s(&r["headcountHired"])),
            ("headcount_infinite", infinite),
            ("headcount_total", s(total)),
            ("internal_notes", s(&r["internalNotes"])),
            ("location", s(&r["location"])),
            ("name", s(&r["name"])),
            ("requisition_code", s(&r["requisitionCode"])),
            ("status", s(&r["status"])),
            ("team", s(&r["team"])),
            ("closed_at", ts(&r["closedAt"])),
            ("approval_id", s(at(r, "approval.id"))),
            ("approval_status", s(at(r, "approval.status"))),
            ("approval_started_at", ts(at(r, "approval.startedAt"))),
            ("approval_approved_at", ts(at(r, "approval.approvedAt"))),
            ("approval_account_id", s(at(r, "approval.accountId"))),
            ("approval_created_by", s(at(r, "approval.createdBy"))),
            ("department", s(&r["department"])),
            ("confidentiality", s(&r["confidentiality"])),
            ("time_to_fill_start_at", ts(&r["timeToFillStartAt"])),
            ("time_to_fill_end_at", ts(&r["timeToFillEndAt"])),
            ("updated_at", ts(&r["updatedAt"])),
        ]);
        for c in &custom_cols {
            row_.insert(c.clone(), Value::Null);
        }
        for (k, v) in custom_of(r) {
            row_.insert(k, v);
        }
        out.push("requisition", row_);
        for p in arr(&r["postings"]) {
            out.push(
                "requisition_posting",
                row(vec![("requisition_id", s(rid)), ("posting_id", s(p))]),
            );
        }
        for o in arr(&r["offerIds"]) {
            out.push(
                "requisition_offer",
                row(vec![("requisition_id", s(rid)), ("offer_id", s(o))]),
            );
        }
    }
    for f in &truth.requisition_fields {
        out.push(
            "requisition_fields",
            row(vec![
                ("id", s(&f["id"])),
                ("text", s(&f["text"])),
                ("type", s(&f["type"])),
                ("is_required", boolean(&f["isRequired"])),
                ("options", json_text(&f["options"])),
                ("subfields", json_text(&f["subfields"])),
            ]),
        );
    }
}

fn lookup_rows(out: &mut Out, truth: &Truth, opts: &ExpectedOptions) {
    for u in &truth.users {
        out.push(
            "users",
            row(vec![
                ("id", s(&u["id"])),
                ("access_role", s(&u["accessRole"])),
                ("created_at", ts(&u["createdAt"])),
                ("deactivated_at", ts(&u["deactivatedAt"])),
                ("email", s(&u["email"])),
                ("external_directory_id", s(&u["externalDirectoryId"])),
                ("name", s(&u["name"])),
                ("photo", s(&u["photo"])),
                ("username", s(&u["username"])),
                ("job_title", s(&u["jobTitle"])),
                ("manager_id", s(&u["managerId"])),
            ]),
        );
    }
    for st in &truth.stages {
        out.push(
            "stage",
            row(vec![("id", s(&st["id"])), ("text", s(&st["text"]))]),
        );
    }
    for a in &truth.archive_reasons {
        out.push(
            "archive_reason",
            row(vec![
                ("id", s(&a["id"])),
                ("text", s(&a["text"])),
                ("status", s(&a["status"])),
                ("type", s(&a["type"])),
            ]),
        );
    }
    for p in truth
        .postings
        .iter()
        .filter(|p| opts.confidential || !confidential(p))
    {
        let pid = &p["id"];
        out.push(
            "posting",
            row(vec![
                ("id", s(pid)),
                ("creator_id", s(&p["user"])),
                ("hiring_manager_id", s(&p["hiringManager"])),
                ("owner_id", s(&p["owner"])),
                ("categories_commitment", s(at(p, "categories.commitment"))),
                ("categories_department", s(at(p, "categories.department"))),
                ("categories_level", s(at(p, "categories.level"))),
                ("categories_location", s(at(p, "categories.location"))),
                ("categories_team", s(at(p, "categories.team"))),
                ("content_closing", s(at(p, "content.closing"))),
                ("content_closing_html", s(at(p, "content.closingHtml"))),
                ("content_description", s(at(p, "content.description"))),
                (
                    "content_description_html",
                    s(at(p, "content.descriptionHtml")),
                ),
                ("created_at", ts(&p["createdAt"])),
                ("requisition_code", s(&p["reqCode"])),
                ("state", s(&p["state"])),
                ("text", s(&p["text"])),
                ("updated_at", ts(&p["updatedAt"])),
            ]),
        );
        for (i, l) in arr(at(p, "content.lists")).iter().enumerate() {
            out.push(
                "posting_content_list",
                row(vec![
                    ("posting_id", s(pid)),
                    ("index", json!(i as i64)),
                    ("text", s(&l["text"])),
                    ("content", s(&l["content"])),
                ]),
            );
        }
        for t in arr(&p["tags"]) {
            out.push(
                "posting_tag",
                row(vec![("posting_id", s(pid)), ("tags", s(t))]),
            );
        }
        for c in arr(&p["distributionChannels"]) {
            out.push(
                "posting_distribution_channel",
                row(vec![("posting_id", s(pid)), ("distribution_channel", s(c))]),
            );
        }
    }
}

/// The live rows of every destination table for `truth` (all 46 tables present, possibly
/// empty). See the module docs for every interpretation choice.
pub fn tables(truth: &Truth, opts: &ExpectedOptions) -> BTreeMap<String, Vec<Row>> {
    let mut out = Out {
        tables: schema()
            .iter()
            .map(|t| (t.name.clone(), Vec::new()))
            .collect(),
        seen: BTreeMap::new(),
    };
    let empty = crate::OpportunityChildren::default();
    for o in truth
        .opportunities
        .iter()
        .filter(|o| opts.confidential || !confidential(o))
    {
        opportunity_rows(&mut out, o);
        let ch = o["id"]
            .as_str()
            .and_then(|id| truth.children.get(id))
            .unwrap_or(&empty);
        children_rows(&mut out, o, ch);
    }
    lookup_rows(&mut out, truth, opts);
    requisition_rows(&mut out, truth, opts);
    out.tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_46_tables() {
        assert_eq!(schema().len(), 46);
        let cl = schema().iter().find(|t| t.name == "contact_link").unwrap();
        assert!(cl.columns.iter().any(|(c, _)| c == "_fivetran_id"));
        let tag = schema()
            .iter()
            .find(|t| t.name == "opportunity_tag")
            .unwrap();
        assert_eq!(
            tag.columns
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>(),
            ["opportunity_id", "tags"]
        );
    }

    #[test]
    fn value_helpers() {
        assert_eq!(
            ts(&json!(1_700_000_000_123i64)),
            json!(1_700_000_000_123_000i64)
        );
        assert_eq!(ts(&json!("1468953420000")), json!(1_468_953_420_000_000i64));
        assert_eq!(ts(&Value::Null), Value::Null);
        assert_eq!(s(&json!(3)), json!("3"));
        assert_eq!(s(&json!(95000.5)), json!("95000.5"));
        assert_eq!(int(&json!("12")), json!(12));
        assert_eq!(link_id("c", "l").len(), 32);
    }

    #[test]
    fn form_value_routing() {
        let mut out = Out {
            tables: BTreeMap::new(),
            seen: BTreeMap::new(),
        };
        let fields = vec![
            json!({"type": "multiple-select", "value": ["a", "b"]}),
            json!({"type": "scorecard", "value": [{"score": 3, "comment": "ok"}]}),
            json!({"type": "currency", "currency": "EUR", "value": 10.5}),
            json!({"type": "date", "value": 5}),
            json!({"type": "file-upload", "value": {"id": "f1"}}),
            json!({"type": "code", "language": "rust", "value": "fn x() {}"}),
            json!({"type": "yes-no", "value": null}),
            json!({"type": "multiple-select", "value": []}),
        ];
        field_rows(&mut out, "t", "form_id", &json!("F"), &fields);
        let rows = &out.tables["t"];
        assert_eq!(rows.len(), 9);
        assert_eq!(rows[1]["value_index"], json!(1));
        assert_eq!(rows[1]["value_text"], json!("b"));
        assert_eq!(rows[2]["value_number"], json!(3));
        assert_eq!(rows[2]["value_text"], json!("ok"));
        assert_eq!(rows[3]["value_decimal"], json!(10.5));
        assert_eq!(rows[3]["currency"], json!("EUR"));
        assert_eq!(rows[4]["value_date"], json!(5000));
        assert_eq!(rows[5]["value_file_id"], json!("f1"));
        assert_eq!(rows[6]["code_language"], json!("rust"));
        assert_eq!(rows[7]["value_text"], Value::Null);
        assert_eq!(rows[8]["field_index"], json!(7));
        assert_eq!(rows[8]["value_text"], Value::Null);
    }
}
