//! `POST /generate`: the seed's one call — a prompt, a model name and a store name in, the
//! answer with its sources, usage and timings out; server-sent events when `stream` is true.
//! `llm_name` and the `x-ragway-model` header name the model that answered; after a fallback,
//! `fallback_from` names the one asked for.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use ragway_core::config::{NO_RETRIEVAL, ServerConfig};
use ragway_core::{Delta, FinishReason, Usage};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::json::Body;
use crate::limits::bound_stream;
use crate::openapi::responses::{Access, BadBody, Upstream};
use crate::openapi::schemas::{ErrorMessage, GenerateEvent, GenerateResponse};
use crate::pipeline::Question;
use crate::registry::Registry;
use crate::resilience::Answered;

/// A question: the prompt, the model to ask and the store to ground it in. Other fields are
/// ignored.
#[derive(Deserialize, ToSchema)]
pub struct GenerateRequest {
    /// Not blank.
    prompt: String,
    /// One of `GET /models`' `llm_models`.
    llm_name: String,
    /// One of `GET /models`' `vector_dbs`, or "none" (the default) to skip retrieval.
    #[serde(default = "no_retrieval")]
    #[schema(default = "none")]
    vector_search_type: String,
    /// Passages to retrieve: at least 1, at most the server's `max_top_k`.
    #[schema(minimum = 1)]
    top_k: Option<usize>,
    /// At least 1.
    #[schema(minimum = 1)]
    max_tokens: Option<u32>,
    /// Between 0 and 2.
    #[schema(minimum = 0.0, maximum = 2.0)]
    temperature: Option<f32>,
    /// A system prompt, before the retrieved context.
    system: Option<String>,
    /// Answer as server-sent events.
    #[serde(default)]
    stream: bool,
}

fn no_retrieval() -> String {
    NO_RETRIEVAL.to_owned()
}

/// The body of `POST /generate` as the route reads it: JSON, with the place of any error, then
/// every value checked against the server's limits. The question, and whether to stream it.
pub fn read_body(body: &[u8], server: &ServerConfig) -> Result<(Question, bool), ApiError> {
    validate(crate::json::parse(body)?, server)
}

/// Values in range, reported all at once.
fn validate(request: GenerateRequest, server: &ServerConfig) -> Result<(Question, bool), ApiError> {
    let limits = &server.limits;
    let mut errors = Vec::new();
    if request.prompt.trim().is_empty() {
        errors.push(FieldError::new(
            &["body", "prompt"],
            "String should have at least 1 character",
            "string_too_short",
        ));
    }
    errors.extend(check_length(
        &["body", "prompt"],
        &request.prompt,
        limits.max_prompt_chars,
    ));
    if let Some(system) = &request.system {
        errors.extend(check_length(
            &["body", "system"],
            system,
            limits.max_prompt_chars,
        ));
    }
    if request.llm_name.trim().is_empty() {
        errors.push(FieldError::new(
            &["body", "llm_name"],
            "String should have at least 1 character",
            "string_too_short",
        ));
    }
    errors.extend(check_top_k(request.top_k, server.max_top_k));
    errors.extend(check_max_tokens(request.max_tokens, limits.max_tokens));
    if let Some(t) = request.temperature
        && !(0.0..=2.0).contains(&t)
    {
        errors.push(FieldError::new(
            &["body", "temperature"],
            "Input should be between 0 and 2",
            "range",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let stream = request.stream;
    Ok((
        Question {
            prompt: request.prompt,
            llm_name: request.llm_name,
            vector_search_type: request.vector_search_type,
            top_k: request.top_k,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            system: request.system,
        },
        stream,
    ))
}

/// Whether `text` has more than `max` characters.
pub fn too_long(text: &str, max: usize) -> bool {
    // Bytes bound characters from above: most texts are settled without counting.
    text.len() > max && text.chars().count() > max
}

/// A 422 entry if `text` is longer than `[server.limits] max_prompt_chars`.
pub fn check_length(loc: &[&str], text: &str, max: usize) -> Option<FieldError> {
    too_long(text, max).then(|| {
        FieldError::new(
            loc,
            format!("String should have at most {max} characters (server.limits.max_prompt_chars)"),
            "string_too_long",
        )
    })
}

/// A 422 entry unless `max_tokens` is between 1 and `[server.limits] max_tokens`.
pub fn check_max_tokens(max_tokens: Option<u32>, ceiling: u32) -> Option<FieldError> {
    match max_tokens {
        Some(0) => Some(FieldError::new(
            &["body", "max_tokens"],
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        )),
        Some(n) if n > ceiling => Some(FieldError::new(
            &["body", "max_tokens"],
            format!("Input should be less than or equal to {ceiling} (server.limits.max_tokens)"),
            "less_than_equal",
        )),
        _ => None,
    }
}

pub fn check_top_k(top_k: Option<usize>, max: usize) -> Option<FieldError> {
    match top_k {
        Some(0) => Some(FieldError::new(
            &["body", "top_k"],
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        )),
        Some(k) if k > max => Some(FieldError::new(
            &["body", "top_k"],
            format!("Input should be less than or equal to {max}"),
            "less_than_equal",
        )),
        _ => None,
    }
}

/// `POST /generate`.
#[utoipa::path(
    post,
    path = "/generate",
    tag = "generate",
    request_body = GenerateRequest,
    responses(
        (status = 200, description = "The answer. With `stream: true`, server-sent events instead: \
            one `sources` event (`GenerateSourcesEvent`), `delta` events with the text as the model \
            writes it (`GenerateDeltaEvent`), then `done` with usage and timings \
            (`GenerateDoneEvent`), or `error` (`GenerateErrorEvent`) if the model fails midway.",
            content(
                (GenerateResponse = "application/json"),
                (GenerateEvent = "text/event-stream"),
            )),
        (status = 400, description = "Unknown `llm_name` or `vector_search_type` (the message lists the valid names), or a request the model cannot serve", body = ErrorMessage),
        BadBody,
        Upstream,
        Access,
    ),
)]
pub async fn generate(
    State(registry): State<Arc<Registry>>,
    Extension(caller): Extension<Arc<Caller>>,
    Body(request): Body<GenerateRequest>,
) -> Result<Response, ApiError> {
    let (question, stream) = validate(request, &registry.server)?;
    caller.check_model(&question.llm_name)?;
    caller.check_store(&question.vector_search_type)?;
    if stream {
        return stream_answer(&registry, question, caller).await;
    }
    let answer = registry.answer(&question).await?;
    caller.spend(&answer.usage);
    let mut body = json!({
        "response": answer.text,
        "llm_name": answer.answered.model,
        "vector_search_type": question.vector_search_type,
        "sources": answer.sources,
        "usage": answer.usage,
        "finish_reason": answer.finish_reason.as_str(),
        "timings_ms": answer.timings,
    });
    name_fallback(&mut body, &answer.answered);
    Ok(answer.answered.name_in(Json(body).into_response()))
}

/// `fallback_from`: the model asked for, when a fallback answered (`llm_name` names it).
fn name_fallback(body: &mut serde_json::Value, answered: &Answered) {
    if let Some(from) = &answered.fallback_from {
        body["fallback_from"] = json!(from);
    }
}

/// Server-sent events: `sources`, then `delta` events as the model writes, then `done` with
/// usage, timings and the model that answered — or `error` if the provider fails mid-answer.
/// Failures before the first words are retried and fall back like whole answers; if none
/// succeeds they are ordinary error responses. Dropping the connection drops the upstream request.
async fn stream_answer(
    registry: &Registry,
    question: Question,
    caller: Arc<Caller>,
) -> Result<Response, ApiError> {
    let prepared = registry.prepare(&question).await?;
    let generation_started = Instant::now();
    let (deltas, answered) = registry.stream(&prepared).await?;
    let mut deltas = bound_stream(deltas, &registry.server.limits, prepared.started);
    let headers_for = answered.clone();
    let sources = json!({ "sources": prepared.sources });
    let events = async_stream::stream! {
        yield Ok::<_, Infallible>(event("sources", &sources));
        let mut usage = Usage::default();
        let mut finish = FinishReason::Stop;
        while let Some(delta) = deltas.next().await {
            match delta {
                Ok(Delta::Text(text)) => yield Ok(event("delta", &json!({ "text": text }))),
                Ok(Delta::Usage(u)) => {
                    caller.spend(&u);
                    usage = u;
                }
                Ok(Delta::Finish(reason)) => finish = reason,
                // `/generate` offers no tools, so no model calls one.
                Ok(Delta::ToolCall { .. }) => {}
                Err(error) => {
                    let error = ApiError::from(error);
                    tracing::warn!(%error, "stream failed mid-answer");
                    yield Ok(event("error", &json!({ "status": error.status().0.as_u16(), "detail": error.detail() })));
                    return;
                }
            }
        }
        let mut done = json!({
            "llm_name": answered.model,
            "vector_search_type": question.vector_search_type,
            "usage": usage,
            "finish_reason": finish.as_str(),
            "timings_ms": prepared.timings(generation_started),
        });
        name_fallback(&mut done, &answered);
        yield Ok(event("done", &done));
    };
    Ok(headers_for.name_in(
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response(),
    ))
}

fn event(name: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}
