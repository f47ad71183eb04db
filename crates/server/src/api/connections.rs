//! Connections: create, list, get, patch, delete, pause and resume.

use super::{AppState, Body};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::model::{
    Connection, ConnectionList, ConnectionPatch, DEFAULT_EVERY_MINUTES, MAX_EVERY_MINUTES,
    MIN_EVERY_MINUTES, NewConnection, Schedule, SchedulePatch,
};
use crate::store::{StoredConnection, secret};
use crate::sync_config::{
    ENV_SOURCE_KEYS, FILE_NETWORK_KEYS, SECRET_SINK_KEYS, SECRET_SOURCE_KEYS,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

/// `POST /v1/connections`
#[utoipa::path(post, path = "/v1/connections", tag = "connections",
    request_body = NewConnection,
    responses((status = 201, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Body(new): Body<NewConnection>,
) -> ApiResult<(StatusCode, Json<Connection>)> {
    let now = sluice_core::now_ms();
    let schedule = apply_schedule(
        Schedule {
            every_minutes: DEFAULT_EVERY_MINUTES,
            paused: false,
        },
        new.schedule.as_ref(),
    )?;
    let c = StoredConnection {
        id: format!("conn_{}", uuid::Uuid::new_v4().simple()),
        name: new
            .name
            .clone()
            .unwrap_or_else(|| format!("{} to {}", new.source, new.destination)),
        source: new.source,
        sink: new.sink,
        destination: new.destination,
        source_settings: new.source_settings.unwrap_or_default(),
        sink_settings: new.sink_settings.unwrap_or_default(),
        tables: Default::default(),
        schedule,
        oauth: None,
        created_at: now,
        updated_at: now,
        schedule_anchor_ms: now,
    };
    validate(&state, &c)?;
    state.store.put_connection(&c)?;
    tracing::info!(connection_id = %c.id, source = %c.source, sink = %c.sink, "connection created");
    Ok((StatusCode::CREATED, Json(state.view(&c)?)))
}

/// `GET /v1/connections`
#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    responses((status = 200, body = ConnectionList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<ConnectionList>> {
    let connections = state
        .store
        .connections()?
        .iter()
        .map(|c| state.view(c))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ConnectionList { connections }))
}

/// `GET /v1/connections/{id}`
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = Connection), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Connection>> {
    let c = state.connection(&id)?;
    Ok(Json(state.view(&c)?))
}

/// `PATCH /v1/connections/{id}`
#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    request_body = ConnectionPatch,
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(p): Body<ConnectionPatch>,
) -> ApiResult<Json<Connection>> {
    let mut c = state.connection(&id)?;
    let old_base_url = c.source_settings.get("base_url").cloned();
    if let Some(name) = p.name {
        c.name = name;
    }
    if let Some(d) = p.destination {
        c.destination = d;
    }
    if let Some(s) = p.source_settings {
        c.source_settings = s;
    }
    if let Some(s) = p.sink_settings {
        c.sink_settings = s;
    }
    let was_paused = c.schedule.paused;
    c.schedule = apply_schedule(c.schedule, p.schedule.as_ref())?;
    if was_paused && !c.schedule.paused {
        c.schedule_anchor_ms = sluice_core::now_ms();
    }
    validate(&state, &c)?;
    // Credentials were given for a host: they never follow the connection to another one.
    let notice = if c.source_settings.get("base_url").cloned() != old_base_url {
        let names = state.store.secret_names(&c.id)?;
        let dropped = [
            secret::API_KEY,
            secret::OAUTH_CLIENT_SECRET,
            secret::OAUTH_REFRESH_TOKEN,
        ]
        .into_iter()
        .any(|n| names.iter().any(|x| x == n))
            || c.oauth.is_some();
        for n in [
            secret::API_KEY,
            secret::OAUTH_CLIENT_SECRET,
            secret::OAUTH_REFRESH_TOKEN,
        ] {
            state.store.remove_secret(&c.id, n)?;
        }
        c.oauth = None;
        dropped.then(|| {
            tracing::info!(connection_id = %c.id, "base_url changed: stored credentials dropped");
            "source_settings.base_url changed: the stored API key and OAuth authorization were dropped; set them again with PUT /v1/connections/{id}/credentials".to_owned()
        })
    } else {
        None
    };
    c.updated_at = sluice_core::now_ms();
    state.store.put_connection(&c)?;
    let mut view = state.view(&c)?;
    view.notice = notice;
    Ok(Json(view))
}

/// `DELETE /v1/connections/{id}`: forgets the connection, its secrets and runs; the lake
/// stays as it is.
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 204, description = "Deleted (the destination's data is kept)"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.connection(&id)?;
    state.runner.delete_connection(&id)?;
    tracing::info!(connection_id = %id, "connection deleted (its destination is kept)");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/connections/{id}/pause`
#[utoipa::path(post, path = "/v1/connections/{id}/pause", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = Connection), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Connection>> {
    set_paused(&state, &id, true)
}

/// `POST /v1/connections/{id}/resume`
#[utoipa::path(post, path = "/v1/connections/{id}/resume", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = Connection), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Connection>> {
    set_paused(&state, &id, false)
}

fn set_paused(state: &AppState, id: &str, paused: bool) -> ApiResult<Json<Connection>> {
    let mut c = state.connection(id)?;
    if c.schedule.paused && !paused {
        c.schedule_anchor_ms = sluice_core::now_ms();
    }
    c.schedule.paused = paused;
    c.updated_at = sluice_core::now_ms();
    state.store.put_connection(&c)?;
    tracing::info!(connection_id = %id, paused, "schedule changed");
    Ok(Json(state.view(&c)?))
}

fn apply_schedule(mut s: Schedule, patch: Option<&SchedulePatch>) -> ApiResult<Schedule> {
    if let Some(p) = patch {
        if let Some(m) = p.every_minutes {
            if !(MIN_EVERY_MINUTES..=MAX_EVERY_MINUTES).contains(&m) {
                return Err(ApiError::invalid(
                    "schedule.every_minutes",
                    format!(
                        "must be between {MIN_EVERY_MINUTES} and {MAX_EVERY_MINUTES} (minutes), not {m}"
                    ),
                ));
            }
            s.every_minutes = m;
        }
        if let Some(p) = p.paused {
            s.paused = p;
        }
    }
    Ok(s)
}

/// Checks a connection's plugins and settings the way a run would read them.
fn validate(state: &AppState, c: &StoredConnection) -> ApiResult<()> {
    if c.name.trim().is_empty() {
        return Err(ApiError::invalid("name", "is empty"));
    }
    let source = state
        .registry
        .source(&c.source)
        .map_err(|e| ApiError::invalid("source", e.message()))?;
    let sink = state
        .registry
        .sink(&c.sink)
        .map_err(|e| ApiError::invalid("sink", e.message()))?;
    if c.destination.trim().is_empty() {
        return Err(ApiError::invalid("destination", "is empty"));
    }
    for key in SECRET_SOURCE_KEYS {
        if c.source_settings.contains_key(key) {
            return Err(ApiError::invalid(
                format!("source_settings.{key}"),
                "is a secret: set it with PUT /v1/connections/{id}/credentials",
            ));
        }
    }
    for key in ENV_SOURCE_KEYS {
        if c.source_settings.contains_key(key) {
            return Err(ApiError::invalid(
                format!("source_settings.{key}"),
                "is not accepted by the server (it would read the server's environment): set the key with PUT /v1/connections/{id}/credentials",
            ));
        }
    }
    if c.sink_settings.contains_key("dest") {
        return Err(ApiError::invalid(
            "sink_settings.dest",
            "set `destination` instead",
        ));
    }
    for key in SECRET_SINK_KEYS {
        if c.sink_settings.contains_key(key) {
            return Err(ApiError::invalid(
                format!("sink_settings.{key}"),
                "is a secret the server does not take: object-store credentials come from the server's environment or instance role",
            ));
        }
    }
    if let Some(Value::String(uri)) = c.sink_settings.get("catalog_uri")
        && uri
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme.starts_with("postgres"))
    {
        return Err(ApiError::invalid(
            "sink_settings.catalog_uri",
            "a PostgreSQL catalog is not accepted by the server (its password would be stored \
             in clear, or read from the server's PGPASSWORD): use an SQLite catalog, or \
             `sluice run` for a PostgreSQL one",
        ));
    }
    for (section, settings) in [
        ("source_settings", &c.source_settings),
        ("sink_settings", &c.sink_settings),
    ] {
        if let Some(Value::Object(network)) = settings.get("network") {
            for key in FILE_NETWORK_KEYS {
                if network.contains_key(key) {
                    return Err(ApiError::invalid(
                        format!("{section}.network.{key}"),
                        "is not accepted by the server (it names a file on the server's disk)",
                    ));
                }
            }
        }
    }
    (source.build)()
        .validate_config(&crate::sync_config::source_settings(c))
        .map_err(|e| ApiError::invalid("source_settings", strip_section(e.message())))?;
    let sink_json =
        sluice_core::sink_config(Value::Object(c.sink_settings.clone()), Some(&c.destination));
    (sink.build)(&sink_json)
        .map_err(|e| ApiError::invalid("sink_settings", strip_section(e.message())))?;
    Ok(())
}

/// Plugins prefix their config errors with `[source]: ` or `[sink]: `.
fn strip_section(message: &str) -> String {
    for prefix in ["[source]: ", "[sink]: ", "[source].", "[sink]."] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    message.to_owned()
}
