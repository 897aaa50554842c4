//! `POST /v1/chat/completions`: OpenAI's chat request, read field by field into ragway's terms
//! with OpenAI's field path (`messages.2.content`) in every error. ragway's extensions
//! `vector_search_type` and `top_k` ground the last user message in retrieved passages. Fields
//! OpenAI has that ragway does not use are ignored, as OpenAI ignores fields it does not know.

use ragway_core::config::{NO_RETRIEVAL, RetrievalMode, ServerConfig};
use ragway_core::image::ImagesConfig;
use ragway_core::{ChatRequest, Filter, Message, Role, Tool, ToolCall, ToolChoice};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::RequestError;
use crate::filter::read_filter;
use crate::image;
use crate::limits::check_top_k;
use crate::response_format::read_response_format;
use crate::schemas::{ChatMessage, ChatTool, ChatToolChoice, Stop};

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
    /// ragway's extension: how the store searches, `dense`, `keyword` or `hybrid` (faiss
    /// stores have all three); the store's configured way when absent.
    #[serde(default)]
    retrieval: Option<RetrievalMode>,
    /// ragway's extension: only passages whose metadata passes this filter, as in
    /// `/generate`'s `filter`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// Functions the model may call (OpenAI and Bedrock models).
    #[serde(default)]
    #[schema(value_type = Option<Vec<ChatTool>>)]
    tools: Option<Vec<Value>>,
    /// Needs `tools`, except for "none".
    #[serde(default)]
    #[schema(value_type = Option<ChatToolChoice>)]
    tool_choice: Option<Value>,
    /// The answer's shape: `{"type": "text"}` (the default), `{"type": "json_object"}`, or
    /// `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`. ragway checks
    /// every structured answer against the schema: one that does not follow it is a 502.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    response_format: Option<Value>,
    /// ragway's extension: `false` skips the response cache (no kept answer is given, and
    /// this one is not kept), as `Cache-Control: no-store` does.
    #[serde(default)]
    #[schema(default = true)]
    cache: Option<bool>,
}

#[derive(Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError::bad(param, message)
}

/// One message in ragway's terms, with OpenAI's field path in every error.
fn message(i: usize, value: Value, config: &ImagesConfig) -> Result<Message, RequestError> {
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
    let mut images = Vec::new();
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
                let at = format!("{at}.content.{j}");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text").and_then(Value::as_str) {
                        Some(text) => texts.push(text),
                        None => {
                            return Err(bad(
                                format!("{at}.text"),
                                "a text part needs a \"text\" string",
                            ));
                        }
                    },
                    Some("image_url") if role == Role::User => {
                        images.push(image::image_part(&at, part, config)?);
                    }
                    Some("image_url") => {
                        return Err(bad(
                            format!("{at}.type"),
                            "images are read in user messages only",
                        ));
                    }
                    Some(other) => {
                        return Err(bad(
                            format!("{at}.type"),
                            format!("content parts are \"text\" or \"image_url\", not \"{other}\""),
                        ));
                    }
                    None => return Err(bad(at, "each content part needs a \"type\"")),
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(bad(
                format!("{at}.content"),
                "content must be a string or an array of text and image_url parts",
            ));
        }
    };
    Ok(Message {
        role,
        content,
        images,
        tool_calls,
        tool_call_id,
    })
}

/// One `{"id", "type": "function", "function": {"name", "arguments"}}` of an assistant message.
fn tool_call(at: &str, call: &Value) -> Result<ToolCall, RequestError> {
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
fn tools(tools: Option<Vec<Value>>) -> Result<Vec<Tool>, RequestError> {
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
fn tool_choice(choice: Option<Value>, tools: &[Tool]) -> Result<Option<ToolChoice>, RequestError> {
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

fn stop_sequences(stop: Option<Value>) -> Result<Vec<String>, RequestError> {
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
/// checked (messages, tools, limits). Whether the model exists, and whether it can answer
/// several choices, is the server's to say.
pub fn read(body: &[u8], server: &ServerConfig) -> Result<Checked, RequestError> {
    crate::json::parse::<CompletionRequest>(body)?.check(server)
}

/// A checked request: what to ask, how many choices, how to stream.
#[derive(Clone, Debug)]
pub struct Checked {
    pub conversation: Conversation,
    /// Between 1 and 10; more than 1 only without `stream`.
    pub choices: u32,
    pub stream: bool,
    /// A last chunk with the usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Retrieval was asked for, so `sources` are part of the answer.
    pub grounded: bool,
    /// The response cache may be used (the `cache` extension, on unless false).
    pub cache: bool,
}

/// A whole conversation for a named model, optionally grounded by a named store.
#[derive(Clone, Debug)]
pub struct Conversation {
    pub llm_name: String,
    pub vector_search_type: String,
    pub top_k: Option<usize>,
    /// How the store searches, when the request chose.
    pub retrieval: Option<RetrievalMode>,
    /// Only passages whose metadata passes this.
    pub filter: Filter,
    pub request: ChatRequest,
}

impl CompletionRequest {
    /// Every field checked against the server's limits; the first problem is the error.
    pub fn check(self, server: &ServerConfig) -> Result<Checked, RequestError> {
        let request = self;
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
            .map(|(i, m)| message(i, m, &server.images))
            .collect::<Result<Vec<_>, _>>()?;
        let limits = &server.limits;
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
        if let Some(error) = check_top_k(request.top_k, server.max_top_k) {
            return Err(bad("top_k", error.msg));
        }
        let filter = read_filter(request.filter.as_ref()).map_err(|e| {
            // FilterError's text starts with the same place: `filter.$or.0.year: ...`.
            let place = ["filter"]
                .into_iter()
                .chain(e.path.iter().map(String::as_str));
            bad(place.collect::<Vec<_>>().join("."), e.to_string())
        })?;
        let response_format =
            read_response_format(request.response_format.as_ref()).map_err(|e| {
                let place = ["response_format"]
                    .into_iter()
                    .chain(e.path.iter().map(String::as_str));
                bad(place.collect::<Vec<_>>().join("."), e.message)
            })?;
        let stream = request.stream.unwrap_or(false);
        let choices = request.n.unwrap_or(1);
        if choices == 0 || choices > MAX_CHOICES {
            return Err(bad("n", format!("n must be between 1 and {MAX_CHOICES}")));
        }
        if choices > 1 && stream {
            return Err(bad(
                "n",
                "n > 1 cannot be streamed; ask with n = 1 or without stream",
            ));
        }
        let vector_search_type = request
            .vector_search_type
            .unwrap_or_else(|| NO_RETRIEVAL.to_owned());
        Ok(Checked {
            grounded: vector_search_type != NO_RETRIEVAL,
            cache: request.cache.unwrap_or(true),
            conversation: Conversation {
                llm_name: request.model,
                vector_search_type,
                top_k: request.top_k,
                retrieval: request.retrieval,
                filter,
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
                    response_format,
                },
            },
            choices,
            stream,
            include_usage: request.stream_options.unwrap_or_default().include_usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(body: Value) -> Result<Checked, RequestError> {
        read(body.to_string().as_bytes(), &ServerConfig::default())
    }

    fn param_of(body: Value) -> (String, String) {
        match read_json(body) {
            Err(RequestError::BadRequest { param, message }) => (param, message),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn a_conversation_reads_into_ragway_terms() {
        let checked = read_json(json!({
            "model": "gpt",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "max_tokens": 5,
            "max_completion_tokens": 7,
            "stop": "END",
            "seed": -1,
            "vector_search_type": "docs",
            "top_k": 3,
            "stream": true,
            "stream_options": {"include_usage": true},
            "logit_bias": {"50256": -100},
        }))
        .expect("a valid request");
        let request = &checked.conversation.request;
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::Tool]
        );
        assert_eq!(request.messages[1].content, "a\nb");
        assert_eq!(request.messages[2].tool_calls[0].name, "f");
        assert_eq!(request.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(request.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!(request.stop, ["END"]);
        assert_eq!(request.seed, Some(u64::MAX));
        assert_eq!(checked.conversation.top_k, Some(3));
        assert!(checked.grounded && checked.stream && checked.include_usage);
        assert_eq!(checked.choices, 1);
    }

    #[test]
    fn each_problem_names_its_field() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let cases = [
            (json!({"model": "m", "messages": []}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages.0.content.0.image_url.url",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages.0.content.0.type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]}]}),
                "messages.0.content.0.type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages.0.tool_call_id",
            ),
            (
                json!({"model": "m", "messages": user, "max_completion_tokens": 0}),
                "max_completion_tokens",
            ),
            (
                json!({"model": "m", "messages": user, "temperature": 2.5}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": user, "top_p": -0.1}),
                "top_p",
            ),
            (json!({"model": "m", "messages": user, "top_k": 0}), "top_k"),
            (json!({"model": "m", "messages": user, "n": 11}), "n"),
            (
                json!({"model": "m", "messages": user, "n": 2, "stream": true}),
                "n",
            ),
            (
                json!({"model": "m", "messages": user, "stop": ["a", "b", "c", "d", "e"]}),
                "stop",
            ),
            (
                json!({"model": "m", "messages": user, "stop": [1]}),
                "stop.0",
            ),
            (
                json!({"model": "m", "messages": user, "tool_choice": "auto"}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "messages": user, "tools": [{"type": "retrieval"}]}),
                "tools.0.type",
            ),
        ];
        for (body, expected) in cases {
            let (param, message) = param_of(body.clone());
            assert_eq!(param, expected, "{body}: {message}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn prompts_past_the_limit_are_refused() {
        let mut server = ServerConfig::default();
        server.limits.max_prompt_chars = 10;
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "123456"},
            {"role": "user", "content": "78901"},
        ]});
        let Err(RequestError::BadRequest { param, message }) =
            read(body.to_string().as_bytes(), &server)
        else {
            panic!("11 characters passed a limit of 10");
        };
        assert_eq!(param, "messages");
        assert!(message.contains("11 characters"), "{message}");
    }

    #[test]
    fn missing_fields_are_located() {
        let Err(RequestError::Invalid(errors)) =
            read(b"{\"messages\": []}", &ServerConfig::default())
        else {
            panic!("a request without a model passed");
        };
        assert_eq!(errors[0].loc, ["body", "model"]);
    }
}
