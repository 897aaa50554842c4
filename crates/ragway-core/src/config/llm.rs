//! `[[llm]]`: the chat models, one config struct per provider, with the fields every provider
//! shares (`name`, `fallbacks`, `retry`, `cooldown`) written once, and the retry and cooldown
//! policies.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::cache::CacheConfig;
use super::check::{at_least_one, check_path, check_timeouts, check_url, known};
use super::parse::parse_entry;
use super::{
    default_connect_timeout, default_openai_base_url, default_timeout, last_component, secs,
};
use crate::{ConfigIssue, SecretRef};

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
    /// How this model's answers are kept, if they are.
    pub fn cache(&self) -> Option<&CacheConfig> {
        match self {
            Self::Openai(c) => c.cache.as_ref(),
            Self::Bedrock(c) => c.cache.as_ref(),
            Self::Local(c) => c.cache.as_ref(),
        }
    }

    pub fn cooldown(&self) -> CooldownPolicy {
        match self {
            Self::Openai(c) => c.cooldown.clone(),
            Self::Bedrock(c) => c.cooldown.clone(),
            Self::Local(c) => c.cooldown.clone(),
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

    /// What serde cannot check of the model at `at` (`llm[i]`); `llm_names` are every
    /// model's, for its fallbacks.
    pub(super) fn validate(
        &self,
        at: &str,
        llm_names: &[&str],
        issue: &mut impl FnMut(String, String),
    ) {
        if self.context_window() == 0 {
            issue(format!("{at}.context_window"), "must be at least 1".into());
        }
        check_resilience(at, self, llm_names, issue);
        if let Some(cache) = self.cache() {
            cache.validate(&format!("{at}.cache"), issue);
        }
        match self {
            Self::Openai(c) => {
                check_url(&format!("{at}.base_url"), &c.base_url, issue);
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
            Self::Bedrock(c) => {
                if let Some(url) = &c.endpoint_url {
                    check_url(&format!("{at}.endpoint_url"), url, issue);
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
                check_timeouts(at, c.connect_timeout_secs, c.timeout_secs, issue);
            }
            Self::Local(c) => {
                check_path(&format!("{at}.path"), &c.path, issue);
                at_least_one(&format!("{at}.max_tokens"), c.max_tokens as usize, issue);
                at_least_one(&format!("{at}.parallel"), c.parallel as usize, issue);
                if c.threads == Some(0) {
                    issue(format!("{at}.threads"), "must be at least 1".into());
                }
            }
        }
    }
}

/// Declares the config struct of one `[[llm]]` provider with the fields every provider shares:
/// `name` first, then the provider's own fields, then `fallbacks`, `retry` and `cooldown`, then
/// the provider's fields given in `then { ... }`. A shared field added here reaches every
/// provider; [`LlmConfig`]'s accessors are the one place that reads them.
///
/// Not a struct under `#[serde(flatten)]`: serde does not support flatten together with
/// `deny_unknown_fields`, so an unknown key would no longer be reported with the fields that
/// are known, and an error inside a shared field (`llm[0].retry.tries: unknown field`) would
/// lose its path. The fields keep their order: it is the order in which serde lists them in
/// "unknown field" messages.
macro_rules! llm_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($own:tt)* }
        $(then { $($after:tt)* })?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub name: String,
            $($own)*
            /// `[[llm]]` names tried in order when this model fails for a reason of its own.
            #[serde(default)]
            pub fallbacks: Vec<String>,
            /// Read through [`LlmConfig::retry`], which fills in the defaults (and, for
            /// Bedrock, the older `max_attempts`).
            #[serde(default)]
            pub retry: Option<RetryPolicy>,
            #[serde(default)]
            pub cooldown: CooldownPolicy,
            /// Keep this model's whole answers and give them again to the same question.
            #[serde(default)]
            pub cache: Option<CacheConfig>,
            $($($after)*)?
        }
    };
}

llm_config! {
    /// An OpenAI-compatible Chat Completions endpoint (OpenAI itself, vLLM, llama.cpp's server, …).
    pub struct OpenAiLlmConfig {
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
    }
    then {
        #[serde(default = "default_connect_timeout")]
        pub connect_timeout_secs: f64,
        #[serde(default = "default_timeout")]
        pub timeout_secs: f64,
    }
}

fn default_openai_context_window() -> u32 {
    128_000
}

llm_config! {
    /// An AWS Bedrock model, called through the Converse API.
    pub struct BedrockLlmConfig {
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
        /// Whether the model answers in a given JSON Schema (`response_format`, sent as
        /// Converse's `outputConfig`); detected from the model id unless set here (the
        /// families Bedrock lists: Claude 4.5 and later, Qwen, DeepSeek, Mistral, Gemma, ...).
        #[serde(default)]
        pub structured_output: Option<bool>,
        /// Whether the model reads images in messages; detected from the model id unless set
        /// here (Claude 3 and later, Nova Lite/Pro/Premier, Llama 3.2 11B/90B and Llama 4,
        /// Pixtral).
        #[serde(default)]
        pub images: Option<bool>,
        /// The older spelling of `retry.attempts`, kept working; ragway makes every retry itself
        /// (the AWS SDK's own retries are off), so one setting covers all providers.
        #[serde(default)]
        pub max_attempts: Option<u32>,
    }
    then {
        #[serde(default = "default_connect_timeout")]
        pub connect_timeout_secs: f64,
        #[serde(default = "default_timeout")]
        pub timeout_secs: f64,
    }
}

fn default_bedrock_context_window() -> u32 {
    32_000
}

llm_config! {
    /// A GGUF model run in-process by llama.cpp.
    pub struct LocalLlmConfig {
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
    }
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

fn default_retry_attempts() -> u32 {
    3
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    5_000
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

fn default_cooldown_failures() -> u32 {
    5
}
fn default_cooldown_secs() -> f64 {
    30.0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::issues;

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
}
