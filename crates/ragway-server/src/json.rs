//! Request bodies parsed with the field path of every error, so a malformed body gets an error
//! that says what is wrong and where: a 422 in FastAPI's shape on ragway's own routes, a 400 in
//! OpenAI's shape on the `/v1` routes.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError, OpenAiError};
use crate::limits::BodyLimit;

/// Reads the whole body; one past the configured limit is a 413 that names the limit.
async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, BodyError> {
    let limit = request.extensions().get::<BodyLimit>().map(|limit| limit.0);
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match limit {
            Some(limit) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                BodyError::TooLarge(ApiError::PayloadTooLarge { limit })
            }
            _ => BodyError::Other(rejection),
        })
}

enum BodyError {
    TooLarge(ApiError),
    Other(BytesRejection),
}

/// A JSON body of type `T`; rejections become `ApiError::Validation`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = axum::response::Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let bytes = read(request, state).await.map_err(|error| match error {
            BodyError::TooLarge(error) => error.into_response(),
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
            BodyError::TooLarge(error) => OpenAiError(error).into_response(),
            BodyError::Other(rejection) => rejection.into_response(),
        })?;
        parse(&bytes)
            .map(OpenAiBody)
            .map_err(|error| OpenAiError(error).into_response())
    }
}

/// Parses a JSON body, locating the first problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|error| {
        ApiError::Validation(vec![describe(&error.path().to_string(), error.inner())])
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::Validation(vec![describe(".", &error)]))?;
    Ok(value)
}

fn describe(path: &str, inner: &serde_json::Error) -> FieldError {
    let mut loc: Vec<String> = vec!["body".into()];
    if path != "." {
        loc.extend(path.split('.').map(str::to_owned));
    }
    if inner.is_syntax() || inner.is_eof() {
        return FieldError {
            loc: vec!["body".into(), inner.column().to_string()],
            msg: format!("JSON decode error: {inner}"),
            kind: "json_invalid".into(),
        };
    }
    let message = strip_position(&inner.to_string());
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        loc.push(field.to_owned());
        return FieldError {
            loc,
            msg: "Field required".into(),
            kind: "missing".into(),
        };
    }
    FieldError {
        loc,
        msg: message,
        kind: "type_error".into(),
    }
}

/// serde_json appends " at line 1 column 9"; the location is already in `loc`.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        prompt: String,
        top_k: Option<u32>,
    }

    fn error_of(body: &str) -> FieldError {
        match parse::<Shape>(body.as_bytes()) {
            Err(ApiError::Validation(mut errors)) => errors.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn missing_fields_are_located() {
        let error = error_of("{}");
        assert_eq!(error.loc, ["body", "prompt"]);
        assert_eq!(error.kind, "missing");
    }

    #[test]
    fn wrong_types_are_located() {
        let error = error_of(r#"{"prompt": "x", "top_k": "five"}"#);
        assert_eq!(error.loc, ["body", "top_k"]);
        assert!(error.msg.contains("expected u32"), "{}", error.msg);
    }

    #[test]
    fn broken_json_is_json_invalid() {
        assert_eq!(error_of(r#"{"prompt": "#).kind, "json_invalid");
        assert_eq!(error_of("").kind, "json_invalid");
        assert_eq!(error_of(r#"{"prompt": "x"} trailing"#).kind, "json_invalid");
    }
}
