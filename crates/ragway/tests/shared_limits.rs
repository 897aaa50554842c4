//! Per-key limits shared through Redis by real `ragway serve` processes (two replicas, one
//! Debian `redis-server` started by the test): a key gets its requests per minute once across
//! both, token reservations hold under a burst and are settled to what answers used (`n`
//! choices charged `n` times, a stream cut off charged for what it generated), and while Redis
//! is down the configured policy applies, counted in `/metrics` and named by `/readyz`, until
//! limits resume by themselves.

use std::time::{Duration, Instant};

use ragway_testkit::Scripted;
use ragway_testkit::redis::RedisServer;
use serde_json::{Value, json};

use crate::support::{Server, client};

/// `env::RAGWAY_TEST_API_KEY` (support.rs): the key named "team a", 5 requests a minute.
const TEAM_KEY: &str = "rk-test-team-a-0c81";
/// 200 tokens a minute.
const BUDGET_KEY: &str = "rk-test-budget";
const BUDGET_KEY_SHA256: &str = "d75385fa60402137605b11ea09b5e97680fb438b86fb25e0e369f52f7068a4dc";
/// Where the budget key's tokens are counted in Redis.
const BUDGET_COUNT: &str = "ragway:limit:{tokens:budget}";

fn config(openai: &str, policy: &str) -> String {
    format!(
        r#"
[server.state]
redis_url = "env::RAGWAY_TEST_REDIS_URL"
redis_unavailable = "{policy}"
# Generous: these machines are busy compiling, and a slow answer reads as Redis being down.
redis_timeout_secs = 2

[[server.auth.keys]]
name = "team a"
key = "env::RAGWAY_TEST_API_KEY"
requests_per_minute = 5

[[server.auth.keys]]
name = "budget"
sha256 = "{BUDGET_KEY_SHA256}"
tokens_per_minute = 200

[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
retry = {{ attempts = 1 }}
"#
    )
}

async fn replica(openai: &ragway_testkit::Fake, redis: &RedisServer, policy: &str) -> Server {
    let url = redis.url();
    Server::start_with(&config(&openai.url(), policy), |command| {
        command.env("RAGWAY_TEST_REDIS_URL", &url);
    })
    .await
}

async fn generate(server: &Server, key: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}/generate", server.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn ask(max_tokens: u32) -> Value {
    json!({"prompt": "hi", "llm_name": "gpt-4o", "vector_search_type": "none", "max_tokens": max_tokens})
}

/// The tokens counted for the budget key now (this minute's and the previous one's).
fn budget_count(redis: &RedisServer) -> u64 {
    redis
        .command(&format!("HMGET {BUDGET_COUNT} c p"))
        .unwrap()
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with(['*', '$']))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_ragway_processes_on_one_redis_share_each_keys_limits() {
    let redis = RedisServer::start().unwrap_or_else(|error| panic!("{error:#}"));
    let openai = ragway_testkit::openai::start().await.unwrap();
    let replicas = [
        replica(&openai, &redis, "fail_open").await,
        replica(&openai, &redis, "fail_open").await,
    ];

    // 12 requests at once, through both: the key's 5 a minute in total, not 5 each.
    let burst = (0..12).map(|i| generate(&replicas[i % 2], TEAM_KEY, ask(20)));
    let statuses: Vec<u16> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );

    // Tokens: each request reserves its prompt ("hi": 1 token and 8 around the message) and
    // max_tokens 50, 59 in all, so 3 fit in 200. The fake holds the admitted answers so that
    // every reservation is made before any is settled.
    for _ in 0..3 {
        openai.push(Scripted::Delay(Duration::from_millis(700)));
    }
    let burst = (0..8).map(|i| generate(&replicas[i % 2], BUDGET_KEY, ask(50)));
    let answers = futures::future::join_all(burst).await;
    let admitted: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(admitted.len(), 3, "{answers:?}");
    let used: u64 = admitted
        .iter()
        .map(|body| {
            body["usage"]["input_tokens"].as_u64().unwrap()
                + body["usage"]["output_tokens"].as_u64().unwrap()
        })
        .sum();
    // Settled to what the answers used (the fake: 1 prompt word and 5 answer words each).
    assert_eq!(used, 3 * 6);
    assert_eq!(budget_count(&redis), used, "settled to the usage");
    let (_, refused) = answers.iter().find(|(status, _)| *status == 429).unwrap();
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("200 tokens per minute"),
        "{refused}"
    );

    // The rest was given back: another answer fits again, on the other replica.
    let (status, body) = generate(&replicas[1], BUDGET_KEY, ask(50)).await;
    assert_eq!(status, 200, "{body}");
    let before = budget_count(&redis);
    assert_eq!(before, 4 * 6);

    // n choices are n calls to the model, each charged its prompt and its answer.
    let response = client()
        .post(format!("{}/v1/chat/completions", replicas[0].url))
        .bearer_auth(BUDGET_KEY)
        .json(&json!({"model": "gpt-4o", "n": 2, "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(budget_count(&redis), before + 2 * 6);

    // A stream the client cuts off after its first words is charged for what was generated,
    // not for the 59 it reserved (nor nothing).
    let before = budget_count(&redis);
    openai.push(Scripted::StreamDelay(Duration::from_millis(400)));
    let mut stream = client()
        .post(format!("{}/generate", replicas[0].url))
        .bearer_auth(BUDGET_KEY)
        .json(
            &json!({"prompt": "hi", "llm_name": "gpt-4o", "vector_search_type": "none",
            "max_tokens": 50, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut received = String::new();
    while !received.contains("event: delta") {
        let chunk = stream
            .chunk()
            .await
            .unwrap()
            .expect("the stream ended early");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    eventually("the cut stream is settled", || {
        let now = budget_count(&redis);
        now > before && now < before + 59
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn while_redis_is_down_the_policy_applies_is_counted_and_limits_resume_after() {
    let mut redis = RedisServer::start().unwrap_or_else(|error| panic!("{error:#}"));
    let openai = ragway_testkit::openai::start().await.unwrap();
    let open = replica(&openai, &redis, "fail_open").await;
    let closed = replica(&openai, &redis, "fail_closed").await;
    // With keys configured /readyz is a public probe: all well, it lists nothing.
    let (status, ready) = open.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready, json!({"status": "ready", "checks": []}));

    redis.stop();
    // fail_open: every request is let in, past the key's 5 a minute, uncounted...
    for _ in 0..7 {
        let (status, body) = generate(&open, TEAM_KEY, ask(20)).await;
        assert_eq!(status, 200, "{body}");
    }
    // ... and each is counted in /metrics.
    let metrics = open.metrics().await;
    let unavailable: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("ragway_rate_limit_store_unavailable_total{"))
        .filter(|line| line.contains("step=\"admit\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(unavailable >= 7.0, "{metrics}");
    // /readyz names Redis and stays ready: every replica shares it, so 503 would empty the
    // load balancer for an outage the policy chose to ride out.
    let (status, ready) = open.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let redis_check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .unwrap()
        .clone();
    assert_eq!(redis_check["status"], "degraded", "{ready}");
    assert!(
        redis_check.get("detail").is_none(),
        "reasons go to the log: {ready}"
    );

    // fail_closed: a clear 503 in each route's shape, and not ready.
    let (status, body) = generate(&closed, TEAM_KEY, ask(20)).await;
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("Redis") && detail.contains("fail_closed"),
        "{detail}"
    );
    let response = client()
        .post(format!("{}/v1/chat/completions", closed.url))
        .bearer_auth(TEAM_KEY)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "rate_limit_store_unavailable",
        "{body}"
    );
    let (status, ready) = closed.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["detail"].as_str().unwrap().contains("redis"),
        "{ready}"
    );

    // Redis back (empty, as after a failover): both recover without a restart.
    redis.resume().unwrap();
    for server in [&open, &closed] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = server.get("/readyz").await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "/readyz did not recover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // After a failure ragway leaves Redis alone for a second; past that, requests count again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut admitted = 0;
    for i in 0..8 {
        let server = if i % 2 == 0 { &open } else { &closed };
        let (status, body) = generate(server, TEAM_KEY, ask(20)).await;
        match status {
            200 => admitted += 1,
            429 => {}
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(admitted, 5, "the shared limit holds again");
}
