//! ragway's retrievers and the factory that builds a configured `[[vector_store]]` entry into
//! an `Arc<dyn Retriever>` (and, for writable stores, an `Arc<dyn DocumentStore>`).

pub mod bedrock_kb;
pub mod embedder;
pub mod error;
pub mod eval;
pub mod faiss;
pub mod fusion;
pub mod ingest;
pub mod kendra;
pub mod pgvector;
pub mod rerank;

pub use error::{Error, Result};

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_types::SdkConfig;
use ragway_core::config::{RerankerConfig, VectorStoreConfig};
use ragway_core::{BuildError, DocumentStore, Embedder, Reranker, Retriever};

/// What stores share, made once at start-up by the registry.
pub struct Shared<'a> {
    /// AWS settings from the standard chain; present when any AWS component is configured.
    pub aws: Option<&'a SdkConfig>,
    /// The built embedders, by name.
    pub embedders: &'a BTreeMap<String, Arc<dyn Embedder>>,
    /// The built rerankers, by name.
    pub rerankers: &'a BTreeMap<String, Arc<dyn Reranker>>,
}

/// Builds one configured reranker (a local cross-encoder loads its weights here).
pub fn build_reranker(
    config: &RerankerConfig,
    aws: Option<&SdkConfig>,
) -> Result<Arc<dyn Reranker>, BuildError> {
    Ok(match config {
        RerankerConfig::Local(c) => Arc::new(rerank::LocalReranker::new(c)?),
        RerankerConfig::Bedrock(c) => {
            let aws = aws.ok_or_else(|| BuildError {
                component: format!("reranker \"{}\"", c.name),
                message: "AWS settings were not loaded".into(),
            })?;
            Arc::new(rerank::BedrockReranker::new(c, aws)?)
        }
    })
}

/// A built store: every store searches; writable ones also take documents.
pub struct BuiltStore {
    pub retriever: Arc<dyn Retriever>,
    pub documents: Option<Arc<dyn DocumentStore>>,
}

/// Builds one configured store (a pgvector store connects and migrates its schema here); a
/// store that names a reranker searches through it.
pub async fn build(
    config: &VectorStoreConfig,
    shared: &Shared<'_>,
) -> Result<BuiltStore, BuildError> {
    let component = || format!("vector_store \"{}\"", config.name());
    let mut built = build_store(config, shared, component).await?;
    if let Some(rerank) = config.rerank() {
        let reranker = shared
            .rerankers
            .get(&rerank.reranker)
            .cloned()
            .ok_or_else(|| BuildError {
                component: component(),
                message: format!("no reranker named \"{}\" was built", rerank.reranker),
            })?;
        built.retriever = Arc::new(rerank::Reranked::new(
            built.retriever,
            reranker,
            rerank.candidates,
        ));
    }
    Ok(built)
}

async fn build_store(
    config: &VectorStoreConfig,
    shared: &Shared<'_>,
    component: impl Fn() -> String + Copy,
) -> Result<BuiltStore, BuildError> {
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
        VectorStoreConfig::BedrockKb(c) => {
            let aws = shared.aws.ok_or_else(|| BuildError {
                component: component(),
                message: "AWS settings were not loaded".into(),
            })?;
            BuiltStore {
                retriever: Arc::new(bedrock_kb::KnowledgeBaseRetriever::new(c, aws)?),
                documents: None,
            }
        }
        VectorStoreConfig::Faiss(c) => {
            let embedder = shared.embedder(&c.embedder, component)?;
            let store = faiss::FaissStore::open(c, embedder).map_err(|e| BuildError {
                component: component(),
                message: e.to_string(),
            })?;
            let store = Arc::new(store);
            BuiltStore {
                retriever: store.clone(),
                documents: Some(store),
            }
        }
        VectorStoreConfig::Pgvector(c) => {
            let embedder = shared.embedder(&c.embedder, component)?;
            let store = pgvector::PgvectorStore::open(c, embedder)
                .await
                .map_err(|e| BuildError {
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

/// A writable store opened on its own, for `ragway ingest` (no chat model, no other store).
pub enum WritableStore {
    Faiss(faiss::FaissStore),
    Pgvector(pgvector::PgvectorStore),
}

impl WritableStore {
    /// Opens the store a `[[vector_store]]` entry describes with its embedder; `None` for a
    /// read-only kind (Kendra, Bedrock knowledge bases). With `reindex`, a FAISS store built
    /// with other index settings than configured is rebuilt with the config's (pgvector follows
    /// its config on every open).
    pub async fn open(
        config: &VectorStoreConfig,
        embedder: Arc<dyn Embedder>,
        reindex: bool,
    ) -> Option<Result<Self>> {
        Some(match config {
            VectorStoreConfig::Faiss(c) if reindex => {
                faiss::FaissStore::open_reindexing(c, embedder).map(Self::Faiss)
            }
            VectorStoreConfig::Faiss(c) => faiss::FaissStore::open(c, embedder).map(Self::Faiss),
            VectorStoreConfig::Pgvector(c) => pgvector::PgvectorStore::open(c, embedder)
                .await
                .map(Self::Pgvector),
            VectorStoreConfig::Kendra(_) | VectorStoreConfig::BedrockKb(_) => return None,
        })
    }

    /// Adds or replaces documents, reporting progress (see each store's `add_with_progress`).
    pub async fn add_with_progress(
        &self,
        documents: Vec<ragway_core::Document>,
        progress: impl Fn(ingest::Progress) + Send + Sync,
    ) -> Result<ragway_core::IngestReport> {
        match self {
            Self::Faiss(store) => store.add_with_progress(documents, progress).await,
            Self::Pgvector(store) => store.add_with_progress(documents, progress).await,
        }
    }

    /// The content hash of each of `ids` the store holds.
    pub async fn stored_hashes(
        &self,
        ids: Vec<String>,
    ) -> Result<std::collections::HashMap<String, String>> {
        match self {
            Self::Faiss(store) => store.stored_hashes(ids).await,
            Self::Pgvector(store) => store.stored_hashes(&ids).await,
        }
    }

    /// How the store cuts documents: `(chunk_size, chunk_overlap)`.
    pub fn chunking(&self) -> (usize, usize) {
        match self {
            Self::Faiss(store) => store.chunking(),
            Self::Pgvector(store) => store.chunking(),
        }
    }
}

impl Shared<'_> {
    /// The built embedder a store names.
    fn embedder(
        &self,
        name: &str,
        component: impl Fn() -> String,
    ) -> Result<Arc<dyn Embedder>, BuildError> {
        self.embedders.get(name).cloned().ok_or_else(|| BuildError {
            component: component(),
            message: format!("no embedder named \"{name}\" was built"),
        })
    }
}
