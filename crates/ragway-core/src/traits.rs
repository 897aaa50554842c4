//! The component traits the factory builds and the handlers call: chat models, retrievers,
//! rerankers and embedders. They are small on purpose; everything provider-specific stays
//! behind them.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::config::RetrievalMode;
use crate::{
    ChatRequest, ChatResponse, Delta, Document, Filter, IngestReport, Passage, ProviderError,
    StoreStats,
};

/// A streamed answer: text pieces, then the finish reason and usage; an `Err` ends it.
pub type DeltaStream = BoxStream<'static, Result<Delta, ProviderError>>;

/// What a chat model can do beyond text in, text out. The engine checks a request against it
/// before anything is retrieved or called, so that a model without a feature answers a 400
/// naming it rather than ignoring what was asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Takes tools and calls them.
    pub tools: bool,
    /// Reads images in messages, within these limits.
    pub images: Option<crate::image::ImageLimits>,
    /// Answers in JSON that follows a given schema.
    pub structured_output: bool,
    /// Samples repeatably given a seed.
    pub seed: bool,
    /// Serves several calls at once, so a request may ask for several choices (`n`).
    pub choices: bool,
}

/// A language model that answers a conversation.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// What the model can do; the default is text only.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Answers in one piece.
    async fn generate(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// Answers as a stream of deltas. Dropping the stream cancels the upstream request.
    async fn stream(&self, request: ChatRequest) -> Result<DeltaStream, ProviderError>;

    /// Whether the model can answer now; the error says why not. `/readyz` asks every
    /// component; the check is quick and costs no tokens. Components whose state cannot change
    /// after start-up (an API key read from the environment) keep this default.
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A search backend that returns the passages most relevant to a query.
#[async_trait]
pub trait Retriever: Send + Sync {
    async fn search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError>;

    /// The retrieval modes a request may choose for this store (`retrieval` in a request);
    /// none for a store that searches in its own way only (Kendra).
    fn modes(&self) -> &'static [RetrievalMode] {
        &[]
    }

    /// Searches in `mode`, one of [`modes`](Self::modes) (the caller checks); a store with one
    /// mode searches as [`search`](Self::search) does.
    async fn search_as(
        &self,
        mode: RetrievalMode,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        let _ = mode;
        self.search(query, top_k, filter).await
    }

    /// Whether the store can apply `filter`; the error names what it cannot (an operator,
    /// a kind of value, a depth), for a 400 before any search. Stores that apply every filter
    /// (FAISS, pgvector) keep this default.
    fn check_filter(&self, filter: &Filter) -> Result<(), String> {
        let _ = filter;
        Ok(())
    }

    /// Whether searches can be served now (see [`ChatModel::ready`]).
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Orders a store's candidates by their relevance to a query, as a second, closer look (a
/// cross-encoder reads the query and each passage together).
#[async_trait]
pub trait Reranker: Send + Sync {
    /// The `top_k` passages most relevant to `query`, best first, each with the reranker's
    /// score (higher is better).
    async fn rerank(
        &self,
        query: &str,
        passages: Vec<Passage>,
        top_k: usize,
    ) -> Result<Vec<Passage>, ProviderError>;

    /// Whether reranking can be served now (see [`ChatModel::ready`]).
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Turns texts into vectors, one per text, all of `dimension()` floats.
#[async_trait]
pub trait Embedder: Send + Sync {
    fn dimension(&self) -> usize;
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError>;

    /// How many batches an ingest may embed at once: one unless the embedder is a remote
    /// service that serves several.
    fn concurrency(&self) -> usize {
        1
    }

    /// Whether texts can be embedded now (see [`ChatModel::ready`]).
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A store that documents can be added to and removed from (FAISS; not Kendra). Every call is
/// atomic: the index and the document rows change together or not at all.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Adds or replaces documents by id; unchanged documents (same content hash) are skipped.
    async fn add(&self, documents: Vec<Document>) -> Result<IngestReport, ProviderError>;

    /// Removes a document and its chunks; false if there was none with that id.
    async fn delete(&self, id: &str) -> Result<bool, ProviderError>;

    async fn stats(&self) -> Result<StoreStats, ProviderError>;
}
