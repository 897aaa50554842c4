//! The factory: builds every configured chat model, embedder and store once at start-up into
//! a read-only `Registry` that the server's handlers and the CLI share. Nothing else
//! constructs providers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ragway_core::config::{
    Config, EmbedderConfig, LlmConfig, NO_RETRIEVAL, RerankerConfig, RetryPolicy, ServerConfig,
    VectorStoreConfig, secs,
};
use ragway_core::{BuildError, ChatModel, DocumentStore, Embedder, Retriever};

use crate::error::EngineError;
use crate::resilience::Health;

/// A built chat model with what the server needs to know about it.
pub struct Llm {
    pub name: String,
    pub kind: &'static str,
    /// The model as its provider knows it (`gpt-4o`, a Bedrock model id, a GGUF file name).
    pub model_id: String,
    pub context_window: u32,
    /// The answer length the model keeps to when a request gives no `max_tokens`, where ragway
    /// sets it (local models); the provider's own otherwise.
    pub default_max_tokens: Option<u32>,
    pub model: Arc<dyn ChatModel>,
    /// Calls per request for failures worth retrying.
    pub retry: RetryPolicy,
    /// Models tried in order when this one fails for a reason of its own.
    pub fallbacks: Vec<String>,
    /// Recent failures, and whether the model is set aside for now.
    pub health: Health,
}

/// A built store.
pub struct Store {
    pub name: String,
    pub kind: &'static str,
    pub retriever: Arc<dyn Retriever>,
    /// Present for stores that take documents (FAISS).
    pub documents: Option<Arc<dyn DocumentStore>>,
}

/// A built embedder.
pub struct EmbedderModel {
    pub name: String,
    pub kind: &'static str,
    /// The model as its provider knows it (`text-embedding-3-small`, a Bedrock model id, a
    /// local model's folder name).
    pub model_id: String,
    pub embedder: Arc<dyn Embedder>,
}

/// Every component, by name. Shared read-only behind an `Arc`.
pub struct Registry {
    /// The `[server]` section: the prompt's assembly, `default_top_k`, the limits.
    pub server: ServerConfig,
    llms: BTreeMap<String, Llm>,
    stores: BTreeMap<String, Store>,
    embedders: BTreeMap<String, EmbedderModel>,
}

/// Components that could not be built, all of them.
#[derive(Debug, thiserror::Error)]
#[error("{} component{} could not be built:{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|e| format!("\n  {e}")).collect::<String>())]
pub struct StartupError(pub Vec<BuildError>);

/// How long `/readyz` waits for one component's answer.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One component's answer to "can you serve now?".
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ComponentCheck {
    /// `llm`, `embedder`, `vector_store` or `rate_limits`.
    pub component: &'static str,
    pub name: String,
    /// `ok`, `failing`, or `degraded`: failing, but ragway serves anyway (Redis under
    /// `fail_open`, which lets requests in uncounted).
    pub status: &'static str,
    /// Why it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ComponentCheck {
    pub fn is_ok(&self) -> bool {
        self.detail.is_none()
    }

    /// Whether ragway should get no traffic while this lasts.
    pub fn blocks_readiness(&self) -> bool {
        self.status == "failing"
    }
}

/// Runs one check within [`READY_CHECK_TIMEOUT`].
async fn check_one(
    component: &'static str,
    name: &str,
    check: impl Future<Output = Result<(), String>>,
) -> ComponentCheck {
    let detail = match tokio::time::timeout(READY_CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => None,
        Ok(Err(detail)) => Some(detail),
        Err(_) => Some(format!(
            "did not answer within {} s",
            READY_CHECK_TIMEOUT.as_secs()
        )),
    };
    ComponentCheck {
        component,
        name: name.to_owned(),
        status: if detail.is_none() { "ok" } else { "failing" },
        detail,
    }
}

/// Connect timeout of the HTTP client handed to components that make no HTTP calls.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Hands out pooled HTTP clients, one per distinct connect timeout, so that every component
/// with the same settings shares one connection pool.
#[derive(Default)]
struct HttpClients(HashMap<Duration, reqwest::Client>);

impl HttpClients {
    fn get(&mut self, connect_timeout: Duration) -> Result<reqwest::Client, String> {
        if let Some(client) = self.0.get(&connect_timeout) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("ragway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
        self.0.insert(connect_timeout, client.clone());
        Ok(client)
    }
}

impl Registry {
    /// Builds every component, collecting every failure before giving up.
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        // Before any component exists: their CPU work runs through this pool.
        let limits = &config.server.limits;
        if !ragway_core::cpu::configure(limits.cpu_workers(), limits.max_queued_jobs) {
            tracing::debug!("the CPU pool was sized before; this build keeps its size");
        }
        let aws = match aws_region_hint(config) {
            Some(region) => Some(ragway_aws::load_sdk_config(region).await),
            None => None,
        };
        let mut http = HttpClients::default();
        let mut errors = Vec::new();

        let mut llms = BTreeMap::new();
        for llm in &config.llm {
            let connect = match llm {
                LlmConfig::Openai(c) => secs(c.connect_timeout_secs),
                LlmConfig::Bedrock(c) => secs(c.connect_timeout_secs),
                LlmConfig::Local(_) => DEFAULT_CONNECT_TIMEOUT,
            };
            let built = http
                .get(connect)
                .map_err(|message| BuildError {
                    component: format!("llm \"{}\"", llm.name()),
                    message,
                })
                .and_then(|client| {
                    ragway_llm::build(
                        llm,
                        &ragway_llm::Shared {
                            http: client,
                            aws: aws.as_ref(),
                        },
                    )
                });
            match built {
                Ok(model) => {
                    llms.insert(
                        llm.name().to_owned(),
                        Llm {
                            name: llm.name().to_owned(),
                            kind: llm.kind(),
                            model_id: llm.model_id(),
                            context_window: llm.context_window(),
                            default_max_tokens: llm.default_max_tokens(),
                            model,
                            retry: llm.retry(),
                            fallbacks: llm.fallbacks().to_vec(),
                            health: Health::new(llm.cooldown()),
                        },
                    );
                }
                Err(error) => errors.push(error),
            }
        }

        let mut embedders = BTreeMap::new();
        for embedder in &config.embedder {
            let connect = match embedder {
                EmbedderConfig::Openai(c) => secs(c.connect_timeout_secs),
                EmbedderConfig::Bedrock(_) | EmbedderConfig::Local(_) => DEFAULT_CONNECT_TIMEOUT,
            };
            let built = http
                .get(connect)
                .map_err(|message| BuildError {
                    component: format!("embedder \"{}\"", embedder.name()),
                    message,
                })
                .and_then(|client| {
                    ragway_retrieval::embedder::build(
                        embedder,
                        &ragway_retrieval::embedder::Shared {
                            http: client,
                            aws: aws.as_ref(),
                        },
                    )
                });
            match built {
                Ok(built) => {
                    let model = EmbedderModel {
                        name: embedder.name().to_owned(),
                        kind: embedder.kind(),
                        model_id: embedder.model_id(),
                        embedder: built,
                    };
                    embedders.insert(model.name.clone(), model);
                }
                Err(error) => errors.push(error),
            }
        }

        // What the stores embed their queries with.
        let store_embedders = embedders
            .iter()
            .map(|(name, model)| (name.clone(), Arc::clone(&model.embedder)))
            .collect();
        let mut rerankers = BTreeMap::new();
        for reranker in &config.reranker {
            match ragway_retrieval::build_reranker(reranker, aws.as_ref()) {
                Ok(built) => {
                    rerankers.insert(reranker.name().to_owned(), built);
                }
                Err(error) => errors.push(error),
            }
        }
        let mut stores = BTreeMap::new();
        for store in &config.vector_store {
            let shared = ragway_retrieval::Shared {
                aws: aws.as_ref(),
                embedders: &store_embedders,
                rerankers: &rerankers,
            };
            match ragway_retrieval::build(store, &shared).await {
                Ok(built) => {
                    stores.insert(
                        store.name().to_owned(),
                        Store {
                            name: store.name().to_owned(),
                            kind: store.kind(),
                            retriever: built.retriever,
                            documents: built.documents,
                        },
                    );
                }
                Err(error) => errors.push(error),
            }
        }

        if !errors.is_empty() {
            return Err(StartupError(errors));
        }
        Ok(Self {
            server: config.server.clone(),
            llms,
            stores,
            embedders,
        })
    }

    /// A registry from components built elsewhere (tests, embedding ragway in another program).
    pub fn from_parts(server: ServerConfig, llms: Vec<Llm>, stores: Vec<Store>) -> Self {
        Self {
            server,
            llms: llms.into_iter().map(|l| (l.name.clone(), l)).collect(),
            stores: stores.into_iter().map(|s| (s.name.clone(), s)).collect(),
            embedders: BTreeMap::new(),
        }
    }

    /// Asks every component, all at once, whether it can serve now (`/readyz`): the local
    /// model's generation threads run, FAISS indexes match their documents, AWS credentials
    /// resolve. Each answer is bounded in time.
    pub async fn check_components(&self) -> Vec<ComponentCheck> {
        let llms = self
            .llms
            .values()
            .map(|llm| check_one("llm", &llm.name, llm.model.ready()));
        let embedders = self
            .embedders
            .iter()
            .map(|(name, model)| check_one("embedder", name, model.embedder.ready()));
        let stores = self
            .stores
            .values()
            .map(|store| check_one("vector_store", &store.name, store.retriever.ready()));
        let (mut checks, embedders, stores) = futures::join!(
            futures::future::join_all(llms),
            futures::future::join_all(embedders),
            futures::future::join_all(stores),
        );
        checks.extend(embedders);
        checks.extend(stores);
        checks
    }

    /// The chat model a request names, or a 400 that lists the valid names.
    pub fn llm(&self, name: &str) -> Result<&Llm, EngineError> {
        self.llms
            .get(name)
            .ok_or_else(|| EngineError::UnknownModel {
                name: name.to_owned(),
                known: self.llm_names(),
            })
    }

    /// The store a request names (`None` for "none"), or a 400 that lists the valid names.
    pub fn store(&self, name: &str) -> Result<Option<&Store>, EngineError> {
        if name == NO_RETRIEVAL {
            return Ok(None);
        }
        self.stores
            .get(name)
            .map(Some)
            .ok_or_else(|| EngineError::UnknownStore {
                name: name.to_owned(),
                known: self.store_names(),
            })
    }

    pub fn llms(&self) -> impl Iterator<Item = &Llm> {
        self.llms.values()
    }

    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        self.stores.values()
    }

    pub fn embedder(&self, name: &str) -> Option<&EmbedderModel> {
        self.embedders.get(name)
    }

    pub fn embedder_names(&self) -> Vec<String> {
        self.embedders.keys().cloned().collect()
    }

    pub fn llm_names(&self) -> Vec<String> {
        self.llms.keys().cloned().collect()
    }

    /// Store names a request may give, "none" last.
    pub fn store_names(&self) -> Vec<String> {
        self.stores
            .keys()
            .cloned()
            .chain([NO_RETRIEVAL.to_owned()])
            .collect()
    }
}

/// Whether any AWS component is configured, and if so a region to load the shared settings
/// with (the first one named), which spares the region lookup.
fn aws_region_hint(config: &Config) -> Option<Option<String>> {
    let mut regions = config
        .llm
        .iter()
        .filter_map(|llm| match llm {
            LlmConfig::Bedrock(c) => Some(c.region.clone()),
            LlmConfig::Openai(_) | LlmConfig::Local(_) => None,
        })
        .chain(
            config
                .embedder
                .iter()
                .filter_map(|embedder| match embedder {
                    EmbedderConfig::Bedrock(c) => Some(c.region.clone()),
                    EmbedderConfig::Openai(_) | EmbedderConfig::Local(_) => None,
                }),
        )
        .chain(config.vector_store.iter().filter_map(|store| match store {
            VectorStoreConfig::Kendra(c) => Some(c.region.clone()),
            VectorStoreConfig::BedrockKb(c) => Some(c.region.clone()),
            VectorStoreConfig::Faiss(_) | VectorStoreConfig::Pgvector(_) => None,
        }))
        .chain(
            config
                .reranker
                .iter()
                .filter_map(|reranker| match reranker {
                    RerankerConfig::Bedrock(c) => Some(c.region.clone()),
                    RerankerConfig::Local(_) => None,
                }),
        )
        .peekable();
    regions.peek()?;
    Some(regions.flatten().next())
}
