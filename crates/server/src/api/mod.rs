//! The HTTP API under `/v1`, `/metrics`, `/healthz` and the status page, with bearer-token
//! authentication and body validation that names the offending field.

mod body;
mod connections;
mod credentials;
mod openapi;
mod runs;
mod schema;

pub use body::Body;
pub use openapi::ApiDoc;

use crate::error::{ApiError, ApiResult};
use crate::metrics::ServerMetrics;
use crate::model::Connection;
use crate::runner::Runner;
use crate::scheduler::next_due;
use crate::store::{Store, StoredConnection, secret};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use sluice_core::Registry;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The embedded store.
    pub store: Store,
    /// Starts and tracks runs.
    pub runner: Runner,
    /// Registered sources and sinks.
    pub registry: Arc<Registry>,
    /// Prometheus metrics.
    pub metrics: ServerMetrics,
    /// SHA-256 of the API token.
    pub token_hash: [u8; 32],
    /// The server's URL as browsers reach it (for the OAuth redirect URI).
    pub public_url: String,
    /// Length of a schedule minute in ms (60 000 outside tests).
    pub minute_ms: i64,
    /// How long an OAuth `state` stays usable, in ms.
    pub oauth_state_ttl_ms: i64,
    /// HTTP client for the OAuth token exchange.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Whether `token` is the API token (compared by hash, in constant time).
    pub fn token_ok(&self, token: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        h.iter()
            .zip(self.token_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The stored connection `id`, or 404.
    pub fn connection(&self, id: &str) -> ApiResult<StoredConnection> {
        self.store
            .connection(id)?
            .ok_or_else(|| ApiError::not_found("connection", id))
    }

    /// A connection as the API shows it.
    pub fn view(&self, c: &StoredConnection) -> ApiResult<Connection> {
        let names = self.store.secret_names(&c.id)?;
        let has = |n: &str| names.iter().any(|x| x == n);
        let credentials = crate::model::CredentialStatus {
            api_key: has(secret::API_KEY),
            oauth_client_id: c.oauth.as_ref().map(|o| o.client_id.clone()),
            oauth_client_secret: has(secret::OAUTH_CLIENT_SECRET),
            oauth_refresh_token: has(secret::OAUTH_REFRESH_TOKEN),
            hash_salt: has(secret::HASH_SALT),
        };
        let authorized = credentials.api_key
            || (c.oauth.is_some()
                && credentials.oauth_client_secret
                && credentials.oauth_refresh_token)
            || c.source_settings.get("demo") == Some(&serde_json::Value::Bool(true));
        let runs = self.store.runs(&c.id, 20)?;
        let next_run_at = (!c.schedule.paused).then(|| next_due(c, &runs, self.minute_ms).0);
        Ok(Connection {
            id: c.id.clone(),
            name: c.name.clone(),
            source: c.source.clone(),
            sink: c.sink.clone(),
            destination: c.destination.clone(),
            source_settings: c.source_settings.clone(),
            sink_settings: c.sink_settings.clone(),
            schedule: c.schedule,
            credentials,
            authorized,
            running: self.runner.active_run(&c.id).is_some(),
            next_run_at,
            last_run: runs.into_iter().next(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            notice: None,
        })
    }
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/openapi.json", get(openapi::document))
        .route(
            "/v1/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/v1/connections/{id}",
            get(connections::get)
                .patch(connections::patch)
                .delete(connections::delete),
        )
        .route(
            "/v1/connections/{id}/credentials",
            axum::routing::put(credentials::set),
        )
        .route("/v1/connections/{id}/check", post(credentials::check))
        .route(
            "/v1/connections/{id}/authorize",
            post(credentials::authorize),
        )
        .route(
            "/v1/connections/{id}/schema",
            get(schema::get).patch(schema::patch),
        )
        .route("/v1/connections/{id}/sync", post(runs::sync_now))
        .route("/v1/connections/{id}/resync", post(runs::resync))
        .route("/v1/connections/{id}/pause", post(connections::pause))
        .route("/v1/connections/{id}/resume", post(connections::resume))
        .route("/v1/connections/{id}/runs", get(runs::list))
        .route("/v1/connections/{id}/state", get(runs::state))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/metrics", get(metrics))
        .route_layer(from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(protected)
        .route("/healthz", get(|| async { "ok\n" }))
        // Reached by the user's browser coming back from Lever: authenticated by the
        // single-use `state` it carries, not by the API token.
        .route("/v1/oauth/callback", get(credentials::callback))
        .merge(crate::page::router(state.clone()))
        .with_state(state)
}

/// Rejects requests without `Authorization: Bearer <token>`.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| state.token_ok(t.trim()));
    if ok {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// `GET /metrics`: Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "observability",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")),
    security(("bearer" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
