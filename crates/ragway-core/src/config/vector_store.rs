//! `[[vector_store]]`: the search backends requests name in `vector_search_type` (Kendra,
//! Bedrock knowledge bases, FAISS, pgvector), one config struct per kind, with how they search
//! (dense, keyword or hybrid), compare vectors and index them.

use std::path::PathBuf;

use serde::Deserialize;

use super::check::{at_least_one, check_path, check_timeouts, check_url, known};
use super::parse::parse_entry;
use super::reranker::{MAX_RERANK_CANDIDATES, RerankConfig};
use super::{NO_RETRIEVAL, default_connect_timeout, default_max_attempts, default_timeout};
use crate::{ConfigIssue, EnvOr, SecretRef};

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

    /// Parses an entry's body by its `type`: `None` for a type not known here, `Some(None)`
    /// when the body does not parse (its issue recorded).
    pub(super) fn parse_kind(
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

    /// What serde cannot check of the store at `at` (`vector_store[i]`), and that it names
    /// a configured embedder and reranker.
    pub(super) fn validate(
        &self,
        at: &str,
        embedders: &[&str],
        rerankers: &[&str],
        issue: &mut impl FnMut(String, String),
    ) {
        if let Some(rerank) = self.rerank() {
            if !rerankers.contains(&rerank.reranker.as_str()) {
                issue(
                    format!("{at}.rerank.reranker"),
                    format!(
                        "no reranker named \"{}\"; known: {}",
                        rerank.reranker,
                        known(rerankers)
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
        if self.name() == NO_RETRIEVAL {
            issue(
                format!("{at}.name"),
                format!("\"{NO_RETRIEVAL}\" is reserved for requests without retrieval"),
            );
        }
        if let Some(wanted) = self.embedder()
            && !embedders.contains(&wanted)
        {
            issue(
                format!("{at}.embedder"),
                format!(
                    "no embedder named \"{wanted}\"; known: {}",
                    known(embedders)
                ),
            );
        }
        match self {
            Self::Kendra(c) => {
                if let Some(url) = &c.endpoint_url {
                    check_url(&format!("{at}.endpoint_url"), url, issue);
                }
                if c.max_attempts == 0 {
                    issue(format!("{at}.max_attempts"), "must be at least 1".into());
                }
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
            Self::BedrockKb(c) => {
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
                    check_url(&format!("{at}.endpoint_url"), url, issue);
                }
                if c.max_attempts == 0 {
                    issue(format!("{at}.max_attempts"), "must be at least 1".into());
                }
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
            Self::Faiss(c) => {
                check_path(&format!("{at}.path"), &c.path, issue);
                check_chunking(at, c.chunk_size, c.chunk_overlap, issue);
                if !(2..=256).contains(&c.hnsw_m) {
                    issue(
                        format!("{at}.hnsw_m"),
                        format!("must be between 2 and 256, got {}", c.hnsw_m),
                    );
                }
                at_least_one(&format!("{at}.ef_search"), c.ef_search as usize, issue);
                check_hybrid(at, &c.hybrid, issue);
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
            Self::Pgvector(c) => {
                check_chunking(at, c.chunk_size, c.chunk_overlap, issue);
                check_hybrid(at, &c.hybrid, issue);
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
                    check_path(&format!("{at}.ssl_root_cert"), path, issue);
                }
                // pgvector's own bounds.
                if !(2..=100).contains(&c.hnsw_m) {
                    issue(
                        format!("{at}.hnsw_m"),
                        format!("must be between 2 and 100, got {}", c.hnsw_m),
                    );
                }
                if !(4..=1000).contains(&c.ef_construction) || c.ef_construction < 2 * c.hnsw_m {
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
                at_least_one(&format!("{at}.pool_size"), c.pool_size as usize, issue);
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

fn default_hnsw_m() -> u32 {
    32
}
pub fn default_hnsw_max_deleted_share() -> f64 {
    // Searches skip deleted vectors by searching deeper; at a fifth deleted a search asks
    // for a few more neighbours than top_k and recall holds (bench/hnsw_deletes.sh), while
    // a rebuild of 100k vectors every 20k deletes costs little next to one per delete.
    0.2
}
// FAISS and pgvector alike.
fn default_ef_search() -> u32 {
    64
}
fn default_chunk_size() -> usize {
    1000
}
fn default_chunk_overlap() -> usize {
    150
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

/// How vectors are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Inner product of L2-normalised vectors, i.e. cosine similarity.
    #[default]
    InnerProduct,
    L2,
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

fn default_pg_hnsw_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    64
}
fn default_pool_size() -> u32 {
    10
}
fn default_pg_connect_timeout() -> f64 {
    3.0
}
fn default_statement_timeout() -> f64 {
    30.0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::issues;

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
}
