//! `[server.limits]`: how much one request may ask for and how long it may take, and how many
//! requests ragway serves at once. Every limit has a default a production service can start
//! with; going past one is a clear 413, 422/400, 503 or 504, never a hang or a queue without end.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigIssue;

/// The `[server.limits]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body in bytes (documents sent to a store included); larger is a 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest prompt in characters: `/generate`'s prompt and system, a chat's messages
    /// together, a search query, each embedding input.
    #[serde(default = "default_max_prompt_chars")]
    pub max_prompt_chars: usize,
    /// Largest `max_tokens` a request may ask for.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Requests served at once; past it, 503 with `Retry-After` at once, never a queue.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// The longest a request may take from arrival to its last byte (streams included);
    /// past it, 504 (or an error event ending a stream).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: f64,
    /// The longest a stream may wait for the model's next piece; past it the stream ends with
    /// an error event.
    #[serde(default = "default_stream_idle_timeout_secs")]
    pub stream_idle_timeout_secs: f64,
    /// The longest a client may take to send a request's headers, counted from when ragway
    /// starts waiting for them: on a new connection, and between the requests of a kept-alive
    /// one (so it is also how long an idle connection stays open). Past it the connection is
    /// closed.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: f64,
    /// Connections open at once; past it a new one is answered 503 (`Retry-After: 1`) and
    /// closed at once. Keep it below the process's file-descriptor limit (`ulimit -n`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// CPU jobs ragway runs at once itself (local embedding batches, FAISS searches, a local
    /// model's prompt templating); the machine's cores when not set.
    #[serde(default)]
    pub cpu_workers: Option<usize>,
    /// CPU jobs that may wait for a worker, and requests that may wait for each local model's
    /// generation slots; past it, 503 with `Retry-After` at once. A job whose request has gone
    /// leaves the queue without running.
    #[serde(default = "default_max_queued_jobs")]
    pub max_queued_jobs: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_prompt_chars: default_max_prompt_chars(),
            max_tokens: default_max_tokens(),
            max_in_flight: default_max_in_flight(),
            request_timeout_secs: default_request_timeout_secs(),
            stream_idle_timeout_secs: default_stream_idle_timeout_secs(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            max_connections: default_max_connections(),
            cpu_workers: None,
            max_queued_jobs: default_max_queued_jobs(),
        }
    }
}

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.request_timeout_secs)
            .unwrap_or(Duration::from_secs_f64(default_request_timeout_secs()))
    }

    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.stream_idle_timeout_secs)
            .unwrap_or(Duration::from_secs_f64(default_stream_idle_timeout_secs()))
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.header_read_timeout_secs)
            .unwrap_or(Duration::from_secs_f64(default_header_read_timeout_secs()))
    }

    /// CPU workers: as configured, else the machine's cores.
    pub fn cpu_workers(&self) -> usize {
        self.cpu_workers.unwrap_or_else(crate::cpu::default_workers)
    }

    pub(crate) fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: format!("server.limits.{path}"),
                message,
            });
        };
        if self.max_body_bytes < 1024 {
            issue(
                "max_body_bytes",
                format!("must be at least 1024, got {}", self.max_body_bytes),
            );
        }
        for (name, value) in [
            ("max_prompt_chars", self.max_prompt_chars),
            ("max_tokens", self.max_tokens as usize),
            ("max_in_flight", self.max_in_flight),
            ("max_connections", self.max_connections),
            ("cpu_workers", self.cpu_workers.unwrap_or(1)),
        ] {
            if value == 0 {
                issue(name, "must be at least 1".into());
            }
        }
        for (name, value) in [
            ("request_timeout_secs", self.request_timeout_secs),
            ("stream_idle_timeout_secs", self.stream_idle_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= MAX_TIMEOUT_SECS) {
                issue(
                    name,
                    format!(
                        "must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds, got {value}"
                    ),
                );
            }
        }
    }
}

/// A day: longer is a mistake, and `Duration` arithmetic stays far from overflow.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_max_prompt_chars() -> usize {
    200_000
}
fn default_max_tokens() -> u32 {
    16_384
}
fn default_max_queued_jobs() -> usize {
    crate::cpu::DEFAULT_MAX_QUEUED_JOBS
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_request_timeout_secs() -> f64 {
    300.0
}
fn default_stream_idle_timeout_secs() -> f64 {
    60.0
}
fn default_header_read_timeout_secs() -> f64 {
    10.0
}
fn default_max_connections() -> usize {
    1000
}
