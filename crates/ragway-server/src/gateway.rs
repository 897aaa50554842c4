//! What the server serves: the engine's registry of models and stores, who may call it (the
//! API keys, and where their limits are counted), and the answers it keeps (the response
//! cache). Built once at start-up and shared read-only by every handler.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use ragway_core::config::{CacheConfig, Config, ServerConfig};
use ragway_engine::{ComponentCheck, Llm, Registry, StartupError, Store};

use crate::auth::Auth;
use crate::cache::AnswerCache;
use crate::rate_limit::LimitStore;

/// The engine's registry with the server's access control and response cache.
pub struct Gateway {
    pub registry: Registry,
    /// The API keys and what each may do.
    pub auth: Arc<Auth>,
    /// Where the keys' limits are counted (checked by `/readyz` when it is Redis).
    pub limit_store: LimitStore,
    /// Kept answers: in the limits' Redis when there is one, else in memory.
    pub cache: AnswerCache,
    /// The models whose answers are kept, with how.
    caching: HashMap<String, CacheConfig>,
}

/// A gateway is used as its registry (`gateway.llm(name)`, `gateway.prepare(...)`): access
/// control is what it adds, not what it changes.
impl Deref for Gateway {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl Gateway {
    /// Builds the keys, their limit store and every component, collecting every failure
    /// before giving up.
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        let mut errors = Vec::new();
        let limit_store = LimitStore::build(&config.server.state).unwrap_or_else(|failed| {
            errors.push(failed);
            LimitStore::memory()
        });
        let auth = Auth::build(&config.server.auth, &limit_store).unwrap_or_else(|failed| {
            errors.extend(failed);
            Auth::open()
        });
        let cache = AnswerCache::build(&config.server, limit_store.redis());
        let caching = config
            .llm
            .iter()
            .filter_map(|llm| Some((llm.name().to_owned(), llm.cache()?.clone())))
            .collect();
        match Registry::build(config).await {
            Ok(registry) if errors.is_empty() => Ok(Self {
                registry,
                auth: Arc::new(auth),
                limit_store,
                cache,
                caching,
            }),
            Ok(_) => Err(StartupError(errors)),
            Err(StartupError(more)) => {
                errors.extend(more);
                Err(StartupError(errors))
            }
        }
    }

    /// A gateway over components built elsewhere (tests, embedding ragway in another program).
    /// Keys (or a Redis URL) that cannot be read lock the API rather than open it.
    pub fn from_parts(server: ServerConfig, llms: Vec<Llm>, stores: Vec<Store>) -> Self {
        let (limit_store, auth) = match LimitStore::build(&server.state) {
            Ok(store) => {
                let auth = Auth::build(&server.auth, &store).unwrap_or_else(|_| Auth::closed());
                (store, auth)
            }
            Err(_) => (LimitStore::memory(), Auth::closed()),
        };
        Self {
            cache: AnswerCache::build(&server, limit_store.redis()),
            caching: HashMap::new(),
            registry: Registry::from_parts(server, llms, stores),
            auth: Arc::new(auth),
            limit_store,
        }
    }

    /// How `model`'s answers are kept, if they are.
    pub fn caching(&self, model: &str) -> Option<&CacheConfig> {
        self.caching.get(model)
    }

    /// Every component's answer to "can you serve now?" (`/readyz`), and Redis's when the
    /// keys' limits are counted there.
    pub async fn check_components(&self) -> Vec<ComponentCheck> {
        let (mut checks, limits) =
            futures::join!(self.registry.check_components(), self.limit_store.check());
        checks.extend(limits);
        checks
    }
}
