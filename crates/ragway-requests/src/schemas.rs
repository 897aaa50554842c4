//! The documented shapes of the parts of OpenAI's chat request that [`crate::chat`] reads field
//! by field (as JSON values, so each error can name its place), for the OpenAPI document.

use serde::Serialize;
use utoipa::ToSchema;

/// Who wrote a chat message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// One message of `messages`. `content` is required except on assistant messages that call
/// tools; `tool_call_id` is required on tool messages.
#[derive(Serialize, ToSchema)]
pub struct ChatMessage {
    pub role: ChatRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// On assistant messages: the tool calls it made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallObject>>,
    /// On tool messages: the call this message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A string, or parts: text (joined by newlines) and, in user messages, images; other part
/// types are refused.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ContentPart {
    Text(TextPart),
    Image(ImagePart),
}

/// An image for models that read them: PNG, JPEG, GIF or WebP.
#[derive(Serialize, ToSchema)]
pub struct ImagePart {
    #[serde(rename = "type")]
    pub kind: ImagePartType,
    pub image_url: ImageUrl,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImagePartType {
    ImageUrl,
}

#[derive(Serialize, ToSchema)]
pub struct ImageUrl {
    /// A data URL (`data:image/png;base64,…`), or an `https` address when `[server.images]
    /// fetch_hosts` lists its host.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// Passed on to OpenAI models.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    Auto,
    Low,
    High,
}

#[derive(Serialize, ToSchema)]
pub struct TextPart {
    #[serde(rename = "type")]
    pub kind: TextPartType,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPartType {
    Text,
}

/// The one tool type there is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionType {
    Function,
}

/// A tool call, in an assistant message or an answer.
#[derive(Serialize, ToSchema)]
pub struct ToolCallObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionCall,
}

#[derive(Serialize, ToSchema)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// A function the model may call.
#[derive(Serialize, ToSchema)]
pub struct ChatTool {
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionDefinition,
}

#[derive(Serialize, ToSchema)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of the arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
}

/// `auto`, `none`, `required`, or one named function among `tools`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ChatToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    Auto,
    None,
    Required,
}

#[derive(Serialize, ToSchema)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionName,
}

#[derive(Serialize, ToSchema)]
pub struct FunctionName {
    pub name: String,
}

/// One stop sequence or up to four.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}
