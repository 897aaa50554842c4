//! `POST /generate`: the seed's one call — a prompt, a model name and a store name in, the
//! answer with its sources, usage and timings out; server-sent events when `stream` is true.
//! `llm_name` and the `x-ragway-model` header name the model that answered; after a fallback,
//! `fallback_from` names the one asked for.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use ragway_core::{Delta, FinishReason, Usage};
use ragway_requests::Question;
use ragway_requests::generate::GenerateRequest;
use serde::Serialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::Body;
use crate::limits::bound_stream;
use crate::openapi::responses::{Access, BadBody, Upstream};
use crate::openapi::schemas::{ErrorMessage, GenerateEvent, GenerateResponse};
use crate::registry::Registry;
use crate::resilience::Answered;
use crate::sse;

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
    let (question, stream) = request.check(&registry.server)?;
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
/// The events start when the model's stream opens; failures before that are retried and fall
/// back like whole answers, and if none succeeds they are ordinary error responses. Dropping
/// the connection drops the upstream request.
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
        yield sse::json_event(Some("sources"), &sources);
        let mut usage = Usage::default();
        let mut finish = FinishReason::Stop;
        while let Some(delta) = deltas.next().await {
            match delta {
                Ok(Delta::Text(text)) => yield sse::json_event(Some("delta"), &TextPiece { text: &text }),
                Ok(Delta::Usage(u)) => {
                    caller.spend(&u);
                    usage = u;
                }
                Ok(Delta::Finish(reason)) => finish = reason,
                // `sources` above stands for the start; `/generate` offers no tools, so no
                // model calls one.
                Ok(Delta::Started | Delta::ToolCall { .. }) => {}
                Err(error) => {
                    let error = ApiError::from(error);
                    tracing::warn!(%error, "stream failed mid-answer");
                    yield sse::json_event(Some("error"), &json!({ "status": error.status().0.as_u16(), "detail": error.detail() }));
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
        yield sse::json_event(Some("done"), &done);
    };
    Ok(headers_for.name_in(sse::response(events)))
}

/// A `delta` event's data.
#[derive(Serialize)]
struct TextPiece<'a> {
    text: &'a str,
}
