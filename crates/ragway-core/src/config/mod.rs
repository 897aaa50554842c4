//! The TOML configuration: raw, serde-tagged types for every component, parsed with every
//! error reported at once with its path (`llm[1].model_id: missing field`). One file per
//! section; this one holds the whole [`Config`], what it reads from the environment, the checks
//! that run across sections, and the defaults several sections share.

mod cache;
mod check;
mod embedder;
mod llm;
mod parse;
mod reranker;
mod server;
mod vector_store;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use parse::parse_sections;

pub use cache::{AnswerCacheConfig, CacheConfig};
pub use check::known;
pub use embedder::{
    BedrockEmbedderConfig, EmbedderConfig, LocalEmbedderConfig, OpenAiEmbedderConfig,
    TITAN_DIMENSIONS, openai_embedding_size,
};
pub use llm::{
    BedrockLlmConfig, CooldownPolicy, LlmConfig, LocalLlmConfig, OpenAiLlmConfig, RetryPolicy,
};
pub use reranker::{
    BedrockRerankerConfig, LocalRerankerConfig, MAX_RERANK_CANDIDATES, RerankConfig, RerankerConfig,
};
pub use server::{PromptConfig, ServerConfig};
pub use vector_store::{
    BedrockKbStoreConfig, FaissStoreConfig, HybridConfig, IndexKind, KendraStoreConfig,
    KnowledgeBaseSearchType, Metric, PgMetric, PgvectorStoreConfig, RetrievalMode, ScoreConfidence,
    VectorStoreConfig, default_hnsw_max_deleted_share, is_knowledge_base_id, is_sql_identifier,
};

use crate::secret::{EnvKind, EnvReference};
use crate::{ConfigError, ConfigIssue, SecretRef};

/// The name a request uses to skip retrieval; no store may take it.
pub const NO_RETRIEVAL: &str = "none";

/// A whole ragway configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub llm: Vec<LlmConfig>,
    #[serde(default)]
    pub embedder: Vec<EmbedderConfig>,
    #[serde(default)]
    pub vector_store: Vec<VectorStoreConfig>,
    #[serde(default)]
    pub reranker: Vec<RerankerConfig>,
    /// How `ragway deploy` runs this configuration on AWS; `serve` ignores it.
    #[serde(default)]
    pub deploy: crate::deploy::DeployConfig,
}

impl Config {
    /// Parses and validates a configuration, reporting every problem at once.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let config = parse_sections(text, &mut issues);
        if let Some(config) = &config {
            config.validate(&mut issues);
        }
        match config {
            Some(config) if issues.is_empty() => Ok(config),
            _ => Err(ConfigError {
                source_name: source_name.to_owned(),
                issues,
            }),
        }
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            issues: vec![ConfigIssue {
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::parse(&text, &name)
    }

    /// Every `env::NAME` the configuration reads, with its path and whether it is a secret.
    ///
    /// The one list of them: serve's start-up check ([`Self::missing_env`]) and `ragway
    /// deploy`'s rule that secrets come from `[deploy.secrets]` both read it. A new field that
    /// holds a [`SecretRef`] or an [`EnvOr`](crate::EnvOr) (a store's DSN, a Redis URL) gets a
    /// line here, and both cover it; a new component kind fails to compile until its arm says
    /// what it reads.
    pub fn env_references(&self) -> Vec<EnvReference> {
        let mut found = Vec::new();
        let mut secret = |path: String, reference: Option<&SecretRef>| {
            if let Some(reference) = reference {
                found.push(EnvReference::secret(path, reference));
            }
        };
        // [server]
        for (i, key) in self.server.auth.keys.iter().enumerate() {
            secret(format!("server.auth.keys[{i}].key"), key.key.as_ref());
        }
        secret(
            "server.state.redis_url".into(),
            self.server.state.redis_url.as_ref(),
        );
        // [[llm]]
        for (i, llm) in self.llm.iter().enumerate() {
            match llm {
                LlmConfig::Openai(c) => secret(format!("llm[{i}].api_key"), c.api_key.as_ref()),
                LlmConfig::Bedrock(_) | LlmConfig::Local(_) => {}
            }
        }
        // [[embedder]]
        for (i, embedder) in self.embedder.iter().enumerate() {
            match embedder {
                EmbedderConfig::Openai(c) => {
                    secret(format!("embedder[{i}].api_key"), c.api_key.as_ref())
                }
                EmbedderConfig::Bedrock(_) | EmbedderConfig::Local(_) => {}
            }
        }
        // [[vector_store]]
        for (i, store) in self.vector_store.iter().enumerate() {
            match store {
                VectorStoreConfig::Kendra(c) => found.extend(EnvReference::setting(
                    format!("vector_store[{i}].index_id"),
                    &c.index_id,
                )),
                VectorStoreConfig::BedrockKb(c) => found.extend(EnvReference::setting(
                    format!("vector_store[{i}].knowledge_base_id"),
                    &c.knowledge_base_id,
                )),
                VectorStoreConfig::Pgvector(c) => found.push(EnvReference::secret(
                    format!("vector_store[{i}].dsn"),
                    &c.dsn,
                )),
                VectorStoreConfig::Faiss(_) => {}
            }
        }
        found
    }

    /// A secret's variable in `[deploy.environment]` is the secret itself written in this file
    /// (and, deployed, readable by anyone who may read the task definition).
    fn check_secrets_stay_secret(&self, issues: &mut Vec<ConfigIssue>) {
        let mut reported = std::collections::BTreeSet::new();
        for reference in self.env_references() {
            let var = reference.var.as_str();
            if reference.kind == EnvKind::Secret
                && self.deploy.environment.contains_key(var)
                && reported.insert(var.to_owned())
            {
                issues.push(ConfigIssue {
                    path: format!("deploy.environment.{var}"),
                    message: format!(
                        "is the secret {} reads (env::{var}), written here in plain text: \
                         remove it and add `{var} = \"<ARN of a Secrets Manager secret or SSM \
                         SecureString parameter>\"` to [deploy.secrets]",
                        reference.path
                    ),
                });
            }
        }
    }

    /// Environment variables the configuration refers to that are not set now. Serving
    /// needs them; checking a file on a laptop may not.
    pub fn missing_env(&self) -> Vec<ConfigIssue> {
        self.env_references()
            .into_iter()
            .filter_map(|reference| {
                let message = reference.check().err()?;
                Some(ConfigIssue {
                    path: reference.path,
                    message,
                })
            })
            .collect()
    }

    /// What serde cannot check: each section's values, and the names one section gives
    /// another (a key's models, a store's embedder, a model's fallbacks).
    fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        self.deploy.validate(issues);
        self.check_secrets_stay_secret(issues);
        let models: Vec<&str> = self
            .llm
            .iter()
            .map(LlmConfig::name)
            .chain(self.embedder.iter().map(EmbedderConfig::name))
            .collect();
        let stores: Vec<&str> = self
            .vector_store
            .iter()
            .map(VectorStoreConfig::name)
            .collect();
        self.server.validate(&models, &stores, issues);
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

        let llm_names: Vec<&str> = self.llm.iter().map(LlmConfig::name).collect();
        for (i, llm) in self.llm.iter().enumerate() {
            llm.validate(&format!("llm[{i}]"), &llm_names, &mut issue);
        }
        for (i, embedder) in self.embedder.iter().enumerate() {
            embedder.validate(&format!("embedder[{i}]"), &mut issue);
        }
        for (i, reranker) in self.reranker.iter().enumerate() {
            reranker.validate(&format!("reranker[{i}]"), &mut issue);
        }
        let rerankers: Vec<&str> = self.reranker.iter().map(RerankerConfig::name).collect();
        let embedders: Vec<&str> = self.embedder.iter().map(EmbedderConfig::name).collect();
        for (i, store) in self.vector_store.iter().enumerate() {
            store.validate(
                &format!("vector_store[{i}]"),
                &embedders,
                &rerankers,
                &mut issue,
            );
        }
    }
}

/// Seconds from config as a `Duration` (validation has already refused non-positive values).
pub fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
}

/// A path's last component (the whole path if it has none), as a name.
fn last_component(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

// Defaults more than one section shares.
fn default_openai_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_timeout() -> f64 {
    120.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issues `Config::parse` reports for `text`, as `path: message` lines; none when it
    /// parses.
    pub(super) fn issues(text: &str) -> Vec<String> {
        match Config::parse(text, "test.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_good_config_parses() {
        let config = Config::parse(
            r#"
            [server]
            bind = "0.0.0.0:9000"
            [[llm]]
            name = "gpt"
            type = "openai"
            model = "gpt-4o"
            api_key = "env::OPENAI_API_KEY"
            [[llm]]
            name = "claude"
            type = "bedrock"
            model_id = "us.anthropic.claude-3-opus-20240229-v1:0"
            region = "us-west-2"
            [[vector_store]]
            name = "kendra"
            type = "kendra"
            index_id = "env::KENDRA_INDEX_ID"
            min_score_confidence = "HIGH"
            attribute_filter = { _language_code = "en" }
            "#,
            "test.toml",
        )
        .unwrap();
        assert_eq!(config.server.bind.port(), 9000);
        assert_eq!(config.llm.len(), 2);
        assert_eq!(config.llm[1].name(), "claude");
        assert!(
            matches!(&config.vector_store[0], VectorStoreConfig::Kendra(k) if k.min_score_confidence == Some(ScoreConfidence::High))
        );
    }

    #[test]
    fn semantic_errors_are_reported_together() {
        let found = issues(
            r#"
            [server.prompt]
            template = "no placeholders"
            [[llm]]
            name = "a"
            type = "openai"
            model = "m"
            base_url = "ftp://x"
            timeout_secs = 0
            [[llm]]
            name = "a"
            type = "openai"
            model = "m"
            [[vector_store]]
            name = "none"
            type = "kendra"
            index_id = "i"
            "#,
        );
        let text = found.join("\n");
        assert!(
            text.contains("server.prompt.template: must contain {context}"),
            "{text}"
        );
        assert!(
            text.contains("server.prompt.template: must contain {question}"),
            "{text}"
        );
        assert!(
            text.contains("llm[0].base_url: \"ftp://x\" is not an http"),
            "{text}"
        );
        assert!(
            text.contains("llm[0].timeout_secs: must be between"),
            "{text}"
        );
        assert!(
            text.contains("llm[1].name: duplicate name \"a\" (also llm[0])"),
            "{text}"
        );
        assert!(
            text.contains("vector_store[0].name: \"none\" is reserved"),
            "{text}"
        );
    }

    /// One field of every kind that may hold `env::`. A field added to the config that holds a
    /// `SecretRef` or an `EnvOr` belongs here and in `Config::env_references`.
    const EVERY_ENV_FIELD: &str = r#"
        [[server.auth.keys]]
        name = "app"
        key = "env::APP_KEY"
        [[llm]]
        name = "gpt"
        type = "openai"
        model = "gpt-4o"
        api_key = "env::OPENAI_API_KEY"
        [[embedder]]
        name = "small"
        type = "openai"
        model = "text-embedding-3-small"
        dimensions = 512
        api_key = "env::OPENAI_API_KEY"
        [[vector_store]]
        name = "kendra"
        type = "kendra"
        index_id = "env::KENDRA_INDEX_ID"
        [[vector_store]]
        name = "literal"
        type = "kendra"
        index_id = "0123-literal"
        [[vector_store]]
        name = "kb"
        type = "bedrock_kb"
        knowledge_base_id = "env::KB_ID"
        [[vector_store]]
        name = "kb-literal"
        type = "bedrock_kb"
        knowledge_base_id = "KB12345678"
    "#;

    #[test]
    fn env_references_list_every_env_field_with_its_path_and_kind() {
        let config = Config::parse(EVERY_ENV_FIELD, "t").unwrap();
        let found: Vec<(String, String, EnvKind)> = config
            .env_references()
            .into_iter()
            .map(|r| (r.path, r.var, r.kind))
            .collect();
        let expected = [
            ("server.auth.keys[0].key", "APP_KEY", EnvKind::Secret),
            ("llm[0].api_key", "OPENAI_API_KEY", EnvKind::Secret),
            ("embedder[0].api_key", "OPENAI_API_KEY", EnvKind::Secret),
            (
                "vector_store[0].index_id",
                "KENDRA_INDEX_ID",
                EnvKind::Setting,
            ),
            (
                "vector_store[2].knowledge_base_id",
                "KB_ID",
                EnvKind::Setting,
            ),
        ]
        .map(|(path, var, kind)| (path.to_owned(), var.to_owned(), kind));
        assert_eq!(found, expected);
        // Every `env::` written in the file is one of them.
        assert_eq!(EVERY_ENV_FIELD.matches("env::").count(), found.len());
    }

    #[test]
    fn a_secret_written_in_deploy_environment_is_refused_with_its_path() {
        let text = format!(
            "{EVERY_ENV_FIELD}\n[deploy.environment]\nOPENAI_API_KEY = \"sk-live\"\n\
             KENDRA_INDEX_ID = \"0123\"\nRUST_LOG = \"info\"\n"
        );
        let found = issues(&text);
        // One issue for the variable, though two fields read it; the Kendra index id is a
        // setting, not a secret, and may be a plain variable.
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("deploy.environment.OPENAI_API_KEY: is the secret llm[0].api_key")
                && found[0].contains("[deploy.secrets]"),
            "{found:?}"
        );
        assert!(!found[0].contains("sk-live"), "{found:?}");
    }

    #[test]
    fn missing_env_names_the_variable_and_the_path() {
        let config = Config::parse(
            "[[llm]]\nname='a'\ntype='openai'\nmodel='m'\napi_key='env::RAGWAY_TEST_UNSET_KEY_1'\n",
            "t",
        )
        .unwrap();
        let missing = config.missing_env();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].path, "llm[0].api_key");
        assert!(missing[0].message.contains("RAGWAY_TEST_UNSET_KEY_1"));
    }
}
