//! `[[reranker]]`: the models that order a store's candidates by their relevance to the
//! query, one config struct per provider, and the `rerank = { ... }` by which a store names
//! one.

use std::path::PathBuf;

use serde::Deserialize;

use super::check::{check_path, check_timeouts, check_url};
use super::parse::parse_entry;
use super::{default_connect_timeout, default_max_attempts, default_timeout};
use crate::ConfigIssue;

/// `[[reranker]]`: orders a store's candidates by their relevance to the query.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RerankerConfig {
    Local(LocalRerankerConfig),
    Bedrock(BedrockRerankerConfig),
}

impl RerankerConfig {
    pub const KINDS: &'static [&'static str] = &["bedrock", "local"];

    pub fn name(&self) -> &str {
        match self {
            Self::Local(c) => &c.name,
            Self::Bedrock(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::Bedrock(_) => "bedrock",
        }
    }

    /// Parses an entry's body by its `type`: `None` for a type not known here, `Some(None)`
    /// when the body does not parse (its issue recorded).
    pub(super) fn parse_kind(
        kind: &str,
        body: toml::Value,
        at: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Option<Self>> {
        Some(match kind {
            "local" => parse_entry(body, at, issues).map(Self::Local),
            "bedrock" => parse_entry(body, at, issues).map(Self::Bedrock),
            _ => return None,
        })
    }

    /// What serde cannot check of the reranker at `at` (`reranker[i]`).
    pub(super) fn validate(&self, at: &str, issue: &mut impl FnMut(String, String)) {
        match self {
            Self::Local(c) => {
                check_path(&format!("{at}.path"), &c.path, issue);
                if c.max_tokens < 8 {
                    issue(
                        format!("{at}.max_tokens"),
                        format!("must be at least 8, got {}", c.max_tokens),
                    );
                }
            }
            Self::Bedrock(c) => {
                if let Some(url) = &c.endpoint_url {
                    check_url(&format!("{at}.endpoint_url"), url, issue);
                }
                if c.max_attempts == 0 {
                    issue(format!("{at}.max_attempts"), "must be at least 1".into());
                }
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
        }
    }
}

/// A BERT cross-encoder (a Hugging Face `BertForSequenceClassification` folder with one
/// label, as `cross-encoder/ms-marco-MiniLM-L-6-v2`) run in-process on the CPU.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRerankerConfig {
    pub name: String,
    /// The model folder: `config.json`, `tokenizer.json`, `model.safetensors`.
    pub path: PathBuf,
    /// Query and passage together are cut to this many tokens, the longer first.
    #[serde(default = "default_rerank_max_tokens")]
    pub max_tokens: usize,
}

fn default_rerank_max_tokens() -> usize {
    512
}

/// Amazon Bedrock's Rerank API (bedrock-agent-runtime): `amazon.rerank-v1:0` or
/// `cohere.rerank-v3-5:0`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockRerankerConfig {
    pub name: String,
    pub model_id: String,
    /// AWS region; the standard chain (AWS_REGION, profile) when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint than AWS's own (a VPC endpoint, or a local fake in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Attempts per call, the first included, for throttling and transient errors.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

/// A store's `rerank = { reranker = "name", candidates = 20 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankConfig {
    /// The `[[reranker]]`.
    pub reranker: String,
    /// How many of the store's best passages the reranker reads (at least the request's
    /// `top_k`, which it keeps).
    #[serde(default = "default_rerank_candidates")]
    pub candidates: usize,
}

fn default_rerank_candidates() -> usize {
    20
}

/// Most candidates a store may hand a reranker (Bedrock Rerank's limit of sources).
pub const MAX_RERANK_CANDIDATES: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::issues;
    use crate::config::{Config, RetrievalMode, VectorStoreConfig};

    #[test]
    fn rerankers_are_read_and_a_store_names_one_that_exists() {
        let text = |rerank: &str, rerankers: &str| {
            format!(
                "[[embedder]]\nname = \"minilm\"\ntype = \"local\"\npath = \"m\"\n\
                 [[vector_store]]\nname = \"docs\"\ntype = \"pgvector\"\n\
                 dsn = \"env::PG_DSN\"\nembedder = \"minilm\"\nretrieval = \"keyword\"\n{rerank}\n\
                 {rerankers}"
            )
        };
        let both = "[[reranker]]\nname = \"cross\"\ntype = \"local\"\npath = \"models/ce\"\n\
                    [[reranker]]\nname = \"cohere\"\ntype = \"bedrock\"\n\
                    model_id = \"cohere.rerank-v3-5:0\"\nregion = \"us-west-2\"\n";
        let config = Config::parse(
            &text("rerank = { reranker = \"cohere\" }", both),
            "test.toml",
        )
        .unwrap();
        assert_eq!(config.reranker.len(), 2);
        let rerank = config.vector_store[0].rerank().unwrap();
        assert_eq!(
            (rerank.reranker.as_str(), rerank.candidates),
            ("cohere", 20)
        );
        let RerankerConfig::Local(local) = &config.reranker[0] else {
            panic!("a local reranker");
        };
        assert_eq!(local.max_tokens, 512);
        let VectorStoreConfig::Pgvector(pg) = &config.vector_store[0] else {
            panic!("a pgvector store");
        };
        assert_eq!(pg.retrieval, RetrievalMode::Keyword);

        assert_eq!(
            issues(&text(
                "rerank = { reranker = \"nope\", candidates = 0 }",
                "[[reranker]]\nname = \"cross\"\ntype = \"local\"\npath = \"m\"\nmax_tokens = 2\n"
            )),
            [
                "reranker[0].max_tokens: must be at least 8, got 2",
                "vector_store[0].rerank.reranker: no reranker named \"nope\"; known: cross",
                "vector_store[0].rerank.candidates: must be between 1 and 1000, got 0",
            ]
        );
        let unknown_kind = issues(&text("", "[[reranker]]\nname = \"x\"\ntype = \"magic\"\n"));
        assert!(
            unknown_kind.iter().any(|i| i.contains("bedrock, local")),
            "{unknown_kind:?}"
        );
    }
}
