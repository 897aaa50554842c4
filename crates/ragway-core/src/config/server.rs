//! `[server]`: where ragway listens, how prompts are assembled (`[server.prompt]`), and the
//! subsections kept in their own modules (`auth`, `limits`, `state`, `tracing`, `cors`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigIssue;

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
    /// Images in chat messages: their size, and the hosts whose image URLs are fetched.
    #[serde(default)]
    pub images: crate::image::ImagesConfig,
    /// The response cache's bound in memory (the models opt in with `cache = { ttl_secs }`).
    #[serde(default)]
    pub cache: super::AnswerCacheConfig,
}

impl ServerConfig {
    /// [`Self::shutdown_grace_secs`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::try_from_secs_f64(self.shutdown_grace_secs)
            .unwrap_or(Duration::from_secs_f64(default_shutdown_grace_secs()))
    }

    /// Checks the section and its subsections; `models` and `stores` are the names API keys
    /// may grant.
    pub(super) fn validate(&self, models: &[&str], stores: &[&str], issues: &mut Vec<ConfigIssue>) {
        self.limits.validate(issues);
        self.state.validate(issues);
        self.tracing.validate(issues);
        self.cors.validate(issues);
        self.images.validate(issues);
        self.cache.validate(issues);
        if let Some(hosts) = &self.allowed_hosts {
            crate::web::validate_allowed_hosts(hosts, issues);
        }
        self.auth.validate(models, stores, issues);
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

        if self.default_top_k == 0 {
            issue("server.default_top_k".into(), "must be at least 1".into());
        }
        if self.max_top_k < self.default_top_k {
            issue(
                "server.max_top_k".into(),
                format!("must be at least default_top_k ({})", self.default_top_k),
            );
        }
        let grace = self.shutdown_grace_secs;
        if !(grace.is_finite() && (0.0..=MAX_SHUTDOWN_GRACE_SECS).contains(&grace)) {
            issue(
                "server.shutdown_grace_secs".into(),
                format!(
                    "must be between 0 and {MAX_SHUTDOWN_GRACE_SECS} seconds, got {grace} \
                     (keep it below the container's stop timeout: 30 s on ECS by default)"
                ),
            );
        }
        let template = &self.prompt.template;
        for placeholder in ["{context}", "{question}"] {
            if !template.contains(placeholder) {
                issue(
                    "server.prompt.template".into(),
                    format!("must contain {placeholder}"),
                );
            }
        }
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
            images: crate::image::ImagesConfig::default(),
            cache: super::AnswerCacheConfig::default(),
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

fn default_answer_reserve() -> u32 {
    512
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretRef;
    use crate::config::Config;
    use crate::config::tests::issues;

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
}
