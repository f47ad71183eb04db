//! Admin HTTP API (`/admin/...`): no authentication; the server only listens on 127.0.0.1.
//!
//! | route | effect |
//! |---|---|
//! | `GET /admin/now` | `{"now_ms"}` |
//! | `POST /admin/clock/advance` `{"ms"}` | advance the logical clock |
//! | `GET /admin/truth` | [`crate::Truth`] |
//! | `GET /admin/counters`, `POST /admin/counters/reset` | [`crate::Counters`] |
//! | `POST /admin/offset_tokens/expire` | invalidate every offset token issued so far |
//! | `POST /admin/api_keys` `{"confidential"}` | `{"key"}` |
//! | `POST /admin/oauth/clients` | `{"client_id", "client_secret"}` |
//! | `POST /admin/oauth/codes`, `POST /admin/oauth/refresh_tokens` `{"client_id", "confidential"}` | `{"code"}` / `{"refresh_token"}` |
//! | `PUT /admin/faults` [`crate::FaultConfig`], `PUT /admin/rate_limit` [`crate::RateLimit`] or `null`, `PUT /admin/latency` `{"ms"}` | runtime settings |
//! | `POST /admin/opportunities` | create, `{"id"}` |
//! | `DELETE /admin/opportunities/{id}` | delete |
//! | `POST /admin/opportunities/{id}/vanish` | delete without a row in `/opportunities/deleted` |
//! | `PUT /admin/list_order` `"insertion"` or `"created_at"` | [`crate::ListOrder`] of `/opportunities` |
//! | `POST /admin/opportunities/{id}/notes` / `feedback` | add, `{"id"}` |
//! | `DELETE /admin/opportunities/{id}/notes/{note}` / `feedback/{fb}` | delete |
//! | `DELETE /admin/opportunities/{id}/children/{child}/silently` | delete a note, feedback or profile form without bumping `updatedAt` |
//! | `POST /admin/opportunities/{id}/stage`, `POST /admin/opportunities/{id}/update` | stage change / field update |
//! | `POST /admin/users/{id}/deactivate`, `DELETE /admin/{users,postings,stages,archive_reasons,requisitions}/{id}` | lookups |
//! | `POST /admin/requisition_fields` `{"key", "type"}` | add a requisition custom field |
//! | `POST /admin/mutate` `{"fraction", "seed"}` | [`crate::MutationSummary`] |

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};

use crate::respond::{error, json_response};
use crate::state::{EmulatorError, ListOrder};
use crate::{Emulator, FaultConfig, Inner, RateLimit};

type S = State<Arc<Inner>>;

fn body(b: &Bytes) -> Value {
    if b.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(b).unwrap_or(Value::Null)
    }
}

fn emu(inner: &Arc<Inner>) -> Emulator {
    Emulator {
        inner: inner.clone(),
    }
}

fn result<T: serde::Serialize>(r: Result<T, EmulatorError>) -> Response {
    match r {
        Ok(v) => json_response(200, &serde_json::to_value(v).unwrap_or_default()),
        Err(EmulatorError::NotFound { kind, id }) => {
            error(404, "ResourceNotFound", format!("{kind} {id} not found"))
        }
        Err(e) => error(400, "BadRequestError", e.to_string()),
    }
}

fn ok() -> Response {
    json_response(200, &json!({"ok": true}))
}

fn id_obj(r: Result<String, EmulatorError>) -> Response {
    result(r.map(|id| json!({"id": id})))
}

fn unit(r: Result<(), EmulatorError>) -> Response {
    result(r.map(|()| json!({"ok": true})))
}

pub(crate) fn router(inner: Arc<Inner>) -> Router<Arc<Inner>> {
    let _ = inner;
    Router::new()
        .route("/now", get(|State(i): S| async move { json_response(200, &json!({"now_ms": emu(&i).now_ms()})) }))
        .route("/clock/advance", post(|State(i): S, b: Bytes| async move {
            match body(&b)["ms"].as_i64() {
                Some(ms) if ms >= 0 => { emu(&i).advance_clock(ms); json_response(200, &json!({"now_ms": emu(&i).now_ms()})) }
                _ => error(400, "BadRequestError", "body must be {\"ms\": <non-negative integer>}"),
            }
        }))
        .route("/truth", get(|State(i): S| async move { json_response(200, &serde_json::to_value(emu(&i).truth()).unwrap_or_default()) }))
        .route("/counters", get(|State(i): S| async move { json_response(200, &serde_json::to_value(emu(&i).counters()).unwrap_or_default()) }))
        .route("/counters/reset", post(|State(i): S| async move { emu(&i).reset_counters(); ok() }))
        .route("/offset_tokens/expire", post(|State(i): S| async move { emu(&i).expire_offset_tokens(); ok() }))
        .route("/api_keys", post(|State(i): S, b: Bytes| async move {
            let conf = body(&b)["confidential"].as_bool().unwrap_or(false);
            json_response(200, &json!({"key": emu(&i).create_api_key(conf)}))
        }))
        .route("/oauth/clients", post(|State(i): S| async move {
            let (id, secret) = emu(&i).register_oauth_client();
            json_response(200, &json!({"client_id": id, "client_secret": secret}))
        }))
        .route("/oauth/codes", post(|State(i): S, b: Bytes| async move {
            let v = body(&b);
            match emu(&i).issue_authorization_code(v["client_id"].as_str().unwrap_or(""), v["confidential"].as_bool().unwrap_or(true)) {
                Some(code) => json_response(200, &json!({"code": code})),
                None => error(404, "ResourceNotFound", "unknown client_id"),
            }
        }))
        .route("/oauth/refresh_tokens", post(|State(i): S, b: Bytes| async move {
            let v = body(&b);
            match emu(&i).try_issue_refresh_token(v["client_id"].as_str().unwrap_or(""), v["confidential"].as_bool().unwrap_or(true)) {
                Some(t) => json_response(200, &json!({"refresh_token": t})),
                None => error(404, "ResourceNotFound", "unknown client_id"),
            }
        }))
        .route("/faults", put(|State(i): S, b: Bytes| async move {
            match serde_json::from_slice::<FaultConfig>(&b) {
                Ok(f) => { emu(&i).set_faults(f); ok() }
                Err(e) => error(400, "BadRequestError", e.to_string()),
            }
        }))
        .route("/rate_limit", put(|State(i): S, b: Bytes| async move {
            match serde_json::from_slice::<Option<RateLimit>>(&b) {
                Ok(r) => { emu(&i).set_rate_limit(r); ok() }
                Err(e) => error(400, "BadRequestError", e.to_string()),
            }
        }))
        .route("/latency", put(|State(i): S, b: Bytes| async move {
            match body(&b)["ms"].as_u64() {
                Some(ms) => { emu(&i).set_latency(Duration::from_millis(ms)); ok() }
                None => error(400, "BadRequestError", "body must be {\"ms\": <integer>}"),
            }
        }))
        .route("/opportunities", post(|State(i): S| async move { json_response(200, &json!({"id": emu(&i).create_opportunity()})) }))
        .route("/opportunities/{id}", delete(|State(i): S, Path(id): Path<String>| async move { unit(emu(&i).try_delete_opportunity(&id)) }))
        .route("/opportunities/{id}/vanish", post(|State(i): S, Path(id): Path<String>| async move { unit(emu(&i).try_vanish_opportunity(&id)) }))
        .route("/list_order", put(|State(i): S, b: Bytes| async move {
            match serde_json::from_slice::<ListOrder>(&b) {
                Ok(o) => { emu(&i).set_list_order(o); ok() }
                Err(e) => error(400, "BadRequestError", e.to_string()),
            }
        }))
        .route("/opportunities/{id}/notes", post(|State(i): S, Path(id): Path<String>| async move { id_obj(emu(&i).try_add_note(&id)) }))
        .route("/opportunities/{id}/feedback", post(|State(i): S, Path(id): Path<String>| async move { id_obj(emu(&i).try_add_feedback(&id)) }))
        .route("/opportunities/{id}/notes/{child}", delete(|State(i): S, Path((id, c)): Path<(String, String)>| async move { unit(emu(&i).try_delete_note(&id, &c)) }))
        .route("/opportunities/{id}/feedback/{child}", delete(|State(i): S, Path((id, c)): Path<(String, String)>| async move { unit(emu(&i).try_delete_feedback(&id, &c)) }))
        .route("/opportunities/{id}/children/{child}/silently", delete(|State(i): S, Path((id, c)): Path<(String, String)>| async move { unit(emu(&i).try_delete_child_silently(&id, &c)) }))
        .route("/opportunities/{id}/stage", post(|State(i): S, Path(id): Path<String>| async move { unit(emu(&i).try_change_stage(&id)) }))
        .route("/opportunities/{id}/update", post(|State(i): S, Path(id): Path<String>| async move { unit(emu(&i).try_update_opportunity(&id)) }))
        .route("/users/{id}/deactivate", post(|State(i): S, Path(id): Path<String>| async move { unit(emu(&i).try_deactivate_user(&id)) }))
        .route("/{kind}/{id}", delete(|State(i): S, Path((kind, id)): Path<(String, String)>| async move {
            let kind: &'static str = match kind.as_str() {
                "users" => "users", "postings" => "postings", "stages" => "stages",
                "archive_reasons" => "archive_reasons", "requisitions" => "requisitions",
                _ => return error(404, "ResourceNotFound", format!("cannot delete {kind}")),
            };
            unit(emu(&i).try_delete_lookup(kind, &id))
        }))
        .route("/requisition_fields", post(|State(i): S, b: Bytes| async move {
            let v = body(&b);
            id_obj(emu(&i).try_add_requisition_field(v["key"].as_str().unwrap_or(""), v["type"].as_str().unwrap_or("")))
        }))
        .route("/mutate", post(|State(i): S, b: Bytes| async move {
            let v = body(&b);
            match v["fraction"].as_f64() {
                Some(f) => json_response(200, &serde_json::to_value(emu(&i).mutate_fraction(f, v["seed"].as_u64().unwrap_or(0))).unwrap_or_default()),
                None => error(400, "BadRequestError", "body must be {\"fraction\": <0..1>, \"seed\": <int>}"),
            }
        }))
}
