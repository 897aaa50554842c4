//! The limits in a real Redis (Debian's `redis-server`, started on a free port for each test by
//! `ragway_testkit::redis`): one budget for replicas, atomic under concurrent requests, settled
//! to what answers used, safe key names, and what requests meet while Redis is down and after
//! it is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::join_all;
use ragway_core::access::{ApiKeyConfig, AuthConfig};
use ragway_core::state::{StateConfig, Unavailable};
use ragway_core::{Delta, Usage};
use ragway_testkit::redis::RedisServer;
use sha2::{Digest as _, Sha256};

use super::reservation::Reservation;
use super::*;
use crate::auth::Auth;

fn start_redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|error| panic!("{error:#}"))
}

fn state(policy: Unavailable, prefix: &str) -> StateConfig {
    StateConfig {
        redis_unavailable: policy,
        redis_prefix: prefix.to_owned(),
        // Generous: the machines running the tests are busy compiling, and a slow answer here
        // would read as Redis being down.
        redis_timeout_secs: 2.0,
        ..StateConfig::default()
    }
}

/// What one replica builds: its own connection to the shared Redis.
fn replica(redis: &RedisServer, policy: Unavailable, prefix: &str) -> LimitStore {
    LimitStore::Redis(Arc::new(
        RedisStore::open(&redis.url(), &state(policy, prefix)).unwrap(),
    ))
}

fn hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn keys(rpm: Option<u32>, tpm: Option<u64>) -> AuthConfig {
    AuthConfig {
        keys: vec![ApiKeyConfig {
            name: "team a".into(),
            key: None,
            sha256: Some(hex("key-a")),
            models: None,
            stores: None,
            write_stores: None,
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }],
        ..AuthConfig::default()
    }
}

/// The bulk strings of a RESP reply, in order.
fn bulk_strings(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with(['*', '$', ':', '+']))
        .map(str::to_owned)
        .collect()
}

/// The units counted at `key` now: this minute's and the previous one's.
fn counted(redis: &RedisServer, key: &str) -> u64 {
    bulk_strings(&redis.command(&format!("HMGET {key} c p")).unwrap())
        .iter()
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_one_redis_give_a_key_its_limit_in_total_not_twice() {
    let redis = start_redis();
    let config = keys(Some(10), None);
    let one = Auth::build(&config, &replica(&redis, Unavailable::FailOpen, "ragway")).unwrap();
    let two = Auth::build(&config, &replica(&redis, Unavailable::FailOpen, "ragway")).unwrap();
    let (one, two) = (
        one.identify("key-a").unwrap().clone(),
        two.identify("key-a").unwrap().clone(),
    );
    // 15 requests through each replica, all at once.
    let attempts = (0..30).map(|i| {
        let caller = if i % 2 == 0 { one.clone() } else { two.clone() };
        async move { caller.admit().await }
    });
    let results = join_all(attempts).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 10, "the key's 10 requests a minute, in total");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(refused, ApiError::RateLimited { retry_after, .. } if *retry_after >= Duration::from_secs(1)),
            "{refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reservations_cannot_exceed_a_token_budget() {
    let redis = start_redis();
    let config = keys(None, Some(1000));
    let replicas: Vec<Auth> = (0..2)
        .map(|_| Auth::build(&config, &replica(&redis, Unavailable::FailOpen, "ragway")).unwrap())
        .collect();
    // 40 requests, each reserving 60 tokens (its prompt and max_tokens), at once through two
    // replicas: 16 fit in 1000.
    let reservations = join_all((0..40).map(|i| {
        let caller = replicas[i % 2].identify("key-a").unwrap().clone();
        async move { caller.reserve(60).await }
    }))
    .await;
    let admitted: Vec<Reservation> = reservations.into_iter().filter_map(Result::ok).collect();
    assert_eq!(admitted.len(), 16, "1000 / 60, and not one more");
    let key = "ragway:limit:{tokens:team%20a}";
    assert_eq!(counted(&redis, key), 16 * 60);
    // Each answer used 50 of its 60: what the key is charged in the end, under its budget.
    join_all(admitted.into_iter().map(|r| r.settle(50))).await;
    assert_eq!(counted(&redis, key), 16 * 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn settling_gives_back_what_an_answer_did_not_use_on_every_replica() {
    let redis = start_redis();
    let config = keys(None, Some(100));
    let one = Auth::build(&config, &replica(&redis, Unavailable::FailOpen, "ragway")).unwrap();
    let two = Auth::build(&config, &replica(&redis, Unavailable::FailOpen, "ragway")).unwrap();
    let (one, two) = (
        one.identify("key-a").unwrap(),
        two.identify("key-a").unwrap(),
    );

    let held = one.reserve(100).await.unwrap();
    assert!(two.reserve(1).await.is_err(), "reserved to the limit");
    held.settle(30).await;
    let rest = two.reserve(70).await.unwrap();
    assert!(one.reserve(1).await.is_err());
    // An answer that failed gives everything back.
    drop(rest);
    eventually("the dropped reservation is given back", || {
        counted(&redis, "ragway:limit:{tokens:team%20a}") == 30
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_off_is_charged_for_what_it_generated() {
    let redis = start_redis();
    let store = replica(&redis, Unavailable::FailOpen, "ragway");
    let limit = Arc::new(store.limit("team a", "tokens", 1000));
    let reservation = Reservation::take(Some(&limit), 500).await.unwrap();
    let deltas: Vec<Result<Delta, ragway_core::ProviderError>> = vec![
        Ok(Delta::Started),
        Ok(Delta::Text("x".repeat(40))),
        Ok(Delta::Text("y".repeat(40))),
        Ok(Delta::Text("never read".into())),
        Ok(Delta::Usage(Usage {
            input_tokens: 50,
            output_tokens: 300,
        })),
    ];
    let mut stream = reservation.meter(Box::pin(futures::stream::iter(deltas)), 50);
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    // The client left: charged the prompt and the 80 bytes it was sent, not the 500 reserved.
    drop(stream);
    eventually("the cut stream is settled", || {
        counted(&redis, "ragway:limit:{tokens:team%20a}") == 50 + 20
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn while_redis_is_down_the_policy_applies_and_afterwards_limits_resume() {
    let mut redis = start_redis();
    let open = replica(&redis, Unavailable::FailOpen, "ragway");
    let closed = replica(&redis, Unavailable::FailClosed, "ragway");
    let open_limit = open.limit("team a", "requests", 2);
    let closed_limit = closed.limit("team b", "requests", 2);
    for limit in [&open_limit, &closed_limit] {
        assert!(limit.take(1).await.unwrap().is_some());
        assert!(limit.take(1).await.unwrap().is_some());
        assert!(limit.take(1).await.is_err(), "counted in Redis: 2 a minute");
    }
    for store in [&open, &closed] {
        assert_eq!(store.check().await.unwrap().status, "ok");
    }

    redis.stop();
    // fail_open: let in, uncounted, however many.
    for _ in 0..5 {
        assert!(open_limit.take(1).await.unwrap().is_none());
    }
    // fail_closed: a 503 that says why.
    let refused = closed_limit.take(1).await.unwrap_err();
    assert!(
        matches!(refused, ApiError::LimitsUnavailable),
        "{refused:?}"
    );
    let (status, retry_after) = refused.status();
    assert_eq!(status.as_u16(), 503);
    assert_eq!(retry_after, Some(Duration::from_secs(1)));
    assert!(refused.to_string().contains("fail_closed"), "{refused}");
    // /readyz names Redis: degraded (still ready) under fail_open, failing under fail_closed.
    let degraded = open.check().await.unwrap();
    assert_eq!(
        (degraded.component, degraded.name.as_str(), degraded.status),
        ("rate_limits", "redis", "degraded")
    );
    assert!(!degraded.blocks_readiness());
    assert!(
        degraded.detail.as_deref().unwrap().contains("not counted"),
        "{degraded:?}"
    );
    let failing = closed.check().await.unwrap();
    assert!(failing.blocks_readiness(), "{failing:?}");

    // Back (empty, as after a failover): counting resumes without a restart.
    redis.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    for limit in [&open_limit, &closed_limit] {
        loop {
            match limit.take(1).await {
                Ok(Some(_)) => break,
                Ok(None) | Err(ApiError::LimitsUnavailable) => {
                    assert!(Instant::now() < deadline, "limits did not resume");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(limit.take(1).await.unwrap().is_some());
        assert!(limit.take(1).await.is_err(), "the limit holds again");
    }
    assert_eq!(open.check().await.unwrap().status, "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_key_names_stay_inside_their_namespaced_expiring_redis_keys() {
    let redis = start_redis();
    let store = replica(&redis, Unavailable::FailOpen, "hostile");
    let names = [
        "team a",
        "a:b",
        "a",
        "{a}",
        "a%20b",
        "ünïcödé 🦀",
        "*",
        "x\r\nFLUSHALL",
    ];
    for name in names {
        let limit = store.limit(name, "requests", 1);
        assert!(limit.take(1).await.unwrap().is_some(), "{name:?}");
        // Each name has a count of its own: none was taken by another.
        assert!(limit.take(1).await.is_err(), "{name:?}");
    }
    let keys = bulk_strings(&redis.command("KEYS *").unwrap());
    assert_eq!(keys.len(), names.len(), "{keys:?}");
    for expected in [
        "hostile:limit:{requests:team%20a}",
        "hostile:limit:{requests:a%3Ab}",
        "hostile:limit:{requests:%7Ba%7D}",
        "hostile:limit:{requests:a%2520b}",
        "hostile:limit:{requests:%C3%BCn%C3%AFc%C3%B6d%C3%A9%20%F0%9F%A6%80}",
        "hostile:limit:{requests:x%0D%0AFLUSHALL}",
    ] {
        assert!(keys.iter().any(|k| k == expected), "{expected} in {keys:?}");
    }
    for key in &keys {
        let ttl = redis.command(&format!("PTTL {key}")).unwrap();
        let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
        assert!((1..=120_000).contains(&ttl), "{key} expires: {ttl} ms");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_redis_whose_certificate_nobody_vouches_for_is_refused_cleanly() {
    let redis = RedisServer::start_tls().unwrap_or_else(|error| panic!("{error:#}"));
    let url = redis.tls_url().unwrap();
    let store = LimitStore::Redis(Arc::new(
        RedisStore::open(&url, &state(Unavailable::FailOpen, "ragway")).unwrap(),
    ));
    let limit = store.limit("team a", "requests", 1);
    // rediss:// speaks TLS and checks the certificate: this self-signed one is refused, as an
    // unreachable Redis (the policy applies), not as a panic or a plain-text fallback.
    assert!(limit.take(1).await.unwrap().is_none());
    let check = store.check().await.unwrap();
    assert_eq!(check.status, "degraded");
    let detail = check.detail.unwrap();
    assert!(detail.contains("certificate"), "{detail}");
    assert_eq!(
        redis.command("DBSIZE").unwrap().trim(),
        ":0",
        "nothing was written"
    );
}
