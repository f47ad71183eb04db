//! The API's errors: an HTTP status, a stable code and a one-line message (naming the field
//! when a body does not validate).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `unauthorized`, `invalid_request`, `not_found`, `conflict`, `store` or `internal`.
    pub code: &'static str,
    /// One line, naming the field for `invalid_request`; never a secret.
    pub message: String,
    /// The offending field of the request body (dotted path), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: one_line(message.into()),
            field: None,
        }
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <SLUICE_API_TOKEN>)",
        )
    }

    /// 400 naming `field`: the message is `<field>: <why>`.
    pub fn invalid(field: impl Into<String>, why: impl std::fmt::Display) -> Self {
        let field = field.into();
        let message = if field.is_empty() {
            why.to_string()
        } else {
            format!("{field}: {why}")
        };
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        e.field = (!field.is_empty()).then_some(field);
        e
    }

    /// 400 with a message that already names what is wrong (a sluice config error).
    pub fn bad_request(message: impl Into<String>) -> Self {
        let message = message.into();
        let field = message
            .split_once(": ")
            .map(|(f, _)| f.to_owned())
            .filter(|f| !f.contains(' '));
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        e.field = field;
        e
    }

    /// 404 for an unknown id.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with id `{id}`"),
        )
    }

    /// 409: the request conflicts with what is going on (a run in progress).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500: the embedded store failed.
    pub fn store(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store",
            format!("the server's store failed: {message}"),
        )
    }

    /// 500: anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<sluice_core::Error> for ApiError {
    fn from(e: sluice_core::Error) -> Self {
        match e.kind() {
            sluice_core::ErrorKind::Config => ApiError::bad_request(e.message().to_owned()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}
