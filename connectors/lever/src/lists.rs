//! The lists re-imported in full: users, stages, archive reasons, postings, requisition
//! fields and requisitions. Which tables each feeds is declared in `lever_tables`.

use crate::decode::Tables;
use crate::decode::lookups::{write_flat, write_posting, write_requisition};
use crate::json::Value;
use crate::lever_tables::{Source, Table, tables_of};

/// A Lever list endpoint read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum List {
    /// `/users?includeDeactivated=true`
    Users,
    /// `/stages`
    Stages,
    /// `/archive_reasons`
    ArchiveReasons,
    /// `/postings`
    Postings,
    /// `/requisition_fields`
    RequisitionFields,
    /// `/requisitions`
    Requisitions,
}

/// How a list is requested and decoded.
pub(crate) struct ListSpec {
    /// The metrics label.
    pub(crate) label: &'static str,
    /// The request path.
    pub(crate) path: &'static str,
    /// Whether the request takes the `confidentiality` parameter.
    pub(crate) confidential_param: bool,
    /// Further query parameters.
    pub(crate) extra_query: &'static [(&'static str, &'static str)],
    /// Read on every sync rather than once per re-import interval.
    pub(crate) every_sync: bool,
    /// Writes one item of the list into its tables.
    pub(crate) decode: fn(&mut Tables, Value<'_>),
}

impl List {
    /// Every list, in the order a sync re-imports them.
    pub(crate) const ALL: [List; 6] = [
        List::Users,
        List::Stages,
        List::ArchiveReasons,
        List::Postings,
        List::RequisitionFields,
        List::Requisitions,
    ];

    /// How the list is requested and decoded.
    pub(crate) fn spec(self) -> &'static ListSpec {
        match self {
            List::Users => &ListSpec {
                label: "users",
                path: "/users",
                confidential_param: false,
                extra_query: &[("includeDeactivated", "true")],
                every_sync: false,
                decode: |t, v| write_flat(t, Table::Users, v),
            },
            List::Stages => &ListSpec {
                label: "stages",
                path: "/stages",
                confidential_param: false,
                extra_query: &[],
                every_sync: false,
                decode: |t, v| write_flat(t, Table::Stage, v),
            },
            List::ArchiveReasons => &ListSpec {
                label: "archive_reasons",
                path: "/archive_reasons",
                confidential_param: false,
                extra_query: &[],
                every_sync: false,
                decode: |t, v| write_flat(t, Table::ArchiveReason, v),
            },
            List::Postings => &ListSpec {
                label: "postings",
                path: "/postings",
                confidential_param: true,
                extra_query: &[],
                every_sync: false,
                decode: write_posting,
            },
            // The requisition lists are small and Lever has no updated-at filter for them.
            List::RequisitionFields => &ListSpec {
                label: "requisition_fields",
                path: "/requisition_fields",
                confidential_param: false,
                extra_query: &[],
                every_sync: true,
                decode: |t, v| write_flat(t, Table::RequisitionFields, v),
            },
            List::Requisitions => &ListSpec {
                label: "requisitions",
                path: "/requisitions",
                confidential_param: true,
                extra_query: &[],
                every_sync: true,
                decode: write_requisition,
            },
        }
    }

    /// The tables the list feeds.
    pub(crate) fn tables(self) -> &'static [&'static str] {
        tables_of(Source::List(self))
    }
}
