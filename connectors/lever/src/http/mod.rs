//! The HTTP client: one shared rate limiter per account, bounded retries with jittered
//! exponential backoff, OAuth refresh, and offset pagination.

pub(crate) mod auth;

use crate::json::{Array as JsonArray, Doc, Field, Kind, Value};
use auth::{Auth, without_url};
use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use sluice_core::CpuPhase;
use sluice_core::{Error, Metrics, Result};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Retries of an HTTP 200 whose body is not valid JSON (a proxy hiccup heals at once; a
/// server that keeps sending garbage does not).
const MAX_GARBLED_RETRIES: u32 = 2;

/// Longest wait honoured from a `Retry-After` / `X-RateLimit-Reset` header.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(120);

/// Default total time one request may spend retrying ([`ClientOptions::max_retry_time`]).
pub(crate) const DEFAULT_MAX_RETRY_SECS: u64 = 300;

/// Default cap on the size of one response body ([`ClientOptions::max_body_bytes`]).
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 64 << 20;

/// Most pages one list walk may have: 10 million items at 100 a page, more than any Lever
/// list holds. A server that keeps answering `hasNext` past it is looping.
const MAX_PAGES: u64 = 100_000;

/// Most empty pages in a row that still announce a next page.
const MAX_EMPTY_PAGES_IN_A_ROW: u32 = 50;

/// First and longest account-wide pause after a 429 without a server hint.
const THROTTLE_MIN: Duration = Duration::from_millis(100);
const THROTTLE_MAX: Duration = Duration::from_secs(4);

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub(crate) base_url: String,
    pub(crate) rate_per_second: u32,
    pub(crate) burst: u32,
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) page_size: u32,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    /// Total time one request may spend retrying, waits included (default
    /// [`DEFAULT_MAX_RETRY_SECS`]): past it, the request fails even with retries left.
    pub(crate) max_retry_time: Duration,
    /// Largest response body accepted, in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub(crate) max_body_bytes: u64,
    /// Proxy, extra CAs, client certificate, TLS floor (`[source.network]`).
    pub(crate) network: sluice_net::Network,
}

/// A shared Lever client (cheap to clone).
#[derive(Clone)]
pub(crate) struct Client(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    auth: Auth,
    limiter: DefaultDirectRateLimiter,
    pause: AccountPause,
    opts: ClientOptions,
    metrics: Metrics,
    cancel: CancellationToken,
    /// The server's clock (`Date`, epoch ms) on the latest successful answer; 0 before one.
    server_clock_ms: std::sync::atomic::AtomicI64,
    /// Requests sent (retries included).
    sent: std::sync::atomic::AtomicU64,
}

/// Why a walk over pages must restart.
#[derive(Debug)]
pub(crate) enum PageError {
    /// Lever rejected the offset token: restart the walk from its last safe point.
    InvalidOffset,
    /// Anything else.
    Other(Error),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError::Other(e)
    }
}

/// The pause every request of the account waits out before it is sent: set by a 429 (for
/// as long as the server asks, or growing from 100 ms to 4 s over 429s without a hint), so
/// that one throttled request slows all of them.
///
/// Only a 429 to a request sent after the latest growth grows the pause again: when many
/// requests are in flight at once, their 429s are one answer (the server was out of
/// capacity at that moment), not evidence that the last pause was too short. Counting each
/// of them would send the pause to its maximum on a single burst and leave the account idle
/// most of the time.
#[derive(Debug, Default)]
pub(crate) struct AccountPause {
    state: Mutex<PauseState>,
}

#[derive(Debug, Default)]
struct PauseState {
    /// When the pause ends.
    until: Option<Instant>,
    /// When the pause last grew on a 429 without a hint.
    grown_at: Option<Instant>,
    /// Growths since the last success.
    streak: u32,
}

impl AccountPause {
    /// Keeps every request waiting for at least `wait` from now.
    pub(crate) fn extend(&self, wait: Duration) {
        let mut p = self.state.lock().expect("pause lock");
        let until = Instant::now() + wait;
        if p.until.is_none_or(|t| t < until) {
            p.until = Some(until);
        }
    }

    /// A 429 without a hint to a request sent at `sent_at`: returns how long that request
    /// waits before its retry. If the request was sent after the pause last grew, the pause
    /// grows (a jittered delay doubling from [`THROTTLE_MIN`] up to [`THROTTLE_MAX`]) and
    /// every request of the account waits it out; otherwise the request only waits for the
    /// current pause to end.
    pub(crate) fn throttled_without_hint(&self, sent_at: Instant) -> Duration {
        let now = Instant::now();
        let mut p = self.state.lock().expect("pause lock");
        if p.grown_at.is_some_and(|t| sent_at < t) {
            return p
                .until
                .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        }
        let exponent = p.streak.min(16);
        p.streak = p.streak.saturating_add(1);
        let base = THROTTLE_MIN.saturating_mul(1 << exponent).min(THROTTLE_MAX);
        let delay = base.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        p.grown_at = Some(now);
        let until = now + delay;
        if p.until.is_none_or(|t| t < until) {
            p.until = Some(until);
        }
        delay
    }

    /// A request succeeded: the next 429 without a hint starts the pauses over.
    pub(crate) fn relax(&self) {
        self.state.lock().expect("pause lock").streak = 0;
    }

    /// When the pause ends, if one is set.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.state.lock().expect("pause lock").until
    }

    /// Waits until the pause is over.
    async fn wait(&self) {
        if let Some(until) = self.until()
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// One page of a list endpoint: its parsed body (whose strings the items borrow), the offset
/// token of the next page and the server's clock when it answered.
#[derive(Debug)]
pub(crate) struct Page {
    body: Doc,
    pub(crate) next: Option<String>,
    /// The answer's `Date` header (epoch ms), if it had a valid one.
    pub(crate) server_time_ms: Option<i64>,
}

/// Checks that a walk over pages ends: an offset token is never answered twice, empty pages
/// announcing more do not go on and on, and there are no more pages than any list holds.
#[derive(Debug, Default)]
pub(crate) struct PageGuard {
    tokens: HashSet<String>,
    empty_run: u32,
    pages: u64,
}

impl PageGuard {
    /// A guard for a walk that resumes at `offset` after `pages` pages.
    pub(crate) fn resuming(offset: Option<&str>, pages: u64) -> PageGuard {
        PageGuard {
            tokens: offset.map(str::to_owned).into_iter().collect(),
            empty_run: 0,
            pages,
        }
    }

    /// Accepts `page` (read at `at`) or says why the walk would never end.
    pub(crate) fn check(&mut self, at: PageRef<'_>, page: &Page) -> Result<()> {
        self.pages += 1;
        let Some(next) = &page.next else {
            return Ok(());
        };
        if self.pages >= MAX_PAGES {
            return Err(Error::upstream(format!(
                "{at}: Lever announces a next page after {MAX_PAGES} pages, more than any list holds; the list would never end"
            )));
        }
        if page.data().is_empty() {
            self.empty_run += 1;
        } else {
            self.empty_run = 0;
        }
        if self.empty_run > MAX_EMPTY_PAGES_IN_A_ROW {
            return Err(Error::upstream(format!(
                "{at}: Lever answered {} empty pages in a row that each announce a next page; the list would never end",
                self.empty_run
            )));
        }
        if !self.tokens.insert(next.clone()) {
            return Err(Error::upstream(format!(
                "{at}: Lever answered the offset token {next} a second time; the list would never end"
            )));
        }
        Ok(())
    }
}

impl Page {
    /// The page's items.
    pub(crate) fn data(&self) -> JsonArray<'_> {
        list_of(self.body.value()).unwrap_or_else(|_| JsonArray::empty())
    }
}

/// Every item of a list endpoint, over one or more pages.
#[derive(Debug, Default)]
pub(crate) struct Items {
    pub(crate) pages: Vec<Page>,
}

impl Items {
    /// The items, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Value<'_>> {
        self.pages.iter().flat_map(Page::data)
    }

    /// How many items there are.
    pub(crate) fn len(&self) -> usize {
        self.pages.iter().map(|p| p.data().len()).sum()
    }
}

/// A successful answer: the parsed body and the server's clock (`Date`, epoch ms).
pub(crate) struct Answer {
    body: Doc,
    server_time_ms: Option<i64>,
}

enum Outcome {
    Done(Answer),
    NotFound,
    Retry {
        why: String,
        wait: Option<Duration>,
        throttled: bool,
    },
    /// HTTP 200 with a body that is not JSON.
    Garbled(String),
    Fail(PageError),
}

/// Which page of which endpoint, feeding which tables: the context of errors about a page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRef<'a> {
    /// The request path (`/opportunities`, `/opportunities/<id>/notes`).
    pub(crate) path: &'a str,
    /// 1-based page number within this walk.
    pub(crate) page: u64,
    /// The offset token the page was requested with.
    pub(crate) offset: Option<&'a str>,
    /// The tables the endpoint feeds.
    pub(crate) tables: &'a [&'a str],
}

impl std::fmt::Display for PageRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GET {} page {}", self.path, self.page)?;
        match self.offset {
            Some(o) => write!(f, " (offset token {o})")?,
            None => write!(f, " (no offset token)")?,
        }
        write!(f, " for table")?;
        if self.tables.len() > 1 {
            write!(f, "s")?;
        }
        write!(f, " {}", self.tables.join(", "))
    }
}

impl Client {
    /// A client for `opts` authenticating with `auth`.
    pub(crate) fn new(
        opts: ClientOptions,
        auth: Auth,
        metrics: Metrics,
        cancel: CancellationToken,
    ) -> Result<Client> {
        let http = http_client(opts.timeout, &opts.network)?;
        let quota = Quota::per_second(NonZeroU32::new(opts.rate_per_second.max(1)).expect("≥1"))
            .allow_burst(NonZeroU32::new(opts.burst.max(1)).expect("≥1"));
        Ok(Client(Arc::new(Inner {
            http,
            auth,
            limiter: RateLimiter::direct(quota),
            pause: AccountPause::default(),
            opts,
            metrics,
            cancel,
            server_clock_ms: std::sync::atomic::AtomicI64::new(0),
            sent: std::sync::atomic::AtomicU64::new(0),
        })))
    }

    /// The server's clock (`Date`) on the latest successful answer, if one carried it.
    pub(crate) fn server_clock_ms(&self) -> Option<i64> {
        let ms = self
            .0
            .server_clock_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        (ms != 0).then_some(ms)
    }

    /// Requests this client has sent so far (retries included).
    pub(crate) fn requests_sent(&self) -> u64 {
        self.0.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The page size of list requests.
    pub(crate) fn page_size(&self) -> u32 {
        self.0.opts.page_size
    }

    /// GETs `path` with `query`; `label` names the endpoint in metrics and errors. Returns
    /// `None` on 404.
    pub(crate) async fn get(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> std::result::Result<Option<Answer>, PageError> {
        let fetch = self.get_unmetered(label, path, query);
        self.0.metrics.metered(CpuPhase::Fetch, fetch).await
    }

    async fn get_unmetered(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> std::result::Result<Option<Answer>, PageError> {
        let inner = &*self.0;
        let began = Instant::now();
        let url = format!("{}{}", inner.opts.base_url, path);
        let mut backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(inner.opts.min_backoff)
            .with_max_delay(inner.opts.max_backoff)
            .with_factor(2.0)
            .without_max_times()
            .build();
        let mut failures = 0u32;
        let mut throttles = 0u32;
        let mut garbled = 0u32;
        let throttle_bound = inner.opts.max_retries + 24;
        loop {
            if inner.cancel.is_cancelled() {
                return Err(Error::cancelled().into());
            }
            self.wait_turn().await?;
            let sent_at = Instant::now();
            inner.metrics.request(label);
            inner
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let header = inner.auth.header(&inner.http).await?;
            let sent = inner
                .http
                .get(&url)
                .query(query)
                .header(reqwest::header::AUTHORIZATION, header.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .send();
            let outcome = tokio::select! {
                _ = inner.cancel.cancelled() => return Err(Error::cancelled().into()),
                r = self.attempt(sent, &header, path, label) => r,
            };
            match outcome {
                Outcome::Done(v) => {
                    inner.pause.relax();
                    return Ok(Some(v));
                }
                Outcome::NotFound => return Ok(None),
                Outcome::Fail(e) => return Err(e),
                Outcome::Garbled(why) if garbled >= MAX_GARBLED_RETRIES => {
                    return Err(Error::upstream(format!(
                        "GET {path} ({label}) answered HTTP 200 with a body that is not valid JSON, {} times in a row: {why}",
                        garbled + 1
                    ))
                    .into());
                }
                Outcome::Garbled(why) => {
                    garbled += 1;
                    inner.metrics.retry();
                    let delay = backoff.next().unwrap_or(inner.opts.max_backoff);
                    self.within_budget(path, label, began, delay, garbled, &why)?;
                    tracing::debug!(endpoint = label, %why, delay_ms = delay.as_millis() as u64, "retrying request");
                    tokio::select! {
                        _ = inner.cancel.cancelled() => return Err(Error::cancelled().into()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Outcome::Retry {
                    why,
                    wait,
                    throttled,
                } => {
                    let exhausted = if throttled {
                        inner.metrics.throttled();
                        throttles += 1;
                        throttles > throttle_bound
                    } else {
                        failures += 1;
                        failures > inner.opts.max_retries
                    };
                    if exhausted {
                        return Err(Error::upstream(format!(
                            "GET {path} ({label}) still failing after {} attempts: {why}",
                            failures + throttles
                        ))
                        .into());
                    }
                    inner.metrics.retry();
                    let delay = match (wait, throttled) {
                        (Some(w), _) => w,
                        // Every request of the account waits, not just this one.
                        (None, true) => inner.pause.throttled_without_hint(sent_at),
                        (None, false) => backoff.next().unwrap_or(inner.opts.max_backoff),
                    };
                    self.within_budget(path, label, began, delay, failures + throttles, &why)?;
                    if let (true, Some(w)) = (throttled, wait) {
                        // The server said how long the whole account must wait.
                        inner.pause.extend(w);
                    }
                    tracing::debug!(endpoint = label, %why, delay_ms = delay.as_millis() as u64, "retrying request");
                    tokio::select! {
                        _ = inner.cancel.cancelled() => return Err(Error::cancelled().into()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Fails the request when waiting `delay` more would take its retries past
    /// [`ClientOptions::max_retry_time`].
    fn within_budget(
        &self,
        path: &str,
        label: &str,
        began: Instant,
        delay: Duration,
        attempts: u32,
        why: &str,
    ) -> std::result::Result<(), PageError> {
        let budget = self.0.opts.max_retry_time;
        if began.elapsed() + delay <= budget {
            return Ok(());
        }
        Err(Error::upstream(format!(
            "GET {path} ({label}) still failing after {} attempts, and retrying in {:.1} s would pass the retry budget of {} s (max_retry_secs): {why}",
            attempts + 1,
            delay.as_secs_f64(),
            budget.as_secs()
        ))
        .into())
    }

    async fn wait_turn(&self) -> Result<()> {
        self.0.pause.wait().await;
        self.0.limiter.until_ready().await;
        Ok(())
    }

    async fn attempt(
        &self,
        sent: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
        header: &reqwest::header::HeaderValue,
        path: &str,
        label: &str,
    ) -> Outcome {
        let inner = &*self.0;
        let resp = match sent.await {
            Ok(r) => {
                inner.metrics.response(label, Some(r.status().as_u16()));
                r
            }
            Err(e) => {
                inner.metrics.response(label, None);
                // A TLS failure (untrusted certificate, client certificate refused, no shared
                // version) does not heal with retries: say which setting fixes it.
                let host = e
                    .url()
                    .map(|u| {
                        let h = u.host_str().unwrap_or_default();
                        u.port().map_or(h.to_owned(), |p| format!("{h}:{p}"))
                    })
                    .unwrap_or_else(|| label.to_owned());
                if let Some(why) = inner.opts.network.explain(&e, &host) {
                    return Outcome::Fail(PageError::Other(
                        Error::config(why).with_retryable(false),
                    ));
                }
                return Outcome::Retry {
                    why: without_url(&e),
                    wait: None,
                    throttled: false,
                };
            }
        };
        let status = resp.status();
        let server_time_ms = header_time_ms(resp.headers(), "date");
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Outcome::Retry {
                why: "HTTP 429 (rate limited)".into(),
                wait: server_wait(resp.headers()),
                throttled: true,
            };
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            return Outcome::Retry {
                why: format!("HTTP {}", status.as_u16()),
                wait: server_wait(resp.headers()),
                throttled: false,
            };
        }
        if status == StatusCode::UNAUTHORIZED {
            return match inner.auth.on_unauthorized(&inner.http, header).await {
                Ok(true) => Outcome::Retry {
                    why: "HTTP 401 (access token refreshed)".into(),
                    wait: Some(Duration::ZERO),
                    throttled: false,
                },
                Ok(false) => Outcome::Fail(PageError::Other(Error::auth(format!(
                    "Lever rejected the credentials (HTTP 401 on {label}): {}",
                    inner.auth.advice()
                )))),
                Err(e) => Outcome::Fail(PageError::Other(e)),
            };
        }
        if status == StatusCode::FORBIDDEN {
            return Outcome::Fail(PageError::Other(Error::auth(format!(
                "Lever denied access to {label} (HTTP 403): {}; for confidential data the key needs confidential access, or set [source].confidential = false; or block the tables of this endpoint",
                inner.auth.advice()
            ))));
        }
        if status == StatusCode::NOT_FOUND {
            return Outcome::NotFound;
        }
        let cap = inner.opts.max_body_bytes;
        let body = match read_capped(resp, cap).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(seen)) => {
                return Outcome::Fail(PageError::Other(
                    Error::upstream(format!(
                        "GET {path} ({label}): the answer is larger than the {cap}-byte cap (max_body_bytes; {seen} bytes or more)"
                    ))
                    .with_retryable(false),
                ));
            }
            Err(BodyError::Transport(e)) => {
                return Outcome::Retry {
                    why: format!(
                        "connection dropped while reading the body: {}",
                        without_url(&e)
                    ),
                    wait: None,
                    throttled: false,
                };
            }
        };
        if status == StatusCode::BAD_REQUEST {
            let text = String::from_utf8_lossy(&body);
            if text.to_ascii_lowercase().contains("invalid offset token")
                || text
                    .to_ascii_lowercase()
                    .contains("offset token is invalid")
            {
                return Outcome::Fail(PageError::InvalidOffset);
            }
            return Outcome::Fail(PageError::Other(
                Error::upstream(format!(
                    "Lever rejected the request for {label} (HTTP 400): {}",
                    error_message(&body)
                ))
                .with_retryable(false),
            ));
        }
        if !status.is_success() {
            return Outcome::Fail(PageError::Other(
                Error::upstream(format!(
                    "Lever answered HTTP {} for {label}: {}",
                    status.as_u16(),
                    error_message(&body)
                ))
                .with_retryable(false),
            ));
        }
        let parsed = self
            .0
            .metrics
            .cpu_phase(CpuPhase::Decode, || Doc::parse_bytes(body));
        match parsed {
            Ok(body) => {
                if let Some(ms) = server_time_ms {
                    self.0
                        .server_clock_ms
                        .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
                }
                Outcome::Done(Answer {
                    body,
                    server_time_ms,
                })
            }
            // A complete HTTP 200 body that is not JSON (truncated or garbled by a proxy):
            // retried a little (a dropped connection is a transport error, retried above).
            Err(e) => Outcome::Garbled(e.to_string()),
        }
    }

    /// Fetches page `page_no` (1-based, for messages) of a list endpoint feeding `tables`.
    /// Upstream errors name the endpoint, the page and the tables; a body that is not a list
    /// envelope, or an item without its `id`, is such an error.
    pub(crate) async fn page(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
        offset: Option<&str>,
        page_no: u64,
        tables: &[&str],
    ) -> std::result::Result<Option<Page>, PageError> {
        let at = PageRef {
            path,
            page: page_no,
            offset,
            tables,
        };
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", self.page_size().to_string()));
        if let Some(o) = offset {
            q.push(("offset", o.to_owned()));
        }
        let v = match self.get(label, path, &q).await {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(None),
            Err(PageError::Other(e)) if e.kind() == sluice_core::ErrorKind::Upstream => {
                return Err(PageError::Other(e.context(at)));
            }
            Err(e) => return Err(e),
        };
        let server_time_ms = v.server_time_ms;
        let mut page = into_page(v.body).map_err(|why| {
            Error::upstream(format!(
                "{at}: the answer is not a Lever list envelope ({why})"
            ))
            .with_retryable(false)
        })?;
        if let Err(why) = check_ids(page.data(), label) {
            return Err(Error::upstream(format!(
                "{at}: {why}; the rows cannot be keyed, nothing of this page was written (block the table(s) to sync the rest)"
            ))
            .with_retryable(false)
            .into());
        }
        page.server_time_ms = server_time_ms;
        Ok(Some(page))
    }

    /// Every item of a list endpoint (small lists: lookups, one opportunity's children).
    /// Returns `None` on 404. An invalid offset token restarts the walk from the beginning.
    pub(crate) async fn list_all(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
        tables: &[&str],
    ) -> Result<Option<Items>> {
        let mut restarts = 0;
        'walk: loop {
            let mut out = Items::default();
            let mut offset: Option<String> = None;
            let mut page_no = 0;
            let mut guard = PageGuard::default();
            loop {
                page_no += 1;
                match self
                    .page(label, path, query, offset.as_deref(), page_no, tables)
                    .await
                {
                    Ok(None) => return Ok(None),
                    Ok(Some(page)) => {
                        let at = PageRef {
                            path,
                            page: page_no,
                            offset: offset.as_deref(),
                            tables,
                        };
                        guard.check(at, &page)?;
                        offset = page.next.clone();
                        out.pages.push(page);
                        if offset.is_none() {
                            return Ok(Some(out));
                        }
                    }
                    Err(PageError::InvalidOffset) if restarts < 3 => {
                        restarts += 1;
                        tracing::warn!(
                            endpoint = label,
                            "invalid offset token; restarting the list"
                        );
                        continue 'walk;
                    }
                    Err(PageError::InvalidOffset) => {
                        return Err(Error::upstream(format!(
                            "GET {path} ({label}): Lever keeps rejecting its own offset tokens"
                        )));
                    }
                    Err(PageError::Other(e)) => return Err(e),
                }
            }
        }
    }
}

/// The JSON kind of `v`, for messages.
pub(crate) fn kind_of(v: Value<'_>) -> &'static str {
    match v.kind() {
        Kind::Null => "null",
        Kind::Bool(_) => "a boolean",
        Kind::Number(_) => "a number",
        Kind::Str(_) => "a string",
        Kind::Array(_) => "an array",
        Kind::Object(_) => "an object",
    }
}

/// Normalizes the envelope variants of list responses: `{"data": [...], "hasNext", "next"}`,
/// `{"data": {"eeoResponses": [...]}}` and a bare array (API.md §2: some list examples are
/// shown without the wrapper). Anything else (no `data`, `data` not a list) is an error: an
/// empty list would silently delete rows, a guessed single item would write garbage.
pub(crate) fn into_page(body: Doc) -> std::result::Result<Page, String> {
    let v = body.value();
    list_of(v)?;
    let next = match v.kind() {
        Kind::Object(o) => next_token(o.field("hasNext"), o.field("next"))?,
        _ => None,
    };
    Ok(Page {
        body,
        next,
        server_time_ms: None,
    })
}

/// The offset token of the next page from `hasNext` and `next`. `hasNext: true` without a
/// usable token is an error: taking it for the end would truncate the list (and delete the
/// rest downstream).
fn next_token(
    has_next: Option<Value<'_>>,
    next: Option<Value<'_>>,
) -> std::result::Result<Option<String>, String> {
    let token = next
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty());
    match (has_next.and_then(Value::as_bool), token) {
        (Some(false), _) => Ok(None),
        (Some(true), None) => Err(match next {
            None => "`hasNext` is true but there is no `next` offset token".to_owned(),
            Some(n) => format!(
                "`hasNext` is true but `next` is {}, not an offset token",
                kind_of(n)
            ),
        }),
        (_, t) => Ok(t.map(str::to_owned)),
    }
}

/// The item list of a list response (see [`into_page`]), or why there is none.
fn list_of(v: Value<'_>) -> std::result::Result<JsonArray<'_>, String> {
    match v.kind() {
        Kind::Object(o) => match o.field("data").map(|d| (d, d.kind())) {
            Some((_, Kind::Array(a))) => Ok(a),
            Some((_, Kind::Object(d))) => match d.field("eeoResponses").map(Value::kind) {
                Some(Kind::Array(a)) => Ok(a),
                _ => Err("`data` is an object, not a list".into()),
            },
            Some((other, _)) => Err(format!("`data` is {}, not a list", kind_of(other))),
            None => {
                let mut keys: Vec<&str> = o.iter().map(|(k, _)| k).take(5).collect();
                keys.sort_unstable();
                Err(format!(
                    "no `data` field (fields: {})",
                    if keys.is_empty() {
                        "none".to_owned()
                    } else {
                        keys.join(", ")
                    }
                ))
            }
        },
        Kind::Array(a) => Ok(a),
        _ => Err(format!("the body is {}", kind_of(v))),
    }
}

/// Every item of a page must be an object with a non-empty string `id` (the primary key of
/// the table it feeds, or the parent key of its child rows); an opportunity's expanded
/// applications too.
pub(crate) fn check_ids(items: JsonArray<'_>, label: &str) -> std::result::Result<(), String> {
    let n = items.len();
    for (i, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            return Err(format!(
                "item {} of {n} is {}, not an object",
                i + 1,
                kind_of(item)
            ));
        };
        match o.get("id").map(|id| (id, id.kind())) {
            Some((_, Kind::Str(s))) if !s.is_empty() => {}
            None | Some((_, Kind::Null)) => {
                return Err(format!("item {} of {n} has no `id`", i + 1));
            }
            Some((other, _)) => {
                return Err(format!(
                    "item {} of {n} has an `id` that is {}, not a string",
                    i + 1,
                    kind_of(other)
                ));
            }
        }
        if label == "opportunities"
            && let Some(apps) = o.get("applications").and_then(Value::as_array)
        {
            for a in apps {
                if let Some(a) = a.as_object()
                    && a.get("id")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s.is_empty())
                {
                    return Err(format!(
                        "item {} of {n} (opportunity {}) has an application without a string `id` (table application)",
                        i + 1,
                        o.get("id").and_then(Value::as_str).unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .replace('\n', " ")
                .trim()
                .to_owned()
        })
}

/// The wait a 429/5xx answer asks for: `Retry-After` (seconds, or an HTTP date, read against
/// the answer's `Date`) or `X-RateLimit-Reset` (seconds to wait, or an epoch in seconds or
/// milliseconds). Values that are negative or in the past mean no wait; values that are not
/// numbers or dates are ignored; huge ones are capped at two minutes.
fn server_wait(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let local_now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let server_now_ms = header_time_ms(h, "date").unwrap_or(local_now_ms);
    let text = |name: &str| h.get(name)?.to_str().ok().map(str::trim);
    let secs = if let Some(v) = text("retry-after") {
        match finite_number(v) {
            Some(s) => s,
            None => (parse_http_date(v)? - server_now_ms) as f64 / 1000.0,
        }
    } else {
        let r = finite_number(text("x-ratelimit-reset")?)?;
        let now = local_now_ms as f64 / 1000.0;
        if r > 1e12 {
            r / 1000.0 - now
        } else if r > 1e9 {
            r - now
        } else {
            r
        }
    };
    Some(Duration::from_secs_f64(
        secs.clamp(0.0, MAX_SERVER_WAIT.as_secs_f64()),
    ))
}

/// `v` as a finite number.
fn finite_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The time in header `name` (an HTTP date), epoch ms.
fn header_time_ms(h: &reqwest::header::HeaderMap, name: &str) -> Option<i64> {
    parse_http_date(h.get(name)?.to_str().ok()?.trim())
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the form HTTP/1.1 senders must
/// use) into epoch ms.
pub(crate) fn parse_http_date(v: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT"
        || parts.next().is_some()
        || !(1..=31).contains(&day)
        || !(0..=9999).contains(&year)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

/// Why a body was not read.
enum BodyError {
    /// Past the cap: at least this many bytes.
    TooLarge(u64),
    /// The connection failed.
    Transport(reqwest::Error),
}

/// Reads a body of at most `cap` bytes.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
) -> std::result::Result<bytes::Bytes, BodyError> {
    if let Some(len) = resp.content_length()
        && len > cap
    {
        return Err(BodyError::TooLarge(len));
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if (buf.len() + chunk.len()) as u64 > cap {
            return Err(BodyError::TooLarge((buf.len() + chunk.len()) as u64));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The pooled HTTP client (rustls, per-request timeout, `[source.network]` applied).
pub(crate) fn http_client(
    timeout: Duration,
    network: &sluice_net::Network,
) -> Result<reqwest::Client> {
    network
        .apply(reqwest::Client::builder())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(20)))
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("sluice-source-lever/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal("building the HTTP client").with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::Ordering;

    fn ov(v: serde_json::Value) -> Doc {
        Doc::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn envelopes_are_normalized() {
        let p = into_page(ov(
            json!({"data": [{"id": 1}], "hasNext": true, "next": "tok"}),
        ))
        .unwrap();
        assert_eq!(p.data().len(), 1);
        assert_eq!(p.next.as_deref(), Some("tok"));
        let p = into_page(ov(json!({"data": [], "hasNext": false, "next": "x"}))).unwrap();
        assert!(p.next.is_none());
        assert_eq!(
            into_page(ov(json!([{"a": 1}, {"a": 2}])))
                .unwrap()
                .data()
                .len(),
            2
        );
        assert_eq!(
            into_page(ov(json!({"data": {"eeoResponses": [{}, {}]}})))
                .unwrap()
                .data()
                .len(),
            2
        );
        // Not a list envelope: errors, never a guessed single item or an empty list.
        let e = into_page(ov(json!({"id": "x", "fields": []}))).unwrap_err();
        assert!(e.contains("no `data`") && e.contains("fields, id"), "{e}");
        assert!(into_page(ov(json!({}))).is_err());
        assert!(
            into_page(ov(json!({"data": "x"})))
                .unwrap_err()
                .contains("a string")
        );
        assert!(into_page(ov(json!({"data": null}))).is_err());
        assert!(into_page(ov(json!({"data": {"id": "x"}}))).is_err());
        assert!(into_page(ov(json!(5))).is_err());
    }

    #[test]
    fn items_need_a_string_id() {
        let list = |v: serde_json::Value| crate::json::bv(v).as_array().unwrap();
        assert!(check_ids(list(json!([{"id": "a"}])), "users").is_ok());
        let e = check_ids(list(json!([{"id": "a"}, {"name": "x"}])), "users").unwrap_err();
        assert_eq!(e, "item 2 of 2 has no `id`");
        assert!(
            check_ids(list(json!([{"id": 5}])), "users")
                .unwrap_err()
                .contains("a number")
        );
        assert!(
            check_ids(list(json!(["a"])), "users")
                .unwrap_err()
                .contains("a string")
        );
        let opp = json!([{"id": "o", "applications": [{"type": "posting"}]}]);
        assert!(
            check_ids(list(opp.clone()), "opportunities")
                .unwrap_err()
                .contains("application")
        );
        assert!(check_ids(list(opp), "users").is_ok());
    }

    #[test]
    fn server_wait_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_secs(2)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-reset", "1".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_secs(1)));
        assert_eq!(server_wait(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn server_wait_survives_any_header() {
        let wait = |v: &str| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("retry-after", v.parse().unwrap());
            h.insert("date", "Sun, 01 Mar 2026 00:00:00 GMT".parse().unwrap());
            server_wait(&h)
        };
        assert_eq!(wait("-3"), Some(Duration::ZERO));
        assert_eq!(wait("1e300"), Some(MAX_SERVER_WAIT));
        assert_eq!(wait("inf"), None);
        assert_eq!(wait("NaN"), None);
        assert_eq!(wait("later"), None);
        assert_eq!(
            wait("Sun, 01 Mar 2026 00:00:30 GMT"),
            Some(Duration::from_secs(30)),
            "a date is read against the answer's Date"
        );
        assert_eq!(wait("Sat, 28 Feb 2026 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(wait("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_SERVER_WAIT));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            parse_http_date("Sun, 01 Mar 2026 00:00:00 GMT"),
            Some(1_772_323_200_000)
        );
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn has_next_needs_a_token() {
        let e = into_page(ov(json!({"data": [], "hasNext": true}))).unwrap_err();
        assert!(e.contains("no `next`"), "{e}");
        let e = into_page(ov(json!({"data": [], "hasNext": true, "next": ""}))).unwrap_err();
        assert!(e.contains("`next` is a string"), "{e}");
        let e = into_page(ov(json!({"data": [], "hasNext": true, "next": 7}))).unwrap_err();
        assert!(e.contains("a number"), "{e}");
        assert!(
            into_page(ov(json!({"data": [], "next": "t"})))
                .unwrap()
                .next
                .is_some()
        );
        assert!(into_page(ov(json!({"data": []}))).unwrap().next.is_none());
    }

    #[test]
    fn guard_stops_looping_walks() {
        let at = PageRef {
            path: "/users",
            page: 2,
            offset: Some("a"),
            tables: &["users"],
        };
        let page = |v| into_page(ov(v)).unwrap();
        let mut g = PageGuard::resuming(Some("a"), 1);
        let e = g
            .check(
                at,
                &page(json!({"data": [{"id": "x"}], "hasNext": true, "next": "a"})),
            )
            .unwrap_err();
        assert!(e.to_string().contains("GET /users page 2"), "{e}");
        let mut g = PageGuard::default();
        for k in 0..MAX_EMPTY_PAGES_IN_A_ROW {
            g.check(
                at,
                &page(json!({"data": [], "hasNext": true, "next": k.to_string()})),
            )
            .unwrap();
        }
        assert!(
            g.check(at, &page(json!({"data": [], "hasNext": true, "next": "z"})))
                .is_err()
        );
        let mut g = PageGuard::resuming(None, MAX_PAGES - 1);
        assert!(
            g.check(
                at,
                &page(json!({"data": [{"id": "x"}], "hasNext": true, "next": "n"}))
            )
            .is_err()
        );
    }

    /// A 429 without a hint pauses every request of the account (they all wait in
    /// `wait_turn`), growing over 429s until a success.
    #[test]
    fn a_429_without_a_hint_pauses_the_whole_account() {
        let pause = AccountPause::default();
        assert!(pause.until().is_none());
        let first = pause.throttled_without_hint(Instant::now());
        let until = pause.until().expect("the account is paused");
        assert!(until > Instant::now() && first >= THROTTLE_MIN / 2);
        let mut longest = first;
        for _ in 0..10 {
            longest = longest.max(pause.throttled_without_hint(Instant::now()));
        }
        assert!(
            longest > THROTTLE_MIN && longest <= THROTTLE_MAX,
            "{longest:?}"
        );
        assert!(
            pause.until().unwrap() >= until,
            "a pause is only ever extended"
        );
        pause.relax();
        assert!(pause.throttled_without_hint(Instant::now()) <= THROTTLE_MIN);
    }

    /// The 429s of requests already in flight when the pause grew are the same burst: they
    /// wait for the current pause and do not grow it. Counting each would take the pause to
    /// its maximum on one burst of 32 concurrent requests.
    #[test]
    fn the_429s_of_one_burst_grow_the_pause_once() {
        let pause = AccountPause::default();
        let burst_sent = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let first = pause.throttled_without_hint(burst_sent);
        let until = pause.until().expect("the account is paused");
        for _ in 0..31 {
            let wait = pause.throttled_without_hint(burst_sent);
            assert!(wait <= first, "{wait:?} > {first:?}");
        }
        assert_eq!(pause.until(), Some(until), "the burst grew the pause once");
        // A request sent after the growth and throttled again grows it.
        std::thread::sleep(Duration::from_millis(2));
        let second = pause.throttled_without_hint(Instant::now());
        assert!(second >= THROTTLE_MIN, "{second:?}");
    }

    /// Through the client against a server on 127.0.0.1: a 429 without a hint on `/users`
    /// pauses the account, and a request of another endpoint sent during the pause reaches
    /// the server only once the pause is over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_429_without_a_hint_holds_back_every_request_of_the_account() {
        use axum::response::IntoResponse;
        let users_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (calls, log) = (users_calls.clone(), arrivals.clone());
        let empty = || axum::Json(json!({"data": [], "hasNext": false}));
        let app = axum::Router::new()
            .route(
                "/v1/users",
                axum::routing::get(move || {
                    let calls = calls.clone();
                    async move {
                        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            (axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down").into_response()
                        } else {
                            empty().into_response()
                        }
                    }
                }),
            )
            .route(
                "/v1/stages",
                axum::routing::get(move || {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(Instant::now());
                        empty()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let opts = ClientOptions {
            base_url: format!("http://{addr}/v1"),
            rate_per_second: 1000,
            burst: 1000,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            page_size: 100,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            max_retry_time: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            network: sluice_net::Network::default(),
        };
        let auth = Auth::api_key(&sluice_core::Secret::new("k")).unwrap();
        let client = Client::new(opts, auth, Metrics::new(), CancellationToken::new()).unwrap();
        let throttled = tokio::spawn({
            let client = client.clone();
            async move { client.get("users", "/users", &[]).await.map(|_| ()) }
        });
        // Until the 429 has paused the account: it must, before its request is retried.
        let until = loop {
            let done = throttled.is_finished();
            if let Some(until) = client.0.pause.until() {
                break until;
            }
            assert!(!done, "the 429 without a hint did not pause the account");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        client.get("stages", "/stages", &[]).await.unwrap();
        let arrived = arrivals.lock().unwrap()[0];
        assert!(
            arrived >= until,
            "a request sent during the pause reached the server {:?} before its end",
            until - arrived
        );
        throttled.await.unwrap().unwrap();
        assert_eq!(users_calls.load(Ordering::SeqCst), 2);
        server.abort();
    }
}
