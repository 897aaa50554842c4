//! Plain data exchanged between the server, the chat models and the retrievers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who wrote a chat message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    #[default]
    User,
    Assistant,
    /// The result of a tool call, sent back to the model.
    Tool,
}

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Images of a user message, in the order given; models see them before the text.
    pub images: Vec<crate::image::Image>,
    /// The tools an assistant message asked to call.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            ..Self::default()
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// The result of the call `id`.
    pub fn tool(id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A function the model may call, described by a JSON Schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// Whether and which tool the model must call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// Some tool call.
    Required,
    /// This tool.
    Named(String),
}

/// A call the model asked for: the tool's name and its arguments as JSON text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object, as text (providers stream it in pieces).
    pub arguments: String,
}

/// A provider-neutral chat request: the conversation plus sampling options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Vec<String>,
    /// For repeatable sampling, where the provider supports it (OpenAI, the local model).
    pub seed: Option<u64>,
    /// The end user, passed to providers that track abuse by user (OpenAI).
    pub user: Option<String>,
    /// Functions the model may call; empty means none.
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// The shape the answer must take (`response_format`); free text when `None`.
    pub response_format: Option<ResponseFormat>,
}

/// The shape a structured answer takes: JSON, as OpenAI's `response_format` asks for it.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object (`{"type": "json_object"}`).
    JsonObject,
    /// JSON that follows a JSON Schema (`{"type": "json_schema", "json_schema": {...}}`).
    JsonSchema {
        /// The schema's name: letters, digits, `_` and `-`, at most 64.
        name: String,
        description: Option<String>,
        /// A JSON Schema, checked to be an object.
        schema: serde_json::Value,
        /// OpenAI's strict mode, passed on to models that know it.
        strict: bool,
    },
}

impl ResponseFormat {
    /// The schema the answer follows: `json_object`'s is any object.
    pub fn schema(&self) -> serde_json::Value {
        match self {
            Self::JsonObject => serde_json::json!({ "type": "object" }),
            Self::JsonSchema { schema, .. } => schema.clone(),
        }
    }

    /// OpenAI's wire form.
    pub fn to_openai(&self) -> serde_json::Value {
        match self {
            Self::JsonObject => serde_json::json!({ "type": "json_object" }),
            Self::JsonSchema {
                name,
                description,
                schema,
                strict,
            } => {
                let mut json_schema =
                    serde_json::json!({ "name": name, "schema": schema, "strict": strict });
                if let Some(description) = description {
                    json_schema["description"] = serde_json::json!(description);
                }
                serde_json::json!({ "type": "json_schema", "json_schema": json_schema })
            }
        }
    }
}

impl ChatRequest {
    /// The system messages joined, if any; providers that take the system prompt apart use it.
    pub fn system_text(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}

/// Token counts as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// Why the model stopped. Values a provider adds later land in `Other`, never in a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    ToolCalls,
    Other(String),
}

impl FinishReason {
    /// The OpenAI spelling, used on the wire by ragway's own API.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
            Self::ToolCalls => "tool_calls",
            Self::Other(other) => other,
        }
    }
}

/// A complete (non-streamed) answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    /// Tools the model asked to call (then `finish_reason` is `ToolCalls`).
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: FinishReason,
}

/// One event of a streamed answer. Text arrives in pieces; the finish reason and the usage
/// arrive once each, in whichever order the provider sends them.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    /// The model began its answer (OpenAI's first chunk, Bedrock's `messageStart`): nothing to
    /// show yet, but the stream is live, so ragway answers its own client from here. The local
    /// model, in the same process, starts with its first words instead.
    Started,
    Text(String),
    /// A piece of the `index`-th tool call: its id and name come first (once), its arguments
    /// in pieces that concatenate to the JSON text.
    ToolCall {
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish(FinishReason),
    Usage(Usage),
}

/// A retrieved piece of a document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Passage {
    pub id: String,
    pub text: String,
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A document handed to a writable store: whole text, split into chunks by the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    /// Stable identity; adding a document with an existing id replaces it.
    pub id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// What identifies the source's bytes, when the source says (an S3 object's ETag): then a
    /// store judges "unchanged" by it instead of by the text, so that an ingest can skip the
    /// document before downloading it. Set by ingest sources only, never over HTTP.
    #[serde(skip)]
    pub version: Option<String>,
}

/// What one `add` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestReport {
    /// New documents.
    pub added: usize,
    /// Documents whose text changed: their old chunks were replaced.
    pub replaced: usize,
    /// Documents whose content hash matched: nothing was written.
    pub unchanged: usize,
    /// Chunks written.
    pub chunks: usize,
}

/// The size of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreStats {
    pub documents: usize,
    pub chunks: usize,
    pub dimension: usize,
}
