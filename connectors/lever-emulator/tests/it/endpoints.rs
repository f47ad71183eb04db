//! Pagination walks, filters, shapes and errors.

use serde_json::Value;
use sluice_lever_emulator::{Emulator, EmulatorConfig};

use crate::common::{ids, small};

#[tokio::test]
async fn every_list_endpoint_walks_to_the_truth() {
    let env = small().await;
    let t = env.emu.truth();
    let (opps, pages) = env
        .walk_as(
            "/opportunities?confidentiality=all&expand=applications&limit=7",
            &env.key.clone(),
        )
        .await;
    assert_eq!(opps, t.opportunities);
    assert_eq!(pages, t.opportunities.len().div_ceil(7));
    for (path, expected) in [
        ("/postings?confidentiality=all&limit=4", &t.postings),
        ("/users?includeDeactivated=true&limit=5", &t.users),
        ("/stages?limit=3", &t.stages),
        ("/archive_reasons?limit=2", &t.archive_reasons),
        ("/sources?limit=2", &t.sources),
        ("/tags?limit=3", &t.tags),
        ("/requisitions?confidentiality=all&limit=6", &t.requisitions),
        ("/requisition_fields?limit=2", &t.requisition_fields),
        ("/feedback_templates?limit=1", &t.feedback_templates),
        ("/form_templates", &t.form_templates),
    ] {
        assert_eq!(&env.walk(path).await, expected, "{path}");
    }
    // children of a few opportunities, two per page
    for o in t.opportunities.iter().take(8) {
        let id = o["id"].as_str().unwrap();
        let ch = &t.children[id];
        for (kind, expected) in [
            ("feedback", &ch.feedback),
            ("notes", &ch.notes),
            ("offers", &ch.offers),
            ("interviews", &ch.interviews),
            ("panels", &ch.panels),
            ("forms", &ch.forms),
            ("files", &ch.files),
            ("resumes", &ch.resumes),
            ("referrals", &ch.referrals),
        ] {
            assert_eq!(
                &env.walk(&format!("/opportunities/{id}/{kind}?limit=2"))
                    .await,
                expected,
                "{kind}"
            );
        }
        assert_eq!(
            env.walk(&format!("/opportunities/{id}/applications")).await,
            o["applications"].as_array().unwrap().clone()
        );
        let (status, single) = env
            .get(&format!("/opportunities/{id}?expand=applications"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(&single["data"], o);
    }
    env.stop().await;
}

#[tokio::test]
async fn data_is_lever_shaped_consistent_and_rich() {
    let env = small().await;
    let t = env.emu.truth();
    let total: usize = t
        .children
        .values()
        .map(|c| {
            c.feedback.len()
                + c.notes.len()
                + c.offers.len()
                + c.interviews.len()
                + c.panels.len()
                + c.forms.len()
                + c.files.len()
                + c.resumes.len()
                + c.referrals.len()
        })
        .sum::<usize>()
        + t.opportunities
            .iter()
            .map(|o| o["applications"].as_array().unwrap().len())
            .sum::<usize>();
    let avg = total as f64 / t.opportunities.len() as f64;
    assert!(
        (5.0..=15.0).contains(&avg),
        "average sub-resources per opportunity {avg}"
    );
    let stage_ids: Vec<_> = ids(&t.stages);
    let user_ids: Vec<_> = ids(&t.users);
    let posting_ids: Vec<_> = ids(&t.postings);
    let reason_ids: Vec<_> = ids(&t.archive_reasons);
    let tpl_ids: Vec<_> = ids(&t.feedback_templates);
    assert!(t.opportunities.iter().any(|o| o["updatedAt"].is_null()));
    assert!(
        t.opportunities
            .iter()
            .any(|o| o["confidentiality"] == "confidential")
    );
    assert!(t.opportunities.iter().any(|o| !o["archived"].is_null()));
    assert!(
        t.opportunities
            .iter()
            .any(|o| o.get("opportunityLocation").is_none())
    );
    assert!(t.users.iter().any(|u| !u["deactivatedAt"].is_null()));
    assert!(
        t.postings
            .iter()
            .any(|p| p["confidentiality"] == "confidential")
    );
    assert!(
        t.requisitions
            .iter()
            .any(|r| r["headcountTotal"] == "unlimited")
    );
    assert!(t.requisitions.iter().any(|r| r["headcountTotal"].is_i64()));
    let text = serde_json::to_string(&t).unwrap();
    assert!(!text.is_ascii(), "non-ASCII text expected");
    for o in &t.opportunities {
        assert!(stage_ids.contains(&o["stage"].as_str().unwrap().to_string()));
        assert!(user_ids.contains(&o["owner"].as_str().unwrap().to_string()));
        for c in o["stageChanges"].as_array().unwrap() {
            assert!(stage_ids.contains(&c["toStageId"].as_str().unwrap().to_string()));
            assert!(user_ids.contains(&c["userId"].as_str().unwrap().to_string()));
        }
        if let Some(r) = o["archived"]["reason"].as_str() {
            assert!(reason_ids.contains(&r.to_string()));
        }
        // an opportunity is confidential only via a confidential posting
        if o["confidentiality"] == "confidential" {
            let p = o["applications"][0]["posting"].as_str().unwrap();
            assert_eq!(
                t.postings.iter().find(|x| x["id"] == p).unwrap()["confidentiality"],
                "confidential"
            );
        }
        for a in o["applications"].as_array().unwrap() {
            assert!(posting_ids.contains(&a["posting"].as_str().unwrap().to_string()));
        }
        let ch = &t.children[o["id"].as_str().unwrap()];
        let fb_ids = ids(&ch.feedback);
        let iv_ids = ids(&ch.interviews);
        for iv in &ch.interviews {
            assert!(ch.panels.iter().any(|p| p["id"] == iv["panel"]));
            for f in iv["feedbackForms"].as_array().unwrap() {
                assert!(fb_ids.contains(&f.as_str().unwrap().to_string()));
            }
        }
        for f in &ch.feedback {
            assert!(tpl_ids.contains(&f["baseTemplateId"].as_str().unwrap().to_string()));
            if let Some(i) = f["interview"].as_str() {
                assert!(iv_ids.contains(&i.to_string()));
            }
            assert_eq!(
                f["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|x| x["type"] == "score-system")
                    .count(),
                1
            );
        }
        for p in &ch.panels {
            for i in p["interviews"].as_array().unwrap() {
                assert!(iv_ids.contains(&i["id"].as_str().unwrap().to_string()));
            }
        }
    }
    let mut field_types = std::collections::BTreeSet::new();
    for c in t.children.values() {
        for f in c.feedback.iter().chain(&c.forms).chain(&c.referrals) {
            for x in f["fields"].as_array().unwrap() {
                field_types.insert(x["type"].as_str().unwrap().to_string());
            }
        }
    }
    for ty in [
        "score-system",
        "score",
        "scorecard",
        "multiple-select",
        "currency",
        "date",
        "code",
        "file-upload",
        "yes-no",
        "text",
        "textarea",
        "dropdown",
        "multiple-choice",
        "university",
    ] {
        assert!(field_types.contains(ty), "missing field type {ty}");
    }
    assert!(t.children.values().any(|c| c.resumes.iter().any(|r| {
        r["parsedData"]["schools"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    })));
    assert!(
        t.children
            .values()
            .any(|c| c.offers.iter().any(|o| !o["signedDocument"].is_null()))
    );
    env.stop().await;
}

#[tokio::test]
async fn same_seed_same_data() {
    let a = Emulator::new(EmulatorConfig {
        opportunities: 30,
        ..EmulatorConfig::default()
    })
    .truth();
    let b = Emulator::new(EmulatorConfig {
        opportunities: 30,
        ..EmulatorConfig::default()
    })
    .truth();
    let c = Emulator::new(EmulatorConfig {
        opportunities: 30,
        seed: 7,
        ..EmulatorConfig::default()
    })
    .truth();
    assert_eq!(a, b);
    assert_ne!(a.opportunities, c.opportunities);
}

fn count(items: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    items.iter().filter(|v| f(v)).count()
}

#[tokio::test]
async fn filters_are_inclusive_and_correct() {
    let env = small().await;
    let t = env.emu.truth();
    let o = &t.opportunities;
    // default: non-confidential only
    let default = env.walk("/opportunities").await;
    assert_eq!(
        default.len(),
        count(o, |v| v["confidentiality"] == "non-confidential")
    );
    assert_eq!(
        env.walk("/opportunities?confidentiality=confidential")
            .await
            .len(),
        count(o, |v| v["confidentiality"] == "confidential")
    );
    // updated window: both ends inclusive, null updatedAt never matches
    let mut ups: Vec<i64> = o.iter().filter_map(|v| v["updatedAt"].as_i64()).collect();
    ups.sort();
    let (lo, hi) = (ups[ups.len() / 4], ups[ups.len() * 3 / 4]);
    let got = env
        .walk(&format!(
            "/opportunities?confidentiality=all&updated_at_start={lo}&updated_at_end={hi}"
        ))
        .await;
    assert_eq!(
        got.len(),
        count(o, |v| v["updatedAt"]
            .as_i64()
            .is_some_and(|u| u >= lo && u <= hi))
    );
    assert!(got.iter().any(|v| v["updatedAt"] == lo) && got.iter().any(|v| v["updatedAt"] == hi));
    let only_start = env
        .walk(&format!(
            "/opportunities?confidentiality=all&updated_at_start={lo}"
        ))
        .await;
    assert_eq!(
        only_start.len(),
        count(o, |v| v["updatedAt"].as_i64().is_some_and(|u| u >= lo))
    );
    // created window
    let c0 = o[3]["createdAt"].as_i64().unwrap();
    let got = env
        .walk(&format!(
            "/opportunities?confidentiality=all&created_at_start={c0}&created_at_end={c0}"
        ))
        .await;
    assert!(ids(&got).contains(&o[3]["id"].as_str().unwrap().to_string()));
    assert_eq!(
        env.walk(&format!(
            "/opportunities?confidentiality=all&created_at_end={c0}"
        ))
        .await
        .len(),
        count(o, |v| v["createdAt"].as_i64().unwrap() <= c0)
    );
    // archived
    assert_eq!(
        env.walk("/opportunities?confidentiality=all&archived=true")
            .await
            .len(),
        count(o, |v| !v["archived"].is_null())
    );
    assert_eq!(
        env.walk("/opportunities?confidentiality=all&archived=false")
            .await
            .len(),
        count(o, |v| v["archived"].is_null())
    );
    // users, postings, requisitions
    assert_eq!(
        env.walk("/users").await.len(),
        count(&t.users, |u| u["deactivatedAt"].is_null())
    );
    assert!(env.walk("/users").await.len() < t.users.len());
    assert_eq!(
        env.walk("/postings?confidentiality=all&state=published")
            .await
            .len(),
        count(&t.postings, |p| p["state"] == "published")
    );
    assert_eq!(
        env.walk("/postings").await.len(),
        count(&t.postings, |p| p["confidentiality"] == "non-confidential")
    );
    assert!(
        env.walk("/postings")
            .await
            .iter()
            .all(|p| p["content"]["description"].is_string())
    );
    assert_eq!(
        env.walk("/requisitions").await.len(),
        count(&t.requisitions, |p| p["confidentiality"]
            == "non-confidential")
    );
    assert_eq!(env.walk("/archive_reasons?type=hired").await.len(), 1);
    // expand
    let (_, page) = env
        .get("/opportunities?limit=1&expand=stage&expand=owner")
        .await;
    assert!(page["data"][0]["stage"]["text"].is_string());
    assert!(page["data"][0]["owner"]["email"].is_string());
    let (_, page) = env.get("/opportunities?limit=1").await;
    assert!(
        page["data"][0]["applications"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    // deleted window
    let victims: Vec<String> = ids(&o[..3]);
    for v in &victims {
        env.emu.delete_opportunity(v);
    }
    let t2 = env.emu.truth();
    let d1 = t2.deleted_opportunities[1]["deletedAt"].as_i64().unwrap();
    let all_deleted = env.walk("/opportunities/deleted?limit=1").await;
    assert_eq!(ids(&all_deleted), victims);
    assert!(all_deleted.iter().all(|d| d["deletedBy"].is_string()));
    assert_eq!(
        ids(&env
            .walk(&format!(
                "/opportunities/deleted?deleted_at_start={d1}&deleted_at_end={d1}"
            ))
            .await),
        vec![victims[1].clone()]
    );
    assert_eq!(
        env.walk(&format!("/opportunities/deleted?deleted_at_start={d1}"))
            .await
            .len(),
        2
    );
    // bad parameters
    for bad in [
        "/opportunities?updated_at_start=yesterday",
        "/opportunities?created_at_end=1.5",
        "/opportunities?limit=0",
        "/opportunities?limit=101",
        "/opportunities?limit=x",
        "/opportunities?archived=maybe",
        "/opportunities/deleted?deleted_at_start=x",
        "/users?includeDeactivated=yes",
    ] {
        let (status, body) = env.get(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["code"].is_string() && body["message"].is_string());
    }
    env.stop().await;
}

#[tokio::test]
async fn not_found_and_offset_tokens() {
    let env = small().await;
    let t = env.emu.truth();
    for path in [
        "/nope",
        "/opportunities/unknown-id",
        "/opportunities/unknown-id/notes",
        "/postings/unknown/apply",
    ] {
        let (status, body) = env.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["code"], "ResourceNotFound");
    }
    let pid = t
        .postings
        .iter()
        .find(|p| p["confidentiality"] != "confidential")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, apply) = env.get(&format!("/postings/{pid}/apply")).await;
    assert_eq!(status, 200);
    assert!(
        apply["data"]["customQuestions"]
            .as_array()
            .is_some_and(|q| !q.is_empty())
    );

    let (_, first) = env.get("/opportunities?limit=5").await;
    let next = first["next"].as_str().unwrap().to_string();
    // garbled
    let mut garbled = next.clone();
    garbled.insert(3, 'x');
    for bad in [
        garbled.as_str(),
        "not-a-token",
        "0.1414895548650.a6070140-33db-407c-91f5-2760e15c8e94",
    ] {
        let (status, body) = env
            .get(&format!("/opportunities?limit=5&offset={bad}"))
            .await;
        assert_eq!(status, 400);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Invalid offset token"),
            "{body}"
        );
    }
    // other parameters than the ones it was issued for
    let (status, body) = env
        .get(&format!("/opportunities?limit=6&offset={next}"))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Invalid offset token")
    );
    // valid, then stale after expiry
    assert_eq!(
        env.get(&format!("/opportunities?limit=5&offset={next}"))
            .await
            .0,
        200
    );
    env.emu.expire_offset_tokens();
    let (status, body) = env
        .get(&format!("/opportunities?limit=5&offset={next}"))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Invalid offset token")
    );
    // stale by age
    env.emu.set_offset_token_ttl(std::time::Duration::ZERO);
    let (_, first) = env.get("/users?limit=2").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, _) = env
        .get(&format!(
            "/users?limit=2&offset={}",
            first["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 400);
    env.stop().await;
}
