//! The error responses routes share, grouped by cause, in the two shapes of
//! [`crate::error`]: FastAPI's `{"detail": ...}` on ragway's own routes, OpenAI's
//! `{"error": {...}}` under `/v1`. Handlers list the groups that apply to them in their
//! `#[utoipa::path]`; errors particular to one route are written there.

use utoipa::IntoResponses;

use super::schemas::{ErrorMessage, OpenAiErrorBody, ValidationErrors};

/// Refusals of a protected route: no or a wrong API key, a key that may not use what the
/// request names or is over its limits, or ragway at its concurrency limit or unable to count
/// the key's limits.
#[derive(IntoResponses)]
pub enum Access {
    /// The API key is missing or wrong (`Authorization: Bearer <key>` or `x-api-key`).
    #[response(status = 401)]
    Unauthorized(ErrorMessage),
    /// The API key may not use the model or store the request names, or may read the store but
    /// not write it (adding and deleting documents needs `write_stores`); the message says which.
    #[response(status = 403)]
    Forbidden(ErrorMessage),
    /// The API key is over its requests- or tokens-per-minute limit (tokens are reserved for
    /// the prompt and `max_tokens` before the model is called); retry after `Retry-After`.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    OverKeyLimit(ErrorMessage),
    /// ragway is at its concurrency limit, or cannot reach the Redis that counts the keys'
    /// limits and is configured to refuse meanwhile (`redis_unavailable = "fail_closed"`);
    /// retry after the number of seconds in `Retry-After`.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Busy(ErrorMessage),
}

/// The same refusals on the OpenAI-compatible routes.
#[derive(IntoResponses)]
pub enum OpenAiAccess {
    /// The API key is missing or wrong (`Authorization: Bearer <key>` or `x-api-key`).
    #[response(status = 401)]
    Unauthorized(OpenAiErrorBody),
    /// The API key may not use the model or store the request names, or may read the store but
    /// not write it (adding and deleting documents needs `write_stores`); the message says which.
    #[response(status = 403)]
    Forbidden(OpenAiErrorBody),
    /// The API key is over its requests- or tokens-per-minute limit (tokens are reserved for
    /// the prompt and `max_tokens` before the model is called); retry after `Retry-After`.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    OverKeyLimit(OpenAiErrorBody),
    /// ragway is at its concurrency limit, or cannot reach the Redis that counts the keys'
    /// limits and is configured to refuse meanwhile (`redis_unavailable = "fail_closed"`);
    /// retry after the number of seconds in `Retry-After`.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Busy(OpenAiErrorBody),
}

/// A request body ragway cannot take.
#[derive(IntoResponses)]
pub enum BadBody {
    /// The body is larger than the server accepts.
    #[response(status = 413)]
    TooLarge(ErrorMessage),
    /// The body is not sent as `Content-Type: application/json`.
    #[response(status = 415)]
    NotJson(ErrorMessage),
    /// The body is not valid JSON, misses a field, or has a value of the wrong type or out of
    /// range; every problem is listed with where it is.
    #[response(status = 422)]
    Invalid(ValidationErrors),
}

/// The same on the OpenAI-compatible routes, which answer a malformed body with 400 as
/// OpenAI does.
#[derive(IntoResponses)]
pub enum OpenAiBadBody {
    /// The body is not valid JSON, misses a field, has a value of the wrong type or out of
    /// range, or asks for something the model cannot do; `param` says which field.
    #[response(status = 400)]
    Invalid(OpenAiErrorBody),
    /// The body is larger than the server accepts.
    #[response(status = 413)]
    TooLarge(OpenAiErrorBody),
    /// The body is not sent as `Content-Type: application/json`.
    #[response(status = 415)]
    NotJson(OpenAiErrorBody),
}

/// Failures of the model, embedder or search service behind the route.
#[derive(IntoResponses)]
pub enum Upstream {
    /// The provider still throttles after ragway's retries; retry after `Retry-After` seconds.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Throttled(ErrorMessage),
    /// ragway itself failed (the log has the details).
    #[response(status = 500)]
    Internal(ErrorMessage),
    /// The provider failed or answered something ragway cannot read; the message is the
    /// provider's, never its credentials.
    #[response(status = 502)]
    BadGateway(ErrorMessage),
    /// The provider did not answer in time.
    #[response(status = 504)]
    Timeout(ErrorMessage),
}

/// The same on the OpenAI-compatible routes.
#[derive(IntoResponses)]
pub enum OpenAiUpstream {
    /// The provider still throttles after ragway's retries; retry after `Retry-After` seconds.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Throttled(OpenAiErrorBody),
    /// ragway itself failed (the log has the details).
    #[response(status = 500)]
    Internal(OpenAiErrorBody),
    /// The provider failed or answered something ragway cannot read; the message is the
    /// provider's, never its credentials.
    #[response(status = 502)]
    BadGateway(OpenAiErrorBody),
    /// The provider did not answer in time.
    #[response(status = 504)]
    Timeout(OpenAiErrorBody),
}
