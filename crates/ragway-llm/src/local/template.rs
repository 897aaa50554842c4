//! Chat templating: the model's or the configured template, checked at start-up, and a
//! conversation turned into the prompt's tokens.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use ragway_core::config::LocalLlmConfig;
use ragway_core::{Message, Role};

/// The configured built-in template, else the GGUF's own; either must be one that llama.cpp
/// can apply, which is checked here rather than on the first request.
pub(super) fn chat_template(
    model: &LlamaModel,
    config: &LocalLlmConfig,
) -> Result<LlamaChatTemplate, String> {
    let (template, origin) = match &config.chat_template {
        Some(name) => (
            LlamaChatTemplate::new(name).map_err(|_| "contains a NUL character".to_owned())?,
            format!("\"{name}\""),
        ),
        None => (
            model.chat_template(None).map_err(|_| {
                format!(
                    "the GGUF {} carries no chat template: set chat_template to a llama.cpp \
                     built-in name (\"chatml\", \"llama3\", \"gemma\", \"mistral-v7\", \"phi3\", …) \
                     that matches how the model was trained",
                    config.path.display()
                )
            })?,
            "in the GGUF".to_owned(),
        ),
    };
    let probe = [
        LlamaChatMessage::new("system".into(), "s".into()),
        LlamaChatMessage::new("user".into(), "u".into()),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| e.to_string())?;
    model
        .apply_chat_template(&template, &probe, true)
        .map_err(|e| {
            format!(
                "llama.cpp cannot apply the chat template {origin} ({e}): set chat_template to \
                 one of its built-in names (\"chatml\", \"llama3\", \"gemma\", …)"
            )
        })?;
    Ok(template)
}

/// Why a conversation could not be made into a prompt.
pub(super) enum PromptError {
    Nul,
    Template(String),
}

/// The conversation through the chat template (ending with the assistant's opening), tokenized
/// with the model's BOS and its special tokens parsed.
pub(super) fn prompt_tokens(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[Message],
) -> Result<Vec<LlamaToken>, PromptError> {
    let chat = messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            LlamaChatMessage::new(role.into(), m.content.clone())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PromptError::Nul)?;
    let text = model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| PromptError::Template(format!("cannot apply the chat template: {e}")))?;
    Ok(model.vocab().tokenize(text.as_bytes(), true, true))
}
