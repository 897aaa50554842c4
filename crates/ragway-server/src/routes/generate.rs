//! `POST /generate`: the seed's one call — a prompt, a model name and a store name in, the
//! answer with its sources, usage and timings out; server-sent events when `stream` is true.
//! `llm_name` and the `x-ragway-model` header name the model that answered; after a fallback,
//! `fallback_from` names the one asked for.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt as _};
use ragway_core::{Delta, DeltaStream, FinishReason, Usage};
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
use crate::pipeline::Prepared;
use crate::rate_limit::reservation::{Reservation, cost};
use crate::registry::Registry;
use crate::resilience::Answered;
use crate::sse::{self, Event};

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
    let prepared = registry.prepare(&question).await?;
    // Held against the key's tokens-per-minute until the answer ends (see `rate_limit`).
    let reservation = caller.reserve(registry.tokens_needed(&prepared, 1)).await?;
    if stream {
        return stream_answer(&registry, question, prepared, reservation).await;
    }
    let answer = registry.answer(prepared).await?;
    reservation.settle(cost(&answer.usage)).await;
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
    mut prepared: Prepared,
    reservation: Reservation,
) -> Result<Response, ApiError> {
    let generation_started = Instant::now();
    let (deltas, answered) = registry.stream(&prepared).await?;
    let deltas = bound_stream(deltas, &registry.server.limits, prepared.started);
    // Charged for what it generates, whether it ends or the client leaves.
    let deltas = reservation.meter(deltas, registry.prompt_tokens(&prepared));
    let name_model = answered.clone();
    let sources = json!({ "sources": std::mem::take(&mut prepared.sources) });
    let events = Events {
        sources: Some(sources),
        deltas,
        usage: Usage::default(),
        finish: FinishReason::Stop,
        done: Some(Done {
            answered,
            vector_search_type: question.vector_search_type,
            prepared,
            generation_started,
        }),
    };
    Ok(name_model.name_in(sse::response(events)))
}

/// A streamed answer's events, made from the model's deltas as they come (a plain stream
/// rather than a generator: it is polled once per event).
struct Events {
    /// The `sources` event's data, until it is sent.
    sources: Option<serde_json::Value>,
    deltas: DeltaStream,
    usage: Usage,
    finish: FinishReason,
    /// What the `done` event tells, until it is sent (or an error ends the stream instead).
    done: Option<Done>,
}

struct Done {
    answered: Answered,
    vector_search_type: String,
    prepared: Prepared,
    generation_started: Instant,
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = &mut *self;
        if let Some(sources) = this.sources.take() {
            return Poll::Ready(Some(Event::json(Some("sources"), &sources)));
        }
        loop {
            let Some(done) = &this.done else {
                return Poll::Ready(None);
            };
            let event = match ready!(this.deltas.poll_next_unpin(cx)) {
                Some(Ok(Delta::Text(text))) => {
                    Event::json(Some("delta"), &TextPiece { text: &text })
                }
                Some(Ok(Delta::Usage(usage))) => {
                    this.usage = usage;
                    continue;
                }
                Some(Ok(Delta::Finish(reason))) => {
                    this.finish = reason;
                    continue;
                }
                // `sources` stands for the start; `/generate` offers no tools, so no model
                // calls one.
                Some(Ok(Delta::Started | Delta::ToolCall { .. })) => continue,
                Some(Err(error)) => {
                    this.done = None;
                    let error = ApiError::from(error);
                    tracing::warn!(%error, "stream failed mid-answer");
                    let body =
                        json!({ "status": error.status().0.as_u16(), "detail": error.detail() });
                    Event::json(Some("error"), &body)
                }
                None => {
                    let mut body = json!({
                        "llm_name": done.answered.model,
                        "vector_search_type": done.vector_search_type,
                        "usage": this.usage,
                        "finish_reason": this.finish.as_str(),
                        "timings_ms": done.prepared.timings(done.generation_started),
                    });
                    name_fallback(&mut body, &done.answered);
                    this.done = None;
                    Event::json(Some("done"), &body)
                }
            };
            return Poll::Ready(Some(event));
        }
    }
}

/// A `delta` event's data.
#[derive(Serialize)]
struct TextPiece<'a> {
    text: &'a str,
}
