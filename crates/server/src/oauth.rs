//! Lever's OAuth authorization-code flow, as Fivetran's Connect Card does it: the server hands
//! out an authorization URL with a `state` bound to one connection (random, single use,
//! expiring; only its hash is stored), and its callback exchanges the code for a refresh token.

use crate::store::OAuthClient;
use sha2::{Digest, Sha256};
use sluice_core::{Error, Result, Secret};
use std::time::Duration;

/// Lever's authorization page.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://auth.lever.co/authorize";
/// Lever's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.lever.co/oauth/token";
/// The audience Lever requires for the Data API.
pub const AUDIENCE: &str = "https://api.lever.co/v1/";
/// How long a `state` can be used.
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);
/// The read scopes a full sync needs, plus `offline_access` for a refresh token.
pub const SCOPES: &str = "offline_access opportunities:read:admin applications:read:admin archive_reasons:read:admin confidential:access:admin feedback:read:admin feedback_templates:read:admin forms:read:admin form_templates:read:admin interviews:read:admin notes:read:admin offers:read:admin panels:read:admin postings:read:admin referrals:read:admin requisitions:read:admin requisition_fields:read:admin sources:read:admin stages:read:admin tags:read:admin users:read:admin";

/// A fresh random `state` (256 bits, hex).
pub fn new_state() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a state: its SHA-256.
pub fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// The URL that asks the account's admin to authorize the app.
pub fn authorization_url(client: &OAuthClient, redirect_uri: &str, state: &str) -> Result<String> {
    let base = client
        .authorize_url
        .as_deref()
        .unwrap_or(DEFAULT_AUTHORIZE_URL);
    let mut url = url::Url::parse(base)
        .map_err(|e| Error::config(format!("credentials.oauth.authorize_url: {e}")))?;
    url.query_pairs_mut()
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("state", state)
        .append_pair("audience", AUDIENCE)
        .append_pair("scope", SCOPES)
        .append_pair("prompt", "consent");
    Ok(url.into())
}

/// Exchanges an authorization code for the refresh token.
pub async fn exchange_code(
    http: &reqwest::Client,
    client: &OAuthClient,
    client_secret: &Secret,
    code: &str,
    redirect_uri: &str,
) -> Result<Secret> {
    let token_url = client.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("client_id", &client.client_id)
        .append_pair("client_secret", client_secret.expose())
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .finish();
    let resp = http
        .post(token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| {
            Error::upstream(format!(
                "OAuth token endpoint {token_url} unreachable: {}",
                e.without_url()
            ))
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::auth(format!(
            "the OAuth token endpoint {token_url} refused the authorization code (HTTP {}): authorize again",
            status.as_u16()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Tokens {
        refresh_token: Option<String>,
    }
    let tokens: Tokens = resp.json().await.map_err(|_| {
        Error::upstream(format!(
            "OAuth token endpoint {token_url} sent an unreadable token response"
        ))
    })?;
    tokens
        .refresh_token
        .filter(|t| !t.trim().is_empty())
        .map(Secret::new)
        .ok_or_else(|| {
            Error::auth(format!(
                "OAuth token endpoint {token_url} sent no refresh token: the app needs the offline_access scope"
            ))
        })
}
