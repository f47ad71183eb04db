//! Response helpers shared by the Lever API routes (`server`) and the admin routes (`admin`):
//! a JSON body with a status, and Lever's error body.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

/// Builds a JSON response with a single in-memory body.
pub(crate) fn json_response(status: u16, v: &Value) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(v).unwrap_or_default());
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Lever's error body `{"code", "message"}`.
pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
    json_response(status, &json!({"code": code, "message": message.into()}))
}
