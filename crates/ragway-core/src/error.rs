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

    /// The request asks for something this provider cannot do.
    #[error("{provider} does not support this request: {message}")]
    Unsupported { provider: String, message: String },
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
