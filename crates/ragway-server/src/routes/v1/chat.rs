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
use ragway_core::config::NO_RETRIEVAL;
use ragway_core::{
    ChatRequest, Delta, FinishReason, Message, Role, Tool, ToolCall, ToolChoice, Usage,
};
use ragway_llm::openai::tool_calls_json;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument as _;
use utoipa::ToSchema;

use super::now;
use crate::auth::Caller;
use crate::error::{ApiError, OpenAiError};
use crate::json::OpenAiBody;
use crate::limits::bound_stream;
use crate::openapi::responses::{OpenAiAccess, OpenAiBadBody, OpenAiUpstream};
use crate::openapi::schemas::{
    ChatCompletion, ChatCompletionEvent, ChatMessage, ChatTool, ChatToolChoice, OpenAiErrorBody,
    Stop,
};
use crate::pipeline::Conversation;
use crate::registry::Registry;
use crate::routes::generate::check_top_k;

/// Most choices one request may ask for.
const MAX_CHOICES: u32 = 10;
/// Most stop sequences (OpenAI's limit).
const MAX_STOP: usize = 4;

/// The request; fields OpenAI has that ragway does not use are ignored, as OpenAI ignores
/// fields it does not know.
#[derive(Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// A chat model's name (`GET /v1/models`).
    model: String,
    /// At least one message.
    #[schema(value_type = Vec<ChatMessage>, min_items = 1)]
    messages: Vec<Value>,
    /// At least 1 (`max_completion_tokens` wins when both are given).
    #[serde(default)]
    #[schema(minimum = 1)]
    max_tokens: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    max_completion_tokens: Option<u32>,
    /// Between 0 and 2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    temperature: Option<f32>,
    /// Between 0 and 1.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    top_p: Option<f32>,
    /// Up to four non-empty stop sequences.
    #[serde(default)]
    #[schema(value_type = Option<Stop>)]
    stop: Option<Value>,
    /// Choices, 1 to 10; more than 1 only without `stream` and not for local models.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10)]
    n: Option<u32>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// ragway's extension: a store to ground the answer in.
    #[serde(default)]
    vector_search_type: Option<String>,
    /// ragway's extension: passages to retrieve, at least 1, at most the server's `max_top_k`.
    #[serde(default)]
    #[schema(minimum = 1)]
    top_k: Option<usize>,
    /// Functions the model may call (OpenAI and Bedrock models).
    #[serde(default)]
    #[schema(value_type = Option<Vec<ChatTool>>)]
    tools: Option<Vec<Value>>,
    /// Needs `tools`, except for "none".
    #[serde(default)]
    #[schema(value_type = Option<ChatToolChoice>)]
    tool_choice: Option<Value>,
}

#[derive(Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> OpenAiError {
    OpenAiError(ApiError::BadRequest {
        param: Some(param.into()),
        message: message.into(),
    })
}

/// One message in ragway's terms, with OpenAI's field path in every error.
fn message(i: usize, value: Value) -> Result<Message, OpenAiError> {
    let at = format!("messages.{i}");
    let Value::Object(fields) = value else {
        return Err(bad(&at, format!("{at} must be an object")));
    };
    let role = match fields.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(bad(
                format!("{at}.role"),
                format!(
                    "unknown role \"{other}\"; expected one of system, developer, user, \
                     assistant, tool"
                ),
            ));
        }
        None => return Err(bad(format!("{at}.role"), format!("{at}.role is required"))),
    };
    let tool_calls = match fields.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) if role == Role::Assistant => calls
            .iter()
            .enumerate()
            .map(|(j, call)| tool_call(&format!("{at}.tool_calls.{j}"), call))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                format!("{at}.tool_calls"),
                "tool_calls must be an array, on assistant messages only",
            ));
        }
    };
    let tool_call_id = if role == Role::Tool {
        match fields.get("tool_call_id").and_then(Value::as_str) {
            Some(id) => Some(id.to_owned()),
            None => {
                return Err(bad(
                    format!("{at}.tool_call_id"),
                    "a tool message needs the tool_call_id it answers",
                ));
            }
        }
    } else {
        None
    };
    let content = match fields.get("content") {
        None | Some(Value::Null) if role == Role::Assistant => String::new(),
        None | Some(Value::Null) => {
            return Err(bad(
                format!("{at}.content"),
                format!("{at}.content is required"),
            ));
        }
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(text)) => texts.push(text),
                    (Some("text"), None) => {
                        return Err(bad(
                            format!("{at}.content.{j}.text"),
                            "a text part needs a \"text\" string",
                        ));
                    }
                    (Some(other), _) => {
                        return Err(bad(
                            format!("{at}.content.{j}.type"),
                            format!("only text content parts are supported, not \"{other}\""),
                        ));
                    }
                    (None, _) => {
                        return Err(bad(
                            format!("{at}.content.{j}"),
                            "each content part needs a \"type\"",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(bad(
                format!("{at}.content"),
                "content must be a string or an array of text parts",
            ));
        }
    };
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

/// One `{"id", "type": "function", "function": {"name", "arguments"}}` of an assistant message.
fn tool_call(at: &str, call: &Value) -> Result<ToolCall, OpenAiError> {
    let text = |key: &str| call.pointer(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(id), Some(name)) = (text("/id"), text("/function/name")) else {
        return Err(bad(at, "a tool call needs an id and a function name"));
    };
    Ok(ToolCall {
        id,
        name,
        arguments: text("/function/arguments").unwrap_or_default(),
    })
}

/// `tools`: functions only, each with a name and a JSON Schema of its parameters.
fn tools(tools: Option<Vec<Value>>) -> Result<Vec<Tool>, OpenAiError> {
    tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, tool)| {
            let at = format!("tools.{i}");
            match tool.get("type").and_then(Value::as_str) {
                Some("function") => {}
                other => {
                    return Err(bad(
                        format!("{at}.type"),
                        format!(
                            "only function tools are supported, not {}",
                            other
                                .map_or("a tool without a type".to_owned(), |t| format!("\"{t}\""))
                        ),
                    ));
                }
            }
            let Some(name) = tool.pointer("/function/name").and_then(Value::as_str) else {
                return Err(bad(
                    format!("{at}.function.name"),
                    "a function tool needs a name",
                ));
            };
            Ok(Tool {
                name: name.to_owned(),
                description: tool
                    .pointer("/function/description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: tool
                    .pointer("/function/parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
            })
        })
        .collect()
}

/// `tool_choice`: `auto`, `none`, `required` or one named function among `tools`.
fn tool_choice(choice: Option<Value>, tools: &[Tool]) -> Result<Option<ToolChoice>, OpenAiError> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    "tool_choice",
                    format!(
                        "tool_choice must be auto, none, required or a function, not \"{other}\""
                    ),
                ));
            }
        },
        Some(named) => match named.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => {
                return Err(bad(
                    "tool_choice",
                    "a named tool_choice is {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ));
            }
        },
    };
    if choice != ToolChoice::None && tools.is_empty() {
        return Err(bad("tool_choice", "tool_choice needs tools"));
    }
    if let ToolChoice::Named(name) = &choice
        && !tools.iter().any(|t| &t.name == name)
    {
        return Err(bad(
            "tool_choice",
            format!("tool_choice names \"{name}\", which is not among the tools"),
        ));
    }
    Ok(Some(choice))
}

fn stop_sequences(stop: Option<Value>) -> Result<Vec<String>, OpenAiError> {
    let stop = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(one)) => vec![one],
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                _ => Err(bad(format!("stop.{i}"), "stop sequences must be strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad("stop", "stop must be a string or an array of strings"));
        }
    };
    if stop.len() > MAX_STOP {
        return Err(bad(
            "stop",
            format!("at most {MAX_STOP} stop sequences, got {}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(bad("stop", "stop sequences must not be empty"));
    }
    Ok(stop)
}

/// The body of `POST /v1/chat/completions` as the route reads it: JSON, then every field
/// checked (messages, tools, limits, the model's name and what it allows). The conversation
/// to answer.
pub fn read_body(body: &[u8], registry: &Registry) -> Result<Conversation, OpenAiError> {
    let request = crate::json::parse(body).map_err(OpenAiError)?;
    check(request, registry).map(|checked| checked.conversation)
}

/// A checked request: what to ask, how many choices, how to stream.
struct Checked {
    conversation: Conversation,
    choices: u32,
    stream: bool,
    include_usage: bool,
    /// Retrieval was asked for, so `sources` are part of the answer.
    grounded: bool,
}

fn check(request: CompletionRequest, registry: &Registry) -> Result<Checked, OpenAiError> {
    let tools = tools(request.tools)?;
    let tool_choice = tool_choice(request.tool_choice, &tools)?;
    if request.messages.is_empty() {
        return Err(bad(
            "messages",
            "messages must contain at least one message",
        ));
    }
    let messages = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = &registry.server.limits;
    let prompt_chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
    if prompt_chars > limits.max_prompt_chars {
        return Err(bad(
            "messages",
            format!(
                "the messages hold {prompt_chars} characters, more than the limit of {} \
                 (server.limits.max_prompt_chars)",
                limits.max_prompt_chars
            ),
        ));
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let param = if request.max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    if max_tokens == Some(0) {
        return Err(bad(param, format!("{param} must be at least 1")));
    }
    if let Some(n) = max_tokens
        && n > limits.max_tokens
    {
        return Err(bad(
            param,
            format!(
                "{param} must be at most {} (server.limits.max_tokens), got {n}",
                limits.max_tokens
            ),
        ));
    }
    if let Some(t) = request.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(bad("temperature", "temperature must be between 0 and 2"));
    }
    if let Some(p) = request.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(bad("top_p", "top_p must be between 0 and 1"));
    }
    if let Some(error) = check_top_k(request.top_k, registry.server.max_top_k) {
        return Err(bad("top_k", error.msg));
    }
    let stream = request.stream.unwrap_or(false);
    let choices = request.n.unwrap_or(1);
    if choices == 0 || choices > MAX_CHOICES {
        return Err(bad("n", format!("n must be between 1 and {MAX_CHOICES}")));
    }
    let llm = registry.llm(&request.model)?;
    if choices > 1 {
        if stream {
            return Err(bad(
                "n",
                "n > 1 cannot be streamed; ask with n = 1 or without stream",
            ));
        }
        if llm.kind == ragway_llm::local::PROVIDER_TYPE {
            return Err(bad(
                "n",
                format!(
                    "model \"{}\" runs locally and answers one choice per request; n must be 1",
                    request.model
                ),
            ));
        }
    }
    let vector_search_type = request
        .vector_search_type
        .unwrap_or_else(|| NO_RETRIEVAL.to_owned());
    Ok(Checked {
        grounded: vector_search_type != NO_RETRIEVAL,
        conversation: Conversation {
            llm_name: request.model,
            vector_search_type,
            top_k: request.top_k,
            request: ChatRequest {
                messages,
                max_tokens,
                temperature: request.temperature,
                top_p: request.top_p,
                stop: stop_sequences(request.stop)?,
                // Negative seeds are valid for OpenAI; keep their bits.
                seed: request.seed.map(|s| s as u64),
                user: request.user,
                tools,
                tool_choice,
            },
        },
        choices,
        stream,
        include_usage: request.stream_options.unwrap_or_default().include_usage,
    })
}

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
    let checked = check(request, &registry)?;
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
