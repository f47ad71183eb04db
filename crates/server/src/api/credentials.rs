//! Credentials (write-only), `check`, and the OAuth authorization dance.

use super::{AppState, Body};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::model::{Authorization, AuthorizeRequest, CheckResult, Connection, CredentialsInput};
use crate::oauth;
use crate::store::{OAuthClient, StoredConnection, secret};
use crate::sync_config::sync_config;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use sluice_core::{CheckContext, Secret};
use sluice_source_lever::REFRESH_TOKEN_STATE_KEY;

/// `PUT /v1/connections/{id}/credentials`: sets an API key or an OAuth app (each replaces the
/// other), and the hashing salt. Values are encrypted at rest and never shown again.
#[utoipa::path(put, path = "/v1/connections/{id}/credentials", tag = "credentials",
    params(("id" = String, Path, description = "Connection id")),
    request_body = CredentialsInput,
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn set(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(input): Body<CredentialsInput>,
) -> ApiResult<Json<Connection>> {
    let mut c = state.connection(&id)?;
    if input.api_key.is_some() && input.oauth.is_some() {
        return Err(ApiError::invalid(
            "oauth",
            "set either `api_key` or `oauth`, not both",
        ));
    }
    let not_empty = |field: &str, v: &str| {
        if v.trim().is_empty() {
            Err(ApiError::invalid(field, "is empty"))
        } else {
            Ok(())
        }
    };
    if let Some(k) = &input.api_key {
        not_empty("api_key", k)?;
    }
    if let Some(s) = &input.hash_salt {
        not_empty("hash_salt", s)?;
    }
    if let Some(o) = &input.oauth {
        not_empty("oauth.client_id", &o.client_id)?;
        not_empty("oauth.client_secret", &o.client_secret)?;
        for (field, url) in [
            ("oauth.token_url", &o.token_url),
            ("oauth.authorize_url", &o.authorize_url),
        ] {
            if let Some(u) = url {
                url::Url::parse(u).map_err(|e| ApiError::invalid(field, e))?;
            }
        }
        if let Some(t) = &o.refresh_token {
            not_empty("oauth.refresh_token", t)?;
        }
    }
    let store = &state.store;
    if let Some(k) = &input.api_key {
        store.set_secret(&id, secret::API_KEY, &Secret::new(k.trim()))?;
        store.remove_secret(&id, secret::OAUTH_CLIENT_SECRET)?;
        store.remove_secret(&id, secret::OAUTH_REFRESH_TOKEN)?;
        c.oauth = None;
    }
    if let Some(o) = &input.oauth {
        let client = OAuthClient {
            client_id: o.client_id.trim().to_owned(),
            token_url: o.token_url.clone(),
            authorize_url: o.authorize_url.clone(),
        };
        if c.oauth.as_ref() != Some(&client) {
            // Another app: an earlier authorization does not hold for it.
            store.remove_secret(&id, secret::OAUTH_REFRESH_TOKEN)?;
        }
        store.remove_secret(&id, secret::API_KEY)?;
        store.set_secret(
            &id,
            secret::OAUTH_CLIENT_SECRET,
            &Secret::new(o.client_secret.trim()),
        )?;
        c.oauth = Some(client);
        if let Some(t) = &o.refresh_token {
            store_refresh_token(&state, &c, &Secret::new(t.trim())).await?;
        }
    }
    if let Some(s) = &input.hash_salt {
        store.set_secret(&id, secret::HASH_SALT, &Secret::new(s.as_str()))?;
    }
    c.updated_at = sluice_core::now_ms();
    store.put_connection(&c)?;
    tracing::info!(
        connection_id = %id,
        api_key = input.api_key.is_some(),
        oauth = input.oauth.is_some(),
        hash_salt = input.hash_salt.is_some(),
        "credentials set"
    );
    Ok(Json(state.view(&c)?))
}

/// `POST /v1/connections/{id}/check`: the same check as `sluice check` (one request; an
/// OAuth token it rotates is saved in the destination, where runs find it).
#[utoipa::path(post, path = "/v1/connections/{id}/check", tag = "credentials",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = CheckResult), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn check(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckResult>> {
    let c = state.connection(&id)?;
    let result = async {
        let config = sync_config(&state.store, &c)?;
        let sink = (state.registry.sink(&c.sink)?.build)(&config.sink)?;
        let source = (state.registry.source(&c.source)?.build)();
        source
            .check(&config.source, CheckContext::new(sink.secret_store()))
            .await
    }
    .await;
    Ok(Json(match result {
        Ok(message) => CheckResult {
            ok: true,
            message,
            error_kind: None,
        },
        Err(e) => CheckResult {
            ok: false,
            message: e.to_string(),
            error_kind: Some(e.kind().name().to_owned()),
        },
    }))
}

/// `POST /v1/connections/{id}/authorize`: the URL at which the account's admin authorizes
/// the OAuth app; Lever then sends the browser to the callback.
#[utoipa::path(post, path = "/v1/connections/{id}/authorize", tag = "credentials",
    params(("id" = String, Path, description = "Connection id")),
    request_body = AuthorizeRequest,
    responses((status = 200, body = Authorization), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn authorize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<AuthorizeRequest>,
) -> ApiResult<Json<Authorization>> {
    let c = state.connection(&id)?;
    let client = c.oauth.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "credentials.oauth",
            "set the OAuth app first (PUT /v1/connections/{id}/credentials with `oauth`)",
        )
    })?;
    let redirect_uri = match req.redirect_uri {
        Some(u) => {
            url::Url::parse(&u).map_err(|e| ApiError::invalid("redirect_uri", e))?;
            u
        }
        None => format!(
            "{}/v1/oauth/callback",
            state.public_url.trim_end_matches('/')
        ),
    };
    let st = oauth::new_state();
    let expires_at = sluice_core::now_ms() + state.oauth_state_ttl_ms;
    let url = oauth::authorization_url(client, &redirect_uri, &st)?;
    state
        .store
        .put_oauth_state(&oauth::state_hash(&st), &id, &redirect_uri, expires_at)?;
    tracing::info!(connection_id = %id, "authorization URL issued");
    Ok(Json(Authorization {
        authorization_url: url,
        state: st,
        expires_at,
    }))
}

/// Query of the OAuth callback.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /v1/oauth/callback`: where Lever sends the browser back. Exchanges the code for a
/// refresh token and stores it. Authenticated by the single-use `state`.
#[utoipa::path(get, path = "/v1/oauth/callback", tag = "credentials",
    params(("code" = Option<String>, Query, description = "Authorization code"),
        ("state" = String, Query, description = "The state of POST /authorize"),
        ("error" = Option<String>, Query, description = "Set when the admin refused")),
    responses((status = 200, description = "Authorized (HTML)"), (status = 400, description = "Unknown, used or expired state, or refused (HTML)")))]
pub(crate) async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    match finish_authorization(&state, q).await {
        Ok(c) => page(
            StatusCode::OK,
            &format!(
                "Lever is authorized for connection {} ({}). You can close this window.",
                c.name, c.id
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "OAuth callback refused");
            page(e.status(), e.message())
        }
    }
}

async fn finish_authorization(state: &AppState, q: CallbackQuery) -> ApiResult<StoredConnection> {
    let st = q
        .state
        .ok_or_else(|| ApiError::invalid("state", "is missing"))?;
    let (id, redirect_uri, expires_at) = state
        .store
        .take_oauth_state(&oauth::state_hash(&st))?
        .ok_or_else(|| ApiError::invalid("state", "unknown or already used: authorize again"))?;
    if sluice_core::now_ms() >= expires_at {
        return Err(ApiError::invalid("state", "expired: authorize again"));
    }
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or_default();
        return Err(ApiError::invalid(
            "error",
            format!("Lever answered `{error}` {why}").trim().to_owned(),
        ));
    }
    let code = q
        .code
        .ok_or_else(|| ApiError::invalid("code", "is missing"))?;
    let c = state.connection(&id)?;
    let client = c
        .oauth
        .clone()
        .ok_or_else(|| ApiError::invalid("credentials.oauth", "the OAuth app was removed"))?;
    let client_secret = state
        .store
        .secret(&id, secret::OAUTH_CLIENT_SECRET)?
        .ok_or_else(|| ApiError::invalid("credentials.oauth.client_secret", "is not set"))?;
    let refresh = oauth::exchange_code(&state.http, &client, &client_secret, &code, &redirect_uri)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    store_refresh_token(state, &c, &refresh).await?;
    tracing::info!(connection_id = %id, "connection authorized");
    Ok(c)
}

/// Stores the refresh token of a new authorization: encrypted in the server's store (the
/// connection's `[source.oauth].refresh_token`), and in the destination's secret store, where
/// the Lever source keeps the rotated token from then on. The destination's copy is the live
/// one, as with `sluice run`; the server's copy is the fallback the source tries when the
/// saved one is rejected.
async fn store_refresh_token(
    state: &AppState,
    c: &StoredConnection,
    token: &Secret,
) -> ApiResult<()> {
    state
        .store
        .set_secret(&c.id, secret::OAUTH_REFRESH_TOKEN, token)?;
    let sink_json = sluice_core::sink_config(
        serde_json::Value::Object(c.sink_settings.clone()),
        Some(&c.destination),
    );
    let sink = (state.registry.sink(&c.sink)?.build)(&sink_json)?;
    if let Some(store) = sink.secret_store() {
        store
            .save(REFRESH_TOKEN_STATE_KEY, token)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(())
}

fn page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sluice</title></head><body><p>{}</p></body></html>",
        crate::page::escape(message)
    );
    (status, Html(body)).into_response()
}
