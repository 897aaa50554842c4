//! ragway's retrievers and the factory that builds a configured `[[vector_store]]` entry into
//! an `Arc<dyn Retriever>`.

pub mod embedder;
pub mod kendra;

use std::sync::Arc;

use aws_types::SdkConfig;
use ragway_core::config::VectorStoreConfig;
use ragway_core::{BuildError, Retriever};

/// What stores share, made once at start-up by the registry.
pub struct Shared<'a> {
    /// AWS settings from the standard chain; present when any AWS component is configured.
    pub aws: Option<&'a SdkConfig>,
}

/// Builds one configured store.
pub fn build(
    config: &VectorStoreConfig,
    shared: &Shared<'_>,
) -> Result<Arc<dyn Retriever>, BuildError> {
    Ok(match config {
        VectorStoreConfig::Kendra(c) => {
            let aws = shared.aws.ok_or_else(|| BuildError {
                component: format!("vector_store \"{}\"", c.name),
                message: "AWS settings were not loaded".into(),
            })?;
            Arc::new(kendra::KendraRetriever::new(c, aws)?)
        }
    })
}
