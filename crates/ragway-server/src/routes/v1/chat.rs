//! `POST /v1/chat/completions`: OpenAI's chat API over any configured model, whole answers as
//! `chat.completion` objects, streamed ones as `chat.completion.chunk` events ending in
//! `data: [DONE]`. The extra fields `vector_search_type` and `top_k` ground the last user
//! message in retrieved passages, returned in an extra `sources` field (or on the first chunk),
//! which clients that do not know it ignore. Tools pass through to OpenAI and Bedrock models
//! and their calls come back in OpenAI's shape, streamed or whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use ragway_core::{FinishReason, Passage, Usage};
use ragway_engine::{Piece, Prepared};
use ragway_llm::openai::tool_calls_json;
use ragway_requests::chat::{Checked, CompletionRequest};
use serde::Serialize;
use serde_json::{Value, json};

use super::now;
use crate::Gateway;
use crate::auth::Caller;
use crate::cache::{self, Pieces};
use crate::error::OpenAiError;
use crate::json::OpenAiBody;
use crate::openapi::responses::{OpenAiAccess, OpenAiBadBody, OpenAiUpstream};
use crate::openapi::schemas::{ChatCompletion, ChatCompletionEvent, OpenAiErrorBody};
use crate::routes::{self, name_cache, name_model};
use crate::sse::{self, Event};

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

/// `POST /v1/chat/completions`.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "A `chat.completion`. With `stream: true`, server-sent events \
            instead: `chat.completion.chunk` objects (`ChatCompletionChunk`) as `data:` lines, \
            ending in `data: [DONE]`; a failure midway is an `{\"error\": ...}` event that ends \
            the stream.",
            content(
                (ChatCompletion = "application/json"),
                (ChatCompletionEvent = "text/event-stream"),
            )),
        (status = 404, description = "No chat model of that name (`code: model_not_found`)", body = OpenAiErrorBody),
        OpenAiBadBody,
        OpenAiUpstream,
        OpenAiAccess,
    ),
)]
pub async fn completions(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    OpenAiBody(request): OpenAiBody<CompletionRequest>,
) -> Result<Response, OpenAiError> {
    let checked = request.check(&registry.server)?;
    // The key's permission first: nothing about a model it may not use (its kind, what it can
    // do) is told before.
    caller.check_model(&checked.conversation.llm_name)?;
    caller.check_store(&checked.conversation.vector_search_type)?;
    let Checked {
        conversation,
        choices,
        stream: streamed,
        include_usage,
        grounded,
        cache,
    } = checked;
    let cache = cache::Use::of(cache, &headers);
    let prepared = registry.prepare_conversation(conversation, choices).await?;
    if streamed {
        return stream(&registry, &caller, prepared, include_usage, grounded, cache).await;
    }
    let (answer, outcome) = routes::answer(&registry, &caller, prepared, choices, cache).await?;
    let choices: Vec<Value> = answer
        .choices
        .iter()
        .enumerate()
        .map(|(index, choice)| {
            let mut message =
                json!({ "role": "assistant", "content": choice.text, "refusal": null });
            if !choice.tool_calls.is_empty() {
                message["tool_calls"] = tool_calls_json(&choice.tool_calls);
                if choice.text.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            json!({
                "index": index,
                "message": message,
                "logprobs": null,
                "finish_reason": choice.finish_reason.as_str(),
            })
        })
        .collect();
    let mut body = json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": now(),
        "model": answer.answered.model,
        "choices": choices,
        "usage": usage_json(answer.usage),
        "system_fingerprint": null,
    });
    if grounded {
        body["sources"] = json!(answer.sources);
    }
    Ok(name_cache(
        outcome,
        name_model(&answer.answered, axum::Json(body).into_response()),
    ))
}

/// `chat.completion.chunk` events: the role (and the sources) first, then the text as the
/// model writes it, the finish reason, the usage when asked for, and `[DONE]`. A failure
/// before the first byte is an ordinary error response; one midway is an `{"error": ...}`
/// event that ends the stream (the SDKs raise it). Dropping the connection drops the upstream
/// request.
async fn stream(
    registry: &Arc<Gateway>,
    caller: &Caller,
    prepared: Prepared,
    include_usage: bool,
    grounded: bool,
    cache: cache::Use,
) -> Result<Response, OpenAiError> {
    let (pieces, answered, outcome) = routes::stream(registry, caller, &prepared, cache).await?;
    let events = Chunks {
        head: ChunkHead::new(&completion_id(), now(), &answered.model, include_usage),
        sources: grounded.then_some(prepared.sources),
        pieces,
        usage: Usage::default(),
        finish: FinishReason::Stop,
        next: Next::Role,
    };
    Ok(name_cache(
        outcome,
        name_model(&answered, sse::response(events)),
    ))
}

/// A streamed answer's `chat.completion.chunk` events, made from the model's deltas as they
/// come (a plain stream rather than a generator: it is polled once per event).
struct Chunks {
    head: ChunkHead,
    /// The passages, for the first chunk of a grounded answer.
    sources: Option<Vec<Passage>>,
    pieces: Pieces,
    /// From the answer's summary, for the last chunks.
    usage: Usage,
    finish: FinishReason,
    next: Next,
}

/// What [`Chunks`] gives next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The role (and the sources).
    Role,
    /// The model's text and tool calls, as they come.
    Deltas,
    /// The finish reason.
    Finish,
    /// The usage, when asked for.
    Usage,
    Done,
    End,
}

impl Stream for Chunks {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = &mut *self;
        loop {
            let event = match this.next {
                Next::Role => {
                    this.next = Next::Deltas;
                    let role = ChunkDelta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..ChunkDelta::default()
                    };
                    let sources = this.sources.take();
                    this.head
                        .event(&[ChunkChoice::new(role, None)], None, sources.as_deref())
                }
                Next::Deltas => match ready!(this.pieces.poll_next_unpin(cx)) {
                    Some(Piece::Text(text)) => this.head.text(&text),
                    Some(Piece::ToolCall {
                        index,
                        id,
                        name,
                        arguments,
                    }) => {
                        let mut call =
                            json!({ "index": index, "function": { "arguments": arguments } });
                        if let Some(id) = id {
                            call["id"] = json!(id);
                            call["type"] = json!("function");
                        }
                        if let Some(name) = name {
                            call["function"]["name"] = json!(name);
                        }
                        let call = ChunkDelta {
                            tool_calls: Some([call]),
                            ..ChunkDelta::default()
                        };
                        this.head.event(&[ChunkChoice::new(call, None)], None, None)
                    }
                    Some(Piece::Failed(error)) => {
                        this.next = Next::End;
                        Event::json(None, &OpenAiError::from(error).body())
                    }
                    Some(Piece::Done(summary)) => {
                        this.usage = summary.usage;
                        this.finish = summary.finish_reason;
                        this.next = Next::Finish;
                        continue;
                    }
                    None => {
                        this.next = Next::End;
                        continue;
                    }
                },
                Next::Finish => {
                    this.next = if this.head.include_usage {
                        Next::Usage
                    } else {
                        Next::Done
                    };
                    let finish =
                        ChunkChoice::new(ChunkDelta::default(), Some(this.finish.as_str()));
                    this.head.event(&[finish], None, None)
                }
                Next::Usage => {
                    this.next = Next::Done;
                    this.head.event(&[], Some(&usage_json(this.usage)), None)
                }
                Next::Done => {
                    this.next = Next::End;
                    Event::fixed("[DONE]")
                }
                Next::End => return Poll::Ready(None),
            };
            return Poll::Ready(Some(event));
        }
    }
}

/// What every chunk of one answer repeats, written once: the JSON of a chunk up to its
/// choices. Each chunk is that opening and what is its own (the hot path, a piece of text, is
/// written around the text by hand), rather than the whole chunk serialised again: serde_json
/// escaped every key and repeated value of every chunk, ~20% of the instructions ragway spent
/// relaying a stream.
struct ChunkHead {
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,
    /// "system_fingerprint":null,"choices":`
    opening: Vec<u8>,
    include_usage: bool,
}

impl ChunkHead {
    fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        let mut opening = Vec::with_capacity(128 + id.len() + model.len());
        let mut push = |piece: &[u8]| opening.extend_from_slice(piece);
        push(b"{\"id\":");
        push(&json_string(id));
        push(b",\"object\":\"chat.completion.chunk\",\"created\":");
        push(created.to_string().as_bytes());
        push(b",\"model\":");
        push(&json_string(model));
        push(b",\"system_fingerprint\":null,\"choices\":");
        Self {
            opening,
            include_usage,
        }
    }

    /// The event of one chunk; `usage` only on the last one, when usage was asked for.
    fn event(
        &self,
        choices: &[ChunkChoice<'_>],
        usage: Option<&Value>,
        sources: Option<&[Passage]>,
    ) -> Event {
        Event::write(None, |out| {
            out.extend_from_slice(&self.opening);
            serde_json::to_writer(&mut *out, choices)?;
            self.close(out, usage, sources)
        })
    }

    /// The event of a chunk holding a piece of the answer's text: the same JSON as [`event`]
    /// writes for it (a test holds the two to that), with only the text escaped.
    ///
    /// [`event`]: Self::event
    fn text(&self, text: &str) -> Event {
        Event::write(None, |out| {
            out.extend_from_slice(&self.opening);
            out.extend_from_slice(b"[{\"index\":0,\"delta\":{\"content\":");
            serde_json::to_writer(&mut *out, text)?;
            out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]");
            self.close(out, None, None)
        })
    }

    /// The chunk's fields after its choices, and its end.
    fn close(
        &self,
        out: &mut Vec<u8>,
        usage: Option<&Value>,
        sources: Option<&[Passage]>,
    ) -> serde_json::Result<()> {
        // With `include_usage`, every chunk carries `"usage": null` but the last.
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":");
            serde_json::to_writer(&mut *out, &usage)?;
        }
        // The passages, on the first chunk of a grounded answer.
        if let Some(sources) = sources {
            out.extend_from_slice(b",\"sources\":");
            serde_json::to_writer(&mut *out, sources)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// `text` as a JSON string.
fn json_string(text: &str) -> Vec<u8> {
    Value::from(text).to_string().into_bytes()
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: ChunkDelta<'a>,
    /// Always `null`.
    logprobs: (),
    finish_reason: Option<&'a str>,
}

impl<'a> ChunkChoice<'a> {
    fn new(delta: ChunkDelta<'a>, finish_reason: Option<&'a str>) -> Self {
        Self {
            index: 0,
            delta,
            logprobs: (),
            finish_reason,
        }
    }
}

#[derive(Default, Serialize)]
struct ChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[Value; 1]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of an event's data.
    fn data(event: Event) -> Value {
        let bytes = event.into_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        let json = text
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not one data line: {text:?}"));
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_chunk_is_openais_whole_object() {
        let head = ChunkHead::new("chatcmpl-1", 1_700_000_000, "gpt-\"4o\"", false);
        let role = ChunkDelta {
            role: Some("assistant"),
            content: Some(""),
            ..ChunkDelta::default()
        };
        assert_eq!(
            data(head.event(&[ChunkChoice::new(role, None)], None, None)),
            json!({
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000u64,
                "model": "gpt-\"4o\"",
                "system_fingerprint": null,
                "choices": [{
                    "index": 0,
                    "delta": { "role": "assistant", "content": "" },
                    "logprobs": null,
                    "finish_reason": null,
                }],
            })
        );
        // With usage asked for, `null` on every chunk but the last, which holds it.
        let head = ChunkHead::new("chatcmpl-1", 1, "m", true);
        assert_eq!(data(head.text("a"))["usage"], Value::Null);
        let usage = json!({ "prompt_tokens": 1 });
        assert_eq!(data(head.event(&[], Some(&usage), None))["usage"], usage);
    }

    #[test]
    fn a_piece_of_text_is_written_as_the_general_chunk_writes_it() {
        for include_usage in [false, true] {
            let head = ChunkHead::new("chatcmpl-x", 7, "m", include_usage);
            for text in [
                "word",
                " two words",
                "\"quoted\"\n\ttab\\",
                "ünïcödé 🦀",
                "\u{1}",
            ] {
                let piece = ChunkDelta {
                    content: Some(text),
                    ..ChunkDelta::default()
                };
                let general = head.event(&[ChunkChoice::new(piece, None)], None, None);
                assert_eq!(head.text(text), general, "{text:?}");
                assert_eq!(data(general)["choices"][0]["delta"]["content"], text);
            }
        }
    }
}
