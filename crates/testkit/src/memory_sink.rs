//! An in-memory destination with the shared merge semantics and failure injection at every
//! step of the commit protocol.

use crate::memory_secrets::MemorySecrets;
use crate::rows::{Row, batch_rows};
use sluice_core::arrow::record_batch::RecordBatch;
use sluice_core::sink_support::{align, merge, select_values};
use sluice_core::{
    CommitReport, Error, Result, Scope, Sink, SinkChange, State, TableSpec, async_trait,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where an injected failure strikes (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// `open` fails.
    Open,
    /// The `n`-th `write` (0-based) of a session fails.
    Write(usize),
    /// `commit` fails before any data becomes durable.
    BeforeData,
    /// `commit` fails after the data is durable, before the state is written.
    BeforeState,
}

#[derive(Default)]
struct Store {
    tables: BTreeMap<String, (TableSpec, RecordBatch)>,
    state: Option<State>,
    leased: bool,
    commits: u64,
    fail: Option<FailPoint>,
}

/// An in-memory destination shared by successive sink sessions (runs).
#[derive(Clone, Default)]
pub struct MemoryDestination {
    store: Arc<Mutex<Store>>,
    source: Arc<str>,
    secrets: MemorySecrets,
}

impl MemoryDestination {
    /// An empty destination for data of source `source`.
    pub fn new(source: &str) -> Self {
        MemoryDestination {
            store: Arc::default(),
            source: source.into(),
            secrets: MemorySecrets::default(),
        }
    }
    /// The source this destination is for.
    pub fn source_name(&self) -> &str {
        &self.source
    }
    /// A new sink session (one run).
    pub fn sink(&self) -> MemorySink {
        MemorySink {
            dest: self.clone(),
            specs: BTreeMap::new(),
            pending: Vec::new(),
            writes: 0,
            open: false,
        }
    }
    /// The destination's secret store (what its sinks hand to sources).
    pub fn secrets(&self) -> &MemorySecrets {
        &self.secrets
    }
    /// Arms a one-shot failure.
    pub fn fail_at(&self, point: FailPoint) {
        self.lock().fail = Some(point);
    }
    /// The committed state.
    pub fn state(&self) -> Option<State> {
        self.lock().state.clone()
    }
    /// Replaces the committed state, as another build could have written it.
    pub fn replace_state(&self, state: State) {
        self.lock().state = Some(state);
    }
    /// Number of successful commits.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }
    /// Names of the tables holding data.
    pub fn table_names(&self) -> Vec<String> {
        self.lock().tables.keys().cloned().collect()
    }
    /// The committed rows of `table` (empty when absent).
    pub fn committed_rows(&self, table: &str) -> Vec<Row> {
        self.lock()
            .tables
            .get(table)
            .map(|(_, b)| batch_rows(b))
            .unwrap_or_default()
    }
    /// The committed batch of `table`.
    pub fn committed_batch(&self, table: &str) -> Option<RecordBatch> {
        self.lock().tables.get(table).map(|(_, b)| b.clone())
    }
    /// A snapshot of every committed table, for before/after comparisons.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<Row>> {
        self.lock()
            .tables
            .iter()
            .map(|(t, (_, b))| (t.clone(), batch_rows(b)))
            .collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("memory destination lock")
    }
    fn take_fail(&self, point: FailPoint) -> Result<()> {
        let mut s = self.lock();
        if s.fail == Some(point) {
            s.fail = None;
            return Err(Error::destination(format!("injected failure at {point:?}")));
        }
        Ok(())
    }
}

/// One run's session on a [`MemoryDestination`].
pub struct MemorySink {
    dest: MemoryDestination,
    specs: BTreeMap<String, TableSpec>,
    pending: Vec<SinkChange>,
    writes: usize,
    open: bool,
}

impl MemorySink {
    fn release(&mut self) {
        if self.open {
            self.dest.lock().leased = false;
            self.open = false;
        }
    }

    fn resolve(
        &self,
        table: &str,
        scope: &Scope,
        stored: &BTreeMap<String, (TableSpec, RecordBatch)>,
    ) -> Result<Scope> {
        Ok(match scope {
            Scope::Via {
                column,
                parent_table,
                parent_column,
                parent_scope,
            } => {
                let parent_scope = self.resolve(parent_table, parent_scope, stored)?;
                let values = match stored.get(parent_table) {
                    Some((_, b)) => {
                        select_values(std::slice::from_ref(b), &parent_scope, parent_column)?
                    }
                    None => Vec::new(),
                };
                let _ = table;
                Scope::Where {
                    column: column.clone(),
                    values,
                }
            }
            other => other.clone(),
        })
    }
}

impl Drop for MemorySink {
    fn drop(&mut self) {
        self.release();
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn secret_store(&self) -> Option<Arc<dyn sluice_core::SecretStore>> {
        Some(Arc::new(self.dest.secrets.clone()))
    }

    async fn read_state(&self) -> Result<Option<State>> {
        Ok(self.dest.state())
    }

    async fn open(&mut self, tables: &[TableSpec]) -> Result<Option<State>> {
        self.dest.take_fail(FailPoint::Open)?;
        let mut store = self.dest.lock();
        if store.leased {
            return Err(Error::destination(
                "destination memory:// is in use by another sluice run",
            ));
        }
        for spec in tables {
            if let Some((_, batch)) = store.tables.get(&spec.name) {
                // Stored columns the catalog does not declare (run-time columns such as custom
                // fields) are fine here: the source re-announces them with a schema message.
                // Declared columns must keep their type.
                let schema = spec.arrow_schema();
                for field in schema.fields() {
                    if let Some(c) = batch.column_by_name(field.name())
                        && c.data_type() != field.data_type()
                    {
                        return Err(Error::destination(format!(
                            "table `{}` column `{}`: stored type {} is incompatible with declared type {}",
                            spec.name,
                            field.name(),
                            c.data_type(),
                            field.data_type()
                        )));
                    }
                }
            }
        }
        store.leased = true;
        self.open = true;
        self.specs = tables.iter().map(|t| (t.name.clone(), t.clone())).collect();
        Ok(store.state.clone())
    }

    async fn update_table(&mut self, spec: &TableSpec) -> Result<()> {
        if let Some((_, batch)) = self.dest.lock().tables.get(&spec.name) {
            align(batch, &spec.arrow_schema(), &spec.name)?;
        }
        self.specs.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn write(&mut self, change: SinkChange) -> Result<()> {
        let n = self.writes;
        self.writes += 1;
        self.dest.take_fail(FailPoint::Write(n))?;
        if !self.specs.contains_key(change.change.table()) {
            return Err(Error::internal(format!(
                "write to undeclared table `{}`",
                change.change.table()
            )));
        }
        self.pending.push(change);
        Ok(())
    }

    async fn commit(&mut self, state: &State) -> Result<CommitReport> {
        self.dest.take_fail(FailPoint::BeforeData)?;
        let stored = self.dest.lock().tables.clone();
        let mut by_table: BTreeMap<String, Vec<SinkChange>> = BTreeMap::new();
        for c in std::mem::take(&mut self.pending) {
            let mut c = c;
            if let sluice_core::Change::DeleteMissing { table, scope, .. } = &mut c.change {
                *scope = self.resolve(table, scope, &stored)?;
            }
            by_table
                .entry(c.change.table().to_owned())
                .or_default()
                .push(c);
        }
        let mut report = CommitReport::default();
        let mut staged = stored.clone();
        for (table, changes) in by_table {
            let spec = &self.specs[&table];
            let existing: Vec<RecordBatch> = stored
                .get(&table)
                .map(|(_, b)| vec![b.clone()])
                .unwrap_or_default();
            let (batch, stats) = merge(spec, &existing, &changes)?;
            report.tables.insert(table.clone(), stats);
            staged.insert(table, (spec.clone(), batch));
        }
        // Data becomes durable first …
        self.dest.lock().tables = staged;
        self.dest.take_fail(FailPoint::BeforeState)?;
        // … then the state that covers it.
        let mut store = self.dest.lock();
        store.state = Some(state.clone());
        store.commits += 1;
        Ok(report)
    }

    async fn abort(&mut self) -> Result<()> {
        self.pending.clear();
        self.release();
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(Error::internal("close with uncommitted changes"));
        }
        self.release();
        Ok(())
    }

    async fn scan(&self, table: &TableSpec) -> Result<Vec<RecordBatch>> {
        match self.dest.lock().tables.get(&table.name) {
            Some((_, b)) => Ok(vec![align(b, &table.arrow_schema(), &table.name)?]),
            None => Ok(Vec::new()),
        }
    }
}
