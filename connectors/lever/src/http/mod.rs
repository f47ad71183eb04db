//! The HTTP client: one shared rate limiter per account, bounded retries with jittered
//! exponential backoff, OAuth refresh, and offset pagination.

pub(crate) mod auth;

use auth::{Auth, without_url};
use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use serde_json::Value;
use sluice_core::{Error, Metrics, Result};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest wait honoured from a `Retry-After` / `X-RateLimit-Reset` header.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(120);

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
}

/// A shared Lever client (cheap to clone).
#[derive(Clone)]
pub(crate) struct Client(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    auth: Auth,
    limiter: DefaultDirectRateLimiter,
    pause_until: Mutex<Option<Instant>>,
    opts: ClientOptions,
    metrics: Metrics,
    cancel: CancellationToken,
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

/// One page of a list endpoint.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) data: Vec<Value>,
    pub(crate) next: Option<String>,
}

enum Outcome {
    Done(Value),
    NotFound,
    Retry {
        why: String,
        wait: Option<Duration>,
        throttled: bool,
    },
    Fail(PageError),
}

impl Client {
    /// A client for `opts` authenticating with `auth`.
    pub(crate) fn new(
        opts: ClientOptions,
        auth: Auth,
        metrics: Metrics,
        cancel: CancellationToken,
    ) -> Result<Client> {
        let http = http_client(opts.timeout)?;
        let quota = Quota::per_second(NonZeroU32::new(opts.rate_per_second.max(1)).expect("≥1"))
            .allow_burst(NonZeroU32::new(opts.burst.max(1)).expect("≥1"));
        Ok(Client(Arc::new(Inner {
            http,
            auth,
            limiter: RateLimiter::direct(quota),
            pause_until: Mutex::new(None),
            opts,
            metrics,
            cancel,
        })))
    }

    /// The page size of list requests.
    pub(crate) fn page_size(&self) -> u32 {
        self.0.opts.page_size
    }

    /// The underlying HTTP client (token requests).
    pub(crate) fn auth(&self) -> &Auth {
        &self.0.auth
    }

    /// GETs `path` with `query`; `label` names the endpoint in metrics and errors. Returns
    /// `None` on 404.
    pub(crate) async fn get(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> std::result::Result<Option<Value>, PageError> {
        let inner = &*self.0;
        let url = format!("{}{}", inner.opts.base_url, path);
        let mut backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(inner.opts.min_backoff)
            .with_max_delay(inner.opts.max_backoff)
            .with_factor(2.0)
            .without_max_times()
            .build();
        // 429s without a server hint: short jittered waits (the shared limiter paces the rest).
        let mut throttle_backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(4))
            .with_factor(2.0)
            .without_max_times()
            .build();
        let mut failures = 0u32;
        let mut throttles = 0u32;
        let throttle_bound = inner.opts.max_retries + 24;
        loop {
            if inner.cancel.is_cancelled() {
                return Err(Error::cancelled().into());
            }
            self.wait_turn().await?;
            inner.metrics.request(label);
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
                r = self.attempt(sent, &header, label) => r,
            };
            match outcome {
                Outcome::Done(v) => return Ok(Some(v)),
                Outcome::NotFound => return Ok(None),
                Outcome::Fail(e) => return Err(e),
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
                        (None, true) => throttle_backoff.next().unwrap_or(Duration::from_secs(4)),
                        (None, false) => backoff.next().unwrap_or(inner.opts.max_backoff),
                    };
                    if let (true, Some(w)) = (throttled, wait) {
                        // The server said how long the whole account must wait.
                        let mut p = inner.pause_until.lock().expect("pause lock");
                        let until = Instant::now() + w;
                        if p.is_none_or(|t| t < until) {
                            *p = Some(until);
                        }
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

    async fn wait_turn(&self) -> Result<()> {
        let pause = *self.0.pause_until.lock().expect("pause lock");
        if let Some(until) = pause
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
        self.0.limiter.until_ready().await;
        Ok(())
    }

    async fn attempt(
        &self,
        sent: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
        header: &reqwest::header::HeaderValue,
        label: &str,
    ) -> Outcome {
        let inner = &*self.0;
        let resp = match sent.await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    why: without_url(&e),
                    wait: None,
                    throttled: false,
                };
            }
        };
        let status = resp.status();
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
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
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
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Outcome::Done(v),
            // A truncated body (connection dropped mid-body) parses as invalid JSON.
            Err(e) => Outcome::Retry {
                why: format!("unreadable JSON body ({e})"),
                wait: None,
                throttled: false,
            },
        }
    }

    /// Fetches one page of a list endpoint.
    pub(crate) async fn page(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
        offset: Option<&str>,
    ) -> std::result::Result<Option<Page>, PageError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", self.page_size().to_string()));
        if let Some(o) = offset {
            q.push(("offset", o.to_owned()));
        }
        let Some(v) = self.get(label, path, &q).await? else {
            return Ok(None);
        };
        Ok(Some(into_page(v)))
    }

    /// Every item of a list endpoint (small lists: lookups, one opportunity's children).
    /// Returns `None` on 404. An invalid offset token restarts the walk from the beginning.
    pub(crate) async fn list_all(
        &self,
        label: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Vec<Value>>> {
        let mut restarts = 0;
        'walk: loop {
            let mut out = Vec::new();
            let mut offset: Option<String> = None;
            loop {
                match self.page(label, path, query, offset.as_deref()).await {
                    Ok(None) => return Ok(None),
                    Ok(Some(page)) => {
                        out.extend(page.data);
                        match page.next {
                            Some(n) => offset = Some(n),
                            None => return Ok(Some(out)),
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

/// Normalizes the envelope variants of list responses.
pub(crate) fn into_page(v: Value) -> Page {
    let (data, has_next, next) = match v {
        Value::Object(mut o) => {
            let has_next = o.get("hasNext").and_then(Value::as_bool);
            let next = o.remove("next").and_then(|n| match n {
                Value::String(s) if !s.is_empty() => Some(s),
                _ => None,
            });
            let data = match o.remove("data") {
                Some(Value::Array(a)) => a,
                Some(Value::Object(mut d)) => match d.remove("eeoResponses") {
                    Some(Value::Array(a)) => a,
                    _ => vec![Value::Object(d)],
                },
                Some(Value::Null) => Vec::new(),
                Some(other) => vec![other],
                None if o.is_empty() => Vec::new(),
                None => vec![Value::Object(o)],
            };
            (data, has_next, next)
        }
        Value::Array(a) => (a, None, None),
        _ => (Vec::new(), None, None),
    };
    let next = match has_next {
        Some(false) => None,
        _ => next,
    };
    Page { data, next }
}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .replace('\n', " ")
                .trim()
                .to_owned()
        })
}

/// The wait a 429/5xx answer asks for: `Retry-After` (seconds) or `X-RateLimit-Reset`
/// (seconds to wait, or an epoch in seconds or milliseconds).
fn server_wait(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let num =
        |name: &str| -> Option<f64> { h.get(name)?.to_str().ok()?.trim().parse::<f64>().ok() };
    let wait = if let Some(s) = num("retry-after") {
        Duration::from_secs_f64(s.max(0.0))
    } else if let Some(r) = num("x-ratelimit-reset") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let secs = if r > 1e12 {
            r / 1000.0 - now
        } else if r > 1e9 {
            r - now
        } else {
            r
        };
        Duration::from_secs_f64(secs.max(0.0))
    } else {
        return None;
    };
    Some(wait.min(MAX_SERVER_WAIT))
}

/// The pooled HTTP client (rustls, per-request timeout).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
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

    #[test]
    fn envelopes_are_normalized() {
        let p = into_page(json!({"data": [{"id": 1}], "hasNext": true, "next": "tok"}));
        assert_eq!(p.data.len(), 1);
        assert_eq!(p.next.as_deref(), Some("tok"));
        let p = into_page(json!({"data": [], "hasNext": false, "next": "x"}));
        assert!(p.next.is_none());
        assert_eq!(into_page(json!([{"a": 1}, {"a": 2}])).data.len(), 2);
        assert_eq!(
            into_page(json!({"data": {"eeoResponses": [{}, {}]}}))
                .data
                .len(),
            2
        );
        assert_eq!(into_page(json!({"id": "x", "fields": []})).data.len(), 1);
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
}
