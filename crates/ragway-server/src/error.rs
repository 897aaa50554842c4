//! The one place where errors become HTTP responses. Seed routes answer in FastAPI's shape
//! (`{"detail": ...}`), the OpenAI-compatible `/v1` routes in OpenAI's (`{"error": {...}}`,
//! through [`OpenAiError`]); every status is chosen by one exhaustive match.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ragway_core::ProviderError;
use ragway_engine::EngineError;
pub use ragway_requests::FieldError;
use ragway_requests::RequestError;
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the route expects; each entry says what and where.
    #[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.loc.join("."), e.msg)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),

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

    /// An OpenAI-compatible request names an embedding model that is not configured.
    #[error("The model \"{name}\" does not exist. Embedding models: {}", if .known.is_empty() { "(none)".to_owned() } else { .known.join(", ") })]
    UnknownEmbedder { name: String, known: Vec<String> },

    /// A well-formed request asks for something this route or model cannot do.
    #[error("{message}")]
    BadRequest {
        /// The offending field, OpenAI-style (`messages.2.content`).
        param: Option<String>,
        message: String,
    },

    /// No route at this path (OpenAI-compatible routes answer it in OpenAI's shape).
    #[error("Unknown request URL: {method} {path}")]
    UnknownRoute { method: String, path: String },

    /// No API key, or one ragway does not know.
    #[error("{0}")]
    Unauthorized(String),

    /// The API key may not use this model or store.
    #[error("{0}")]
    Forbidden(String),

    /// The API key is over its requests- or tokens-per-minute limit.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },

    /// The body is larger than `[server.limits] max_body_bytes`.
    #[error(
        "request body is larger than the limit of {limit} bytes (server.limits.max_body_bytes)"
    )]
    PayloadTooLarge { limit: usize },

    /// A body sent as something other than JSON: browsers send `text/plain` and form bodies to
    /// any site without asking, so only `application/json` is read.
    #[error(
        "request body must be JSON sent with Content-Type: application/json; got {}",
        .found.as_deref().map_or("no Content-Type".to_owned(), |found| format!("Content-Type: {found}"))
    )]
    UnsupportedMediaType { found: Option<String> },

    /// The request names a `Host` this server does not answer to (`[server] allowed_hosts`).
    #[error(
        "this server does not answer to the host {host:?}: add it to [server] allowed_hosts \
         (without API keys, only localhost and IP addresses are answered)"
    )]
    HostNotAllowed { host: String },

    /// ragway is serving as many requests as `[server.limits] max_in_flight` allows.
    #[error("ragway is serving its limit of {limit} requests at once; retry shortly")]
    Overloaded { limit: usize },

    /// The request ran past `[server.limits] request_timeout_secs`.
    #[error("the request took longer than the limit of {}s (server.limits.request_timeout_secs)", .after.as_secs_f64())]
    TimedOut { after: Duration },

    /// The per-key limits cannot be counted (Redis is unreachable) and `[server.state]
    /// redis_unavailable = "fail_closed"` refuses requests until they can.
    #[error(
        "ragway cannot count this API key's limits right now (its rate-limit store, Redis, does \
         not answer) and is configured to refuse requests until it can \
         (server.state.redis_unavailable = \"fail_closed\"); retry shortly"
    )]
    LimitsUnavailable,

    /// What the engine refused or failed with: an unknown model or store, a request the
    /// model cannot serve, every model cooling down, a provider's failure.
    #[error(transparent)]
    Engine(#[from] EngineError),

    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// `message` with anything that looks like a credential replaced by `[redacted]`. Providers'
/// messages reach callers because the reason helps them (a wrong model name, a context too
/// long), but some quote what they were given: OpenAI's "Incorrect API key provided:
/// sk-proj-…", a proxy echoing an `Authorization` header, a URL with a password. Words with a
/// key's well-known prefix, the word after `Bearer`, and what follows `key=`, `token:` and the
/// like are dropped; the rest of the sentence stays.
pub fn redact_credentials(message: &str) -> String {
    const PREFIXES: [&str; 12] = [
        "sk-",
        "sk_",
        "rk-",
        "pk-",
        "AKIA",
        "ASIA",
        "ghp_",
        "gho_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "AIza",
    ];
    const NAMES: [&str; 8] = [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "signature",
        "authorization",
    ];
    let mut out = String::with_capacity(message.len());
    let mut redact_next = false;
    let mut rest = message;
    while !rest.is_empty() {
        // Words are runs of characters a credential is made of; the rest passes through.
        let start = rest
            .find(|c: char| c.is_ascii_alphanumeric() || "-_.~+/=".contains(c))
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.~+/=*".contains(c)))
            .unwrap_or(rest.len());
        let whole = &rest[..end];
        rest = &rest[end..];
        // A sentence's full stop is not part of the word before it.
        let word = whole.trim_end_matches('.');
        let dots = &whole[word.len()..];
        if word.is_empty() {
            out.push_str(dots);
            continue;
        }
        let lower = word.to_ascii_lowercase();
        let redacted = if let Some((name, value)) = word.split_once('=')
            && NAMES.iter().any(|n| name.to_ascii_lowercase().ends_with(n))
            && !value.is_empty()
        {
            // `key=VALUE` in one word (a query string): keep the name, drop the value.
            Some(format!("{name}=[redacted]"))
        } else if (redact_next || PREFIXES.iter().any(|p| word.starts_with(p))) && word.len() >= 8 {
            Some("[redacted]".to_owned())
        } else {
            None
        };
        match redacted {
            Some(replacement) => {
                out.push_str(&replacement);
                redact_next = false;
            }
            None => {
                out.push_str(word);
                // `Bearer X`, `api_key: X`, `token= X`: the next long word is the value (a
                // name in a sentence, "the token included in ...", has no separator after it).
                let trimmed = lower.trim_end_matches('=');
                let separated = word.ends_with('=') || rest.starts_with([':', '=']);
                redact_next = trimmed == "bearer"
                    || trimmed == "basic"
                    || (separated && NAMES.iter().any(|n| trimmed.ends_with(n)));
            }
        }
        out.push_str(dots);
    }
    out
}

/// When a throttled provider gives no hint, clients are asked to wait this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long a client refused because Redis does not answer is asked to wait: about how long
/// ragway leaves Redis alone after a failed call before asking again.
const LIMITS_RETRY: Duration = Duration::from_secs(1);

/// How long a client turned away at the concurrency limit is asked to wait.
const OVERLOAD_RETRY: Duration = Duration::from_secs(1);

/// `error` in the shape of the route at `path`: OpenAI's under `/v1`, FastAPI's elsewhere.
/// For errors raised before a handler runs (auth, limits).
pub fn in_route_shape(path: &str, error: ApiError) -> Response {
    if path == "/v1" || path.starts_with("/v1/") {
        OpenAiError(error).into_response()
    } else {
        error.into_response()
    }
}

impl ApiError {
    /// The status and, for throttling, how long the client should wait.
    pub fn status(&self) -> (StatusCode, Option<Duration>) {
        match self {
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, None),
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, None),
            Self::NoSuchStore { .. }
            | Self::NoSuchDocument { .. }
            | Self::UnknownEmbedder { .. }
            | Self::UnknownRoute { .. } => (StatusCode::NOT_FOUND, None),
            Self::ReadOnlyStore { .. } => (StatusCode::METHOD_NOT_ALLOWED, None),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            Self::RateLimited { retry_after, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after))
            }
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Self::UnsupportedMediaType { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
            Self::HostNotAllowed { .. } => (StatusCode::MISDIRECTED_REQUEST, None),
            Self::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(OVERLOAD_RETRY)),
            Self::LimitsUnavailable => (StatusCode::SERVICE_UNAVAILABLE, Some(LIMITS_RETRY)),
            Self::TimedOut { .. } => (StatusCode::GATEWAY_TIMEOUT, None),
            Self::Engine(error) => match error {
                EngineError::UnknownModel { .. }
                | EngineError::UnknownStore { .. }
                | EngineError::BadRequest { .. } => (StatusCode::BAD_REQUEST, None),
                EngineError::CoolingDown { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, error.cooldown_ends())
                }
                EngineError::InvalidAnswer { .. } => (StatusCode::BAD_GATEWAY, None),
                EngineError::Provider(error) => provider_status(error),
            },
            Self::Provider(error) => provider_status(error),
        }
    }

    /// The `detail` value: a list of field errors for 422, a sentence otherwise.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            Self::Validation(errors) => json!(errors),
            other => json!(other.public_message()),
        }
    }

    /// The sentence a caller reads. A failure inside ragway (a store's files, its database)
    /// names the component and no more: its message holds paths and internals, which go to the
    /// log. Anything else is told as it is, with credentials redacted.
    fn public_message(&self) -> String {
        match self {
            Self::Provider(ProviderError::Internal { provider, message })
            | Self::Engine(EngineError::Provider(ProviderError::Internal { provider, message })) => {
                tracing::error!(provider = %provider, "internal error: {message}");
                format!("{provider} failed inside ragway; the server's log says why")
            }
            other => redact_credentials(&other.to_string()),
        }
    }
}

/// The status of a provider's failure and, for throttling, how long to wait.
fn provider_status(error: &ProviderError) -> (StatusCode, Option<Duration>) {
    match error {
        ProviderError::Upstream { .. }
        | ProviderError::Unreachable { .. }
        | ProviderError::InvalidResponse { .. } => (StatusCode::BAD_GATEWAY, None),
        ProviderError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, None),
        ProviderError::Unavailable { .. } | ProviderError::Busy { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(OVERLOAD_RETRY))
        }
        ProviderError::Throttled { retry_after, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
        ),
        ProviderError::Unsupported { .. } => (StatusCode::BAD_REQUEST, None),
        ProviderError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, None),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after) = self.status();
        respond(
            &self,
            status,
            retry_after,
            json!({ "detail": self.detail() }),
        )
    }
}

fn respond(
    error: &ApiError,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: serde_json::Value,
) -> Response {
    if status.is_server_error() {
        tracing::warn!(%error, status = status.as_u16(), "request failed upstream");
    }
    if let ApiError::Provider(ProviderError::Busy { provider, .. })
    | ApiError::Engine(EngineError::Provider(ProviderError::Busy { provider, .. })) = error
    {
        metrics::counter!("ragway_busy_total", "component" => provider.clone()).increment(1);
    }
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs().max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// An [`ApiError`] in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with
/// the status codes OpenAI uses, so the official SDKs raise their matching exception classes
/// (`BadRequestError`, `NotFoundError`, `RateLimitError`, ...).
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Invalid(errors) => Self::Validation(errors),
            RequestError::BadRequest { param, message } => Self::BadRequest {
                param: Some(param),
                message,
            },
        }
    }
}

impl From<RequestError> for OpenAiError {
    fn from(error: RequestError) -> Self {
        Self(error.into())
    }
}

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<EngineError> for OpenAiError {
    fn from(error: EngineError) -> Self {
        Self(error.into())
    }
}

impl From<ProviderError> for OpenAiError {
    fn from(error: ProviderError) -> Self {
        Self(error.into())
    }
}

impl OpenAiError {
    /// Status, then the body's `type`, `param` and `code`.
    fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        Option<String>,
        Option<&'static str>,
    ) {
        let invalid = "invalid_request_error";
        match &self.0 {
            ApiError::Validation(errors) => {
                let param = errors.first().map(|e| {
                    let path: Vec<&str> = e.loc.iter().skip(1).map(String::as_str).collect();
                    path.join(".")
                });
                (StatusCode::BAD_REQUEST, invalid, param, None)
            }
            ApiError::Engine(EngineError::UnknownModel { .. })
            | ApiError::UnknownEmbedder { .. } => (
                StatusCode::NOT_FOUND,
                invalid,
                Some("model".into()),
                Some("model_not_found"),
            ),
            ApiError::Engine(EngineError::UnknownStore { .. }) => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("vector_search_type".into()),
                Some("store_not_found"),
            ),
            ApiError::BadRequest { param, .. }
            | ApiError::Engine(EngineError::BadRequest { param, .. }) => {
                (StatusCode::BAD_REQUEST, invalid, param.clone(), None)
            }
            ApiError::UnknownRoute { .. } => {
                (StatusCode::NOT_FOUND, invalid, None, Some("unknown_url"))
            }
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                invalid,
                None,
                Some("invalid_api_key"),
            ),
            ApiError::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                None,
                Some("not_allowed_for_key"),
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                invalid,
                None,
                Some("request_too_large"),
            ),
            ApiError::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                invalid,
                None,
                Some("unsupported_media_type"),
            ),
            ApiError::HostNotAllowed { .. } => (
                StatusCode::MISDIRECTED_REQUEST,
                invalid,
                None,
                Some("host_not_allowed"),
            ),
            ApiError::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                None,
                Some("overloaded"),
            ),
            ApiError::LimitsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                None,
                Some("rate_limit_store_unavailable"),
            ),
            ApiError::TimedOut { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                None,
                Some("request_timeout"),
            ),
            other => {
                let (status, _) = other.status();
                let (kind, code) = match status.as_u16() {
                    429 => ("rate_limit_error", Some("rate_limit_exceeded")),
                    504 => ("timeout_error", Some("upstream_timeout")),
                    502 => ("api_error", Some("upstream_error")),
                    503 => ("api_error", Some("model_cooling_down")),
                    400..=499 => (invalid, None),
                    _ => ("api_error", None),
                };
                (status, kind, None, code)
            }
        }
    }

    /// The `{"error": {...}}` object, also sent inside a stream that fails midway.
    pub fn body(&self) -> serde_json::Value {
        let (_, kind, param, code) = self.parts();
        let message = match &self.0 {
            ApiError::Engine(EngineError::UnknownModel { name, known }) => format!(
                "The model \"{name}\" does not exist. Models: {}",
                known.join(", ")
            ),
            other => other.public_message(),
        };
        json!({ "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code,
        }})
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, ..) = self.parts();
        let (_, retry_after) = self.0.status();
        respond(&self.0, status, retry_after, self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::redact_credentials as redact;

    #[test]
    fn credentials_in_provider_messages_are_redacted_and_the_reason_kept() {
        assert_eq!(
            redact(
                "Incorrect API key provided: sk-proj-abc123XYZ****wxyz. You can find your API \
                 key at https://platform.openai.com."
            ),
            "Incorrect API key provided: [redacted]. You can find your API key at \
             https://platform.openai.com."
        );
        assert_eq!(
            redact("upstream said: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x rejected"),
            "upstream said: Authorization: Bearer [redacted] rejected"
        );
        assert_eq!(
            redact("GET https://h/v1?api_key=s3cr3tvalue&model=gpt-4o failed"),
            "GET https://h/v1?api_key=[redacted]&model=gpt-4o failed"
        );
        assert_eq!(
            redact("The security token included in the request is invalid: AKIAIOSFODNN7EXAMPLE"),
            "The security token included in the request is invalid: [redacted]"
        );
        assert_eq!(redact("password: hunter2hunter2"), "password: [redacted]");
        for plain in [
            "This model's maximum context length is 8192 tokens. However, you requested 9000 \
             tokens.",
            "model gpt-4o-mini does not exist",
            "The provided model identifier is invalid.",
        ] {
            assert_eq!(redact(plain), plain);
        }
    }
}
