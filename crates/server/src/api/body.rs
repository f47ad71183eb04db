//! A JSON body extractor whose errors are 400s naming the offending field.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// A JSON request body; an empty body reads as `{}`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid("body", e.body_text()))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse(bytes).map(Body)
    }
}

/// Parses `bytes` as `T`; errors name the path of the offending field.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path.is_empty() || path == "." {
            "body".to_owned()
        } else {
            path
        };
        ApiError::invalid(field, strip_position(&inner.to_string()))
    })
}

/// Parses `value` as `T`, naming fields below `prefix` (`tables.users`).
pub(crate) fn parse_value<T: DeserializeOwned>(
    prefix: &str,
    value: &serde_json::Value,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path.is_empty() || path == "." {
            prefix.to_owned()
        } else {
            format!("{prefix}.{path}")
        };
        ApiError::invalid(field, strip_position(&inner.to_string()))
    })
}

/// serde_json appends ` at line L column C`; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
