//! Rerankers: a second, closer look at a store's best candidates. A store that names one
//! (`rerank = { reranker, candidates }`) is searched for `candidates` passages (or the request's
//! `top_k`, if more), the reranker scores each against the query, and the request's `top_k`
//! best are kept in its order, with its scores. Kinds: a local BERT cross-encoder and Amazon
//! Bedrock's Rerank API.

pub mod bedrock;
pub mod local;

use std::sync::Arc;

use async_trait::async_trait;
use ragway_core::config::RetrievalMode;
use ragway_core::{Filter, Passage, ProviderError, Reranker, Retriever};

pub use bedrock::BedrockReranker;
pub use local::LocalReranker;

/// A store whose candidates go through a reranker.
pub struct Reranked {
    store: Arc<dyn Retriever>,
    reranker: Arc<dyn Reranker>,
    candidates: usize,
}

impl Reranked {
    pub fn new(store: Arc<dyn Retriever>, reranker: Arc<dyn Reranker>, candidates: usize) -> Self {
        Self {
            store,
            reranker,
            candidates,
        }
    }

    async fn rerank(
        &self,
        query: &str,
        top_k: usize,
        candidates: Vec<Passage>,
    ) -> Result<Vec<Passage>, ProviderError> {
        if top_k == 0 || candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut ranked = self.reranker.rerank(query, candidates, top_k).await?;
        ranked.truncate(top_k);
        Ok(ranked)
    }
}

#[async_trait]
impl Retriever for Reranked {
    async fn search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        let wanted = self.candidates.max(top_k);
        let candidates = self.store.search(query, wanted, filter).await?;
        self.rerank(query, top_k, candidates).await
    }

    fn modes(&self) -> &'static [RetrievalMode] {
        self.store.modes()
    }

    async fn search_as(
        &self,
        mode: RetrievalMode,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        let wanted = self.candidates.max(top_k);
        let candidates = self.store.search_as(mode, query, wanted, filter).await?;
        self.rerank(query, top_k, candidates).await
    }

    fn check_filter(&self, filter: &Filter) -> Result<(), String> {
        self.store.check_filter(filter)
    }

    async fn ready(&self) -> Result<(), String> {
        self.store.ready().await?;
        self.reranker.ready().await
    }
}

/// What a reranker reads of a passage: its title, if any, then its text (as BEIR's reranking
/// evaluation joins them).
pub fn passage_text(passage: &Passage) -> String {
    match passage.title.as_deref().map(str::trim) {
        Some(title) if !title.is_empty() => format!("{title} {}", passage.text),
        _ => passage.text.clone(),
    }
}

/// The passages in the order of `scores` (one per passage, higher first; ties keep the store's
/// order), each with its score, the best `top_k`.
pub fn order_by(passages: Vec<Passage>, scores: &[f32], top_k: usize) -> Vec<Passage> {
    let mut scored: Vec<(Passage, f32)> =
        passages.into_iter().zip(scores.iter().copied()).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored
        .into_iter()
        .take(top_k)
        .map(|(mut passage, score)| {
            passage.score = score;
            passage
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn passage(id: &str, text: &str) -> Passage {
        Passage {
            id: id.into(),
            text: text.into(),
            score: 0.5,
            title: None,
            uri: None,
            metadata: serde_json::Map::new(),
        }
    }

    /// A store of ten passages that records how many it was asked for.
    struct Ten(Mutex<Vec<usize>>);

    #[async_trait]
    impl Retriever for Ten {
        async fn search(
            &self,
            _query: &str,
            top_k: usize,
            _filter: &Filter,
        ) -> Result<Vec<Passage>, ProviderError> {
            self.0.lock().unwrap().push(top_k);
            Ok((0..10.min(top_k))
                .map(|i| passage(&format!("p{i}"), &"x".repeat(i)))
                .collect())
        }

        fn check_filter(&self, filter: &Filter) -> Result<(), String> {
            if filter.is_empty() {
                Ok(())
            } else {
                Err("Ten filters nothing".into())
            }
        }
    }

    /// Scores a passage by its length: the store's last is the most relevant.
    struct Longest;

    #[async_trait]
    impl Reranker for Longest {
        async fn rerank(
            &self,
            _query: &str,
            passages: Vec<Passage>,
            top_k: usize,
        ) -> Result<Vec<Passage>, ProviderError> {
            let scores: Vec<f32> = passages.iter().map(|p| p.text.len() as f32).collect();
            Ok(order_by(passages, &scores, top_k))
        }
    }

    #[tokio::test]
    async fn the_reranker_reads_the_candidates_and_keeps_top_k_in_its_order() {
        let store = Arc::new(Ten(Mutex::new(Vec::new())));
        let reranked = Reranked::new(store.clone(), Arc::new(Longest), 8);
        let found = reranked.search("q", 3, &Filter::new()).await.unwrap();
        let ids: Vec<&str> = found.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p7", "p6", "p5"]);
        assert_eq!(found[0].score, 7.0);
        // A top_k past the candidates asks the store for top_k.
        let found = reranked.search("q", 9, &Filter::new()).await.unwrap();
        assert_eq!(found.len(), 9);
        assert_eq!(found[0].id, "p8");
        assert!(
            reranked
                .search("q", 0, &Filter::new())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(*store.0.lock().unwrap(), [8, 9, 8]);
        // What the store cannot filter, the reranked store cannot either.
        assert!(reranked.check_filter(&Filter::new()).is_ok());
        let lang = Filter::equals([("lang".to_owned(), "en".into())]);
        assert_eq!(
            reranked.check_filter(&lang).unwrap_err(),
            "Ten filters nothing"
        );
    }

    #[test]
    fn a_title_is_read_before_the_text() {
        let mut titled = passage("a", "the text");
        assert_eq!(passage_text(&titled), "the text");
        titled.title = Some("The Title".into());
        assert_eq!(passage_text(&titled), "The Title the text");
        titled.title = Some("  ".into());
        assert_eq!(passage_text(&titled), "the text");
    }
}
