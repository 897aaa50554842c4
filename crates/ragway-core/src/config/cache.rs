//! The response cache's settings: `cache = { ttl_secs, streams }` in an `[[llm]]` table (the
//! models whose answers are kept), and `[server.cache]` (the bound of the cache in memory).

use serde::Deserialize;

use crate::ConfigIssue;

/// The longest an answer may be kept: 30 days.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// `cache = { ttl_secs = 600 }` in an `[[llm]]` table: keep this model's whole answers.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an answer is kept.
    pub ttl_secs: u64,
    /// Keep streamed answers too (replayed as one piece of text); off by default, since a
    /// client that streams usually wants to watch the model write.
    #[serde(default)]
    pub streams: bool,
}

impl CacheConfig {
    pub(super) fn validate(&self, at: &str, issue: &mut impl FnMut(String, String)) {
        if !(1..=MAX_TTL_SECS).contains(&self.ttl_secs) {
            issue(
                format!("{at}.ttl_secs"),
                format!(
                    "must be between 1 and {MAX_TTL_SECS} (30 days), got {}",
                    self.ttl_secs
                ),
            );
        }
    }
}

/// `[server.cache]`: where kept answers live. In Redis when `[server.state] redis_url` is set
/// (shared by every replica, bounded by Redis' own `maxmemory`); else in this process, within
/// `max_bytes`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnswerCacheConfig {
    /// Bytes of answers kept in memory, about; the least recently used go first.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

impl Default for AnswerCacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_max_bytes() -> u64 {
    64 * 1024 * 1024
}

impl AnswerCacheConfig {
    pub(super) fn validate(&self, issues: &mut Vec<ConfigIssue>) {
        if self.max_bytes == 0 {
            issues.push(ConfigIssue {
                path: "server.cache.max_bytes".into(),
                message: "must be at least 1".into(),
            });
        }
    }
}
