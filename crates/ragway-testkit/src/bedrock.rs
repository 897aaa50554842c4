//! Fake Bedrock Runtime (restJson1): `Converse` and `ConverseStream` over AWS event-stream frames,
//! and `InvokeModel` for Titan Text Embeddings V2.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::image::{ImageFormat, decode_base64};
use crate::reply::{self, Answer, embed};
use crate::server::{self, Call, Fake, FakeOptions, Scripted, Shared, StreamGuard};

/// Starts the fake, recording requests.
pub async fn start() -> anyhow::Result<Fake> {
    start_with_options(FakeOptions::default()).await
}

/// Starts the fake with explicit options.
pub async fn start_with_options(options: FakeOptions) -> anyhow::Result<Fake> {
    server::start(options, app).await
}

fn app(state: Shared) -> Router {
    // `{model_id}` matches one raw segment; clients percent-encode `:` and `/` in model ids.
    Router::new()
        .route("/model/{model_id}/converse", post(converse))
        .route("/model/{model_id}/converse-stream", post(converse_stream))
        .route("/model/{model_id}/invoke", post(invoke_model))
        .fallback(unknown_route)
        .with_state(state)
}

#[derive(Deserialize)]
struct ConverseRequest<'a> {
    #[serde(borrow)]
    messages: Vec<ConverseMessage<'a>>,
    #[serde(borrow, default)]
    system: Vec<ContentBlock<'a>>,
    #[serde(rename = "inferenceConfig", default)]
    inference_config: Option<InferenceConfig>,
    #[serde(rename = "toolConfig", default)]
    tool_config: Option<Value>,
    #[serde(rename = "outputConfig", default)]
    output_config: Option<Value>,
}

/// The JSON Schema an `outputConfig.textFormat` asks the answer to follow, checked as Bedrock
/// checks it: type `json_schema`, the schema as a JSON string, and a model that offers
/// structured outputs (Claude 3 models do not).
fn output_schema(request: &ConverseRequest<'_>, model_id: &str) -> Result<Option<Value>, String> {
    let Some(config) = &request.output_config else {
        return Ok(None);
    };
    let Some(format) = config.get("textFormat") else {
        return Ok(None);
    };
    if model_id.contains("claude-3") {
        return Err(format!(
            "The model {model_id} doesn't support structured output (outputConfig.textFormat)."
        ));
    }
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        return Err("outputConfig.textFormat.type must be json_schema".into());
    }
    let Some(text) = format
        .pointer("/structure/jsonSchema/schema")
        .and_then(Value::as_str)
    else {
        return Err("outputConfig.textFormat.structure.jsonSchema.schema must be a string".into());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(schema @ Value::Object(_)) => Ok(Some(schema)),
        _ => Err(
            "outputConfig.textFormat.structure.jsonSchema.schema is not a JSON Schema object"
                .into(),
        ),
    }
}

#[derive(Deserialize)]
struct ConverseMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Vec<ContentBlock<'a>>,
}

/// Only text blocks count; images are checked ([`check_images`]) but count for nothing;
/// documents and tool blocks are ignored.
#[derive(Deserialize)]
struct ContentBlock<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image: Option<ImageBlock<'a>>,
}

/// `{"image": {"format": "png", "source": {"bytes": "<base64>"}}}`.
#[derive(Deserialize)]
struct ImageBlock<'a> {
    #[serde(borrow)]
    format: Cow<'a, str>,
    #[serde(borrow)]
    source: ImageSource<'a>,
}

#[derive(Deserialize)]
struct ImageSource<'a> {
    #[serde(borrow, default)]
    bytes: Option<Cow<'a, str>>,
    #[serde(rename = "s3Location", default)]
    s3_location: Option<Value>,
}

/// Images in one request, all messages together (Bedrock API reference, `Message.content`).
const MAX_IMAGES: usize = 20;
/// Bytes of one image once decoded: 3.75 MB.
const MAX_IMAGE_BYTES: usize = 3_750_000;
/// Pixels of one image's width and of its height.
const MAX_IMAGE_SIDE: u32 = 8_000;

/// What Bedrock answers when a model that reads no images is sent one.
const NO_IMAGES: &str = "This model doesn't support the image content block that you provided.";

/// Checks the images of a request as Bedrock does: a model that reads images, only in user
/// turns, at most [`MAX_IMAGES`], each base64 bytes of the format it names (magic bytes) of
/// at most [`MAX_IMAGE_BYTES`] and [`MAX_IMAGE_SIDE`] pixels a side (read from the header of
/// any of the four formats; an image whose size cannot be read is refused, as Bedrock cannot
/// decode it either).
fn check_images(request: &ConverseRequest<'_>, model_id: &str) -> Result<(), String> {
    if request.system.iter().any(|block| block.image.is_some()) {
        return Err("system: a system prompt takes text blocks, not image blocks".into());
    }
    let images: Vec<(String, &str, &ImageBlock<'_>)> = request
        .messages
        .iter()
        .enumerate()
        .flat_map(|(i, message)| {
            let role = message.role.as_deref().unwrap_or("(none)");
            message
                .content
                .iter()
                .enumerate()
                .filter_map(move |(j, block)| {
                    let image = block.image.as_ref()?;
                    Some((format!("messages.{i}.content.{j}.image"), role, image))
                })
        })
        .collect();
    if images.is_empty() {
        return Ok(());
    }
    if !reads_images(model_id) {
        return Err(NO_IMAGES.into());
    }
    if images.len() > MAX_IMAGES {
        return Err(format!(
            "Too many images: the request has {}, at most {MAX_IMAGES} are allowed.",
            images.len()
        ));
    }
    for (at, role, image) in images {
        if role != "user" {
            return Err(format!(
                "{at}: image blocks are allowed only in user messages, not in {role} messages"
            ));
        }
        let Some(format) = ImageFormat::from_name(&image.format) else {
            return Err(format!(
                "1 validation error detected: Value '{}' at '{at}.format' failed to satisfy \
                 constraint: Member must satisfy enum value set: [png, jpeg, gif, webp]",
                image.format
            ));
        };
        let Some(text) = image.source.bytes.as_deref() else {
            let given = if image.source.s3_location.is_some() {
                "an s3Location (ragway always sends the bytes)"
            } else {
                "nothing"
            };
            return Err(format!("{at}.source: the fake takes bytes, got {given}"));
        };
        let Some(bytes) = decode_base64(text) else {
            return Err(format!("{at}.source.bytes: the value is not valid base64"));
        };
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(format!(
                "{at}.source.bytes: image exceeds 3.75 MB maximum: {} bytes > \
                 {MAX_IMAGE_BYTES} bytes",
                bytes.len()
            ));
        }
        if !format.opens(&bytes) {
            return Err(format!(
                "{at}.source.bytes: the bytes are not a {} image, which {at}.format says",
                format.name()
            ));
        }
        let Some((width, height)) = format.size(&bytes) else {
            return Err(format!(
                "{at}.source.bytes: could not process the {} image: its header is cut short \
                 or damaged",
                format.name()
            ));
        };
        if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
            return Err(format!(
                "{at}.source.bytes: image dimensions exceed max allowed size: \
                 {MAX_IMAGE_SIDE} pixels ({width}x{height})"
            ));
        }
    }
    Ok(())
}

/// Whether the model behind `model_id` reads images, per Bedrock's model cards: Claude 3 and
/// later (Claude 3.x, and Sonnet, Opus and Haiku 4 on), Nova Lite, Pro and Premier (not
/// Micro), Llama 3.2 11B and 90B and Llama 4, and Pixtral. A cross-region prefix (`us.`) or a
/// foundation-model or inference-profile ARN still names the model; the ARN of an application
/// inference profile, a provisioned or a custom model does not, so those are taken to read.
fn reads_images(model_id: &str) -> bool {
    let id = model_id.to_ascii_lowercase();
    if id.starts_with("arn:")
        && !id.contains(":foundation-model/")
        && !id.contains(":inference-profile/")
    {
        return true;
    }
    let claude_4_on = id.split("anthropic.claude-").nth(1).is_some_and(|rest| {
        let mut words = rest.split('-');
        matches!(words.next(), Some("sonnet" | "opus" | "haiku"))
            && words
                .next()
                .and_then(|major| major.parse::<u32>().ok())
                .is_some_and(|major| major >= 4)
    });
    let nova = id.contains("amazon.nova-")
        && !id.contains("micro")
        && ["-lite", "-pro", "-premier"]
            .iter()
            .any(|tier| id.contains(tier));
    id.contains("anthropic.claude-3")
        || claude_4_on
        || nova
        || ["llama3-2-11b", "llama3-2-90b", "llama4", "pixtral"]
            .iter()
            .any(|family| id.contains(family))
}

#[derive(Deserialize)]
struct InferenceConfig {
    #[serde(rename = "maxTokens", default)]
    max_tokens: Option<u64>,
}

/// The answer to one request, worked out before any byte is sent.
struct Reply {
    answer: Answer,
    stop_reason: String,
    input_tokens: u64,
}

impl Reply {
    fn new(call: &Call, model_id: &str) -> Result<Self, Box<Response>> {
        let request: ConverseRequest<'_> =
            serde_json::from_slice(&call.body).map_err(|err| Box::new(malformed(&err)))?;
        check_images(&request, model_id).map_err(|message| Box::new(invalid(&message)))?;
        let schema =
            output_schema(&request, model_id).map_err(|message| Box::new(invalid(&message)))?;
        let text = match (&call.script, schema) {
            (Some(Scripted::Text(text)), _) => text.clone(),
            (_, Some(schema)) => reply::instance_of(&schema).to_string(),
            _ => reply::default_text(model_id, call.state.answer_words),
        };
        let answer = Answer::new(
            text,
            request
                .inference_config
                .as_ref()
                .and_then(|config| config.max_tokens),
        );
        let stop_reason = match &call.script {
            Some(Scripted::StopReason(reason)) => reason.clone(),
            _ if answer.truncated => "max_tokens".to_owned(),
            _ => "end_turn".to_owned(),
        };
        let input_tokens = request
            .system
            .iter()
            .chain(request.messages.iter().flat_map(|message| &message.content))
            .filter_map(|block| block.text.as_deref())
            .map(reply::words)
            .sum();
        Ok(Self {
            answer,
            stop_reason,
            input_tokens,
        })
    }

    fn usage(&self) -> Value {
        let output_tokens = self.answer.words();
        json!({
            "inputTokens": self.input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": self.input_tokens + output_tokens,
        })
    }
}

async fn converse(Path(model_id): Path<String>, call: Call) -> Response {
    if let Some(response) = scripted_error(&call) {
        return response;
    }
    if let Some(response) =
        server::scripted_fault(&call, "application/json", b"{\"output\": {\"message\": 42")
    {
        return response;
    }
    if let Some(response) = scripted_tool_call(&call, &model_id, false) {
        return response;
    }
    let reply = match Reply::new(&call, &model_id) {
        Ok(reply) => reply,
        Err(refused) => return *refused,
    };
    call.scripted_delay().await;
    let body = json!({
        "output": { "message": { "role": "assistant", "content": [{ "text": reply.answer.text }] } },
        "stopReason": reply.stop_reason,
        "usage": reply.usage(),
        "metrics": { "latencyMs": call.elapsed_ms() },
    });
    let mut response = axum::Json(body).into_response();
    add_request_id(&mut response, &call.state);
    response
}

async fn converse_stream(Path(model_id): Path<String>, call: Call) -> Response {
    if let Some(response) = scripted_error(&call) {
        return response;
    }
    // Not an event-stream frame: its prelude announces more bytes than follow.
    if let Some(response) = server::scripted_fault(
        &call,
        "application/vnd.amazon.eventstream",
        b"\x00\x00\x10\x00garbage, not a frame",
    ) {
        return response;
    }
    if let Some(response) = scripted_tool_call(&call, &model_id, true) {
        return response;
    }
    let reply = match Reply::new(&call, &model_id) {
        Ok(reply) => reply,
        Err(refused) => return *refused,
    };
    // Made before the delay so a client that hangs up while waiting counts as a cancellation.
    let guard = call.stream_guard();
    call.scripted_delay().await;
    let exception = match &call.script {
        Some(Scripted::StreamException {
            after_chunks,
            kind,
            message,
        }) => Some((Some(*after_chunks), kind.clone(), message.clone())),
        Some(Scripted::StreamRefused { kind, message }) => {
            Some((None, kind.clone(), message.clone()))
        }
        _ => None,
    };
    let chunk_delay = match &call.script {
        Some(Scripted::StreamDelay(delay)) => Some(*delay),
        _ => call.state.chunk_delay,
    };
    let state = call.state.clone();
    let mut response = event_stream(reply, exception, chunk_delay, call, guard);
    add_request_id(&mut response, &state);
    response
}

fn event_stream(
    reply: Reply,
    // The exception and after how many text chunks it comes (`None`: before `messageStart`).
    exception: Option<(Option<usize>, String, String)>,
    chunk_delay: Option<Duration>,
    call: Call,
    mut guard: StreamGuard,
) -> Response {
    let body = async_stream::stream! {
        let refused = exception.as_ref().is_some_and(|(after, _, _)| after.is_none());
        if !refused {
            yield event("messageStart", &json!({ "role": "assistant" }));
        }
        for (sent, piece) in reply.answer.chunks().enumerate() {
            if exception.as_ref().is_some_and(|(after, _, _)| after.is_none_or(|after| after == sent)) {
                break;
            }
            if let Some(delay) = chunk_delay {
                tokio::time::sleep(delay).await;
            }
            yield event(
                "contentBlockDelta",
                &json!({ "contentBlockIndex": 0, "delta": { "text": piece } }),
            );
        }
        if let Some((_, kind, message)) = &exception {
            guard.finish();
            yield frame(
                vec![
                    string_header(":message-type", "exception".into()),
                    string_header(":exception-type", kind.clone()),
                    string_header(":content-type", "application/json".into()),
                ],
                &json!({ "message": message }),
            );
            return;
        }
        yield event("contentBlockStop", &json!({ "contentBlockIndex": 0 }));
        yield event("messageStop", &json!({ "stopReason": reply.stop_reason }));
        guard.finish();
        yield event(
            "metadata",
            &json!({ "usage": reply.usage(), "metrics": { "latencyMs": call.elapsed_ms() } }),
        );
    };
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    response
}

/// A scripted tool call, answered as Converse answers one (`toolUse` content, stop reason
/// `tool_use`), whole or as stream events; a request without `toolConfig` is refused.
fn scripted_tool_call(call: &Call, model_id: &str, streaming: bool) -> Option<Response> {
    let Some(Scripted::ToolCall { name, arguments }) = &call.script else {
        return None;
    };
    let request: ConverseRequest<'_> = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => return Some(malformed(&err)),
    };
    if let Err(message) = check_images(&request, model_id) {
        return Some(invalid(&message));
    }
    if request.tool_config.is_none() {
        return Some(server::rest_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "a tool call was scripted but the request has no toolConfig",
        ));
    }
    let input: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
    let id = format!("tooluse_fake_{}", call.state.next_id());
    let usage = json!({ "inputTokens": 10, "outputTokens": 5, "totalTokens": 15 });
    if !streaming {
        let mut response = axum::Json(json!({
            "output": { "message": { "role": "assistant", "content": [
                { "toolUse": { "toolUseId": id, "name": name, "input": input } },
            ] } },
            "stopReason": "tool_use",
            "usage": usage,
            "metrics": { "latencyMs": call.elapsed_ms() },
        }))
        .into_response();
        add_request_id(&mut response, &call.state);
        return Some(response);
    }
    let split = arguments
        .char_indices()
        .nth(arguments.chars().count() / 2)
        .map_or(arguments.len(), |(at, _)| at);
    let mut frames = vec![
        event("messageStart", &json!({ "role": "assistant" })),
        event(
            "contentBlockStart",
            &json!({ "contentBlockIndex": 0, "start": { "toolUse": { "toolUseId": id, "name": name } } }),
        ),
    ];
    for piece in [&arguments[..split], &arguments[split..]] {
        frames.push(event(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "toolUse": { "input": piece } } }),
        ));
    }
    frames.push(event(
        "contentBlockStop",
        &json!({ "contentBlockIndex": 0 }),
    ));
    frames.push(event("messageStop", &json!({ "stopReason": "tool_use" })));
    frames.push(event(
        "metadata",
        &json!({ "usage": usage, "metrics": { "latencyMs": 1 } }),
    ));
    let mut response = Body::from_stream(futures::stream::iter(frames)).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    add_request_id(&mut response, &call.state);
    Some(response)
}

/// Titan Text Embeddings V2's `InvokeModel` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TitanEmbeddingRequest {
    #[serde(rename = "inputText")]
    input_text: String,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    normalize: Option<bool>,
    #[serde(rename = "embeddingTypes", default)]
    embedding_types: Option<Vec<String>>,
}

/// The vector lengths Titan Text Embeddings V2 offers.
pub const TITAN_DIMENSIONS: [usize; 3] = [256, 512, 1024];

/// `InvokeModel` as Titan Text Embeddings V2 answers it: one text in, one vector out.
async fn invoke_model(Path(model_id): Path<String>, call: Call) -> Response {
    if let Some(response) = scripted_error(&call) {
        return response;
    }
    if !model_id.contains("titan-embed-text") {
        return server::rest_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!("the fake serves InvokeModel for Titan text embeddings only, not {model_id}"),
        );
    }
    let request: TitanEmbeddingRequest = match serde_json::from_slice(&call.body) {
        Ok(request) => request,
        Err(err) => return malformed(&err),
    };
    let dimensions = request.dimensions.unwrap_or(1024);
    if !TITAN_DIMENSIONS.contains(&dimensions) {
        return server::rest_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!(
                "Malformed input request: dimensions {dimensions} is not one of [256, 512, 1024]"
            ),
        );
    }
    if request.input_text.trim().is_empty() {
        return server::rest_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "Malformed input request: inputText must not be empty",
        );
    }
    call.scripted_delay().await;
    let mut vector = embed(&request.input_text, dimensions);
    // Titan's unnormalised vectors are longer than one; the fake makes that visible.
    if request.normalize == Some(false) {
        vector.iter_mut().for_each(|v| *v *= 2.0);
    }
    let mut by_type = serde_json::Map::new();
    for kind in request.embedding_types.unwrap_or_default() {
        by_type.insert(kind, json!(vector));
    }
    let mut response = axum::Json(json!({
        "embedding": vector,
        "embeddingsByType": by_type,
        "inputTextTokenCount": reply::words(&request.input_text),
    }))
    .into_response();
    add_request_id(&mut response, &call.state);
    response
}

/// One `:message-type: event` frame.
fn event(event_type: &'static str, payload: &Value) -> Result<Bytes, io::Error> {
    frame(
        vec![
            string_header(":event-type", event_type.to_owned()),
            string_header(":content-type", "application/json".into()),
            string_header(":message-type", "event".into()),
        ],
        payload,
    )
}

fn string_header(name: &'static str, value: String) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// An event-stream frame as the SDKs decode it: prelude, headers, JSON payload, CRCs.
fn frame(headers: Vec<Header>, payload: &Value) -> Result<Bytes, io::Error> {
    let payload = serde_json::to_vec(payload)?;
    let mut buffer = Vec::with_capacity(payload.len() + 128);
    let message = Message::new_from_parts(headers, payload);
    write_message_to(&message, &mut buffer).map_err(io::Error::other)?;
    Ok(Bytes::from(buffer))
}

/// A 400 `ValidationException` saying `message`.
fn invalid(message: &str) -> Response {
    server::rest_json_error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn malformed(err: &serde_json::Error) -> Response {
    server::rest_json_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        &format!("Malformed input request: {err}"),
    )
}

fn scripted_error(call: &Call) -> Option<Response> {
    match &call.script {
        Some(Scripted::Error {
            status,
            kind,
            message,
        }) => Some(server::rest_json_error(
            server::status(*status),
            kind,
            message,
        )),
        _ => None,
    }
}

fn add_request_id(response: &mut Response, state: &Shared) {
    let id = format!("fake-{:032x}", state.next_id());
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
}

/// Unknown paths are still recorded (through `Call`), so tests can see what was asked for.
async fn unknown_route(_call: Call) -> Response {
    server::rest_json_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "The requested operation is not recognized by the fake.",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::image::header_only;
    use aws_smithy_eventstream::frame::read_message_from;

    const MODEL: &str = "us.anthropic.claude-3-opus-20240229-v1:0";
    const ENCODED_MODEL: &str = "us.anthropic.claude-3-opus-20240229-v1%3A0";

    fn converse_body() -> Value {
        json!({
            "system": [{ "text": "Answer briefly." }],
            "messages": [{ "role": "user", "content": [{ "text": "What is a qubit?" }] }],
            "inferenceConfig": { "maxTokens": 512 },
        })
    }

    async fn post(fake: &Fake, operation: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/model/{ENCODED_MODEL}/{operation}", fake.url()))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/...")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// (headers as strings, payload JSON) of every frame in a body.
    fn frames(body: Bytes) -> Vec<(Vec<(String, String)>, Value)> {
        let mut body = body;
        let mut frames = Vec::new();
        while !body.is_empty() {
            let message = read_message_from(&mut body).unwrap();
            let headers = message
                .headers()
                .iter()
                .map(|header| {
                    let value = header.value().as_string().unwrap().as_str().to_owned();
                    (header.name().as_str().to_owned(), value)
                })
                .collect();
            frames.push((headers, serde_json::from_slice(message.payload()).unwrap()));
        }
        frames
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        &headers.iter().find(|(key, _)| key == name).unwrap().1
    }

    #[tokio::test]
    async fn converse_answers_and_records_the_decoded_model() {
        let fake = start().await.unwrap();
        let response = post(&fake, "converse", &converse_body()).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["output"]["message"]["content"][0]["text"],
            format!("ragway fake answer from {MODEL}.")
        );
        assert_eq!(body["output"]["message"]["role"], "assistant");
        assert_eq!(body["stopReason"], "end_turn");
        assert_eq!(
            body["usage"],
            json!({ "inputTokens": 6, "outputTokens": 5, "totalTokens": 11 })
        );
        assert!(body["metrics"]["latencyMs"].is_u64());
        let requests = fake.requests();
        assert_eq!(requests[0].path, format!("/model/{MODEL}/converse"));
        assert_eq!(requests[0].body, converse_body());
    }

    #[tokio::test]
    async fn max_tokens_and_scripted_stop_reason() {
        let fake = start().await.unwrap();
        let mut request = converse_body();
        request["inferenceConfig"]["maxTokens"] = json!(2);
        let body: Value = post(&fake, "converse", &request)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["output"]["message"]["content"][0]["text"],
            "ragway fake"
        );
        assert_eq!(body["stopReason"], "max_tokens");
        fake.push(Scripted::StopReason("some_new_reason".into()));
        let body: Value = post(&fake, "converse", &converse_body())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["stopReason"], "some_new_reason");
    }

    #[tokio::test]
    async fn scripted_error_uses_aws_shape() {
        let fake = start().await.unwrap();
        fake.push(Scripted::Error {
            status: 429,
            kind: "ThrottlingException".into(),
            message: "slow down".into(),
        });
        let response = post(&fake, "converse", &converse_body()).await;
        assert_eq!(response.status(), 429);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ThrottlingException"
        );
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({ "message": "slow down" }));
    }

    #[tokio::test]
    async fn malformed_body_is_a_validation_exception() {
        let fake = start().await.unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/model/m/converse", fake.url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ValidationException"
        );
    }

    #[tokio::test]
    async fn invoke_model_embeds_with_titan_v2() {
        let fake = start().await.unwrap();
        let url = format!("{}/model/amazon.titan-embed-text-v2%3A0/invoke", fake.url());
        let client = reqwest::Client::new();
        let body: Value = client
            .post(&url)
            .json(&json!({ "inputText": "what is a qubit", "dimensions": 256 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let vector: Vec<f32> = serde_json::from_value(body["embedding"].clone()).unwrap();
        assert_eq!(vector, embed("what is a qubit", 256));
        assert_eq!(body["inputTextTokenCount"], 4);
        let response = client
            .post(&url)
            .json(&json!({ "inputText": "x", "dimensions": 300 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ValidationException"
        );
        let response = client
            .post(format!("{}/model/{ENCODED_MODEL}/invoke", fake.url()))
            .json(&json!({ "inputText": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }

    fn image_block(format: &str, bytes: &[u8]) -> Value {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.encode(bytes);
        json!({ "image": { "format": format, "source": { "bytes": bytes } } })
    }

    fn png(width: u16, height: u16) -> Value {
        image_block("png", &header_only(ImageFormat::Png, width, height))
    }

    /// A request of one `role` turn holding a question and `blocks`, answered by a user turn.
    fn with_blocks(role: &str, blocks: Vec<Value>) -> Value {
        let mut content = vec![json!({ "text": "What is this?" })];
        content.extend(blocks);
        let mut messages = vec![json!({ "role": role, "content": content })];
        if role != "user" {
            messages.push(json!({ "role": "user", "content": [{ "text": "And so?" }] }));
        }
        json!({ "messages": messages })
    }

    fn check(body: &Value, model_id: &str) -> Result<(), String> {
        let text = body.to_string();
        let request: ConverseRequest<'_> = serde_json::from_str(&text).unwrap();
        check_images(&request, model_id)
    }

    #[test]
    fn images_pass_for_every_model_that_reads_them() {
        let formats = [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::Webp,
        ];
        let all_formats: Vec<Value> = formats
            .iter()
            .map(|format| image_block(format.name(), &header_only(*format, 8_000, 8_000)))
            .collect();
        for model in [
            MODEL,
            "anthropic.claude-3-haiku-20240307-v1:0",
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "global.anthropic.claude-opus-4-1-20250805-v1:0",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "amazon.nova-lite-v1:0",
            "us.amazon.nova-pro-v1:0",
            "us.amazon.nova-premier-v1:0",
            "global.amazon.nova-2-lite-v1:0",
            "us.meta.llama3-2-11b-instruct-v1:0",
            "us.meta.llama3-2-90b-instruct-v1:0",
            "us.meta.llama4-maverick-17b-instruct-v1:0",
            "us.mistral.pixtral-large-2502-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
        ] {
            assert_eq!(
                check(&with_blocks("user", vec![png(1, 1)]), model),
                Ok(()),
                "{model}"
            );
            let body = with_blocks("user", all_formats.clone());
            assert_eq!(check(&body, model), Ok(()), "{model}");
        }
        let twenty = with_blocks("user", vec![png(4, 4); MAX_IMAGES]);
        assert_eq!(check(&twenty, MODEL), Ok(()));
        let no_images = with_blocks("assistant", Vec::new());
        assert_eq!(check(&no_images, "amazon.titan-text-express-v1"), Ok(()));
    }

    #[test]
    fn images_past_bedrock_rules_are_refused() {
        let jpeg = header_only(ImageFormat::Jpeg, 10, 10);
        let mut too_big = header_only(ImageFormat::Png, 10, 10);
        too_big.resize(MAX_IMAGE_BYTES + 1, 0);
        let png_bytes = header_only(ImageFormat::Png, 10, 10);
        let at = "messages.0.content.1.image";
        let cases = [
            (
                with_blocks("user", vec![image_block("png", &jpeg)]),
                format!("{at}.source.bytes: the bytes are not a png image"),
            ),
            (
                with_blocks(
                    "user",
                    vec![
                        json!({ "image": { "format": "png", "source": { "bytes": "iVBO@@==" } } }),
                    ],
                ),
                format!("{at}.source.bytes: the value is not valid base64"),
            ),
            (
                with_blocks("user", vec![png(4, 4); MAX_IMAGES + 1]),
                "Too many images: the request has 21, at most 20 are allowed.".to_owned(),
            ),
            (
                with_blocks("user", vec![png(8_001, 1)]),
                format!(
                    "{at}.source.bytes: image dimensions exceed max allowed size: 8000 pixels \
                     (8001x1)"
                ),
            ),
            (
                with_blocks(
                    "user",
                    vec![image_block("gif", &header_only(ImageFormat::Gif, 1, 8_001))],
                ),
                "8000 pixels (1x8001)".to_owned(),
            ),
            (
                with_blocks("user", vec![image_block("png", &too_big)]),
                format!(
                    "{at}.source.bytes: image exceeds 3.75 MB maximum: 3750001 bytes > 3750000 \
                     bytes"
                ),
            ),
            (
                with_blocks("user", vec![image_block("png", &png_bytes[..18])]),
                format!("{at}.source.bytes: could not process the png image"),
            ),
            (
                with_blocks("assistant", vec![png(1, 1)]),
                format!("{at}: image blocks are allowed only in user messages, not in assistant"),
            ),
            (
                with_blocks("user", vec![image_block("bmp", b"BM\0\0")]),
                format!(
                    "Value 'bmp' at '{at}.format' failed to satisfy constraint: Member must \
                     satisfy enum value set: [png, jpeg, gif, webp]"
                ),
            ),
            (
                with_blocks(
                    "user",
                    vec![json!({ "image": { "format": "png", "source": {
                        "s3Location": { "uri": "s3://bucket/cat.png" } } } })],
                ),
                format!("{at}.source: the fake takes bytes, got an s3Location"),
            ),
            (
                json!({
                    "system": [{ "text": "Be brief." }, png(1, 1)],
                    "messages": [{ "role": "user", "content": [{ "text": "Hi" }] }],
                }),
                "system: a system prompt takes text blocks, not image blocks".to_owned(),
            ),
        ];
        for (body, expected) in cases {
            let message = check(&body, MODEL).unwrap_err();
            assert!(
                message.contains(&expected),
                "{message}\n  expected: {expected}"
            );
        }
    }

    #[test]
    fn models_that_read_no_images_refuse_them() {
        let body = with_blocks("user", vec![png(1, 1)]);
        for model in [
            "amazon.titan-text-express-v1",
            "amazon.nova-micro-v1:0",
            "us.amazon.nova-micro-v1:0",
            "ai21.jamba-1-5-large-v1:0",
            "cohere.command-r-plus-v1:0",
            "mistral.mistral-large-2407-v1:0",
            "meta.llama3-8b-instruct-v1:0",
            "us.meta.llama3-2-3b-instruct-v1:0",
            "anthropic.claude-v2:1",
            "anthropic.claude-instant-v1",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-lite-v1",
        ] {
            assert_eq!(check(&body, model), Err(NO_IMAGES.to_owned()), "{model}");
        }
    }

    #[tokio::test]
    async fn an_image_is_answered_and_only_the_text_counts_as_tokens() {
        let fake = start().await.unwrap();
        let mut request = with_blocks("user", vec![png(640, 480)]);
        request["system"] = json!([{ "text": "Answer briefly." }]);
        let response = post(&fake, "converse", &request).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        // "Answer briefly." and "What is this?": five words; the image adds none.
        assert_eq!(body["usage"]["inputTokens"], 5);
    }

    #[tokio::test]
    async fn a_refused_image_is_a_validation_exception_on_both_operations() {
        let fake = start().await.unwrap();
        let client = reqwest::Client::new();
        let body = with_blocks("user", vec![png(1, 1)]);
        for operation in ["converse", "converse-stream"] {
            let response = client
                .post(format!(
                    "{}/model/amazon.titan-text-express-v1/{operation}",
                    fake.url()
                ))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{operation}");
            assert_eq!(
                response.headers()["x-amzn-errortype"],
                "ValidationException"
            );
            let error: Value = response.json().await.unwrap();
            assert_eq!(error, json!({ "message": NO_IMAGES }));
        }
        // A scripted tool call does not skip the check.
        fake.push(Scripted::ToolCall {
            name: "lookup".into(),
            arguments: "{}".into(),
        });
        let mut request = with_blocks("assistant", vec![png(1, 1)]);
        request["toolConfig"] = json!({ "tools": [] });
        let response = post(&fake, "converse", &request).await;
        assert_eq!(response.status(), 400);
    }

    #[tokio::test]
    async fn converse_stream_sends_event_frames() {
        let fake = start().await.unwrap();
        let response = post(&fake, "converse-stream", &converse_body()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
        let frames = frames(response.bytes().await.unwrap());
        let types: Vec<&str> = frames
            .iter()
            .map(|(headers, _)| header(headers, ":event-type"))
            .collect();
        assert_eq!(types[0], "messageStart");
        assert_eq!(
            &types[types.len() - 3..],
            ["contentBlockStop", "messageStop", "metadata"]
        );
        assert!(
            frames
                .iter()
                .all(|(headers, _)| header(headers, ":message-type") == "event"
                    && header(headers, ":content-type") == "application/json")
        );
        let text: String = frames
            .iter()
            .filter(|(headers, _)| header(headers, ":event-type") == "contentBlockDelta")
            .map(|(_, payload)| payload["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, format!("ragway fake answer from {MODEL}."));
        assert_eq!(frames[0].1, json!({ "role": "assistant" }));
        assert_eq!(
            frames[frames.len() - 2].1,
            json!({ "stopReason": "end_turn" })
        );
        assert_eq!(frames[frames.len() - 1].1["usage"]["totalTokens"], 11);
        assert_eq!(fake.cancelled(), 0);
    }

    #[tokio::test]
    async fn stream_exception_ends_with_an_exception_frame() {
        let fake = start().await.unwrap();
        fake.push(Scripted::StreamException {
            after_chunks: 2,
            kind: "throttlingException".into(),
            message: "Too many requests".into(),
        });
        let response = post(&fake, "converse-stream", &converse_body()).await;
        let frames = frames(response.bytes().await.unwrap());
        assert_eq!(frames.len(), 4);
        let (headers, payload) = &frames[3];
        assert_eq!(header(headers, ":message-type"), "exception");
        assert_eq!(header(headers, ":exception-type"), "throttlingException");
        assert_eq!(payload, &json!({ "message": "Too many requests" }));
        assert_eq!(fake.cancelled(), 0);
    }

    #[tokio::test]
    async fn a_refused_stream_is_one_exception_frame() {
        let fake = start().await.unwrap();
        fake.push(Scripted::StreamRefused {
            kind: "throttlingException".into(),
            message: "busy".into(),
        });
        let response = post(&fake, "converse-stream", &converse_body()).await;
        assert_eq!(response.status(), 200);
        let frames = frames(response.bytes().await.unwrap());
        assert_eq!(frames.len(), 1, "no messageStart: {frames:?}");
        let (headers, payload) = &frames[0];
        assert_eq!(header(headers, ":message-type"), "exception");
        assert_eq!(header(headers, ":exception-type"), "throttlingException");
        assert_eq!(payload, &json!({ "message": "busy" }));
    }
}
