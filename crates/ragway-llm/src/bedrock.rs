//! AWS Bedrock provider through the Converse and ConverseStream APIs, so that one code path
//! serves Claude, Jamba, Llama, Mistral, Nova, Titan and Cohere.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ContentBlockDelta, ContentBlockStart,
    ConversationRole, ConverseOutput, ConverseStreamOutput, ImageBlock,
    ImageFormat as BedrockImageFormat, ImageSource as BedrockImageSource, InferenceConfiguration,
    JsonSchemaDefinition, Message as BedrockMessage, OutputConfig, OutputFormat,
    OutputFormatStructure, OutputFormatType, SpecificToolChoice, StopReason, SystemContentBlock,
    TokenUsage, Tool as BedrockTool, ToolChoice as BedrockToolChoice, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::Blob;
use aws_smithy_types::event_stream::RawMessage;
use aws_types::SdkConfig;
use ragway_aws::{
    ClientSettings, CredentialsCheck, client_config, document_from_json, json_from_document,
    map_sdk_error,
};
use ragway_core::config::{BedrockLlmConfig, secs};
use ragway_core::quiet::QuietTimer;
use ragway_core::{
    BuildError, Capabilities, ChatModel, ChatRequest, ChatResponse, Delta, DeltaStream,
    FinishReason, Image, ImageFormat, ImageLimits, ImageSource, ProviderError, ResponseFormat,
    Role, ToolCall, ToolChoice, Usage,
};

pub const PROVIDER_TYPE: &str = "bedrock";

/// A chat model on AWS Bedrock.
pub struct BedrockChat {
    client: Client,
    model_id: String,
    /// False for families that reject a system prompt; it is then folded into the first
    /// user message.
    system_prompt: bool,
    /// Whether the model answers in a given JSON Schema (Converse's `outputConfig`).
    structured_output: bool,
    /// Whether the model reads image blocks.
    images: bool,
    timeout: Duration,
    provider: String,
    credentials: CredentialsCheck,
}

impl BedrockChat {
    pub fn new(config: &BedrockLlmConfig, shared: &SdkConfig) -> Result<Self, BuildError> {
        let timeout = secs(config.timeout_secs);
        let settings = ClientSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            // ragway retries (and falls back) itself, with the model's `retry` policy; SDK
            // retries underneath would multiply the attempts and hide them from the metrics.
            max_attempts: 1,
            connect_timeout: secs(config.connect_timeout_secs),
            timeout,
        };
        let sdk = client_config(shared, &settings).map_err(|message| BuildError {
            component: format!("llm \"{}\"", config.name),
            message,
        })?;
        Ok(Self {
            client: Client::new(&sdk),
            model_id: config.model_id.clone(),
            system_prompt: config
                .system_prompt
                .unwrap_or_else(|| accepts_system_prompt(&config.model_id)),
            structured_output: config
                .structured_output
                .unwrap_or_else(|| follows_json_schemas(&config.model_id)),
            images: config
                .images
                .unwrap_or_else(|| reads_images(&config.model_id)),
            timeout,
            provider: format!("{PROVIDER_TYPE} model \"{}\"", config.name),
            credentials: CredentialsCheck::new(&sdk),
        })
    }

    /// The conversation in Converse's shape: system apart (or folded in), roles alternating,
    /// tool calls as `toolUse` blocks and tool results as `toolResult` blocks in a user turn.
    fn conversation(
        &self,
        request: &ChatRequest,
    ) -> Result<(Vec<SystemContentBlock>, Vec<BedrockMessage>), ProviderError> {
        let system = request.system_text();
        let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
        for message in &request.messages {
            let (role, blocks) = match message.role {
                Role::System => continue,
                Role::User => {
                    let mut blocks = message
                        .images
                        .iter()
                        .map(|image| self.image_block(image))
                        .collect::<Result<Vec<_>, _>>()?;
                    blocks.extend(text_block(&message.content));
                    (ConversationRole::User, blocks)
                }
                Role::Assistant => {
                    let mut blocks = text_block(&message.content);
                    for call in &message.tool_calls {
                        blocks.push(self.tool_use(call)?);
                    }
                    (ConversationRole::Assistant, blocks)
                }
                Role::Tool => {
                    let id = message.tool_call_id.clone().unwrap_or_default();
                    let result = ToolResultBlock::builder()
                        .tool_use_id(id)
                        .content(ToolResultContentBlock::Text(message.content.clone()))
                        .build()
                        .map_err(|e| self.unsupported(e))?;
                    (
                        ConversationRole::User,
                        vec![ContentBlock::ToolResult(result)],
                    )
                }
            };
            // Converse wants user and assistant turns to alternate; merge runs of one role,
            // joining adjacent texts.
            match turns.last_mut() {
                Some((last, existing)) if *last == role => {
                    for block in blocks {
                        match (existing.last_mut(), block) {
                            (Some(ContentBlock::Text(text)), ContentBlock::Text(more)) => {
                                text.push_str("\n\n");
                                text.push_str(&more);
                            }
                            (_, block) => existing.push(block),
                        }
                    }
                }
                _ => turns.push((role, blocks)),
            }
        }
        let mut system_blocks = Vec::new();
        if let Some(system) = system {
            if self.system_prompt {
                system_blocks.push(SystemContentBlock::Text(system));
            } else if let Some((_, blocks)) = turns
                .iter_mut()
                .find(|(role, _)| *role == ConversationRole::User)
            {
                match blocks.first_mut() {
                    Some(ContentBlock::Text(first)) => *first = format!("{system}\n\n{first}"),
                    _ => blocks.insert(0, ContentBlock::Text(system)),
                }
            }
        }
        let messages = turns
            .into_iter()
            .filter(|(_, blocks)| !blocks.is_empty())
            .map(|(role, blocks)| {
                BedrockMessage::builder()
                    .role(role)
                    .set_content(Some(blocks))
                    .build()
                    .map_err(|e| self.unsupported(e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if messages.is_empty() {
            return Err(self.unsupported("the conversation has no user message"));
        }
        Ok((system_blocks, messages))
    }

    /// An image as Converse's image block, its bytes inline.
    fn image_block(&self, image: &Image) -> Result<ContentBlock, ProviderError> {
        let ImageSource::Data(data) = &image.source else {
            return Err(self.unsupported("an image was not fetched before the call"));
        };
        let format = match data.format {
            ImageFormat::Png => BedrockImageFormat::Png,
            ImageFormat::Jpeg => BedrockImageFormat::Jpeg,
            ImageFormat::Gif => BedrockImageFormat::Gif,
            ImageFormat::Webp => BedrockImageFormat::Webp,
        };
        let block = ImageBlock::builder()
            .format(format)
            .source(BedrockImageSource::Bytes(Blob::new(data.bytes())))
            .build()
            .map_err(|e| self.unsupported(e))?;
        Ok(ContentBlock::Image(block))
    }

    fn unsupported(&self, error: impl std::fmt::Display) -> ProviderError {
        ProviderError::Unsupported {
            provider: self.provider.clone(),
            message: error.to_string(),
        }
    }

    /// An assistant's tool call as a `toolUse` block; its arguments must be a JSON object.
    fn tool_use(&self, call: &ToolCall) -> Result<ContentBlock, ProviderError> {
        let arguments = if call.arguments.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(&call.arguments).map_err(|e| {
                self.unsupported(format!(
                    "the arguments of tool call \"{}\" are not JSON: {e}",
                    call.id
                ))
            })?
        };
        let block = ToolUseBlock::builder()
            .tool_use_id(&call.id)
            .name(&call.name)
            .input(document_from_json(arguments))
            .build()
            .map_err(|e| self.unsupported(e))?;
        Ok(ContentBlock::ToolUse(block))
    }

    /// `toolConfig` for the request's tools: none when there are no tools, or when the caller
    /// asked for no tool call and the conversation holds no tool blocks (which would need it).
    fn tool_config(
        &self,
        request: &ChatRequest,
        messages: &[BedrockMessage],
    ) -> Result<Option<ToolConfiguration>, ProviderError> {
        let has_tool_blocks = messages
            .iter()
            .flat_map(|m| m.content())
            .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)));
        if request.tools.is_empty()
            || (request.tool_choice == Some(ToolChoice::None) && !has_tool_blocks)
        {
            return Ok(None);
        }
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                ToolSpecification::builder()
                    .name(&tool.name)
                    .set_description(tool.description.clone())
                    .input_schema(ToolInputSchema::Json(document_from_json(
                        tool.parameters.clone(),
                    )))
                    .build()
                    .map(BedrockTool::ToolSpec)
                    .map_err(|e| self.unsupported(e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let choice = match &request.tool_choice {
            None | Some(ToolChoice::Auto | ToolChoice::None) => {
                BedrockToolChoice::Auto(AutoToolChoice::builder().build())
            }
            Some(ToolChoice::Required) => BedrockToolChoice::Any(AnyToolChoice::builder().build()),
            Some(ToolChoice::Named(name)) => BedrockToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(name)
                    .build()
                    .map_err(|e| self.unsupported(e))?,
            ),
        };
        ToolConfiguration::builder()
            .set_tools(Some(tools))
            .tool_choice(choice)
            .build()
            .map(Some)
            .map_err(|e| self.unsupported(e))
    }

    /// The request's `response_format` as Converse's `outputConfig.textFormat`: a JSON Schema
    /// sent as text (`json_object` is the schema of any object).
    fn output_config(&self, request: &ChatRequest) -> Result<Option<OutputConfig>, ProviderError> {
        let Some(format) = &request.response_format else {
            return Ok(None);
        };
        let (name, description) = match format {
            ResponseFormat::JsonObject => ("json_object", None),
            ResponseFormat::JsonSchema {
                name, description, ..
            } => (name.as_str(), description.clone()),
        };
        let definition = JsonSchemaDefinition::builder()
            .schema(format.schema().to_string())
            .name(name)
            .set_description(description)
            .build()
            .map_err(|e| self.unsupported(e))?;
        let text_format = OutputFormat::builder()
            .r#type(OutputFormatType::JsonSchema)
            .structure(OutputFormatStructure::JsonSchema(definition))
            .build()
            .map_err(|e| self.unsupported(e))?;
        Ok(Some(
            OutputConfig::builder().text_format(text_format).build(),
        ))
    }

    fn inference_config(request: &ChatRequest) -> InferenceConfiguration {
        InferenceConfiguration::builder()
            .set_max_tokens(
                request
                    .max_tokens
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            )
            .set_temperature(request.temperature)
            .set_top_p(request.top_p)
            .set_stop_sequences((!request.stop.is_empty()).then(|| request.stop.clone()))
            .build()
    }
}

#[async_trait]
impl ChatModel for BedrockChat {
    /// Tools through Converse; several choices as calls of their own; JSON Schemas for the
    /// models Bedrock offers structured outputs on. Converse takes no seed.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            choices: true,
            structured_output: self.structured_output,
            images: self.images.then_some(IMAGE_LIMITS),
            ..Capabilities::default()
        }
    }

    async fn generate(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let (system, messages) = self.conversation(&request)?;
        let tool_config = self.tool_config(&request, &messages)?;
        let output_config = self.output_config(&request)?;
        let output = self
            .client
            .converse()
            .model_id(&self.model_id)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
            .set_tool_config(tool_config)
            .set_output_config(output_config)
            .inference_config(Self::inference_config(&request))
            .send()
            .await
            .map_err(|e| map_sdk_error(&self.provider, e, self.timeout))?;
        let (text, tool_calls) = match output.output() {
            Some(ConverseOutput::Message(message)) => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for block in message.content() {
                    match block {
                        ContentBlock::Text(piece) => text.push_str(piece),
                        ContentBlock::ToolUse(call) => calls.push(ToolCall {
                            id: call.tool_use_id().to_owned(),
                            name: call.name().to_owned(),
                            arguments: json_from_document(call.input()).to_string(),
                        }),
                        _ => {}
                    }
                }
                (text, calls)
            }
            _ => {
                return Err(ProviderError::invalid_response(
                    &self.provider,
                    "the answer holds no message",
                ));
            }
        };
        Ok(ChatResponse {
            text,
            tool_calls,
            usage: output.usage().map(usage).unwrap_or_default(),
            finish_reason: finish_reason(output.stop_reason()),
        })
    }

    async fn stream(&self, request: ChatRequest) -> Result<DeltaStream, ProviderError> {
        let (system, messages) = self.conversation(&request)?;
        let tool_config = self.tool_config(&request, &messages)?;
        let output_config = self.output_config(&request)?;
        let output = self
            .client
            .converse_stream()
            .model_id(&self.model_id)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
            .set_tool_config(tool_config)
            .set_output_config(output_config)
            .inference_config(Self::inference_config(&request))
            .send()
            .await
            .map_err(|e| map_sdk_error(&self.provider, e, self.timeout))?;
        let mut events = output.stream;
        let provider = self.provider.clone();
        let timeout = self.timeout;
        Ok(Box::pin(async_stream::stream! {
            let mut quiet = QuietTimer::new(timeout, None);
            let mut finished = false;
            // Content block index -> tool call number, in the order the calls started.
            let mut tool_blocks: Vec<i32> = Vec::new();
            loop {
                // The SDK's operation timeout ends with the response headers; after them, each
                // event must come within `timeout_secs`, so a stalled stream cannot hang.
                let Ok(next) = quiet.within(events.recv()).await else {
                    yield Err(ProviderError::Timeout { provider: provider.clone(), after: timeout });
                    return;
                };
                match next {
                    Ok(Some(ConverseStreamOutput::MessageStart(_))) => yield Ok(Delta::Started),
                    Ok(Some(ConverseStreamOutput::ContentBlockStart(event))) => {
                        if let Some(ContentBlockStart::ToolUse(start)) = event.start {
                            tool_blocks.push(event.content_block_index);
                            yield Ok(Delta::ToolCall {
                                index: tool_blocks.len() - 1,
                                id: Some(start.tool_use_id),
                                name: Some(start.name),
                                arguments: String::new(),
                            });
                        }
                    }
                    Ok(Some(ConverseStreamOutput::ContentBlockDelta(event))) => match event.delta {
                        Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                            yield Ok(Delta::Text(text));
                        }
                        Some(ContentBlockDelta::ToolUse(piece)) => {
                            let index = tool_blocks
                                .iter()
                                .position(|b| *b == event.content_block_index)
                                .unwrap_or(tool_blocks.len().saturating_sub(1));
                            yield Ok(Delta::ToolCall { index, id: None, name: None, arguments: piece.input });
                        }
                        _ => {}
                    },
                    Ok(Some(ConverseStreamOutput::MessageStop(event))) => {
                        finished = true;
                        yield Ok(Delta::Finish(finish_reason(&event.stop_reason)));
                    }
                    Ok(Some(ConverseStreamOutput::Metadata(event))) => {
                        if let Some(tokens) = &event.usage {
                            yield Ok(Delta::Usage(usage(tokens)));
                        }
                    }
                    // Start and stop markers of blocks, and event kinds added later, carry no text.
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        if !finished {
                            yield Err(ProviderError::unreachable(&provider, "stream ended before the answer was complete"));
                        }
                        return;
                    }
                    // An exception inside the stream (after HTTP 200), e.g. throttlingException.
                    Err(error) => {
                        yield Err(stream_error(&provider, error, timeout));
                        return;
                    }
                }
            }
        }))
    }

    /// Bedrock answers once its credentials resolve.
    async fn ready(&self) -> Result<(), String> {
        self.credentials.check().await
    }
}

/// A text block, or none for empty text (Converse rejects empty text blocks).
fn text_block(text: &str) -> Vec<ContentBlock> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![ContentBlock::Text(text.to_owned())]
    }
}

/// Exceptions inside a ConverseStream arrive without an error code in their metadata, so
/// they are named from their type; throttling stays throttling.
fn stream_error(
    provider: &str,
    error: SdkError<ConverseStreamOutputError, RawMessage>,
    timeout: Duration,
) -> ProviderError {
    let Some(service) = error.as_service_error() else {
        return map_sdk_error(provider, error, timeout);
    };
    let kind = match service {
        ConverseStreamOutputError::ThrottlingException(_) => "throttlingException",
        ConverseStreamOutputError::ServiceUnavailableException(_) => "serviceUnavailableException",
        ConverseStreamOutputError::InternalServerException(_) => "internalServerException",
        ConverseStreamOutputError::ModelStreamErrorException(_) => "modelStreamErrorException",
        ConverseStreamOutputError::ValidationException(_) => "validationException",
        _ => service.code().unwrap_or("unknownException"),
    };
    let message = format!(
        "{kind} in the stream: {}",
        service.message().unwrap_or("no message")
    );
    // The statuses AWS gives these exceptions outside a stream, so that they are classified
    // alike; a model stream error has none, which counts as the provider failing mid-answer
    // (AWS: "retry your request").
    let status = match service {
        ConverseStreamOutputError::ThrottlingException(_) => {
            return ProviderError::Throttled {
                provider: provider.to_owned(),
                message,
                retry_after: None,
            };
        }
        ConverseStreamOutputError::ServiceUnavailableException(_) => Some(503),
        ConverseStreamOutputError::InternalServerException(_) => Some(500),
        ConverseStreamOutputError::ValidationException(_) => Some(400),
        _ => None,
    };
    ProviderError::upstream(provider, status, message)
}

/// Whether Bedrock offers structured outputs (a JSON Schema in `outputConfig`) on the model:
/// Claude from Haiku 4.5, Sonnet 4.5 and Opus 4.5 on, and the open-weight families AWS lists
/// (Qwen, DeepSeek, Mistral, Gemma, Nemotron, MiniMax, Kimi, gpt-oss). Others refuse it, so
/// ragway answers a 400 naming the model before calling.
fn follows_json_schemas(model_id: &str) -> bool {
    let id = model_id.to_ascii_lowercase();
    // Cross-region profiles put a geography first: `us.anthropic.…`, `global.anthropic.…`.
    let id = id
        .split_once("anthropic.")
        .map_or(id.as_str(), |(_, rest)| rest);
    const CLAUDE: [&str; 5] = [
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "claude-opus-4-5",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
    ];
    const OPEN_WEIGHT: [&str; 8] = [
        "qwen.",
        "deepseek.",
        "mistral.",
        "google.gemma",
        "nvidia.",
        "minimax.",
        "moonshot",
        "openai.gpt-oss",
    ];
    CLAUDE.iter().any(|family| id.starts_with(family))
        || OPEN_WEIGHT.iter().any(|family| id.contains(family))
}

/// What Converse takes in images (AWS's `Message.content`): 20 in one request, each at most
/// 3.75 MB and 8,000 pixels a side.
const IMAGE_LIMITS: ImageLimits = ImageLimits {
    max_images: 20,
    max_bytes: 3_750_000,
    max_side: 8_000,
};

/// Whether the model reads images: Claude 3 and later, Nova Lite, Pro and Premier, Llama 3.2
/// 11B and 90B, Llama 4, and Pixtral. Others refuse image blocks, so ragway answers a 400
/// naming the model before calling.
fn reads_images(model_id: &str) -> bool {
    let id = model_id.to_ascii_lowercase();
    let claude = id.contains("anthropic.claude-")
        && !id.contains("claude-v2")
        && !id.contains("claude-instant")
        && !id.contains("claude-2");
    let nova = ["nova-lite", "nova-pro", "nova-premier", "nova-2-lite"]
        .iter()
        .any(|family| id.contains(family));
    let llama = ["llama3-2-11b", "llama3-2-90b", "llama4-"]
        .iter()
        .any(|family| id.contains(family));
    claude || nova || llama || id.contains("pixtral")
}

/// Titan text models and the Mistral Instruct models reject a system prompt in Converse.
fn accepts_system_prompt(model_id: &str) -> bool {
    let id = model_id.to_ascii_lowercase();
    let titan = id.contains("amazon.titan-text") || id.contains("amazon.titan-tg1");
    let mistral_instruct = id.contains("mistral.") && id.contains("instruct");
    !(titan || mistral_instruct)
}

fn usage(tokens: &TokenUsage) -> Usage {
    Usage {
        input_tokens: u32::try_from(tokens.input_tokens()).unwrap_or(0),
        output_tokens: u32::try_from(tokens.output_tokens()).unwrap_or(0),
    }
}

/// Maps Bedrock's stop reasons; values this SDK does not know keep their spelling.
fn finish_reason(reason: &StopReason) -> FinishReason {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => FinishReason::Stop,
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => {
            FinishReason::ContentFilter
        }
        StopReason::ToolUse => FinishReason::ToolCalls,
        other => FinishReason::Other(other.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_outputs_are_offered_on_the_families_bedrock_lists() {
        for id in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "global.anthropic.claude-opus-4-5-20251101-v1:0",
            "qwen.qwen3-32b-v1:0",
            "openai.gpt-oss-120b-1:0",
        ] {
            assert!(follows_json_schemas(id), "{id}");
        }
        for id in [
            "us.anthropic.claude-3-opus-20240229-v1:0",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "amazon.titan-text-express-v1",
            "meta.llama3-70b-instruct-v1:0",
        ] {
            assert!(!follows_json_schemas(id), "{id}");
        }
    }

    #[test]
    fn images_are_read_by_the_vision_families() {
        for id in [
            "us.anthropic.claude-3-opus-20240229-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.amazon.nova-pro-v1:0",
            "amazon.nova-lite-v1:0",
            "us.meta.llama3-2-90b-instruct-v1:0",
            "us.meta.llama4-maverick-17b-instruct-v1:0",
            "us.mistral.pixtral-large-2502-v1:0",
        ] {
            assert!(reads_images(id), "{id}");
        }
        for id in [
            "anthropic.claude-v2:1",
            "anthropic.claude-instant-v1",
            "amazon.nova-micro-v1:0",
            "amazon.titan-text-express-v1",
            "meta.llama3-70b-instruct-v1:0",
            "us.meta.llama3-2-3b-instruct-v1:0",
            "mistral.mistral-large-2402-v1:0",
            "ai21.jamba-1-5-large-v1:0",
            "cohere.command-r-plus-v1:0",
        ] {
            assert!(!reads_images(id), "{id}");
        }
    }

    use ragway_core::Message;

    #[test]
    fn families_that_reject_system_prompts_are_known() {
        assert!(!accepts_system_prompt("amazon.titan-text-express-v1"));
        assert!(!accepts_system_prompt("amazon.titan-text-premier-v1:0"));
        assert!(!accepts_system_prompt("mistral.mistral-7b-instruct-v0:2"));
        assert!(!accepts_system_prompt("mistral.mixtral-8x7b-instruct-v0:1"));
        assert!(accepts_system_prompt("mistral.mistral-large-2402-v1:0"));
        assert!(accepts_system_prompt(
            "us.anthropic.claude-3-opus-20240229-v1:0"
        ));
        assert!(accepts_system_prompt("ai21.jamba-1-5-large-v1:0"));
        assert!(accepts_system_prompt("amazon.nova-pro-v1:0"));
        assert!(accepts_system_prompt("cohere.command-r-plus-v1:0"));
        assert!(accepts_system_prompt("meta.llama3-70b-instruct-v1:0"));
    }

    #[test]
    fn unknown_stop_reasons_are_kept_not_panicked_on() {
        assert_eq!(
            finish_reason(&StopReason::from("some_new_reason")),
            FinishReason::Other("some_new_reason".into())
        );
        assert_eq!(
            finish_reason(&StopReason::from("max_tokens")),
            FinishReason::Length
        );
    }

    fn model(model_id: &str) -> BedrockChat {
        let config: BedrockLlmConfig = toml::from_str(&format!(
            "name = 'm'\nmodel_id = '{model_id}'\nregion = 'us-east-1'"
        ))
        .unwrap();
        BedrockChat::new(&config, &SdkConfig::builder().build()).unwrap()
    }

    #[test]
    fn system_prompts_are_folded_in_for_titan_and_runs_of_one_role_merged() {
        let request = ChatRequest {
            messages: vec![
                Message::system("Be brief."),
                Message::user("a"),
                Message::user("b"),
            ],
            ..Default::default()
        };
        let (system, messages) = model("amazon.titan-text-express-v1")
            .conversation(&request)
            .unwrap();
        assert!(system.is_empty());
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].content(),
            &[ContentBlock::Text("Be brief.\n\na\n\nb".into())]
        );

        let (system, messages) = model("anthropic.claude-3-haiku-20240307-v1:0")
            .conversation(&request)
            .unwrap();
        assert_eq!(system, vec![SystemContentBlock::Text("Be brief.".into())]);
        assert_eq!(
            messages[0].content(),
            &[ContentBlock::Text("a\n\nb".into())]
        );
    }
}
