//! OpenAI Chat Completions provider: OpenAI itself or any OpenAI-compatible server, answered
//! whole or streamed as server-sent events read as they arrive.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use ragway_core::config::{OpenAiLlmConfig, secs};
use ragway_core::quiet::QuietTimer;
use ragway_core::upstream::MAX_COMPLETION_BYTES;
use ragway_core::{
    BuildError, Capabilities, ChatModel, ChatRequest, ChatResponse, Delta, DeltaStream,
    FinishReason, ImageLimits, ImageSource, Message, ProviderError, Role, ToolCall, ToolChoice,
    Usage,
};
use ragway_openai::{OpenAiServer, error_chain, failure};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sse::{DataEvents, EventTooLarge, MAX_EVENT_BYTES};

pub const PROVIDER_TYPE: &str = "openai";

/// What OpenAI takes in images: 500 in one request, 20 MB each; it scales large ones down
/// itself. A server behind the same API with a model that reads no images answers its own
/// error.
const IMAGE_LIMITS: ImageLimits = ImageLimits {
    max_images: 500,
    max_bytes: 20 * 1024 * 1024,
    max_side: u32::MAX,
};

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiChat {
    http: reqwest::Client,
    /// Parsed once: every request clones it.
    url: reqwest::Url,
    model: String,
    /// `Bearer <key>`, made once and marked sensitive (kept out of debug output).
    authorization: Option<HeaderValue>,
    reasoning: bool,
    /// The name failures carry and the time each call may take.
    server: OpenAiServer,
}

impl OpenAiChat {
    /// Builds the model over a shared, pooled HTTP client, resolving the key now so that a
    /// missing variable stops start-up instead of the first request.
    pub fn new(config: &OpenAiLlmConfig, http: reqwest::Client) -> Result<Self, BuildError> {
        let failed = |field: &str, message: String| BuildError {
            component: format!("llm \"{}\" {field}", config.name),
            message,
        };
        let authorization = match &config.api_key {
            Some(reference) => {
                let key = reference.resolve().map_err(|m| failed("api_key", m))?;
                let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose_secret()))
                    .map_err(|_| {
                        failed(
                            "api_key",
                            "is not valid in an HTTP header (a line break?)".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&url).map_err(|e| {
            failed(
                "base_url",
                format!("\"{}\" is not a URL: {e}", config.base_url),
            )
        })?;
        Ok(Self {
            http,
            url,
            model: config.model.clone(),
            authorization,
            reasoning: config
                .reasoning
                .unwrap_or_else(|| is_reasoning_model(&config.model)),
            server: OpenAiServer::new(
                format!("{PROVIDER_TYPE} model \"{}\"", config.name),
                secs(config.timeout_secs),
            ),
        })
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(wire_message).collect();
        let mut fields = serde_json::Map::new();
        fields.insert("model".into(), json!(self.model));
        fields.insert("messages".into(), Value::Array(messages));
        if let Some(max_tokens) = request.max_tokens {
            let key = if self.reasoning {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            fields.insert(key.into(), json!(max_tokens));
        }
        // Reasoning models refuse sampling parameters.
        if !self.reasoning {
            if let Some(temperature) = request.temperature {
                fields.insert("temperature".into(), json!(temperature));
            }
            if let Some(top_p) = request.top_p {
                fields.insert("top_p".into(), json!(top_p));
            }
        }
        if !request.stop.is_empty() {
            fields.insert("stop".into(), json!(request.stop));
        }
        if let Some(seed) = request.seed {
            fields.insert("seed".into(), json!(seed));
        }
        if let Some(user) = &request.user {
            fields.insert("user".into(), json!(user));
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    let mut function = json!({ "name": tool.name, "parameters": tool.parameters });
                    if let Some(description) = &tool.description {
                        function["description"] = json!(description);
                    }
                    json!({ "type": "function", "function": function })
                })
                .collect();
            fields.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = &request.tool_choice {
            let choice = match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(name) => {
                    json!({ "type": "function", "function": { "name": name } })
                }
            };
            fields.insert("tool_choice".into(), choice);
        }
        if let Some(format) = &request.response_format {
            fields.insert("response_format".into(), format.to_openai());
        }
        if stream {
            fields.insert("stream".into(), json!(true));
            fields.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        Value::Object(fields)
    }

    /// Sends `body`. A whole answer, body included, must come within the timeout; a stream's
    /// response must start within it, then each of its events must (see `stream`), however
    /// long the answer runs.
    async fn send(&self, body: &Value, stream: bool) -> Result<reqwest::Response, ProviderError> {
        let mut builder = self.http.post(self.url.clone()).json(body);
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let timeout = self.server.timeout();
        if !stream {
            return self.server.send(builder.timeout(timeout)).await;
        }
        tokio::time::timeout(timeout, self.server.send(builder))
            .await
            .unwrap_or_else(|_| Err(self.server.timed_out()))
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    /// Everything: requests pass through to the server as they are.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            images: Some(IMAGE_LIMITS),
            structured_output: true,
            seed: true,
            choices: true,
        }
    }

    async fn generate(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self.send(&self.body(&request, false), false).await?;
        let limit = format!("{} MiB", MAX_COMPLETION_BYTES >> 20);
        let body = self
            .server
            .read_body(
                response.bytes_stream(),
                MAX_COMPLETION_BYTES,
                &limit,
                failure,
            )
            .await?;
        let provider = self.server.provider();
        let completion: Completion = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::invalid_response(provider, format!("error decoding the answer: {e}"))
        })?;
        let choice = completion.choices.into_iter().next().ok_or_else(|| {
            ProviderError::invalid_response(provider, "no choices in the completion")
        })?;
        Ok(ChatResponse {
            text: choice.message.content.unwrap_or_default(),
            tool_calls: choice
                .message
                .tool_calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id.unwrap_or_default(),
                    name: call.function.name.unwrap_or_default(),
                    arguments: call.function.arguments.unwrap_or_default(),
                })
                .collect(),
            usage: completion.usage.map(Usage::from).unwrap_or_default(),
            finish_reason: finish_reason(choice.finish_reason.as_deref()),
        })
    }

    async fn stream(&self, request: ChatRequest) -> Result<DeltaStream, ProviderError> {
        let response = self.send(&self.body(&request, true), true).await?;
        let body = Box::pin(response.bytes_stream());
        Ok(Box::pin(ChunkStream::new(
            body,
            self.server.provider(),
            self.server.timeout(),
        )))
    }
}

/// A response body, as it arrives.
type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A streamed answer: the response body's events read as they arrive, each chunk turned into
/// the deltas it holds. Each event must come within the timeout, so a stalled stream cannot
/// hang; the time counts from when the reader starts waiting (time the reader spent elsewhere
/// is not held against the upstream).
struct ChunkStream {
    body: Body,
    events: DataEvents,
    quiet: QuietTimer,
    /// Waiting for the next event since the quiet timer was last noted.
    waiting: bool,
    /// Deltas read and not yet given out (a chunk can hold several).
    ready: VecDeque<Result<Delta, ProviderError>>,
    started: bool,
    finished: bool,
    /// Nothing more is read: the answer is done or failed.
    ended: bool,
    provider: String,
    timeout: Duration,
}

impl ChunkStream {
    fn new(body: Body, provider: &str, timeout: Duration) -> Self {
        Self {
            body,
            events: DataEvents::new(),
            quiet: QuietTimer::new(timeout, None),
            waiting: false,
            ready: VecDeque::new(),
            started: false,
            finished: false,
            ended: false,
            provider: provider.to_owned(),
            timeout,
        }
    }

    /// Ends the stream with `error`.
    fn fail(&mut self, error: ProviderError) {
        self.ready.push_back(Err(error));
        self.ended = true;
    }

    /// Reads one event's data: a chunk, `[DONE]` or an error.
    fn read(&mut self, data: &[u8]) {
        if data.trim_ascii() == b"[DONE]" {
            self.ended = true;
            return;
        }
        // The whole chunk is checked to be UTF-8 once, then read as text: read as bytes,
        // serde_json checks every string (every key) on its own, ~5% of the instructions ragway
        // spent relaying a stream.
        let chunk: Result<Chunk, String> = match std::str::from_utf8(data) {
            Ok(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
            Err(e) => Err(format!("not UTF-8: {e}")),
        };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let error = ProviderError::invalid_response(
                    &self.provider,
                    format!("bad stream chunk: {e}"),
                );
                return self.fail(error);
            }
        };
        if let Some(error) = chunk.error {
            return self.fail(ProviderError::upstream(&self.provider, None, error.message));
        }
        if !self.started {
            self.started = true;
            self.ready.push_back(Ok(Delta::Started));
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.ready.push_back(Ok(Delta::Text(text)));
            }
            for call in delta.tool_calls {
                self.ready.push_back(Ok(Delta::ToolCall {
                    index: call.index,
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments.unwrap_or_default(),
                }));
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                self.ready
                    .push_back(Ok(Delta::Finish(finish_reason(Some(&reason)))));
            }
        }
        if let Some(usage) = chunk.usage {
            self.ready.push_back(Ok(Delta::Usage(usage.into())));
        }
    }
}

impl Stream for ChunkStream {
    type Item = Result<Delta, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(delta) = this.ready.pop_front() {
                return Poll::Ready(Some(delta));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.events.next_data() {
                Ok(Some(data)) => {
                    this.waiting = false;
                    this.read(&data);
                    continue;
                }
                Ok(None) => {}
                Err(EventTooLarge) => {
                    let message = format!("a stream event passed {MAX_EVENT_BYTES} bytes");
                    this.fail(ProviderError::invalid_response(&this.provider, message));
                    continue;
                }
            }
            match this.body.as_mut().poll_next(cx) {
                // Bytes that end no event (a piece of one, a comment) do not hold the timer off.
                Poll::Ready(Some(Ok(bytes))) => this.events.push(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("stream broke off: {}", error_chain(&e));
                    this.fail(ProviderError::unreachable(&this.provider, message));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    if !this.finished {
                        let message = "stream ended before the answer was complete";
                        this.ready
                            .push_back(Err(ProviderError::unreachable(&this.provider, message)));
                    }
                }
                Poll::Pending => {
                    if !this.waiting {
                        this.waiting = true;
                        this.quiet.event();
                    }
                    ready!(this.quiet.poll_quiet(cx));
                    let error = ProviderError::Timeout {
                        provider: this.provider.clone(),
                        after: this.timeout,
                    };
                    this.fail(error);
                }
            }
        }
    }
}

/// Tool calls in Chat Completions' shape (`[{"id", "type": "function", "function": {...}}]`),
/// as an assistant message carries them both to OpenAI and in ragway's own `/v1` answers.
pub fn tool_calls_json(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|call| {
            json!({
                "id": call.id,
                "type": "function",
                "function": { "name": call.name, "arguments": call.arguments },
            })
        })
        .collect()
}

/// One message in Chat Completions' shape, tool calls and tool results included.
fn wire_message(message: &Message) -> Value {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut wire = json!({ "role": role, "content": message.content });
    if !message.images.is_empty() {
        wire["content"] = content_parts(message);
    }
    if !message.tool_calls.is_empty() {
        wire["tool_calls"] = tool_calls_json(&message.tool_calls);
        if message.content.is_empty() {
            wire["content"] = Value::Null;
        }
    }
    if let Some(id) = &message.tool_call_id {
        wire["tool_call_id"] = json!(id);
    }
    wire
}

/// A user message with images as content parts: the images as data URLs (ragway fetched any
/// given by address), then the text.
fn content_parts(message: &Message) -> Value {
    use base64::Engine as _;
    let mut parts: Vec<Value> = message
        .images
        .iter()
        .map(|image| {
            let url = match &image.source {
                ImageSource::Data(data) => format!(
                    "data:{};base64,{}",
                    data.format.media_type(),
                    base64::engine::general_purpose::STANDARD.encode(data.bytes())
                ),
                ImageSource::Url(url) => url.clone(),
            };
            let mut image_url = json!({ "url": url });
            if let Some(detail) = &image.detail {
                image_url["detail"] = json!(detail);
            }
            json!({ "type": "image_url", "image_url": image_url })
        })
        .collect();
    if !message.content.is_empty() {
        parts.push(json!({ "type": "text", "text": message.content }));
    }
    Value::Array(parts)
}

/// o1, o3, o4-mini, gpt-5 and their dated variants take `max_completion_tokens` and no
/// sampling parameters.
fn is_reasoning_model(model: &str) -> bool {
    let model = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|family| model == *family || model.starts_with(&format!("{family}-")))
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

/// A tool call, whole (in a completion) or a piece of one (in a chunk).
#[derive(Default, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: usize,
    id: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Default, Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Self {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use ragway_core::Message;

    /// Everything a stream over `pieces` of body gives, then the body stalls (if `stall`).
    async fn deltas(
        pieces: &[&[u8]],
        stall: bool,
        timeout: Duration,
    ) -> Vec<Result<Delta, ProviderError>> {
        let pieces: Vec<reqwest::Result<Bytes>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let body = futures::stream::iter(pieces);
        let body: Body = if stall {
            Box::pin(body.chain(futures::stream::pending()))
        } else {
            Box::pin(body)
        };
        ChunkStream::new(body, "openai", timeout).collect().await
    }

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\r\n\r\n"
        )
    }

    #[tokio::test]
    async fn a_stream_split_anywhere_gives_its_text_finish_and_usage_and_ends_at_done() {
        let body = [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n".to_owned(),
            ": a comment\r\n\r\n".to_owned(),
            chunk("Hel"),
            chunk("lo"),
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\r\n\r\n".to_owned(),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\r\n\r\n".to_owned(),
            "data: [DONE]\r\n\r\n".to_owned(),
            chunk("after the end"),
        ]
        .concat();
        let body = body.as_bytes();
        for at in [1, 7, 60, 61, body.len() / 2, body.len() - 3] {
            let got = deltas(&[&body[..at], &body[at..]], false, Duration::from_secs(5)).await;
            let got: Vec<String> = got.iter().map(|d| format!("{d:?}")).collect();
            assert_eq!(
                got,
                [
                    "Ok(Started)",
                    "Ok(Text(\"Hel\"))",
                    "Ok(Text(\"lo\"))",
                    "Ok(Finish(Length))",
                    "Ok(Usage(Usage { input_tokens: 3, output_tokens: 2 }))",
                ],
                "split at {at}"
            );
        }
    }

    #[tokio::test]
    async fn a_stream_cut_before_its_finish_ends_with_an_error() {
        let got = deltas(&[chunk("Hel").as_bytes()], false, Duration::from_secs(5)).await;
        assert!(
            matches!(got[..], [Ok(Delta::Started), Ok(Delta::Text(_)), Err(_)]),
            "{got:?}"
        );
        let error = format!("{:?}", got[2]);
        assert!(
            error.contains("ended before the answer was complete"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_stalled_stream_times_out_and_a_bad_chunk_or_an_endless_line_ends_it() {
        let got = deltas(&[chunk("Hel").as_bytes()], true, Duration::from_millis(200)).await;
        assert!(
            matches!(
                got[..],
                [
                    Ok(Delta::Started),
                    Ok(Delta::Text(_)),
                    Err(ProviderError::Timeout { .. })
                ]
            ),
            "{got:?}"
        );
        let got = deltas(&[b"data: {not json\n\n"], false, Duration::from_secs(5)).await;
        assert!(format!("{got:?}").contains("bad stream chunk"), "{got:?}");
        let not_utf8 = b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}\n\n";
        let got = deltas(&[not_utf8], false, Duration::from_secs(5)).await;
        assert!(
            format!("{got:?}").contains("bad stream chunk: not UTF-8"),
            "{got:?}"
        );
        let endless = vec![b'x'; crate::sse::MAX_EVENT_BYTES + 1];
        let got = deltas(&[b"data: ", &endless], true, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1);
        assert!(
            format!("{got:?}").contains("a stream event passed"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn comments_alone_do_not_keep_a_stream_from_timing_out() {
        // A first chunk, then only keep-alive comments, more often than the timeout.
        let trickle = async_stream::stream! {
            yield Ok(Bytes::from(chunk("Hel")));
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                yield Ok(Bytes::from_static(b": ping\n\n"));
            }
        };
        let stream = ChunkStream::new(Box::pin(trickle), "openai", Duration::from_millis(200));
        let got = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream should have timed out by itself");
        assert!(
            matches!(got.last(), Some(Err(ProviderError::Timeout { .. }))),
            "{got:?}"
        );
    }

    fn model(name: &str) -> OpenAiChat {
        let config: OpenAiLlmConfig =
            toml::from_str(&format!("name = 'x'\nmodel = '{name}'")).unwrap();
        OpenAiChat::new(&config, reqwest::Client::new()).unwrap()
    }

    #[test]
    fn a_base_url_that_is_not_a_url_stops_the_build() {
        let config: OpenAiLlmConfig =
            toml::from_str("name = 'x'\nmodel = 'm'\nbase_url = 'not a url'").unwrap();
        let Err(error) = OpenAiChat::new(&config, reqwest::Client::new()) else {
            panic!("built over a base_url that is not a URL");
        };
        assert_eq!(error.component, "llm \"x\" base_url");
        assert!(
            error.message.contains("\"not a url\" is not a URL"),
            "{}",
            error.message
        );
    }

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![Message::system("s"), Message::user("u")],
            max_tokens: Some(50),
            temperature: Some(0.2),
            top_p: None,
            stop: vec!["END".into()],
            seed: Some(7),
            user: Some("u-1".into()),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn reasoning_models_are_detected() {
        for name in [
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "o4-mini-2025-04-16",
            "gpt-5",
            "gpt-5-mini",
        ] {
            assert!(is_reasoning_model(name), "{name}");
        }
        for name in ["gpt-4o", "gpt-4o-mini", "llama-3", "ollama-o3x"] {
            assert!(!is_reasoning_model(name), "{name}");
        }
    }

    #[test]
    fn chat_models_get_max_tokens_and_temperature() {
        let body = model("gpt-4o").body(&request(), false);
        assert_eq!(body["max_tokens"], 50);
        assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["seed"], 7);
        assert_eq!(body["user"], "u-1");
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
        let body = model("o4-mini").body(&request(), true);
        assert_eq!(body["max_completion_tokens"], 50);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("temperature").is_none());
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
