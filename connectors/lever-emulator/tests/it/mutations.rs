//! Mutations (library and admin HTTP API), monotonic timestamps, truth consistency.

use serde_json::{Value, json};
use sluice_lever_emulator::Truth;

use crate::common::{client, ids, small};

fn updated(t: &Truth, id: &str) -> i64 {
    t.opportunity(id).unwrap()["updatedAt"].as_i64().unwrap()
}

#[tokio::test]
async fn every_change_is_strictly_newer() {
    let env = small().await;
    let emu = &env.emu;
    let t0 = emu.truth();
    let start = emu.now_ms();
    assert_eq!(start, 1_767_225_600_000);
    let max_generated = t0
        .opportunities
        .iter()
        .filter_map(|o| o["updatedAt"].as_i64())
        .max()
        .unwrap();
    assert!(max_generated < start);
    let id = ids(&t0.opportunities)[1].clone();
    let mut last = start;
    let mut check = |t: &Truth, what: &str| {
        let u = updated(t, &id);
        assert!(u > last, "{what}: {u} <= {last}");
        assert_eq!(t.opportunity(&id).unwrap()["lastInteractionAt"], u);
        last = u;
    };
    let note = emu.add_note(&id);
    let t = emu.truth();
    check(&t, "add_note");
    assert!(
        t.children[&id]
            .notes
            .iter()
            .any(|n| n["id"] == note.as_str())
    );
    let fb = emu.add_feedback(&id);
    let t = emu.truth();
    check(&t, "add_feedback");
    assert!(
        t.children[&id]
            .feedback
            .iter()
            .any(|n| n["id"] == fb.as_str())
    );
    let before = t.opportunity(&id).unwrap()["stageChanges"]
        .as_array()
        .unwrap()
        .len();
    emu.change_stage(&id);
    let t = emu.truth();
    check(&t, "change_stage");
    let o = t.opportunity(&id).unwrap();
    let changes = o["stageChanges"].as_array().unwrap();
    assert_eq!(changes.len(), before + 1);
    assert_eq!(changes.last().unwrap()["toStageId"], o["stage"]);
    assert_eq!(changes.last().unwrap()["updatedAt"], o["updatedAt"]);
    assert_eq!(o["lastAdvancedAt"], o["updatedAt"]);
    emu.update_opportunity(&id);
    check(&emu.truth(), "update_opportunity");
    emu.delete_note(&id, &note);
    let t = emu.truth();
    check(&t, "delete_note");
    assert!(
        !t.children[&id]
            .notes
            .iter()
            .any(|n| n["id"] == note.as_str())
    );
    let generated_note = t.children[&id].notes[0]["id"].as_str().unwrap().to_string();
    emu.delete_note(&id, &generated_note);
    let t = emu.truth();
    check(&t, "delete generated note");
    assert_eq!(
        t.deleted["notes"],
        vec![note.clone(), generated_note.clone()]
    );
    // deleting interview feedback also unlinks it from its interview
    let (fid, oid) = t
        .children
        .iter()
        .find_map(|(o, c)| {
            c.feedback
                .iter()
                .find(|f| f["interview"].is_string())
                .map(|f| (f["id"].as_str().unwrap().to_string(), o.clone()))
        })
        .unwrap();
    let before = updated(&t, &oid);
    emu.delete_feedback(&oid, &fid);
    let t = emu.truth();
    assert!(updated(&t, &oid) > before);
    assert!(t.children[&oid].interviews.iter().all(|i| {
        !i["feedbackForms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == fid.as_str())
    }));
    assert_eq!(t.deleted["feedback"], vec![fid]);
    // created opportunities are newer than anything before
    let new_id = emu.create_opportunity();
    let t = emu.truth();
    let created = t.opportunity(&new_id).unwrap();
    assert!(created["createdAt"].as_i64().unwrap() > last);
    assert_eq!(created["createdAt"], created["updatedAt"]);
    // clock advance
    emu.advance_clock(86_400_000);
    let now = emu.now_ms();
    emu.delete_opportunity(&new_id);
    let t = emu.truth();
    assert!(t.opportunity(&new_id).is_none());
    assert!(t.deleted_opportunities[0]["deletedAt"].as_i64().unwrap() > now);
    assert_eq!(t.deleted["opportunities"], vec![new_id.clone()]);
    assert_eq!(env.get(&format!("/opportunities/{new_id}")).await.0, 404);
    assert_eq!(
        env.get(&format!("/opportunities/{new_id}/notes")).await.0,
        404
    );
    // lookups
    let user = t
        .users
        .iter()
        .find(|u| u["deactivatedAt"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    emu.deactivate_user(&user);
    let t = emu.truth();
    assert!(
        t.users.iter().find(|u| u["id"] == user.as_str()).unwrap()["deactivatedAt"]
            .as_i64()
            .unwrap()
            > now
    );
    assert!(!ids(&env.walk("/users").await).contains(&user));
    emu.delete_user(&user);
    assert!(!ids(&env.walk("/users?includeDeactivated=true").await).contains(&user));
    let p = ids(&t.postings)[0].clone();
    emu.delete_posting(&p);
    emu.delete_stage(&ids(&t.stages)[9]);
    emu.delete_archive_reason(&ids(&t.archive_reasons)[5]);
    emu.delete_requisition(&ids(&t.requisitions)[0]);
    let t = emu.truth();
    for kind in [
        "users",
        "postings",
        "stages",
        "archive_reasons",
        "requisitions",
    ] {
        assert_eq!(t.deleted[kind].len(), 1, "{kind}");
    }
    assert_eq!(env.get(&format!("/postings/{p}")).await.0, 404);
    assert_eq!(env.walk("/stages").await.len(), 9);
    // requisition custom field
    let before_req = t
        .requisitions
        .iter()
        .map(|r| r["updatedAt"].as_i64().unwrap())
        .max()
        .unwrap();
    emu.add_requisition_field("level_band", "dropdown");
    let t = emu.truth();
    assert!(
        t.requisition_fields
            .iter()
            .any(|f| f["id"] == "level_band" && f["options"].is_array())
    );
    let with: Vec<&Value> = t
        .requisitions
        .iter()
        .filter(|r| r["customFields"].get("level_band").is_some())
        .collect();
    assert!(!with.is_empty());
    assert!(
        with.iter()
            .all(|r| r["updatedAt"].as_i64().unwrap() > before_req)
    );
    env.stop().await;
}

#[tokio::test]
async fn mutate_fraction_and_truth_match_endpoints() {
    let env = small().await;
    let before = env.emu.truth();
    let s = env.emu.mutate_fraction(0.2, 9);
    assert_eq!(s.updated.len() + s.deleted.len(), 12);
    assert_eq!(s.created.len(), 2);
    let after = env.emu.truth();
    assert_eq!(
        after.opportunities.len(),
        before.opportunities.len() - s.deleted.len() + s.created.len()
    );
    for id in &s.updated {
        assert!(
            after.opportunity(id).unwrap()["updatedAt"]
                .as_i64()
                .unwrap()
                >= before.now_ms
        );
    }
    // updated_at_start = previous clock finds exactly the changed and created ones
    let changed = env
        .walk(&format!(
            "/opportunities?confidentiality=all&updated_at_start={}",
            before.now_ms + 1
        ))
        .await;
    let mut expected: Vec<String> = s.updated.iter().chain(&s.created).cloned().collect();
    expected.sort();
    let mut got = ids(&changed);
    got.sort();
    assert_eq!(got, expected);
    // truth equals what the endpoints serve
    assert_eq!(
        env.walk("/opportunities?confidentiality=all&expand=applications")
            .await,
        after.opportunities
    );
    assert_eq!(
        env.walk("/opportunities/deleted").await,
        after.deleted_opportunities
    );
    for id in s.updated.iter().take(3) {
        assert_eq!(
            env.walk(&format!("/opportunities/{id}/notes")).await,
            after.children[id].notes
        );
        assert_eq!(
            env.walk(&format!("/opportunities/{id}/feedback")).await,
            after.children[id].feedback
        );
    }
    // same mutations on a fresh emulator give the same result
    let other = sluice_lever_emulator::Emulator::new(sluice_lever_emulator::EmulatorConfig {
        opportunities: 60,
        rate_limit: None,
        ..Default::default()
    });
    assert_eq!(other.mutate_fraction(0.2, 9), s);
    assert_eq!(other.truth(), after);
    env.stop().await;
}

#[tokio::test]
async fn admin_http_api() {
    let env = small().await;
    let c = client();
    let root = env.server.root_url();
    let t: Truth = c
        .get(format!("{root}/admin/truth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t, env.emu.truth());
    let id = ids(&t.opportunities)[0].clone();
    let post = |path: String, body: Value| {
        let c = c.clone();
        async move {
            let r = c.post(path).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, note) = post(format!("{root}/admin/opportunities/{id}/notes"), json!({})).await;
    assert_eq!(s, 200);
    let note_id = note["id"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            format!("{root}/admin/opportunities/{id}/feedback"),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(format!("{root}/admin/opportunities/{id}/stage"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        post(format!("{root}/admin/opportunities/{id}/update"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        post(format!("{root}/admin/opportunities/nope/update"), json!({}))
            .await
            .0,
        404
    );
    let r = c
        .delete(format!("{root}/admin/opportunities/{id}/notes/{note_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, created) = post(format!("{root}/admin/opportunities"), json!({})).await;
    assert_eq!(s, 200);
    let r = c
        .delete(format!(
            "{root}/admin/opportunities/{}",
            created["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, now) = post(format!("{root}/admin/clock/advance"), json!({"ms": 1000})).await;
    assert_eq!(s, 200);
    assert_eq!(now["now_ms"], env.emu.now_ms());
    assert_eq!(
        post(
            format!("{root}/admin/requisition_fields"),
            json!({"key": "remote_ok", "type": "text"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            format!("{root}/admin/requisition_fields"),
            json!({"key": "Bad Key", "type": "text"})
        )
        .await
        .0,
        400
    );
    let (s, summary) = post(
        format!("{root}/admin/mutate"),
        json!({"fraction": 0.1, "seed": 1}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(summary["updated"].is_array());
    let (s, key) = post(
        format!("{root}/admin/api_keys"),
        json!({"confidential": false}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        env.get_as("/opportunities?confidentiality=all", key["key"].as_str())
            .await
            .0,
        403
    );
    let r = c
        .put(format!("{root}/admin/rate_limit"))
        .json(&json!({"per_second": 1.0, "burst": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(env.get("/stages").await.0, 200);
    assert_eq!(env.get("/stages").await.0, 429);
    let counters: Value = c
        .get(format!("{root}/admin/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(counters["rate_limited"].as_u64().unwrap() >= 1);
    assert_eq!(
        post(format!("{root}/admin/counters/reset"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(env.emu.counters().total, 0);
    let t2 = env.emu.truth();
    assert!(t2.deleted["notes"].contains(&note_id));
    assert!(t2.requisition_fields.iter().any(|f| f["id"] == "remote_ok"));
    env.stop().await;
}
