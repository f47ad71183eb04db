//! Schema: a connection's tables and columns with their settings, and changes to them,
//! validated like `sluice.toml` (the same messages).

use super::body::parse_value;
use super::{AppState, Body};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::model::{Schema, SchemaColumn, SchemaPatch, SchemaTable};
use crate::store::{StoredConnection, secret};
use axum::Json;
use axum::extract::{Path, State};
use sluice_core::{Plan, RunSettings, TableSettings};

/// `GET /v1/connections/{id}/schema`
#[utoipa::path(get, path = "/v1/connections/{id}/schema", tag = "schema",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, body = Schema), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Schema>> {
    let c = state.connection(&id)?;
    Ok(Json(schema(&state, &c)?))
}

/// `PATCH /v1/connections/{id}/schema`: replaces the settings of each listed table (`null`
/// resets one to its defaults).
#[utoipa::path(patch, path = "/v1/connections/{id}/schema", tag = "schema",
    params(("id" = String, Path, description = "Connection id")),
    request_body = SchemaPatch,
    responses((status = 200, body = Schema), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(p): Body<SchemaPatch>,
) -> ApiResult<Json<Schema>> {
    let mut c = state.connection(&id)?;
    let mut tables = c.tables.clone();
    for (name, value) in &p.tables {
        if value.is_null() {
            tables.remove(name);
        } else {
            let settings: TableSettings = parse_value(&format!("tables.{name}"), value)?;
            tables.insert(name.clone(), settings);
        }
    }
    let catalog = (state.registry.source(&c.source)?.build)().catalog();
    let salt = state.store.secret(&c.id, secret::HASH_SALT)?;
    Plan::new(
        &catalog,
        &RunSettings::new(tables.clone(), salt).sync_settings(),
    )
    .map_err(|e| ApiError::bad_request(e.message().to_owned()))?;
    c.tables = tables;
    c.updated_at = sluice_core::now_ms();
    state.store.put_connection(&c)?;
    tracing::info!(connection_id = %id, tables = p.tables.len(), "schema settings changed");
    Ok(Json(schema(&state, &c)?))
}

fn schema(state: &AppState, c: &StoredConnection) -> ApiResult<Schema> {
    let catalog = (state.registry.source(&c.source)?.build)().catalog();
    let tables = catalog
        .iter()
        .map(|spec| {
            let s = c.tables.get(&spec.name).cloned().unwrap_or_default();
            SchemaTable {
                name: spec.name.clone(),
                description: spec.description.clone(),
                enabled: s.enabled,
                history: s.history.unwrap_or(spec.history),
                history_default: spec.history_default,
                columns: spec
                    .columns
                    .iter()
                    .map(|col| SchemaColumn {
                        name: col.name.clone(),
                        ty: col.ty.name().to_owned(),
                        primary_key: spec.is_key(&col.name),
                        sensitive: col.sensitive,
                        blocked: s.blocked_columns.contains(&col.name),
                        hashed: s.hashed_columns.contains(&col.name),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Schema { tables })
}
