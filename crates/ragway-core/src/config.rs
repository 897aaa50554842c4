//! The TOML configuration: raw, serde-tagged types for every component, parsed with every
//! error reported at once with its path (`llm[1].model_id: missing field`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::secret::{EnvKind, EnvReference};
use crate::{ConfigError, ConfigIssue, EnvOr, SecretRef};

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

/// `[server]`: where to listen and how prompts are assembled.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Passages retrieved when a request gives no `top_k`.
    #[serde(default = "default_top_k")]
    pub default_top_k: usize,
    /// Largest `top_k` a request may ask for.
    #[serde(default = "default_max_top_k")]
    pub max_top_k: usize,
    #[serde(default)]
    pub prompt: PromptConfig,
    /// After SIGTERM or Ctrl-C, how long requests in flight (streams included) may run
    /// before they are cut. Below ECS's default 30 s `stopTimeout`, so ragway exits on its own
    /// before the container is killed.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: f64,
    /// Serve `/metrics` on this address only (an internal port) instead of the API's.
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
    /// API keys; the API is open without them.
    #[serde(default)]
    pub auth: crate::access::AuthConfig,
    /// Request sizes, time limits and concurrency.
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// Where the per-key limits are counted: Redis, shared by replicas, or memory.
    #[serde(default)]
    pub state: crate::state::StateConfig,
    /// OpenTelemetry traces over OTLP/HTTP; off unless configured.
    #[serde(default)]
    pub tracing: crate::telemetry::TracingConfig,
    /// The `Host` names the server answers to (a name, `*.domain`, an IP address, or `*`).
    /// Unset: any with API keys; without keys, loopback names and IP addresses only (see
    /// [`crate::web`]).
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// Web origins whose pages may call the API; none unless listed.
    #[serde(default)]
    pub cors: crate::web::CorsConfig,
}

impl ServerConfig {
    /// [`Self::shutdown_grace_secs`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::try_from_secs_f64(self.shutdown_grace_secs)
            .unwrap_or(Duration::from_secs_f64(default_shutdown_grace_secs()))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            default_top_k: default_top_k(),
            max_top_k: default_max_top_k(),
            prompt: PromptConfig::default(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            metrics_bind: None,
            auth: crate::access::AuthConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            state: crate::state::StateConfig::default(),
            tracing: crate::telemetry::TracingConfig::default(),
            allowed_hosts: None,
            cors: crate::web::CorsConfig::default(),
        }
    }
}

/// `[server.prompt]`: the template that turns passages and a question into messages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// System prompt used when passages were retrieved and the request gives none.
    #[serde(default = "crate::prompt::default_system")]
    pub system: String,
    /// User message with passages; `{context}` and `{question}` are replaced.
    #[serde(default = "crate::prompt::default_template")]
    pub template: String,
    /// Tokens kept free for the answer when the request gives no `max_tokens`.
    #[serde(default = "default_answer_reserve")]
    pub answer_reserve: u32,
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self {
            system: crate::prompt::default_system(),
            template: crate::prompt::default_template(),
            answer_reserve: default_answer_reserve(),
        }
    }
}

/// `[[llm]]`: one chat model, by provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LlmConfig {
    Openai(OpenAiLlmConfig),
    Bedrock(BedrockLlmConfig),
    Local(LocalLlmConfig),
}

impl LlmConfig {
    pub const KINDS: &'static [&'static str] = &["openai", "bedrock", "local"];

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
    /// GGUF's file name.
    pub fn model_id(&self) -> String {
        match self {
            Self::Openai(c) => c.model.clone(),
            Self::Bedrock(c) => c.model_id.clone(),
            Self::Local(c) => last_component(&c.path),
        }
    }

    /// Tokens the model accepts in one request (prompt and answer together).
    pub fn context_window(&self) -> u32 {
        match self {
            Self::Openai(c) => c.context_window,
            Self::Bedrock(c) => c.context_window,
            Self::Local(c) => c.context_window,
        }
    }

    /// The answer length the model keeps to when a request gives no `max_tokens`, where ragway
    /// sets it (local models); remote models leave it to the provider.
    pub fn default_max_tokens(&self) -> Option<u32> {
        match self {
            Self::Local(c) => Some(c.max_tokens),
            Self::Openai(_) | Self::Bedrock(_) => None,
        }
    }

    /// Other models to try, in order, when this one fails for a reason of its own.
    pub fn fallbacks(&self) -> &[String] {
        match self {
            Self::Openai(c) => &c.fallbacks,
            Self::Bedrock(c) => &c.fallbacks,
            Self::Local(c) => &c.fallbacks,
        }
    }

    /// How often ragway calls this model for one request; Bedrock's older `max_attempts`
    /// stands in for `retry.attempts`.
    pub fn retry(&self) -> RetryPolicy {
        match self {
            Self::Openai(c) => c.retry.clone().unwrap_or_default(),
            Self::Bedrock(c) => match (&c.retry, c.max_attempts) {
                (Some(retry), _) => retry.clone(),
                (None, Some(attempts)) => RetryPolicy {
                    attempts,
                    ..RetryPolicy::default()
                },
                (None, None) => RetryPolicy::default(),
            },
            Self::Local(c) => c.retry.clone().unwrap_or_default(),
        }
    }

    /// When this model is set aside after failing repeatedly.
    pub fn cooldown(&self) -> CooldownPolicy {
        match self {
            Self::Openai(c) => c.cooldown.clone(),
            Self::Bedrock(c) => c.cooldown.clone(),
            Self::Local(c) => c.cooldown.clone(),
        }
    }

    fn parse_kind(
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
}

/// `retry = { attempts, initial_backoff_ms, max_backoff_ms }` of an `[[llm]]`: calls of one
/// model per request for failures worth retrying (throttling, 5xx, connection errors), the
/// first call included, with exponentially growing, fully jittered pauses between them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Calls in all, the first included; 1 turns retries off.
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// Upper bound of the first pause; each later one doubles it.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest pause, also the cap on a provider's `Retry-After`.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: default_retry_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

/// `cooldown = { after_failures, secs }` of an `[[llm]]`: after this many failed calls in a
/// row (retries included; only failures that are the provider's fault count), the model is
/// skipped for `secs`, then tried again.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CooldownPolicy {
    /// Failed calls in a row that start a cooldown; 0 never cools the model down.
    #[serde(default = "default_cooldown_failures")]
    pub after_failures: u32,
    #[serde(default = "default_cooldown_secs")]
    pub secs: f64,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        Self {
            after_failures: default_cooldown_failures(),
            secs: default_cooldown_secs(),
        }
    }
}

impl CooldownPolicy {
    /// [`Self::secs`] as a duration.
    pub fn duration(&self) -> Duration {
        secs(self.secs)
    }
}

/// An OpenAI-compatible Chat Completions endpoint (OpenAI itself, vLLM, llama.cpp's server, …).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiLlmConfig {
    pub name: String,
    /// The model id sent upstream.
    pub model: String,
    /// `env::NAME`; optional for servers that need no key.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    #[serde(default = "default_openai_base_url")]
    pub base_url: String,
    #[serde(default = "default_openai_context_window")]
    pub context_window: u32,
    /// Reasoning models (o1, o3, o4-mini, gpt-5) take `max_completion_tokens` and no
    /// `temperature`; detected from the model id unless set here.
    #[serde(default)]
    pub reasoning: Option<bool>,
    /// `[[llm]]` names tried in order when this model fails for a reason of its own.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    #[serde(default)]
    pub cooldown: CooldownPolicy,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

/// An AWS Bedrock model, called through the Converse API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockLlmConfig {
    pub name: String,
    /// Model or inference-profile id, e.g. `us.anthropic.claude-3-opus-20240229-v1:0`.
    pub model_id: String,
    /// AWS region; the standard chain (AWS_REGION, profile) when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint than AWS's own (a VPC endpoint, or a local fake in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default = "default_bedrock_context_window")]
    pub context_window: u32,
    /// Whether the model takes a system prompt; detected from the model id unless set here
    /// (Titan and Mistral Instruct do not).
    #[serde(default)]
    pub system_prompt: Option<bool>,
    /// The older spelling of `retry.attempts`, kept working; ragway makes every retry itself
    /// (the AWS SDK's own retries are off), so one setting covers all providers.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// `[[llm]]` names tried in order when this model fails for a reason of its own.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    #[serde(default)]
    pub cooldown: CooldownPolicy,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

/// A GGUF model run in-process by llama.cpp.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLlmConfig {
    pub name: String,
    /// The `.gguf` file.
    pub path: PathBuf,
    /// Tokens of context to allocate (prompt and answer together).
    #[serde(default = "default_local_context_window")]
    pub context_window: u32,
    /// CPU threads for generation; all cores when absent.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Chat template: a llama.cpp built-in name (`chatml`, `llama3`, `gemma`, …) for models
    /// whose GGUF carries none; the GGUF's own template when absent.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Answer length when a request gives no `max_tokens`.
    #[serde(default = "default_local_max_tokens")]
    pub max_tokens: u32,
    /// Requests generated at once; more wait their turn.
    #[serde(default = "default_local_parallel")]
    pub parallel: u32,
    /// `[[llm]]` names tried in order when this model fails for a reason of its own.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    #[serde(default)]
    pub cooldown: CooldownPolicy,
}

/// `[[embedder]]`: turns text into vectors for a vector store.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EmbedderConfig {
    Openai(OpenAiEmbedderConfig),
    Bedrock(BedrockEmbedderConfig),
    Local(LocalEmbedderConfig),
}

/// A path's last component (the whole path if it has none), as a name.
fn last_component(path: &std::path::Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
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

    fn parse_kind(
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
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
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

/// `[[vector_store]]`: a search backend that requests name in `vector_search_type`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VectorStoreConfig {
    Kendra(KendraStoreConfig),
    BedrockKb(BedrockKbStoreConfig),
    Faiss(FaissStoreConfig),
    Pgvector(PgvectorStoreConfig),
}

impl VectorStoreConfig {
    pub const KINDS: &'static [&'static str] = &["faiss", "kendra", "bedrock_kb", "pgvector"];

    pub fn name(&self) -> &str {
        match self {
            Self::Kendra(c) => &c.name,
            Self::BedrockKb(c) => &c.name,
            Self::Faiss(c) => &c.name,
            Self::Pgvector(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kendra(_) => "kendra",
            Self::BedrockKb(_) => "bedrock_kb",
            Self::Faiss(_) => "faiss",
            Self::Pgvector(_) => "pgvector",
        }
    }

    /// The reranker this store's candidates go through, if any.
    pub fn rerank(&self) -> Option<&RerankConfig> {
        match self {
            Self::Kendra(c) => c.rerank.as_ref(),
            Self::BedrockKb(c) => c.rerank.as_ref(),
            Self::Faiss(c) => c.rerank.as_ref(),
            Self::Pgvector(c) => c.rerank.as_ref(),
        }
    }

    /// The embedder this store needs, if it embeds queries itself.
    pub fn embedder(&self) -> Option<&str> {
        match self {
            Self::Kendra(_) | Self::BedrockKb(_) => None,
            Self::Faiss(c) => Some(&c.embedder),
            Self::Pgvector(c) => Some(&c.embedder),
        }
    }

    fn parse_kind(
        kind: &str,
        body: toml::Value,
        at: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Option<Self>> {
        Some(match kind {
            "kendra" => parse_entry(body, at, issues).map(Self::Kendra),
            "bedrock_kb" => parse_entry(body, at, issues).map(Self::BedrockKb),
            "faiss" => parse_entry(body, at, issues).map(Self::Faiss),
            "pgvector" => parse_entry(body, at, issues).map(Self::Pgvector),
            _ => return None,
        })
    }
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

    fn parse_kind(
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

/// An AWS Kendra index, searched with the Retrieve API. Read-only.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KendraStoreConfig {
    pub name: String,
    /// The index id, literally or as `env::NAME`.
    pub index_id: EnvOr,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Only documents whose attributes pass this filter (`{ _language_code = "en" }`; the
    /// syntax of a request's `filter`), on top of each request's own.
    #[serde(default)]
    pub attribute_filter: crate::Filter,
    /// Drop results Kendra is less confident about than this.
    #[serde(default)]
    pub min_score_confidence: Option<ScoreConfidence>,
    /// A `[[reranker]]` that orders this store's candidates before the best are kept.
    #[serde(default)]
    pub rerank: Option<RerankConfig>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

/// An Amazon Bedrock knowledge base, searched with bedrock-agent-runtime's Retrieve API.
/// Read-only: Bedrock ingests the knowledge base's data sources itself.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockKbStoreConfig {
    pub name: String,
    /// The knowledge base id (ten upper-case letters and digits), literally or as `env::NAME`.
    pub knowledge_base_id: EnvOr,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// `hybrid` or `semantic`; Bedrock chooses when absent (hybrid needs a vector store with
    /// a filterable text field, such as OpenSearch Serverless).
    #[serde(default)]
    pub search_type: Option<KnowledgeBaseSearchType>,
    /// Only chunks whose metadata passes this filter (`{ category = "physics" }`; the syntax
    /// of a request's `filter`), on top of each request's own.
    #[serde(default)]
    pub filter: crate::Filter,
    /// A `[[reranker]]` that orders this store's candidates before the best are kept.
    #[serde(default)]
    pub rerank: Option<RerankConfig>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

/// How a knowledge base is searched (Retrieve's `overrideSearchType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnowledgeBaseSearchType {
    /// Vector embeddings and the raw text together.
    Hybrid,
    /// Vector embeddings only.
    Semantic,
}

/// Whether a literal knowledge base id has the form Bedrock gives them: ten upper-case ASCII
/// letters and digits (`AES9P3MT9T`).
pub fn is_knowledge_base_id(id: &str) -> bool {
    id.len() == 10
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A local FAISS index with its documents: a folder holding the index file (readable by
/// Python's `faiss.read_index`), a SQLite document store and a manifest. Writable.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaissStoreConfig {
    pub name: String,
    /// The store's folder; created on first ingest.
    pub path: PathBuf,
    /// The `[[embedder]]` that embeds documents and queries.
    pub embedder: String,
    #[serde(default)]
    pub metric: Metric,
    #[serde(default)]
    pub index: IndexKind,
    /// HNSW: neighbours per node.
    #[serde(default = "default_hnsw_m")]
    pub hnsw_m: u32,
    /// HNSW: candidates examined per search.
    #[serde(default = "default_ef_search")]
    pub ef_search: u32,
    /// HNSW: the share of the index's vectors that may belong to deleted or replaced chunks
    /// (HNSW cannot remove a vector: it stays, skipped by searches) before a write rebuilds
    /// the index without them. 0 rebuilds at every delete.
    #[serde(default = "default_hnsw_max_deleted_share")]
    pub hnsw_max_deleted_share: f64,
    /// Chunk length in characters when ingesting.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Characters shared by neighbouring chunks.
    #[serde(default = "default_chunk_overlap")]
    pub chunk_overlap: usize,
    /// How the store searches: by meaning (`dense`, the vectors), by words (`keyword`, BM25
    /// over the chunks' text and title), or both fused (`hybrid`).
    #[serde(default)]
    pub retrieval: RetrievalMode,
    /// How `hybrid` fuses the two rankings.
    #[serde(default)]
    pub hybrid: HybridConfig,
    /// A `[[reranker]]` that orders this store's candidates before the best are kept.
    #[serde(default)]
    pub rerank: Option<RerankConfig>,
}

/// How a store searches.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalMode {
    /// Nearest vectors to the query's embedding.
    #[default]
    Dense,
    /// BM25 over the words of the chunks (English stemming).
    Keyword,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

impl RetrievalMode {
    pub const ALL: [RetrievalMode; 3] = [Self::Dense, Self::Keyword, Self::Hybrid];

    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Keyword => "keyword",
            Self::Hybrid => "hybrid",
        }
    }
}

/// Reciprocal rank fusion: a passage scores `weight / (rrf_k + rank)` in each ranking it is in
/// (rank from 1), summed.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    #[serde(default = "default_rrf_k")]
    pub rrf_k: f64,
    #[serde(default = "default_weight")]
    pub dense_weight: f64,
    #[serde(default = "default_weight")]
    pub keyword_weight: f64,
    /// Passages each ranking contributes before fusion: this many times `top_k`, at least 50.
    #[serde(default = "default_candidates_factor")]
    pub candidates_factor: usize,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            rrf_k: default_rrf_k(),
            dense_weight: default_weight(),
            keyword_weight: default_weight(),
            candidates_factor: default_candidates_factor(),
        }
    }
}

fn default_rrf_k() -> f64 {
    60.0
}
fn default_weight() -> f64 {
    1.0
}
fn default_candidates_factor() -> usize {
    5
}

/// PostgreSQL with the pgvector extension (RDS, Aurora, any Postgres >= 14): documents and
/// their chunks in tables of one schema, searched through an HNSW index. Writable, and shared
/// by every replica that names the same database.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgvectorStoreConfig {
    pub name: String,
    /// The connection string, always as `env::NAME` (it carries the password):
    /// `postgres://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    pub dsn: SecretRef,
    /// The `[[embedder]]` that embeds documents and queries.
    pub embedder: String,
    /// The Postgres schema holding this store's tables; `ragway_<name>` when absent.
    #[serde(default)]
    pub schema: Option<String>,
    /// A CA file to verify the server's certificate with (`sslrootcert` in the DSN does too).
    #[serde(default)]
    pub ssl_root_cert: Option<PathBuf>,
    #[serde(default)]
    pub metric: PgMetric,
    /// HNSW: neighbours per node (pgvector's default; a larger graph builds slower).
    #[serde(default = "default_pg_hnsw_m")]
    pub hnsw_m: u32,
    /// HNSW: candidates examined while building.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: u32,
    /// HNSW: candidates examined per search.
    #[serde(default = "default_ef_search")]
    pub ef_search: u32,
    /// Chunk length in characters when ingesting.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Characters shared by neighbouring chunks.
    #[serde(default = "default_chunk_overlap")]
    pub chunk_overlap: usize,
    /// Connections the pool keeps at most (per replica).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Seconds to wait for a connection (to open one, or for one of the pool to free up): how
    /// long a search waits before answering 503 when the database is down.
    #[serde(default = "default_pg_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Seconds Postgres may spend on one statement before cancelling it.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_secs: f64,
    /// How the store searches: by meaning (`dense`), by words (`keyword`, BM25 over Postgres's
    /// full-text index of the chunks' text and title), or both fused (`hybrid`).
    #[serde(default)]
    pub retrieval: RetrievalMode,
    /// How `hybrid` fuses the two rankings.
    #[serde(default)]
    pub hybrid: HybridConfig,
    /// A `[[reranker]]` that orders this store's candidates before the best are kept.
    #[serde(default)]
    pub rerank: Option<RerankConfig>,
}

impl PgvectorStoreConfig {
    /// The schema, given or derived from the name (`ragway_` + the name in lower case, with
    /// anything but letters, digits and `_` made `_`).
    pub fn schema(&self) -> String {
        self.schema.clone().unwrap_or_else(|| {
            let name: String = self
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("ragway_{name}")
        })
    }
}

/// Whether `name` is a plain Postgres identifier (written into SQL unquoted-safe).
pub fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// How a pgvector store compares vectors. Scores are higher-is-better either way: the cosine
/// similarity for `cosine` and `inner_product` (vectors are normalised for it, as in FAISS),
/// `1 / (1 + squared L2 distance)` for `l2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgMetric {
    #[default]
    Cosine,
    InnerProduct,
    L2,
}

/// How vectors are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Inner product of L2-normalised vectors, i.e. cosine similarity.
    #[default]
    InnerProduct,
    L2,
}

/// The FAISS index structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Exact search.
    #[default]
    Flat,
    /// Approximate search over a navigable small-world graph.
    Hnsw,
}

/// Kendra's confidence buckets, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScoreConfidence {
    NotAvailable,
    Low,
    Medium,
    High,
    VeryHigh,
}

impl ScoreConfidence {
    /// Kendra's own spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAvailable => "NOT_AVAILABLE",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::VeryHigh => "VERY_HIGH",
        }
    }
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}
fn default_top_k() -> usize {
    4
}
fn default_max_top_k() -> usize {
    100
}
fn default_shutdown_grace_secs() -> f64 {
    25.0
}

/// Longest grace period accepted; ECS itself stops waiting after at most 120 s.
const MAX_SHUTDOWN_GRACE_SECS: f64 = 3600.0;
fn default_answer_reserve() -> u32 {
    512
}
fn default_openai_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}
fn default_openai_context_window() -> u32 {
    128_000
}
fn default_bedrock_context_window() -> u32 {
    32_000
}
fn default_local_context_window() -> u32 {
    4096
}
fn default_local_max_tokens() -> u32 {
    256
}
fn default_local_parallel() -> u32 {
    1
}
fn default_embed_batch() -> usize {
    // Measured on 2 cores: batches of 8 embed ~25 % faster than 32 (cache-friendlier matmuls).
    8
}
fn default_embed_max_tokens() -> usize {
    256
}
fn default_hnsw_m() -> u32 {
    32
}
fn default_ef_search() -> u32 {
    64
}
pub fn default_hnsw_max_deleted_share() -> f64 {
    // Searches skip deleted vectors by searching deeper; at a fifth deleted a search asks
    // for a few more neighbours than top_k and recall holds (bench/hnsw_deletes.sh), while
    // a rebuild of 100k vectors every 20k deletes costs little next to one per delete.
    0.2
}
fn default_pg_connect_timeout() -> f64 {
    3.0
}
fn default_pg_hnsw_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    64
}
fn default_pool_size() -> u32 {
    10
}
fn default_statement_timeout() -> f64 {
    30.0
}
fn default_chunk_size() -> usize {
    1000
}
fn default_chunk_overlap() -> usize {
    150
}
fn default_true() -> bool {
    true
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
fn default_max_attempts() -> u32 {
    3
}
fn default_retry_attempts() -> u32 {
    3
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    5_000
}
fn default_cooldown_failures() -> u32 {
    5
}
fn default_cooldown_secs() -> f64 {
    30.0
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_timeout() -> f64 {
    120.0
}

/// Seconds from config as a `Duration` (validation has already refused non-positive values).
pub fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
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
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
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
    /// holds a [`SecretRef`] or an [`EnvOr`] (a store's DSN, a Redis URL) gets a line here, and
    /// both cover it; a new component kind fails to compile until its arm says what it reads.
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

    fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        self.deploy.validate(issues);
        self.check_secrets_stay_secret(issues);
        self.server.limits.validate(issues);
        self.server.state.validate(issues);
        self.server.tracing.validate(issues);
        self.server.cors.validate(issues);
        if let Some(hosts) = &self.server.allowed_hosts {
            crate::web::validate_allowed_hosts(hosts, issues);
        }
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
        self.server.auth.validate(&models, &stores, issues);
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

        if self.server.default_top_k == 0 {
            issue("server.default_top_k".into(), "must be at least 1".into());
        }
        if self.server.max_top_k < self.server.default_top_k {
            issue(
                "server.max_top_k".into(),
                format!(
                    "must be at least default_top_k ({})",
                    self.server.default_top_k
                ),
            );
        }
        let grace = self.server.shutdown_grace_secs;
        if !(grace.is_finite() && (0.0..=MAX_SHUTDOWN_GRACE_SECS).contains(&grace)) {
            issue(
                "server.shutdown_grace_secs".into(),
                format!(
                    "must be between 0 and {MAX_SHUTDOWN_GRACE_SECS} seconds, got {grace} \
                     (keep it below the container's stop timeout: 30 s on ECS by default)"
                ),
            );
        }
        let template = &self.server.prompt.template;
        for placeholder in ["{context}", "{question}"] {
            if !template.contains(placeholder) {
                issue(
                    "server.prompt.template".into(),
                    format!("must contain {placeholder}"),
                );
            }
        }

        let llm_names: Vec<&str> = self.llm.iter().map(LlmConfig::name).collect();
        for (i, llm) in self.llm.iter().enumerate() {
            let at = format!("llm[{i}]");
            if llm.context_window() == 0 {
                issue(format!("{at}.context_window"), "must be at least 1".into());
            }
            check_resilience(&at, llm, &llm_names, &mut issue);
            match llm {
                LlmConfig::Openai(c) => {
                    check_url(&format!("{at}.base_url"), &c.base_url, &mut issue);
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
                LlmConfig::Bedrock(c) => {
                    if let Some(url) = &c.endpoint_url {
                        check_url(&format!("{at}.endpoint_url"), url, &mut issue);
                    }
                    // A zero max_attempts is checked with the retry policy it stands for.
                    if c.max_attempts.is_some() && c.retry.is_some() {
                        issue(
                            format!("{at}.max_attempts"),
                            "give either max_attempts or retry.attempts (its newer spelling), \
                             not both"
                                .into(),
                        );
                    }
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
                LlmConfig::Local(c) => {
                    check_path(&format!("{at}.path"), &c.path, &mut issue);
                    at_least_one(
                        &format!("{at}.max_tokens"),
                        c.max_tokens as usize,
                        &mut issue,
                    );
                    at_least_one(&format!("{at}.parallel"), c.parallel as usize, &mut issue);
                    if c.threads == Some(0) {
                        issue(format!("{at}.threads"), "must be at least 1".into());
                    }
                }
            }
        }
        for (i, embedder) in self.embedder.iter().enumerate() {
            let at = format!("embedder[{i}]");
            match embedder {
                EmbedderConfig::Openai(c) => {
                    check_url(&format!("{at}.base_url"), &c.base_url, &mut issue);
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
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
                EmbedderConfig::Bedrock(c) => {
                    if let Some(url) = &c.endpoint_url {
                        check_url(&format!("{at}.endpoint_url"), url, &mut issue);
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
                    at_least_one(&format!("{at}.concurrency"), c.concurrency, &mut issue);
                    if c.max_attempts == 0 {
                        issue(format!("{at}.max_attempts"), "must be at least 1".into());
                    }
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
                EmbedderConfig::Local(c) => {
                    check_path(&format!("{at}.path"), &c.path, &mut issue);
                    at_least_one(&format!("{at}.batch_size"), c.batch_size, &mut issue);
                    at_least_one(&format!("{at}.max_tokens"), c.max_tokens, &mut issue);
                }
            }
        }
        for (i, reranker) in self.reranker.iter().enumerate() {
            let at = format!("reranker[{i}]");
            match reranker {
                RerankerConfig::Local(c) => {
                    check_path(&format!("{at}.path"), &c.path, &mut issue);
                    if c.max_tokens < 8 {
                        issue(
                            format!("{at}.max_tokens"),
                            format!("must be at least 8, got {}", c.max_tokens),
                        );
                    }
                }
                RerankerConfig::Bedrock(c) => {
                    if let Some(url) = &c.endpoint_url {
                        check_url(&format!("{at}.endpoint_url"), url, &mut issue);
                    }
                    if c.max_attempts == 0 {
                        issue(format!("{at}.max_attempts"), "must be at least 1".into());
                    }
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
            }
        }
        let rerankers: Vec<&str> = self.reranker.iter().map(RerankerConfig::name).collect();
        let embedders: Vec<&str> = self.embedder.iter().map(EmbedderConfig::name).collect();
        for (i, store) in self.vector_store.iter().enumerate() {
            let at = format!("vector_store[{i}]");
            if let Some(rerank) = store.rerank() {
                if !rerankers.contains(&rerank.reranker.as_str()) {
                    issue(
                        format!("{at}.rerank.reranker"),
                        format!(
                            "no reranker named \"{}\"; known: {}",
                            rerank.reranker,
                            known(&rerankers)
                        ),
                    );
                }
                if !(1..=MAX_RERANK_CANDIDATES).contains(&rerank.candidates) {
                    issue(
                        format!("{at}.rerank.candidates"),
                        format!(
                            "must be between 1 and {MAX_RERANK_CANDIDATES}, got {}",
                            rerank.candidates
                        ),
                    );
                }
            }
            if store.name() == NO_RETRIEVAL {
                issue(
                    format!("{at}.name"),
                    format!("\"{NO_RETRIEVAL}\" is reserved for requests without retrieval"),
                );
            }
            if let Some(wanted) = store.embedder()
                && !embedders.contains(&wanted)
            {
                issue(
                    format!("{at}.embedder"),
                    format!(
                        "no embedder named \"{wanted}\"; known: {}",
                        known(&embedders)
                    ),
                );
            }
            match store {
                VectorStoreConfig::Kendra(c) => {
                    if let Some(url) = &c.endpoint_url {
                        check_url(&format!("{at}.endpoint_url"), url, &mut issue);
                    }
                    if c.max_attempts == 0 {
                        issue(format!("{at}.max_attempts"), "must be at least 1".into());
                    }
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
                VectorStoreConfig::BedrockKb(c) => {
                    if let EnvOr::Literal(id) = &c.knowledge_base_id
                        && !is_knowledge_base_id(id)
                    {
                        issue(
                            format!("{at}.knowledge_base_id"),
                            format!(
                                "\"{id}\" is not a Bedrock knowledge base id: ten upper-case \
                                 letters and digits, as the console shows it (or env::NAME)"
                            ),
                        );
                    }
                    if let Some(url) = &c.endpoint_url {
                        check_url(&format!("{at}.endpoint_url"), url, &mut issue);
                    }
                    if c.max_attempts == 0 {
                        issue(format!("{at}.max_attempts"), "must be at least 1".into());
                    }
                    check_timeouts(&at, c.connect_timeout_secs, c.timeout_secs, &mut issue);
                }
                VectorStoreConfig::Faiss(c) => {
                    check_path(&format!("{at}.path"), &c.path, &mut issue);
                    check_chunking(&at, c.chunk_size, c.chunk_overlap, &mut issue);
                    if !(2..=256).contains(&c.hnsw_m) {
                        issue(
                            format!("{at}.hnsw_m"),
                            format!("must be between 2 and 256, got {}", c.hnsw_m),
                        );
                    }
                    at_least_one(&format!("{at}.ef_search"), c.ef_search as usize, &mut issue);
                    check_hybrid(&at, &c.hybrid, &mut issue);
                    if !(0.0..1.0).contains(&c.hnsw_max_deleted_share) {
                        issue(
                            format!("{at}.hnsw_max_deleted_share"),
                            format!(
                                "must be at least 0 and below 1 (a share of the index), got {}",
                                c.hnsw_max_deleted_share
                            ),
                        );
                    }
                }
                VectorStoreConfig::Pgvector(c) => {
                    check_chunking(&at, c.chunk_size, c.chunk_overlap, &mut issue);
                    check_hybrid(&at, &c.hybrid, &mut issue);
                    let schema = c.schema();
                    if !is_sql_identifier(&schema) {
                        issue(
                            format!("{at}.schema"),
                            format!(
                                "\"{schema}\" is not a plain Postgres identifier (lower-case \
                                 letters, digits and _, not starting with a digit, at most 63)"
                            ),
                        );
                    }
                    if let Some(path) = &c.ssl_root_cert {
                        check_path(&format!("{at}.ssl_root_cert"), path, &mut issue);
                    }
                    // pgvector's own bounds.
                    if !(2..=100).contains(&c.hnsw_m) {
                        issue(
                            format!("{at}.hnsw_m"),
                            format!("must be between 2 and 100, got {}", c.hnsw_m),
                        );
                    }
                    if !(4..=1000).contains(&c.ef_construction) || c.ef_construction < 2 * c.hnsw_m
                    {
                        issue(
                            format!("{at}.ef_construction"),
                            format!(
                                "must be between 4 and 1000 and at least twice hnsw_m, got {}",
                                c.ef_construction
                            ),
                        );
                    }
                    if !(1..=1000).contains(&c.ef_search) {
                        issue(
                            format!("{at}.ef_search"),
                            format!("must be between 1 and 1000, got {}", c.ef_search),
                        );
                    }
                    at_least_one(&format!("{at}.pool_size"), c.pool_size as usize, &mut issue);
                    for (field, value) in [
                        ("connect_timeout_secs", c.connect_timeout_secs),
                        ("statement_timeout_secs", c.statement_timeout_secs),
                    ] {
                        if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
                            issue(
                                format!("{at}.{field}"),
                                format!("must be between 0 and 86400 seconds, got {value}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Fallbacks name other configured models, once each; retry and cooldown values are sane.
fn check_resilience(
    at: &str,
    llm: &LlmConfig,
    llm_names: &[&str],
    issue: &mut impl FnMut(String, String),
) {
    let mut seen = Vec::new();
    for (j, fallback) in llm.fallbacks().iter().enumerate() {
        let path = format!("{at}.fallbacks[{j}]");
        if fallback == llm.name() {
            issue(path, format!("\"{fallback}\" is this model itself"));
        } else if !llm_names.contains(&fallback.as_str()) {
            issue(
                path,
                format!("no llm named \"{fallback}\"; known: {}", known(llm_names)),
            );
        } else if seen.contains(&fallback) {
            issue(path, format!("\"{fallback}\" is listed twice"));
        }
        seen.push(fallback);
    }
    let retry = llm.retry();
    if retry.attempts == 0 {
        let field = match llm {
            LlmConfig::Bedrock(c) if c.retry.is_none() => "max_attempts",
            _ => "retry.attempts",
        };
        issue(format!("{at}.{field}"), "must be at least 1".into());
    }
    if retry.max_backoff_ms < retry.initial_backoff_ms {
        issue(
            format!("{at}.retry.max_backoff_ms"),
            format!(
                "must be at least initial_backoff_ms ({})",
                retry.initial_backoff_ms
            ),
        );
    }
    let cooldown = llm.cooldown().secs;
    if !(cooldown.is_finite() && cooldown > 0.0 && cooldown <= 86_400.0) {
        issue(
            format!("{at}.cooldown.secs"),
            format!("must be between 0 and 86400 seconds, got {cooldown}"),
        );
    }
}

fn check_path(path: &str, value: &std::path::Path, issue: &mut impl FnMut(String, String)) {
    if value.as_os_str().is_empty() {
        issue(path.to_owned(), "must not be empty".into());
    }
}

fn check_chunking(
    at: &str,
    chunk_size: usize,
    chunk_overlap: usize,
    issue: &mut impl FnMut(String, String),
) {
    if chunk_size < 50 {
        issue(
            format!("{at}.chunk_size"),
            format!("must be at least 50 characters, got {chunk_size}"),
        );
    }
    if chunk_overlap >= chunk_size {
        issue(
            format!("{at}.chunk_overlap"),
            format!("must be smaller than chunk_size ({chunk_size})"),
        );
    }
}

/// A store's `hybrid` settings: weights and `rrf_k` non-negative numbers, not both weights 0.
fn check_hybrid(at: &str, hybrid: &HybridConfig, issue: &mut impl FnMut(String, String)) {
    for (key, value) in [
        ("rrf_k", hybrid.rrf_k),
        ("dense_weight", hybrid.dense_weight),
        ("keyword_weight", hybrid.keyword_weight),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            issue(
                format!("{at}.hybrid.{key}"),
                format!("must be a number of at least 0, got {value}"),
            );
        }
    }
    if hybrid.dense_weight + hybrid.keyword_weight <= 0.0 {
        issue(
            format!("{at}.hybrid"),
            "dense_weight and keyword_weight cannot both be 0".into(),
        );
    }
    at_least_one(
        &format!("{at}.hybrid.candidates_factor"),
        hybrid.candidates_factor,
        issue,
    );
}

fn at_least_one(path: &str, value: usize, issue: &mut impl FnMut(String, String)) {
    if value == 0 {
        issue(path.to_owned(), "must be at least 1".into());
    }
}

/// Lists names for an error message; "(none)" when there are none.
pub fn known(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

/// Names must be non-empty and unique within a section. Checked on the raw entries, so that
/// a duplicate is reported even when another entry fails to parse.
fn check_names(section: &str, entries: &[toml::Value], issues: &mut Vec<ConfigIssue>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        // Entries without a string name get serde's own "missing field" / "invalid type".
        let Some(name) = entry.get("name").and_then(toml::Value::as_str) else {
            continue;
        };
        let path = format!("{section}[{i}].name");
        if name.trim().is_empty() {
            issues.push(ConfigIssue {
                path,
                message: "must not be empty".into(),
            });
        } else if let Some(first) = seen.get(name) {
            let message = format!("duplicate name \"{name}\" (also {section}[{first}])");
            issues.push(ConfigIssue { path, message });
        } else {
            seen.insert(name, i);
        }
    }
}

fn check_url(path: &str, url: &str, issue: &mut impl FnMut(String, String)) {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len()
    {
        issue(
            path.to_owned(),
            format!("\"{url}\" is not an http:// or https:// URL"),
        );
    }
}

fn check_timeouts(at: &str, connect: f64, total: f64, issue: &mut impl FnMut(String, String)) {
    for (field, value) in [("connect_timeout_secs", connect), ("timeout_secs", total)] {
        if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
            issue(
                format!("{at}.{field}"),
                format!("must be between 0 and 86400 seconds, got {value}"),
            );
        }
    }
}

/// Splits the file into sections and parses each entry on its own, so that one bad entry
/// does not hide the errors of the others.
fn parse_sections(text: &str, issues: &mut Vec<ConfigIssue>) -> Option<Config> {
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            issues.push(ConfigIssue {
                path: String::new(),
                message: format!("not valid TOML: {e}"),
            });
            return None;
        }
    };
    let mut config = Config::default();
    let before = issues.len();
    let mut name_issues = Vec::new();
    for (key, value) in table {
        if let toml::Value::Array(entries) = &value {
            check_names(&key, entries, &mut name_issues);
        }
        match key.as_str() {
            "server" => {
                if let Some(server) = parse_entry(value, "server", issues) {
                    config.server = server;
                }
            }
            "llm" => {
                config.llm = parse_list(
                    value,
                    "llm",
                    LlmConfig::KINDS,
                    LlmConfig::parse_kind,
                    issues,
                )
            }
            "embedder" => {
                config.embedder = parse_list(
                    value,
                    "embedder",
                    EmbedderConfig::KINDS,
                    EmbedderConfig::parse_kind,
                    issues,
                )
            }
            "vector_store" => {
                config.vector_store = parse_list(
                    value,
                    "vector_store",
                    VectorStoreConfig::KINDS,
                    VectorStoreConfig::parse_kind,
                    issues,
                )
            }
            "reranker" => {
                config.reranker = parse_list(
                    value,
                    "reranker",
                    RerankerConfig::KINDS,
                    RerankerConfig::parse_kind,
                    issues,
                )
            }
            "deploy" => {
                if let Some(deploy) = parse_entry(value, "deploy", issues) {
                    config.deploy = deploy;
                }
            }
            other => issues.push(ConfigIssue {
                path: other.to_owned(),
                message: "unknown section; expected one of server, llm, embedder, vector_store, \
                     reranker, deploy"
                    .into(),
            }),
        }
    }
    let parsed = issues.len() == before;
    issues.extend(name_issues);
    parsed.then_some(config)
}

type ParseKind<T> = fn(&str, toml::Value, &str, &mut Vec<ConfigIssue>) -> Option<Option<T>>;

fn parse_list<T>(
    value: toml::Value,
    section: &str,
    kinds: &[&str],
    parse_kind: ParseKind<T>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<T> {
    let toml::Value::Array(entries) = value else {
        issues.push(ConfigIssue {
            path: section.to_owned(),
            message: format!("must be a list of tables, written [[{section}]]"),
        });
        return Vec::new();
    };
    let mut parsed = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let at = format!("{section}[{i}]");
        let toml::Value::Table(mut body) = entry else {
            issues.push(ConfigIssue {
                path: at,
                message: "must be a table".into(),
            });
            continue;
        };
        let kind = match body.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => {
                issues.push(ConfigIssue {
                    path: format!("{at}.type"),
                    message: "must be a string".into(),
                });
                continue;
            }
            None => {
                issues.push(ConfigIssue {
                    path: format!("{at}.type"),
                    message: format!("missing field; expected one of {}", kinds.join(", ")),
                });
                continue;
            }
        };
        match parse_kind(&kind, toml::Value::Table(body), &at, issues) {
            Some(Some(component)) => parsed.push(component),
            Some(None) => {}
            None => issues.push(ConfigIssue {
                path: format!("{at}.type"),
                message: format!(
                    "unknown type \"{kind}\"; expected one of {}",
                    kinds.join(", ")
                ),
            }),
        }
    }
    parsed
}

fn parse_entry<T: DeserializeOwned>(
    body: toml::Value,
    at: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(body) {
        Ok(value) => Some(value),
        Err(error) => {
            let mut path = at.to_owned();
            let inner = error.path().to_string();
            if inner != "." {
                path = format!("{path}.{inner}");
            }
            let message = error.inner().message().to_owned();
            issues.push(locate_field(path, message));
            None
        }
    }
}

/// Moves the field that serde names inside its message into the path:
/// "missing field `model_id`" at `llm[1]` becomes `llm[1].model_id: missing field`.
fn locate_field(path: String, message: String) -> ConfigIssue {
    for (prefix, label) in [
        ("missing field `", "missing field"),
        ("unknown field `", "unknown field"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((field, tail)) = rest.split_once('`')
        {
            let tail = tail.trim_start_matches(',').trim();
            let message = if tail.is_empty() {
                label.to_owned()
            } else {
                format!("{label}; {tail}")
            };
            let already_there = path.ends_with(&format!(".{field}"));
            let path = if already_there {
                path
            } else {
                format!("{path}.{field}")
            };
            return ConfigIssue { path, message };
        }
    }
    ConfigIssue { path, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<String> {
        match Config::parse(text, "test.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(ToString::to_string).collect(),
        }
    }

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

    #[test]
    fn a_faiss_stores_retrieval_mode_and_fusion_are_read_and_checked() {
        let store = |extra: &str| {
            format!(
                "[[embedder]]\nname = \"minilm\"\ntype = \"local\"\npath = \"m\"\n\
                 [[vector_store]]\nname = \"docs\"\ntype = \"faiss\"\npath = \"d\"\n\
                 embedder = \"minilm\"\n{extra}"
            )
        };
        let config = Config::parse(
            &store("retrieval = \"hybrid\"\nhybrid = { rrf_k = 10, keyword_weight = 2 }\n"),
            "test.toml",
        )
        .unwrap();
        let VectorStoreConfig::Faiss(faiss) = &config.vector_store[0] else {
            panic!("a faiss store");
        };
        assert_eq!(faiss.retrieval, RetrievalMode::Hybrid);
        assert_eq!(
            faiss.hybrid,
            HybridConfig {
                rrf_k: 10.0,
                dense_weight: 1.0,
                keyword_weight: 2.0,
                candidates_factor: 5
            }
        );
        let VectorStoreConfig::Faiss(plain) =
            &Config::parse(&store(""), "test.toml").unwrap().vector_store[0]
        else {
            panic!("a faiss store");
        };
        assert_eq!(plain.retrieval, RetrievalMode::Dense);

        assert_eq!(
            issues(&store(
                "hybrid = { rrf_k = -1, dense_weight = 0, keyword_weight = 0, candidates_factor = 0 }\n"
            )),
            [
                "vector_store[0].hybrid.rrf_k: must be a number of at least 0, got -1",
                "vector_store[0].hybrid: dense_weight and keyword_weight cannot both be 0",
                "vector_store[0].hybrid.candidates_factor: must be at least 1",
            ]
        );
        let unknown = Config::parse(&store("retrieval = \"sparse\"\n"), "test.toml")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("sparse") && unknown.contains("keyword"),
            "{unknown}"
        );
    }

    #[test]
    fn api_keys_and_limits_are_checked_with_their_paths() {
        let found = issues(
            r#"
[server.auth]
requests_per_minute = 0

[[server.auth.keys]]
name = "a"
key = "env::KEY_A"
sha256 = "abc"

[[server.auth.keys]]
name = "a"
sha256 = "not-hex"
models = ["gpt", "nope"]
stores = ["kendra"]
tokens_per_minute = 0

[[server.auth.keys]]
name = "c"

[server.limits]
max_body_bytes = 10
max_in_flight = 0
request_timeout_secs = -1.0

[[llm]]
name = "gpt"
type = "openai"
model = "gpt-4o"
"#,
        );
        let expected = [
            "server.limits.max_body_bytes: must be at least 1024, got 10",
            "server.limits.max_in_flight: must be at least 1",
            "server.limits.request_timeout_secs: must be more than 0",
            "server.auth.requests_per_minute: must be at least 1",
            "server.auth.keys[0]: give either `key` or `sha256`, not both",
            "server.auth.keys[1].name: \"a\" is used by another key",
            "server.auth.keys[1].sha256: must be 64 hex digits",
            "server.auth.keys[1].models[1]: no model named \"nope\"; known: gpt",
            "server.auth.keys[1].stores[0]: no store named \"kendra\"",
            "server.auth.keys[1].tokens_per_minute: must be at least 1",
            "server.auth.keys[2]: give the key as `key = \"env::NAME\"`",
        ];
        for wanted in expected {
            assert!(
                found.iter().any(|issue| issue.starts_with(wanted)),
                "missing {wanted:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        // A key written in the file instead of a reference is refused without echoing it.
        let found = issues("[[server.auth.keys]]\nname = \"x\"\nkey = \"rk-live-123\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("env::") && !found[0].contains("rk-live-123"),
            "{found:?}"
        );
    }

    #[test]
    fn write_grants_name_configured_stores_the_key_may_also_read() {
        let stores = r#"
[[vector_store]]
name = "faiss"
type = "faiss"
path = "data/faiss"
embedder = "e"

[[vector_store]]
name = "kendra"
type = "kendra"
index_id = "i"

[[embedder]]
name = "e"
type = "local"
path = "models/e"
"#;
        let found = issues(&format!(
            r#"
[server.auth]
write_stores = ["faiss", "gone"]

[[server.auth.keys]]
name = "reader"
sha256 = "{hash}"
stores = ["kendra"]
write_stores = ["faiss", "nope"]

[[server.auth.keys]]
name = "writer"
sha256 = "{hash}"
write_stores = ["faiss"]
{stores}"#,
            hash = "a".repeat(64)
        ));
        let expected = [
            "server.auth.write_stores[1]: no store named \"gone\"; known: faiss, kendra",
            "server.auth.keys[0].write_stores[0]: \"faiss\" is not in this key's `stores`",
            "server.auth.keys[0].write_stores[1]: no store named \"nope\"",
        ];
        for wanted in expected {
            assert!(
                found.iter().any(|issue| issue.starts_with(wanted)),
                "missing {wanted:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn the_shared_state_section_takes_an_env_reference_a_policy_and_a_short_timeout() {
        let config = Config::parse(
            "[server.state]\nredis_url = \"env::RAGWAY_REDIS_URL\"\n\
             redis_unavailable = \"fail_closed\"\nredis_timeout_secs = 0.2\n",
            "test.toml",
        )
        .unwrap();
        let state = &config.server.state;
        assert_eq!(
            state.redis_url.as_ref().map(SecretRef::var),
            Some("RAGWAY_REDIS_URL")
        );
        assert_eq!(
            state.redis_unavailable,
            crate::state::Unavailable::FailClosed
        );
        assert_eq!(state.redis_timeout(), Duration::from_millis(200));
        assert_eq!(state.redis_prefix, "ragway");
        // Without the section: memory, and the default policy.
        let config = Config::parse("", "test.toml").unwrap();
        assert_eq!(config.server.state.redis_url, None);

        let found = issues(
            "[server.state]\nredis_url = \"redis://:hunter2@cache:6379\"\n\
             redis_unavailable = \"maybe\"\nredis_timeout_secs = 0\nredis_prefix = \"a b{c}\"\n",
        );
        let text = found.join("\n");
        assert!(text.contains("server.state"), "{text}");
        assert!(!text.contains("hunter2"), "the URL is not echoed: {text}");
        let found = issues("[server.state]\nredis_timeout_secs = 0\nredis_prefix = \"a b{c}\"\n");
        assert_eq!(
            found,
            [
                "server.state.redis_timeout_secs: must be more than 0 and at most 10 seconds, got 0",
                "server.state.redis_prefix: \"a b{c}\" must be 1 to 64 letters, digits, '_', '-' \
                 or '.' (it starts every Redis key ragway writes)",
            ]
        );
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
    fn a_bedrock_knowledge_base_is_read_with_kendras_defaults_and_checks() {
        let config = Config::parse(
            r#"
            [[reranker]]
            name = "cohere"
            type = "bedrock"
            model_id = "cohere.rerank-v3-5:0"
            [[vector_store]]
            name = "kb"
            type = "bedrock_kb"
            knowledge_base_id = "AES9P3MT9T"
            region = "eu-west-1"
            search_type = "hybrid"
            filter = { category = "physics", year = { "$gte" = 2020 } }
            rerank = { reranker = "cohere", candidates = 30 }
            [[vector_store]]
            name = "from-env"
            type = "bedrock_kb"
            knowledge_base_id = "env::KB_ID"
            "#,
            "test.toml",
        )
        .unwrap();
        let VectorStoreConfig::BedrockKb(kb) = &config.vector_store[0] else {
            panic!("{:?}", config.vector_store[0]);
        };
        assert!(matches!(&kb.knowledge_base_id, EnvOr::Literal(id) if id == "AES9P3MT9T"));
        assert_eq!(kb.region.as_deref(), Some("eu-west-1"));
        assert_eq!(kb.search_type, Some(KnowledgeBaseSearchType::Hybrid));
        assert_eq!(
            kb.filter,
            crate::Filter::parse(
                &serde_json::json!({"category": "physics", "year": {"$gte": 2020}})
            )
            .unwrap()
        );
        assert_eq!(config.vector_store[0].kind(), "bedrock_kb");
        assert_eq!(config.vector_store[0].embedder(), None);
        assert_eq!(
            config.vector_store[0].rerank().map(|r| r.candidates),
            Some(30)
        );
        let VectorStoreConfig::BedrockKb(defaults) = &config.vector_store[1] else {
            panic!("{:?}", config.vector_store[1]);
        };
        assert_eq!(defaults.search_type, None);
        assert!(defaults.filter.is_empty());
        assert_eq!(defaults.max_attempts, default_max_attempts());
        assert_eq!(defaults.connect_timeout_secs, default_connect_timeout());
        assert_eq!(defaults.timeout_secs, default_timeout());

        // What does not read is reported first, each with its path...
        let found = issues(
            r#"
            [[vector_store]]
            name = "a"
            type = "bedrock_kb"
            knowledge_base_id = "AES9P3MT9T"
            search_type = "keyword"
            [[vector_store]]
            name = "b"
            type = "bedrock_kb"
            knowledge_base_id = "AES9P3MT9T"
            filter = { year = { "$between" = 1 } }
            "#,
        );
        let text = found.join("\n");
        assert!(
            text.contains("vector_store[0].search_type: unknown variant `keyword`"),
            "{text}"
        );
        assert!(
            text.contains("vector_store[1].filter: filter.year.$between: unknown operator"),
            "{text}"
        );
        assert_eq!(found.len(), 2, "{text}");
        // ...then what reads but is wrong, all together.
        let found = issues(
            r#"
            [[vector_store]]
            name = "a"
            type = "bedrock_kb"
            knowledge_base_id = "kb-lower"
            [[vector_store]]
            name = "b"
            type = "bedrock_kb"
            knowledge_base_id = "AES9P3MT9T"
            endpoint_url = "ftp://x"
            max_attempts = 0
            timeout_secs = 0
            [[vector_store]]
            name = "c"
            type = "bedrock_kb"
            knowledge_base_id = "AES9P3MT9"
            "#,
        );
        let text = found.join("\n");
        for expected in [
            "vector_store[0].knowledge_base_id: \"kb-lower\" is not a Bedrock knowledge base id",
            "vector_store[1].endpoint_url: \"ftp://x\" is not an http",
            "vector_store[1].max_attempts: must be at least 1",
            "vector_store[1].timeout_secs: must be between",
            "vector_store[2].knowledge_base_id: \"AES9P3MT9\" is not a Bedrock knowledge base id",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        assert_eq!(found.len(), 5, "{text}");
        assert!(is_knowledge_base_id("KB12345678"));
        assert!(!is_knowledge_base_id("kb12345678"));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let found = issues(
            r#"
            [server]
            bind = "nowhere"
            [[llm]]
            name = "a"
            type = "openai"
            model = "gpt-4o"
            [[llm]]
            name = "b"
            type = "bedrock"
            [[llm]]
            name = "c"
            type = "openai"
            model = "x"
            api_key = "sk-123"
            [[llm]]
            name = "d"
            type = "nonsense"
            [[llm]]
            name = "e"
            type = "openai"
            model = "x"
            colour = "blue"
            [[vector_store]]
            name = "k"
            type = "kendra"
            index_id = "idx"
            min_score_confidence = "SORT_OF"
            "#,
        );
        let text = found.join("\n");
        assert!(text.contains("server.bind:"), "{text}");
        assert!(text.contains("llm[1].model_id: missing field"), "{text}");
        assert!(
            text.contains("llm[2].api_key: secrets must be references"),
            "{text}"
        );
        assert!(
            !text.contains("sk-123"),
            "a secret leaked into an error: {text}"
        );
        assert!(
            text.contains(
                "llm[3].type: unknown type \"nonsense\"; expected one of openai, bedrock"
            ),
            "{text}"
        );
        assert!(text.contains("llm[4].colour: unknown field"), "{text}");
        assert!(
            text.contains("vector_store[0].min_score_confidence:"),
            "{text}"
        );
        assert_eq!(found.len(), 6, "{text}");
    }

    #[test]
    fn the_shutdown_grace_period_defaults_below_ecs_stop_timeout_and_is_checked() {
        let config = Config::parse("", "test.toml").unwrap();
        assert_eq!(config.server.shutdown_grace_secs, 25.0);
        assert_eq!(config.server.shutdown_grace(), Duration::from_secs(25));
        let config = Config::parse("[server]\nshutdown_grace_secs = 0.5", "test.toml").unwrap();
        assert_eq!(config.server.shutdown_grace(), Duration::from_millis(500));
        for bad in ["-1", "nan", "inf", "7200"] {
            let text = issues(&format!("[server]\nshutdown_grace_secs = {bad}")).join("\n");
            assert!(
                text.contains("server.shutdown_grace_secs: must be between 0 and 3600 seconds"),
                "{bad}: {text}"
            );
        }
        let text = issues("[server]\nshutdown_grace_secs = \"soon\"").join("\n");
        assert!(text.contains("server.shutdown_grace_secs:"), "{text}");
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

    #[test]
    fn stores_must_name_a_configured_embedder() {
        let found = issues(
            r#"
            [[embedder]]
            name = "minilm"
            type = "local"
            path = "models/all-MiniLM-L6-v2"
            [[vector_store]]
            name = "docs"
            type = "faiss"
            path = "data/docs"
            embedder = "x"
            chunk_size = 100
            chunk_overlap = 100
            "#,
        );
        assert!(
            found.contains(
                &"vector_store[0].embedder: no embedder named \"x\"; known: minilm".to_owned()
            ),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("vector_store[0].chunk_overlap: must be smaller")),
            "{found:?}"
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn a_faiss_store_allows_a_share_of_deleted_vectors_below_one() {
        let store = |share: &str| {
            format!(
                r#"
                [[embedder]]
                name = "minilm"
                type = "local"
                path = "models/all-MiniLM-L6-v2"
                [[vector_store]]
                name = "docs"
                type = "faiss"
                path = "data/docs"
                embedder = "minilm"
                index = "hnsw"
                {share}
                "#
            )
        };
        let config = Config::parse(&store(""), "test.toml").unwrap();
        let VectorStoreConfig::Faiss(faiss) = &config.vector_store[0] else {
            panic!("a faiss store");
        };
        assert_eq!(faiss.hnsw_max_deleted_share, 0.2);
        assert!(issues(&store("hnsw_max_deleted_share = 0")).is_empty());
        for bad in ["1", "1.5", "-0.1"] {
            assert_eq!(
                issues(&store(&format!("hnsw_max_deleted_share = {bad}"))),
                vec![format!(
                    "vector_store[0].hnsw_max_deleted_share: must be at least 0 and below 1 \
                     (a share of the index), got {}",
                    bad.parse::<f64>().unwrap()
                )]
            );
        }
    }

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

    #[test]
    fn type_errors_inside_an_entry_name_the_field() {
        let found = issues(
            r#"
            [[llm]]
            name = "a"
            type = "bedrock"
            model_id = "m"
            context_window = "big"
            "#,
        );
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("llm[0].context_window: invalid type"),
            "{found:?}"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_sections_are_reported() {
        assert!(issues("[[llm]\nname=")[0].starts_with("not valid TOML"));
        let found = issues("llm = 3\n[servr]\nbind = \"127.0.0.1:1\"");
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("servr: unknown section")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("llm: must be a list of tables")),
            "{found:?}"
        );
    }

    #[test]
    fn retries_fallbacks_and_cooldowns_have_defaults_and_are_checked() {
        let config = Config::parse(
            r#"
            [[llm]]
            name = "a"
            type = "openai"
            model = "m"
            fallbacks = ["b", "c"]
            retry = { attempts = 5, max_backoff_ms = 1000 }
            cooldown = { after_failures = 2, secs = 1.5 }
            [[llm]]
            name = "b"
            type = "bedrock"
            model_id = "m"
            max_attempts = 1
            [[llm]]
            name = "c"
            type = "local"
            path = "m.gguf"
            "#,
            "test.toml",
        )
        .unwrap();
        let [a, b, c] = &config.llm[..] else {
            panic!("three models expected");
        };
        assert_eq!(a.fallbacks(), ["b", "c"]);
        assert_eq!(
            a.retry(),
            RetryPolicy {
                attempts: 5,
                initial_backoff_ms: 200,
                max_backoff_ms: 1000
            }
        );
        assert_eq!(a.cooldown().duration(), Duration::from_millis(1500));
        assert_eq!(
            b.retry().attempts,
            1,
            "max_attempts stands for retry.attempts"
        );
        assert_eq!(c.retry(), RetryPolicy::default());
        assert_eq!(c.cooldown(), CooldownPolicy::default());
        assert!(c.fallbacks().is_empty());

        let found = issues(
            r#"
            [[llm]]
            name = "a"
            type = "openai"
            model = "m"
            fallbacks = ["a", "nope", "b", "b"]
            retry = { attempts = 0, initial_backoff_ms = 10, max_backoff_ms = 5 }
            cooldown = { secs = -1 }
            [[llm]]
            name = "b"
            type = "bedrock"
            model_id = "m"
            max_attempts = 2
            retry = { attempts = 2 }
            [[llm]]
            name = "c"
            type = "bedrock"
            model_id = "m"
            max_attempts = 0
            "#,
        );
        assert_eq!(
            found,
            [
                "llm[0].fallbacks[0]: \"a\" is this model itself",
                "llm[0].fallbacks[1]: no llm named \"nope\"; known: a, b, c",
                "llm[0].fallbacks[3]: \"b\" is listed twice",
                "llm[0].retry.attempts: must be at least 1",
                "llm[0].retry.max_backoff_ms: must be at least initial_backoff_ms (10)",
                "llm[0].cooldown.secs: must be between 0 and 86400 seconds, got -1",
                "llm[1].max_attempts: give either max_attempts or retry.attempts (its newer \
                 spelling), not both",
                "llm[2].max_attempts: must be at least 1",
            ]
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")),
            "{found:#?}"
        );
        let found =
            issues("[[llm]]\nname = 'd'\ntype = 'local'\npath = 'm'\nretry = { tries = 2 }");
        assert!(
            found[0].starts_with("llm[0].retry.tries: unknown field"),
            "{found:?}"
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
