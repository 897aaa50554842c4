//! `[[embedder]]`: the models that turn text into vectors for a vector store, one config
//! struct per provider.

use std::path::PathBuf;

use serde::Deserialize;

use super::check::{at_least_one, check_path, check_timeouts, check_url};
use super::parse::parse_entry;
use super::{
    default_connect_timeout, default_max_attempts, default_openai_base_url, default_timeout,
    last_component,
};
use crate::{ConfigIssue, SecretRef};

/// `[[embedder]]`: turns text into vectors for a vector store.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EmbedderConfig {
    Openai(OpenAiEmbedderConfig),
    Bedrock(BedrockEmbedderConfig),
    Local(LocalEmbedderConfig),
}

impl EmbedderConfig {
    pub const KINDS: &'static [&'static str] = &["bedrock", "local", "openai"];

    pub fn name(&self) -> &str {
        match self {
            Self::Openai(c) => &c.name,
            Self::Bedrock(c) => &c.name,
            Self::Local(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Openai(_) => "openai",
            Self::Bedrock(_) => "bedrock",
            Self::Local(_) => "local",
        }
    }

    /// The model as its provider knows it: OpenAI's `model`, Bedrock's `model_id`, a local
    /// model's folder name.
    pub fn model_id(&self) -> String {
        match self {
            Self::Openai(c) => c.model.clone(),
            Self::Bedrock(c) => c.model_id.clone(),
            Self::Local(c) => last_component(&c.path),
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
            "openai" => parse_entry(body, at, issues).map(Self::Openai),
            "bedrock" => parse_entry(body, at, issues).map(Self::Bedrock),
            "local" => parse_entry(body, at, issues).map(Self::Local),
            _ => return None,
        })
    }

    /// What serde cannot check of the embedder at `at` (`embedder[i]`).
    pub(super) fn validate(&self, at: &str, issue: &mut impl FnMut(String, String)) {
        match self {
            Self::Openai(c) => {
                check_url(&format!("{at}.base_url"), &c.base_url, issue);
                match c.dimension() {
                    Some(0) => issue(format!("{at}.dimensions"), "must be at least 1".into()),
                    Some(_) => {}
                    None => issue(
                        format!("{at}.dimensions"),
                        format!(
                            "missing: the size of \"{}\"'s vectors (ragway knows it only for \
                             text-embedding-3-small, text-embedding-3-large and \
                             text-embedding-ada-002)",
                            c.model
                        ),
                    ),
                }
                at_least_one(&format!("{at}.concurrency"), c.concurrency, issue);
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
            Self::Bedrock(c) => {
                if let Some(url) = &c.endpoint_url {
                    check_url(&format!("{at}.endpoint_url"), url, issue);
                }
                if !TITAN_DIMENSIONS.contains(&c.dimensions) {
                    issue(
                        format!("{at}.dimensions"),
                        format!(
                            "Titan Text Embeddings V2 makes vectors of 256, 512 or 1024 \
                             dimensions, not {}",
                            c.dimensions
                        ),
                    );
                }
                at_least_one(&format!("{at}.concurrency"), c.concurrency, issue);
                if c.max_attempts == 0 {
                    issue(format!("{at}.max_attempts"), "must be at least 1".into());
                }
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
            Self::Local(c) => {
                check_path(&format!("{at}.path"), &c.path, issue);
                at_least_one(&format!("{at}.batch_size"), c.batch_size, issue);
                at_least_one(&format!("{at}.max_tokens"), c.max_tokens, issue);
            }
        }
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiEmbedderConfig {
    pub name: String,
    pub model: String,
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    #[serde(default = "default_openai_base_url")]
    pub base_url: String,
    /// Vector length, sent as `dimensions` to models that can shorten their vectors; may be
    /// left out for a model whose size ragway knows ([`openai_embedding_size`]).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Batches embedded at once while ingesting.
    #[serde(default = "default_openai_embed_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn default_openai_embed_concurrency() -> usize {
    4
}

/// The vector length of OpenAI's embedding models, when a request names none.
pub fn openai_embedding_size(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

impl OpenAiEmbedderConfig {
    /// The vectors' length: the configured `dimensions`, else the model's own size.
    pub fn dimension(&self) -> Option<usize> {
        self.dimensions
            .or_else(|| openai_embedding_size(&self.model))
    }
}

/// Amazon Titan Text Embeddings V2 on AWS Bedrock, called through `InvokeModel` (one text per
/// call, several calls in flight).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockEmbedderConfig {
    pub name: String,
    #[serde(default = "default_titan_embedding_model")]
    pub model_id: String,
    /// Vector length: 256, 512 or 1024.
    #[serde(default = "default_titan_dimensions")]
    pub dimensions: usize,
    /// Ask for unit-length vectors (what inner-product search wants).
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// AWS region; the standard chain (AWS_REGION, profile) when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint than AWS's own (a VPC endpoint, or a local fake in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// `InvokeModel` calls in flight at once while embedding a batch.
    #[serde(default = "default_bedrock_embed_concurrency")]
    pub concurrency: usize,
    /// Attempts per call, the first included, for throttling and transient errors.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn default_titan_embedding_model() -> String {
    "amazon.titan-embed-text-v2:0".to_owned()
}
fn default_titan_dimensions() -> usize {
    1024
}
fn default_bedrock_embed_concurrency() -> usize {
    8
}
fn default_true() -> bool {
    true
}

/// The vector lengths Titan Text Embeddings V2 offers.
pub const TITAN_DIMENSIONS: [usize; 3] = [256, 512, 1024];

/// A sentence-transformers BERT model (all-MiniLM-L6-v2 or any folder of the same layout:
/// `config.json`, `tokenizer.json`, `model.safetensors`) run in-process with candle.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEmbedderConfig {
    pub name: String,
    /// The model folder.
    pub path: PathBuf,
    /// Texts embedded per forward pass.
    #[serde(default = "default_embed_batch")]
    pub batch_size: usize,
    /// Longer inputs are truncated to this many tokens (sentence-transformers' max_seq_length).
    #[serde(default = "default_embed_max_tokens")]
    pub max_tokens: usize,
}

fn default_embed_batch() -> usize {
    // Measured on 2 cores: batches of 8 embed ~25 % faster than 32 (cache-friendlier matmuls).
    8
}
fn default_embed_max_tokens() -> usize {
    256
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::issues;

    #[test]
    fn an_openai_embedder_of_a_known_model_needs_no_dimensions() {
        let config = Config::parse(
            r#"
            [[embedder]]
            name = "large"
            type = "openai"
            model = "text-embedding-3-large"
            "#,
            "test.toml",
        )
        .unwrap();
        let EmbedderConfig::Openai(large) = &config.embedder[0] else {
            panic!("not an openai embedder: {:?}", config.embedder[0]);
        };
        assert_eq!((large.dimensions, large.dimension()), (None, Some(3072)));
        let found = issues(
            r#"
            [[embedder]]
            name = "mine"
            type = "openai"
            model = "my-embedder"
            "#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("embedder[0].dimensions: missing: the size of \"my-embedder\"'s"),
            "{found:?}"
        );
    }

    #[test]
    fn a_bedrock_embedder_defaults_to_titan_v2_and_checks_its_dimensions() {
        let config = Config::parse(
            r#"
            [[embedder]]
            name = "titan"
            type = "bedrock"
            region = "eu-west-1"
            "#,
            "test.toml",
        )
        .unwrap();
        let EmbedderConfig::Bedrock(titan) = &config.embedder[0] else {
            panic!("not a bedrock embedder: {:?}", config.embedder[0]);
        };
        assert_eq!(titan.model_id, "amazon.titan-embed-text-v2:0");
        assert_eq!(titan.dimensions, 1024);
        assert!(titan.normalize);
        let found = issues(
            r#"
            [[embedder]]
            name = "titan"
            type = "bedrock"
            dimensions = 384
            concurrency = 0
            "#,
        );
        assert_eq!(
            found,
            [
                "embedder[0].dimensions: Titan Text Embeddings V2 makes vectors of 256, 512 or 1024 dimensions, not 384",
                "embedder[0].concurrency: must be at least 1",
            ],
        );
    }
}
