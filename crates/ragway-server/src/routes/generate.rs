//! `POST /generate`: the seed's one call — a prompt, a model name and a store name in, the
//! answer with its sources, usage and timings out; server-sent events when `stream` is true.
//! `llm_name` and the `x-ragway-model` header name the model that answered; after a fallback,
//! `fallback_from` names the one asked for.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt as _;
use ragway_engine::{Answered, Piece};
use ragway_requests::generate::GenerateRequest;
use serde::Serialize;
use serde_json::json;

use super::{name_cache, name_model};
use crate::Gateway;
use crate::auth::Caller;
use crate::cache;
use crate::error::ApiError;
use crate::json::Body;
use crate::openapi::responses::{Access, BadBody, Upstream};
use crate::openapi::schemas::{ErrorMessage, GenerateEvent, GenerateResponse};
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
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    Body(request): Body<GenerateRequest>,
) -> Result<Response, ApiError> {
    let (question, stream) = request.check(&registry.server)?;
    let cache = cache::Use::of(question.cache, &headers);
    caller.check_model(&question.llm_name)?;
    caller.check_store(&question.vector_search_type)?;
    let mut prepared = registry.prepare(&question).await?;
    if stream {
        let (pieces, answered, outcome) =
            super::stream(&registry, &caller, &prepared, cache).await?;
        let sources = json!({ "sources": std::mem::take(&mut prepared.sources) });
        let store = question.vector_search_type;
        let first = Event::json(Some("sources"), &sources);
        let events = futures::stream::iter([Some(first)])
            .chain(pieces.map({
                let answered = answered.clone();
                move |piece| event(piece, &answered, &store)
            }))
            .filter_map(futures::future::ready);
        return Ok(name_cache(
            outcome,
            name_model(&answered, sse::response(events)),
        ));
    }
    let (answer, outcome) = super::answer(&registry, &caller, prepared, 1, cache).await?;
    let choice = answer.first();
    let mut body = json!({
        "response": choice.text,
        "llm_name": answer.answered.model,
        "vector_search_type": question.vector_search_type,
        "sources": answer.sources,
        "usage": answer.usage,
        "finish_reason": choice.finish_reason.as_str(),
        "timings_ms": answer.timings,
    });
    name_fallback(&mut body, &answer.answered);
    Ok(name_cache(
        outcome,
        name_model(&answer.answered, Json(body).into_response()),
    ))
}

/// `fallback_from`: the model asked for, when a fallback answered (`llm_name` names it).
fn name_fallback(body: &mut serde_json::Value, answered: &Answered) {
    if let Some(from) = &answered.fallback_from {
        body["fallback_from"] = json!(from);
    }
}

/// A streamed answer's events: `sources` (sent first), then a `delta` event per piece of text
/// as the model writes, then `done` with usage, timings and the model that answered — or
/// `error` if the provider fails mid-answer. The events start when the model's stream opens;
/// failures before that are retried and fall back like whole answers, and if none succeeds
/// they are ordinary error responses. Dropping the connection drops the upstream request.
fn event(piece: Piece, answered: &Answered, store: &str) -> Option<Event> {
    Some(match piece {
        Piece::Text(text) => Event::json(Some("delta"), &TextPiece { text: &text }),
        // `/generate` offers no tools, so no model calls one.
        Piece::ToolCall { .. } => return None,
        Piece::Failed(error) => {
            let error = ApiError::from(error);
            let body = json!({ "status": error.status().0.as_u16(), "detail": error.detail() });
            Event::json(Some("error"), &body)
        }
        Piece::Done(summary) => {
            let mut body = json!({
                "llm_name": answered.model,
                "vector_search_type": store,
                "usage": summary.usage,
                "finish_reason": summary.finish_reason.as_str(),
                "timings_ms": summary.timings,
            });
            name_fallback(&mut body, answered);
            Event::json(Some("done"), &body)
        }
    })
}

/// A `delta` event's data.
#[derive(Serialize)]
struct TextPiece<'a> {
    text: &'a str,
}
