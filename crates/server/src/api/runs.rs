//! Sync now, re-sync, run history and the committed state.

use super::{AppState, Body};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::model::{ResyncRequest, Run, RunList, StateView, Trigger};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

/// `POST /v1/connections/{id}/sync`: starts a run now (409 when one is queued or running).
#[utoipa::path(post, path = "/v1/connections/{id}/sync", tag = "runs",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 202, body = Run), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn sync_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let run = state.runner.start(&id, Trigger::Manual, Vec::new())?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// `POST /v1/connections/{id}/resync`: starts a run that re-imports one table (or every
/// table) from scratch.
#[utoipa::path(post, path = "/v1/connections/{id}/resync", tag = "runs",
    params(("id" = String, Path, description = "Connection id")),
    request_body = ResyncRequest,
    responses((status = 202, body = Run), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn resync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<ResyncRequest>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let c = state.connection(&id)?;
    let catalog = (state.registry.source(&c.source)?.build)().catalog();
    let tables = match req.table {
        Some(t) if catalog.iter().any(|s| s.name == t) => vec![t],
        Some(t) => {
            return Err(ApiError::invalid(
                "table",
                format!("unknown table `{t}` of source `{}`", c.source),
            ));
        }
        None => catalog.iter().map(|s| s.name.clone()).collect(),
    };
    let run = state.runner.start(&id, Trigger::Resync, tables)?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Query of the run list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// At most this many runs (default 50, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/connections/{id}/runs`: newest first.
#[utoipa::path(get, path = "/v1/connections/{id}/runs", tag = "runs",
    params(("id" = String, Path, description = "Connection id"), ListQuery),
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RunList>> {
    state.connection(&id)?;
    let runs = state
        .store
        .runs(&id, q.limit.unwrap_or(50).clamp(1, 1000))?;
    Ok(Json(RunList { runs }))
}

/// `GET /v1/runs/{id}`
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Run>> {
    state
        .store
        .run(&id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("run", &id))
}

/// `GET /v1/connections/{id}/state`: the committed state in the destination (no secrets).
#[utoipa::path(get, path = "/v1/connections/{id}/state", tag = "runs",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = StateView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn state(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<StateView>> {
    let c = state.connection(&id)?;
    let sink_json = sluice_core::sink_config(
        serde_json::Value::Object(c.sink_settings.clone()),
        Some(&c.destination),
    );
    let sink = (state.registry.sink(&c.sink)?.build)(&sink_json)?;
    let committed = sink
        .read_state()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let state = committed
        .map(|s| serde_json::from_str(&s.to_redacted_json()))
        .transpose()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(StateView { state }))
}
