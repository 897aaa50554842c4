//! Request bodies as axum extractors: read up to the configured limit (one byte past it is a
//! 413 naming the limit), then parsed by [`ragway_requests::parse`] with the field path of every
//! error, so a malformed body gets an error that says what is wrong and where: a 422 in
//! FastAPI's shape on ragway's own routes, a 400 in OpenAI's shape on the `/v1` routes. A body
//! not sent as `application/json` is a 415: a page on another site can post `text/plain` to a
//! local server without the browser asking it first, but not JSON.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, OpenAiError};
use crate::limits::BodyLimit;

/// Reads the whole body; one past the configured limit is a 413 that names the limit. A body
/// not declared as JSON is a 415 before a byte of it is read.
async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, BodyError> {
    let content_type = request.headers().get(header::CONTENT_TYPE);
    if !content_type.is_some_and(is_json) {
        return Err(BodyError::Refused(ApiError::UnsupportedMediaType {
            found: content_type.map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
        }));
    }
    let limit = request.extensions().get::<BodyLimit>().map(|limit| limit.0);
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match limit {
            Some(limit) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                BodyError::Refused(ApiError::PayloadTooLarge { limit })
            }
            _ => BodyError::Other(rejection),
        })
}

enum BodyError {
    Refused(ApiError),
    Other(BytesRejection),
}

/// `application/json` or `application/<something>+json`, any parameters (`; charset=utf-8`),
/// any case: what JSON clients send. `text/plain` and the form types are what a page on
/// another site can make a browser send without asking first.
fn is_json(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json") && !subtype.contains('/'))
}

/// A JSON body of type `T`; rejections become `ApiError::Validation`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = axum::response::Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let bytes = read(request, state).await.map_err(|error| match error {
            BodyError::Refused(error) => error.into_response(),
            BodyError::Other(rejection) => rejection.into_response(),
        })?;
        parse(&bytes).map(Body).map_err(IntoResponse::into_response)
    }
}

/// A JSON body of type `T` for the OpenAI-compatible routes; rejections are OpenAI errors.
pub struct OpenAiBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OpenAiBody<T> {
    type Rejection = axum::response::Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let bytes = read(request, state).await.map_err(|error| match error {
            BodyError::Refused(error) => OpenAiError(error).into_response(),
            BodyError::Other(rejection) => rejection.into_response(),
        })?;
        parse(&bytes)
            .map(OpenAiBody)
            .map_err(|error| OpenAiError(error).into_response())
    }
}

/// Parses a JSON body, locating the first problem.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    ragway_requests::parse(bytes).map_err(ApiError::from)
}
