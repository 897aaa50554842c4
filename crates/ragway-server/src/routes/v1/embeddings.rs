//! `POST /v1/embeddings`: any configured embedder by name, `input` as a string or a list of
//! strings, vectors as floats or as base64 (little-endian f32, as OpenAI sends them).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ragway_core::prompt::approx_tokens;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::Gateway;
use crate::auth::Caller;
use crate::error::{ApiError, OpenAiError};
use crate::json::OpenAiBody;
use crate::openapi::responses::{OpenAiAccess, OpenAiBadBody, OpenAiUpstream};
use crate::openapi::schemas::{EmbeddingInput, EmbeddingList, EncodingFormat, OpenAiErrorBody};
use crate::rate_limit::reservation::cost;

/// Texts embedded in one request at most (OpenAI's own limit).
const MAX_INPUTS: usize = 2048;

/// Texts to embed. Other fields are ignored.
#[derive(Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// An embedding model's name (`GET /v1/models`, `owned_by: ragway:embedder`).
    model: String,
    /// Non-blank texts, at most 2048.
    #[schema(value_type = EmbeddingInput)]
    input: Value,
    /// "float" (the default) or "base64".
    #[serde(default)]
    #[schema(value_type = Option<EncodingFormat>)]
    encoding_format: Option<String>,
    /// Must equal the model's dimension if given.
    #[serde(default)]
    dimensions: Option<usize>,
}

fn bad(param: &str, message: impl Into<String>) -> OpenAiError {
    OpenAiError(ApiError::BadRequest {
        param: Some(param.to_owned()),
        message: message.into(),
    })
}

/// The texts of `input`: a string or a list of strings, none empty.
fn texts(input: Value) -> Result<Vec<String>, OpenAiError> {
    let texts = match input {
        Value::String(text) => vec![text],
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text),
                _ => Err(bad(
                    &format!("input.{i}"),
                    "each input must be a string; token arrays are not supported",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(
                "input",
                "input must be a string or an array of strings",
            ));
        }
    };
    if texts.is_empty() {
        return Err(bad("input", "input must not be an empty array"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(bad(
            "input",
            format!(
                "at most {MAX_INPUTS} inputs per request, got {}",
                texts.len()
            ),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(bad(
            &format!("input.{i}"),
            "input must not be an empty string",
        ));
    }
    Ok(texts)
}

/// `POST /v1/embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One vector per input, in order", body = EmbeddingList),
        (status = 404, description = "No embedding model of that name (`code: model_not_found`)", body = OpenAiErrorBody),
        OpenAiBadBody,
        OpenAiUpstream,
        OpenAiAccess,
    ),
)]
pub async fn embeddings(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    OpenAiBody(request): OpenAiBody<EmbeddingsRequest>,
) -> Result<Response, OpenAiError> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(
                "encoding_format",
                format!("encoding_format must be \"float\" or \"base64\", not \"{other}\""),
            ));
        }
    };
    // The key's permission first: nothing about a model it may not use (its dimensions) is
    // told before.
    caller.check_model(&request.model)?;
    let model = registry
        .embedder(&request.model)
        .ok_or_else(|| ApiError::UnknownEmbedder {
            name: request.model.clone(),
            known: registry.embedder_names(),
        })?;
    if let Some(asked) = request.dimensions
        && asked != model.embedder.dimension()
    {
        return Err(bad(
            "dimensions",
            format!(
                "embedder \"{}\" makes vectors of {} dimensions, not {asked}",
                request.model,
                model.embedder.dimension()
            ),
        ));
    }
    crate::metrics::label(&request.model, "");
    let texts = texts(request.input)?;
    let max_chars = registry.server.limits.max_prompt_chars;
    if let Some(i) = texts
        .iter()
        .position(|t| ragway_requests::too_long(t, max_chars))
    {
        return Err(bad(
            &format!("input.{i}"),
            format!(
                "an input may hold at most {max_chars} characters (server.limits.max_prompt_chars)"
            ),
        ));
    }
    let tokens: usize = texts.iter().map(|t| approx_tokens(t)).sum();
    let usage = ragway_core::Usage {
        input_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        output_tokens: 0,
    };
    // Known before the call: reserved against the key's tokens-per-minute, given back if the
    // embedder fails.
    let reservation = caller.reserve(cost(&usage)).await?;
    let span = crate::telemetry::embeddings(model, texts.len(), base64);
    let vectors = model
        .embedder
        .embed(&texts)
        .instrument(span.clone())
        .await
        .inspect_err(|error| crate::telemetry::failed_as(&span, error.kind()))
        .map_err(ApiError::from)?;
    crate::telemetry::usage(&span, &usage);
    crate::metrics::tokens(&request.model, &usage);
    reservation.settle(cost(&usage)).await;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
    .into_response())
}
