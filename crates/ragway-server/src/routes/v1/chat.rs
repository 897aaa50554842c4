//! `POST /v1/chat/completions`: OpenAI's chat API over any configured model, whole answers as
//! `chat.completion` objects, streamed ones as `chat.completion.chunk` events ending in
//! `data: [DONE]`. The extra fields `vector_search_type` and `top_k` ground the last user
//! message in retrieved passages, returned in an extra `sources` field (or on the first chunk),
//! which clients that do not know it ignore. Tools pass through to OpenAI and Bedrock models
//! and their calls come back in OpenAI's shape, streamed or whole.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use futures::future::try_join_all;
use ragway_core::{Delta, FinishReason, Usage};
use ragway_llm::openai::tool_calls_json;
use ragway_requests::chat::{Checked, CompletionRequest};
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::now;
use crate::auth::Caller;
use crate::error::{ApiError, OpenAiError};
use crate::json::OpenAiBody;
use crate::limits::bound_stream;
use crate::openapi::responses::{OpenAiAccess, OpenAiBadBody, OpenAiUpstream};
use crate::openapi::schemas::{ChatCompletion, ChatCompletionEvent, OpenAiErrorBody};
use crate::registry::Registry;

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
    State(registry): State<Arc<Registry>>,
    Extension(caller): Extension<Arc<Caller>>,
    OpenAiBody(request): OpenAiBody<CompletionRequest>,
) -> Result<Response, OpenAiError> {
    let checked = request.check(&registry.server)?;
    let llm = registry.llm(&checked.conversation.llm_name)?;
    if checked.choices > 1 && llm.kind == ragway_llm::local::PROVIDER_TYPE {
        return Err(ApiError::BadRequest {
            param: Some("n".into()),
            message: format!(
                "model \"{}\" runs locally and answers one choice per request; n must be 1",
                checked.conversation.llm_name
            ),
        }
        .into());
    }
    caller.check_model(&checked.conversation.llm_name)?;
    caller.check_store(&checked.conversation.vector_search_type)?;
    if checked.stream {
        return stream(&registry, checked, caller).await;
    }
    let prepared = registry.prepare_conversation(checked.conversation).await?;
    let generation_started = std::time::Instant::now();
    let span = registry.chat_span(&prepared);
    // All choices come from one model: a failed choice retries (or falls back) them all.
    let (answers, answered) = registry
        .call_with_fallbacks(&prepared.llm_name, |model| {
            let calls: Vec<_> = (0..checked.choices)
                .map(|_| {
                    let (model, request) = (model.clone(), prepared.request.clone());
                    async move { model.generate(request).await }
                })
                .collect();
            try_join_all(calls)
        })
        .instrument(span.clone())
        .await
        .inspect_err(|error| crate::telemetry::failed(&span, error))?;
    crate::telemetry::answered(&span, &registry, &answered);
    let mut usage = Usage::default();
    let choices: Vec<Value> = answers
        .into_iter()
        .enumerate()
        .map(|(index, answer)| {
            // The prompt is the same for every choice; the answers each cost their own.
            usage.input_tokens = answer.usage.input_tokens;
            usage.output_tokens += answer.usage.output_tokens;
            let mut message =
                json!({ "role": "assistant", "content": answer.text, "refusal": null });
            if !answer.tool_calls.is_empty() {
                message["tool_calls"] = tool_calls_json(&answer.tool_calls);
                if answer.text.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            json!({
                "index": index,
                "message": message,
                "logprobs": null,
                "finish_reason": answer.finish_reason.as_str(),
            })
        })
        .collect();
    crate::metrics::generated(&answered.model, generation_started.elapsed(), &usage);
    crate::telemetry::usage(&span, &usage);
    caller.spend(&usage);
    let mut body = json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": now(),
        "model": answered.model,
        "choices": choices,
        "usage": usage_json(usage),
        "system_fingerprint": null,
    });
    if checked.grounded {
        body["sources"] = json!(prepared.sources);
    }
    Ok(answered.name_in(axum::Json(body).into_response()))
}

/// `chat.completion.chunk` events: the role (and the sources) first, then the text as the
/// model writes it, the finish reason, the usage when asked for, and `[DONE]`. A failure
/// before the first byte is an ordinary error response; one midway is an `{"error": ...}`
/// event that ends the stream (the SDKs raise it). Dropping the connection drops the upstream
/// request.
async fn stream(
    registry: &Registry,
    checked: Checked,
    caller: Arc<Caller>,
) -> Result<Response, OpenAiError> {
    let prepared = registry.prepare_conversation(checked.conversation).await?;
    let (deltas, answered) = registry.stream(&prepared).await?;
    let mut deltas = bound_stream(deltas, &registry.server.limits, prepared.started);
    let model_name = answered.model.clone();
    let id = completion_id();
    let created = now();
    let include_usage = checked.include_usage;
    let chunk = move |choices: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "system_fingerprint": null,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let choice = |delta: Value, finish: Option<&str>| json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    let mut first = chunk(choice(json!({ "role": "assistant", "content": "" }), None));
    if checked.grounded {
        first["sources"] = json!(prepared.sources);
    }
    let events = async_stream::stream! {
        yield Ok::<_, Infallible>(data(&first));
        let mut usage = Usage::default();
        let mut finish = FinishReason::Stop;
        while let Some(delta) = deltas.next().await {
            match delta {
                Ok(Delta::Text(text)) => {
                    yield Ok(data(&chunk(choice(json!({ "content": text }), None))));
                }
                Ok(Delta::ToolCall { index, id, name, arguments }) => {
                    let mut call = json!({ "index": index, "function": { "arguments": arguments } });
                    if let Some(id) = id {
                        call["id"] = json!(id);
                        call["type"] = json!("function");
                    }
                    if let Some(name) = name {
                        call["function"]["name"] = json!(name);
                    }
                    yield Ok(data(&chunk(choice(json!({ "tool_calls": [call] }), None))));
                }
                Ok(Delta::Usage(u)) => {
                    caller.spend(&u);
                    usage = u;
                }
                Ok(Delta::Finish(reason)) => finish = reason,
                // The role chunk above stands for the start.
                Ok(Delta::Started) => {}
                Err(error) => {
                    let error = OpenAiError::from(error);
                    tracing::warn!(error = %error.0, "stream failed mid-answer");
                    yield Ok(data(&error.body()));
                    return;
                }
            }
        }
        yield Ok(data(&chunk(choice(json!({}), Some(finish.as_str())))));
        if include_usage {
            let mut last = chunk(json!([]));
            last["usage"] = usage_json(usage);
            yield Ok(data(&last));
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    Ok(answered.name_in(
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response(),
    ))
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}
