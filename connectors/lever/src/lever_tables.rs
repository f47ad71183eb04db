//! How each of the 46 Lever tables is read, declared once.
//!
//! The columns, types and keys of a table come from `destination_schema.json`; everything
//! the schema does not say is one [`TableDecl`] in [`TABLES`]: how the table is read (its
//! [`Read`], which becomes core's `SyncKind`), the requests its rows come from ([`Source`]:
//! the opportunity list, a per-opportunity [`Endpoint`], a re-imported [`List`]), its file
//! bucket, its sensitive columns, the columns its decoder fills itself, and its special
//! cases. The catalog, the reader (`sync`, `rescan`), the decoders and, through the catalog,
//! the config validation and the generated docs all take it from here.
//!
//! A table is named in code by its [`Table`] variant, so a misspelt table does not compile.
//! The tests below fail when the schema and the declarations disagree (a table missing on
//! either side, a name spelt differently) or when a declaration names a column its table
//! does not have.

use crate::decode::forms::{
    S_CODE_LANGUAGE, S_CURRENCY, S_DATE, S_DECIMAL, S_FILE, S_NUMBER, S_TEXT, S_VALUE_INDEX,
};
use crate::decode::opportunity::Endpoint;
use crate::decode::{SLOT_EXTRA, SLOT_INDEX, SLOT_PARENT};
use crate::lists::List;
use sluice_core::SyncKind;
use std::collections::HashMap;
use std::sync::OnceLock;

/// How a table is read (core's `SyncKind`, with a typed parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Read incrementally on `cursor` (the opportunity walk).
    Incremental {
        /// The cursor column.
        cursor: &'static str,
    },
    /// Re-imported in full, vanished rows deleted.
    Reimport,
    /// Re-read with its parent.
    Child {
        /// The parent table.
        parent: Table,
        /// The column holding the parent's key.
        parent_column: &'static str,
        /// What happens to rows of a re-read parent that are gone.
        vanished: Vanished,
    },
}

/// What happens to the rows of a child table that a re-read parent no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vanished {
    /// Kept: rows shared by many parents (template definitions) or keyed by the parent itself
    /// (the contact of an opportunity).
    Kept,
    /// Deleted where `parent_column` is one of the opportunities re-read.
    ByOpportunity,
    /// Deleted where `parent_column` is one of the contacts re-read.
    ByContact,
    /// Deleted through the parent table (`Scope::Via`): the rows whose parent row belongs to
    /// an opportunity re-read.
    ViaParent,
}

/// A request the rows of a table come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// A page of `/opportunities` (inline arrays and the expanded applications).
    OpportunityList,
    /// A per-opportunity child endpoint.
    Child(Endpoint),
    /// A re-imported list.
    List(List),
}

/// The declaration of one table: what the destination schema does not say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableDecl {
    /// The table's name in `destination_schema.json`.
    pub(crate) name: &'static str,
    /// How the table is read.
    pub(crate) read: Read,
    /// The requests its rows come from; empty for a table that is never requested.
    pub(crate) sources: &'static [Source],
    /// The column rows are bucketed by in files (core's default when `None`).
    pub(crate) bucket: Option<&'static str>,
    /// Columns holding personal data.
    pub(crate) sensitive: &'static [&'static str],
    /// Columns the decoder fills from its slots (parent ids, positions, computed values)
    /// instead of the schema's `api` path: column → slot.
    pub(crate) slots: &'static [(&'static str, usize)],
    /// Captures deletes although the schema does not say so.
    pub(crate) always_capture_deletes: bool,
    /// History mode on (not only offered).
    pub(crate) history: bool,
    /// Said in the docs after the schema's description.
    pub(crate) doc_note: Option<&'static str>,
}

impl TableDecl {
    const fn new(name: &'static str, read: Read, sources: &'static [Source]) -> TableDecl {
        TableDecl {
            name,
            read,
            sources,
            bucket: None,
            sensitive: &[],
            slots: &[],
            always_capture_deletes: false,
            history: false,
            doc_note: None,
        }
    }

    /// A list re-imported in full.
    const fn reimport(name: &'static str, list: &'static [Source]) -> TableDecl {
        TableDecl::new(name, Read::Reimport, list)
    }

    /// A child table bucketed by its parent column.
    const fn child(
        name: &'static str,
        parent: Table,
        parent_column: &'static str,
        vanished: Vanished,
        sources: &'static [Source],
    ) -> TableDecl {
        let read = Read::Child {
            parent,
            parent_column,
            vanished,
        };
        TableDecl::new(name, read, sources).bucket(parent_column)
    }

    const fn bucket(mut self, column: &'static str) -> TableDecl {
        self.bucket = Some(column);
        self
    }

    const fn no_bucket(mut self) -> TableDecl {
        self.bucket = None;
        self
    }

    const fn sensitive(mut self, columns: &'static [&'static str]) -> TableDecl {
        self.sensitive = columns;
        self
    }

    const fn slots(mut self, slots: &'static [(&'static str, usize)]) -> TableDecl {
        self.slots = slots;
        self
    }

    /// The child endpoint its rows come from, if any.
    pub(crate) fn endpoint(&self) -> Option<Endpoint> {
        self.sources.iter().find_map(|s| match s {
            Source::Child(e) => Some(*e),
            _ => None,
        })
    }

    /// Whether its rows come from `source`.
    pub(crate) fn reads(&self, source: Source) -> bool {
        self.sources.contains(&source)
    }

    /// Core's `SyncKind` of the table.
    pub(crate) fn sync_kind(&self) -> SyncKind {
        match self.read {
            Read::Incremental { cursor } => SyncKind::Incremental {
                cursor: cursor.to_owned(),
            },
            Read::Reimport => SyncKind::Reimport,
            Read::Child {
                parent,
                parent_column,
                ..
            } => SyncKind::Child {
                parent: parent.name().to_owned(),
                parent_column: parent_column.to_owned(),
            },
        }
    }
}

/// The slots of a form-field table (`parent` is its form id column).
const fn form_field_slots(parent: &'static str) -> [(&'static str, usize); 9] {
    [
        (parent, SLOT_PARENT),
        ("code_language", S_CODE_LANGUAGE),
        ("currency", S_CURRENCY),
        ("value_date", S_DATE),
        ("value_decimal", S_DECIMAL),
        ("value_file_id", S_FILE),
        ("value_number", S_NUMBER),
        ("value_text", S_TEXT),
        ("value_index", S_VALUE_INDEX),
    ]
}

/// Sources of the declarations below.
const INLINE: &[Source] = &[Source::OpportunityList];
const FEEDBACK: &[Source] = &[Source::Child(Endpoint::Feedback)];
const NOTES: &[Source] = &[Source::Child(Endpoint::Notes)];
const OFFERS: &[Source] = &[Source::Child(Endpoint::Offers)];
const INTERVIEWS: &[Source] = &[Source::Child(Endpoint::Interviews)];
const PANELS: &[Source] = &[Source::Child(Endpoint::Panels)];
const PROFILE_FORMS: &[Source] = &[Source::Child(Endpoint::Forms)];
const FILES: &[Source] = &[Source::Child(Endpoint::Files)];
const RESUMES: &[Source] = &[Source::Child(Endpoint::Resumes)];
const REFERRALS: &[Source] = &[Source::Child(Endpoint::Referrals)];
/// Template definitions come from every answered form.
const TEMPLATES: &[Source] = &[
    Source::OpportunityList,
    Source::Child(Endpoint::Feedback),
    Source::Child(Endpoint::Forms),
    Source::Child(Endpoint::Referrals),
];
const USERS: &[Source] = &[Source::List(List::Users)];
const STAGES: &[Source] = &[Source::List(List::Stages)];
const ARCHIVE_REASONS: &[Source] = &[Source::List(List::ArchiveReasons)];
const POSTINGS: &[Source] = &[Source::List(List::Postings)];
const REQUISITION_FIELDS: &[Source] = &[Source::List(List::RequisitionFields)];
const REQUISITIONS: &[Source] = &[Source::List(List::Requisitions)];
const PERSON: &[&str] = &["name", "headline", "location"];

/// Declares the [`Table`] ids and their declarations [`TABLES`] in one list, so the two
/// cannot disagree: `Table::X as usize` is the index of X's declaration.
macro_rules! declare_tables {
    ($($id:ident = $decl:expr;)+) => {
        /// A Lever table, by name in code (its declaration: [`Table::decl`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) enum Table {
            $(
                #[doc = concat!("`", stringify!($id), "`")]
                $id,
            )+
        }

        impl Table {
            /// Every table, in declaration order.
            pub(crate) const ALL: &'static [Table] = &[$(Table::$id,)+];
        }

        /// Every table's declaration, in [`Table`] order. The order groups the tables by the
        /// request they come from; it is the order of the derived table lists
        /// ([`tables_of`]), which error messages name.
        pub(crate) static TABLES: &[TableDecl] = &[$($decl,)+];
    };
}

use Table as T;
/// The parent of most child tables, and its key column in them.
const OPP: Table = Table::Opportunity;
const OPP_ID: &str = "opportunity_id";
use Vanished::{ByContact, ByOpportunity, Kept, ViaParent};

declare_tables! {
    Opportunity = TableDecl::new("opportunity", Read::Incremental { cursor: "updated_at" }, INLINE)
        .sensitive(PERSON)
        // The lead's deliberate deviation: opportunities deleted in Lever are soft-deleted.
        .always_capture_deletes();
    OpportunityStageHistory =
        TableDecl::child("opportunity_stage_history", OPP, OPP_ID, ByOpportunity, INLINE);
    OpportunityTag = TableDecl::child("opportunity_tag", OPP, OPP_ID, ByOpportunity, INLINE);
    OpportunitySource = TableDecl::child("opportunity_source", OPP, OPP_ID, ByOpportunity, INLINE);
    // The contact is the person behind an opportunity: its `id` is `opportunity.contact`.
    Contact = TableDecl::child("contact", OPP, "id", Kept, INLINE)
        .no_bucket()
        .sensitive(PERSON);
    ContactEmail = TableDecl::child("contact_email", T::Contact, "contact_id", ByContact, INLINE)
        .sensitive(&["email"]);
    ContactPhone = TableDecl::child("contact_phone", T::Contact, "contact_id", ByContact, INLINE)
        .sensitive(&["value"]);
    ContactLink = TableDecl::child("contact_link", T::Contact, "contact_id", ByContact, INLINE)
        .sensitive(&["link"])
        .slots(&[("_fivetran_id", SLOT_EXTRA)]);
    Application = TableDecl::child("application", OPP, OPP_ID, ByOpportunity, INLINE)
        .slots(&[("opportunity_id", SLOT_PARENT)]);
    PostingForm = TableDecl::child("posting_form", OPP, OPP_ID, ByOpportunity, INLINE)
        .slots(&[("application_id", SLOT_EXTRA)]);
    PostingFormField =
        TableDecl::child("posting_form_field", T::PostingForm, "posting_form_id", ViaParent, INLINE)
            .slots(&form_field_slots("posting_form_id"));
    Note = TableDecl::child("note", OPP, OPP_ID, ByOpportunity, NOTES);
    NoteField = TableDecl::child("note_field", T::Note, "note_id", ViaParent, NOTES);
    FeedbackForm = TableDecl::child("feedback_form", OPP, OPP_ID, ByOpportunity, FEEDBACK)
        .slots(&[("score_system_value", SLOT_EXTRA)]);
    FeedbackFormField = TableDecl::child(
        "feedback_form_field", T::FeedbackForm, "feedback_form_id", ViaParent, FEEDBACK,
    )
    .slots(&form_field_slots("feedback_form_id"));
    Offer = TableDecl::child("offer", OPP, OPP_ID, ByOpportunity, OFFERS);
    OfferField = TableDecl::child("offer_field", T::Offer, "offer_id", ViaParent, OFFERS);
    Interview = TableDecl::child("interview", OPP, OPP_ID, ByOpportunity, INTERVIEWS);
    InterviewFeedback =
        TableDecl::child("interview_feedback", T::Interview, "interview_id", ViaParent, INTERVIEWS);
    InterviewUser =
        TableDecl::child("interview_user", T::Interview, "interview_id", ViaParent, INTERVIEWS);
    PostingInterview =
        TableDecl::child("posting_interview", T::Interview, "interview_id", ViaParent, INTERVIEWS);
    Panel = TableDecl::child("panel", OPP, OPP_ID, ByOpportunity, PANELS);
    PanelApplication =
        TableDecl::child("panel_application", T::Panel, "panel_id", ViaParent, PANELS);
    PanelInterview = TableDecl::child("panel_interview", T::Panel, "panel_id", ViaParent, PANELS);
    ProfileForm = TableDecl::child("profile_form", OPP, OPP_ID, ByOpportunity, PROFILE_FORMS);
    ProfileFormField = TableDecl::child(
        "profile_form_field", T::ProfileForm, "profile_form_id", ViaParent, PROFILE_FORMS,
    )
    .slots(&form_field_slots("profile_form_id"));
    File = TableDecl::child("file", OPP, OPP_ID, ByOpportunity, FILES);
    Resume = TableDecl::child("resume", OPP, OPP_ID, ByOpportunity, RESUMES);
    OpportunityPosition =
        TableDecl::child("opportunity_position", T::Resume, "resume_id", ViaParent, RESUMES);
    OpportunitySchool =
        TableDecl::child("opportunity_school", T::Resume, "resume_id", ViaParent, RESUMES);
    ReferralForm = TableDecl::child("referral_form", OPP, OPP_ID, ByOpportunity, REFERRALS);
    ReferralFormField = TableDecl::child(
        "referral_form_field", T::ReferralForm, "referral_form_id", ViaParent, REFERRALS,
    )
    .slots(&form_field_slots("referral_form_id"));
    // Template definitions are keyed by template id (`baseTemplateId` of the forms): shared
    // by many opportunities, upserted from every re-read form, never deleted by scope.
    TemplateField = TableDecl::child("template_field", T::FeedbackForm, "id", Kept, TEMPLATES)
        .no_bucket()
        .slots(&[("id", SLOT_PARENT)]);
    ScoreCardSubField =
        TableDecl::child("score_card_sub_field", T::FeedbackForm, "id", Kept, TEMPLATES)
            .no_bucket()
            .slots(&[
                ("id", SLOT_PARENT),
                ("field_index", SLOT_EXTRA),
                ("sub_field_index", SLOT_INDEX),
            ]);
    Users = TableDecl::reimport("users", USERS).sensitive(&["email", "name"]);
    Stage = TableDecl::reimport("stage", STAGES);
    ArchiveReason = TableDecl::reimport("archive_reason", ARCHIVE_REASONS);
    Posting = TableDecl::reimport("posting", POSTINGS);
    PostingTag = TableDecl::reimport("posting_tag", POSTINGS).bucket("posting_id");
    PostingContentList = TableDecl::reimport("posting_content_list", POSTINGS).bucket("posting_id");
    PostingDistributionChannel =
        TableDecl::reimport("posting_distribution_channel", POSTINGS).bucket("posting_id");
    RequisitionFields = TableDecl::reimport("requisition_fields", REQUISITION_FIELDS);
    Requisition = TableDecl::reimport("requisition", REQUISITIONS)
        .slots(&[("headcount_infinite", SLOT_EXTRA)]);
    RequisitionPosting =
        TableDecl::reimport("requisition_posting", REQUISITIONS).bucket("requisition_id");
    RequisitionOffer =
        TableDecl::reimport("requisition_offer", REQUISITIONS).bucket("requisition_id");
    // The deprecated /candidates endpoint: declared, never requested.
    CandidateStageHistory = TableDecl::reimport("candidate_stage_history", &[])
        .bucket("candidate_id")
        .history_on()
        .doc_note(
            "Declared for completeness; the deprecated /candidates endpoint is never \
             requested, so this table stays empty.",
        );
}

/// The destination schema has 46 tables (the tests compare them with the declarations).
const _: () = assert!(Table::ALL.len() == 46);

impl TableDecl {
    const fn always_capture_deletes(mut self) -> TableDecl {
        self.always_capture_deletes = true;
        self
    }

    const fn history_on(mut self) -> TableDecl {
        self.history = true;
        self
    }

    const fn doc_note(mut self, note: &'static str) -> TableDecl {
        self.doc_note = Some(note);
        self
    }
}

impl Table {
    /// The table's declaration.
    pub(crate) fn decl(self) -> &'static TableDecl {
        &TABLES[self as usize]
    }

    /// The table's name.
    pub(crate) fn name(self) -> &'static str {
        self.decl().name
    }

    /// The table named `name`, if declared.
    pub(crate) fn named(name: &str) -> Option<Table> {
        static BY_NAME: OnceLock<HashMap<&'static str, Table>> = OnceLock::new();
        BY_NAME
            .get_or_init(|| Table::ALL.iter().map(|t| (t.name(), *t)).collect())
            .get(name)
            .copied()
    }

    /// The children of opportunities that capture deletes: soft-deleted with their
    /// opportunity, and deleted by a re-sync that did not see them.
    pub(crate) fn soft_children() -> &'static [&'static str] {
        static SOFT: OnceLock<Vec<&'static str>> = OnceLock::new();
        SOFT.get_or_init(|| {
            let schema = crate::catalog::schema_file();
            TABLES
                .iter()
                .filter(|d| {
                    matches!(
                        d.read,
                        Read::Child {
                            parent: Table::Opportunity,
                            ..
                        }
                    ) && schema
                        .tables
                        .iter()
                        .any(|t| t.name == d.name && t.capture_deletes)
                })
                .map(|d| d.name)
                .collect()
        })
    }
}

/// The names of the tables whose rows come from `source`, in declaration order.
pub(crate) fn tables_of(source: Source) -> &'static [&'static str] {
    static BY_SOURCE: OnceLock<HashMap<Source, Vec<&'static str>>> = OnceLock::new();
    BY_SOURCE
        .get_or_init(|| {
            let mut m: HashMap<Source, Vec<&'static str>> = HashMap::new();
            for d in TABLES {
                for s in d.sources {
                    m.entry(*s).or_default().push(d.name);
                }
            }
            m
        })
        .get(&source)
        .map_or(&[], Vec::as_slice)
}

/// Tables filled from the `/opportunities` list itself.
pub(crate) fn inline_tables() -> &'static [&'static str] {
    tables_of(Source::OpportunityList)
}

/// Tables whose data comes from the opportunity walk (the list and the child endpoints),
/// sorted by name.
pub(crate) fn walk_tables() -> &'static [&'static str] {
    static WALK: OnceLock<Vec<&'static str>> = OnceLock::new();
    WALK.get_or_init(|| {
        let mut v: Vec<&'static str> = TABLES
            .iter()
            .filter(|d| {
                d.sources
                    .iter()
                    .any(|s| matches!(s, Source::OpportunityList | Source::Child(_)))
            })
            .map(|d| d.name)
            .collect();
        v.sort_unstable();
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{SchemaTable, schema_file};
    use std::collections::BTreeSet;

    fn schema_table(name: &str) -> &'static SchemaTable {
        schema_file()
            .tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("`{name}` is declared but not in destination_schema.json"))
    }

    fn has_column(table: &str, column: &str) -> bool {
        schema_table(table)
            .columns
            .iter()
            .any(|c| c.written() && c.name == column)
    }

    #[test]
    fn every_schema_table_is_declared_exactly_once_and_nothing_else() {
        let declared: Vec<&str> = TABLES.iter().map(|d| d.name).collect();
        let unique: BTreeSet<&str> = declared.iter().copied().collect();
        assert_eq!(unique.len(), declared.len(), "a table is declared twice");
        let schema: BTreeSet<&str> = schema_file()
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        let missing: Vec<_> = schema.difference(&unique).collect();
        let unknown: Vec<_> = unique.difference(&schema).collect();
        assert!(
            missing.is_empty(),
            "schema tables without a declaration: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "declarations of tables not in the schema: {unknown:?}"
        );
        assert_eq!(TABLES.len(), 46);
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(Table::named(t.name()), Some(*t));
        }
    }

    #[test]
    fn declarations_name_only_columns_their_tables_have() {
        for d in TABLES {
            let mut columns: Vec<&str> = d.sensitive.to_vec();
            columns.extend(d.slots.iter().map(|(c, _)| *c));
            columns.extend(d.bucket);
            match d.read {
                Read::Incremental { cursor } => columns.push(cursor),
                Read::Child {
                    parent,
                    parent_column,
                    vanished,
                } => {
                    columns.push(parent_column);
                    if vanished == ViaParent {
                        assert!(has_column(parent.name(), "id"), "{}: parent id", d.name);
                    }
                }
                Read::Reimport => {}
            }
            for c in columns {
                assert!(has_column(d.name, c), "{}.{c} is not a column", d.name);
            }
        }
    }

    #[test]
    fn reads_agree_with_sources_and_parents() {
        for d in TABLES {
            match d.read {
                Read::Incremental { .. } => assert_eq!(d.sources, INLINE, "{}", d.name),
                Read::Reimport => assert!(
                    d.sources.iter().all(|s| matches!(s, Source::List(_))),
                    "{}",
                    d.name
                ),
                Read::Child {
                    parent,
                    parent_column,
                    vanished,
                } => {
                    assert!(!d.sources.is_empty(), "{}", d.name);
                    assert!(
                        d.sources.iter().all(|s| !matches!(s, Source::List(_))),
                        "{}",
                        d.name
                    );
                    // The reader scopes deletes by `opportunity_id`, directly or through
                    // the parent, and by `contact_id`.
                    match vanished {
                        Kept => {}
                        ByOpportunity => {
                            assert_eq!(parent, T::Opportunity, "{}", d.name);
                            assert_eq!(parent_column, "opportunity_id", "{}", d.name);
                        }
                        ByContact => {
                            assert_eq!(parent, T::Contact, "{}", d.name);
                            assert_eq!(parent_column, "contact_id", "{}", d.name);
                        }
                        ViaParent => {
                            assert!(
                                matches!(
                                    parent.decl().read,
                                    Read::Child {
                                        vanished: ByOpportunity,
                                        ..
                                    }
                                ),
                                "{}: the parent is deleted by opportunity",
                                d.name
                            );
                            assert_eq!(parent.decl().sources, d.sources, "{}", d.name);
                        }
                    }
                }
            }
        }
        assert_eq!(T::Opportunity.name(), crate::catalog::OPPORTUNITY);
        let never: Vec<_> = TABLES.iter().filter(|d| d.sources.is_empty()).collect();
        assert_eq!(never.len(), 1);
        assert!(never[0].doc_note.is_some());
    }

    #[test]
    fn every_request_feeds_a_table() {
        for e in Endpoint::ALL {
            assert!(!tables_of(Source::Child(e)).is_empty(), "{e:?}");
        }
        for l in List::ALL {
            assert!(!tables_of(Source::List(l)).is_empty(), "{l:?}");
        }
        assert!(!inline_tables().is_empty());
        assert_eq!(
            Table::soft_children(),
            ["note", "feedback_form", "profile_form"]
        );
    }
}
