//! Per-key requests-per-minute and tokens-per-minute limits, counted in this process's memory
//! or, with `[server.state] redis_url`, in Redis, where every replica draws on one budget.
//!
//! Each limit is a sliding-window counter: the count of the current minute plus the previous
//! minute's, weighted by how much of it still overlaps the last 60 seconds. That is two numbers
//! per key and limit ([`Counts`]), exact enough for quotas and cheap to keep: under one short lock
//! in memory, in one Redis hash updated by a Lua script in Redis (one round trip per admission,
//! atomic however many replicas ask at once; see [`redis_store`]). GCRA limiters such as
//! `governor` cannot take back part of a charge, which reservations need, so this is not one.
//!
//! Tokens are reserved before a model is called, for as much as the answer may cost (its prompt
//! and `max_tokens`, or `[server.prompt] answer_reserve`, per choice), and settled to what it
//! really cost when it ends ([`reservation`]). So requests sent at once cannot all slip in under
//! the limit: each one's reservation counts before the next is admitted.

pub mod redis_store;
#[cfg(test)]
mod redis_tests;
pub mod reservation;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ragway_core::BuildError;
use ragway_core::state::{StateConfig, Unavailable};

use crate::error::ApiError;
use ragway_engine::ComponentCheck;
use redis_store::RedisStore;

const MINUTE_MS: u64 = 60_000;

/// What a limit counts: `requests` or `tokens` (in messages, metrics and Redis keys).
pub type Unit = &'static str;

/// One limit's counts: the minute they belong to (minutes since the store's clock began), its
/// count, and the previous minute's. The Lua scripts in [`redis_store`] do the same
/// arithmetic in Redis; the tests hold both to the same answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub minute: u64,
    pub current: u64,
    pub previous: u64,
}

impl Counts {
    /// Moves to `minute` if it is later. (A clock that steps back, as Redis' may after a
    /// failover, keeps counting in the minute it had reached.)
    fn roll(&mut self, minute: u64) {
        if minute <= self.minute {
            return;
        }
        self.previous = if minute == self.minute + 1 {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.minute = minute;
    }

    /// Counts `units` at `now_ms` if they fit under `limit`, and says in which minute; otherwise
    /// how long to wait before they would.
    pub fn take(&mut self, units: u64, limit: u64, now_ms: u64) -> Result<u64, Duration> {
        self.roll(now_ms / MINUTE_MS);
        match self.wait_for(units, limit, now_ms) {
            None => {
                self.current = self.current.saturating_add(units);
                Ok(self.minute)
            }
            Some(wait) => Err(wait),
        }
    }

    /// Settles units taken in minute `taken` by `delta` (negative: a refund). The minute they
    /// were counted in is corrected while it still counts; after that a refund has faded away
    /// with it, and a further charge counts now. Never below zero.
    pub fn adjust(&mut self, taken: u64, delta: i64, now_ms: u64) {
        self.roll(now_ms / MINUTE_MS);
        let apply = |count: &mut u64| {
            *count = if delta >= 0 {
                count.saturating_add(delta.unsigned_abs())
            } else {
                count.saturating_sub(delta.unsigned_abs())
            };
        };
        if taken >= self.minute {
            apply(&mut self.current);
        } else if taken + 1 == self.minute {
            apply(&mut self.previous);
        } else if delta > 0 {
            apply(&mut self.current);
        }
    }

    /// None if `units` more fit at `now_ms`; otherwise the wait until they would (at least a
    /// second).
    fn wait_for(&self, units: u64, limit: u64, now_ms: u64) -> Option<Duration> {
        let into = (now_ms % MINUTE_MS) as f64 / MINUTE_MS as f64;
        let estimate = self.previous as f64 * (1.0 - into) + self.current as f64;
        if estimate + units as f64 <= limit as f64 {
            return None;
        }
        // The previous minute's share fades linearly; the current one only leaves when the
        // minute ends.
        let room = limit as f64 - self.current as f64 - units as f64;
        let left_this_minute = (1.0 - into) * 60.0;
        let wait = if room >= 0.0 && self.previous > 0 {
            let fade_to = 1.0 - room / self.previous as f64;
            ((fade_to - into) * 60.0).clamp(0.0, left_this_minute)
        } else {
            left_this_minute
        };
        Some(Duration::from_secs_f64(wait.ceil().max(1.0)))
    }
}

/// Where limits are counted: built once from `[server.state]`, shared by every key.
#[derive(Clone, Debug)]
pub enum LimitStore {
    /// In this process; each replica counts on its own.
    Memory { origin: Instant },
    /// In Redis, shared by every replica that names the same Redis and prefix.
    Redis(Arc<RedisStore>),
}

/// Units a limit counted, to be settled later.
#[derive(Debug)]
pub struct Taken {
    /// The minute the units were counted in, for settling them later.
    minute: u64,
}

/// Why units were not counted.
#[derive(Debug)]
pub enum Refusal {
    /// Over the limit: the wait until they would fit.
    Wait(Duration),
    /// Redis did not answer in time or at all (the detail is for the log, never a client).
    Unavailable(String),
}

impl LimitStore {
    /// Counts in memory.
    pub fn memory() -> Self {
        Self::Memory {
            origin: Instant::now(),
        }
    }

    /// The store `[server.state]` names: Redis with `redis_url` (connected on first use, so a
    /// Redis that is down at start-up delays nothing), memory otherwise.
    pub fn build(config: &StateConfig) -> Result<Self, BuildError> {
        match &config.redis_url {
            Some(url) => RedisStore::connect(url, config).map(|store| Self::Redis(Arc::new(store))),
            None => Ok(Self::memory()),
        }
    }

    /// The Redis the limits are counted in, if they are (the response cache shares it).
    pub fn redis(&self) -> Option<Arc<RedisStore>> {
        match self {
            Self::Memory { .. } => None,
            Self::Redis(store) => Some(store.clone()),
        }
    }

    /// A limit of `per_minute` `unit`s for the key named `key`.
    pub fn limit(&self, key: &str, unit: Unit, per_minute: u64) -> Limit {
        let (counter, policy) = match self {
            Self::Memory { origin } => (
                Counter::Memory {
                    origin: *origin,
                    counts: Mutex::new(Counts::default()),
                },
                Unavailable::FailOpen,
            ),
            Self::Redis(store) => (
                Counter::Redis {
                    key: store.key(unit, key),
                    store: store.clone(),
                },
                store.policy(),
            ),
        };
        Limit {
            key: key.to_owned(),
            unit,
            per_minute,
            counter,
            policy,
        }
    }

    /// `/readyz`'s check of Redis (nothing to check in memory).
    pub async fn check(&self) -> Option<ComponentCheck> {
        match self {
            Self::Memory { .. } => None,
            Self::Redis(store) => Some(store.check().await),
        }
    }
}

/// Where one limit's counts are.
#[derive(Debug)]
enum Counter {
    Memory {
        origin: Instant,
        counts: Mutex<Counts>,
    },
    Redis {
        store: Arc<RedisStore>,
        /// The Redis key of the counts.
        key: String,
    },
}

impl Counter {
    async fn take(&self, units: u64, limit: u64) -> Result<Taken, Refusal> {
        match self {
            Self::Memory { origin, counts } => lock(counts)
                .take(units, limit, since(*origin))
                .map(|minute| Taken { minute })
                .map_err(Refusal::Wait),
            Self::Redis { store, key } => store.take(key, units, limit).await,
        }
    }

    async fn adjust(&self, taken: &Taken, delta: i64) -> Result<(), String> {
        match self {
            Self::Memory { origin, counts } => {
                lock(counts).adjust(taken.minute, delta, since(*origin));
                Ok(())
            }
            Self::Redis { store, key } => store.adjust(key, taken.minute, delta).await,
        }
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // Two counters and a minute; a panic elsewhere cannot leave them inconsistent.
    counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Milliseconds since `origin`.
fn since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One key's limit of one unit: at most `per_minute` in any 60 seconds (estimated).
#[derive(Debug)]
pub struct Limit {
    /// The key's name (what messages, logs and metrics say).
    key: String,
    unit: Unit,
    per_minute: u64,
    counter: Counter,
    /// What to do when the count cannot be reached.
    policy: Unavailable,
}

impl Limit {
    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// Counts `units` if they fit: the minute they were counted in, or `None` when Redis is
    /// unreachable and the policy lets the request in uncounted. A 429 with the wait when they
    /// do not fit; a 503 when Redis is unreachable and the policy is `fail_closed`.
    pub async fn take(&self, units: u64) -> Result<Option<Taken>, ApiError> {
        if units > self.per_minute {
            return Err(self.refused(
                format!(
                    "API key \"{}\" may use at most {} {} per minute and this request alone needs \
                     {units}{}",
                    self.key,
                    self.per_minute,
                    self.unit,
                    if self.unit == "tokens" {
                        " (its prompt and max_tokens, for each choice); ask for fewer max_tokens"
                    } else {
                        ""
                    }
                ),
                // It will never fit; a minute is the longest any count lingers.
                Duration::from_secs(60),
            ));
        }
        match self.counter.take(units, self.per_minute).await {
            Ok(taken) => Ok(Some(taken)),
            Err(Refusal::Wait(wait)) => Err(self.refused(
                format!(
                    "API key \"{}\" is over its limit of {} {} per minute; retry in {} s",
                    self.key,
                    self.per_minute,
                    self.unit,
                    wait.as_secs()
                ),
                wait,
            )),
            Err(Refusal::Unavailable(detail)) => {
                self.unavailable("admit", &detail);
                match self.policy {
                    Unavailable::FailOpen => Ok(None),
                    Unavailable::FailClosed => Err(ApiError::LimitsUnavailable),
                }
            }
        }
    }

    /// Corrects units taken earlier by `delta` (negative: gives some back). A failure is logged
    /// and counted; the request it belongs to has been answered already.
    pub async fn adjust(&self, taken: &Taken, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Err(detail) = self.counter.adjust(taken, delta).await {
            self.unavailable("settle", &detail);
        }
    }

    /// [`Self::adjust`] without waiting: at once in memory, on a task of its own for Redis
    /// (for settling from `Drop`).
    pub fn adjust_detached(self: &Arc<Self>, taken: Taken, delta: i64) {
        if delta == 0 {
            return;
        }
        match &self.counter {
            Counter::Memory { origin, counts } => {
                lock(counts).adjust(taken.minute, delta, since(*origin));
            }
            Counter::Redis { .. } => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let limit = Arc::clone(self);
                    drop(runtime.spawn(async move { limit.adjust(&taken, delta).await }));
                }
                Err(_) => self.unavailable("settle", "no async runtime to settle on"),
            },
        }
    }

    fn refused(&self, message: String, retry_after: Duration) -> ApiError {
        metrics::counter!(
            "ragway_rate_limited_total",
            "key" => crate::metrics::key_label(&self.key),
            "limit" => self.unit
        )
        .increment(1);
        ApiError::RateLimited {
            message,
            retry_after,
        }
    }

    /// Redis could not be asked at `step` (`admit` or `settle`): logged and counted.
    fn unavailable(&self, step: &'static str, detail: &str) {
        metrics::counter!(
            "ragway_rate_limit_store_unavailable_total",
            "limit" => self.unit,
            "step" => step,
        )
        .increment(1);
        tracing::warn!(
            key = self.key,
            limit = self.unit,
            step,
            policy = self.policy.as_str(),
            "the rate-limit store cannot be reached: {detail}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn a_window_admits_up_to_its_limit_then_says_how_long_to_wait() {
        let mut counts = Counts::default();
        for _ in 0..3 {
            counts.take(1, 3, 0).unwrap();
        }
        let wait = counts.take(1, 3, 10 * S).unwrap_err();
        // Nothing from a previous minute: the wait is the rest of this one.
        assert_eq!(wait, Duration::from_secs(50));
        // The next minute still carries the last one's count, fading.
        assert!(counts.take(1, 3, 61 * S).is_err());
        counts.take(1, 3, 81 * S).unwrap();
        // Two idle minutes forget everything.
        for _ in 0..3 {
            counts.take(1, 3, 200 * S).unwrap();
        }
    }

    #[test]
    fn a_refund_frees_room_in_the_minute_it_was_reserved_in() {
        let mut counts = Counts::default();
        let minute = counts.take(100, 100, S).unwrap();
        assert!(counts.take(1, 100, 2 * S).is_err(), "reserved to the limit");
        // The answer used 30 of the 100 reserved.
        counts.adjust(minute, -70, 3 * S);
        assert_eq!(counts.current, 30);
        counts.take(70, 100, 4 * S).unwrap();
        assert!(counts.take(1, 100, 5 * S).is_err());
    }

    #[test]
    fn settling_after_the_minute_turned_corrects_the_previous_minute() {
        let mut counts = Counts::default();
        let minute = counts.take(100, 100, 50 * S).unwrap();
        // Settled 20 s later, in the next minute: the reservation is the previous minute's now.
        counts.adjust(minute, -60, 70 * S);
        assert_eq!(
            counts,
            Counts {
                minute: 1,
                current: 0,
                previous: 40
            }
        );
        // An answer that cost more than it reserved is charged the rest in that minute too.
        counts.adjust(minute, 10, 71 * S);
        assert_eq!(counts.previous, 50);
    }

    #[test]
    fn a_settlement_older_than_the_window_refunds_nothing_and_charges_now() {
        let mut counts = Counts::default();
        let minute = counts.take(10, 100, 0).unwrap();
        counts.adjust(minute, -10, 150 * S);
        assert_eq!((counts.current, counts.previous), (0, 0));
        counts.adjust(minute, 25, 151 * S);
        assert_eq!(counts.current, 25);
    }

    #[test]
    fn counts_never_go_below_zero() {
        let mut counts = Counts::default();
        let minute = counts.take(5, 100, 0).unwrap();
        counts.adjust(minute, -50, S);
        assert_eq!(counts.current, 0);
        counts.adjust(minute, i64::MIN, S);
        assert_eq!(counts.current, 0);
    }

    #[test]
    fn tokens_charged_past_the_limit_block_until_they_fade() {
        let mut counts = Counts::default();
        let minute = counts.take(10, 100, 0).unwrap();
        // The answer cost 150: more than its reservation and the whole limit.
        counts.adjust(minute, 140, S);
        let wait = counts.take(1, 100, 2 * S).unwrap_err();
        assert_eq!(wait, Duration::from_secs(58));
        // Half-way into the next minute, 150 × 0.5 = 75 are still counted: room for 25.
        assert!(counts.take(1, 100, 61 * S).is_err());
        counts
            .take(25, 100, 90 * S)
            .expect("the previous minute's share has faded below the limit");
    }

    #[tokio::test]
    async fn a_request_larger_than_the_whole_limit_is_refused_as_never_fitting() {
        let limit = LimitStore::memory().limit("team a", "tokens", 5);
        match limit.take(6).await {
            Err(ApiError::RateLimited {
                message,
                retry_after,
            }) => {
                assert!(message.contains("this request alone needs 6"), "{message}");
                assert!(message.contains("max_tokens"), "{message}");
                assert_eq!(retry_after, Duration::from_secs(60));
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limit.take(5).await.unwrap().is_some());
    }
}
