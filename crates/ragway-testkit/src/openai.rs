//! Fake OpenAI-compatible API: chat completions (plain and SSE), embeddings and the model list.

use std::borrow::Cow;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::image::{ImageFormat, decode_base64};
use crate::reply::{self, Answer, embed};
use crate::server::{self, Call, Fake, FakeOptions, Scripted, Shared};

/// Model ids listed by `GET /v1/models`.
const MODELS: [&str; 3] = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"];

/// Embedding size when the request names none, for models other than OpenAI's own (which make
/// their own sizes: [`native_dimensions`]).
const DEFAULT_DIMENSIONS: usize = 8;

/// The size OpenAI's embedding models make when a request names none, and whether they take
/// `dimensions` (ada-002 refuses it).
fn native_dimensions(model: &str) -> Option<(usize, bool)> {
    match model {
        "text-embedding-3-small" => Some((1536, true)),
        "text-embedding-3-large" => Some((3072, true)),
        "text-embedding-ada-002" => Some((1536, false)),
        _ => None,
    }
}

/// Largest embedding the fake will make, so a typo cannot exhaust memory.
const MAX_DIMENSIONS: usize = 16_384;

/// Starts the fake, recording requests.
pub async fn start() -> anyhow::Result<Fake> {
    start_with_options(FakeOptions::default()).await
}

/// Starts the fake without recording requests, for benchmarks.
pub async fn start_unrecorded() -> anyhow::Result<Fake> {
    start_with_options(FakeOptions {
        record: false,
        ..FakeOptions::default()
    })
    .await
}

/// Starts the fake with explicit options.
pub async fn start_with_options(options: FakeOptions) -> anyhow::Result<Fake> {
    server::start(options, app).await
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .fallback(unknown_route)
        .with_state(state)
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<ChatMessage<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Vec<serde_json::Value>,
    #[serde(default)]
    response_format: Option<serde_json::Value>,
}

impl ChatRequest<'_> {
    /// The JSON Schema `response_format` asks the answer to follow, checked as OpenAI checks
    /// it (`json_object` needs the word "json" in the messages); `None` for free text.
    fn answer_schema(&self) -> Result<Option<serde_json::Value>, String> {
        let Some(format) = &self.response_format else {
            return Ok(None);
        };
        match format.get("type").and_then(serde_json::Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => {
                let mentions_json = self.messages.iter().any(|m| {
                    m.content
                        .as_ref()
                        .is_some_and(|c| c.text().to_ascii_lowercase().contains("json"))
                });
                if !mentions_json {
                    return Err(
                        "'messages' must contain the word 'json' in some form, to use \
                                'response_format' of type 'json_object'."
                            .into(),
                    );
                }
                Ok(Some(json!({
                    "type": "object",
                    "properties": { "answer": { "type": "string" } },
                })))
            }
            Some("json_schema") => {
                let definition = format.get("json_schema");
                let named = definition
                    .and_then(|d| d.get("name"))
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|name| !name.is_empty());
                match definition.and_then(|d| d.get("schema")) {
                    Some(schema) if named && schema.is_object() => Ok(Some(schema.clone())),
                    _ => Err(
                        "Invalid 'response_format.json_schema': a name and a schema \
                              object are required."
                            .into(),
                    ),
                }
            }
            _ => Err("Invalid value for 'response_format.type'.".into()),
        }
    }

    /// Checks the content parts of every message as OpenAI does before a model sees them: each
    /// part has a known `type`, and each `image_url` part is in a user message and holds an
    /// image ([`check_image`]). The error is `(param, message)`, `param` naming the field.
    fn check_parts(&self) -> Result<(), (String, String)> {
        for (i, message) in self.messages.iter().enumerate() {
            let Some(Content::Parts(parts)) = &message.content else {
                continue;
            };
            for (j, part) in parts.iter().enumerate() {
                let at = format!("messages[{i}].content[{j}]");
                match part.kind.as_deref() {
                    Some("image_url") => {}
                    // Only text is read; the other kinds OpenAI takes are let through unread.
                    Some("text" | "input_audio" | "file" | "refusal") => continue,
                    Some(other) => {
                        return Err((
                            format!("{at}.type"),
                            format!(
                                "Invalid value: '{other}'. Supported values are: 'text', \
                                 'image_url', 'input_audio', 'refusal', and 'file'."
                            ),
                        ));
                    }
                    None => {
                        return Err((
                            format!("{at}.type"),
                            format!("Missing required parameter: '{at}.type'."),
                        ));
                    }
                }
                let role = message.role.as_deref().unwrap_or("(none)");
                if role != "user" {
                    return Err((
                        format!("messages[{i}]"),
                        format!(
                            "Invalid 'messages[{i}]'. Image URLs are only allowed for messages \
                             with role 'user', but this message with role '{role}' contains an \
                             image URL."
                        ),
                    ));
                }
                let Some(image) = &part.image_url else {
                    return Err((
                        format!("{at}.image_url"),
                        format!("Missing required parameter: '{at}.image_url'."),
                    ));
                };
                check_image(image)
                    .map_err(|(field, message)| (format!("{at}.image_url.{field}"), message))?;
            }
        }
        Ok(())
    }
}

/// What OpenAI answers for an image it cannot read (its own wording, typo included).
const UNSUPPORTED_IMAGE: &str = "You uploaded an unsupported image. Please make sure your image \
                                 has of one the following formats: ['png', 'jpeg', 'gif', 'webp'].";

/// Checks one `image_url` part: `detail` is `auto`, `low` or `high`, and the URL is a base64
/// data URL of PNG, JPEG, GIF or WebP whose bytes open with that format's magic bytes. ragway
/// reads every image itself (a data URL, or fetched from a host it allows) and always sends
/// the bytes, so a remote URL reaching the fake is a ragway bug, refused as such. The error is
/// `(field, message)`, `field` being `url` or `detail`.
fn check_image(image: &ImageUrl<'_>) -> Result<(), (&'static str, String)> {
    if let Some(detail) = image.detail.as_deref()
        && !matches!(detail, "auto" | "low" | "high")
    {
        return Err((
            "detail",
            format!("Invalid value: '{detail}'. Supported values are: 'auto', 'low', and 'high'."),
        ));
    }
    let url = &image.url;
    let refused = |message: String| Err(("url", message));
    let Some(data_url) = url.strip_prefix("data:") else {
        let shown: String = url.chars().take(100).collect();
        return refused(format!(
            "The fake takes images only as data: URLs; ragway should have fetched {shown} \
             itself and sent its bytes."
        ));
    };
    let Some((media_type, data)) = data_url.split_once(";base64,") else {
        return refused(
            "Invalid image URL: a data URL must be data:image/<format>;base64,<data>.".into(),
        );
    };
    let Some(format) = ImageFormat::from_media_type(media_type) else {
        return refused(format!("{UNSUPPORTED_IMAGE} (media type {media_type:?})"));
    };
    let Some(bytes) = decode_base64(data) else {
        return refused("Invalid base64 image_url: the data does not decode as base64.".into());
    };
    if !format.opens(&bytes) {
        return refused(format!(
            "{UNSUPPORTED_IMAGE} (the data is not {}, as its media type says)",
            format.media_type()
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<ContentPart<'a>>),
}

/// One part of a message's content; only `text` parts carry text, so only they count.
#[derive(Deserialize)]
struct ContentPart<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<ImageUrl<'a>>,
}

/// An `image_url` part's image: a URL (for ragway always a data URL) and the optional detail.
#[derive(Deserialize)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

impl Content<'_> {
    /// The text of the message, parts joined.
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.to_string(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|part| part.text.as_deref())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn words(&self) -> u64 {
        match self {
            Content::Text(text) => reply::words(text),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|part| part.text.as_deref())
                .map(reply::words)
                .sum(),
        }
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[derive(Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// Everything a streamed answer needs once the handler has returned.
struct StreamPlan {
    id: String,
    created: u64,
    model: String,
    answer: Answer,
    finish_reason: String,
    usage: Option<Usage>,
    /// Cut the connection after this many text chunks.
    cut_after: Option<usize>,
    /// Send this error event (type, message) in place of the role chunk, and nothing else.
    refused: Option<(String, String)>,
    chunk_delay: Option<Duration>,
}

async fn chat_completions(call: Call) -> Response {
    let request: ChatRequest<'_> = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => return invalid_request(&format!("invalid chat completion request: {err}")),
    };
    if let Some(response) = scripted_error(&call) {
        return response;
    }
    let streaming = request.stream.unwrap_or(false);
    let garbage: &'static [u8] = if streaming {
        b"data: {\"choices\": [{\"delta\": \n\n"
    } else {
        b"{\"id\": \"chatcmpl-garbage\", \"choices\": <html>oops"
    };
    let content_type = if streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    if let Some(response) = server::scripted_fault(&call, content_type, garbage) {
        return response;
    }
    if let Err((param, message)) = request.check_parts() {
        return invalid_param(&param, &message);
    }
    if let Some(Scripted::ToolCall { name, arguments }) = &call.script {
        if request.tools.is_empty() {
            return invalid_request("a tool call was scripted but the request offers no tools");
        }
        let id = format!("call_fake_{}", call.state.next_id());
        return tool_call_response(&request.model, streaming, &id, name, arguments);
    }
    // Made before the delay so a client that hangs up while waiting counts as a cancellation.
    let guard = streaming.then(|| call.stream_guard());
    call.scripted_delay().await;

    let schema = match request.answer_schema() {
        Ok(schema) => schema,
        Err(message) => return invalid_request(&message),
    };
    let text = match (&call.script, schema) {
        (Some(Scripted::Text(text)), _) => text.clone(),
        (_, Some(schema)) => reply::instance_of(&schema).to_string(),
        _ => reply::default_text(&request.model, call.state.answer_words),
    };
    let answer = Answer::new(text, request.max_completion_tokens.or(request.max_tokens));
    let finish_reason = match &call.script {
        Some(Scripted::StopReason(reason)) => reason.as_str(),
        _ if answer.truncated => "length",
        _ => "stop",
    };
    let prompt_tokens = request
        .messages
        .iter()
        .filter_map(|message| message.content.as_ref())
        .map(Content::words)
        .sum();
    let completion_tokens = answer.words();
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let id = format!("chatcmpl-fake-{}", call.state.next_id());
    let created = unix_now();

    let Some(guard) = guard else {
        return axum::Json(Completion {
            id: &id,
            object: "chat.completion",
            created,
            model: &request.model,
            choices: [CompletionChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: &answer.text,
                    refusal: None,
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
        })
        .into_response();
    };
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|options| options.include_usage);
    let plan = StreamPlan {
        id,
        created,
        model: request.model.into_owned(),
        finish_reason: finish_reason.to_owned(),
        answer,
        usage: include_usage.then_some(usage),
        cut_after: match &call.script {
            Some(Scripted::StreamException { after_chunks, .. }) => Some(*after_chunks),
            _ => None,
        },
        refused: match &call.script {
            Some(Scripted::StreamRefused { kind, message }) => {
                Some((kind.clone(), message.clone()))
            }
            _ => None,
        },
        chunk_delay: match &call.script {
            Some(Scripted::StreamDelay(delay)) => Some(*delay),
            _ => call.state.chunk_delay,
        },
    };
    stream_response(plan, guard)
}

/// An answer that calls one tool: whole, or streamed as OpenAI streams calls (id and name
/// first, then the arguments in two pieces).
fn tool_call_response(
    model: &str,
    streaming: bool,
    id: &str,
    name: &str,
    arguments: &str,
) -> Response {
    let usage = json!({ "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 });
    if !streaming {
        return axum::Json(json!({
            "id": "chatcmpl-fake-tool",
            "object": "chat.completion",
            "created": unix_now(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } }],
                },
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": "chatcmpl-fake-tool",
            "object": "chat.completion.chunk",
            "created": unix_now(),
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    };
    let split = arguments
        .char_indices()
        .nth(arguments.chars().count() / 2)
        .map_or(arguments.len(), |(at, _)| at);
    let mut events = vec![
        chunk(json!({ "role": "assistant", "content": null }), None),
        chunk(
            json!({ "tool_calls": [{ "index": 0, "id": id, "type": "function", "function": { "name": name, "arguments": "" } }] }),
            None,
        ),
    ];
    for piece in [&arguments[..split], &arguments[split..]] {
        events.push(chunk(
            json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
            None,
        ));
    }
    events.push(chunk(json!({}), Some("tool_calls")));
    let mut body = Vec::new();
    for event in events {
        body.extend_from_slice(format!("data: {event}\n\n").as_bytes());
    }
    body.extend_from_slice(b"data: [DONE]\n\n");
    let mut response = Body::from(body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

fn stream_response(plan: StreamPlan, mut guard: server::StreamGuard) -> Response {
    let body = async_stream::stream! {
        let chunk = |delta: Delta<'_>, finish_reason: Option<&str>| {
            sse(&Chunk {
                id: &plan.id,
                object: "chat.completion.chunk",
                created: plan.created,
                model: &plan.model,
                choices: &[ChunkChoice { index: 0, delta, logprobs: None, finish_reason }],
                usage: None,
            })
        };
        if let Some((kind, message)) = &plan.refused {
            guard.finish();
            yield sse(&json!({ "error": { "message": message, "type": kind, "param": null, "code": null } }));
            return;
        }
        yield chunk(Delta { role: Some("assistant"), content: Some("") }, None);
        for (sent, piece) in plan.answer.chunks().enumerate() {
            if plan.cut_after == Some(sent) {
                break;
            }
            if let Some(delay) = plan.chunk_delay {
                tokio::time::sleep(delay).await;
            }
            yield chunk(Delta { role: None, content: Some(piece) }, None);
        }
        if plan.cut_after.is_some() {
            guard.finish();
            // Let hyper flush the chunks sent so far; an error while they are still buffered
            // would drop the whole response instead of cutting it mid-stream.
            tokio::task::yield_now().await;
            yield Err(io::Error::other("scripted cut of the stream"));
            return;
        }
        yield chunk(Delta::default(), Some(&plan.finish_reason));
        if let Some(usage) = plan.usage {
            yield sse(&Chunk {
                id: &plan.id,
                object: "chat.completion.chunk",
                created: plan.created,
                model: &plan.model,
                choices: &[],
                usage: Some(usage),
            });
        }
        guard.finish();
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    };
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One server-sent event carrying `value` as JSON.
fn sse(value: &impl Serialize) -> Result<Bytes, io::Error> {
    let mut event = Vec::with_capacity(256);
    event.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut event, value)?;
    event.extend_from_slice(b"\n\n");
    Ok(Bytes::from(event))
}

#[derive(Deserialize)]
struct EmbeddingsRequest<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    input: serde_json::Value,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
}

async fn embeddings(call: Call) -> Response {
    let request: EmbeddingsRequest<'_> = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => return invalid_request(&format!("invalid embeddings request: {err}")),
    };
    if let Some(response) = scripted_error(&call) {
        return response;
    }
    call.scripted_delay().await;
    let native = native_dimensions(&request.model);
    if request.dimensions.is_some() && native.is_some_and(|(_, shortens)| !shortens) {
        return invalid_request("This model does not support specifying dimensions.");
    }
    let dimensions = request
        .dimensions
        .or(native.map(|(size, _)| size))
        .unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return invalid_request(&format!(
            "dimensions must be between 1 and {MAX_DIMENSIONS}"
        ));
    }
    let inputs: Vec<Cow<'_, str>> = match &request.input {
        serde_json::Value::String(text) => vec![Cow::Borrowed(text.as_str())],
        serde_json::Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                serde_json::Value::String(text) => Cow::Borrowed(text.as_str()),
                // Token arrays are hashed by their JSON spelling.
                other => Cow::Owned(other.to_string()),
            })
            .collect(),
        _ => return invalid_request("input must be a string or a non-empty array"),
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid_request(&format!("unknown encoding_format {other:?}"));
        }
    };
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|text| reply::words(text)).sum();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
    .into_response()
}

/// Standard base64 with padding, as OpenAI sends `encoding_format: "base64"` embeddings.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn models(call: Call) -> Response {
    if let Some(response) = scripted_error(&call) {
        return response;
    }
    call.scripted_delay().await;
    let data: Vec<serde_json::Value> = MODELS
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "ragway-fake" }))
        .collect();
    axum::Json(json!({ "object": "list", "data": data })).into_response()
}

/// Unknown paths are still recorded (through `Call`), so tests can see what was asked for.
async fn unknown_route(_call: Call) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "Unknown request URL",
    )
}

fn invalid_request(message: &str) -> Response {
    openai_error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// A 400 naming the field at fault in `param`, as OpenAI names it.
fn invalid_param(param: &str, message: &str) -> Response {
    openai_error_with(
        StatusCode::BAD_REQUEST,
        &[],
        "invalid_request_error",
        Some(param),
        message,
    )
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
fn openai_error(status: StatusCode, kind: &str, message: &str) -> Response {
    openai_error_with(status, &[], kind, None, message)
}

/// [`openai_error`] with extra headers and the request field at fault, if one is.
fn openai_error_with(
    status: StatusCode,
    headers: &[(&'static str, &str)],
    kind: &str,
    param: Option<&str>,
    message: &str,
) -> Response {
    server::json_error(
        status,
        "application/json",
        headers,
        &json!({ "error": { "message": message, "type": kind, "param": param, "code": null } }),
    )
}

/// The scripted error answer, if an error or throttling was scripted.
fn scripted_error(call: &Call) -> Option<Response> {
    match &call.script {
        Some(Scripted::Error {
            status,
            kind,
            message,
        }) => Some(openai_error(server::status(*status), kind, message)),
        Some(Scripted::Throttled { retry_after_secs }) => Some(openai_error_with(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", &retry_after_secs.to_string())],
            "rate_limit_exceeded",
            None,
            "Rate limit reached; try again later.",
        )),
        _ => None,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::image::header_only;
    use futures::StreamExt as _;
    use serde_json::Value;

    fn chat_body(stream: bool) -> Value {
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": "Answer from the context." },
                { "role": "user", "content": [{ "type": "text", "text": "What is a qubit?" }] }
            ],
            "stream": stream,
        })
    }

    async fn post(fake: &Fake, path: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", fake.url()))
            .bearer_auth("sk-test")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The `data:` payloads of an SSE body.
    fn events(body: &str) -> Vec<&str> {
        body.split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| event.strip_prefix("data: ").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn completion_answers_with_default_text_and_usage() {
        let fake = start().await.unwrap();
        let response = post(&fake, "/v1/chat/completions", &chat_body(false)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "ragway fake answer from gpt-4o-mini."
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["prompt_tokens"], 8);
        assert_eq!(body["usage"]["completion_tokens"], 5);
        assert_eq!(body["usage"]["total_tokens"], 13);
    }

    #[tokio::test]
    async fn max_tokens_truncates_with_length() {
        let fake = start().await.unwrap();
        let mut request = chat_body(false);
        request["max_tokens"] = json!(3);
        let body: Value = post(&fake, "/v1/chat/completions", &request)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "ragway fake answer"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["completion_tokens"], 3);
    }

    #[tokio::test]
    async fn stream_concatenates_to_the_plain_answer_and_reports_usage() {
        let fake = start().await.unwrap();
        let mut request = chat_body(true);
        request["stream_options"] = json!({ "include_usage": true });
        let response = post(&fake, "/v1/chat/completions", &request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let body = response.text().await.unwrap();
        let events = events(&body);
        assert_eq!(events.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|event| serde_json::from_str(event).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|chunk| chunk["choices"].get(0)?["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "ragway fake answer from gpt-4o-mini.");
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 13);
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        assert_eq!(fake.cancelled(), 0);
    }

    #[tokio::test]
    async fn stream_without_include_usage_has_no_usage_chunk() {
        let fake = start().await.unwrap();
        let body = post(&fake, "/v1/chat/completions", &chat_body(true))
            .await
            .text()
            .await
            .unwrap();
        assert!(!body.contains("\"usage\""));
        assert!(body.ends_with("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn scripted_error_uses_openai_shape_and_retry_after() {
        let fake = start().await.unwrap();
        fake.push(Scripted::Error {
            status: 429,
            kind: "rate_limit_exceeded".into(),
            message: "slow down".into(),
        });
        let response = post(&fake, "/v1/chat/completions", &chat_body(false)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({ "error": { "message": "slow down", "type": "rate_limit_exceeded", "param": null, "code": null } })
        );
        // The queue is spent: the next request is answered normally.
        let response = post(&fake, "/v1/chat/completions", &chat_body(false)).await;
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn scripted_throttling_sends_its_retry_after() {
        let fake = start().await.unwrap();
        fake.push(Scripted::Throttled {
            retry_after_secs: 7,
        });
        let response = post(
            &fake,
            "/v1/embeddings",
            &json!({ "model": "m", "input": "x" }),
        )
        .await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    }

    #[tokio::test]
    async fn scripted_text_stop_reason_and_delay() {
        let fake = start().await.unwrap();
        fake.push(Scripted::Text("custom words here".into()));
        fake.push(Scripted::StopReason("content_filter".into()));
        fake.push(Scripted::Delay(Duration::from_millis(200)));
        let body: Value = post(&fake, "/v1/chat/completions", &chat_body(false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "custom words here"
        );
        let body: Value = post(&fake, "/v1/chat/completions", &chat_body(false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        let started = std::time::Instant::now();
        post(&fake, "/v1/chat/completions", &chat_body(false)).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn records_requests_but_not_control_calls() {
        let fake = start().await.unwrap();
        let script = json!({ "kind": "text", "value": "scripted over http" });
        let response = post(&fake, "/__fake/script", &script).await;
        assert_eq!(response.status(), 200);
        let body: Value = post(&fake, "/v1/chat/completions", &chat_body(false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "scripted over http"
        );
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "/v1/chat/completions");
        assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
        assert_eq!(requests[0].body, chat_body(false));
        let listed: Value = reqwest::get(format!("{}/__fake/requests", fake.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed[0]["path"], "/v1/chat/completions");
    }

    #[tokio::test]
    async fn unrecorded_fake_keeps_nothing() {
        let fake = start_unrecorded().await.unwrap();
        post(&fake, "/v1/chat/completions", &chat_body(false)).await;
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn invalid_json_is_a_400_in_openai_shape() {
        let fake = start().await.unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", fake.url()))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(fake.requests()[0].body, Value::Null);
    }

    #[tokio::test]
    async fn stream_exception_cuts_the_connection() {
        let fake = start().await.unwrap();
        fake.push(Scripted::StreamException {
            after_chunks: 2,
            kind: "server_error".into(),
            message: "boom".into(),
        });
        let response = post(&fake, "/v1/chat/completions", &chat_body(true)).await;
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the body should end with an error");
        let received = String::from_utf8(received).unwrap();
        assert!(received.contains("\"content\":\"fake \""));
        assert!(!received.contains("answer"));
        assert!(!received.contains("[DONE]"));
        assert_eq!(fake.cancelled(), 0);
    }

    #[tokio::test]
    async fn a_refused_stream_is_one_error_event() {
        let fake = start().await.unwrap();
        fake.push(Scripted::StreamRefused {
            kind: "server_error".into(),
            message: "overloaded".into(),
        });
        let response = post(&fake, "/v1/chat/completions", &chat_body(true)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let events: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(events.len(), 1, "{text}");
        let error: Value = serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(error["error"]["message"], "overloaded");
        assert_eq!(error["error"]["type"], "server_error");
        assert_eq!(fake.cancelled(), 0);
    }

    #[tokio::test]
    async fn dropping_a_stream_early_counts_a_cancellation() {
        let fake = start().await.unwrap();
        fake.push(Scripted::StreamDelay(Duration::from_millis(300)));
        let response = post(&fake, "/v1/chat/completions", &chat_body(true)).await;
        let mut stream = response.bytes_stream();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: "));
        drop(stream);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while fake.cancelled() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fake.cancelled(), 1);
    }

    #[tokio::test]
    async fn embeddings_are_deterministic_unit_vectors() {
        let fake = start().await.unwrap();
        let request =
            json!({ "model": "my-embedder", "input": ["qubits", "qubits", "entanglement"] });
        let body: Value = post(&fake, "/v1/embeddings", &request)
            .await
            .json()
            .await
            .unwrap();
        let vectors: Vec<Vec<f64>> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| serde_json::from_value(item["embedding"].clone()).unwrap())
            .collect();
        assert_eq!(vectors.len(), 3);
        assert_eq!(vectors[0].len(), DEFAULT_DIMENSIONS);
        assert_eq!(vectors[0], vectors[1]);
        assert_ne!(vectors[0], vectors[2]);
        let norm: f64 = vectors[2].iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(body["data"][2]["index"], 2);
        assert_eq!(body["usage"]["prompt_tokens"], 3);

        // OpenAI's models make their own sizes; ada-002 refuses to be asked for another.
        let native = |model: &str| json!({ "model": model, "input": "qubits" });
        let body: Value = post(&fake, "/v1/embeddings", &native("text-embedding-3-large"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 3072);
        let mut asked = native("text-embedding-ada-002");
        asked["dimensions"] = json!(256);
        let refused = post(&fake, "/v1/embeddings", &asked).await;
        assert_eq!(refused.status(), 400);

        let request = json!({ "model": "m", "input": "qubits", "dimensions": 4, "encoding_format": "base64" });
        let body: Value = post(&fake, "/v1/embeddings", &request)
            .await
            .json()
            .await
            .unwrap();
        let expected: Vec<u8> = embed("qubits", 4)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(body["data"][0]["embedding"], base64_encode(&expected));
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"M"), "TQ==");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"hello world"), "aGVsbG8gd29ybGQ=");
    }

    fn data_url(media_type: &str, bytes: &[u8]) -> String {
        format!("data:{media_type};base64,{}", base64_encode(bytes))
    }

    /// A request whose one message, from `role`, asks about one image part.
    fn with_image_part(role: &str, part: Value) -> Value {
        json!({
            "model": "gpt-4o",
            "messages": [
                { "role": role, "content": [{ "type": "text", "text": "What is this?" }, part] }
            ],
        })
    }

    fn image_part(url: &str, detail: Option<&str>) -> Value {
        json!({ "type": "image_url", "image_url": { "url": url, "detail": detail } })
    }

    fn check_parts(body: &Value) -> Result<(), (String, String)> {
        let text = body.to_string();
        let request: ChatRequest<'_> = serde_json::from_str(&text).unwrap();
        request.check_parts()
    }

    #[test]
    fn images_of_the_four_formats_as_data_urls_pass() {
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::Webp,
        ] {
            let url = data_url(format.media_type(), &header_only(format, 2, 2));
            for detail in [None, Some("auto"), Some("low"), Some("high")] {
                let body = with_image_part("user", image_part(&url, detail));
                assert_eq!(check_parts(&body), Ok(()), "{format:?} {detail:?}");
            }
        }
    }

    #[test]
    fn bad_image_parts_are_refused_naming_the_field() {
        let png = header_only(ImageFormat::Png, 2, 2);
        let jpeg = header_only(ImageFormat::Jpeg, 2, 2);
        let url = data_url("image/png", &png);
        let cases = [
            (
                with_image_part("user", image_part(&data_url("image/png", &jpeg), None)),
                "messages[0].content[1].image_url.url",
                "unsupported image. Please make sure your image has of one the following formats",
            ),
            (
                with_image_part("user", image_part("data:image/png;base64,iVBO@@@=", None)),
                "messages[0].content[1].image_url.url",
                "Invalid base64 image_url",
            ),
            (
                with_image_part("user", image_part("https://example.com/cat.png", None)),
                "messages[0].content[1].image_url.url",
                "ragway should have fetched https://example.com/cat.png itself",
            ),
            (
                with_image_part("user", image_part(&data_url("image/bmp", b"BM\0\0"), None)),
                "messages[0].content[1].image_url.url",
                "unsupported image",
            ),
            (
                with_image_part("user", image_part("data:image/png,raw", None)),
                "messages[0].content[1].image_url.url",
                "data URL must be data:image/<format>;base64,<data>",
            ),
            (
                with_image_part("user", image_part(&url, Some("medium"))),
                "messages[0].content[1].image_url.detail",
                "Invalid value: 'medium'. Supported values are: 'auto', 'low', and 'high'.",
            ),
            (
                with_image_part("assistant", image_part(&url, None)),
                "messages[0]",
                "Image URLs are only allowed for messages with role 'user', but this message \
                 with role 'assistant' contains an image URL.",
            ),
            (
                with_image_part("system", image_part(&url, None)),
                "messages[0]",
                "role 'system' contains an image URL",
            ),
            (
                with_image_part("user", json!({ "type": "image_url" })),
                "messages[0].content[1].image_url",
                "Missing required parameter: 'messages[0].content[1].image_url'.",
            ),
            (
                with_image_part("user", json!({ "type": "video_url", "video_url": {} })),
                "messages[0].content[1].type",
                "Invalid value: 'video_url'.",
            ),
            (
                with_image_part("user", json!({ "image_url": { "url": url } })),
                "messages[0].content[1].type",
                "Missing required parameter: 'messages[0].content[1].type'.",
            ),
        ];
        for (body, param, message) in cases {
            let (got_param, got_message) = check_parts(&body).unwrap_err();
            assert_eq!(got_param, param, "{got_message}");
            assert!(got_message.contains(message), "{got_message}");
        }
    }

    #[tokio::test]
    async fn an_image_is_answered_and_only_the_text_counts_as_tokens() {
        let fake = start().await.unwrap();
        let url = data_url("image/png", &header_only(ImageFormat::Png, 64, 64));
        let request = with_image_part("user", image_part(&url, Some("low")));
        let response = post(&fake, "/v1/chat/completions", &request).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        // "What is this?" is three words; the image adds none.
        assert_eq!(body["usage"]["prompt_tokens"], 3);
    }

    #[tokio::test]
    async fn a_bad_image_is_a_400_in_openai_shape_with_its_param() {
        let fake = start().await.unwrap();
        let url = data_url("image/jpeg", b"not a jpeg at all");
        let request = with_image_part("user", image_part(&url, None));
        let response = post(&fake, "/v1/chat/completions", &request).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            body["error"]["param"],
            "messages[0].content[1].image_url.url"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("the data is not image/jpeg"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn models_lists_ids() {
        let fake = start().await.unwrap();
        let body: Value = reqwest::get(format!("{}/v1/models", fake.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][0]["id"], "gpt-4o-mini");
    }
}
