//! The mutable dataset: lookups, compact opportunity records, mutation overrides and the
//! logical clock.
//!
//! ## Mutation model
//!
//! * Every change takes a fresh instant from the logical clock ([`State::tick`]): strictly
//!   increasing, starting just after 2026-01-01T00:00:00Z (all generated data is older).
//! * Notes and feedback added by a mutation are stored as JSON overrides; generated ones are
//!   never stored.
//! * Deleting a note or a feedback form **hard-removes** it from `/opportunities/:id/notes` or
//!   `/feedback` (and from `interview.feedbackForms`) and bumps the parent's `updatedAt` and
//!   `lastInteractionAt`, so a connector detects it by re-reading the parent's children. The id
//!   is logged in [`State::deleted_log`] under `notes` / `feedback`.
//! * [`State::delete_child_silently`] removes any child (a note, feedback form, profile form,
//!   interview, offer, file, resume, referral or panel) the same way but leaves the parent's
//!   `updatedAt` alone: no incremental read can notice.
//! * Adding a note or feedback, changing stage (appends to `stageChanges`, sets
//!   `lastAdvancedAt`) and `update_opportunity` (new version: tags and followers change) bump
//!   `updatedAt` and `lastInteractionAt`.
//! * Deleting an opportunity removes it and its children from every endpoint; it shows up in
//!   `/opportunities/deleted` with `deletedAt` and `deletedBy`. A *vanished* opportunity is
//!   removed the same way but never shows up there (only a full re-read notices it).
//! * `/opportunities` lists in one of two orders ([`ListOrder`]): insertion order (the
//!   generation index, new opportunities last) or ascending `(createdAt, id)`. Positions in
//!   either never move: updates change neither, deleted records keep their place unlisted.
//! * Deleting a lookup (user, posting, stage, archive reason, requisition) removes it from its
//!   list (users also from `includeDeactivated=true`); objects that referenced it keep the id,
//!   as in Lever. Deactivating a user sets `deactivatedAt`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use crate::data::{
    self, Children, Contact, F_HAS_APP, F_HAS_EXTRA, Lookups, OppRec, T0, gen_application,
    gen_children, gen_contact, gen_lookups, gen_rec, opp_id, opp_sources, opp_tags, stage_path,
};
use crate::rng::{Rng, uuid};

/// The order `/opportunities` lists opportunities in (Lever documents none). Both are stable
/// under updates: an offset token keeps pointing at the same place of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListOrder {
    /// The order the opportunities were stored in: generated ones by generation index, created
    /// ones last.
    #[default]
    Insertion,
    /// Ascending `(createdAt, id)`.
    CreatedAt,
}

/// An error of a mutation or lookup.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No live object of that kind has this id.
    #[error("{kind} not found: {id}")]
    NotFound {
        /// Object kind (`opportunity`, `note`, ...).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// An argument is not acceptable.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

fn not_found(kind: &'static str, id: &str) -> EmulatorError {
    EmulatorError::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// Mutation overrides of one opportunity.
#[derive(Debug, Default, Clone)]
pub(crate) struct Extra {
    notes: Vec<Value>,
    feedback: Vec<Value>,
    removed: HashSet<String>,
    stage_changes: Vec<(u16, u16, i64)>,
}

/// Which confidentiality a list request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conf {
    NonConfidential,
    Confidential,
    All,
}

impl Conf {
    pub(crate) fn admits(self, confidential: bool) -> bool {
        match self {
            Conf::All => true,
            Conf::Confidential => confidential,
            Conf::NonConfidential => !confidential,
        }
    }
}

/// `expand` options of `/opportunities`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expand {
    pub(crate) applications: bool,
    pub(crate) stage: bool,
    pub(crate) owner: bool,
    pub(crate) followers: bool,
    pub(crate) sourced_by: bool,
    pub(crate) contact: bool,
}

/// Summary of [`crate::Emulator::mutate_fraction`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MutationSummary {
    /// Opportunities updated (note/feedback added, stage changed or fields updated).
    pub updated: Vec<String>,
    /// Opportunities created.
    pub created: Vec<String>,
    /// Opportunities deleted.
    pub deleted: Vec<String>,
}

/// The whole dataset.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) seed: u64,
    pub(crate) initial: u32,
    pub(crate) lk: Lookups,
    pub(crate) recs: Vec<OppRec>,
    by_id: HashMap<String, u32>,
    extras: HashMap<u32, Extra>,
    pub(crate) clock: i64,
    /// Ids of deleted objects per kind (`opportunities`, `notes`, `feedback`, `users`, ...).
    pub(crate) deleted_log: BTreeMap<String, Vec<String>>,
    mut_seq: u64,
    /// Record indices in ascending `(createdAt, id)` order (deleted ones included).
    created_order: Vec<u32>,
    /// Record indices of vanished opportunities (deleted, but not in `/opportunities/deleted`).
    pub(crate) vanished: HashSet<u32>,
}

impl State {
    pub(crate) fn new(seed: u64, opportunities: usize) -> Self {
        let mut lk = gen_lookups(seed);
        let recs: Vec<OppRec> = (0..opportunities as u32)
            .map(|i| gen_rec(seed, &lk, i, None))
            .collect();
        let by_id = recs
            .iter()
            .map(|r| (opp_id(seed, r.index), r.index))
            .collect();
        // link offers to requisitions: up to three offers of opportunities on the requisition's postings
        for req in &mut lk.requisitions {
            let postings: Vec<u16> = req.value["postings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    lk.postings
                        .iter()
                        .position(|x| x.id() == p.as_str().unwrap_or(""))
                })
                .map(|p| p as u16)
                .collect();
            let offers: Vec<Value> = recs
                .iter()
                .filter(|r| {
                    r.has(data::F_HAS_OFFER) && r.posting.is_some_and(|p| postings.contains(&p))
                })
                .take(3)
                .map(|r| json!(uuid(seed, data::K_OFFER, u64::from(r.index), 0)))
                .collect();
            req.value["offerIds"] = Value::Array(offers);
        }
        let created_order = created_order(seed, &recs);
        Self {
            seed,
            initial: opportunities as u32,
            lk,
            recs,
            by_id,
            extras: HashMap::new(),
            clock: T0,
            deleted_log: BTreeMap::new(),
            mut_seq: 0,
            created_order,
            vanished: HashSet::new(),
        }
    }

    /// The record at list position `pos` of `order` (deleted ones included).
    pub(crate) fn rec_at(&self, order: ListOrder, pos: usize) -> Option<&OppRec> {
        let i = match order {
            ListOrder::Insertion => pos,
            ListOrder::CreatedAt => *self.created_order.get(pos)? as usize,
        };
        self.recs.get(i)
    }

    /// Ids of the live opportunities in list `order`.
    pub(crate) fn ids_in_list_order(&self, order: ListOrder) -> Vec<String> {
        (0..self.recs.len())
            .filter_map(|pos| self.rec_at(order, pos))
            .filter(|r| r.deleted.is_none())
            .map(|r| opp_id(self.seed, r.index))
            .collect()
    }

    /// A fresh, strictly increasing instant.
    pub(crate) fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    /// Live opportunity by id.
    pub(crate) fn opp(&self, id: &str) -> Option<&OppRec> {
        let i = *self.by_id.get(id)?;
        let rec = &self.recs[i as usize];
        rec.deleted.is_none().then_some(rec)
    }

    fn opp_index(&self, id: &str) -> Result<usize, EmulatorError> {
        self.opp(id)
            .map(|r| r.index as usize)
            .ok_or_else(|| not_found("opportunity", id))
    }

    pub(crate) fn contact(&self, rec: &OppRec) -> Contact {
        gen_contact(self.seed, data::contact_index(rec.index, self.initial))
    }

    fn user_json(&self, id: &str) -> Value {
        self.lk
            .users
            .iter()
            .find(|u| u.id() == id)
            .map_or_else(|| json!(id), |u| u.value.clone())
    }

    /// Applications of a live opportunity.
    pub(crate) fn applications(&self, rec: &OppRec) -> Vec<Value> {
        let contact = self.contact(rec);
        gen_application(self.seed, &self.lk, rec, &contact)
            .into_iter()
            .collect()
    }

    /// The opportunity as `/opportunities` serves it.
    pub(crate) fn opportunity_json(&self, rec: &OppRec, expand: Expand) -> Value {
        let seed = self.seed;
        let lk = &self.lk;
        let c = self.contact(rec);
        let mut r = Rng::new(&[
            seed,
            data::K_TAGS,
            u64::from(rec.index),
            7,
            u64::from(rec.version),
        ]);
        let id = opp_id(seed, rec.index);
        let mut changes: Vec<(u16, u16, i64)> =
            stage_path(seed, rec.index, rec.origin, rec.created_at, rec.horizon);
        if let Some(x) = self.extras.get(&rec.index) {
            changes.extend(x.stage_changes.iter().copied());
        }
        let stage_changes: Vec<Value> = changes
            .iter()
            .map(|(s, u, t)| json!({"toStageId": lk.stage_id(*s as usize), "toStageIndex": s, "userId": lk.user_id(*u as usize), "updatedAt": t}))
            .collect();
        let owner = lk.user_id(r.index(data::N_USERS)).to_string();
        let followers: Vec<String> = (0..r.below(3))
            .map(|_| lk.user_id(r.index(data::N_USERS)).to_string())
            .collect();
        let sourced_by = if matches!(data::ORIGINS[rec.origin as usize], "sourced" | "referred") {
            json!(lk.user_id((rec.index as usize * 3) % 20))
        } else {
            Value::Null
        };
        let stage_id = lk.stage_id(rec.stage as usize).to_string();
        let applications: Value = if expand.applications {
            Value::Array(self.applications(rec))
        } else if rec.has(F_HAS_APP) {
            json!([uuid(seed, data::K_APP, u64::from(rec.index), 0)])
        } else {
            json!([])
        };
        let mut v = json!({
            "id": id,
            "name": c.name,
            "headline": c.headline,
            "contact": c.id,
            "emails": c.emails,
            "phones": c.phones,
            "confidentiality": if rec.confidential() { "confidential" } else { "non-confidential" },
            "location": c.location,
            "links": c.links,
            "createdAt": rec.created_at,
            "updatedAt": rec.updated_at,
            "lastInteractionAt": rec.last_interaction_at,
            "lastAdvancedAt": rec.last_advanced_at,
            "snoozedUntil": if rec.index % 11 == 3 { json!(T0 + 7 * 86_400_000) } else { Value::Null },
            "archived": rec.archived.map_or(Value::Null, |(reason, at)| json!({"archivedAt": at, "reason": lk.archive_reasons[reason as usize].id()})),
            "stage": stage_id,
            "stageChanges": stage_changes,
            "owner": owner,
            "tags": opp_tags(seed, rec.index, rec.version),
            "sources": opp_sources(seed, rec.index),
            "origin": data::ORIGINS[rec.origin as usize],
            "sourcedBy": sourced_by,
            "applications": applications,
            "resume": Value::Null,
            "followers": followers,
            "urls": {
                "list": "https://hire.lever.co/candidates",
                "show": format!("https://hire.lever.co/candidates/{id}"),
            },
            "dataProtection": c.data_protection,
            "isAnonymized": c.anonymized,
        });
        if !rec.index.is_multiple_of(3) {
            v["opportunityLocation"] = match rec.posting {
                Some(p) => lk.postings[p as usize].value["categories"]["location"].clone(),
                None => json!("unspecified"),
            };
        }
        if expand.stage {
            v["stage"] = lk
                .stages
                .iter()
                .find(|s| s.id() == stage_id)
                .map_or(json!(stage_id), |s| s.value.clone());
        }
        if expand.owner {
            v["owner"] = self.user_json(&owner);
        }
        if expand.followers {
            v["followers"] = Value::Array(followers.iter().map(|f| self.user_json(f)).collect());
        }
        if expand.sourced_by
            && let Some(s) = v["sourcedBy"].as_str().map(str::to_string)
        {
            v["sourcedBy"] = self.user_json(&s);
        }
        if expand.contact {
            v["contact"] = json!({
                "id": c.id, "name": c.name, "headline": c.headline, "location": {"name": c.location},
                "emails": c.emails, "phones": c.phones, "isAnonymized": c.anonymized,
            });
        }
        v
    }

    /// Children of a live opportunity, with mutation overrides applied.
    pub(crate) fn children(&self, rec: &OppRec) -> Children {
        let contact = self.contact(rec);
        let mut ch = gen_children(self.seed, &self.lk, rec, &contact);
        if rec.has(F_HAS_EXTRA)
            && let Some(x) = self.extras.get(&rec.index)
        {
            let keep = |v: &Value| !x.removed.contains(v["id"].as_str().unwrap_or(""));
            ch.notes.retain(keep);
            ch.feedback.retain(keep);
            ch.forms.retain(keep);
            ch.interviews.retain(keep);
            ch.offers.retain(keep);
            ch.files.retain(keep);
            ch.resumes.retain(keep);
            ch.referrals.retain(keep);
            ch.panels.retain(keep);
            ch.notes.extend(x.notes.iter().cloned());
            ch.feedback.extend(x.feedback.iter().cloned());
            for iv in &mut ch.interviews {
                if let Some(forms) = iv["feedbackForms"].as_array_mut() {
                    forms.retain(|f| !x.removed.contains(f.as_str().unwrap_or("")));
                }
            }
        }
        ch
    }

    /// Counts of tags or sources over live opportunities.
    pub(crate) fn text_counts(&self, tags: bool) -> Vec<Value> {
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let names: &[&'static str] = if tags { data::TAGS } else { data::SOURCES };
        for n in names {
            counts.insert(n, 0);
        }
        for rec in self.recs.iter().filter(|r| r.deleted.is_none()) {
            let list = if tags {
                opp_tags(self.seed, rec.index, rec.version)
            } else {
                opp_sources(self.seed, rec.index)
            };
            for t in list {
                *counts.entry(t).or_default() += 1;
            }
        }
        names
            .iter()
            .map(|n| json!({"text": n, "count": counts[n]}))
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // mutations

    fn bump(&mut self, i: usize, t: i64) {
        let rec = &mut self.recs[i];
        rec.updated_at = Some(t);
        rec.last_interaction_at = t;
        rec.flags |= F_HAS_EXTRA;
    }

    fn next_seq(&mut self) -> u64 {
        self.mut_seq += 1;
        1_000_000 + self.mut_seq
    }

    pub(crate) fn add_note(&mut self, id: &str) -> Result<String, EmulatorError> {
        let i = self.opp_index(id)?;
        let t = self.tick();
        let n = self.next_seq();
        let rec = &self.recs[i];
        let note = data::make_note(self.seed, &self.lk, rec.index, n, t, t, rec.stage);
        let nid = note["id"].as_str().unwrap_or_default().to_string();
        self.extras.entry(i as u32).or_default().notes.push(note);
        self.bump(i, t);
        Ok(nid)
    }

    pub(crate) fn add_feedback(&mut self, id: &str) -> Result<String, EmulatorError> {
        let i = self.opp_index(id)?;
        let t = self.tick();
        let n = self.next_seq();
        let mut r = Rng::new(&[self.seed, data::K_MUT, n]);
        let user = self.lk.user_id(Lookups::active_user(&mut r)).to_string();
        let tpl = r.index(self.lk.feedback_tpls.len());
        let fb = data::make_feedback(
            self.seed,
            &self.lk,
            i as u32,
            n,
            t,
            tpl,
            &user,
            Value::Null,
            Value::Null,
        );
        let fid = fb["id"].as_str().unwrap_or_default().to_string();
        self.extras.entry(i as u32).or_default().feedback.push(fb);
        self.bump(i, t);
        Ok(fid)
    }

    pub(crate) fn change_stage(&mut self, id: &str) -> Result<(), EmulatorError> {
        let i = self.opp_index(id)?;
        let t = self.tick();
        let n = self.lk.stages.len();
        let mut s = self.recs[i].stage as usize;
        for _ in 0..n {
            s = (s + 1) % n;
            if !self.lk.stages[s].deleted {
                break;
            }
        }
        let mut r = Rng::new(&[self.seed, data::K_MUT, t as u64]);
        let user = Lookups::active_user(&mut r) as u16;
        self.extras
            .entry(i as u32)
            .or_default()
            .stage_changes
            .push((s as u16, user, t));
        self.recs[i].stage = s as u16;
        self.recs[i].last_advanced_at = t;
        self.bump(i, t);
        Ok(())
    }

    pub(crate) fn update_opportunity(&mut self, id: &str) -> Result<(), EmulatorError> {
        let i = self.opp_index(id)?;
        let t = self.tick();
        self.recs[i].version = self.recs[i].version.wrapping_add(1);
        self.bump(i, t);
        Ok(())
    }

    pub(crate) fn create_opportunity(&mut self) -> String {
        let t = self.tick();
        let index = self.recs.len() as u32;
        let rec = gen_rec(self.seed, &self.lk, index, Some(t));
        let id = opp_id(self.seed, index);
        let key = (rec.created_at, id.clone());
        let at = self.created_order.partition_point(|&j| {
            let r = &self.recs[j as usize];
            (r.created_at, opp_id(self.seed, j)) < key
        });
        self.created_order.insert(at, index);
        self.recs.push(rec);
        self.by_id.insert(id.clone(), index);
        id
    }

    pub(crate) fn vanish_opportunity(&mut self, id: &str) -> Result<(), EmulatorError> {
        self.delete_opportunity(id)?;
        let i = self.opp_index_any(id);
        self.vanished.extend(i);
        Ok(())
    }

    /// Index of an opportunity, live or deleted.
    fn opp_index_any(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn delete_opportunity(&mut self, id: &str) -> Result<(), EmulatorError> {
        let i = self.opp_index(id)?;
        let t = self.tick();
        let by = (self.recs[i].index % 20) as u16;
        self.recs[i].deleted = Some((t, by));
        self.log("opportunities", id);
        Ok(())
    }

    fn log(&mut self, kind: &str, id: &str) {
        self.deleted_log
            .entry(kind.to_string())
            .or_default()
            .push(id.to_string());
    }

    fn delete_child(&mut self, opp: &str, child: &str, notes: bool) -> Result<(), EmulatorError> {
        let i = self.opp_index(opp)?;
        let rec = self.recs[i].clone();
        let ch = self.children(&rec);
        let list = if notes { &ch.notes } else { &ch.feedback };
        if !list.iter().any(|v| v["id"] == child) {
            return Err(not_found(if notes { "note" } else { "feedback" }, child));
        }
        let t = self.tick();
        let x = self.extras.entry(i as u32).or_default();
        let added = if notes { &mut x.notes } else { &mut x.feedback };
        let before = added.len();
        added.retain(|v| v["id"] != child);
        if added.len() == before {
            x.removed.insert(child.to_string());
        }
        self.bump(i, t);
        self.log(if notes { "notes" } else { "feedback" }, child);
        Ok(())
    }

    /// Hard-removes a child (note, feedback form, profile form, interview, offer, file,
    /// resume, referral or panel) **without** bumping its opportunity's `updatedAt` (Lever
    /// documents no bump): only a re-read of the opportunity's children notices. Logged under
    /// the child endpoint's name (`notes`, `feedback`, `forms`, `interviews`, …).
    pub(crate) fn delete_child_silently(
        &mut self,
        opp: &str,
        child: &str,
    ) -> Result<(), EmulatorError> {
        let i = self.opp_index(opp)?;
        let rec = self.recs[i].clone();
        let ch = self.children(&rec);
        let has = |list: &[Value]| list.iter().any(|v| v["id"] == child);
        let kinds = [
            ("notes", &ch.notes),
            ("feedback", &ch.feedback),
            ("forms", &ch.forms),
            ("interviews", &ch.interviews),
            ("offers", &ch.offers),
            ("files", &ch.files),
            ("resumes", &ch.resumes),
            ("referrals", &ch.referrals),
            ("panels", &ch.panels),
        ];
        let Some(kind) = kinds
            .into_iter()
            .find_map(|(kind, list)| has(list).then_some(kind))
        else {
            return Err(not_found("child", child));
        };
        self.tick();
        let x = self.extras.entry(i as u32).or_default();
        let before = x.notes.len() + x.feedback.len();
        x.notes.retain(|v| v["id"] != child);
        x.feedback.retain(|v| v["id"] != child);
        if x.notes.len() + x.feedback.len() == before {
            x.removed.insert(child.to_string());
        }
        self.recs[i].flags |= F_HAS_EXTRA;
        self.log(kind, child);
        Ok(())
    }

    pub(crate) fn delete_note(&mut self, opp: &str, note: &str) -> Result<(), EmulatorError> {
        self.delete_child(opp, note, true)
    }

    pub(crate) fn delete_feedback(&mut self, opp: &str, fb: &str) -> Result<(), EmulatorError> {
        self.delete_child(opp, fb, false)
    }

    fn lookup_list(&mut self, kind: &str) -> &mut Vec<data::Item> {
        match kind {
            "users" => &mut self.lk.users,
            "postings" => &mut self.lk.postings,
            "stages" => &mut self.lk.stages,
            "archive_reasons" => &mut self.lk.archive_reasons,
            "requisitions" => &mut self.lk.requisitions,
            _ => &mut self.lk.requisition_fields,
        }
    }

    pub(crate) fn delete_lookup(
        &mut self,
        kind: &'static str,
        id: &str,
    ) -> Result<(), EmulatorError> {
        let pos = self
            .lookup_list(kind)
            .iter()
            .position(|x| !x.deleted && x.id() == id)
            .ok_or_else(|| not_found(kind, id))?;
        self.tick();
        self.lookup_list(kind)[pos].deleted = true;
        self.log(kind, id);
        Ok(())
    }

    pub(crate) fn deactivate_user(&mut self, id: &str) -> Result<(), EmulatorError> {
        let pos = self
            .lk
            .users
            .iter()
            .position(|x| !x.deleted && x.id() == id)
            .ok_or_else(|| not_found("users", id))?;
        let t = self.tick();
        self.lk.users[pos].value["deactivatedAt"] = json!(t);
        Ok(())
    }

    pub(crate) fn add_requisition_field(
        &mut self,
        key: &str,
        field_type: &str,
    ) -> Result<String, EmulatorError> {
        if !matches!(
            field_type,
            "text" | "number" | "date" | "dropdown" | "object"
        ) {
            return Err(EmulatorError::Invalid(format!(
                "unknown requisition field type {field_type:?}"
            )));
        }
        if key.is_empty()
            || key.len() > 50
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(EmulatorError::Invalid(format!(
                "requisition field id must be snake_case (≤ 50 chars): {key:?}"
            )));
        }
        if self
            .lk
            .requisition_fields
            .iter()
            .any(|f| !f.deleted && f.id() == key)
        {
            return Err(EmulatorError::Invalid(format!(
                "requisition field {key} exists"
            )));
        }
        self.tick();
        let mut field = json!({"id": key, "text": key.replace('_', " "), "type": field_type, "isRequired": false});
        match field_type {
            "dropdown" => {
                field["options"] = json!([{"id": "option_a", "text": "Option A"}, {"id": "option_b", "text": "Option B"}, {"id": "option_c", "text": "Option C"}])
            }
            "object" => {
                field["subfields"] = json!([{"id": "name", "text": "Name", "type": "text"}, {"id": "code", "text": "Code", "type": "text"}])
            }
            _ => {}
        }
        self.lk.requisition_fields.push(data::Item {
            value: field,
            deleted: false,
        });
        let mut r = Rng::new(&[self.seed, data::K_MUT, crate::rng::hash_str(key)]);
        for k in 0..self.lk.requisitions.len() {
            if self.lk.requisitions[k].deleted || k % 4 == 3 {
                continue;
            }
            let t = self.tick();
            let value = data::custom_value(field_type, &mut r);
            let req = &mut self.lk.requisitions[k].value;
            req["customFields"][key] = value;
            req["updatedAt"] = json!(t);
        }
        Ok(key.to_string())
    }

    pub(crate) fn mutate_fraction(&mut self, fraction: f64, seed: u64) -> MutationSummary {
        let live: Vec<u32> = self
            .recs
            .iter()
            .filter(|r| r.deleted.is_none())
            .map(|r| r.index)
            .collect();
        let k = ((fraction.clamp(0.0, 1.0) * live.len() as f64).round() as usize).min(live.len());
        let mut r = Rng::new(&[seed, data::K_MUT, 77]);
        // partial Fisher-Yates over a copy keeps it O(k) in random draws
        let mut pool = live;
        for j in 0..k {
            let pick = j + r.index(pool.len() - j);
            pool.swap(j, pick);
        }
        let mut summary = MutationSummary::default();
        for &i in &pool[..k] {
            let id = opp_id(self.seed, i);
            let roll = r.unit();
            let res = if roll < 0.1 {
                summary.deleted.push(id.clone());
                self.delete_opportunity(&id)
            } else {
                summary.updated.push(id.clone());
                if roll < 0.3 {
                    self.add_note(&id).map(|_| ())
                } else if roll < 0.45 {
                    self.add_feedback(&id).map(|_| ())
                } else if roll < 0.65 {
                    self.change_stage(&id)
                } else {
                    self.update_opportunity(&id)
                }
            };
            debug_assert!(res.is_ok());
        }
        for _ in 0..(k as f64 * 0.1).ceil() as usize {
            summary.created.push(self.create_opportunity());
        }
        summary
    }
}

/// Record indices sorted by ascending `(createdAt, id)`.
fn created_order(seed: u64, recs: &[OppRec]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..recs.len() as u32).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&recs[a as usize], &recs[b as usize]);
        ra.created_at
            .cmp(&rb.created_at)
            .then_with(|| opp_id(seed, ra.index).cmp(&opp_id(seed, rb.index)))
    });
    order
}
