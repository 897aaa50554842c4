//! ragway's chat model providers, one file each with the same shape, and the factory that
//! builds a configured `[[llm]]` entry into an `Arc<dyn ChatModel>`; `sse` reads the
//! server-sent events of OpenAI-compatible streams.

pub mod bedrock;
pub mod local;
pub mod openai;
mod sse;

use std::sync::Arc;

use aws_types::SdkConfig;
use ragway_core::config::LlmConfig;
use ragway_core::{BuildError, ChatModel};

/// What providers share, made once at start-up by the registry.
pub struct Shared<'a> {
    /// The pooled HTTP client for OpenAI-compatible endpoints with this component's connect
    /// timeout.
    pub http: reqwest::Client,
    /// AWS settings from the standard chain; present when any AWS component is configured.
    pub aws: Option<&'a SdkConfig>,
}

/// Builds one configured chat model.
pub fn build(config: &LlmConfig, shared: &Shared<'_>) -> Result<Arc<dyn ChatModel>, BuildError> {
    Ok(match config {
        LlmConfig::Openai(c) => Arc::new(openai::OpenAiChat::new(c, shared.http.clone())?),
        LlmConfig::Bedrock(c) => {
            let aws = shared.aws.ok_or_else(|| BuildError {
                component: format!("llm \"{}\"", c.name),
                message: "AWS settings were not loaded".into(),
            })?;
            Arc::new(bedrock::BedrockChat::new(c, aws)?)
        }
        LlmConfig::Local(c) => Arc::new(local::LocalChat::new(c)?),
    })
}
