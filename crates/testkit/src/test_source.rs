//! A deterministic in-memory source with a parent (incremental), a child and a re-imported
//! lookup table, for engine tests and for sink conformance.

use serde::Deserialize;
use sluice_core::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use sluice_core::{
    ColumnSpec, ColumnType, Cursor, Emitter, Error, ReadContext, Result, Scope, Source, SyncKind,
    TableSpec, async_trait,
};
use std::sync::Arc;

/// Settings of a [`TestSource`] run (JSON, like a real `[source]` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSourceConfig {
    /// Number of parent rows.
    #[serde(default = "ten")]
    pub parents: usize,
    /// Children per parent.
    #[serde(default = "two")]
    pub children_per_parent: usize,
    /// Data version: parents are "updated" at `version`; a sync whose cursor is at least the
    /// version emits no parents.
    #[serde(default = "one")]
    pub version: i64,
    /// Labels of the lookup table (ids are the labels).
    #[serde(default)]
    pub lookup: Vec<String>,
    /// Parents per checkpoint.
    #[serde(default = "ten")]
    pub checkpoint_every: usize,
    /// Fail with an upstream error after this many messages.
    #[serde(default)]
    pub fail_after_messages: Option<usize>,
}

fn ten() -> usize {
    10
}
fn two() -> usize {
    2
}
fn one() -> i64 {
    1
}

/// The deterministic test source. Its name in state is whatever the test passes to the
/// engine (`MemoryDestination::source_name`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TestSource;

impl TestSource {
    /// The three tables: `parent`, `child`, `lookup`.
    pub fn tables() -> Vec<TableSpec> {
        let parent = TableSpec::new(
            "parent",
            SyncKind::Incremental {
                cursor: "updated_at".into(),
            },
        )
        .column(ColumnSpec::new("id", ColumnType::String))
        .column(ColumnSpec::new("name", ColumnType::String).sensitive())
        .column(ColumnSpec::new("score", ColumnType::Int64))
        .column(ColumnSpec::new("updated_at", ColumnType::Timestamp))
        .key(["id"]);
        let mut child = TableSpec::new(
            "child",
            SyncKind::Child {
                parent: "parent".into(),
                parent_column: "parent_id".into(),
            },
        )
        .column(ColumnSpec::new("id", ColumnType::String))
        .column(ColumnSpec::new("parent_id", ColumnType::String))
        .column(ColumnSpec::new("value", ColumnType::Float64))
        .key(["id"]);
        child.bucket_column = Some("parent_id".into());
        let mut lookup = TableSpec::new("lookup", SyncKind::Reimport)
            .column(ColumnSpec::new("id", ColumnType::String))
            .column(ColumnSpec::new("label", ColumnType::String))
            .key(["id"]);
        lookup.capture_deletes = true;
        vec![parent, child, lookup]
    }
}

struct Counter {
    sent: usize,
    limit: Option<usize>,
}

impl Counter {
    fn tick(&mut self) -> Result<()> {
        if self.limit.is_some_and(|l| self.sent >= l) {
            return Err(Error::upstream("injected test-source failure"));
        }
        self.sent += 1;
        Ok(())
    }
}

fn strings<'a>(v: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

#[async_trait]
impl Source for TestSource {
    type Config = TestSourceConfig;

    fn catalog(&self) -> Vec<TableSpec> {
        Self::tables()
    }

    async fn check(
        &self,
        _config: &Self::Config,
        _ctx: sluice_core::CheckContext,
    ) -> Result<String> {
        Ok("test source: always reachable".into())
    }

    async fn read(&self, config: &Self::Config, ctx: ReadContext, out: Emitter) -> Result<()> {
        let mut state = ctx.state.clone();
        let mut counter = Counter {
            sent: 0,
            limit: config.fail_after_messages,
        };
        let cursor = match state.table("parent").cursor {
            Some(Cursor::Int(v)) if !ctx.resync_requested("parent") => v,
            _ => i64::MIN,
        };
        if cursor < config.version && ctx.is_enabled("parent") {
            let ids: Vec<String> = (0..config.parents).map(|i| format!("p{i:04}")).collect();
            for chunk in ids.chunks(config.checkpoint_every.max(1)) {
                if ctx.cancel.is_cancelled() {
                    return Err(Error::cancelled());
                }
                let names: Vec<String> = chunk
                    .iter()
                    .map(|id| format!("parent {id} v{}", config.version))
                    .collect();
                let batch = RecordBatch::try_new(
                    ctx.tables["parent"].source_schema(),
                    vec![
                        strings(chunk.iter().map(String::as_str)),
                        strings(names.iter().map(String::as_str)),
                        Arc::new(Int64Array::from_iter_values(
                            chunk.iter().map(|_| config.version),
                        )),
                        Arc::new(
                            TimestampMicrosecondArray::from_iter_values(
                                chunk.iter().map(|_| config.version * 1000),
                            )
                            .with_timezone("UTC"),
                        ),
                    ],
                )?;
                counter.tick()?;
                out.upsert("parent", batch).await?;
                if ctx.is_enabled("child") {
                    let mut cids = Vec::new();
                    let mut pids = Vec::new();
                    let mut values = Vec::new();
                    for id in chunk {
                        for j in 0..config.children_per_parent {
                            cids.push(format!("{id}-c{j}"));
                            pids.push(id.clone());
                            values.push(config.version as f64 + j as f64 / 10.0);
                        }
                    }
                    let batch = RecordBatch::try_new(
                        ctx.tables["child"].source_schema(),
                        vec![
                            strings(cids.iter().map(String::as_str)),
                            strings(pids.iter().map(String::as_str)),
                            Arc::new(Float64Array::from(values)),
                        ],
                    )?;
                    counter.tick()?;
                    out.upsert("child", batch).await?;
                    let keep = RecordBatch::try_from_iter(vec![(
                        "id",
                        strings(cids.iter().map(String::as_str)),
                    )])?;
                    counter.tick()?;
                    out.delete_missing(
                        "child",
                        Scope::Where {
                            column: "parent_id".into(),
                            values: chunk.to_vec(),
                        },
                        keep,
                    )
                    .await?;
                }
                counter.tick()?;
                out.checkpoint(state.clone()).await?;
            }
            let t = state.table_mut("parent");
            t.cursor = Some(Cursor::Int(config.version));
            t.resync_requested = false;
        }
        if ctx.is_enabled("lookup") {
            let batch = RecordBatch::try_new(
                ctx.tables["lookup"].source_schema(),
                vec![
                    strings(config.lookup.iter().map(String::as_str)),
                    strings(config.lookup.iter().map(String::as_str)),
                ],
            )?;
            counter.tick()?;
            out.upsert("lookup", batch).await?;
            let keep = RecordBatch::try_from_iter(vec![(
                "id",
                strings(config.lookup.iter().map(String::as_str)),
            )])?;
            counter.tick()?;
            out.delete_missing("lookup", Scope::All, keep).await?;
            let t = state.table_mut("lookup");
            t.last_reimport_ms = Some(ctx.started_at_ms);
            t.resync_requested = false;
        }
        counter.tick()?;
        out.checkpoint(state).await
    }
}
