//! Authentication: HTTP Basic with an API key, or OAuth 2.0 with refresh-token rotation.

use crate::config::{DEFAULT_TOKEN_URL, OAuthConfig};
use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use sluice_core::{Error, Result, Secret, SecretStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

/// Refresh the access token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// Name under which the rotated refresh token is saved in the destination's secret store
/// (and under which a state of format 1 kept it).
pub const REFRESH_TOKEN_STATE_KEY: &str = "lever_oauth_refresh_token";

/// Produces the `Authorization` header of each request.
#[derive(Debug)]
pub(crate) enum Auth {
    /// `Basic base64(key:)`, computed once.
    Basic(HeaderValue),
    /// Bearer tokens from the OAuth token endpoint.
    OAuth(OAuth),
}

impl Auth {
    /// HTTP Basic with `key` as the user and an empty password.
    pub(crate) fn api_key(key: &Secret) -> Result<Auth> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", key.expose()));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
            Error::config("[source].api_key: contains characters not allowed in an HTTP header")
        })?;
        value.set_sensitive(true);
        Ok(Auth::Basic(value))
    }

    /// The header for the next request.
    pub(crate) async fn header(&self, http: &reqwest::Client) -> Result<HeaderValue> {
        match self {
            Auth::Basic(h) => Ok(h.clone()),
            Auth::OAuth(o) => o.header(http).await,
        }
    }

    /// Called on a 401: refreshes an OAuth token once (returns true when a retry may help).
    pub(crate) async fn on_unauthorized(
        &self,
        http: &reqwest::Client,
        used: &HeaderValue,
    ) -> Result<bool> {
        match self {
            Auth::Basic(_) => Ok(false),
            Auth::OAuth(o) => o.refresh_after_401(http, used).await,
        }
    }

    /// Advice for a 401/403 answer.
    pub(crate) fn advice(&self) -> &'static str {
        match self {
            Auth::Basic(_) => {
                "check the API key (LEVER_API_KEY or [source].api_key) and the endpoints it was granted in Lever (Settings → Integrations and API)"
            }
            Auth::OAuth(_) => {
                "check the OAuth app's scopes and authorization in Lever, or re-authorize it and set [source.oauth].refresh_token"
            }
        }
    }
}

/// Shortest access-token lifetime believed from the token endpoint (`expires_in` of 0 would
/// otherwise mean a refresh before every request); a token that dies sooner is refreshed on
/// its first 401.
const MIN_TOKEN_TTL: Duration = Duration::from_secs(5);
/// Longest access-token lifetime believed (`expires_in` of 10^12 would overflow an instant).
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest token response read (a token response is a few hundred bytes).
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Attempts at the token endpoint on connection errors and 5xx answers.
const TOKEN_ATTEMPTS: u32 = 4;
/// Attempts at saving a rotated refresh token before the run fails.
const SAVE_ATTEMPTS: u32 = 3;

struct TokenState {
    access: Option<(HeaderValue, Instant)>,
    /// The refresh token to use next; `None` until loaded from the store.
    refresh: Option<Secret>,
    /// The configuration's refresh token when it differs from `refresh` (the saved one):
    /// tried once when the saved token is rejected, so that re-authorizing and setting
    /// `[source.oauth].refresh_token` is enough to recover.
    fallback: Option<Secret>,
    /// When the current access token was fetched because its predecessor got a 401, and the
    /// lifetime the token endpoint stated for it: a 401 on it within a quarter of that
    /// lifetime means the token is rejected, not expired, and refreshing does not help.
    fetched_after_401: Option<(Instant, Duration)>,
}

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenState(***)")
    }
}

/// What a refresh needs, shared with the task that performs it.
#[derive(Debug)]
struct Endpoint {
    client_id: String,
    client_secret: Secret,
    token_url: String,
    store: Arc<dyn SecretStore>,
}

/// OAuth 2.0 refresh-token flow with rotation.
///
/// Lever rotates the refresh token on every use and the previous one dies, so the rotated
/// token is saved to the destination's [`SecretStore`] before the access token that came
/// with it is used. The request and the save run in a task of their own: a caller dropped
/// midway (Ctrl-C) does not drop the save.
#[derive(Debug)]
pub(crate) struct OAuth {
    endpoint: Arc<Endpoint>,
    configured: Secret,
    legacy: Option<Secret>,
    inner: Mutex<TokenState>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// A successful refresh: the access token's header and lifetime, and the refresh token to use
/// next (already saved when it was rotated).
struct Refreshed {
    header: HeaderValue,
    ttl: Duration,
    next_refresh: Secret,
}

impl OAuth {
    /// A token manager for `cfg`, saving rotated refresh tokens to `store`. `legacy` is a
    /// refresh token found in a state of format 1, used when the store holds none.
    pub(crate) fn new(
        cfg: &OAuthConfig,
        store: Arc<dyn SecretStore>,
        legacy: Option<Secret>,
    ) -> OAuth {
        OAuth {
            endpoint: Arc::new(Endpoint {
                client_id: cfg.client_id.clone(),
                client_secret: cfg.client_secret.clone(),
                token_url: cfg
                    .token_url
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned()),
                store,
            }),
            configured: cfg.refresh_token.clone(),
            legacy,
            inner: Mutex::new(TokenState {
                access: None,
                refresh: None,
                fallback: None,
                fetched_after_401: None,
            }),
        }
    }

    async fn header(&self, http: &reqwest::Client) -> Result<HeaderValue> {
        let mut st = self.inner.lock().await;
        if let Some((h, refresh_at)) = &st.access
            && Instant::now() < *refresh_at
        {
            return Ok(h.clone());
        }
        self.refresh(http, &mut st).await?;
        st.fetched_after_401 = None;
        Ok(st.access.as_ref().expect("refreshed").0.clone())
    }

    async fn refresh_after_401(&self, http: &reqwest::Client, used: &HeaderValue) -> Result<bool> {
        let mut st = self.inner.lock().await;
        if let Some((h, _)) = &st.access
            && h != used
        {
            // Another request refreshed meanwhile.
            return Ok(true);
        }
        if st
            .fetched_after_401
            .is_some_and(|(at, stated)| at.elapsed() < stated / 4)
        {
            return Ok(false);
        }
        let stated = self.refresh(http, &mut st).await?;
        st.fetched_after_401 = Some((Instant::now(), stated));
        Ok(true)
    }

    /// Picks the first refresh token: the saved one, else a format-1 state's, else the
    /// configuration's; the configuration's stays as the fallback when it differs.
    async fn load(&self, st: &mut TokenState) -> Result<()> {
        if st.refresh.is_some() {
            return Ok(());
        }
        let saved = self
            .endpoint
            .store
            .load(REFRESH_TOKEN_STATE_KEY)
            .await
            .map_err(|e| {
                e.context(format!(
                    "reading the saved OAuth refresh token from {}",
                    self.endpoint.store.location()
                ))
            })?;
        let first = saved
            .or_else(|| self.legacy.clone())
            .unwrap_or_else(|| self.configured.clone());
        st.fallback = (first.expose() != self.configured.expose()).then(|| self.configured.clone());
        st.refresh = Some(first);
        Ok(())
    }

    /// Fetches a new access token; returns the lifetime the token endpoint stated for it.
    async fn refresh(&self, http: &reqwest::Client, st: &mut TokenState) -> Result<Duration> {
        self.load(st).await?;
        loop {
            let token = st.refresh.clone().expect("loaded");
            // The task logs inside the caller's span (a server run's connection id).
            let task = tokio::spawn(
                refresh_and_save(http.clone(), Arc::clone(&self.endpoint), token).in_current_span(),
            );
            let result = task.await.map_err(|e| {
                Error::internal("the OAuth token refresh task failed").with_source(e)
            })?;
            match result {
                Ok(r) => {
                    // Refresh ahead of expiry: 2 minutes early, or a quarter of a short
                    // lifetime; never sooner than MIN_TOKEN_TTL (a token that dies sooner is
                    // refreshed on its 401).
                    let ttl = r.ttl.max(MIN_TOKEN_TTL);
                    let margin = REFRESH_MARGIN.min(ttl / 4);
                    st.access = Some((r.header, Instant::now() + ttl - margin));
                    st.refresh = Some(r.next_refresh);
                    return Ok(r.ttl);
                }
                Err(e) if e.kind() == sluice_core::ErrorKind::Auth && st.fallback.is_some() => {
                    tracing::info!(
                        "the saved OAuth refresh token was rejected; trying [source.oauth].refresh_token of the configuration"
                    );
                    st.refresh = st.fallback.take();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Exchanges `refresh` at the token endpoint and, when the answer rotates it, saves the new
/// refresh token durably before returning the access token.
async fn refresh_and_save(
    http: reqwest::Client,
    endpoint: Arc<Endpoint>,
    refresh: Secret,
) -> Result<Refreshed> {
    let (header, ttl, rotated) = request_token(&http, &endpoint, &refresh).await?;
    let next_refresh = match rotated {
        Some(new) if new.expose() != refresh.expose() => {
            save_rotated(&endpoint, &new).await?;
            new
        }
        _ => refresh,
    };
    tracing::debug!(
        expires_in_secs = ttl.as_secs(),
        "OAuth access token refreshed"
    );
    Ok(Refreshed {
        header,
        ttl,
        next_refresh,
    })
}

/// Saves a rotated refresh token, retrying a failing store a few times: the previous token is
/// dead, so this copy is the account's only authorization.
async fn save_rotated(endpoint: &Endpoint, token: &Secret) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match endpoint.store.save(REFRESH_TOKEN_STATE_KEY, token).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < SAVE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "saving the rotated OAuth refresh token failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "saving the rotated OAuth refresh token to {} failed, and the previous token is no longer valid: re-authorize the Lever app and set [source.oauth].refresh_token",
                    endpoint.store.location()
                )));
            }
        }
    }
}

/// One refresh-token grant: the access token's header, its stated lifetime (see
/// [`token_ttl`]) and the rotated refresh token, if any.
async fn request_token(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    refresh: &Secret,
) -> Result<(HeaderValue, Duration, Option<Secret>)> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", &endpoint.client_id)
        .append_pair("client_secret", endpoint.client_secret.expose())
        .append_pair("refresh_token", refresh.expose())
        .finish();
    let token_url = &endpoint.token_url;
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        let r = http
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_server_error() && attempt < TOKEN_ATTEMPTS => {}
            Ok(r) => break r,
            Err(e) if attempt < TOKEN_ATTEMPTS => {
                tracing::debug!(error = %without_url(&e), "OAuth token request failed; retrying");
            }
            Err(e) => {
                return Err(Error::upstream(format!(
                    "OAuth token endpoint {token_url} unreachable: {}",
                    without_url(&e)
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    };
    let status = resp.status();
    if matches!(status.as_u16(), 400 | 401 | 403) {
        return Err(Error::auth(format!(
            "the OAuth refresh token was rejected by {token_url} (HTTP {}): it is expired, revoked or was already rotated; re-authorize the Lever app and set [source.oauth].refresh_token to the new token (it replaces the saved one)",
            status.as_u16()
        ))
        .with_retryable(false));
    }
    if !status.is_success() {
        return Err(Error::upstream(format!(
            "OAuth token endpoint {token_url} answered HTTP {}",
            status.as_u16()
        )));
    }
    let bytes = read_capped(resp, MAX_TOKEN_RESPONSE_BYTES)
        .await
        .map_err(|why| Error::upstream(format!("OAuth token endpoint {token_url}: {why}")))?;
    let tok: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
        Error::upstream(format!(
            "OAuth token endpoint {token_url} sent an unreadable token response"
        ))
    })?;
    let mut header = HeaderValue::from_str(&format!("Bearer {}", tok.access_token))
        .map_err(|_| Error::upstream("OAuth access token is not a valid header value"))?;
    header.set_sensitive(true);
    let ttl = token_ttl(tok.expires_in.as_ref());
    let rotated = tok
        .refresh_token
        .filter(|r| !r.trim().is_empty())
        .map(Secret::new);
    Ok((header, ttl, rotated))
}

/// The access token's lifetime from `expires_in` (seconds): a missing or unreadable value is
/// an hour, a negative one zero, and a huge one [`MAX_TOKEN_TTL`] (no instant overflows).
fn token_ttl(expires_in: Option<&serde_json::Value>) -> Duration {
    let secs = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(3600.0),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().unwrap_or(3600.0),
        _ => 3600.0,
    };
    let secs = if secs.is_finite() { secs } else { 3600.0 };
    Duration::from_secs_f64(secs.clamp(0.0, MAX_TOKEN_TTL.as_secs_f64()))
}

/// Reads a response body of at most `cap` bytes.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(format!("response larger than {cap} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("reading the response: {}", without_url(&e))),
        }
    }
}

/// A reqwest error's text without its URL (URLs carry no secrets here, but keep errors short).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "").replace(" ()", "");
    }
    if e.is_timeout() {
        "request timed out".to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_expires_in_gives_a_usable_lifetime() {
        let ttl = |v: serde_json::Value| token_ttl(Some(&v));
        assert_eq!(ttl(json!(3600)), Duration::from_secs(3600));
        assert_eq!(ttl(json!(0)), Duration::ZERO);
        assert_eq!(ttl(json!(-5)), Duration::ZERO);
        assert_eq!(ttl(json!(1_000_000_000_000u64)), MAX_TOKEN_TTL);
        assert_eq!(ttl(json!(1e300)), MAX_TOKEN_TTL);
        assert_eq!(ttl(json!("120")), Duration::from_secs(120));
        assert_eq!(ttl(json!("soon")), Duration::from_secs(3600));
        assert_eq!(ttl(json!(null)), Duration::from_secs(3600));
        assert_eq!(token_ttl(None), Duration::from_secs(3600));
        // Scheduling from any of them does not overflow an instant.
        for v in [json!(0), json!(1_000_000_000_000u64)] {
            let t = ttl(v).max(MIN_TOKEN_TTL);
            let _ = Instant::now() + t - REFRESH_MARGIN.min(t / 4);
        }
    }
}
