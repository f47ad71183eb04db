//! Priority-first walks: a full read of `/opportunities` in windows of `updatedAt`, newest
//! first, so that recent data is committed (with every child table) while older data is still
//! being read.
//!
//! The windows are fixed when the walk starts, from the server's clock (the anchor): with the
//! default ages of 1, 7, 30, 91 and 365 days, window 0 is `updated_at_start = anchor − 1 day`
//! (no end: "to now"), window `k` is `[anchor − age_k, anchor − age_(k−1) − 1 ms]` (Lever's
//! time filters are inclusive on both ends, so an `updatedAt` equal to a boundary is in exactly
//! one window), and the last window, *the rest*, is unfiltered: Lever's `updatedAt` filters
//! never return opportunities whose `updatedAt` is null, so only an unfiltered list reaches
//! them. The rest window processes the opportunities older than the oldest boundary (or
//! without `updatedAt`) and skips the ones an earlier window of the walk already read.
//!
//! An opportunity changed while the walk runs moves to a newer window: if that window was
//! already read, the walk may miss the change, exactly as a plain walk misses a change on a
//! page it already read; the cursor never passes the walk's start, so the next run reads it.

use serde::{Deserialize, Serialize};

/// Default window ages in days, newest first; the rest follows the last.
pub(crate) const DEFAULT_WINDOW_DAYS: [u32; 5] = [1, 7, 30, 91, 365];

const DAY_MS: i64 = 86_400_000;

/// The windows of a priority-first walk and which one is being read (kept in the state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Windows {
    /// Where each window starts (epoch ms), newest first, strictly decreasing.
    pub(crate) starts: Vec<i64>,
    /// The window being read: an index into `starts`, or `starts.len()` for the rest.
    pub(crate) current: usize,
}

/// One window of `updatedAt`, as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// `updated_at_start = start` and, when set, `updated_at_end = end` (both inclusive).
    Range { start: i64, end: Option<i64> },
    /// Unfiltered: the opportunities older than `older_than` or without `updatedAt`.
    Rest { older_than: i64 },
}

impl Windows {
    /// Windows `days` back from `anchor_ms` (ages in days, any order; duplicates and zeros
    /// dropped).
    pub(crate) fn plan(anchor_ms: i64, days: &[u32]) -> Windows {
        let mut ages: Vec<u32> = days.iter().copied().filter(|d| *d > 0).collect();
        ages.sort_unstable();
        ages.dedup();
        Windows {
            starts: ages
                .into_iter()
                .map(|d| anchor_ms - i64::from(d) * DAY_MS)
                .collect(),
            current: 0,
        }
    }

    /// The window being read, or `None` when every window is done.
    pub(crate) fn window(&self) -> Option<Window> {
        let k = self.current;
        match (self.starts.get(k), k) {
            (Some(&start), 0) => Some(Window::Range { start, end: None }),
            (Some(&start), _) => Some(Window::Range {
                start,
                end: Some(self.starts[k - 1] - 1),
            }),
            (None, _) if k == self.starts.len() => Some(Window::Rest {
                older_than: self.starts.last().copied().unwrap_or(i64::MAX),
            }),
            (None, _) => None,
        }
    }

    /// Moves on to the next window.
    pub(crate) fn advance(&mut self) {
        self.current = (self.current + 1).min(self.starts.len() + 1);
    }

    /// Whether every window has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.current > self.starts.len()
    }

    /// How far back the windows read so far reach: the start of the last window done
    /// (`None` before the first is done; `Some(i64::MIN)` once the rest is done).
    pub(crate) fn complete_back_to(&self) -> Option<i64> {
        match self.current {
            0 => None,
            k if k > self.starts.len() => Some(i64::MIN),
            k => Some(self.starts[k - 1]),
        }
    }

    /// Which window this is and how many there are, 1-based, for messages.
    pub(crate) fn position(&self) -> (usize, usize) {
        (self.current + 1, self.starts.len() + 1)
    }
}

impl Window {
    /// The `updated_at_*` filters of this window.
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        match *self {
            Window::Range { start, end } => {
                let mut q = vec![("updated_at_start", start.to_string())];
                if let Some(e) = end {
                    q.push(("updated_at_end", e.to_string()));
                }
                q
            }
            Window::Rest { .. } => Vec::new(),
        }
    }

    /// Whether an opportunity listed in this window, with this `updatedAt`, belongs to it:
    /// always in a filtered window; in the rest, only when older than every other window or
    /// without `updatedAt`.
    pub(crate) fn owns(&self, updated: Option<i64>) -> bool {
        match *self {
            Window::Range { .. } => true,
            Window::Rest { older_than } => updated.is_none_or(|u| u < older_than),
        }
    }
}

/// `ms` as `YYYY-MM-DD HH:MM UTC` (for messages and the state).
pub(crate) fn utc_minute(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn windows_go_back_in_time_and_share_no_instant() {
        let mut w = Windows::plan(ANCHOR, &[7, 1, 7, 0, 30]);
        assert_eq!(
            w.starts,
            [ANCHOR - DAY_MS, ANCHOR - 7 * DAY_MS, ANCHOR - 30 * DAY_MS]
        );
        assert_eq!(w.complete_back_to(), None);
        let mut seen = Vec::new();
        while let Some(win) = w.window() {
            seen.push(win);
            w.advance();
        }
        assert!(w.is_done());
        assert_eq!(w.complete_back_to(), Some(i64::MIN));
        assert_eq!(
            seen,
            [
                Window::Range {
                    start: ANCHOR - DAY_MS,
                    end: None
                },
                Window::Range {
                    start: ANCHOR - 7 * DAY_MS,
                    end: Some(ANCHOR - DAY_MS - 1)
                },
                Window::Range {
                    start: ANCHOR - 30 * DAY_MS,
                    end: Some(ANCHOR - 7 * DAY_MS - 1)
                },
                Window::Rest {
                    older_than: ANCHOR - 30 * DAY_MS
                },
            ]
        );
        // Every instant belongs to exactly one window (inclusive bounds), nulls to the rest.
        let contains = |win: &Window, t: i64| match *win {
            Window::Range { start, end } => t >= start && end.is_none_or(|e| t <= e),
            Window::Rest { older_than } => t < older_than,
        };
        for t in [
            ANCHOR + 5,
            ANCHOR - DAY_MS,
            ANCHOR - DAY_MS - 1,
            ANCHOR - 7 * DAY_MS,
            ANCHOR - 30 * DAY_MS,
            ANCHOR - 30 * DAY_MS - 1,
            0,
        ] {
            assert_eq!(seen.iter().filter(|w| contains(w, t)).count(), 1, "{t}");
        }
        assert!(seen[3].owns(None));
        assert!(!seen[3].owns(Some(ANCHOR - 30 * DAY_MS)));
        assert!(seen[1].owns(None), "a filtered window owns what it lists");
    }

    #[test]
    fn completeness_follows_the_windows_done() {
        let mut w = Windows::plan(ANCHOR, &DEFAULT_WINDOW_DAYS);
        w.advance();
        assert_eq!(w.complete_back_to(), Some(ANCHOR - DAY_MS));
        w.advance();
        assert_eq!(w.complete_back_to(), Some(ANCHOR - 7 * DAY_MS));
        assert_eq!(w.position(), (3, 6));
        assert_eq!(utc_minute(ANCHOR - 7 * DAY_MS), "2025-12-25 00:00 UTC");
        assert_eq!(utc_minute(951_782_400_000 + 61_000), "2000-02-29 00:01 UTC");
    }
}
