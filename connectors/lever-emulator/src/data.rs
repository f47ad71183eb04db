//! Deterministic generation of Lever-shaped objects.
//!
//! Account-level lookups (users, stages, postings, requisitions, templates, ...) are small and
//! generated once into JSON. Opportunities are not stored: each has a compact [`OppRec`] and its
//! JSON (and the JSON of its children) is rebuilt on demand from `(seed, index, version)` plus the
//! record's mutable fields. Every kind of object draws from its own random stream so building one
//! kind never depends on having built another.

use serde_json::{Value, json};

use crate::rng::{Rng, hash, uuid};

/// 2026-01-01T00:00:00Z in epoch milliseconds: the logical clock's starting instant. Every
/// generated timestamp lies before it.
pub(crate) const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;

pub(crate) const K_USER: u64 = 1;
pub(crate) const K_STAGE: u64 = 2;
pub(crate) const K_AR: u64 = 3;
pub(crate) const K_POSTING: u64 = 4;
pub(crate) const K_REQ: u64 = 5;
pub(crate) const K_TPL: u64 = 6;
pub(crate) const K_OPP: u64 = 10;
pub(crate) const K_CONTACT: u64 = 11;
pub(crate) const K_APP: u64 = 12;
pub(crate) const K_NOTE: u64 = 13;
pub(crate) const K_FEEDBACK: u64 = 14;
pub(crate) const K_OFFER: u64 = 15;
pub(crate) const K_INTERVIEW: u64 = 16;
pub(crate) const K_PANEL: u64 = 17;
pub(crate) const K_FORM: u64 = 18;
pub(crate) const K_FILE: u64 = 19;
pub(crate) const K_RESUME: u64 = 20;
pub(crate) const K_REFERRAL: u64 = 21;
pub(crate) const K_FIELD: u64 = 22;
pub(crate) const K_PATH: u64 = 23;
pub(crate) const K_TAGS: u64 = 24;
pub(crate) const K_CHILD: u64 = 25;
pub(crate) const K_POSTFORM: u64 = 26;
pub(crate) const K_GROUP: u64 = 27;
pub(crate) const K_MUT: u64 = 28;

const FIRST: &[&str] = &[
    "Ana", "Zoë", "José", "Søren", "Łukasz", "Chloé", "Mei", "Olusegun", "Priya", "Björn", "Aoife",
    "Mateo", "Yūki", "Fatima", "Ingrid", "Noah", "Élodie", "Raúl", "Siobhán", "Kwame",
];
const LAST: &[&str] = &[
    "García",
    "Nguyễn",
    "O'Brien",
    "Kowalski",
    "Smith",
    "Þórsson",
    "Østergaard",
    "Yılmaz",
    "田中",
    "Ivanova",
    "Müller",
    "Okafor",
    "Dubois",
    "Patel",
    "Lindqvist",
    "Fernández",
    "Kim",
    "Novák",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella GmbH",
    "Société Générale du Café",
    "Nordisk Ånd AB",
    "Hooli",
    "Stark Industries",
    "Tyrell Systems",
    "株式会社サンプル",
];
const CITIES: &[&str] = &[
    "Berlin",
    "São Paulo",
    "Zürich",
    "Kraków",
    "東京",
    "New York, NY",
    "Lagos",
    "Dublin",
    "Montréal",
    "Remote",
];
const TITLES: &[&str] = &[
    "Software Engineer",
    "Senior Data Engineer",
    "Product Manager",
    "Account Executive",
    "Recruiter",
    "Designer (UX/UI)",
    "Site Reliability Engineer",
    "Customer Success Manager",
    "Entwickler:in Backend",
    "Finance Analyst",
];
const TEAMS: &[&str] = &[
    "Engineering",
    "Sales",
    "Product",
    "People",
    "Finance",
    "Design",
];
const DEPTS: &[&str] = &["R&D", "Go-to-market", "G&A"];
const COMMITMENTS: &[&str] = &["Full-time", "Part-time", "Intern", "Contract"];
pub(crate) const TAGS: &[&str] = &[
    "Senior",
    "Remote OK",
    "Referral bonus",
    "Rückruf",
    "Top talent",
    "Diversity pipeline",
    "Silver medalist",
    "Relocation",
];
pub(crate) const SOURCES: &[&str] = &[
    "LinkedIn",
    "Company website",
    "Referral",
    "Agency – Talentwerk",
    "Indeed",
    "Job fair 2025",
    "GitHub",
];
pub(crate) const ORIGINS: &[&str] = &[
    "agency",
    "applied",
    "internal",
    "referred",
    "sourced",
    "university",
];
const SENTENCES: &[&str] = &[
    "Strong communicator with solid fundamentals.",
    "Très bonne expérience en systèmes distribués.",
    "Needs more depth in SQL; otherwise great.",
    "Hat sehr gut über Trade-offs gesprochen — überzeugend.",
    "Great culture add; mentors juniors.",
    "候補者は非常に意欲的です。",
    "Clear, structured answers. 👍",
    "Would like to see more ownership examples.",
];

/// Number of users, postings and requisitions in every dataset.
pub(crate) const N_USERS: usize = 24;
/// Users at and after this index are deactivated.
const FIRST_DEACTIVATED: usize = 21;
pub(crate) const N_POSTINGS: usize = 30;
pub(crate) const N_REQS: usize = 20;

/// One generated lookup object and whether it was deleted since.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) value: Value,
    pub(crate) deleted: bool,
}

impl Item {
    fn new(value: Value) -> Self {
        Self {
            value,
            deleted: false,
        }
    }
    pub(crate) fn id(&self) -> &str {
        self.value["id"].as_str().unwrap_or("")
    }
}

/// A form field definition (template field).
#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    id: String,
    kind: &'static str,
    text: &'static str,
    description: &'static str,
    required: bool,
    options: Vec<&'static str>,
    scores: Vec<(&'static str, &'static str)>,
}

impl FieldDef {
    fn definition(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "type": self.kind,
            "text": self.text,
            "description": self.description,
            "required": self.required,
        });
        if !self.options.is_empty() {
            v["options"] = Value::Array(
                self.options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| json!({"text": o, "optionId": format!("{}-opt{i}", &self.id[..8])}))
                    .collect(),
            );
        }
        if !self.scores.is_empty() {
            v["scores"] = Value::Array(
                self.scores
                    .iter()
                    .map(|(t, d)| json!({"text": t, "description": d}))
                    .collect(),
            );
        }
        match self.kind {
            "currency" => v["currency"] = json!("EUR"),
            "code" => v["language"] = json!("python"),
            _ => {}
        }
        v
    }

    /// The definition plus an answer drawn from `rng`.
    fn answer(&self, rng: &mut Rng, at: i64) -> Value {
        let mut v = self.definition();
        let value = match self.kind {
            "text" | "university" => json!(rng.pick(SENTENCES)),
            "textarea" => json!(format!("{}\n{}", rng.pick(SENTENCES), rng.pick(SENTENCES))),
            "dropdown" | "multiple-choice" | "score-system" => json!(rng.pick(&self.options)),
            "multiple-select" => {
                let n = rng.index(self.options.len().min(3) + 1);
                let start = rng.index(self.options.len());
                Value::Array(
                    (0..n)
                        .map(|k| json!(self.options[(start + k) % self.options.len()]))
                        .collect(),
                )
            }
            "yes-no" => match rng.below(5) {
                0 => Value::Null,
                1 | 2 => json!("no"),
                _ => json!("yes"),
            },
            "date" => json!(at + rng.range(0, 60) * DAY),
            "currency" => json!(rng.range(40_000, 180_000) as f64 + 0.5),
            "score" => {
                if rng.chance(0.1) {
                    Value::Null
                } else {
                    json!(rng.range(1, 5))
                }
            }
            "scorecard" => Value::Array(
                self.scores
                    .iter()
                    .map(|_| json!({"score": rng.range(1, 5), "comment": rng.pick(SENTENCES)}))
                    .collect(),
            ),
            "code" => json!("def fizzbuzz(n):\n    return [str(i) for i in range(n)]"),
            "file-upload" => json!({
                "id": uuid(hash(&[at as u64]), K_FILE, rng.next_u64(), 0),
                "ext": ".pdf",
                "name": "take-home-lösung.pdf",
                "size": rng.range(10_000, 900_000),
                "uploadedAt": at,
            }),
            _ => Value::Null,
        };
        v["value"] = value;
        v
    }
}

/// A form template (feedback, profile form, posting questions or referral form).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) id: String,
    pub(crate) text: &'static str,
    instructions: &'static str,
    fields: Vec<FieldDef>,
    created_at: i64,
    group: Value,
    stage: Value,
    secret_by_default: bool,
}

impl Template {
    fn new(seed: u64, n: u64, text: &'static str, fields: &[(&'static str, &'static str)]) -> Self {
        let defs = fields
            .iter()
            .enumerate()
            .map(|(i, (kind, label))| FieldDef {
                id: uuid(seed, K_FIELD, n, i as u64),
                kind,
                text: label,
                description: if i % 2 == 0 {
                    ""
                } else {
                    "Bitte ausführlich antworten / please elaborate"
                },
                required: *kind == "score-system" || i == 0,
                options: match *kind {
                    "score-system" => vec![
                        "4 - Strong Hire",
                        "3 - Hire",
                        "2 - No Hire",
                        "1 - Strong No Hire",
                    ],
                    "dropdown" => vec!["Junior", "Mid", "Senior", "Staff"],
                    "multiple-choice" => vec!["Excellent", "Good", "Fair", "Poor"],
                    "multiple-select" => {
                        vec!["Python", "Rust", "SQL", "Leadership", "Kommunikation"]
                    }
                    "score" => vec!["1", "2", "3", "4"],
                    _ => vec![],
                },
                scores: if *kind == "scorecard" {
                    vec![
                        ("Algorithms", "Data structures and complexity"),
                        ("System design", "Trade-offs, scalability"),
                        ("Code quality", ""),
                    ]
                } else {
                    vec![]
                },
            })
            .collect();
        Self {
            id: uuid(seed, K_TPL, n, 0),
            text,
            instructions: "Fill in after the interview. Merci !",
            fields: defs,
            created_at: T0 - (700 - n as i64) * DAY,
            group: if n.is_multiple_of(2) {
                json!({"id": uuid(seed, K_GROUP, n, 0), "name": "Default group"})
            } else {
                Value::Null
            },
            stage: Value::Null,
            secret_by_default: n % 3 == 1,
        }
    }

    fn answered(&self, rng: &mut Rng, at: i64) -> Vec<Value> {
        self.fields.iter().map(|f| f.answer(rng, at)).collect()
    }

    fn feedback_json(&self) -> Value {
        json!({
            "id": self.id,
            "text": self.text,
            "group": self.group,
            "instructions": self.instructions,
            "createdAt": self.created_at,
            "updatedAt": self.created_at + DAY,
            "stage": self.stage,
            "fields": self.fields.iter().map(FieldDef::definition).collect::<Vec<_>>(),
        })
    }

    fn form_json(&self) -> Value {
        json!({
            "id": self.id,
            "text": self.text,
            "group": self.group,
            "instructions": self.instructions,
            "secretByDefault": self.secret_by_default,
            "fields": self.fields.iter().map(FieldDef::definition).collect::<Vec<_>>(),
            // form-template timestamps are strings in Lever's examples
            "createdAt": self.created_at.to_string(),
            "updatedAt": (self.created_at + DAY).to_string(),
        })
    }
}

/// All account-level objects.
#[derive(Debug, Clone)]
pub(crate) struct Lookups {
    pub(crate) users: Vec<Item>,
    pub(crate) stages: Vec<Item>,
    pub(crate) archive_reasons: Vec<Item>,
    pub(crate) postings: Vec<Item>,
    pub(crate) requisitions: Vec<Item>,
    pub(crate) requisition_fields: Vec<Item>,
    pub(crate) feedback_templates: Vec<Item>,
    pub(crate) form_templates: Vec<Item>,
    pub(crate) feedback_tpls: Vec<Template>,
    pub(crate) profile_tpls: Vec<Template>,
    pub(crate) question_tpls: Vec<Template>,
    pub(crate) referral_tpl: Template,
    /// Requisition linked to each posting (first one), by posting index.
    pub(crate) posting_req: Vec<Option<usize>>,
}

impl Lookups {
    pub(crate) fn user_id(&self, i: usize) -> &str {
        self.users[i % self.users.len()].id()
    }
    pub(crate) fn stage_id(&self, i: usize) -> &str {
        self.stages[i].id()
    }
    pub(crate) fn posting_confidential(&self, p: usize) -> bool {
        self.postings[p].value["confidentiality"] == "confidential"
    }
    /// An active user index (for authors of new content).
    pub(crate) fn active_user(rng: &mut Rng) -> usize {
        rng.index(FIRST_DEACTIVATED)
    }
}

fn person_name(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
}

fn ascii_slug(s: &str) -> String {
    let slug: String = s
        .chars()
        .filter_map(|c| {
            if c.is_ascii_alphanumeric() {
                Some(c.to_ascii_lowercase())
            } else if c == ' ' {
                Some('.')
            } else {
                None
            }
        })
        .collect();
    if slug.len() < 3 {
        format!("user{}", s.len())
    } else {
        slug
    }
}

/// Index of the "Hired" archive reason.
pub(crate) const HIRED_REASON: usize = 0;
/// Stage index of `offer`.
const OFFER_STAGE: usize = 8;

/// Generates every lookup for `seed`.
pub(crate) fn gen_lookups(seed: u64) -> Lookups {
    let users: Vec<Item> = (0..N_USERS)
        .map(|i| {
            let mut r = Rng::new(&[seed, K_USER, i as u64]);
            let name = person_name(&mut r);
            let username = format!("{}{}", ascii_slug(&name), i);
            Item::new(json!({
                "id": uuid(seed, K_USER, i as u64, 0),
                "name": name,
                "username": username,
                "email": format!("{username}@example.com"),
                "createdAt": T0 - (900 - i as i64 * 10) * DAY,
                "deactivatedAt": if i >= FIRST_DEACTIVATED { json!(T0 - (30 + i as i64) * DAY) } else { Value::Null },
                "accessRole": (["super admin", "admin", "team member", "limited team member", "interviewer"][i % 5]),
                "photo": if i % 3 == 0 { Value::Null } else { json!(format!("https://gravatar.com/avatar/{:x}", hash(&[seed, i as u64]))) },
                "externalDirectoryId": if i % 4 == 0 { json!(format!("HRIS-{i:05}")) } else { Value::Null },
                "linkedContactIds": if i % 6 == 0 { json!([uuid(seed, K_CONTACT, 1_000_000 + i as u64, 0)]) } else { Value::Null },
                "jobTitle": if i % 5 == 4 { Value::Null } else { json!(TITLES[i % TITLES.len()]) },
                "managerId": if i == 0 { Value::Null } else { json!(uuid(seed, K_USER, (i / 4) as u64, 0)) },
            }))
        })
        .collect();

    let stage_defs: [(&str, &str); 10] = [
        ("lead-new", "New lead"),
        ("lead-reached-out", "Reached out"),
        ("lead-responded", "Responded"),
        ("applicant-new", "New applicant"),
        ("", "Recruiter screen"),
        ("", "Phone interview"),
        ("", "On-site interview"),
        ("", "Reference check"),
        ("offer", "Offer"),
        ("", "Background check – Prüfung"),
    ];
    let stages = stage_defs
        .iter()
        .enumerate()
        .map(|(i, (id, text))| {
            let id = if id.is_empty() {
                uuid(seed, K_STAGE, i as u64, 0)
            } else {
                (*id).to_string()
            };
            Item::new(json!({"id": id, "text": text}))
        })
        .collect();

    let reasons: [(&str, &str, &str); 6] = [
        ("Hired", "active", "hired"),
        ("Underqualified", "active", "non-hired"),
        ("Withdrew", "active", "non-hired"),
        ("Position filled", "active", "non-hired"),
        ("Didn't respond", "active", "non-hired"),
        ("Überqualifiziert", "inactive", "non-hired"),
    ];
    let archive_reasons = reasons
        .iter()
        .enumerate()
        .map(|(i, (text, status, kind))| {
            Item::new(json!({"id": uuid(seed, K_AR, i as u64, 0), "text": text, "status": status, "type": kind}))
        })
        .collect();

    // requisition links first: requisition r links posting r (and r + 7 for even r).
    let req_postings: Vec<Vec<usize>> = (0..N_REQS)
        .map(|r| {
            if r % 2 == 0 {
                vec![r % N_POSTINGS, (r + 7) % N_POSTINGS]
            } else {
                vec![r % N_POSTINGS]
            }
        })
        .collect();
    let mut posting_req = vec![None; N_POSTINGS];
    let mut posting_codes: Vec<Vec<String>> = vec![Vec::new(); N_POSTINGS];
    for (r, ps) in req_postings.iter().enumerate() {
        for &p in ps {
            posting_req[p].get_or_insert(r);
            posting_codes[p].push(format!("REQ-{:04}", r + 1));
        }
    }

    let states = [
        "published",
        "published",
        "published",
        "published",
        "published",
        "internal",
        "closed",
        "draft",
        "pending",
        "rejected",
    ];
    let postings: Vec<Item> = (0..N_POSTINGS)
        .map(|p| {
            let mut r = Rng::new(&[seed, K_POSTING, p as u64]);
            let id = uuid(seed, K_POSTING, p as u64, 0);
            let title = TITLES[p % TITLES.len()];
            let state = states[p % states.len()];
            let created = T0 - (800 - p as i64 * 7) * DAY;
            let city = *r.pick(CITIES);
            let mut v = json!({
                "id": id,
                "text": title,
                "createdAt": created,
                "updatedAt": created + r.range(1, 90) * DAY,
                "state": state,
                "distributionChannels": match state { "published" => if p % 2 == 0 { json!(["public", "internal"]) } else { json!(["public"]) }, "internal" => json!(["internal"]), _ => json!([]) },
                "confidentiality": if p % 5 == 3 { "confidential" } else { "non-confidential" },
                "user": uuid(seed, K_USER, (p % FIRST_DEACTIVATED) as u64, 0),
                "owner": uuid(seed, K_USER, ((p + 3) % FIRST_DEACTIVATED) as u64, 0),
                "hiringManager": if p % 7 == 0 { Value::Null } else { json!(uuid(seed, K_USER, ((p + 5) % FIRST_DEACTIVATED) as u64, 0)) },
                "categories": {
                    "team": TEAMS[p % TEAMS.len()],
                    "department": if p % 4 == 0 { Value::Null } else { json!(DEPTS[p % DEPTS.len()]) },
                    "location": city,
                    "allLocations": [city],
                    "commitment": COMMITMENTS[p % COMMITMENTS.len()],
                    "level": if p % 6 == 0 { json!("senior") } else { Value::Null },
                },
                "tags": TAGS.iter().skip(p % 3).step_by(3).collect::<Vec<_>>(),
                "content": {
                    "description": format!("Join us as {title} in {city}. Wir freuen uns auf dich!"),
                    "descriptionHtml": format!("<p>Join us as <b>{title}</b> in {city}.</p>"),
                    "lists": (0..(1 + p % 3)).map(|k| json!({"text": (["Responsibilities", "Requirements", "Nice to have"][k]), "content": "<li>Ship things</li><li>Café ☕</li>"})).collect::<Vec<_>>(),
                    "closing": "We are an equal opportunity employer.",
                    "closingHtml": "<p>We are an equal opportunity employer.</p>",
                },
                "country": (["DE", "BR", "CH", "PL", "JP", "US"][p % 6]),
                "followers": [uuid(seed, K_USER, (p % 5) as u64, 0), uuid(seed, K_USER, (p % 5 + 5) as u64, 0)],
                "requisitionCodes": posting_codes[p],
                "salaryDescription": "Competitive salary + equity",
                "salaryDescriptionHtml": "<p>Competitive salary + equity</p>",
                "urls": {
                    "list": "https://jobs.lever.co/example",
                    "show": format!("https://jobs.lever.co/example/{id}"),
                    "apply": format!("https://jobs.lever.co/example/{id}/apply"),
                },
                "workplaceType": (["unspecified", "onsite", "remote", "hybrid"][p % 4]),
            });
            if let Some(code) = posting_codes[p].first() {
                v["reqCode"] = json!(code);
            }
            if p % 3 != 2 {
                v["salaryRange"] = json!({"min": 50_000 + p as i64 * 1000, "max": 90_000 + p as i64 * 1500, "currency": "EUR", "interval": "per-year-salary"});
            }
            Item::new(v)
        })
        .collect();

    let requisition_fields = vec![
        Item::new(
            json!({"id": "cost_center", "text": "Cost center", "type": "text", "isRequired": true}),
        ),
        Item::new(
            json!({"id": "budget_amount", "text": "Budget amount", "type": "number", "isRequired": false}),
        ),
        Item::new(
            json!({"id": "target_start_date", "text": "Target start date", "type": "date", "isRequired": false}),
        ),
        Item::new(
            json!({"id": "hiring_priority", "text": "Hiring priority", "type": "dropdown", "isRequired": false,
            "options": [{"id": "high", "text": "High"}, {"id": "medium", "text": "Medium"}, {"id": "low", "text": "Low"}]}),
        ),
        Item::new(
            json!({"id": "location_details", "text": "Location details", "type": "object", "isRequired": false,
            "subfields": [{"id": "city", "text": "City", "type": "text"}, {"id": "floor", "text": "Floor", "type": "number"}]}),
        ),
    ];

    let requisitions = req_postings
        .iter()
        .enumerate()
        .map(|(r, ps)| {
            let mut g = Rng::new(&[seed, K_REQ, r as u64]);
            let confidential = ps.iter().any(|&p| postings[p].value["confidentiality"] == "confidential");
            let created = T0 - (600 - r as i64 * 11) * DAY;
            let status = ["open", "open", "onHold", "closed", "draft"][r % 5];
            let total: Value = if r % 6 == 0 { json!("unlimited") } else { json!(g.range(1, 6)) };
            let hired = json!(g.range(0, 2));
            let mut custom = serde_json::Map::new();
            custom.insert("cost_center".into(), json!(format!("CC-{}", 100 + r)));
            if r % 3 != 1 {
                custom.insert("budget_amount".into(), json!(g.range(50, 200) as f64 * 1000.0 + 0.25));
            }
            if r % 4 != 3 {
                custom.insert("target_start_date".into(), json!(T0 + g.range(10, 200) * DAY));
            }
            custom.insert("hiring_priority".into(), json!(["High", "Medium", "Low"][r % 3]));
            if r % 2 == 0 {
                custom.insert("location_details".into(), json!({"city": CITIES[r % CITIES.len()], "floor": (r % 7) as i64}));
            }
            let approval = if r % 4 == 0 {
                json!({"steps": []})
            } else {
                json!({
                    "id": uuid(seed, K_REQ, r as u64, 9),
                    "status": if r % 4 == 1 { "approved" } else { "pending" },
                    "startedAt": created + DAY,
                    "approvedAt": if r % 4 == 1 { json!(created + 3 * DAY) } else { Value::Null },
                    "accountId": uuid(seed, 999, 0, 0),
                    "createdBy": uuid(seed, K_USER, (r % 7) as u64, 0),
                    "steps": [{
                        "completed": r % 4 == 1,
                        "status": if r % 4 == 1 { json!("approved") } else { Value::Null },
                        "outOfBandOnly": false,
                        "approvalsRequired": 1,
                        "approvers": [{
                            "id": uuid(seed, K_USER, 1, 0),
                            "approved": r % 4 == 1,
                            "approvedAt": if r % 4 == 1 { json!(created + 3 * DAY) } else { Value::Null },
                            "isDynamic": false,
                            "user": {"userId": uuid(seed, K_USER, 1, 0), "email": "approver@example.com"},
                            "type": "static",
                            "overridingUserId": Value::Null,
                        }],
                    }],
                })
            };
            let closed = status == "closed";
            Item::new(json!({
                "id": uuid(seed, K_REQ, r as u64, 0),
                "requisitionCode": format!("REQ-{:04}", r + 1),
                "name": format!("{} ({})", TITLES[r % TITLES.len()], CITIES[r % CITIES.len()]),
                "backfill": r % 3 == 0,
                "confidentiality": if confidential { "confidential" } else { "non-confidential" },
                "status": status,
                "headcountTotal": total,
                "headcountHired": hired,
                "employmentStatus": (["full-time", "part-time", "intern", "contractor", "temp-worker"][r % 5]),
                "location": CITIES[r % CITIES.len()],
                "team": TEAMS[r % TEAMS.len()],
                "department": DEPTS[r % DEPTS.len()],
                "internalNotes": if r % 2 == 0 { "Budget approved — Q1" } else { "" },
                "creator": uuid(seed, K_USER, (r % 9) as u64, 0),
                "owner": uuid(seed, K_USER, ((r + 2) % 9) as u64, 0),
                "hiringManager": if r % 5 == 4 { Value::Null } else { json!(uuid(seed, K_USER, ((r + 4) % 9) as u64, 0)) },
                "postings": ps.iter().map(|&p| uuid(seed, K_POSTING, p as u64, 0)).collect::<Vec<_>>(),
                "offerIds": [],
                "compensationBand": {"currency": "EUR", "interval": "per-year-salary", "min": 50_000 + r as i64 * 1000, "max": 95_000.5 + r as f64 * 1000.0},
                "approval": approval,
                "customFields": custom,
                "createdAt": created,
                "updatedAt": created + 5 * DAY,
                "closedAt": if closed { json!(created + 40 * DAY) } else { Value::Null },
                "timeToFillStartAt": created + 2 * DAY,
                "timeToFillEndAt": if closed { json!(created + 40 * DAY) } else { Value::Null },
            }))
        })
        .collect();

    let feedback_tpls = vec![
        Template::new(
            seed,
            0,
            "Phone screen scorecard",
            &[
                ("score-system", "Overall recommendation"),
                ("text", "Summary"),
                ("score", "Communication"),
                ("scorecard", "Technical skills"),
                ("multiple-select", "Strengths"),
                ("yes-no", "Would you work with them?"),
            ],
        ),
        Template::new(
            seed,
            1,
            "On-site interview",
            &[
                ("score-system", "Overall recommendation"),
                ("textarea", "Detailed notes"),
                ("currency", "Expected salary"),
                ("date", "Earliest start date"),
                ("code", "Coding exercise"),
                ("file-upload", "Take-home submission"),
                ("dropdown", "Seniority"),
                ("multiple-choice", "Team fit"),
            ],
        ),
        Template::new(
            seed,
            2,
            "Reference check",
            &[
                ("score-system", "Overall recommendation"),
                ("text", "Referee"),
                ("yes-no", "Would rehire?"),
                ("university", "University attended"),
                ("score", "Reliability"),
            ],
        ),
        Template::new(
            seed,
            3,
            "No Feedback",
            &[("score-system", "Overall recommendation")],
        ),
    ];
    let profile_tpls = vec![
        Template::new(
            seed,
            10,
            "Offer details",
            &[
                ("currency", "Salary expectation"),
                ("date", "Available from"),
                ("dropdown", "Level"),
                ("text", "Notice period"),
            ],
        ),
        Template::new(
            seed,
            11,
            "Candidate preferences",
            &[
                ("multiple-choice", "Preferred office"),
                ("multiple-select", "Interests"),
                ("textarea", "Anything else?"),
                ("yes-no", "Open to relocation?"),
            ],
        ),
    ];
    let question_tpls = vec![
        Template::new(
            seed,
            20,
            "Application questions",
            &[
                ("text", "Why do you want to join?"),
                ("yes-no", "Do you need a visa?"),
                ("multiple-choice", "English level"),
                ("file-upload", "Portfolio"),
            ],
        ),
        Template::new(
            seed,
            21,
            "Work authorization",
            &[
                ("yes-no", "Authorized to work in the EU?"),
                ("university", "Highest degree from"),
                ("textarea", "Cover letter"),
                ("multiple-select", "Languages"),
            ],
        ),
    ];
    let referral_tpl = Template::new(
        seed,
        30,
        "Referral form",
        &[
            ("text", "Referrer name"),
            ("multiple-choice", "Relationship"),
            ("textarea", "Why a good fit?"),
        ],
    );

    let feedback_templates = feedback_tpls
        .iter()
        .map(|t| Item::new(t.feedback_json()))
        .collect();
    let form_templates = profile_tpls
        .iter()
        .map(|t| Item::new(t.form_json()))
        .collect();

    Lookups {
        users,
        stages,
        archive_reasons,
        postings,
        requisitions,
        requisition_fields,
        feedback_templates,
        form_templates,
        feedback_tpls,
        profile_tpls,
        question_tpls,
        referral_tpl,
        posting_req,
    }
}

/// `/postings/:id/apply` content for posting `p`.
pub(crate) fn apply_form(lk: &Lookups, p: usize) -> Value {
    let posting = &lk.postings[p].value;
    let yes_no = |text: &str| json!({"type": "dropdown", "text": text, "required": false, "options": [{"text": "Yes"}, {"text": "No"}, {"text": "Decline to self-identify"}]});
    json!({
        "id": posting["id"],
        "text": posting["text"],
        "customQuestions": lk.question_tpls.iter().map(|t| json!({
            "id": t.id,
            "text": t.text,
            "fields": t.fields.iter().map(|f| { let mut d = f.definition(); d["distribution"] = json!(["internal", "external"]); d }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "eeoQuestions": {
            "gender": yes_no("Gender"), "race": yes_no("Race"), "veteran": yes_no("Veteran status"),
            "disability": yes_no("Disability"), "disabilitySignature": {"type": "text", "text": "Signature", "required": false},
            "disabilitySignatureDate": {"type": "date", "text": "Date", "required": false},
        },
        "personalInformation": [
            {"text": "Full name", "name": "fullName", "type": "text", "required": true, "value": Value::Null},
            {"text": "Email", "name": "email", "type": "email", "required": true, "value": Value::Null},
            {"text": "Current company", "name": "currentCompany", "type": "text", "required": false, "value": Value::Null},
            {"text": "Resume/CV", "name": "resume", "type": "file-upload", "required": true, "value": Value::Null},
        ],
        "urls": [{"text": "LinkedIn", "name": "urls[LinkedIn]", "type": "text", "required": false, "value": Value::Null}],
        "consentDisclosures": {
            "store": {"statement": "We store your data for 2 years.", "statementHtml": "<p>We store your data for 2 years.</p>", "displayState": "always", "compliancePolicyId": "policy-1"},
            "marketing": {"statement": "Keep me posted.", "statementHtml": "<p>Keep me posted.</p>", "displayState": "optional", "compliancePolicyId": "policy-2"},
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Opportunities

/// Flag bits of [`OppRec::flags`].
pub(crate) const F_CONFIDENTIAL: u8 = 1;
pub(crate) const F_HAS_APP: u8 = 2;
pub(crate) const F_HAS_OFFER: u8 = 4;
pub(crate) const F_HAS_EXTRA: u8 = 8;

/// The compact in-memory record of one opportunity (about 64 bytes). Everything else is derived.
#[derive(Debug, Clone)]
pub(crate) struct OppRec {
    /// Generation index: ids and random streams derive from it.
    pub(crate) index: u32,
    pub(crate) created_at: i64,
    /// Latest instant generated content of this opportunity may carry.
    pub(crate) horizon: i64,
    pub(crate) updated_at: Option<i64>,
    pub(crate) last_interaction_at: i64,
    pub(crate) last_advanced_at: i64,
    pub(crate) stage: u16,
    pub(crate) posting: Option<u16>,
    pub(crate) archived: Option<(u16, i64)>,
    pub(crate) origin: u8,
    pub(crate) flags: u8,
    pub(crate) version: u16,
    /// `(deletedAt, deletedBy user index)` once deleted.
    pub(crate) deleted: Option<(i64, u16)>,
}

impl OppRec {
    pub(crate) fn confidential(&self) -> bool {
        self.flags & F_CONFIDENTIAL != 0
    }
    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Opportunity id for generation index `i`.
pub(crate) fn opp_id(seed: u64, i: u32) -> String {
    uuid(seed, K_OPP, u64::from(i), 0)
}

/// Base stage path: `(stage index, user index, timestamp)`, strictly increasing timestamps.
pub(crate) fn stage_path(
    seed: u64,
    rec_index: u32,
    origin: u8,
    created: i64,
    horizon: i64,
) -> Vec<(u16, u16, i64)> {
    let mut r = Rng::new(&[seed, K_PATH, u64::from(rec_index)]);
    let first: u16 = if matches!(ORIGINS[origin as usize], "sourced" | "internal") {
        0
    } else {
        3
    };
    let mut path = vec![(first, r.index(FIRST_DEACTIVATED) as u16, created)];
    let span = horizon - created;
    if span < 10 * DAY {
        return path;
    }
    let extra = r.below(4);
    let mut t = created;
    let mut stage = first;
    for k in 0..extra {
        t += 1 + r.range(0, span / 5);
        if t >= horizon {
            break;
        }
        stage = (stage + 1 + r.below(2) as u16).min(9);
        if k == extra - 1 && r.chance(0.3) {
            stage = OFFER_STAGE as u16;
        }
        path.push((stage, r.index(FIRST_DEACTIVATED) as u16, t));
    }
    path
}

/// Generates the compact record of opportunity `index` created at `created` (or at a random
/// instant in the two years before [`T0`] when `created` is `None`).
pub(crate) fn gen_rec(seed: u64, lk: &Lookups, index: u32, created: Option<i64>) -> OppRec {
    let mut r = Rng::new(&[seed, K_OPP, u64::from(index)]);
    let (created_at, horizon) = match created {
        Some(t) => (t, t),
        None => (T0 - r.range(DAY, 730 * DAY), T0 - 1000),
    };
    let origin = r.index(ORIGINS.len()) as u8;
    let posting = if r.chance(0.88) {
        Some(r.index(N_POSTINGS) as u16)
    } else {
        None
    };
    let mut flags = 0;
    if posting.is_some_and(|p| lk.posting_confidential(p as usize)) {
        flags |= F_CONFIDENTIAL;
    }
    if posting.is_some() && (created.is_some() || r.chance(0.95)) {
        flags |= F_HAS_APP;
    }
    let path = stage_path(seed, index, origin, created_at, horizon);
    let (stage, _, last_advanced_at) = *path.last().unwrap_or(&(0, 0, created_at));
    if stage as usize == OFFER_STAGE || r.chance(0.12) {
        flags |= F_HAS_OFFER;
    }
    let archived = if created.is_none() && r.chance(0.3) {
        let reason = if stage as usize == OFFER_STAGE {
            HIRED_REASON
        } else {
            1 + r.index(5)
        };
        let at = last_advanced_at + 1 + r.range(0, (horizon - last_advanced_at).max(1));
        Some((reason as u16, at.min(horizon)))
    } else {
        None
    };
    let latest = archived.map_or(last_advanced_at, |(_, at)| at.max(last_advanced_at));
    let updated_at = if created.is_none() && r.chance(0.06) {
        None
    } else {
        Some((latest + r.range(0, (horizon - latest).max(0) / 2 + 1)).min(horizon))
    };
    let last_interaction_at = updated_at.unwrap_or(latest);
    OppRec {
        index,
        created_at,
        horizon,
        updated_at,
        last_interaction_at,
        last_advanced_at,
        stage,
        posting,
        archived,
        origin,
        flags,
        version: 0,
        deleted: None,
    }
}

/// Contact shared by a pair of generated opportunities (every 7th shares the previous one's).
pub(crate) fn contact_index(index: u32, initial: u32) -> u32 {
    if index < initial && index % 7 == 6 {
        index - 1
    } else {
        index
    }
}

/// Tags of an opportunity at a given version.
pub(crate) fn opp_tags(seed: u64, index: u32, version: u16) -> Vec<&'static str> {
    let mut r = Rng::new(&[seed, K_TAGS, u64::from(index), u64::from(version)]);
    let n = r.below(3) as usize;
    let start = r.index(TAGS.len());
    (0..n).map(|k| TAGS[(start + k * 3) % TAGS.len()]).collect()
}

/// Sources of an opportunity.
pub(crate) fn opp_sources(seed: u64, index: u32) -> Vec<&'static str> {
    let mut r = Rng::new(&[seed, K_TAGS, u64::from(index), 99_999]);
    let n = 1 + r.below(2) as usize;
    let start = r.index(SOURCES.len());
    (0..n)
        .map(|k| SOURCES[(start + k * 2) % SOURCES.len()])
        .collect()
}

/// Contact fields: `(id, name, headline, location, emails, phones, links, anonymized, dataProtection)`.
pub(crate) struct Contact {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) headline: String,
    pub(crate) location: String,
    pub(crate) emails: Value,
    pub(crate) phones: Value,
    pub(crate) links: Value,
    pub(crate) anonymized: bool,
    pub(crate) data_protection: Value,
}

pub(crate) fn gen_contact(seed: u64, c: u32) -> Contact {
    let mut r = Rng::new(&[seed, K_CONTACT, u64::from(c)]);
    let anonymized = r.chance(0.02);
    let name = if anonymized {
        "Anonymized candidate".to_string()
    } else {
        person_name(&mut r)
    };
    let slug = ascii_slug(&name);
    let emails: Vec<String> = (0..1 + r.below(2))
        .map(|k| {
            format!(
                "{slug}.{c}{}@mail{k}.example.org",
                if k == 1 { ".alt" } else { "" }
            )
        })
        .collect();
    let phones: Vec<Value> = (0..r.below(3))
        .map(|k| {
            let t = [Value::Null, json!("mobile"), json!("home"), json!("work"), json!("skype"), json!("other")][r.index(6)].clone();
            json!({"type": t, "value": format!("+49 30 {:07}", (u64::from(c) * 7 + k) % 10_000_000)})
        })
        .collect();
    let links: Vec<String> = (0..r.below(3))
        .map(|k| match k {
            0 => format!("https://www.linkedin.com/in/{slug}-{c}"),
            1 => format!("https://github.com/{slug}{c}"),
            _ => format!("https://{slug}.example.dev/ü"),
        })
        .collect();
    let dp = if r.chance(0.4) {
        Value::Null
    } else {
        json!({
            "store": {"allowed": r.chance(0.8), "expiresAt": if r.chance(0.5) { json!(T0 + r.range(30, 700) * DAY) } else { Value::Null }},
            "contact": {"allowed": r.chance(0.7), "expiresAt": if r.chance(0.5) { json!(T0 + r.range(30, 700) * DAY) } else { Value::Null }},
        })
    };
    Contact {
        id: uuid(seed, K_CONTACT, u64::from(c), 0),
        headline: format!(
            "{} at {}, ex-{}",
            TITLES[r.index(TITLES.len())],
            r.pick(COMPANIES),
            r.pick(COMPANIES)
        ),
        location: (*r.pick(CITIES)).to_string(),
        name,
        emails: json!(emails),
        phones: Value::Array(phones),
        links: json!(links),
        anonymized,
        data_protection: dp,
    }
}

fn app_type(origin: u8) -> &'static str {
    match ORIGINS[origin as usize] {
        "referred" => "referral",
        "sourced" => "user",
        _ => "posting",
    }
}

/// The application object of an opportunity (`None` if it has none).
pub(crate) fn gen_application(
    seed: u64,
    lk: &Lookups,
    rec: &OppRec,
    contact: &Contact,
) -> Option<Value> {
    if !rec.has(F_HAS_APP) {
        return None;
    }
    let p = rec.posting? as usize;
    let mut r = Rng::new(&[seed, K_APP, u64::from(rec.index)]);
    let kind = app_type(rec.origin);
    let posting = &lk.postings[p].value;
    let oid = opp_id(seed, rec.index);
    let created = rec.created_at;
    let custom_questions = if kind == "posting" {
        let n = 1 + r.below(2) as usize;
        Value::Array(
            lk.question_tpls
                .iter()
                .take(n)
                .enumerate()
                .map(|(q, t)| {
                    json!({
                        "id": uuid(seed, K_POSTFORM, u64::from(rec.index), q as u64),
                        "type": "posting",
                        "text": t.text,
                        "description": "",
                        "user": Value::Null,
                        "baseTemplateId": t.id,
                        "stage": Value::Null,
                        "createdAt": created,
                        "completedAt": created,
                        "fields": t.answered(&mut r, created),
                    })
                })
                .collect(),
        )
    } else {
        Value::Null
    };
    let requisition_for_hire = match (rec.archived, lk.posting_req[p]) {
        (Some((reason, _)), Some(req)) if reason as usize == HIRED_REASON => {
            let rq = &lk.requisitions[req].value;
            json!({"id": rq["id"], "requisitionCode": rq["requisitionCode"], "hiringManagerOnHire": rq["hiringManager"]})
        }
        _ => Value::Null,
    };
    let phone = contact.phones.get(0).cloned().unwrap_or(Value::Null);
    Some(json!({
        "id": uuid(seed, K_APP, u64::from(rec.index), 0),
        "opportunityId": oid,
        "candidateId": oid,
        "createdAt": created,
        "type": kind,
        "posting": posting["id"],
        "postingOwner": posting["owner"],
        "postingHiringManager": posting["hiringManager"],
        "user": if kind == "posting" { Value::Null } else { json!(lk.user_id(r.index(FIRST_DEACTIVATED))) },
        "name": contact.name,
        "email": contact.emails.get(0).cloned().unwrap_or(Value::Null),
        "phone": phone,
        "company": if r.chance(0.7) { json!(r.pick(COMPANIES)) } else { Value::Null },
        "links": if r.chance(0.2) { Value::Null } else { contact.links.clone() },
        "comments": if r.chance(0.5) { json!(r.pick(SENTENCES)) } else { Value::Null },
        "customQuestions": custom_questions,
        "archived": rec.archived.map_or(Value::Null, |(reason, at)| json!({"archivedAt": at, "reason": lk.archive_reasons[reason as usize].id()})),
        "requisitionForHire": requisition_for_hire,
        "resume": Value::Null,
    }))
}

/// Children of one opportunity as generated (before mutation overrides).
#[derive(Debug, Default, Clone)]
pub(crate) struct Children {
    pub(crate) feedback: Vec<Value>,
    pub(crate) notes: Vec<Value>,
    pub(crate) offers: Vec<Value>,
    pub(crate) interviews: Vec<Value>,
    pub(crate) panels: Vec<Value>,
    pub(crate) forms: Vec<Value>,
    pub(crate) files: Vec<Value>,
    pub(crate) resumes: Vec<Value>,
    pub(crate) referrals: Vec<Value>,
}

/// A note thread (used by generation and by `add_note`).
pub(crate) fn make_note(
    seed: u64,
    lk: &Lookups,
    opp_index: u32,
    n: u64,
    at: i64,
    horizon: i64,
    stage: u16,
) -> Value {
    let mut r = Rng::new(&[seed, K_NOTE, u64::from(opp_index), n]);
    let user = lk.user_id(Lookups::active_user(&mut r)).to_string();
    let comments = 1 + r.below(3);
    let mut t = at;
    let fields: Vec<Value> = (0..comments)
        .map(|_| {
            let f = json!({
                "type": "note",
                "text": "Note",
                "value": r.pick(SENTENCES),
                "createdAt": t,
                "user": lk.user_id(Lookups::active_user(&mut r)),
                "score": if r.chance(0.5) { Value::Null } else { json!(r.range(1, 5)) },
                "stage": lk.stage_id(stage as usize),
            });
            t = (t + 1 + r.range(0, DAY)).min(horizon.max(at));
            f
        })
        .collect();
    json!({
        "id": uuid(seed, K_NOTE, u64::from(opp_index), n),
        "text": "Note",
        "fields": fields,
        "user": user,
        "secret": r.chance(0.1),
        "createdAt": at,
        "completedAt": t,
        "deletedAt": if at < T0 && r.chance(0.03) { json!(t) } else { Value::Null },
    })
}

/// A feedback form (used by generation and by `add_feedback`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_feedback(
    seed: u64,
    lk: &Lookups,
    opp_index: u32,
    n: u64,
    at: i64,
    template: usize,
    user: &str,
    panel: Value,
    interview: Value,
) -> Value {
    let mut r = Rng::new(&[seed, K_FEEDBACK, u64::from(opp_index), n]);
    let t = &lk.feedback_tpls[template];
    json!({
        "id": uuid(seed, K_FEEDBACK, u64::from(opp_index), n),
        "type": "interview",
        "text": t.text,
        "instructions": t.instructions,
        "baseTemplateId": t.id,
        "fields": t.answered(&mut r, at),
        "user": user,
        "panel": panel,
        "interview": interview,
        "createdAt": at,
        "completedAt": at,
        "updatedAt": if at < T0 && r.chance(0.2) { Value::Null } else { json!(at) },
        "deletedAt": if at < T0 && r.chance(0.03) { json!(at) } else { Value::Null },
    })
}

/// Generates all children of an opportunity (applications excluded: see [`gen_application`]).
pub(crate) fn gen_children(seed: u64, lk: &Lookups, rec: &OppRec, contact: &Contact) -> Children {
    let mut r = Rng::new(&[seed, K_CHILD, u64::from(rec.index)]);
    let i = rec.index;
    let oid = opp_id(seed, i);
    let span = (rec.horizon - rec.created_at).max(1);
    let when = |r: &mut Rng| rec.created_at + r.range(0, span);
    let mut out = Children::default();
    let app_id = if rec.has(F_HAS_APP) {
        Some(uuid(seed, K_APP, u64::from(i), 0))
    } else {
        None
    };
    let posting_id = rec
        .posting
        .map(|p| lk.postings[p as usize].id().to_string());

    // notes
    for n in 0..1 + r.below(3) {
        let at = when(&mut r);
        out.notes
            .push(make_note(seed, lk, i, n, at, rec.horizon, rec.stage));
    }
    // panels, interviews and their feedback
    if r.chance(0.6) {
        let k = 0u64;
        let panel_id = uuid(seed, K_PANEL, u64::from(i), k);
        let start = when(&mut r);
        let tz = *r.pick(&["Europe/Berlin", "America/Sao_Paulo", "Asia/Tokyo", "UTC"]);
        let stage = lk.stage_id(rec.stage as usize).to_string();
        let creator = lk.user_id(Lookups::active_user(&mut r)).to_string();
        let reminder = *r.pick(&["once", "daily", "frequently", "none"]);
        let canceled = if r.chance(0.05) {
            json!(start - 1000)
        } else {
            Value::Null
        };
        let mut interviews = Vec::new();
        let mut subsets = Vec::new();
        let mut t = start;
        for j in 0..1 + r.below(2) {
            let iid = uuid(seed, K_INTERVIEW, u64::from(i), k * 4 + j);
            let tpl = r.index(3);
            let tpl_id = lk.feedback_tpls[tpl].id.clone();
            let first = Lookups::active_user(&mut r);
            let step = 1 + r.index(FIRST_DEACTIVATED - 1);
            let interviewers: Vec<Value> = (0..1 + r.below(2) as usize)
                .map(|k| {
                    // distinct interviewers
                    let u = &lk.users[(first + k * step) % FIRST_DEACTIVATED].value;
                    json!({"id": u["id"], "name": u["name"], "email": u["email"], "feedbackTemplate": tpl_id})
                })
                .collect();
            let duration = *r.pick(&[30i64, 45, 60, 90]);
            let mut feedback_forms = Vec::new();
            if r.chance(0.7) {
                let author = interviewers[0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let fb = make_feedback(
                    seed,
                    lk,
                    i,
                    k * 4 + j,
                    t + duration * 60_000,
                    tpl,
                    &author,
                    json!(panel_id),
                    json!(iid),
                );
                feedback_forms.push(fb["id"].clone());
                out.feedback.push(fb);
            }
            let subject = format!("{} – interview {}", contact.name, j + 1);
            let location = *r.pick(&["Zoom", "Room Ærø (3rd floor)", "Google Meet"]);
            let note = *r.pick(SENTENCES);
            subsets.push(json!({
                "id": iid, "date": t, "duration": duration, "feedbackReminder": reminder,
                "feedbackTemplate": tpl_id, "interviewers": interviewers, "location": location,
                "note": note, "subject": subject,
            }));
            let mut iv = json!({
                "id": iid,
                "panel": panel_id,
                "subject": subject,
                "note": note,
                "location": location,
                "interviewers": interviewers,
                "timezone": tz,
                "createdAt": start - 1000,
                "date": t,
                "duration": duration,
                "feedbackTemplate": tpl_id,
                "feedbackForms": feedback_forms,
                "feedbackReminder": reminder,
                "user": creator,
                "stage": stage,
                "canceledAt": canceled,
                "postings": posting_id.iter().collect::<Vec<_>>(),
            });
            if r.chance(0.5) {
                iv["gcalEventUrl"] = json!(format!(
                    "https://calendar.google.com/event?eid={}",
                    &iid[..8]
                ));
            }
            interviews.push(iv);
            t += duration * 60_000 + 15 * 60_000;
        }
        let externally = r.chance(0.3);
        let mut panel = json!({
            "id": panel_id,
            "applications": app_id.iter().collect::<Vec<_>>(),
            "canceledAt": canceled,
            "createdAt": start - 1000,
            "start": start,
            "end": t,
            "timezone": tz,
            "feedbackReminder": reminder,
            "user": creator,
            "stage": stage,
            "note": "Panel – bitte pünktlich sein",
            "externallyManaged": externally,
            "interviews": subsets,
        });
        if externally {
            panel["externalUrl"] = json!(format!(
                "https://scheduler.example.com/p/{}",
                &panel_id[..8]
            ));
        }
        out.panels.push(panel);
        out.interviews.extend(interviews);
    }
    // manual feedback (no interview)
    if r.chance(0.25) {
        let at = when(&mut r);
        let user = lk.user_id(Lookups::active_user(&mut r)).to_string();
        out.feedback.push(make_feedback(
            seed,
            lk,
            i,
            100,
            at,
            2 + r.index(2),
            &user,
            Value::Null,
            Value::Null,
        ));
    }
    // offers
    if rec.has(F_HAS_OFFER) {
        let at = when(&mut r);
        let status = *r.pick(&[
            "draft",
            "approval-sent",
            "approved",
            "sent",
            "sent-manually",
            "opened",
            "denied",
            "signed",
            "signed",
            "signed",
        ]);
        let sent = matches!(status, "sent" | "opened" | "signed");
        let oid_ = uuid(seed, K_OFFER, u64::from(i), 0);
        let dl = |kind: &str| {
            format!(
                "https://api.lever.co/v1/opportunities/{oid}/offers/{oid_}/download?status={kind}"
            )
        };
        let posting_text = rec.posting.map_or(Value::Null, |p| {
            lk.postings[p as usize].value["text"].clone()
        });
        out.offers.push(json!({
            "id": oid_,
            "createdAt": at,
            "creator": lk.user_id(Lookups::active_user(&mut r)),
            "status": status,
            "fields": [
                {"text": "Salary", "identifier": "salary_amount", "value": r.range(50, 150) * 1000},
                {"text": "Currency", "identifier": "compensation_currency", "value": "EUR"},
                {"text": "Salary interval", "identifier": "salary_interval", "value": "per-year-salary"},
                {"text": "Anticipated start date", "identifier": "anticipated_start_date", "value": at + 30 * DAY},
                {"text": "Job posting", "identifier": "job_posting", "value": posting_text},
                {"text": "Signing bonus (€)", "identifier": "custom_signing_bonus", "value": 2500.5},
            ],
            "signatures": if sent { json!({"candidate": {"role": "candidate", "name": contact.name, "email": contact.emails.get(0), "firstOpenedAt": at + 1000, "lastOpenedAt": at + 2000, "signedAt": if status == "signed" { json!(at + 3000) } else { Value::Null }, "signed": status == "signed"}}) } else { json!({}) },
            "sentDocument": if sent { json!({"fileName": "Angebot – offer.pdf", "uploadedAt": at + 500, "downloadUrl": dl("sent")}) } else { Value::Null },
            "signedDocument": if status == "signed" { json!({"fileName": "offer-signed.pdf", "uploadedAt": at + 3000, "downloadUrl": dl("signed")}) } else { Value::Null },
            "approvedAt": if status == "draft" { Value::Null } else { json!(at + 100) },
            "sentAt": if sent { json!(at + 500) } else { Value::Null },
        }));
    }
    // profile forms
    if r.chance(0.4) {
        let at = when(&mut r);
        let t = &lk.profile_tpls[r.index(lk.profile_tpls.len())];
        let mut fr = Rng::new(&[seed, K_FORM, u64::from(i)]);
        out.forms.push(json!({
            "id": uuid(seed, K_FORM, u64::from(i), 0),
            "type": "form",
            "text": t.text,
            "instructions": t.instructions,
            "baseTemplateId": t.id,
            "fields": t.answered(&mut fr, at),
            "user": lk.user_id(Lookups::active_user(&mut r)),
            "stage": lk.stage_id(rec.stage as usize),
            "createdAt": at,
            "completedAt": at + 60_000,
            "deletedAt": if r.chance(0.05) { json!(at + 120_000) } else { Value::Null },
        }));
    }
    // files
    for n in 0..r.below(3) {
        let at = when(&mut r);
        let fid = uuid(seed, K_FILE, u64::from(i), n);
        let ext = *r.pick(&[".pdf", ".docx", ".png"]);
        out.files.push(json!({
            "id": fid,
            "downloadUrl": format!("https://api.lever.co/v1/opportunities/{oid}/files/{fid}/download"),
            "ext": ext,
            "name": format!("Arbeitsprobe-{n}{ext}"),
            "uploadedAt": at,
            "status": ([json!("processed"), json!("processed"), json!("processing"), json!("unsupported"), json!("error"), Value::Null][r.index(6)]),
            "size": r.range(1_000, 5_000_000),
        }));
    }
    // resumes
    for n in 0..if r.chance(0.9) { 1 + r.below(2) } else { 0 } {
        let at = when(&mut r);
        let rid = uuid(seed, K_RESUME, u64::from(i), n);
        let mut resume = json!({"id": rid, "createdAt": at});
        if r.chance(0.85) {
            resume["file"] = json!({
                "name": format!("{} CV.pdf", contact.name),
                "ext": ".pdf",
                "downloadUrl": format!("https://api.lever.co/v1/opportunities/{oid}/resumes/{rid}/download"),
                "uploadedAt": at,
                "status": "processed",
                "size": r.range(20_000, 900_000),
            });
        }
        if r.chance(0.9) {
            let positions: Vec<Value> = (0..1 + r.below(3))
                .map(|k| {
                    let mut p = json!({
                        "org": r.pick(COMPANIES), "title": TITLES[r.index(TITLES.len())], "summary": r.pick(SENTENCES),
                        "location": r.pick(CITIES), "start": {"year": 2015 + k as i64 * 2, "month": 1 + r.range(0, 12)},
                    });
                    if k > 0 {
                        p["end"] = json!({"year": 2016 + k as i64 * 2, "month": 1 + r.range(0, 12)});
                    }
                    p
                })
                .collect();
            let schools: Vec<Value> = (0..r.below(3))
                .map(|k| json!({
                    "org": (["Universität Wien", "MIT", "Uniwersytet Jagielloński", "東京大学"][r.index(4)]),
                    "degree": (["BSc", "MSc", "PhD"][k as usize % 3]), "field": "Informatik", "summary": Value::Null,
                    "start": {"year": 2008 + k as i64 * 4, "month": 10}, "end": {"year": 2011 + k as i64 * 4, "month": 7},
                }))
                .collect();
            resume["parsedData"] = json!({"positions": positions, "schools": schools});
        }
        out.resumes.push(resume);
    }
    // referrals
    if ORIGINS[rec.origin as usize] == "referred" {
        let at = when(&mut r);
        let t = &lk.referral_tpl;
        let mut fr = Rng::new(&[seed, K_REFERRAL, u64::from(i)]);
        let referrer = if r.chance(0.8) {
            json!(lk.user_id(Lookups::active_user(&mut r)))
        } else {
            Value::Null
        };
        out.referrals.push(json!({
            "id": uuid(seed, K_REFERRAL, u64::from(i), 0),
            "type": "referral",
            "text": t.text,
            "instructions": t.instructions,
            "baseTemplateId": t.id,
            "fields": t.answered(&mut fr, at),
            "referrer": referrer,
            "user": lk.user_id(Lookups::active_user(&mut r)),
            "stage": lk.stage_id(rec.stage as usize),
            "createdAt": at,
            "completedAt": at + 1000,
        }));
    }
    out
}

/// Generates a value of a requisition custom field of `field_type` for requisition `r`.
pub(crate) fn custom_value(field_type: &str, r: &mut Rng) -> Value {
    match field_type {
        "number" => json!(r.range(1, 100) as f64 + 0.5),
        "date" => json!(T0 + r.range(1, 300) * DAY),
        "dropdown" => json!(["Option A", "Option B", "Option C"][r.index(3)]),
        "object" => json!({"name": r.pick(CITIES), "code": format!("X{}", r.below(100))}),
        _ => json!(r.pick(SENTENCES)),
    }
}
