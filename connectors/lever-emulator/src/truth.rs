//! Ground truth: the full current content in Lever's JSON shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::{child_list, deleted_rows, lookup_list};
use crate::state::{Expand, State};

/// Children of one opportunity, as `/opportunities/:id/<kind>` serve them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpportunityChildren {
    /// `/feedback`
    pub feedback: Vec<Value>,
    /// `/notes`
    pub notes: Vec<Value>,
    /// `/offers`
    pub offers: Vec<Value>,
    /// `/interviews`
    pub interviews: Vec<Value>,
    /// `/panels`
    pub panels: Vec<Value>,
    /// `/forms` (profile forms)
    pub forms: Vec<Value>,
    /// `/files`
    pub files: Vec<Value>,
    /// `/resumes`
    pub resumes: Vec<Value>,
    /// `/referrals`
    pub referrals: Vec<Value>,
}

/// Everything the emulated Lever account holds right now, as the endpoints would serve it with
/// `confidentiality=all`, `includeDeactivated=true` and `expand=applications` (applications are
/// inside each opportunity's `applications`). Lists are in endpoint order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Logical clock when the snapshot was taken (epoch ms).
    pub now_ms: i64,
    /// Live opportunities (expanded applications).
    pub opportunities: Vec<Value>,
    /// Rows of `/opportunities/deleted`: `{id, deletedAt, deletedBy}`.
    pub deleted_opportunities: Vec<Value>,
    /// Children per live opportunity id.
    pub children: BTreeMap<String, OpportunityChildren>,
    /// `/postings?confidentiality=all`
    pub postings: Vec<Value>,
    /// `/users?includeDeactivated=true`
    pub users: Vec<Value>,
    /// `/stages`
    pub stages: Vec<Value>,
    /// `/archive_reasons`
    pub archive_reasons: Vec<Value>,
    /// `/sources`
    pub sources: Vec<Value>,
    /// `/tags`
    pub tags: Vec<Value>,
    /// `/requisitions?confidentiality=all`
    pub requisitions: Vec<Value>,
    /// `/requisition_fields`
    pub requisition_fields: Vec<Value>,
    /// `/feedback_templates`
    pub feedback_templates: Vec<Value>,
    /// `/form_templates`
    pub form_templates: Vec<Value>,
    /// Ids of deleted objects per kind: `opportunities`, `notes`, `feedback`, `users`,
    /// `postings`, `stages`, `archive_reasons`, `requisitions` (in deletion order).
    pub deleted: BTreeMap<String, Vec<String>>,
    /// Deleted opportunities (also those that vanished without a row in
    /// `/opportunities/deleted`) as they were when deleted, with their children: what a
    /// destination may still hold of them in tables that do not capture deletes.
    #[serde(default)]
    pub removed_opportunities: Vec<Value>,
    /// Children of [`Truth::removed_opportunities`] by opportunity id.
    #[serde(default)]
    pub removed_children: BTreeMap<String, OpportunityChildren>,
}

impl Truth {
    /// An opportunity by id.
    pub fn opportunity(&self, id: &str) -> Option<&Value> {
        self.opportunities.iter().find(|o| o["id"] == id)
    }
}

pub(crate) fn build(st: &State) -> Truth {
    let expand = Expand {
        applications: true,
        ..Expand::default()
    };
    let mut t = Truth {
        now_ms: st.clock,
        ..Truth::default()
    };
    for rec in &st.recs {
        let o = st.opportunity_json(rec, expand);
        let id = o["id"].as_str().unwrap_or_default().to_string();
        let ch = st.children(rec);
        let (opportunities, children) = if rec.deleted.is_none() {
            (&mut t.opportunities, &mut t.children)
        } else {
            (&mut t.removed_opportunities, &mut t.removed_children)
        };
        children.insert(
            id,
            OpportunityChildren {
                feedback: ch.feedback,
                notes: ch.notes,
                offers: ch.offers,
                interviews: ch.interviews,
                panels: ch.panels,
                forms: ch.forms,
                files: ch.files,
                resumes: ch.resumes,
                referrals: ch.referrals,
            },
        );
        opportunities.push(o);
    }
    let _ = child_list;
    t.deleted_opportunities = deleted_rows(st);
    let live = |items: &[crate::data::Item]| {
        items
            .iter()
            .filter(|i| !i.deleted)
            .map(|i| i.value.clone())
            .collect::<Vec<_>>()
    };
    t.postings = live(&st.lk.postings);
    t.users = live(&st.lk.users);
    t.requisitions = live(&st.lk.requisitions);
    t.stages = lookup_list(st, "stages");
    t.archive_reasons = lookup_list(st, "archive_reasons");
    t.sources = lookup_list(st, "sources");
    t.tags = lookup_list(st, "tags");
    t.requisition_fields = lookup_list(st, "requisition_fields");
    t.feedback_templates = lookup_list(st, "feedback_templates");
    t.form_templates = lookup_list(st, "form_templates");
    t.deleted = st.deleted_log.clone();
    t
}
