//! The destination-table oracle.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sluice_lever_emulator::Emulator;
use sluice_lever_emulator::expected::{ExpectedOptions, schema, tables};

#[test]
fn every_table_is_filled_with_schema_columns_and_unique_keys() {
    let emu = Emulator::reference_scenario();
    let truth = emu.truth();
    let out = tables(&truth, &ExpectedOptions { confidential: true });
    assert_eq!(out.len(), 46);
    for t in schema() {
        let rows = &out[&t.name];
        if t.name == "candidate_stage_history" {
            assert!(rows.is_empty());
            continue;
        }
        assert!(!rows.is_empty(), "{} is empty", t.name);
        let cols: BTreeSet<&str> = t.columns.iter().map(|(c, _)| c.as_str()).collect();
        let mut keys = BTreeSet::new();
        for r in rows {
            let have: BTreeSet<&str> = r
                .keys()
                .map(String::as_str)
                .filter(|c| !(t.name == "requisition" && c.starts_with("custom_field_")))
                .collect();
            assert_eq!(have, cols, "columns of {}", t.name);
            for (c, ty) in &t.columns {
                let v = &r[c];
                let ok = v.is_null()
                    || match ty.as_str() {
                        "STRING" | "JSON" => v.is_string(),
                        "BOOLEAN" => v.is_boolean(),
                        "INT" | "TIMESTAMP" => v.is_i64(),
                        "DOUBLE" => v.is_f64(),
                        _ => false,
                    };
                assert!(ok, "{}.{c} ({ty}) = {v}", t.name);
            }
            let key: Vec<String> = t.primary_key.iter().map(|k| r[k].to_string()).collect();
            assert!(
                t.primary_key.iter().all(|k| !r[k].is_null()),
                "null key in {}",
                t.name
            );
            assert!(
                keys.insert(key.clone()),
                "duplicate key {key:?} in {}",
                t.name
            );
        }
    }
    // custom requisition fields of several types, the one added by the scenario included
    let req = &out["requisition"];
    assert!(
        req.iter()
            .all(|r| r.contains_key("custom_field_employee_referral_bonus"))
    );
    assert!(req.iter().any(|r| r["custom_field_budget_amount"].is_f64()));
    assert!(
        req.iter()
            .any(|r| r["custom_field_target_start_date"].is_i64())
    );
    assert!(
        req.iter()
            .any(|r| r["custom_field_cost_center"].is_string())
    );
    assert!(
        req.iter()
            .any(|r| r["custom_field_location_details_floor"].is_i64())
    );
    assert!(
        req.iter()
            .any(|r| r["headcount_total"] == "unlimited" && r["headcount_infinite"] == "true")
    );
    // timestamps are microseconds
    let o = &truth.opportunities[0];
    let row = out["opportunity"]
        .iter()
        .find(|r| r["id"] == o["id"])
        .unwrap();
    assert_eq!(
        row["created_at"],
        json!(o["createdAt"].as_i64().unwrap() * 1000)
    );
}

#[test]
fn one_opportunity_by_hand() {
    let emu = Emulator::reference_scenario();
    let truth = emu.truth();
    let out = tables(&truth, &ExpectedOptions::default());
    // pick an opportunity with an application, feedback with a scorecard, notes and a resume
    let o = truth
        .opportunities
        .iter()
        .find(|o| {
            let ch = &truth.children[o["id"].as_str().unwrap()];
            !o["applications"].as_array().unwrap().is_empty()
                && ch.feedback.iter().any(|f| {
                    f["fields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["type"] == "scorecard")
                })
                && !ch.notes.is_empty()
        })
        .unwrap();
    let id = o["id"].as_str().unwrap();
    let ch = &truth.children[id];
    let rows_for = |table: &str, col: &str, val: &Value| -> Vec<_> {
        out[table]
            .iter()
            .filter(|r| &r[col] == val)
            .cloned()
            .collect()
    };

    let opp = rows_for("opportunity", "id", &o["id"]);
    assert_eq!(opp.len(), 1);
    let r = &opp[0];
    assert_eq!(r["stage_id"], o["stage"]);
    assert_eq!(r["owner_id"], o["owner"]);
    assert_eq!(r["contact"], o["contact"]);
    assert_eq!(r["name"], o["name"]);
    assert_eq!(
        r["last_advanced_at"],
        json!(o["lastAdvancedAt"].as_i64().unwrap() * 1000)
    );
    assert_eq!(
        r["updated_at"],
        o["updatedAt"]
            .as_i64()
            .map_or(Value::Null, |u| json!(u * 1000))
    );
    assert_eq!(r["archived_reason_id"], o["archived"]["reason"]);
    assert_eq!(
        r["data_protection_store_allowed"],
        o["dataProtection"]["store"]["allowed"]
    );

    let history = rows_for("opportunity_stage_history", "opportunity_id", &o["id"]);
    let changes = o["stageChanges"].as_array().unwrap();
    assert_eq!(history.len(), changes.len());
    assert_eq!(history[0]["stage_id"], changes[0]["toStageId"]);
    assert_eq!(history[0]["to_stage_index"], changes[0]["toStageIndex"]);
    assert_eq!(history[0]["updater_id"], changes[0]["userId"]);
    assert_eq!(
        rows_for("opportunity_tag", "opportunity_id", &o["id"]).len(),
        o["tags"].as_array().unwrap().len()
    );
    assert_eq!(
        rows_for("opportunity_source", "opportunity_id", &o["id"]).len(),
        o["sources"].as_array().unwrap().len()
    );
    assert_eq!(
        rows_for("contact_email", "contact_id", &o["contact"]).len(),
        o["emails"].as_array().unwrap().len()
    );

    let app = &o["applications"][0];
    let a = &rows_for("application", "id", &app["id"])[0];
    assert_eq!(a["opportunity_id"], o["id"]);
    assert_eq!(a["posting_id"], app["posting"]);
    assert_eq!(a["type"], app["type"]);
    assert_eq!(
        a["links"],
        if app["links"].is_null() {
            Value::Null
        } else {
            json!(app["links"].to_string())
        }
    );
    let forms = app["customQuestions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for f in &forms {
        let pf = &rows_for("posting_form", "id", &f["id"])[0];
        assert_eq!(pf["application_id"], app["id"]);
        assert_eq!(pf["template_id"], f["baseTemplateId"]);
        assert!(
            rows_for("posting_form_field", "posting_form_id", &f["id"]).len()
                >= f["fields"].as_array().unwrap().len()
        );
    }

    let fb = ch
        .feedback
        .iter()
        .find(|f| {
            f["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["type"] == "scorecard")
        })
        .unwrap();
    let ff = &rows_for("feedback_form", "id", &fb["id"])[0];
    let score = fb["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "score-system")
        .unwrap();
    assert_eq!(ff["score_system_value"], score["value"]);
    assert_eq!(ff["creator_id"], fb["user"]);
    assert_eq!(ff["template_id"], fb["baseTemplateId"]);
    assert_eq!(ff["interview_id"], fb["interview"]);
    let fields = rows_for("feedback_form_field", "feedback_form_id", &fb["id"]);
    let (si, sc) = fb["fields"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, x)| x["type"] == "scorecard")
        .unwrap();
    let sc_rows: Vec<_> = fields
        .iter()
        .filter(|r| r["field_index"] == json!(si))
        .collect();
    assert_eq!(sc_rows.len(), sc["value"].as_array().unwrap().len());
    for (vi, r) in sc_rows.iter().enumerate() {
        assert_eq!(r["value_index"], json!(vi));
        assert_eq!(r["value_number"], sc["value"][vi]["score"]);
        assert_eq!(r["value_text"], sc["value"][vi]["comment"]);
    }
    let subs: Vec<_> = out["score_card_sub_field"]
        .iter()
        .filter(|r| r["id"] == fb["baseTemplateId"] && r["field_index"] == json!(si))
        .collect();
    assert_eq!(subs.len(), sc["scores"].as_array().unwrap().len());
    assert_eq!(subs[0]["text"], sc["scores"][0]["text"]);
    let tf: Vec<_> = out["template_field"]
        .iter()
        .filter(|r| r["id"] == fb["baseTemplateId"])
        .collect();
    assert_eq!(tf.len(), fb["fields"].as_array().unwrap().len());

    let note = &ch.notes[0];
    let n = &rows_for("note", "id", &note["id"])[0];
    assert_eq!(n["opportunity_id"], o["id"]);
    assert_eq!(n["secret"], note["secret"]);
    let nf = rows_for("note_field", "note_id", &note["id"]);
    assert_eq!(nf.len(), note["fields"].as_array().unwrap().len());
    assert_eq!(nf[0]["value"], note["fields"][0]["value"]);
    assert_eq!(nf[0]["score"], note["fields"][0]["score"]);
    assert_eq!(
        nf[0]["created_at"],
        json!(note["fields"][0]["createdAt"].as_i64().unwrap() * 1000)
    );

    for iv in &ch.interviews {
        let i = &rows_for("interview", "id", &iv["id"])[0];
        assert_eq!(i["panel_id"], iv["panel"]);
        assert_eq!(i["duration"], iv["duration"]);
        assert_eq!(
            rows_for("interview_user", "interview_id", &iv["id"]).len(),
            iv["interviewers"].as_array().unwrap().len()
        );
        assert_eq!(
            rows_for("interview_feedback", "interview_id", &iv["id"]).len(),
            iv["feedbackForms"].as_array().unwrap().len()
        );
    }
    for r in &ch.resumes {
        let positions = r["parsedData"]["positions"].as_array().map_or(0, Vec::len);
        assert_eq!(
            rows_for("opportunity_position", "resume_id", &r["id"]).len(),
            positions
        );
    }
}

#[test]
fn non_confidential_view_drops_confidential_objects() {
    let emu = Emulator::reference_scenario();
    let truth = emu.truth();
    let all = tables(&truth, &ExpectedOptions { confidential: true });
    let plain = tables(
        &truth,
        &ExpectedOptions {
            confidential: false,
        },
    );
    let conf_opps = truth
        .opportunities
        .iter()
        .filter(|o| o["confidentiality"] == "confidential")
        .count();
    assert!(conf_opps > 0);
    assert_eq!(
        plain["opportunity"].len(),
        all["opportunity"].len() - conf_opps
    );
    assert!(
        plain["opportunity"]
            .iter()
            .all(|r| r["confidentiality"] == "non-confidential")
    );
    assert!(plain["posting"].len() < all["posting"].len());
    assert!(
        plain["requisition"]
            .iter()
            .all(|r| r["confidentiality"] == "non-confidential")
    );
    assert!(plain["feedback_form"].len() < all["feedback_form"].len());
    assert_eq!(plain["users"].len(), all["users"].len());
}

#[test]
fn deletions_disappear_from_live_rows() {
    let emu = Emulator::reference_scenario();
    let truth = emu.truth();
    let out = tables(&truth, &ExpectedOptions::default());
    for id in &truth.deleted["opportunities"] {
        assert!(!out["opportunity"].iter().any(|r| r["id"] == id.as_str()));
    }
    for id in &truth.deleted["notes"] {
        assert!(!out["note"].iter().any(|r| r["id"] == id.as_str()));
    }
    for id in &truth.deleted["users"] {
        assert!(!out["users"].iter().any(|r| r["id"] == id.as_str()));
    }
}
