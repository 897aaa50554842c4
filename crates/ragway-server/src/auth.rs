//! API keys: who is calling, what they may use and how much. A request carries its key as
//! `Authorization: Bearer <key>` or `x-api-key: <key>`; ragway keeps only SHA-256 digests of
//! the keys and compares the digest of the one presented against every digest in constant time,
//! so neither the key nor which bytes matched can leak through timing. Keys never reach a log:
//! logs and metrics name the key's holder.
//!
//! Open routes (`/`, `/healthz`, `/readyz`, `/metrics`, `/ui`, `/docs`, `/openapi.json`) are
//! not behind this layer; every other route is, and answers 401 in its own error shape.
//!
//! What a key may do: use models (`models`), read stores (`stores`: search, grounded answers)
//! and write them (`write_stores`: add and delete documents), each checked by the handler that
//! knows what the request names. How much: requests per minute, counted here for every request,
//! and tokens per minute, reserved by the handlers that call a model ([`Caller::reserve`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use ragway_core::BuildError;
use ragway_core::access::{AuthConfig, decode_sha256, parse_keys_file};
use ragway_core::config::NO_RETRIEVAL;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::{ApiError, in_route_shape};
use crate::rate_limit::reservation::Reservation;
use crate::rate_limit::{Limit, LimitStore};

/// The keys ragway accepts; without any, every request is let in as [`Caller::anonymous`].
pub struct Auth {
    keys: Vec<Key>,
    /// Whether a key is needed (with none readable, nobody gets in).
    required: bool,
    anonymous: Arc<Caller>,
}

struct Key {
    sha256: [u8; 32],
    caller: Arc<Caller>,
}

/// Who sent a request and what they may do; handlers find it in the request's extensions.
#[derive(Debug)]
pub struct Caller {
    /// The key's name (`anonymous` when auth is off).
    pub name: String,
    models: Option<BTreeSet<String>>,
    stores: Option<BTreeSet<String>>,
    /// Stores whose documents it may add and delete; all when `None` (auth off).
    write_stores: Option<BTreeSet<String>>,
    requests: Option<Limit>,
    tokens: Option<Arc<Limit>>,
}

impl Auth {
    /// No keys: the API is open.
    pub fn open() -> Self {
        Self {
            keys: Vec::new(),
            required: false,
            anonymous: Arc::new(Caller::anonymous()),
        }
    }

    /// Keys are needed but none is known: every request is refused. For callers of
    /// [`Auth::build`] that must serve something after it failed.
    pub fn closed() -> Self {
        Self {
            required: true,
            ..Self::open()
        }
    }

    /// Reads every key: `env::` references from the environment, hashes from the config, the
    /// keys file from disk; each key's limits count in `store`. Reports every key that cannot
    /// be read.
    pub fn build(config: &AuthConfig, store: &LimitStore) -> Result<Self, Vec<BuildError>> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        let caller = |name: String,
                      models: Option<&Vec<String>>,
                      stores: Option<&Vec<String>>,
                      write_stores: Option<&Vec<String>>,
                      rpm: Option<u32>,
                      tpm: Option<u64>| {
            let set = |names: &Vec<String>| names.iter().cloned().collect::<BTreeSet<_>>();
            Arc::new(Caller {
                requests: rpm
                    .or(config.requests_per_minute)
                    .map(|n| store.limit(&name, "requests", u64::from(n))),
                tokens: tpm
                    .or(config.tokens_per_minute)
                    .map(|n| Arc::new(store.limit(&name, "tokens", n))),
                models: models.map(set),
                stores: stores.map(set),
                write_stores: Some(set(write_stores.unwrap_or(&config.write_stores))),
                name,
            })
        };
        for (i, key) in config.keys.iter().enumerate() {
            let component = format!("server.auth.keys[{i}] (\"{}\")", key.name);
            let sha256 = match (&key.key, &key.sha256) {
                (Some(reference), _) => match reference.resolve() {
                    Ok(secret) => Sha256::digest(secret.expose_secret().as_bytes()).into(),
                    Err(message) => {
                        errors.push(BuildError { component, message });
                        continue;
                    }
                },
                (None, Some(hex)) => match decode_sha256(hex) {
                    Some(digest) => digest,
                    None => {
                        errors.push(BuildError {
                            component,
                            message: "sha256 must be 64 hex digits".into(),
                        });
                        continue;
                    }
                },
                (None, None) => {
                    errors.push(BuildError {
                        component,
                        message: "has neither `key` nor `sha256`".into(),
                    });
                    continue;
                }
            };
            keys.push(Key {
                sha256,
                caller: caller(
                    key.name.clone(),
                    key.models.as_ref(),
                    key.stores.as_ref(),
                    key.write_stores.as_ref(),
                    key.requests_per_minute,
                    key.tokens_per_minute,
                ),
            });
        }
        if let Some(path) = &config.keys_file {
            let component = format!("server.auth.keys_file ({})", path.display());
            match std::fs::read_to_string(path) {
                Ok(text) => match parse_keys_file(&text) {
                    Ok(hashed) => {
                        for entry in hashed {
                            // Every model and store to read; to write, the section's grant.
                            keys.push(Key {
                                sha256: entry.sha256,
                                caller: caller(entry.name, None, None, None, None, None),
                            });
                        }
                    }
                    Err(lines) => errors.extend(lines.into_iter().map(|message| BuildError {
                        component: component.clone(),
                        message,
                    })),
                },
                Err(error) => errors.push(BuildError {
                    component,
                    message: format!("cannot read: {error}"),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if config.is_enabled() && keys.is_empty() {
            return Err(vec![BuildError {
                component: "server.auth".into(),
                message: "the keys file holds no keys: nobody could call the API".into(),
            }]);
        }
        Ok(Self {
            required: !keys.is_empty(),
            keys,
            anonymous: Arc::new(Caller::anonymous()),
        })
    }

    /// Whether requests need a key.
    pub fn is_enabled(&self) -> bool {
        self.required
    }

    /// The caller a presented key belongs to.
    pub(crate) fn identify(&self, presented: &str) -> Option<&Arc<Caller>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        // Every digest is compared, whether or not one already matched.
        for key in &self.keys {
            if bool::from(key.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some(&key.caller);
            }
        }
        found
    }
}

impl Caller {
    fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            models: None,
            stores: None,
            write_stores: None,
            requests: None,
            tokens: None,
        }
    }

    /// A 403 unless this caller may use the model (chat or embedding) named `name`.
    pub fn check_model(&self, name: &str) -> Result<(), ApiError> {
        match &self.models {
            Some(allowed) if !allowed.contains(name) => Err(ApiError::Forbidden(format!(
                "this API key may not use the model \"{name}\"; it may use: {}",
                list(allowed)
            ))),
            _ => Ok(()),
        }
    }

    /// A 403 unless this caller may use the store named `name` ("none" is always allowed).
    pub fn check_store(&self, name: &str) -> Result<(), ApiError> {
        match &self.stores {
            Some(allowed) if name != NO_RETRIEVAL && !allowed.contains(name) => {
                Err(ApiError::Forbidden(format!(
                    "this API key may not use the store \"{name}\"; it may use: {}",
                    list(allowed)
                )))
            }
            _ => Ok(()),
        }
    }

    /// A 403 unless this caller may add and delete documents in the store named `name`: read
    /// it (`stores`) and write it (`write_stores`).
    pub fn check_write_store(&self, name: &str) -> Result<(), ApiError> {
        self.check_store(name)?;
        match &self.write_stores {
            Some(allowed) if !allowed.contains(name) => Err(ApiError::Forbidden(format!(
                "this API key may read the store \"{name}\" but not add or delete its documents: \
                 that needs the store in the key's `write_stores` (in [[server.auth.keys]], or \
                 [server.auth] write_stores for keys from keys_file); it may write: {}",
                list(allowed)
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the caller may use the model (for filtering model lists).
    pub fn may_use_model(&self, name: &str) -> bool {
        self.check_model(name).is_ok()
    }

    /// Whether the caller may use the store (for filtering store lists).
    pub fn may_use_store(&self, name: &str) -> bool {
        self.check_store(name).is_ok()
    }

    /// Whether the caller may add and delete documents in the store.
    pub fn may_write_store(&self, name: &str) -> bool {
        self.check_write_store(name).is_ok()
    }

    /// Reserves `tokens` against the key's tokens-per-minute until the answer is settled (see
    /// [`crate::rate_limit::reservation`]): a 429 with the wait when they do not fit, a 503 when
    /// the limits cannot be counted and `[server.state]` says to refuse.
    pub async fn reserve(&self, tokens: u64) -> Result<Reservation, ApiError> {
        Reservation::take(self.tokens.as_ref(), tokens).await
    }

    /// Counts one request against the key's requests-per-minute: a 429 with the wait when it
    /// is spent.
    pub(crate) async fn admit(&self) -> Result<(), ApiError> {
        if let Some(limit) = &self.requests {
            limit.take(1).await?;
        }
        Ok(())
    }
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, else `x-api-key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, key) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|key| !key.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// The middleware: identifies the caller, applies its request and token limits, and hands
/// it to the handler; a 401 or 429 in the route's error shape otherwise.
pub async fn authenticate(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let caller = if auth.is_enabled() {
        let Some(presented) = presented_key(request.headers()) else {
            return in_route_shape(
                &path,
                ApiError::Unauthorized(
                    "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`"
                        .into(),
                ),
            );
        };
        match auth.identify(presented) {
            Some(caller) => caller.clone(),
            None => {
                tracing::info!(path, "refused a request with an unknown API key");
                return in_route_shape(&path, ApiError::Unauthorized("invalid API key".into()));
            }
        }
    } else {
        auth.anonymous.clone()
    };
    if let Err(error) = caller.admit().await {
        return in_route_shape(&path, error);
    }
    tracing::Span::current().record("key", caller.name.as_str());
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use axum::http::HeaderValue;
    use ragway_core::access::ApiKeyConfig;

    fn config(keys: Vec<ApiKeyConfig>) -> AuthConfig {
        AuthConfig {
            keys,
            ..AuthConfig::default()
        }
    }

    fn key(name: &str, sha256: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            key: None,
            sha256: Some(sha256.into()),
            models: Some(vec!["gpt-4o".into()]),
            stores: Some(vec![]),
            write_stores: None,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }

    fn build(config: &AuthConfig) -> Result<Auth, Vec<BuildError>> {
        Auth::build(config, &LimitStore::memory())
    }

    fn hex(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn keys_are_recognised_by_their_hash_and_others_are_not() {
        let auth = build(&config(vec![
            key("a", &hex("key-a")),
            key("b", &hex("key-b")),
        ]))
        .unwrap();
        assert!(auth.is_enabled());
        assert_eq!(auth.identify("key-b").unwrap().name, "b");
        assert_eq!(auth.identify("key-a").unwrap().name, "a");
        assert!(auth.identify("key-c").is_none());
        assert!(auth.identify("").is_none());
        assert!(auth.identify("key-a ").is_none());
    }

    #[test]
    fn allow_lists_refuse_other_models_and_stores_but_never_no_retrieval() {
        let auth = build(&config(vec![key("a", &hex("key-a"))])).unwrap();
        let caller = auth.identify("key-a").unwrap();
        caller.check_model("gpt-4o").unwrap();
        let refused = caller.check_model("claude").unwrap_err().to_string();
        assert!(
            refused.contains("\"claude\"") && refused.contains("gpt-4o"),
            "{refused}"
        );
        caller.check_store(NO_RETRIEVAL).unwrap();
        assert!(caller.check_store("faiss").is_err());
        // The anonymous caller may do anything.
        Auth::open().anonymous.check_model("claude").unwrap();
    }

    #[test]
    fn env_keys_that_are_unset_are_reported_by_path_without_a_value() {
        let mut entry = key("team", &hex("x"));
        entry.sha256 = None;
        entry.key = Some(ragway_core::SecretRef::parse("env::RAGWAY_TEST_UNSET_KEY_VAR").unwrap());
        let errors = build(&config(vec![entry])).err().unwrap();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].component.starts_with("server.auth.keys[0]"),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.contains("RAGWAY_TEST_UNSET_KEY_VAR"));
    }

    #[test]
    fn keys_come_from_bearer_or_x_api_key_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert("x-api-key", HeaderValue::from_static(" k1 "));
        assert_eq!(presented_key(&headers), Some("k1"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(presented_key(&headers), Some("k2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(presented_key(&headers), None);
    }

    #[test]
    fn reading_and_writing_a_store_are_separate_grants() {
        let mut reader = key("reader", &hex("key-r"));
        reader.stores = Some(vec!["faiss".into(), "kendra".into()]);
        reader.write_stores = Some(vec![]);
        let mut plain = key("plain", &hex("key-p"));
        plain.stores = None;
        let mut writer = key("writer", &hex("key-w"));
        writer.stores = None;
        writer.write_stores = Some(vec!["faiss".into()]);
        let mut auth_config = config(vec![reader, plain, writer]);
        let dir = std::env::temp_dir().join(format!("ragway-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys_file = dir.join("keys.sha256");
        std::fs::write(&keys_file, format!("{} ops\n", hex("key-f"))).unwrap();
        auth_config.keys_file = Some(keys_file.clone());
        let auth = build(&auth_config).unwrap();

        let reader = auth.identify("key-r").unwrap();
        reader.check_store("faiss").unwrap();
        let refused = reader.check_write_store("faiss").unwrap_err();
        assert!(matches!(refused, ApiError::Forbidden(_)), "{refused:?}");
        let message = refused.to_string();
        assert!(
            message.contains("\"faiss\"") && message.contains("write_stores"),
            "the 403 names the store and the grant it lacks: {message}"
        );
        assert!(!reader.may_write_store("kendra"));

        let writer = auth.identify("key-w").unwrap();
        writer.check_write_store("faiss").unwrap();
        assert!(!writer.may_write_store("kendra"));
        assert!(!auth.identify("key-p").unwrap().may_write_store("faiss"));

        // A key from the file reads everything and writes nothing, unless the section grants it.
        let file_key = auth.identify("key-f").unwrap();
        file_key.check_store("kendra").unwrap();
        assert!(!file_key.may_write_store("faiss"));
        auth_config.write_stores = vec!["faiss".into()];
        let auth = build(&auth_config).unwrap();
        auth.identify("key-f")
            .unwrap()
            .check_write_store("faiss")
            .unwrap();
        // The section's grant is also the default of configured keys without their own.
        assert!(auth_config.keys[1].write_stores.is_none());
        assert!(auth.identify("key-p").unwrap().may_write_store("faiss"));
        assert!(!auth.identify("key-r").unwrap().may_write_store("faiss"));
        std::fs::remove_dir_all(&dir).unwrap();

        // With auth off, writing stays open.
        Auth::open().anonymous.check_write_store("faiss").unwrap();
    }

    #[tokio::test]
    async fn a_key_over_its_request_limit_gets_429_with_the_wait() {
        let mut entry = key("a", &hex("key-a"));
        entry.requests_per_minute = Some(2);
        let auth = build(&config(vec![entry])).unwrap();
        let caller = auth.identify("key-a").unwrap();
        caller.admit().await.unwrap();
        caller.admit().await.unwrap();
        match caller.admit().await {
            Err(ApiError::RateLimited {
                retry_after,
                message,
            }) => {
                assert!(retry_after >= Duration::from_secs(1));
                assert!(message.contains("2 requests per minute"), "{message}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
    }
}
