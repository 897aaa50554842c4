//! The response cache: whole answers kept for the models whose `[[llm]]` table has `cache = {
//! ttl_secs }`, and found again by exact match. The key is every input that changes an answer:
//! the model, the messages as the model gets them (after retrieval and prompt assembly, so a
//! changed passage misses), the sampling parameters, the tools and the response format, and the
//! number of choices. Entries live in Redis when `[server.state] redis_url` is set (shared by
//! every replica, expiring by Redis' own TTL), else in this process within `[server.cache]
//! max_bytes` (least recently used first out).
//!
//! A hit costs the caller no tokens (nothing was called); its usage is reported as the model
//! first reported it. A request skips the cache with `"cache": false` or `Cache-Control:
//! no-store` (neither read nor written), or refreshes it with `Cache-Control: no-cache` (not read,
//! written). Streams use the cache only when the model's `cache.streams` says so: a hit is
//! replayed as one piece of text, and a miss is kept once it ends well.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::CACHE_CONTROL;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use ragway_core::config::ServerConfig;
use ragway_core::{ChatRequest, Delta, DeltaStream, FinishReason, ImageSource, ToolCall, Usage};
use ragway_engine::{Answer, Answered, Choice, Piece, Prepared};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Gateway;
use crate::rate_limit::redis_store::RedisStore;

/// A streamed answer's pieces, as the routes render them.
pub type Pieces = BoxStream<'static, Piece>;

/// Where entries are kept.
pub enum AnswerCache {
    Memory(moka::sync::Cache<[u8; 32], Arc<Entry>>),
    Redis(Arc<RedisStore>),
}

/// What a request lets the cache do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use {
    pub read: bool,
    pub write: bool,
}

impl Use {
    /// From the body's `cache` field and the `Cache-Control` header.
    pub fn of(body_allows: bool, headers: &HeaderMap) -> Self {
        let directives: Vec<String> = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|directive| directive.trim().to_ascii_lowercase())
            .collect();
        let has = |name: &str| directives.iter().any(|d| d == name);
        let store = body_allows && !has("no-store");
        Self {
            read: store && !has("no-cache"),
            write: store,
        }
    }
}

/// What the cache did for one answer: the `x-ragway-cache` header's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

/// One kept answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The model that answered (a fallback, perhaps) and the one asked for then.
    model: String,
    fallback_from: Option<String>,
    choices: Vec<KeptChoice>,
    /// Seconds it is kept for (memory entries expire by it).
    ttl_secs: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct KeptChoice {
    text: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: String,
    input_tokens: u32,
    output_tokens: u32,
}

impl Entry {
    pub fn of_answer(answer: &Answer, ttl_secs: u64) -> Self {
        Self {
            model: answer.answered.model.clone(),
            fallback_from: answer.answered.fallback_from.clone(),
            choices: answer
                .choices
                .iter()
                .map(|choice| KeptChoice {
                    text: choice.text.clone(),
                    tool_calls: choice.tool_calls.clone(),
                    finish_reason: choice.finish_reason.as_str().to_owned(),
                    input_tokens: choice.usage.input_tokens,
                    output_tokens: choice.usage.output_tokens,
                })
                .collect(),
            ttl_secs,
        }
    }

    pub fn answered(&self) -> Answered {
        Answered {
            model: self.model.clone(),
            fallback_from: self.fallback_from.clone(),
        }
    }

    /// The kept answer to `prepared`: its choices and usage as first reported, the passages
    /// retrieved now (the same, or the key would differ), no generation time.
    pub fn answer(&self, prepared: Prepared) -> Answer {
        let choices: Vec<Choice> = self
            .choices
            .iter()
            .map(|kept| Choice {
                text: kept.text.clone(),
                tool_calls: kept.tool_calls.clone(),
                finish_reason: finish_reason(&kept.finish_reason),
                usage: Usage {
                    input_tokens: kept.input_tokens,
                    output_tokens: kept.output_tokens,
                },
            })
            .collect();
        let usage = Usage {
            input_tokens: choices.first().map_or(0, |c| c.usage.input_tokens),
            output_tokens: choices.iter().map(|c| c.usage.output_tokens).sum(),
        };
        Answer {
            timings: prepared.timings(Instant::now()),
            sources: prepared.sources,
            answered: self.answered(),
            choices,
            usage,
        }
    }

    /// The kept answer as a model's stream: the text in one piece, the tool calls, the finish
    /// and the usage.
    pub fn deltas(&self) -> DeltaStream {
        let Some(choice) = self.choices.first() else {
            return Box::pin(futures::stream::empty());
        };
        let mut deltas = vec![Ok(Delta::Started)];
        if !choice.text.is_empty() {
            deltas.push(Ok(Delta::Text(choice.text.clone())));
        }
        deltas.extend(choice.tool_calls.iter().enumerate().map(|(index, call)| {
            Ok(Delta::ToolCall {
                index,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.clone(),
            })
        }));
        deltas.push(Ok(Delta::Finish(finish_reason(&choice.finish_reason))));
        deltas.push(Ok(Delta::Usage(Usage {
            input_tokens: choice.input_tokens,
            output_tokens: choice.output_tokens,
        })));
        Box::pin(futures::stream::iter(deltas))
    }

    /// Bytes it holds, about: what the memory bound counts.
    fn weight(&self) -> u32 {
        let bytes: usize = self
            .choices
            .iter()
            .map(|c| {
                c.text.len()
                    + c.tool_calls
                        .iter()
                        .map(|t| t.id.len() + t.name.len() + t.arguments.len())
                        .sum::<usize>()
                    + 64
            })
            .sum::<usize>()
            + self.model.len()
            + 128;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

fn finish_reason(text: &str) -> FinishReason {
    match text {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" => FinishReason::ToolCalls,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Memory entries expire after their own `ttl_secs`.
struct PerEntryTtl;

impl moka::Expiry<[u8; 32], Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(entry.ttl_secs))
    }
}

impl AnswerCache {
    /// In Redis when the limits are counted there (`redis`), else in memory.
    pub fn build(server: &ServerConfig, redis: Option<Arc<RedisStore>>) -> Self {
        match redis {
            Some(store) => Self::Redis(store),
            None => Self::Memory(
                moka::sync::Cache::builder()
                    .max_capacity(server.cache.max_bytes)
                    .weigher(|_key, entry: &Arc<Entry>| entry.weight())
                    .expire_after(PerEntryTtl)
                    .build(),
            ),
        }
    }

    /// The entry under `key`, if any. A Redis that cannot be reached, or an entry that cannot
    /// be read, is a miss (logged): the cache saves calls, it never fails a request.
    pub async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        match self {
            Self::Memory(cache) => cache.get(&key.0),
            Self::Redis(store) => match store.get_bytes(&key.redis(store)).await {
                Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                    Ok(entry) => Some(Arc::new(entry)),
                    Err(error) => {
                        tracing::warn!(%error, "a cached answer in Redis cannot be read; asking the model");
                        None
                    }
                },
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%error, "the answer cache in Redis cannot be read; asking the model");
                    None
                }
            },
        }
    }

    /// Keeps `entry` under `key` for its `ttl_secs`: at once in memory, or by a task of its
    /// own in Redis (the answer does not wait for it).
    pub fn keep(gateway: &Arc<Gateway>, key: Key, entry: Entry) {
        match &gateway.cache {
            Self::Memory(cache) => cache.insert(key.0, Arc::new(entry)),
            Self::Redis(_) => {
                let gateway = gateway.clone();
                tokio::spawn(async move { gateway.cache.put(&key, entry).await });
            }
        }
    }

    async fn put(&self, key: &Key, entry: Entry) {
        match self {
            Self::Memory(cache) => cache.insert(key.0, Arc::new(entry)),
            Self::Redis(store) => {
                let ttl = entry.ttl_secs;
                let Ok(bytes) = serde_json::to_vec(&entry) else {
                    return;
                };
                if let Err(error) = store.set_bytes(&key.redis(store), &bytes, ttl).await {
                    tracing::warn!(%error, "an answer could not be kept in the Redis cache");
                }
            }
        }
    }
}

/// The SHA-256 of everything that changes an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of answering `request` with `model_id` (as the `[[llm]]` table names and
    /// configures it) in `choices` choices.
    pub fn of(llm_name: &str, model_id: &str, request: &ChatRequest, choices: u32) -> Self {
        let mut hash = Fields(Sha256::new());
        hash.text("ragway answer cache v1");
        hash.text(llm_name);
        hash.text(model_id);
        hash.number(u64::from(choices));
        hash.number(request.messages.len() as u64);
        for message in &request.messages {
            hash.text(&format!("{:?}", message.role));
            hash.text(&message.content);
            hash.number(message.images.len() as u64);
            for image in &message.images {
                match &image.source {
                    ImageSource::Data(data) => hash.text_bytes(data.bytes()),
                    ImageSource::Url(url) => hash.text(url),
                }
                hash.optional(image.detail.as_deref());
            }
            hash.number(message.tool_calls.len() as u64);
            for call in &message.tool_calls {
                hash.text(&call.id);
                hash.text(&call.name);
                hash.text(&call.arguments);
            }
            hash.optional(message.tool_call_id.as_deref());
        }
        hash.optional(request.max_tokens.map(|n| n.to_string()).as_deref());
        hash.optional(
            request
                .temperature
                .map(|t| t.to_bits().to_string())
                .as_deref(),
        );
        hash.optional(request.top_p.map(|p| p.to_bits().to_string()).as_deref());
        hash.number(request.stop.len() as u64);
        for stop in &request.stop {
            hash.text(stop);
        }
        hash.optional(request.seed.map(|s| s.to_string()).as_deref());
        hash.number(request.tools.len() as u64);
        for tool in &request.tools {
            hash.text(&tool.name);
            hash.optional(tool.description.as_deref());
            hash.text(&tool.parameters.to_string());
        }
        hash.optional(
            request
                .tool_choice
                .as_ref()
                .map(|c| format!("{c:?}"))
                .as_deref(),
        );
        hash.optional(
            request
                .response_format
                .as_ref()
                .map(|f| f.to_openai().to_string())
                .as_deref(),
        );
        Self(hash.0.finalize().into())
    }

    fn redis(&self, store: &RedisStore) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        store.cache_key(&hex)
    }
}

/// Feeds a hash with values that cannot run into each other: each with its length first.
struct Fields(Sha256);

impl Fields {
    fn text_bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
    fn text(&mut self, text: &str) {
        self.text_bytes(text.as_bytes());
    }
    fn number(&mut self, number: u64) {
        self.0.update(number.to_le_bytes());
    }
    fn optional(&mut self, value: Option<&str>) {
        match value {
            Some(value) => {
                self.0.update([1]);
                self.text(value);
            }
            None => self.0.update([0]),
        }
    }
}

/// `pieces` as they are, recorded; when they end in a summary (not a failure, and a structured
/// answer that followed its schema), the answer is kept under `key`.
pub fn record(
    pieces: Pieces,
    gateway: Arc<Gateway>,
    key: Key,
    ttl_secs: u64,
    answered: Answered,
) -> Pieces {
    let mut kept = KeptChoice::default();
    Box::pin(pieces.inspect(move |piece| match piece {
        Piece::Text(text) => kept.text.push_str(text),
        Piece::ToolCall {
            index,
            id,
            name,
            arguments,
        } => {
            let calls = &mut kept.tool_calls;
            if calls.len() <= *index {
                calls.resize_with(index + 1, || ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            let call = &mut calls[*index];
            if let Some(id) = id {
                call.id.clone_from(id);
            }
            if let Some(name) = name {
                call.name.clone_from(name);
            }
            call.arguments.push_str(arguments);
        }
        Piece::Failed(_) => {}
        Piece::Done(summary) => {
            let choice = KeptChoice {
                finish_reason: summary.finish_reason.as_str().to_owned(),
                input_tokens: summary.usage.input_tokens,
                output_tokens: summary.usage.output_tokens,
                ..std::mem::take(&mut kept)
            };
            let entry = Entry {
                model: answered.model.clone(),
                fallback_from: answered.fallback_from.clone(),
                choices: vec![choice],
                ttl_secs,
            };
            AnswerCache::keep(&gateway, key, entry);
        }
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use ragway_core::{
        Image, ImageData, Message, ResponseFormat, Role, Tool, ToolChoice as Choose,
    };

    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![
                Message::system("Answer from the context."),
                Message::user("Context: [1] Caches keep answers.\n\nQuestion: what is a cache?"),
            ],
            max_tokens: Some(50),
            ..ChatRequest::default()
        }
    }

    fn key(request: &ChatRequest) -> Key {
        Key::of("gpt", "gpt-4o", request, 1)
    }

    #[test]
    fn every_input_that_changes_the_answer_changes_the_key() {
        let base = key(&request());
        assert_eq!(base, key(&request()), "the key is not stable");
        let png = |side: u32| {
            let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
            bytes.extend(side.to_be_bytes());
            bytes.extend(side.to_be_bytes());
            bytes.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
            Image {
                source: ImageSource::Data(ImageData::read(bytes).unwrap()),
                detail: None,
            }
        };
        type Change = Box<dyn Fn(&mut ChatRequest)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "a passage",
                Box::new(|r| r.messages[1].content = r.messages[1].content.replace("keep", "hold")),
            ),
            (
                "the system prompt",
                Box::new(|r| r.messages[0].content.push('!')),
            ),
            ("a role", Box::new(|r| r.messages[0].role = Role::User)),
            (
                "an image",
                Box::new(move |r| r.messages[1].images.push(png(2))),
            ),
            ("max_tokens", Box::new(|r| r.max_tokens = Some(51))),
            ("temperature", Box::new(|r| r.temperature = Some(0.5))),
            ("top_p", Box::new(|r| r.top_p = Some(0.9))),
            ("stop", Box::new(|r| r.stop = vec!["END".into()])),
            ("seed", Box::new(|r| r.seed = Some(7))),
            (
                "tools",
                Box::new(|r| {
                    r.tools = vec![Tool {
                        name: "f".into(),
                        description: None,
                        parameters: serde_json::json!({}),
                    }]
                }),
            ),
            (
                "tool_choice",
                Box::new(|r| r.tool_choice = Some(Choose::Required)),
            ),
            (
                "response_format",
                Box::new(|r| r.response_format = Some(ResponseFormat::JsonObject)),
            ),
            // Text that would run into the next field if fields were joined without lengths.
            (
                "where one message ends",
                Box::new(|r| {
                    r.messages[0].content.push_str("Context");
                    r.messages[1].content = r.messages[1].content.replacen("Context", "", 1);
                }),
            ),
        ];
        for (what, change) in changes {
            let mut changed = request();
            change(&mut changed);
            assert_ne!(key(&changed), base, "{what} did not change the key");
        }
        let one_image = |side| {
            let mut r = request();
            r.messages[1].images.push(png(side));
            key(&r)
        };
        assert_ne!(
            one_image(2),
            one_image(3),
            "the image's bytes did not count"
        );
        assert_ne!(
            Key::of("gpt", "gpt-4o-mini", &request(), 1),
            base,
            "model id"
        );
        assert_ne!(
            Key::of("other", "gpt-4o", &request(), 1),
            base,
            "model name"
        );
        assert_ne!(Key::of("gpt", "gpt-4o", &request(), 2), base, "choices");
    }

    #[test]
    fn a_request_reads_and_writes_unless_it_says_otherwise() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
            headers
        };
        let none = HeaderMap::new();
        let both = Use {
            read: true,
            write: true,
        };
        let neither = Use {
            read: false,
            write: false,
        };
        assert_eq!(Use::of(true, &none), both);
        assert_eq!(Use::of(false, &none), neither);
        assert_eq!(Use::of(true, &with("No-Store")), neither);
        assert_eq!(
            Use::of(true, &with("max-age=0, no-cache")),
            Use {
                read: false,
                write: true
            }
        );
        assert_eq!(Use::of(true, &with("max-age=60")), both);
    }
}
