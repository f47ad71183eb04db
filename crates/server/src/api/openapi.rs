//! The OpenAPI document, derived from the handlers and body types.

use super::AppState;
use crate::error::{ErrorBody, ErrorDetail};
use crate::model::*;
use axum::Json;
use axum::extract::State;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "sluice", description = "Manage sluice connections: settings, credentials, schema, syncs and their history."),
    paths(
        super::connections::create, super::connections::list, super::connections::get,
        super::connections::patch, super::connections::delete, super::connections::pause,
        super::connections::resume,
        super::credentials::set, super::credentials::check, super::credentials::authorize,
        super::credentials::callback,
        super::schema::get, super::schema::patch,
        super::runs::sync_now, super::runs::resync, super::runs::list, super::runs::get,
        super::runs::state,
        super::metrics,
    ),
    components(schemas(ErrorBody, ErrorDetail, Connection, ConnectionList, NewConnection,
        ConnectionPatch, Schedule, SchedulePatch, CredentialStatus, CredentialsInput,
        OAuthClientInput, CheckResult, Run, RunList, RunStatus, Trigger, TableRows,
        ResyncRequest, AuthorizeRequest, Authorization, Schema, SchemaTable, SchemaColumn,
        SchemaPatch, TableSettingsDoc, StateView)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /v1/openapi.json`
pub(crate) async fn document(State(_): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
