//! Errors shared by every component: what a provider (LLM, retriever, embedder) can fail with,
//! and what a configuration can be wrong about. The server maps them to HTTP in one place.

use std::fmt;
use std::time::Duration;

/// A failure of a remote or local component while serving a request.
///
/// Messages carry what the provider said, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an error (HTTP status when there was one).
    #[error("{provider} returned an error{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Upstream {
        provider: String,
        status: Option<u16>,
        message: String,
    },

    /// The provider did not answer in time.
    #[error("{provider} did not answer within {}s", after.as_secs_f64())]
    Timeout { provider: String, after: Duration },

    /// The provider is still throttling after ragway's retries.
    #[error("{provider} is throttling requests: {message}")]
    Throttled {
        provider: String,
        message: String,
        retry_after: Option<Duration>,
    },

    /// The provider could not be reached (connection refused, DNS, TLS, reset).
    #[error("cannot reach {provider}: {message}")]
    Unreachable { provider: String, message: String },

    /// The provider answered something ragway cannot read.
    #[error("{provider} sent a response ragway cannot read: {message}")]
    InvalidResponse { provider: String, message: String },

    /// A component running inside ragway failed (a local index or model, the disk).
    #[error("{provider} failed: {message}")]
    Internal { provider: String, message: String },

    /// A store ragway keeps its own state in (a database) is down or unreachable: a 503,
    /// unlike an unreachable model provider (502), since the gateway itself cannot serve.
    #[error("{provider} is unavailable: {message}")]
    Unavailable { provider: String, message: String },

    /// The request asks for something this provider cannot do.
    #[error("{provider} does not support this request: {message}")]
    Unsupported { provider: String, message: String },

    /// Work ragway runs itself (a local model, a local embedder, a local index) has as many
    /// jobs waiting as it queues (`[server.limits] max_queued_jobs`): a 503 with `Retry-After`.
    /// Not a fault of the provider's: no fallback, no cooldown.
    #[error("{provider} is busy: {message}")]
    Busy { provider: String, message: String },
}

impl ProviderError {
    pub fn upstream(provider: &str, status: Option<u16>, message: impl Into<String>) -> Self {
        Self::Upstream {
            provider: provider.to_owned(),
            status,
            message: message.into(),
        }
    }
    pub fn invalid_response(provider: &str, message: impl Into<String>) -> Self {
        Self::InvalidResponse {
            provider: provider.to_owned(),
            message: message.into(),
        }
    }
    pub fn unreachable(provider: &str, message: impl Into<String>) -> Self {
        Self::Unreachable {
            provider: provider.to_owned(),
            message: message.into(),
        }
    }
}

/// How ragway treats a failure: retry the same model, fall back to another, or give up.
///
/// | variant                         | kind               | retried | falls back |
/// |---------------------------------|--------------------|---------|------------|
/// | `Throttled`, `Upstream` 429     | `throttled`        | yes     | yes        |
/// | `Upstream` 5xx or no status     | `upstream_5xx`     | yes     | yes        |
/// | `Unreachable` (refused, reset)  | `unreachable`      | yes     | yes        |
/// | `Unavailable` (ragway's store)  | `unavailable`      | no      | yes        |
/// | `Timeout`                       | `timeout`          | no      | yes        |
/// | `InvalidResponse`               | `invalid_response` | no      | yes        |
/// | `Internal`                      | `internal`         | no      | yes        |
/// | `Upstream` 401 403 404 408 424  | `upstream_4xx`     | no      | yes        |
/// | `Upstream` other 4xx            | `upstream_4xx`     | no      | no         |
/// | `Unsupported`                   | `unsupported`      | no      | no         |
///
/// An error with no status is one reported inside a stream after HTTP 200 (Bedrock's
/// `modelStreamErrorException`, an OpenAI `error` chunk): the provider failed mid-answer.
/// A timeout is not retried because its time budget is spent; another model may still answer.
/// 401/403/404 mean ragway's key, permissions or model id are wrong for that provider, and 424
/// is Bedrock's "the model failed": not the client's doing, so another model is worth trying.
/// Other 4xx and `Unsupported` say the request itself is wrong, which no other model fixes.
impl ProviderError {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Upstream { status, .. } => match status {
                Some(429) => "throttled",
                Some(400..=499) => "upstream_4xx",
                _ => "upstream_5xx",
            },
            Self::Unreachable { .. } => "unreachable",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Internal { .. } => "internal",
            Self::Unsupported { .. } => "unsupported",
            Self::Busy { .. } => "busy",
        }
    }

    /// Whether the same call may succeed if made again shortly.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Unreachable { .. } => true,
            Self::Upstream { status, .. } => match status {
                None | Some(429) => true,
                Some(code) => *code >= 500,
            },
            Self::Timeout { .. }
            | Self::Unavailable { .. }
            | Self::InvalidResponse { .. }
            | Self::Internal { .. }
            | Self::Unsupported { .. }
            | Self::Busy { .. } => false,
        }
    }

    /// Whether the failure is the provider's (or ragway's setup of it) rather than the
    /// request's: such failures move on to a fallback model and count towards a cooldown.
    pub fn is_provider_fault(&self) -> bool {
        match self {
            Self::Upstream {
                status: Some(status),
                ..
            } if (400..500).contains(status) => {
                matches!(status, 401 | 403 | 404 | 408 | 424 | 429)
            }
            Self::Upstream { .. }
            | Self::Throttled { .. }
            | Self::Unreachable { .. }
            | Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::InvalidResponse { .. }
            | Self::Internal { .. } => true,
            Self::Unsupported { .. } | Self::Busy { .. } => false,
        }
    }

    /// How long the provider asked to wait before trying again, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One thing wrong with a configuration, located by its path (`llm[1].model_id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a configuration, reported at once.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// Where the configuration came from (a file path or "built-in default").
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{} has {n} error{}:",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

/// A component that could not be built at start-up (an unset variable, an unreadable file,
/// an unknown region), named as the config names it.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct BuildError {
    /// The config path of the component, e.g. `llm[0] ("gpt-4o")`.
    pub component: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: Option<u16>) -> ProviderError {
        ProviderError::upstream("p", status, "m")
    }

    #[test]
    fn failures_are_classified_for_retries_and_fallbacks() {
        let throttled = ProviderError::Throttled {
            provider: "p".into(),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        let timeout = ProviderError::Timeout {
            provider: "p".into(),
            after: Duration::from_secs(1),
        };
        let unsupported = ProviderError::Unsupported {
            provider: "p".into(),
            message: "m".into(),
        };
        let internal = ProviderError::Internal {
            provider: "p".into(),
            message: "m".into(),
        };
        // (error, kind, retryable, provider's fault)
        let cases = [
            (throttled, "throttled", true, true),
            (upstream(Some(429)), "throttled", true, true),
            (upstream(Some(500)), "upstream_5xx", true, true),
            (upstream(Some(503)), "upstream_5xx", true, true),
            (upstream(None), "upstream_5xx", true, true),
            (
                ProviderError::unreachable("p", "reset"),
                "unreachable",
                true,
                true,
            ),
            (timeout, "timeout", false, true),
            (
                ProviderError::invalid_response("p", "x"),
                "invalid_response",
                false,
                true,
            ),
            (internal, "internal", false, true),
            (upstream(Some(401)), "upstream_4xx", false, true),
            (upstream(Some(404)), "upstream_4xx", false, true),
            (upstream(Some(424)), "upstream_4xx", false, true),
            (upstream(Some(400)), "upstream_4xx", false, false),
            (upstream(Some(422)), "upstream_4xx", false, false),
            (unsupported, "unsupported", false, false),
            (
                ProviderError::Busy {
                    provider: "p".into(),
                    message: "m".into(),
                },
                "busy",
                false,
                false,
            ),
        ];
        for (error, kind, retryable, fault) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.is_retryable(), retryable, "{error}");
            assert_eq!(error.is_provider_fault(), fault, "{error}");
            // Everything worth retrying is worth a fallback too.
            assert!(
                !error.is_retryable() || error.is_provider_fault(),
                "{error}"
            );
        }
    }
}
