//! Embedders, one file per provider, and the factory for `[[embedder]]` entries.

pub mod local;
pub mod openai;

use std::sync::Arc;

use ragway_core::config::EmbedderConfig;
use ragway_core::{BuildError, Embedder};

/// Builds one configured embedder over the shared HTTP client.
pub fn build(
    config: &EmbedderConfig,
    http: reqwest::Client,
) -> Result<Arc<dyn Embedder>, BuildError> {
    Ok(match config {
        EmbedderConfig::Openai(c) => Arc::new(openai::OpenAiEmbedder::new(c, http)?),
        EmbedderConfig::Local(c) => Arc::new(local::LocalEmbedder::new(c)?),
    })
}
