//! What flows from a source through the engine to a sink: Arrow batches and key sets, never
//! row-by-row JSON.

use crate::spec::TableSpec;
use crate::state::State;
use arrow::record_batch::RecordBatch;

/// Which rows of a table a [`Change::DeleteMissing`] covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Every row of the table (a full re-import).
    All,
    /// Rows whose `column` holds one of `values` (the children of re-read parents).
    Where {
        /// A string column of the table.
        column: String,
        /// The parent keys re-read in this sync.
        values: Vec<String>,
    },
    /// Rows whose `column` holds the `parent_column` value of a row of `parent_table` that is
    /// itself in `parent_scope` (grand-children: e.g. the fields of the feedback forms of
    /// re-read opportunities, including forms that vanished). Sinks resolve it against the
    /// parent table as it stands before this change is applied.
    Via {
        /// The column of this table that references the parent.
        column: String,
        /// The parent table.
        parent_table: String,
        /// The referenced column of the parent table.
        parent_column: String,
        /// Which parent rows.
        parent_scope: Box<Scope>,
    },
}

/// A change to one table.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace rows (by primary key). The batch has the table's source schema
    /// (after transforms: blocked columns dropped, hashed columns as strings) and, once past
    /// the engine, a `_fivetran_synced` column.
    Upsert {
        /// Table name.
        table: String,
        /// The rows.
        batch: RecordBatch,
    },
    /// Delete these keys (soft delete where the table captures deletes, else hard; in history
    /// mode the active version is closed). `keys` holds the primary-key columns only.
    Delete {
        /// Table name.
        table: String,
        /// Primary-key columns of the rows to delete.
        keys: RecordBatch,
    },
    /// Delete every row in `scope` whose key is not in `keep` (rows gone from a re-read list).
    DeleteMissing {
        /// Table name.
        table: String,
        /// Which rows are covered.
        scope: Scope,
        /// Primary-key columns of the rows that still exist.
        keep: RecordBatch,
    },
}

impl Change {
    /// The table this change applies to.
    pub fn table(&self) -> &str {
        match self {
            Change::Upsert { table, .. }
            | Change::Delete { table, .. }
            | Change::DeleteMissing { table, .. } => table,
        }
    }
    /// Number of rows carried (upserted rows or keys).
    pub fn rows(&self) -> usize {
        match self {
            Change::Upsert { batch, .. } => batch.num_rows(),
            Change::Delete { keys, .. } => keys.num_rows(),
            Change::DeleteMissing { keep, .. } => keep.num_rows(),
        }
    }
}

/// What a source sends to the engine.
#[derive(Debug, Clone)]
pub enum SourceMessage {
    /// A table's declaration changed during the sync (for example a custom field added a
    /// column). Sent before the first batch that uses the new declaration.
    Schema(TableSpec),
    /// A change to a table.
    Change(Change),
    /// Everything sent before this point may be committed together with this state.
    Checkpoint(State),
    /// A checkpoint committed at once, whatever the commit interval: the source needs what
    /// it sent so far to be durable before it goes on (a priority-first window's end).
    CheckpointNow(State),
}

/// What the engine sends to a sink: a change stamped with the sync time.
#[derive(Debug, Clone)]
pub struct SinkChange {
    /// The change (upserts carry `_fivetran_synced`).
    pub change: Change,
    /// Sync time in microseconds since the epoch (used for soft deletes and history).
    pub synced_at_us: i64,
}
