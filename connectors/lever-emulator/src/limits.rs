//! Rate limiting, fault injection and request counters.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::rng::{Rng, hash};

/// Token-bucket parameters of the emulated Lever rate limit (per credential).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Steady refill rate in requests per second (Lever: 10).
    pub per_second: f64,
    /// Bucket capacity: how many requests may burst (Lever: 20).
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 20,
        }
    }
}

/// Fault injection on data requests (`/v1/...`), deterministic from `seed` and the order in
/// which requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FaultConfig {
    /// Share of data requests answered with 500 or 503 (alternating deterministically).
    pub error_rate: f64,
    /// Share of data requests whose connection drops mid-body (the client sees a truncated
    /// body / connection error).
    pub drop_rate: f64,
    /// Seed of the fault sequence.
    pub seed: u64,
}

/// What to do with one data request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Status(u16),
    Drop,
}

impl FaultConfig {
    /// The fault (if any) for the `seq`-th data request.
    pub(crate) fn decide(&self, seq: u64) -> Option<Fault> {
        if self.error_rate <= 0.0 && self.drop_rate <= 0.0 {
            return None;
        }
        let mut r = Rng::new(&[self.seed, 0xFA17, seq]);
        let u = r.unit();
        if u < self.error_rate {
            Some(Fault::Status(
                if hash(&[self.seed, seq]).is_multiple_of(2) {
                    500
                } else {
                    503
                },
            ))
        } else if u < self.error_rate + self.drop_rate {
            Some(Fault::Drop)
        } else {
            None
        }
    }
}

/// A token bucket. Written by hand rather than with `governor` because the bucket *is* the
/// behaviour under test: its exact rules (start full at `burst`, refill continuously at
/// `per_second`, one token per request, reject without queueing) are the emulator's contract
/// and must stay visible and adjustable at runtime.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: &RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Takes one token if available.
    pub(crate) fn try_take(&mut self, limit: &RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets per credential.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    pub(crate) fn allow(&mut self, key: &str, limit: &RateLimit, now: Instant) -> bool {
        self.buckets
            .entry(key.to_string())
            .or_insert_with(|| Bucket::new(limit, now))
            .try_take(limit, now)
    }

    pub(crate) fn reset(&mut self) {
        self.buckets.clear();
    }
}

/// Counters of one endpoint (key like `GET /opportunities/:id/notes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounters {
    /// All requests that reached the endpoint.
    pub requests: u64,
    /// Answers with status 200.
    pub ok: u64,
    /// Answers 429.
    pub rate_limited: u64,
    /// Answers 5xx (injected or not).
    pub server_errors: u64,
    /// Connections dropped mid-body by fault injection.
    pub dropped: u64,
    /// Count per HTTP status (dropped requests count under their nominal status 200).
    pub by_status: BTreeMap<u16, u64>,
}

/// Request counters of the emulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Per endpoint; unknown routes count under `UNMATCHED`.
    pub by_endpoint: BTreeMap<String, EndpointCounters>,
    /// All counted requests (data routes, OAuth token route and unknown routes; admin excluded).
    pub total: u64,
    /// Requests answered 429.
    pub rate_limited: u64,
    /// Injected faults (5xx answers plus dropped bodies).
    pub faults: u64,
    /// Injected dropped bodies.
    pub dropped: u64,
    /// The most data requests that were inside their added latency at the same time (how
    /// concurrent the clients were; 0 when no latency is configured).
    #[serde(default)]
    pub max_in_flight: u64,
}

impl Counters {
    pub(crate) fn record(&mut self, endpoint: &str, status: u16, injected: bool, dropped: bool) {
        let e = self.by_endpoint.entry(endpoint.to_string()).or_default();
        e.requests += 1;
        *e.by_status.entry(status).or_default() += 1;
        self.total += 1;
        if dropped {
            e.dropped += 1;
            self.dropped += 1;
        } else if status == 200 {
            e.ok += 1;
        }
        if status == 429 {
            e.rate_limited += 1;
            self.rate_limited += 1;
        }
        if status >= 500 {
            e.server_errors += 1;
        }
        if injected || dropped {
            self.faults += 1;
        }
    }

    /// Counters of one endpoint (zero if never hit).
    pub fn endpoint(&self, key: &str) -> EndpointCounters {
        self.by_endpoint.get(key).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_bursts_then_refills() {
        let limit = RateLimit {
            per_second: 10.0,
            burst: 20,
        };
        let t0 = Instant::now();
        let mut b = Bucket::new(&limit, t0);
        assert_eq!((0..25).filter(|_| b.try_take(&limit, t0)).count(), 20);
        assert!(b.try_take(&limit, t0 + Duration::from_millis(150)));
        assert!(!b.try_take(&limit, t0 + Duration::from_millis(150)));
    }

    #[test]
    fn faults_follow_rates() {
        let f = FaultConfig {
            error_rate: 0.2,
            drop_rate: 0.1,
            seed: 7,
        };
        let n = 10_000;
        let errors = (0..n)
            .filter(|&s| matches!(f.decide(s), Some(Fault::Status(_))))
            .count();
        let drops = (0..n).filter(|&s| f.decide(s) == Some(Fault::Drop)).count();
        assert!((1700..2300).contains(&errors), "{errors}");
        assert!((800..1200).contains(&drops), "{drops}");
        assert_eq!(f.decide(17), f.decide(17));
    }
}
