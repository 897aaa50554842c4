//! `[server.state]`: where state that replicas share is kept. Today that is the per-key
//! requests- and tokens-per-minute counts: in Redis when `redis_url` is set, so that every
//! replica draws on one budget per key, in each process's memory otherwise.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigIssue;
use crate::secret::SecretRef;

/// The `[server.state]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` (TLS), as an `env::` reference:
    /// the URL usually carries a password. Without it, limits are counted in memory, per
    /// process.
    #[serde(default)]
    pub redis_url: Option<SecretRef>,
    /// What a request meets while Redis cannot be reached; [`Unavailable::FailOpen`] unless
    /// set.
    #[serde(default)]
    pub redis_unavailable: Unavailable,
    /// The longest one Redis call may take before the request is treated as Redis being
    /// unreachable.
    #[serde(default = "default_redis_timeout_secs")]
    pub redis_timeout_secs: f64,
    /// The first part of every key ragway writes, so that several deployments (staging and
    /// production) can share one Redis without sharing budgets.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_unavailable: Unavailable::default(),
            redis_timeout_secs: default_redis_timeout_secs(),
            redis_prefix: default_redis_prefix(),
        }
    }
}

/// What happens to a request whose limits cannot be counted because Redis is unreachable.
///
/// The default is [`Unavailable::FailOpen`], as in Envoy's global rate limit
/// (`failure_mode_deny: false`) and Kong's (`fault_tolerant: true`): the limiter is there to
/// share budgets fairly, and every replica uses the same Redis, so refusing would turn a Redis
/// outage into an outage of the whole API on every replica at once. While it lasts, requests
/// are let in uncounted; each is counted in `/metrics`
/// (`ragway_rate_limit_store_unavailable_total`) and `/readyz` names Redis, so the outage is
/// seen and bounded by how fast it is fixed. Choose [`Unavailable::FailClosed`] when a budget is
/// a hard ceiling on money that must hold even then.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// Let the request in, uncounted.
    #[default]
    FailOpen,
    /// Refuse the request with 503 until Redis answers again.
    FailClosed,
}

impl Unavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

impl StateConfig {
    /// [`Self::redis_timeout_secs`] as a duration.
    pub fn redis_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.redis_timeout_secs)
            .unwrap_or(Duration::from_secs_f64(default_redis_timeout_secs()))
    }

    pub(crate) fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: format!("server.state.{path}"),
                message,
            });
        };
        let timeout = self.redis_timeout_secs;
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= MAX_REDIS_TIMEOUT_SECS) {
            issue(
                "redis_timeout_secs",
                format!(
                    "must be more than 0 and at most {MAX_REDIS_TIMEOUT_SECS} seconds, got {timeout}"
                ),
            );
        }
        let prefix = &self.redis_prefix;
        if prefix.is_empty()
            || prefix.len() > 64
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            issue(
                "redis_prefix",
                format!(
                    "{prefix:?} must be 1 to 64 letters, digits, '_', '-' or '.' (it starts every \
                     Redis key ragway writes)"
                ),
            );
        }
    }
}

/// A limit check that waits longer than this on Redis defeats its purpose; a healthy Redis in
/// the same region answers in about a millisecond.
const MAX_REDIS_TIMEOUT_SECS: f64 = 10.0;

/// Far above a healthy answer (about 1 ms in one region, a few more for the first TLS
/// handshake), and short enough that a Redis outage adds at most half a second to a request
/// before the policy applies.
fn default_redis_timeout_secs() -> f64 {
    0.5
}

fn default_redis_prefix() -> String {
    "ragway".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_count_in_memory_and_fail_open() {
        let state = StateConfig::default();
        assert_eq!(state.redis_url, None);
        assert_eq!(state.redis_unavailable, Unavailable::FailOpen);
        assert_eq!(state.redis_timeout(), Duration::from_millis(500));
        let mut issues = Vec::new();
        state.validate(&mut issues);
        assert!(issues.is_empty(), "{issues:?}");
    }
}
