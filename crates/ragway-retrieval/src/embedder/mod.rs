//! Embedders, one file per provider, and the factory for `[[embedder]]` entries.

pub mod bedrock;
pub(crate) mod bert;
pub mod local;
pub mod openai;

use std::sync::Arc;

use aws_types::SdkConfig;
use ragway_core::config::EmbedderConfig;
use ragway_core::{BuildError, Embedder, ProviderError};

use crate::error::{Error, Result};

/// What embedders share, made once at start-up.
pub struct Shared<'a> {
    /// The pooled HTTP client for OpenAI-compatible endpoints with this embedder's connect
    /// timeout.
    pub http: reqwest::Client,
    /// AWS settings from the standard chain; present when any AWS component is configured.
    pub aws: Option<&'a SdkConfig>,
}

/// Builds one configured embedder.
pub fn build(
    config: &EmbedderConfig,
    shared: &Shared<'_>,
) -> Result<Arc<dyn Embedder>, BuildError> {
    Ok(match config {
        EmbedderConfig::Openai(c) => Arc::new(openai::OpenAiEmbedder::new(c, shared.http.clone())?),
        EmbedderConfig::Bedrock(c) => {
            let Some(aws) = shared.aws else {
                return Err(BuildError {
                    component: format!("embedder \"{}\"", c.name),
                    message: "AWS settings were not loaded for a Bedrock embedder".to_owned(),
                });
            };
            Arc::new(bedrock::BedrockEmbedder::new(c, aws)?)
        }
        EmbedderConfig::Local(c) => Arc::new(local::LocalEmbedder::new(c)?),
    })
}

/// Embeds `texts` with the store's embedder `name` and checks its answer before anything is
/// stored or searched with it: one vector per text, each of the store's `dimension`.
pub(crate) async fn embed_checked(
    embedder: &dyn Embedder,
    name: &str,
    dimension: usize,
    texts: &[String],
) -> Result<Vec<Vec<f32>>> {
    let vectors = embedder.embed(texts).await?;
    if vectors.len() != texts.len() {
        return Err(Error::Embed(ProviderError::invalid_response(
            &format!("embedder \"{name}\""),
            format!("{} vectors for {} texts", vectors.len(), texts.len()),
        )));
    }
    if let Some(bad) = vectors.iter().find(|v| v.len() != dimension) {
        return Err(Error::Dimension {
            what: format!("embedder \"{name}\" output"),
            expected: dimension,
            found: bad.len(),
        });
    }
    Ok(vectors)
}
