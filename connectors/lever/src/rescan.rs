//! The rolling re-scan: each sync re-reads the children of a slice of the opportunities, so
//! that children Lever deleted without moving their opportunity's `updatedAt` (which no
//! incremental read can see) are found within `rescan_interval_days`.
//!
//! A *pass* visits every opportunity once, in `(createdAt, id)` order (createdAt never
//! changes, so the order is stable across syncs), starting when the previous pass ends; the
//! opportunities created after a pass began were first read after it began and are left to
//! the next pass. The position is a point in that order, kept in the state. Each sync lists a
//! window of `createdAt` after the position (`created_at_start`/`created_at_end`, inclusive;
//! Lever documents no list order, so the window is listed in full and sorted), re-reads the
//! children of the first opportunities of it, and moves the position past them; the width
//! of the next window adapts to how many opportunities the last one held.
//!
//! Coverage and cost: each sync re-scans at least what the pass needs to end within the
//! interval if syncs keep coming as often as the last two did (the *floor*: the share of the
//! account up to the next expected sync, counted from the full walk or the previous pass);
//! beyond it, it re-scans what keeps the pass on an 80 % schedule (a margin for late syncs)
//! while the re-scan stays within `rescan_max_share` of the run's requests (`share / (1 −
//! share)` times the requests the run made before it). So the re-scan spends the larger of the
//! share and the floor: coverage within the interval is the guarantee, the share bounds the
//! extra cost of a busy account. Once the schedule reaches the whole account (the last sync
//! before the deadline), everything left of the pass is due, however many that is (the count
//! is an estimate: opportunities created since it was taken are in the pass too), and the
//! re-scan lists on through empty `createdAt` windows until the pass ends; the next pass
//! starts in the same run. Vanished children are deleted as for any re-read opportunity
//! (scoped `DeleteMissing`).

use crate::decode::{get_str, ms_of};
use crate::http::{Items, PageError, PageGuard, PageRef};
use crate::json::{Field, Value};
use crate::lever_tables::inline_tables;
use crate::sync::Sync;
use serde::{Deserialize, Serialize};
use sluice_core::{Error, Result};

/// The re-scan's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RescanSettings {
    /// Every opportunity's children are re-read at least once per this many ms (0: off).
    pub(crate) interval_ms: i64,
    /// Most of a run's requests the re-scan may make (0–1).
    pub(crate) max_share: f64,
}

/// Share of the interval a pass is paced to take (the rest is a margin for late syncs).
const PACE: f64 = 0.8;
/// Width of the first `createdAt` window of a pass.
const FIRST_SPAN_MS: i64 = 7 * 86_400_000;
/// Windows listed by one sync at most.
const MAX_WINDOWS_PER_RUN: usize = 64;

/// Where the re-scan stands (kept in the Lever state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rescan {
    /// When the current pass began (a sync's start, epoch ms).
    pub(crate) pass_started_ms: i64,
    /// The opportunities created before this instant (epoch ms) are re-scanned in this pass;
    /// `None`: none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) from_created_ms: Option<i64>,
    /// Of those created exactly at `from_created_ms`, the ones up to this id are re-scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) after_id: Option<String>,
    /// Width of the next `createdAt` window, ms.
    pub(crate) span_ms: i64,
    /// The oldest `createdAt` known: where the first window of a pass ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) oldest_created_ms: Option<i64>,
    /// Opportunities re-scanned in this pass.
    pub(crate) scanned: u64,
    /// Opportunities in the account as last counted (0: unknown).
    pub(crate) total: u64,
    /// Requests of the last run's re-scan.
    #[serde(default)]
    pub(crate) last_requests: u64,
    /// The last run's requests, the re-scan's included.
    #[serde(default)]
    pub(crate) last_run_requests: u64,
    /// When the last run began (epoch ms): the time between syncs is expected to repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_run_ms: Option<i64>,
}

impl Rescan {
    /// A pass starting at `now_ms` over `total` opportunities, the oldest created at
    /// `oldest_created_ms` when known.
    pub(crate) fn starting(now_ms: i64, total: u64, oldest_created_ms: Option<i64>) -> Rescan {
        Rescan {
            pass_started_ms: now_ms,
            from_created_ms: None,
            after_id: None,
            span_ms: FIRST_SPAN_MS,
            oldest_created_ms,
            scanned: 0,
            total,
            last_requests: 0,
            last_run_requests: 0,
            last_run_ms: None,
        }
    }

    /// How many opportunities keep the pass on its 80 % schedule at `now_ms` (`u64::MAX` when
    /// the account's size is unknown, or once the schedule reaches the whole account: all
    /// that is left of the pass).
    pub(crate) fn due(&self, now_ms: i64, interval_ms: i64) -> u64 {
        if self.total == 0 {
            return u64::MAX;
        }
        let elapsed = (now_ms - self.pass_started_ms).max(0) as f64;
        self.behind((elapsed / (interval_ms as f64 * PACE)).max(0.0))
    }

    /// How many opportunities this run must re-scan (the floor) so that the pass ends within
    /// the interval if the next sync comes as long after `now_ms` as this one came after the
    /// last (`u64::MAX` once that reaches the whole account: all that is left of the pass).
    pub(crate) fn needed(&self, now_ms: i64, interval_ms: i64) -> u64 {
        let gap = self
            .last_run_ms
            .map_or(0, |last| (now_ms - last).clamp(0, interval_ms));
        let by_next = (now_ms - self.pass_started_ms).max(0) + gap;
        let fraction = by_next as f64 / interval_ms.max(1) as f64;
        if self.total == 0 && fraction < 1.0 {
            return 0; // an empty account when counted: nothing to spread
        }
        self.behind(fraction)
    }

    /// Opportunities short of `fraction` of the pass (`u64::MAX` from the whole pass on).
    fn behind(&self, fraction: f64) -> u64 {
        if fraction >= 1.0 || !fraction.is_finite() {
            return u64::MAX;
        }
        let target = (self.total as f64 * fraction).ceil() as u64;
        target.saturating_sub(self.scanned)
    }

    /// The next window of `createdAt`, inclusive: from the position (unbounded at the start
    /// of a pass) to the end of the span, never past the pass's start.
    pub(crate) fn window(&self) -> (Option<i64>, i64) {
        let base = self
            .from_created_ms
            .or(self.oldest_created_ms)
            .unwrap_or(self.pass_started_ms - FIRST_SPAN_MS);
        let end = base.saturating_add(self.span_ms - 1);
        (self.from_created_ms, end.min(self.pass_started_ms))
    }

    /// Whether `(created, id)` is past the position (not re-scanned in this pass yet).
    pub(crate) fn is_ahead(&self, created: i64, id: &str) -> bool {
        match (self.from_created_ms, &self.after_id) {
            (None, _) => true,
            (Some(from), _) if created != from => created > from,
            (Some(_), Some(after)) => id > after.as_str(),
            (Some(_), None) => true,
        }
    }

    /// Moves the position past `(created, id)`, the last opportunity re-scanned.
    pub(crate) fn passed(&mut self, created: i64, id: &str) {
        self.from_created_ms = Some(created);
        self.after_id = Some(id.to_owned());
        self.scanned += 1;
    }

    /// Moves the position past the window ending at `end`, and adapts the span to the
    /// `listed` opportunities it held when `wanted` were due.
    pub(crate) fn passed_window(&mut self, end: i64, listed: u64, wanted: u64) {
        self.from_created_ms = Some(end.saturating_add(1));
        self.after_id = None;
        self.adapt_span(listed, wanted);
    }

    /// Widens the span when a window held fewer opportunities than due, narrows it when it
    /// held many more (1 s to 20 years).
    pub(crate) fn adapt_span(&mut self, listed: u64, wanted: u64) {
        let wanted = wanted.clamp(1, 1_000_000) as f64;
        let factor = match listed {
            0 => 4.0,
            n if (n as f64) < wanted => (wanted / n as f64).min(4.0),
            n if n as f64 > 2.0 * wanted => (wanted / n as f64).max(0.25),
            _ => 1.0,
        };
        let span = (self.span_ms as f64 * factor) as i64;
        self.span_ms = span.clamp(1_000, 20 * 365 * 86_400_000);
    }

    /// Whether the pass has visited every opportunity created before it began.
    pub(crate) fn pass_done(&self) -> bool {
        self.from_created_ms
            .is_some_and(|from| from > self.pass_started_ms)
    }

    /// Starts the next pass at `now_ms`; the finished pass's count sizes it.
    pub(crate) fn next_pass(&mut self, now_ms: i64) {
        let total = self.scanned.max(1);
        *self = Rescan {
            last_requests: self.last_requests,
            last_run_requests: self.last_run_requests,
            last_run_ms: self.last_run_ms,
            ..Rescan::starting(now_ms, total, self.oldest_created_ms)
        };
    }
}

/// The re-scan's request budget when the run has made `before` requests.
pub(crate) fn budget(before: u64, max_share: f64) -> u64 {
    if max_share >= 1.0 {
        return u64::MAX;
    }
    (before as f64 * max_share / (1.0 - max_share)).floor() as u64
}

impl Sync<'_> {
    /// Re-reads the children of the opportunities due in this run's slice of the pass,
    /// within the request budget.
    pub(crate) async fn rescan_children(&mut self) -> Result<()> {
        let endpoints = self.child_endpoints();
        let Some(mut rescan) = self.extra.rescan.take() else {
            return Ok(());
        };
        if self.rescan.interval_ms <= 0 || endpoints.is_empty() {
            self.extra.rescan = Some(rescan);
            return Ok(());
        }
        self.ctx.metrics.set_phase("re-scan of children");
        let now = self.ctx.started_at_ms;
        if rescan.pass_done() {
            rescan.next_pass(now);
        }
        let before = self.client.requests_sent();
        let share = budget(before, self.rescan.max_share);
        let per_opportunity = endpoints.len() as u64;
        let due = rescan.due(now, self.rescan.interval_ms);
        let needed = rescan.needed(now, self.rescan.interval_ms);
        let spent = |s: &Self| s.client.requests_sent() - before;
        // Opportunities this run may still re-scan: the floor, or the 80 % schedule as far as
        // the share of the run's requests allows.
        let allowed = |s: &Self, done: u64| {
            let left = share.saturating_sub(spent(s));
            needed
                .saturating_sub(done)
                .max(due.saturating_sub(done).min(left / per_opportunity))
        };
        let mut done: u64 = 0;
        for _ in 0..MAX_WINDOWS_PER_RUN {
            if rescan.pass_done() {
                break;
            }
            let forced = needed > done;
            // Listing costs a request too: within the share unless the floor asks for more.
            if !forced && spent(self) + 1 + per_opportunity > share || allowed(self, done) == 0 {
                break;
            }
            let (from, end) = rescan.window();
            let list_budget = if forced {
                u64::MAX
            } else {
                share - spent(self)
            };
            let Some(items) = self.list_created(from, end, list_budget).await? else {
                rescan.adapt_span(u64::MAX / 4, allowed(self, done).max(1));
                break; // the budget ran out while listing: a narrower window next time
            };
            let mut ahead: Vec<(i64, &str, Value<'_>)> = items
                .iter()
                .filter_map(|o| Some((ms_of(o.field("createdAt"))?, get_str(o, "id")?, o)))
                .filter(|(c, id, _)| rescan.is_ahead(*c, id))
                .collect();
            ahead.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let take = (ahead.len() as u64).min(allowed(self, done)) as usize;
            if take == 0 && !ahead.is_empty() {
                break;
            }
            let opps: Vec<Value<'_>> = ahead[..take].iter().map(|(_, _, o)| *o).collect();
            self.process_page(&opps, &endpoints).await?;
            done += take as u64;
            if take == ahead.len() {
                let wanted = allowed(self, done).max(take as u64);
                rescan.scanned += take as u64;
                rescan.passed_window(end, ahead.len() as u64, wanted);
            } else if let Some((c, id, _)) = ahead[..take].last() {
                rescan.scanned += take as u64 - 1;
                rescan.passed(*c, id);
                rescan.adapt_span(ahead.len() as u64, take as u64);
            }
            self.extra.rescan = Some(rescan.clone());
            self.checkpoint().await?;
        }
        if !rescan.pass_done()
            && rescan.due(now, self.rescan.interval_ms) > 0
            && now - rescan.pass_started_ms >= self.rescan.interval_ms
        {
            tracing::warn!(
                scanned = rescan.scanned,
                total = rescan.total,
                "the re-scan of the opportunities' children is behind its interval: sync more often"
            );
        }
        if rescan.pass_done() {
            // The next pass starts now, so passes follow each other without a gap.
            rescan.next_pass(now);
        }
        rescan.last_run_ms = Some(now);
        rescan.last_requests = spent(self);
        rescan.last_run_requests = self.client.requests_sent();
        tracing::debug!(
            requests = rescan.last_requests,
            scanned = rescan.scanned,
            "re-scan of children"
        );
        self.extra.rescan = Some(rescan);
        Ok(())
    }

    /// Every opportunity created in `[from, end]` (no lower bound without `from`), with its
    /// applications; `None` when listing would take more than `budget` requests.
    async fn list_created(
        &self,
        from: Option<i64>,
        end: i64,
        budget: u64,
    ) -> Result<Option<Items>> {
        let mut query = vec![self.conf_query(), ("expand", "applications".to_owned())];
        if let Some(f) = from {
            query.push(("created_at_start", f.to_string()));
        }
        query.push(("created_at_end", end.to_string()));
        let mut out = Items::default();
        let mut offset: Option<String> = None;
        let mut guard = PageGuard::default();
        for page_no in 1.. {
            if page_no > budget {
                return Ok(None);
            }
            self.cancelled()?;
            let page = match self
                .client
                .page(
                    "opportunities",
                    "/opportunities",
                    &query,
                    offset.as_deref(),
                    page_no,
                    inline_tables(),
                )
                .await
            {
                Ok(Some(p)) => p,
                Ok(None) => return Err(Error::upstream("GET /opportunities answered 404")),
                // The window is listed again by the next run.
                Err(PageError::InvalidOffset) => return Ok(None),
                Err(PageError::Other(e)) => return Err(e),
            };
            let at = PageRef {
                path: "/opportunities",
                page: page_no,
                offset: offset.as_deref(),
                tables: inline_tables(),
            };
            guard.check(at, &page)?;
            offset = page.next.clone();
            out.pages.push(page);
            if offset.is_none() {
                break;
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_budget_is_a_share_of_the_whole_run() {
        assert_eq!(budget(900, 0.1), 100);
        assert_eq!(budget(0, 0.1), 0);
        assert_eq!(budget(5, 1.0), u64::MAX);
        assert_eq!(budget(100, 0.0), 0);
    }

    #[test]
    fn the_pace_ends_a_pass_within_the_interval() {
        let r = Rescan::starting(0, 100, Some(-500 * DAY));
        assert_eq!(r.due(0, 30 * DAY), 0);
        assert_eq!(r.due(12 * DAY, 30 * DAY), 50);
        // From 80 % of the interval on, everything left of the pass is due (the count is an
        // estimate: a pass that counted them all may still have some to list).
        assert_eq!(r.due(24 * DAY, 30 * DAY), u64::MAX);
        assert_eq!(r.due(40 * DAY, 30 * DAY), u64::MAX);
        let unknown = Rescan::starting(0, 0, None);
        assert_eq!(unknown.due(DAY, 30 * DAY), u64::MAX);
    }

    #[test]
    fn the_floor_ends_a_pass_by_the_next_sync_past_the_interval() {
        let mut r = Rescan::starting(0, 100, Some(-500 * DAY));
        // The first run after the pass began: no time between syncs known yet.
        assert_eq!(r.needed(0, 30 * DAY), 0);
        r.last_run_ms = Some(0);
        // Syncs every 3 days: by the next one, 6 days of 30 must be done.
        assert_eq!(r.needed(3 * DAY, 30 * DAY), 20);
        r.scanned = 20;
        r.last_run_ms = Some(3 * DAY);
        assert_eq!(r.needed(6 * DAY, 30 * DAY), 10);
        // The last sync before the interval ends takes all that is left, even past the count.
        r.scanned = 100;
        r.last_run_ms = Some(24 * DAY);
        assert_eq!(r.needed(25 * DAY, 30 * DAY), 0, "ahead of the schedule");
        assert_eq!(r.needed(27 * DAY, 30 * DAY), u64::MAX);
        let empty = Rescan::starting(0, 0, None);
        assert_eq!(empty.needed(DAY, 30 * DAY), 0);
        assert_eq!(empty.needed(31 * DAY, 30 * DAY), u64::MAX);
    }

    #[test]
    fn the_position_orders_by_created_then_id() {
        let mut r = Rescan::starting(100 * DAY, 10, Some(0));
        assert_eq!(r.window(), (None, 7 * DAY - 1));
        assert!(r.is_ahead(0, "a"));
        r.passed(5, "m");
        assert!(!r.is_ahead(4, "z"));
        assert!(!r.is_ahead(5, "m"));
        assert!(r.is_ahead(5, "n"));
        assert!(r.is_ahead(6, "a"));
        r.passed_window(7 * DAY - 1, 3, 3);
        assert_eq!(r.window(), (Some(7 * DAY), 14 * DAY - 1));
        assert!(!r.pass_done());
        r.passed_window(100 * DAY, 0, 3);
        assert!(r.pass_done(), "past the pass's start");
        r.scanned = 42;
        r.next_pass(200 * DAY);
        assert_eq!((r.total, r.scanned, r.from_created_ms), (42, 0, None));
    }

    #[test]
    fn the_span_follows_the_density() {
        let mut r = Rescan::starting(0, 10, None);
        r.adapt_span(0, 10);
        assert_eq!(r.span_ms, 28 * DAY);
        r.adapt_span(100, 10);
        assert_eq!(r.span_ms, 7 * DAY);
        r.adapt_span(10, 10);
        assert_eq!(r.span_ms, 7 * DAY);
    }
}
