//! Authentication: HTTP Basic with an API key, or OAuth 2.0 with refresh-token rotation.

use crate::config::{DEFAULT_TOKEN_URL, OAuthConfig};
use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use sluice_core::{Error, Result, Secret};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Refresh the access token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// State key under which the rotated refresh token is kept between runs.
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

    /// The current refresh token (OAuth), to be saved in the state.
    pub(crate) async fn refresh_token(&self) -> Option<Secret> {
        match self {
            Auth::Basic(_) => None,
            Auth::OAuth(o) => Some(o.inner.lock().await.refresh.clone()),
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

struct TokenState {
    access: Option<(HeaderValue, Instant)>,
    refresh: Secret,
    /// The configuration's refresh token when it differs from `refresh` (the state's): tried
    /// once when the state's token is rejected, so that re-authorizing and setting
    /// `[source.oauth].refresh_token` is enough to recover.
    fallback: Option<Secret>,
    refreshed_after_401: bool,
}

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenState(***)")
    }
}

/// OAuth 2.0 refresh-token flow with rotation.
#[derive(Debug)]
pub(crate) struct OAuth {
    client_id: String,
    client_secret: Secret,
    token_url: String,
    inner: Mutex<TokenState>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl OAuth {
    /// A token manager starting from `refresh` (the state's rotated token when present).
    pub(crate) fn new(cfg: &OAuthConfig, refresh: Secret) -> OAuth {
        let fallback =
            (cfg.refresh_token.expose() != refresh.expose()).then(|| cfg.refresh_token.clone());
        OAuth {
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            token_url: cfg
                .token_url
                .clone()
                .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned()),
            inner: Mutex::new(TokenState {
                access: None,
                refresh,
                fallback,
                refreshed_after_401: false,
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
        if st.refreshed_after_401 {
            return Ok(false);
        }
        st.refreshed_after_401 = true;
        self.refresh(http, &mut st).await?;
        Ok(true)
    }

    async fn refresh(&self, http: &reqwest::Client, st: &mut TokenState) -> Result<()> {
        loop {
            match self.refresh_with(http, st).await {
                Err(e) if e.kind() == sluice_core::ErrorKind::Auth && st.fallback.is_some() => {
                    tracing::info!(
                        "the OAuth refresh token kept in the state was rejected; trying [source.oauth].refresh_token of the configuration"
                    );
                    st.refresh = st.fallback.take().expect("checked");
                }
                r => return r,
            }
        }
    }

    async fn refresh_with(&self, http: &reqwest::Client, st: &mut TokenState) -> Result<()> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose())
            .append_pair("refresh_token", st.refresh.expose())
            .finish();
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let r = http
                .post(&self.token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_server_error() && attempt < 4 => {}
                Ok(r) => break r,
                Err(e) if attempt < 4 => {
                    tracing::debug!(error = %without_url(&e), "OAuth token request failed; retrying");
                }
                Err(e) => {
                    return Err(Error::upstream(format!(
                        "OAuth token endpoint {} unreachable: {}",
                        self.token_url,
                        without_url(&e)
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        };
        let status = resp.status();
        if status.as_u16() == 400 || status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(Error::auth(format!(
                "the OAuth refresh token was rejected by {} (HTTP {}): it is expired, revoked or was already rotated; re-authorize the Lever app and set [source.oauth].refresh_token to the new token (it replaces the one kept in the state)",
                self.token_url,
                status.as_u16()
            ))
            .with_retryable(false));
        }
        if !status.is_success() {
            return Err(Error::upstream(format!(
                "OAuth token endpoint {} answered HTTP {}",
                self.token_url,
                status.as_u16()
            )));
        }
        let bytes = resp.bytes().await.map_err(|e| {
            Error::upstream(format!(
                "reading the OAuth token response: {}",
                without_url(&e)
            ))
        })?;
        let tok: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            Error::upstream(format!(
                "OAuth token endpoint {} sent an unreadable token response",
                self.token_url
            ))
        })?;
        let mut h = HeaderValue::from_str(&format!("Bearer {}", tok.access_token))
            .map_err(|_| Error::upstream("OAuth access token is not a valid header value"))?;
        h.set_sensitive(true);
        let ttl = Duration::from_secs(tok.expires_in.unwrap_or(3600));
        // Refresh ahead of expiry: 2 minutes early, or a quarter of a short lifetime.
        let margin = REFRESH_MARGIN.min(ttl / 4);
        st.access = Some((h, Instant::now() + ttl - margin));
        if let Some(r) = tok.refresh_token.filter(|r| !r.is_empty()) {
            st.refresh = Secret::new(r);
        }
        tracing::debug!(
            expires_in_secs = ttl.as_secs(),
            "OAuth access token refreshed"
        );
        Ok(())
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
