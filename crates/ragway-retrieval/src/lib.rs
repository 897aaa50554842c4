//! ragway's retrievers and the factory that builds a configured `[[vector_store]]` entry into
//! an `Arc<dyn Retriever>` (and, for writable stores, an `Arc<dyn DocumentStore>`).

pub mod embedder;
pub mod error;
pub mod faiss;
pub mod ingest;
pub mod kendra;

pub use error::{Error, Result};

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_types::SdkConfig;
use ragway_core::config::VectorStoreConfig;
use ragway_core::{BuildError, DocumentStore, Embedder, Retriever};

/// What stores share, made once at start-up by the registry.
pub struct Shared<'a> {
    /// AWS settings from the standard chain; present when any AWS component is configured.
    pub aws: Option<&'a SdkConfig>,
    /// The built embedders, by name.
    pub embedders: &'a BTreeMap<String, Arc<dyn Embedder>>,
}

/// A built store: every store searches; writable ones also take documents.
pub struct BuiltStore {
    pub retriever: Arc<dyn Retriever>,
    pub documents: Option<Arc<dyn DocumentStore>>,
}

/// Builds one configured store.
pub fn build(config: &VectorStoreConfig, shared: &Shared<'_>) -> Result<BuiltStore, BuildError> {
    let component = || format!("vector_store \"{}\"", config.name());
    Ok(match config {
        VectorStoreConfig::Kendra(c) => {
            let aws = shared.aws.ok_or_else(|| BuildError {
                component: component(),
                message: "AWS settings were not loaded".into(),
            })?;
            BuiltStore {
                retriever: Arc::new(kendra::KendraRetriever::new(c, aws)?),
                documents: None,
            }
        }
        VectorStoreConfig::Faiss(c) => {
            let embedder = shared
                .embedders
                .get(&c.embedder)
                .ok_or_else(|| BuildError {
                    component: component(),
                    message: format!("no embedder named \"{}\" was built", c.embedder),
                })?;
            let store = faiss::FaissStore::open(c, embedder.clone()).map_err(|e| BuildError {
                component: component(),
                message: e.to_string(),
            })?;
            let store = Arc::new(store);
            BuiltStore {
                retriever: store.clone(),
                documents: Some(store),
            }
        }
    })
}
