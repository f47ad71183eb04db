//! One sync: re-imports of the lookup lists, the opportunity walk with its child endpoints,
//! deleted opportunities, checkpoints.

use crate::catalog::OPPORTUNITY;
use crate::custom_fields::{self, CustomColumn};
use crate::decode::opportunity::{Endpoint, contact_of, write_children, write_opportunity};
use crate::decode::{Issues, Tables, Writer, get_str, ms_of};
use crate::http::{Client, Items, Page, PageError, PageGuard, PageRef};
use crate::id_hash::{IdHash, IdMap, IdSet};
use crate::json::{Field, Value};
use crate::lever_tables::{Read, Table, Vanished, inline_tables, walk_tables};
use crate::lists::List;
use crate::priority::{Window, Windows, utc_minute};
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{Schema, SchemaRef};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_core::CpuPhase;
use sluice_core::{Cursor, Emitter, Error, ReadContext, Result, Scope, State, TableSpec};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The format of [`Extra`] this build writes and the newest it reads. Bump it with every
/// change an older build would misread, a new field included: a newer format is refused with
/// "upgrade sluice", and unknown fields are refused.
pub(crate) const EXTRA_FORMAT: u32 = 1;

/// The format of a state's [`Extra`]; [`EXTRA_FORMAT`] when written by this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ExtraFormat(pub(crate) u32);

impl Default for ExtraFormat {
    fn default() -> Self {
        ExtraFormat(EXTRA_FORMAT)
    }
}

impl ExtraFormat {
    /// Extras that record no format are format 1.
    fn unrecorded() -> Self {
        ExtraFormat(1)
    }
}

/// Source-specific state kept in `State::extra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Extra {
    /// The format these extras were written in.
    #[serde(default = "ExtraFormat::unrecorded")]
    pub(crate) format: ExtraFormat,
    /// Requisition custom-field columns seen so far (names and types are permanent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) custom_fields: Vec<CustomColumn>,
    /// Highest `deletedAt` seen on `/opportunities/deleted` (epoch ms), never past the
    /// server's clock when the list was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deleted_cursor_ms: Option<i64>,
    /// Opportunities near the cursor already synced, id → `updatedAt` (epoch ms): skipped
    /// when the look-back window returns them unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) boundary: BTreeMap<String, i64>,
    /// An opportunity walk in progress (resume point of a killed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) walk: Option<Walk>,
    /// The rolling re-scan of the opportunities' children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rescan: Option<crate::rescan::Rescan>,
    /// Per list read on every sync, the digest of what it last wrote
    /// ([`crate::list_digest`]): an unchanged list is not written again until its re-import
    /// interval is due.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) list_digests: BTreeMap<String, String>,
}

/// Position of an opportunity walk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Walk {
    /// `updated_at_start` of the walk (None: unfiltered full read).
    pub(crate) updated_start: Option<i64>,
    /// Offset token of the next page (None: from the start).
    pub(crate) offset: Option<String>,
    /// Highest `updatedAt` read so far.
    pub(crate) max_updated: Option<i64>,
    /// Pages committed.
    pub(crate) pages: u64,
    /// Whether the walk re-reads everything (first sync or re-sync).
    pub(crate) full: bool,
    /// Whether the walk is a re-sync: once complete, what it did not see is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) reimport: bool,
    /// When the walk began, epoch ms: the server's clock (`Date`) on its first page, or the
    /// local clock when the server sends none. The cursor never passes it. `None` until the
    /// first page is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started_ms: Option<i64>,
    /// The windows of a priority-first walk (newest first) and the one being read; `offset`
    /// and the pages after the last checkpoint belong to that window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) windows: Option<Windows>,
    /// How far back the data is complete while a priority-first walk runs, as text (for
    /// `sluice state show`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) complete_back_to: Option<String>,
    /// Opportunities this walk processed so far, over all its runs (a full walk's count sizes
    /// the re-scan's first pass, also when the walk was resumed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) read: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `updatedAt` of an opportunity processed in this run; [`NO_UPDATED_AT`] when it has none.
type Updated = i64;

/// The [`Updated`] of an opportunity without `updatedAt`.
const NO_UPDATED_AT: i64 = i64::MIN;

/// What one run of a walk keeps in memory (ids by hash: ~30 bytes per opportunity).
#[derive(Debug, Default)]
struct WalkRun {
    /// Opportunities processed in this run, id → `updatedAt`.
    done: IdMap<Updated>,
    /// Opportunities near the new cursor, for the boundary kept in the state.
    new_boundary: BTreeMap<String, i64>,
    /// Opportunities the rest window listed but left to a newer window (alive, read or due).
    listed: IdSet,
    /// Whether the walk was resumed from a checkpoint of an earlier run.
    resumed: bool,
    /// The oldest `createdAt` read in this run.
    oldest_created: Option<i64>,
}

/// "complete back to …" for a window start (`i64::MIN`: everything).
fn complete_text(ms: i64) -> String {
    if ms == i64::MIN {
        "opportunities complete".to_owned()
    } else {
        format!("opportunities complete back to {}", utc_minute(ms))
    }
}

/// The keys a re-sync walk has seen, for the deletion of what it did not see.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Ids of the opportunities listed in this run, each once.
    opportunities: StringBuilder,
    /// Keys of the soft-deleting children ([`Table::soft_children`]) read in this run, per
    /// table.
    children: BTreeMap<&'static str, StringBuilder>,
}

/// The cursor after a complete walk: the highest `updatedAt` read (for an incremental walk
/// never below the previous cursor), but never past the walk's start. A change made while
/// the walk ran may be on a page read before it, and Lever documents no list order: the next
/// walk must start before it. A timestamp from the future must not pin the cursor either.
pub(crate) fn next_cursor(previous: Option<i64>, walk: &Walk) -> Option<i64> {
    let highest = match (previous, walk.max_updated) {
        (Some(c), Some(m)) if !walk.full => Some(c.max(m)),
        (_, Some(m)) => Some(m),
        (c, None) => c,
    };
    match (highest, walk.started_ms) {
        (Some(h), Some(start)) => Some(h.min(start)),
        (h, _) => h,
    }
}

/// The local clock, epoch ms.
fn local_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Most opportunities remembered at the cursor boundary.
const MAX_BOUNDARY: usize = 5_000;

/// Inputs of a sync.
pub(crate) struct Sync<'a> {
    pub(crate) client: Client,
    pub(crate) ctx: &'a ReadContext,
    pub(crate) out: &'a Emitter,
    pub(crate) confidential: bool,
    pub(crate) lookback_ms: i64,
    pub(crate) reimport_interval_ms: i64,
    pub(crate) max_concurrency: usize,
    /// Window ages in days of a priority-first full walk; empty: plain walks.
    pub(crate) priority_windows_days: Vec<u32>,
    /// The rolling re-scan's interval and budget.
    pub(crate) rescan: crate::rescan::RescanSettings,
    pub(crate) state: State,
    pub(crate) extra: Extra,
    /// Values of an unexpected type met in this run (reported once at the end).
    pub(crate) issues: std::sync::Mutex<Issues>,
    /// Keys read by a re-sync walk in this run.
    pub(crate) seen: std::sync::Mutex<Option<Seen>>,
    /// Per contact id, the digest of the contact rows this run last wrote
    /// ([`crate::decode::opportunity::contact_digest`]): a contact shared by opportunities
    /// read in different pages or windows is written again only when it changed, so a
    /// copy-on-write sink does not rewrite the contact tables for identical rows.
    pub(crate) written_contacts: std::sync::Mutex<IdMap<u64>>,
}

impl Sync<'_> {
    /// Whether this run has not yet written contact `id` with the contact data `o` carries
    /// (and records that it now does).
    fn contact_changed(&self, id: &str, o: Value<'_>) -> bool {
        let digest = crate::decode::opportunity::contact_digest(o);
        let mut written = self.written_contacts.lock().expect("contacts lock");
        written.insert(IdHash::of(id), digest) != Some(digest)
    }

    /// Runs the whole sync and sends the final checkpoint; then (also after a failure) logs
    /// one warning per (table, column) that got values of an unexpected type.
    pub(crate) async fn run(mut self) -> Result<()> {
        let r = self.run_inner().await;
        self.issues.lock().expect("issues lock").report();
        r
    }

    /// Moves the problems `t` met into the run's counts.
    fn collect_issues(&self, t: &mut Tables) {
        let mut found = Issues::default();
        t.drain_issues(&mut found);
        if !found.counts.is_empty() {
            self.issues.lock().expect("issues lock").merge(found);
        }
    }

    async fn run_inner(&mut self) -> Result<()> {
        // Custom-field columns known from earlier runs are part of the table in the
        // destination: declare them before anything else.
        if let Some(base) = self.spec(Table::Requisition.name())
            && !self.extra.custom_fields.is_empty()
        {
            let spec = custom_fields::requisition_spec(base, &self.extra.custom_fields);
            self.out.schema(spec).await?;
        }
        self.checkpoint().await?;
        self.reimports().await?;
        self.opportunities().await?;
        self.deleted_opportunities().await?;
        self.rescan_children().await?;
        self.ctx.metrics.set_phase("done");
        self.checkpoint().await
    }

    pub(crate) fn cancelled(&self) -> Result<()> {
        if self.ctx.cancel.is_cancelled() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }

    pub(crate) async fn checkpoint(&mut self) -> Result<()> {
        self.state.extra = serde_json::to_value(&self.extra)
            .map_err(|e| Error::internal("serializing the Lever state").with_source(e))?;
        self.out.checkpoint(self.state.clone()).await
    }

    /// A checkpoint committed at once, whatever the commit interval.
    async fn checkpoint_now(&mut self) -> Result<()> {
        self.state.extra = serde_json::to_value(&self.extra)
            .map_err(|e| Error::internal("serializing the Lever state").with_source(e))?;
        self.out.checkpoint_now(self.state.clone()).await
    }

    fn spec(&self, table: &str) -> Option<&TableSpec> {
        self.ctx.tables.get(table)
    }

    pub(crate) fn conf_query(&self) -> (&'static str, String) {
        let v = if self.confidential {
            "all"
        } else {
            "non-confidential"
        };
        ("confidentiality", v.to_owned())
    }

    async fn upsert(&self, table: &str, batch: &RecordBatch) -> Result<()> {
        self.out.upsert(table, batch.clone()).await
    }

    async fn delete_missing(&self, table: &str, scope: Scope, batch: &RecordBatch) -> Result<()> {
        let Some(spec) = self.spec(table) else {
            return Ok(());
        };
        let keep = key_projection(spec, batch)?;
        self.out.delete_missing(table, scope, keep).await
    }

    // ---- re-imports -----------------------------------------------------------------------

    async fn reimports(&mut self) -> Result<()> {
        self.ctx.metrics.set_phase("re-import");
        let now = self.ctx.started_at_ms;
        for list in List::ALL {
            let g = list.spec();
            self.cancelled()?;
            let enabled: Vec<&str> = list
                .tables()
                .iter()
                .copied()
                .filter(|t| self.ctx.is_enabled(t))
                .collect();
            if enabled.is_empty() {
                continue;
            }
            // The requisition lists are small, read every sync (Lever has no updated-at
            // filter for them) and written when their content changed; the other lists are
            // read and written once per interval.
            let interval_due = enabled.iter().any(|t| {
                let ts = self.state.table(t);
                self.ctx.resync_requested(t)
                    || ts
                        .last_reimport_ms
                        .is_none_or(|last| now - last >= self.reimport_interval_ms)
            });
            let due = g.every_sync || interval_due;
            if !due {
                tracing::debug!(list = g.label, "re-import not due yet");
                continue;
            }
            let mut query: Vec<(&str, String)> = g
                .extra_query
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect();
            if g.confidential_param {
                query.push(self.conf_query());
            }
            let items = self
                .client
                .list_all(g.label, g.path, &query, list.tables())
                .await?
                .ok_or_else(|| Error::upstream(format!("GET {} answered 404", g.path)))?;
            let digest = g
                .every_sync
                .then(|| crate::list_digest::list_digest(items.iter(), &enabled));
            if !interval_due
                && digest.is_some()
                && self.extra.list_digests.get(g.label) == digest.as_ref()
            {
                tracing::debug!(list = g.label, "unchanged since it was last written");
                continue;
            }
            let mut t = Tables::new(self.ctx.tables.values(), list.tables());
            let requisition = Table::Requisition.name();
            if list == List::Requisitions && self.ctx.is_enabled(requisition) {
                custom_fields::discover(&mut self.extra.custom_fields, items.iter());
                if !self.extra.custom_fields.is_empty() {
                    let base = self.spec(requisition).expect("enabled").clone();
                    let spec = custom_fields::requisition_spec(&base, &self.extra.custom_fields);
                    self.out.schema(spec.clone()).await?;
                    t.insert(Writer::new(
                        &spec,
                        &custom_fields::extractors(&self.extra.custom_fields),
                    ));
                }
            }
            let batches = self.ctx.metrics.cpu_phase(CpuPhase::Decode, || {
                for item in items.iter() {
                    (g.decode)(&mut t, item);
                }
                t.finish_all()
            })?;
            self.collect_issues(&mut t);
            for (table, batch) in &batches {
                self.upsert(table, batch).await?;
            }
            for (table, batch) in &batches {
                self.delete_missing(table, Scope::All, batch).await?;
            }
            for table in enabled {
                let ts = self.state.table_mut(table);
                ts.last_reimport_ms = Some(now);
                ts.resync_requested = false;
            }
            if let Some(d) = digest {
                self.extra.list_digests.insert(g.label.to_owned(), d);
            }
            tracing::debug!(list = g.label, items = items.len(), "re-imported");
        }
        self.checkpoint().await
    }

    // ---- opportunities ----------------------------------------------------------------------

    async fn opportunities(&mut self) -> Result<()> {
        let family = walk_tables();
        if !self.ctx.any_enabled(family.iter().copied()) {
            return Ok(());
        }
        self.ctx.metrics.set_phase("opportunities");
        let endpoints = self.child_endpoints();
        let resync = family.iter().any(|t| self.ctx.resync_requested(t));
        let cursor = match self.state.table(OPPORTUNITY).cursor {
            Some(Cursor::TimestampMs(ms)) => Some(ms),
            _ => None,
        };
        let mut walk = match self.extra.walk.take() {
            // Resume a killed run's walk unless a re-sync was asked for meanwhile.
            Some(w) if !resync || w.full => w,
            _ => self.fresh_walk(resync, cursor),
        };
        // Keys seen before a kill are not known to a resumed walk: it lists the ids again at
        // the end (see `delete_unseen`).
        let resumed = walk.pages > 0 || walk.windows.as_ref().is_some_and(|w| w.current > 0);
        if walk.reimport {
            *self.seen.lock().expect("seen lock") = Some(Seen::default());
        }
        let mut run = WalkRun {
            resumed,
            ..WalkRun::default()
        };
        loop {
            let window = walk.windows.as_ref().and_then(Windows::window);
            self.show_window(&walk);
            self.walk_pages(&mut walk, window, &endpoints, &mut run)
                .await?;
            let Some(windows) = walk.windows.as_mut() else {
                break;
            };
            windows.advance();
            walk.offset = None;
            walk.complete_back_to = windows.complete_back_to().map(complete_text);
            if windows.is_done() {
                break;
            }
            // The window is committed with all its child tables before the next one starts,
            // whatever the commit interval.
            self.extra.walk = Some(walk.clone());
            self.checkpoint_now().await?;
        }
        self.finish_walk(walk, cursor, run, family).await
    }

    /// The child endpoints whose tables are enabled.
    pub(crate) fn child_endpoints(&self) -> Vec<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .filter(|e| self.ctx.any_enabled(e.tables().iter().copied()))
            .collect()
    }

    /// A new walk: incremental from the cursor, or a full read (first sync, re-sync), newest
    /// first in windows of `updatedAt` unless priority-first is off.
    fn fresh_walk(&self, resync: bool, cursor: Option<i64>) -> Walk {
        let full = resync || cursor.is_none();
        let windows = (full && !self.priority_windows_days.is_empty()).then(|| {
            // The server's clock when it answered last (the lookups are read before), so
            // that the windows follow the clock Lever stamps `updatedAt` with.
            let anchor = self.client.server_clock_ms().unwrap_or_else(local_now_ms);
            Windows::plan(anchor, &self.priority_windows_days)
        });
        Walk {
            updated_start: if full {
                None
            } else {
                cursor.map(|c| c - self.lookback_ms)
            },
            full,
            reimport: resync,
            windows,
            ..Walk::default()
        }
    }

    /// Names the window being read in the progress display, and how far back the data is
    /// complete.
    fn show_window(&self, walk: &Walk) {
        let Some(windows) = &walk.windows else {
            return;
        };
        let (k, n) = windows.position();
        let what = match windows.window() {
            Some(Window::Range { start, .. }) => format!("updated since {}", utc_minute(start)),
            _ => "the rest".to_owned(),
        };
        self.ctx.metrics.set_phase(format!(
            "opportunities, newest first: window {k} of {n} ({what})"
        ));
        if let Some(text) = &walk.complete_back_to {
            self.ctx.metrics.set_status(text.clone());
        }
    }

    /// Reads the pages of one window (or of the whole walk when it has no windows), emitting
    /// each page with its children and checkpointing after it; returns when the list ends.
    async fn walk_pages(
        &mut self,
        walk: &mut Walk,
        window: Option<Window>,
        endpoints: &[Endpoint],
        run: &mut WalkRun,
    ) -> Result<()> {
        let local_start = local_now_ms();
        let mut query = vec![self.conf_query(), ("expand", "applications".to_owned())];
        if let Some(s) = walk.updated_start {
            query.push(("updated_at_start", s.to_string()));
        }
        query.extend(window.map(|w| w.query()).unwrap_or_default());
        let mut restarts = 0;
        let mut guard = PageGuard::resuming(walk.offset.as_deref(), walk.pages);
        let mut prefetched: Option<std::result::Result<Option<Page>, PageError>> = None;
        loop {
            self.cancelled()?;
            let result = match prefetched.take() {
                Some(r) => r,
                None => {
                    self.client
                        .page(
                            "opportunities",
                            "/opportunities",
                            &query,
                            walk.offset.as_deref(),
                            walk.pages + 1,
                            inline_tables(),
                        )
                        .await
                }
            };
            let page = match result {
                Ok(Some(p)) => p,
                Ok(None) => return Err(Error::upstream("GET /opportunities answered 404")),
                Err(PageError::InvalidOffset) if restarts < 5 => {
                    restarts += 1;
                    tracing::warn!(
                        "Lever rejected the opportunity offset token; restarting the walk from its start"
                    );
                    walk.offset = None;
                    guard = PageGuard::default();
                    prefetched = None;
                    continue;
                }
                Err(PageError::InvalidOffset) => {
                    return Err(Error::upstream(
                        "GET /opportunities: Lever keeps rejecting its own offset tokens",
                    ));
                }
                Err(PageError::Other(e)) => return Err(e),
            };
            let at = PageRef {
                path: "/opportunities",
                page: walk.pages + 1,
                offset: walk.offset.as_deref(),
                tables: inline_tables(),
            };
            guard.check(at, &page)?;
            if walk.started_ms.is_none() {
                walk.started_ms = Some(page.server_time_ms.unwrap_or(local_start));
            }
            let next = page.next.clone();
            let opps = self.select(&page, walk, window, run);
            walk.read += opps.len() as u64;
            // Fetch the next list page while this page's children are read.
            let next_fut = {
                let client = self.client.clone();
                let query = query.clone();
                let next = next.clone();
                let next_no = walk.pages + 2;
                async move {
                    match next {
                        Some(n) => Some(
                            client
                                .page(
                                    "opportunities",
                                    "/opportunities",
                                    &query,
                                    Some(&n),
                                    next_no,
                                    inline_tables(),
                                )
                                .await,
                        ),
                        None => None,
                    }
                }
            };
            let (r, n) = tokio::join!(self.process_page(&opps, endpoints), next_fut);
            r?;
            prefetched = n;
            walk.pages += 1;
            walk.offset = next;
            if let Some(m) = walk.max_updated {
                let m = m.min(walk.started_ms.unwrap_or(m));
                run.new_boundary.retain(|_, u| *u >= m - self.lookback_ms);
            }
            if walk.offset.is_none() {
                return Ok(());
            }
            self.extra.walk = Some(walk.clone());
            self.checkpoint().await?;
        }
    }

    /// The opportunities of `page` this walk processes: not synced at the previous cursor
    /// boundary, not processed earlier in this run with the same `updatedAt`, and (in the
    /// rest window of a priority-first walk) not owned by a window already read.
    fn select<'p>(
        &self,
        page: &'p Page,
        walk: &mut Walk,
        window: Option<Window>,
        run: &mut WalkRun,
    ) -> Vec<Value<'p>> {
        let mut opps = Vec::with_capacity(page.data().len());
        let mut seen = if walk.reimport {
            Some(self.seen.lock().expect("seen lock"))
        } else {
            None
        };
        for o in page.data() {
            let Some(id) = get_str(o, "id") else {
                continue;
            };
            let key = IdHash::of(id);
            if let Some(Some(seen)) = seen.as_deref_mut()
                && !run.done.contains_key(&key)
                && !run.listed.contains(&key)
            {
                seen.opportunities.append_value(id);
            }
            let updated = ms_of(o.field("updatedAt"));
            if let Some(u) = updated {
                walk.max_updated = Some(walk.max_updated.map_or(u, |m| m.max(u)));
            }
            if let Some(c) = ms_of(o.field("createdAt")) {
                run.oldest_created = Some(run.oldest_created.map_or(c, |m| m.min(c)));
            }
            if !walk.full && updated.is_some() && self.extra.boundary.get(id) == updated.as_ref() {
                continue; // already synced at the previous cursor boundary
            }
            if let Some(w) = window
                && !w.owns(updated)
            {
                // Read by a newer window of this walk, or changed into one since the walk
                // began (then the next run's look-back reads it): listed, still alive.
                run.listed.insert(key);
                if run.resumed || run.done.contains_key(&key) {
                    continue;
                }
            }
            let stamp = updated.unwrap_or(NO_UPDATED_AT);
            if run.done.get(&key) == Some(&stamp) {
                continue; // already processed in this run (walk restarted)
            }
            run.done.insert(key, stamp);
            if let Some(u) = updated {
                run.new_boundary.insert(id.to_owned(), u);
            }
            opps.push(o);
        }
        opps
    }

    /// After the last page of a walk: deletes what a re-sync did not see, advances the
    /// cursor, remembers the boundary, clears the re-sync flags and checkpoints.
    async fn finish_walk(
        &mut self,
        walk: Walk,
        cursor: Option<i64>,
        run: WalkRun,
        family: &[&str],
    ) -> Result<()> {
        let WalkRun {
            done,
            new_boundary,
            listed,
            resumed,
            oldest_created,
        } = run;
        let read = walk.read.max(done.len().max(listed.len()) as u64);
        drop((done, listed));
        if walk.reimport {
            self.delete_unseen(resumed).await?;
        }
        if let Some(c) = next_cursor(cursor, &walk) {
            self.state.table_mut(OPPORTUNITY).cursor = Some(Cursor::TimestampMs(c));
            let keep_from = c - self.lookback_ms;
            let mut boundary: BTreeMap<String, i64> = if walk.full {
                BTreeMap::new()
            } else {
                std::mem::take(&mut self.extra.boundary)
            };
            boundary.extend(new_boundary);
            boundary.retain(|_, u| *u >= keep_from);
            if boundary.len() > MAX_BOUNDARY {
                boundary.clear();
            }
            self.extra.boundary = boundary;
        }
        if walk.full {
            // Every child was just read: a re-scan pass starts now.
            self.extra.rescan = Some(crate::rescan::Rescan::starting(
                self.ctx.started_at_ms,
                read,
                oldest_created.filter(|_| !resumed),
            ));
        }
        if walk.windows.is_some() {
            self.ctx
                .metrics
                .set_status("opportunities complete (every window read)");
        }
        self.extra.walk = None;
        for t in family {
            if self.state.tables.contains_key(*t) || self.ctx.resync_requested(t) {
                self.state.table_mut(t).resync_requested = false;
            }
        }
        self.checkpoint().await
    }

    /// Reads the children of one page of opportunities and emits everything of the page.
    pub(crate) async fn process_page(
        &self,
        opps: &[Value<'_>],
        endpoints: &[Endpoint],
    ) -> Result<()> {
        if opps.is_empty() {
            return Ok(());
        }
        let family = walk_tables();
        let mut t = Tables::new(self.ctx.tables.values(), family);
        let opp_ids: Vec<String> = opps
            .iter()
            .filter_map(|o| get_str(*o, "id").map(str::to_owned))
            .collect();
        let mut contacts: Vec<String> = Vec::new();
        let mut seen_contacts = HashSet::new();
        let mut posting_form_ids = Vec::new();
        self.ctx.metrics.cpu_phase(CpuPhase::Decode, || {
            for &o in opps {
                let contact = contact_of(o);
                let new_contact = contact.is_some_and(|c| {
                    seen_contacts.insert(c.to_owned()) && self.contact_changed(c, o)
                });
                if new_contact {
                    contacts.push(contact.unwrap_or_default().to_owned());
                }
                write_opportunity(&mut t, o, new_contact);
                for app in crate::decode::get_arr(o, "applications") {
                    for q in crate::decode::get_arr(app, "customQuestions") {
                        if let Some(id) = get_str(q, "id") {
                            posting_form_ids.push(id.to_owned());
                        }
                    }
                }
            }
        });
        // Child endpoints, concurrently; the shared rate limiter paces them.
        let jobs: Vec<(usize, Endpoint)> = (0..opps.len())
            .flat_map(|i| endpoints.iter().map(move |e| (i, *e)))
            .collect();
        let client = &self.client;
        type Fetched = (usize, Endpoint, Result<Option<Items>>);
        let results: Vec<Fetched> = futures::stream::iter(jobs)
            .map(|(i, e)| {
                let id = opp_ids.get(i).cloned().unwrap_or_default();
                async move {
                    let path = format!("/opportunities/{id}/{}", e.segment());
                    (
                        i,
                        e,
                        client.list_all(e.label(), &path, &[], e.tables()).await,
                    )
                }
            })
            .buffer_unordered(self.max_concurrency)
            .collect()
            .await;
        let mut ok_ids: BTreeMap<Endpoint, Vec<String>> = BTreeMap::new();
        let mut ordered: Vec<(usize, Endpoint, Items)> = Vec::with_capacity(results.len());
        for (i, e, r) in results {
            match r? {
                Some(items) => ordered.push((i, e, items)),
                None => {
                    tracing::debug!(opportunity = %opp_ids[i], endpoint = e.label(), "opportunity vanished (404) while reading its children");
                }
            }
        }
        ordered.sort_by_key(|(i, e, _)| (*i, *e));
        let batches = self.ctx.metrics.cpu_phase(CpuPhase::Decode, || {
            for (i, e, items) in &ordered {
                let o = opps[*i];
                let id = &opp_ids[*i];
                write_children(&mut t, *e, id, contact_of(o), items.iter());
                ok_ids.entry(*e).or_default().push(id.clone());
            }
            t.finish_all()
        })?;
        let batches: BTreeMap<String, RecordBatch> = batches.into_iter().collect();
        self.remember_children(&batches);
        self.collect_issues(&mut t);
        for (table, batch) in &batches {
            self.upsert(table, batch).await?;
        }
        // Deletes: grand-children first (their scope resolves through the parent rows), then
        // children, scoped to the parents re-read in this page.
        let opp_scope = |values: &[String]| Scope::Where {
            column: "opportunity_id".into(),
            values: values.to_vec(),
        };
        let mut deletes: Vec<(u8, String, Scope)> = Vec::new();
        for table in batches.keys() {
            if self.spec(table).is_none() {
                continue;
            }
            let decl = Table::named(table)
                .expect("batches are of declared tables")
                .decl();
            let Read::Child {
                parent,
                parent_column,
                vanished,
            } = decl.read
            else {
                continue;
            };
            let endpoint = decl.endpoint();
            let scope_ids: &[String] = match endpoint {
                _ if decl.reads(crate::lever_tables::Source::OpportunityList) => &opp_ids,
                Some(e) => ok_ids.get(&e).map_or(&[], Vec::as_slice),
                None => &[],
            };
            let parent_column = parent_column.to_owned();
            let (order, scope) = match vanished {
                Vanished::Kept => continue,
                Vanished::ByOpportunity => (1, opp_scope(scope_ids)),
                Vanished::ByContact => (
                    1,
                    Scope::Where {
                        column: parent_column,
                        values: contacts.clone(),
                    },
                ),
                Vanished::ViaParent => {
                    let parent_table = parent.name();
                    if self.ctx.is_enabled(parent_table) {
                        (
                            0,
                            Scope::Via {
                                column: parent_column,
                                parent_table: parent_table.to_owned(),
                                parent_column: "id".into(),
                                parent_scope: Box::new(opp_scope(scope_ids)),
                            },
                        )
                    } else {
                        // The parent table is blocked: scope by the parents read now (rows of
                        // parents that vanished entirely cannot be found without it).
                        let values = if parent == Table::PostingForm {
                            posting_form_ids.clone()
                        } else {
                            // The ids of the endpoint's items read now (collected only here:
                            // a blocked parent is rare, and every item's id is a string).
                            endpoint.map_or_else(Vec::new, |want| {
                                ordered
                                    .iter()
                                    .filter(|(_, e, _)| *e == want)
                                    .flat_map(|(_, _, items)| items.iter())
                                    .filter_map(|x| get_str(x, "id").map(str::to_owned))
                                    .collect()
                            })
                        };
                        (
                            0,
                            Scope::Where {
                                column: parent_column,
                                values,
                            },
                        )
                    }
                }
            };
            let empty_scope = matches!(&scope, Scope::Where { values, .. } if values.is_empty());
            if !empty_scope {
                deletes.push((order, table.clone(), scope));
            }
        }
        deletes.sort_by_key(|(o, _, _)| *o);
        for (_, table, scope) in deletes {
            self.delete_missing(&table, scope, &batches[&table]).await?;
        }
        Ok(())
    }

    /// Adds the keys of the soft-deleting child tables in `batches` to what a re-sync saw.
    fn remember_children(&self, batches: &BTreeMap<String, RecordBatch>) {
        let mut seen = self.seen.lock().expect("seen lock");
        let Some(seen) = seen.as_mut() else {
            return;
        };
        for &table in Table::soft_children() {
            let ids = batches
                .get(table)
                .and_then(|b| b.column_by_name("id"))
                .and_then(|c| c.as_any().downcast_ref::<StringArray>());
            if let Some(ids) = ids {
                let keys = seen.children.entry(table).or_default();
                for id in ids.iter().flatten() {
                    keys.append_value(id);
                }
            }
        }
    }

    /// After a complete re-sync walk: soft-deletes the opportunities it
    /// did not see (gone from Lever without a row in `/opportunities/deleted`), and the notes,
    /// feedback and profile forms it did not see, as a deletion through
    /// `/opportunities/deleted` does. The opportunities kept are those listed in this run; a
    /// walk resumed after a kill lists the ids once more (one cheap request per page, no
    /// children) because those read before the kill are not known.
    async fn delete_unseen(&mut self, resumed: bool) -> Result<()> {
        let seen = self
            .seen
            .lock()
            .expect("seen lock")
            .take()
            .unwrap_or_default();
        let mut seen_opportunities = seen.opportunities;
        if let Some(spec) = self.spec(OPPORTUNITY) {
            let mut keys = seen_opportunities.finish();
            if resumed {
                let mut keep: HashSet<String> = keys.iter().flatten().map(str::to_owned).collect();
                keep.extend(self.list_opportunity_ids().await?);
                keys = StringArray::from_iter_values(keep);
            }
            let batch = RecordBatch::try_new(key_schema(spec), vec![Arc::new(keys) as ArrayRef])?;
            self.out
                .delete_missing(OPPORTUNITY, Scope::All, batch)
                .await?;
        }
        if resumed {
            // The children read before the kill are unknown: their deletion waits for a walk
            // that runs in one piece (docs/reliability.md, "Not guaranteed").
            return Ok(());
        }
        let mut children = seen.children;
        for &table in Table::soft_children() {
            let Some(spec) = self.spec(table) else {
                continue;
            };
            let keys = children.remove(table).map_or_else(
                || StringArray::from(Vec::<String>::new()),
                |mut b| b.finish(),
            );
            let batch = RecordBatch::try_new(key_schema(spec), vec![Arc::new(keys) as ArrayRef])?;
            self.out.delete_missing(table, Scope::All, batch).await?;
        }
        Ok(())
    }

    /// The ids of every opportunity `/opportunities` lists now (no expansion, no children).
    async fn list_opportunity_ids(&self) -> Result<HashSet<String>> {
        let query = vec![self.conf_query()];
        let mut ids = HashSet::new();
        let mut restarts = 0;
        let mut offset: Option<String> = None;
        let mut guard = PageGuard::default();
        let mut page_no = 0;
        loop {
            self.cancelled()?;
            page_no += 1;
            let result = self
                .client
                .page(
                    "opportunities",
                    "/opportunities",
                    &query,
                    offset.as_deref(),
                    page_no,
                    inline_tables(),
                )
                .await;
            let page = match result {
                Ok(Some(p)) => p,
                Ok(None) => return Err(Error::upstream("GET /opportunities answered 404")),
                Err(PageError::InvalidOffset) if restarts < 5 => {
                    restarts += 1;
                    (offset, page_no, guard) = (None, 0, PageGuard::default());
                    continue;
                }
                Err(PageError::InvalidOffset) => {
                    return Err(Error::upstream(
                        "GET /opportunities: Lever keeps rejecting its own offset tokens",
                    ));
                }
                Err(PageError::Other(e)) => return Err(e),
            };
            let at = PageRef {
                path: "/opportunities",
                page: page_no,
                offset: offset.as_deref(),
                tables: inline_tables(),
            };
            guard.check(at, &page)?;
            ids.extend(
                page.data()
                    .iter()
                    .filter_map(|o| get_str(o, "id").map(str::to_owned)),
            );
            offset = page.next.clone();
            if offset.is_none() {
                return Ok(ids);
            }
        }
    }

    // ---- deleted opportunities --------------------------------------------------------------

    async fn deleted_opportunities(&mut self) -> Result<()> {
        let soft = Table::soft_children();
        if !self.ctx.is_enabled(OPPORTUNITY) && !self.ctx.any_enabled(soft.iter().copied()) {
            return Ok(());
        }
        self.ctx.metrics.set_phase("deleted opportunities");
        let mut query = Vec::new();
        if let Some(c) = self.extra.deleted_cursor_ms {
            query.push(("deleted_at_start", (c - self.lookback_ms).to_string()));
        }
        let local_start = local_now_ms();
        let items = self
            .client
            .list_all(
                "opportunities/deleted",
                "/opportunities/deleted",
                &query,
                &[&[OPPORTUNITY], soft].concat(),
            )
            .await?
            .unwrap_or_default();
        let mut ids = Vec::new();
        let mut highest = self.extra.deleted_cursor_ms;
        for it in items.iter() {
            if let Some(id) = get_str(it, "id") {
                ids.push(id.to_owned());
            }
            if let Some(d) = ms_of(it.field("deletedAt")) {
                highest = Some(highest.map_or(d, |c| c.max(d)));
            }
        }
        // Never past the list's start (the server's clock on its first page, as for
        // `next_cursor`): a deletion made while the list is paged, or a `deletedAt` from the
        // future, must not move the next `deleted_at_start` past later deletions.
        let start = items
            .pages
            .first()
            .and_then(|p| p.server_time_ms)
            .unwrap_or(local_start);
        self.extra.deleted_cursor_ms = highest.map(|h| h.min(start));
        if ids.is_empty() {
            return Ok(());
        }
        if self.ctx.is_enabled(OPPORTUNITY) {
            let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
                "id",
                arrow::datatypes::DataType::Utf8,
                false,
            )]));
            let keys = RecordBatch::try_new(
                schema,
                vec![Arc::new(StringArray::from(ids.clone())) as ArrayRef],
            )?;
            self.out.delete(OPPORTUNITY, keys).await?;
        }
        for &table in soft {
            if let Some(spec) = self.spec(table) {
                let keep = RecordBatch::new_empty(key_schema(spec));
                self.out
                    .delete_missing(
                        table,
                        Scope::Where {
                            column: "opportunity_id".into(),
                            values: ids.clone(),
                        },
                        keep,
                    )
                    .await?;
            }
        }
        tracing::debug!(deleted = ids.len(), "deleted opportunities applied");
        Ok(())
    }
}

/// The primary-key schema of `spec`.
pub(crate) fn key_schema(spec: &TableSpec) -> SchemaRef {
    let full = spec.source_schema();
    let idx: Vec<usize> = spec
        .primary_key
        .iter()
        .filter_map(|k| full.index_of(k).ok())
        .collect();
    Arc::new(full.project(&idx).expect("key columns are declared"))
}

/// The primary-key columns of `batch`.
pub(crate) fn key_projection(spec: &TableSpec, batch: &RecordBatch) -> Result<RecordBatch> {
    let idx: Vec<usize> = spec
        .primary_key
        .iter()
        .map(|k| {
            batch
                .schema()
                .index_of(k)
                .map_err(|_| Error::internal(format!("table `{}` lacks key `{k}`", spec.name)))
        })
        .collect::<Result<_>>()?;
    Ok(batch.project(&idx)?)
}

#[cfg(test)]
mod bench {
    use std::time::Instant;

    /// Parse + decode throughput of the source alone (no HTTP): run with
    /// `cargo test --release -p sluice-source-lever --lib -- --ignored decode_throughput --nocapture`
    /// (the criterion bench `benches/decode.rs` measures the same work).
    #[test]
    #[ignore = "a measurement"]
    fn decode_throughput() {
        let input = crate::__bench::DecodeInput::from_emulator(5_000);
        let t0 = Instant::now();
        let rows = input.decode_all();
        let s = t0.elapsed().as_secs_f64();
        println!(
            "decode: {rows} rows from 5000 opportunities in {s:.3}s single-threaded = {:.0} rows/s",
            rows as f64 / s
        );
    }
}
