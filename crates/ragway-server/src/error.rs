//! The one place where errors become HTTP responses. Seed routes answer in FastAPI's shape
//! (`{"detail": ...}`); every status is chosen by one exhaustive match.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ragway_core::ProviderError;
use serde::Serialize;
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the route expects; each entry says what and where.
    #[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.loc.join("."), e.msg)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),

    #[error("Unknown llm_name \"{name}\". Valid names: {}", .known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },

    #[error("Unknown vector_search_type \"{name}\". Valid names: {}", .known.join(", "))]
    UnknownStore { name: String, known: Vec<String> },

    /// A document route names a store that does not exist.
    #[error("No store named \"{name}\". Stores: {}", .known.join(", "))]
    NoSuchStore { name: String, known: Vec<String> },

    /// Documents can only be added to or removed from writable stores.
    #[error("Store \"{name}\" ({kind}) is read-only. Writable stores: {}", if .writable.is_empty() { "(none)".to_owned() } else { .writable.join(", ") })]
    ReadOnlyStore {
        name: String,
        kind: String,
        writable: Vec<String>,
    },

    #[error("Store \"{store}\" has no document \"{id}\"")]
    NoSuchDocument { store: String, id: String },

    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// One validation problem in FastAPI's (pydantic's) shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldError {
    /// Where: `["body", "prompt"]`.
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

/// When a throttled provider gives no hint, clients are asked to wait this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// The status and, for throttling, how long the client should wait.
    pub fn status(&self) -> (StatusCode, Option<Duration>) {
        match self {
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, None),
            Self::UnknownModel { .. } | Self::UnknownStore { .. } => {
                (StatusCode::BAD_REQUEST, None)
            }
            Self::NoSuchStore { .. } | Self::NoSuchDocument { .. } => (StatusCode::NOT_FOUND, None),
            Self::ReadOnlyStore { .. } => (StatusCode::METHOD_NOT_ALLOWED, None),
            Self::Provider(error) => match error {
                ProviderError::Upstream { .. }
                | ProviderError::Unreachable { .. }
                | ProviderError::InvalidResponse { .. } => (StatusCode::BAD_GATEWAY, None),
                ProviderError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, None),
                ProviderError::Throttled { retry_after, .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
                ),
                ProviderError::Unsupported { .. } => (StatusCode::BAD_REQUEST, None),
                ProviderError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, None),
            },
        }
    }

    /// The `detail` value: a list of field errors for 422, a sentence otherwise.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            Self::Validation(errors) => json!(errors),
            other => json!(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after) = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed upstream");
        }
        let mut response = (status, axum::Json(json!({ "detail": self.detail() }))).into_response();
        if let Some(wait) = retry_after {
            let seconds = wait.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
