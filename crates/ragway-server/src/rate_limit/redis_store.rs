//! The limits in Redis, shared by every replica: each key's limit is one Redis hash (`m` the
//! minute, `c` its count, `p` the previous minute's) that a Lua script reads, rolls, checks and
//! writes in one round trip, atomically however many replicas ask at once. Minutes come from
//! Redis' own clock (`TIME`), so replicas whose clocks disagree still count in the same minute.
//!
//! Keys are `{prefix}:limit:{{unit}:{key name}}`, the key's name percent-encoded (anything but
//! ASCII letters, digits and `-_.~`), so that spaces, colons, braces or any Unicode in a name
//! stay inside it; the braces make both Redis Cluster hash tags and the end of the name plain.
//! Every write sets a two-minute expiry: after two idle minutes a count is zero anyway.
//!
//! A call that fails or outlasts `redis_timeout_secs` counts as Redis being unreachable, and
//! for the next second no call is tried: the requests in between meet the configured policy at
//! once instead of each waiting out the timeout. The connection is re-established in the
//! background, so limits resume by themselves when Redis is back.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use ragway_core::state::{StateConfig, Unavailable};
use ragway_core::{BuildError, SecretRef};
use secrecy::ExposeSecret as _;

use super::{Refusal, Taken, Unit};
use ragway_engine::ComponentCheck;

/// Reads the counts and moves them to Redis' current minute (shared by both scripts).
const ROLL: &str = r"
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local minute = math.floor(now_ms / 60000)
local into = (now_ms % 60000) / 60000
local stored = redis.call('HMGET', KEYS[1], 'm', 'c', 'p')
local m = tonumber(stored[1]) or minute
local c = tonumber(stored[2]) or 0
local p = tonumber(stored[3]) or 0
if minute > m then
  if minute == m + 1 then p = c else p = 0 end
  c = 0
  m = minute
end
local function save()
  redis.call('HSET', KEYS[1], 'm', m, 'c', c, 'p', p)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
";

/// `Counts::take`: ARGV units, limit. Returns `{1, minute}` when counted, `{0, seconds to
/// wait}` otherwise.
const TAKE: &str = r"
local units = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if p * (1 - into) + c + units <= limit then
  c = c + units
  save()
  return {1, m}
end
local room = limit - c - units
local left = (1 - into) * 60
local wait = left
if room >= 0 and p > 0 then
  wait = math.min(math.max(((1 - room / p) - into) * 60, 0), left)
end
return {0, math.max(math.ceil(wait), 1)}
";

/// `Counts::adjust`: ARGV the minute the units were taken in, the units to add (negative: to
/// give back). Returns 1 when something changed.
const ADJUST: &str = r"
local taken = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
if taken >= m then
  c = math.max(c + delta, 0)
elseif taken + 1 == m then
  p = math.max(p + delta, 0)
elseif delta > 0 then
  c = c + delta
else
  return 0
end
save()
return 1
";

/// After a failed call, how long Redis is left alone.
const REST: Duration = Duration::from_secs(1);

/// The connection to Redis and the scripts that count in it.
pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Duration,
    prefix: String,
    policy: Unavailable,
    take: Script,
    adjust: Script,
    /// Until when (milliseconds since `origin`) no call is tried after a failure; 0 when the
    /// last call answered.
    resting_until: AtomicU64,
    origin: Instant,
}

impl fmt::Debug for RedisStore {
    // The connection's own Debug would print the URL, password included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Reads the URL from the environment and prepares a connection, made on first use (a
    /// Redis that is down at start-up delays nothing; `/readyz` says so).
    pub fn connect(url: &SecretRef, config: &StateConfig) -> Result<Self, BuildError> {
        let fail = |message: String| BuildError {
            component: "server.state.redis_url".into(),
            message,
        };
        let secret = url.resolve().map_err(fail)?;
        Self::open(secret.expose_secret(), config)
            .map_err(|message| fail(format!("{message} (the URL in {})", url.var())))
    }

    /// [`Self::connect`] with the URL itself.
    pub fn open(url: &str, config: &StateConfig) -> Result<Self, String> {
        // rediss:// builds its TLS settings with rustls' process-wide crypto provider, which
        // rustls cannot choose itself while two are compiled in (ring for sqlx, aws-lc-rs for
        // reqwest): it would panic on the first connection. Whoever installed one first wins.
        let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // redis' parse errors are fixed sentences; the URL (and its password) is never in them.
        let client = Client::open(url).map_err(|error| format!("not a Redis URL: {error}"))?;
        let timeout = config.redis_timeout();
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // A few quick tries per reconnection; the next call after a failure starts another.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|error| format!("cannot prepare a connection: {error}"))?;
        Ok(Self {
            connection,
            timeout,
            prefix: config.redis_prefix.clone(),
            policy: config.redis_unavailable,
            take: Script::new(&format!("{ROLL}{TAKE}")),
            adjust: Script::new(&format!("{ROLL}{ADJUST}")),
            resting_until: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    pub fn policy(&self) -> Unavailable {
        self.policy
    }

    /// The Redis key of `unit`s counted for the key named `name`.
    pub fn key(&self, unit: Unit, name: &str) -> String {
        format!("{}:limit:{{{unit}:{}}}", self.prefix, encode(name))
    }

    /// The Redis key of the cached answer whose key hashes to `hex`.
    pub fn cache_key(&self, hex: &str) -> String {
        format!("{}:cache:{hex}", self.prefix)
    }

    /// The value at `key`, if any (the response cache).
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let mut connection = self.connection.clone();
        let mut get = ::redis::cmd("GET");
        get.arg(key);
        self.call(get.query_async(&mut connection)).await
    }

    /// Sets `key` to `value`, expiring after `ttl_secs` (the response cache).
    pub async fn set_bytes(&self, key: &str, value: &[u8], ttl_secs: u64) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let mut set = ::redis::cmd("SET");
        set.arg(key).arg(value).arg("EX").arg(ttl_secs.max(1));
        self.call(set.query_async::<()>(&mut connection)).await
    }

    /// Counts `units` under `limit` at `key` (see `Counts::take`).
    pub async fn take(&self, key: &str, units: u64, limit: u64) -> Result<Taken, Refusal> {
        let mut invocation = self.take.key(key);
        invocation.arg(units).arg(limit);
        let mut connection = self.connection.clone();
        let (counted, value): (i64, i64) = self
            .call(invocation.invoke_async(&mut connection))
            .await
            .map_err(Refusal::Unavailable)?;
        let value = u64::try_from(value).unwrap_or(0);
        if counted == 1 {
            Ok(Taken { minute: value })
        } else {
            Err(Refusal::Wait(Duration::from_secs(value.max(1))))
        }
    }

    /// Corrects the units taken at `key` in `minute` by `delta` (see `Counts::adjust`).
    pub async fn adjust(&self, key: &str, minute: u64, delta: i64) -> Result<(), String> {
        let mut invocation = self.adjust.key(key);
        invocation.arg(minute).arg(delta);
        let mut connection = self.connection.clone();
        let _changed: i64 = self.call(invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }

    /// `/readyz`: whether Redis answers PING now. Unreachable is `failing` (not ready) under
    /// `fail_closed`, which refuses limited requests while it lasts; under `fail_open` it is
    /// `degraded` and ragway stays ready: every replica shares this Redis, so taking them all out
    /// of the load balancer would make the outage the policy chose to ride out a total one.
    pub async fn check(&self) -> ComponentCheck {
        let mut connection = self.connection.clone();
        let ping = ::redis::cmd("PING");
        let answer: Result<String, String> =
            match tokio::time::timeout(self.timeout, ping.query_async(&mut connection)).await {
                Ok(Ok(pong)) => Ok(pong),
                Ok(Err(error)) => Err(describe(&error)),
                Err(_) => Err(self.timed_out()),
            };
        let detail = answer.err().map(|why| {
            format!(
                "{why}; per-key limits are {} while it lasts (server.state.redis_unavailable = \"{}\")",
                match self.policy {
                    Unavailable::FailOpen => "not counted",
                    Unavailable::FailClosed => "refusing requests (503)",
                },
                self.policy.as_str()
            )
        });
        ComponentCheck {
            component: "rate_limits",
            name: "redis".into(),
            status: match (&detail, self.policy) {
                (None, _) => "ok",
                (Some(_), Unavailable::FailOpen) => "degraded",
                (Some(_), Unavailable::FailClosed) => "failing",
            },
            detail,
        }
    }

    /// Runs one call within the timeout, unless Redis failed less than [`REST`] ago.
    async fn call<T>(
        &self,
        call: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let now = self.now_ms();
        if now < self.resting_until.load(Ordering::Relaxed) {
            return Err(format!(
                "not asked: it failed less than {} s ago",
                REST.as_secs()
            ));
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(describe(&error)),
            Err(_) => Err(self.timed_out()),
        };
        match &result {
            Ok(_) => {
                if self.resting_until.load(Ordering::Relaxed) != 0 {
                    self.resting_until.store(0, Ordering::Relaxed);
                }
            }
            Err(_) => {
                let until = self.now_ms() + u64::try_from(REST.as_millis()).unwrap_or(1000);
                self.resting_until.store(until, Ordering::Relaxed);
            }
        }
        result
    }

    fn timed_out(&self) -> String {
        format!(
            "Redis did not answer within {} s (server.state.redis_timeout_secs)",
            self.timeout.as_secs_f64()
        )
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A Redis error in words; its messages never carry the URL.
fn describe(error: &::redis::RedisError) -> String {
    if error.is_connection_refusal() {
        "Redis refuses connections".to_owned()
    } else {
        format!("Redis failed: {error}")
    }
}

/// `name` with every byte but ASCII letters, digits and `-_.~` percent-encoded: readable for
/// plain names, and no name can reach outside its place in the key.
fn encode(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded_so_nothing_in_them_reaches_outside_the_key() {
        assert_eq!(encode("team-a_1.x~"), "team-a_1.x~");
        assert_eq!(encode("team a"), "team%20a");
        assert_eq!(encode("a:b{c}"), "a%3Ab%7Bc%7D");
        assert_eq!(encode("é\n%"), "%C3%A9%0A%25");
        // Distinct names stay distinct keys.
        assert_ne!(encode("a b"), encode("a%20b"));
    }
}
