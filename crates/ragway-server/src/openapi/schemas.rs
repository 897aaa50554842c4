//! The wire shapes of ragway's answers and errors, as the handlers build them, for the OpenAPI
//! document. Request bodies are described by the handlers' own request types; these are the
//! responses, the parts of OpenAI's chat format the handlers read field by field, and the
//! error bodies of [`crate::error`].

use ragway_core::{Passage, Usage};
use serde::Serialize;
use utoipa::ToSchema;

use ragway_engine::ComponentCheck;
use ragway_engine::pipeline::Timings;
use ragway_requests::FieldError;

// ---------------------------------------------------------------------------------------------
// Errors

/// An error on ragway's own routes, in FastAPI's shape: one sentence.
#[derive(Serialize, ToSchema)]
pub struct ErrorMessage {
    /// What went wrong; for an unknown model or store, the valid names too.
    pub detail: String,
}

/// A malformed body on ragway's own routes (422), in FastAPI's shape: every problem found,
/// each with where it is.
#[derive(Serialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldError>,
}

/// An error on the OpenAI-compatible routes, in OpenAI's shape.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorObject,
}

#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorObject {
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `timeout_error`, `api_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, as a dotted path (`messages.2.content`).
    pub param: Option<String>,
    /// `model_not_found`, `store_not_found`, `unknown_url`, `rate_limit_exceeded`,
    /// `upstream_timeout`, `upstream_error`, or null.
    pub code: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Service routes

/// `GET /`: the welcome message.
#[derive(Serialize, ToSchema)]
pub struct Welcome {
    /// Always "Welcome to LLM Inference API".
    pub message: String,
    pub service: String,
    pub version: String,
    /// Where to go next.
    pub endpoints: Vec<String>,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always "ok".
    pub status: String,
}

/// `GET /readyz` while ragway takes requests.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always "ready".
    pub status: String,
    /// The configured names; absent when API keys are configured (this probe is public).
    pub llm_models: Option<Vec<String>>,
    pub vector_dbs: Option<Vec<String>>,
    pub embedders: Option<Vec<String>>,
    /// Every component's answer; with API keys, only the components that are not well, by
    /// kind, name and status (the reasons go to the log).
    pub checks: Vec<ComponentCheck>,
}

/// `GET /readyz` when ragway should get no traffic.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// "shutting_down" or "not_ready".
    pub status: String,
    /// Why: shutdown, or each failing component and what is wrong (with API keys, which
    /// components only: the reasons go to the log).
    pub detail: String,
    /// Every component's answer (not while shutting down; with API keys, as in `Ready`).
    pub checks: Option<Vec<ComponentCheck>>,
}

/// `GET /models`: the names requests may use.
#[derive(Serialize, ToSchema)]
pub struct ModelNames {
    /// Values for `llm_name`.
    pub llm_models: Vec<String>,
    /// Values for `vector_search_type` (besides "none").
    pub vector_dbs: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Generation and retrieval

/// `POST /generate`: the answer with its sources.
#[derive(Serialize, ToSchema)]
pub struct GenerateResponse {
    /// The model's answer.
    pub response: String,
    pub llm_name: String,
    pub vector_search_type: String,
    /// The passages given to the model as context (empty for "none").
    pub sources: Vec<Passage>,
    pub usage: Usage,
    /// `stop`, `length`, `content_filter`, `tool_calls`, or the provider's own reason.
    pub finish_reason: String,
    pub timings_ms: Timings,
}

/// One server-sent event of a streamed `/generate`: its name and its JSON data.
#[derive(Serialize, ToSchema)]
pub struct GenerateEvent {
    pub event: GenerateEventName,
    /// JSON: `GenerateSourcesEvent`, `GenerateDeltaEvent`, `GenerateDoneEvent` or
    /// `GenerateErrorEvent`, by `event`.
    pub data: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GenerateEventName {
    Sources,
    Delta,
    Done,
    Error,
}

/// One server-sent event of a streamed `/v1/chat/completions`: a `ChatCompletionChunk` as JSON,
/// an `{"error": ...}` object, or `[DONE]`.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionEvent {
    pub data: String,
}

/// Data of the `sources` event of a streamed `/generate` (always the first event).
#[derive(Serialize, ToSchema)]
pub struct GenerateSourcesEvent {
    pub sources: Vec<Passage>,
}

/// Data of a `delta` event of a streamed `/generate`: the next piece of the answer.
#[derive(Serialize, ToSchema)]
pub struct GenerateDeltaEvent {
    pub text: String,
}

/// Data of the `done` event that ends a streamed `/generate`.
#[derive(Serialize, ToSchema)]
pub struct GenerateDoneEvent {
    pub llm_name: String,
    pub vector_search_type: String,
    pub usage: Usage,
    pub finish_reason: String,
    pub timings_ms: Timings,
}

/// Data of the `error` event that ends a streamed `/generate` whose model failed midway.
#[derive(Serialize, ToSchema)]
pub struct GenerateErrorEvent {
    /// The status the same failure would have had before the first byte.
    pub status: u16,
    pub detail: String,
}

/// `POST /search`: the passages a store returns for a query.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub vector_search_type: String,
    pub passages: Vec<Passage>,
    pub timings_ms: RetrievalTimings,
}

#[derive(Serialize, ToSchema)]
pub struct RetrievalTimings {
    pub retrieval: f64,
}

// ---------------------------------------------------------------------------------------------
// Stores

/// `GET /stores`.
#[derive(Serialize, ToSchema)]
pub struct StoreList {
    pub stores: Vec<StoreEntry>,
}

/// One store; the sizes are given for writable stores only.
#[derive(Serialize, ToSchema)]
pub struct StoreEntry {
    pub name: String,
    /// `faiss`, `pgvector`, `kendra`
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether documents can be added and removed through the API.
    pub writable: bool,
    /// Whether this API key may add and remove them: the store is writable and in the key's
    /// `write_stores` (always, with auth off).
    pub may_write: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
    /// Why the sizes are missing: the store cannot be read now (its database is down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `DELETE /stores/{name}/documents/{id}`.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// The id of the document removed.
    pub deleted: String,
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible routes: request parts

pub use ragway_requests::schemas::{
    ChatMessage, ChatRole, ChatTool, ChatToolChoice, FunctionCall, FunctionDefinition,
    FunctionName, FunctionType, MessageContent, NamedToolChoice, Stop, TextPart, TextPartType,
    ToolCallObject, ToolChoiceMode,
};

/// One text or a list of texts (token arrays are not supported).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible routes: answers

/// `POST /v1/chat/completions` without `stream`: a `chat.completion` object.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always "chat.completion".
    pub object: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: CompletionUsage,
    pub system_fingerprint: Option<String>,
    /// ragway's extension: the retrieved passages, when `vector_search_type` asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Passage>>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    pub finish_reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct AssistantMessage {
    pub role: ChatRole,
    /// Null when the model only called tools.
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallObject>>,
}

#[derive(Serialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// One event of a streamed `/v1/chat/completions`: a `chat.completion.chunk` object.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always "chat.completion.chunk".
    pub object: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: Option<String>,
    pub choices: Vec<ChunkChoice>,
    /// With `stream_options.include_usage`: null on every chunk but the last, whose `choices`
    /// is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
    /// On the first chunk, when `vector_search_type` asked for retrieval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Passage>>,
}

#[derive(Serialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: ChunkDelta,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    pub finish_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChunkDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<ChatRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
}

/// `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always "list".
    pub object: String,
    /// Chat models first, then embedding models.
    pub data: Vec<ModelObject>,
}

/// One model: `owned_by` is `ragway:<provider>` for chat models, `ragway:embedder` for
/// embedding models.
#[derive(Serialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    /// Always "model".
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

/// `POST /v1/embeddings`.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always "list".
    pub object: String,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingObject {
    /// Always "embedding".
    pub object: String,
    pub index: usize,
    pub embedding: EmbeddingVector,
}

/// Floats, or with `encoding_format: "base64"` their little-endian f32 bytes in base64.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}
