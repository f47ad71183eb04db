//! Scenario 5, time to fresh data: a first sync of a rate-limited account whose `updatedAt`
//! values spread realistically over the last year (the emulator's `spread_recent_activity`),
//! with and without priority-first. Measured: the time until every opportunity updated in
//! the last 7 days is committed, as a share of the whole sync's time, and the requests.
//!
//! A sink wrapper watches the commits: an opportunity counts as committed when a commit
//! carries its `opportunity` row. The Lever source emits a page's child rows before the
//! page's checkpoint, so a committed opportunity's children are committed with it.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use sluice_core::arrow::array::AsArray;
use sluice_core::{Change, CommitReport, Sink, SinkChange, State, TableSpec, async_trait};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WEEK_MS: i64 = 7 * 86_400_000;

/// What one first sync showed.
#[derive(Debug, Serialize)]
pub(crate) struct Freshness {
    /// Whether the walk was priority-first.
    pub(crate) priority_first: bool,
    /// Opportunities updated in the 7 days before the sync.
    pub(crate) recent: usize,
    /// Seconds until the last of them was committed.
    pub(crate) fresh_s: f64,
    /// Seconds of the whole sync.
    pub(crate) wall_s: f64,
    /// `fresh_s / wall_s`.
    pub(crate) share: f64,
    /// Requests of the whole sync.
    pub(crate) requests: u64,
}

/// The opportunities committed so far, and when the recent ones all were.
struct Watch {
    recent: HashSet<String>,
    staged: Vec<String>,
    committed: HashSet<String>,
    started: Instant,
    fresh_at: Option<Duration>,
}

/// A sink that records, at each commit, which opportunities it made durable.
struct Watching {
    inner: Box<dyn Sink>,
    watch: Arc<Mutex<Watch>>,
}

#[async_trait]
impl Sink for Watching {
    async fn read_state(&self) -> sluice_core::Result<Option<State>> {
        self.inner.read_state().await
    }
    async fn open(&mut self, tables: &[TableSpec]) -> sluice_core::Result<Option<State>> {
        self.inner.open(tables).await
    }
    async fn update_table(&mut self, spec: &TableSpec) -> sluice_core::Result<()> {
        self.inner.update_table(spec).await
    }
    async fn write(&mut self, change: SinkChange) -> sluice_core::Result<()> {
        if let Change::Upsert { table, batch } = &change.change
            && table == "opportunity"
        {
            let mut w = self.watch.lock().expect("watch lock");
            let ids = batch
                .column_by_name("id")
                .and_then(|c| c.as_string_opt::<i32>());
            for id in ids.into_iter().flatten().flatten() {
                w.staged.push(id.to_owned());
            }
        }
        self.inner.write(change).await
    }
    async fn commit(&mut self, state: &State) -> sluice_core::Result<CommitReport> {
        let report = self.inner.commit(state).await?;
        let mut w = self.watch.lock().expect("watch lock");
        let staged = std::mem::take(&mut w.staged);
        w.committed.extend(staged);
        if w.fresh_at.is_none() && w.recent.iter().all(|id| w.committed.contains(id)) {
            w.fresh_at = Some(w.started.elapsed());
        }
        Ok(report)
    }
    async fn abort(&mut self) -> sluice_core::Result<()> {
        self.inner.abort().await
    }
    async fn close(&mut self) -> sluice_core::Result<()> {
        self.inner.close().await
    }
}

/// The ids of the opportunities the emulator at `admin` updated in the last 7 days.
async fn recent_ids(admin: impl Fn(&str) -> String) -> Result<HashSet<String>> {
    let http = reqwest::Client::new();
    let now: serde_json::Value = http.get(admin("/now")).send().await?.json().await?;
    let now = now["now_ms"].as_i64().context("emulator clock")?;
    let truth: serde_json::Value = http.get(admin("/truth")).send().await?.json().await?;
    Ok(truth["opportunities"]
        .as_array()
        .context("truth opportunities")?
        .iter()
        .filter(|o| o["updatedAt"].as_i64().is_some_and(|u| u >= now - WEEK_MS))
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect())
}

/// One first sync of the emulator at `base_url` into the Parquet folder `dest`, committing
/// at every checkpoint.
pub(crate) async fn first_sync(
    base_url: &str,
    api_key: &str,
    dest: &str,
    limiter: (u32, u32),
    priority_first: bool,
) -> Result<Freshness> {
    let root = base_url.trim_end_matches("/v1").to_owned();
    let recent = recent_ids(|p| format!("{root}/admin{p}")).await?;
    let registry = sluice_plugins::registry()?;
    let source = (registry.source("lever")?.build)();
    let inner = (registry.sink("parquet")?.build)(&json!({ "dest": dest }))?;
    let watch = Arc::new(Mutex::new(Watch {
        recent: recent.clone(),
        staged: Vec::new(),
        committed: HashSet::new(),
        started: Instant::now(),
        fresh_at: None,
    }));
    let mut sink = Watching {
        inner,
        watch: watch.clone(),
    };
    let config = json!({
        "base_url": base_url,
        "api_key": api_key,
        "rate_limit_per_second": limiter.0,
        "rate_limit_burst": limiter.1,
        "priority_first": priority_first,
    });
    watch.lock().expect("watch lock").started = Instant::now();
    let report = sluice_core::run_sync(
        "lever",
        source.as_ref(),
        &config,
        &mut sink,
        sluice_core::SyncOptions::default().with_commit_interval(Duration::ZERO),
    )
    .await?;
    let w = watch.lock().expect("watch lock");
    let wall_s = w.started.elapsed().as_secs_f64();
    let fresh_s = w.fresh_at.map_or(wall_s, |d| d.as_secs_f64());
    Ok(Freshness {
        priority_first,
        recent: recent.len(),
        fresh_s,
        wall_s,
        share: fresh_s / wall_s.max(1e-9),
        requests: report.requests,
    })
}
