//! The response cache: a model with `cache = { ttl_secs }` gives the same answer again without
//! calling the model (`x-ragway-cache: hit`), at no cost to the key's tokens; anything that
//! changes the answer misses; a request can skip or refresh it; streams use it only when the
//! model says so; entries expire; and with Redis, replicas share it and an outage only costs
//! hits.

use std::time::Duration;

use ragway_testkit::Scripted;
use ragway_testkit::redis::RedisServer;
use serde_json::{Value, json};

use crate::support::{Server, client, parse_sse};

/// 100 tokens a minute.
const BUDGET_KEY: &str = "rk-test-cache-budget";
/// `env::RAGWAY_TEST_API_KEY` (support.rs), without limits.
const FREE_KEY: &str = "rk-test-team-a-0c81";
const BUDGET_KEY_SHA256: &str = "c4a8ecb3cbbd29b847aa4ef6699f915346a311fa983d5763de850d73261afb45";

fn config(openai: &str) -> String {
    format!(
        r#"
[[server.auth.keys]]
name = "budget"
sha256 = "{BUDGET_KEY_SHA256}"
tokens_per_minute = 100

[[server.auth.keys]]
name = "free"
key = "env::RAGWAY_TEST_API_KEY"

[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
retry = {{ attempts = 1 }}
cache = {{ ttl_secs = 600 }}

[[llm]]
name = "streamy"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
retry = {{ attempts = 1 }}
cache = {{ ttl_secs = 600, streams = true }}

[[llm]]
name = "brief"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
cache = {{ ttl_secs = 1 }}

[[llm]]
name = "uncached"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
"#
    )
}

/// POSTs `body` to `path` with the key without limits and `headers`: the status,
/// `x-ragway-cache` and the body's text.
async fn post(
    server: &Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    post_as(FREE_KEY, server, path, body, headers).await
}

async fn post_as(
    key: &str,
    server: &Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut request = client()
        .post(format!("{}{path}", server.url))
        .bearer_auth(key)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-ragway-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, cache, response.text().await.unwrap())
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 50,
        "messages": [{"role": "user", "content": "Tell me about caching."}]})
}

fn content(text: &str) -> String {
    let body: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_answers_come_back_free_and_anything_that_changes_the_answer_misses() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let server = Server::start(&config(&openai.url())).await;
    let calls = || openai.requests().len();

    // Forty words: this answer costs about 47 of the key's 100 tokens a minute.
    let long = vec!["cache"; 40].join(" ");
    openai.push(Scripted::Text(long.clone()));
    let (status, cache, first) = post_as(
        BUDGET_KEY,
        &server,
        "/v1/chat/completions",
        &chat("gpt-4o"),
        &[],
    )
    .await;
    assert_eq!((status, cache.as_deref()), (200, Some("miss")), "{first}");
    assert_eq!(content(&first), long);

    // The same question again, many times: no call, the same answer and usage, and no
    // tokens (another 50 reserved each time would not fit in what is left).
    for _ in 0..5 {
        let (status, cache, again) = post_as(
            BUDGET_KEY,
            &server,
            "/v1/chat/completions",
            &chat("gpt-4o"),
            &[],
        )
        .await;
        assert_eq!((status, cache.as_deref()), (200, Some("hit")), "{again}");
        let (first, again): (Value, Value) = (
            serde_json::from_str(&first).unwrap(),
            serde_json::from_str(&again).unwrap(),
        );
        assert_eq!(again["choices"], first["choices"]);
        assert_eq!(again["usage"], first["usage"]);
    }
    assert_eq!(calls(), 1);

    // Anything that changes the answer asks the model: here, the temperature. The key's
    // tokens were spent by the first answer, so this one is refused before any call.
    let mut warmer = chat("gpt-4o");
    warmer["temperature"] = json!(0.5);
    let (status, cache, refused) =
        post_as(BUDGET_KEY, &server, "/v1/chat/completions", &warmer, &[]).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(cache, None);
    assert_eq!(calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_skip_or_refresh_the_cache_and_streams_use_it_when_the_model_says_so() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let server = Server::start(&config(&openai.url())).await;
    let calls = || openai.requests().len();
    let ask =
        |model: &str| json!({"prompt": "What is a cache?", "llm_name": model, "max_tokens": 20});

    // /generate keeps answers too; a changed question misses.
    let (_, cache, first) = post(&server, "/generate", &ask("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"), "{first}");
    let (_, cache, _) = post(&server, "/generate", &ask("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    let mut other = ask("gpt-4o");
    other["system"] = json!("Answer in French.");
    let (_, cache, _) = post(&server, "/generate", &other, &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(calls(), 2);

    // `cache: false` and `Cache-Control: no-store` neither read nor write; `no-cache` asks the
    // model and keeps its new answer.
    let mut skip = ask("gpt-4o");
    skip["cache"] = json!(false);
    openai.push(Scripted::Text("skipped".into()));
    let (_, cache, body) = post(&server, "/generate", &skip, &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"), "{body}");
    openai.push(Scripted::Text("not kept".into()));
    let (_, cache, _) = post(
        &server,
        "/generate",
        &ask("gpt-4o"),
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(calls(), 4);
    let (_, cache, body) = post(&server, "/generate", &ask("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    let kept: Value = serde_json::from_str(&first).unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["response"], kept["response"],
        "a skipped answer replaced the kept one"
    );
    openai.push(Scripted::Text("fresh".into()));
    let (_, cache, _) = post(
        &server,
        "/generate",
        &ask("gpt-4o"),
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(cache.as_deref(), Some("miss"));
    let (_, cache, body) = post(&server, "/generate", &ask("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["response"],
        "fresh"
    );
    assert_eq!(calls(), 5);

    // A model without `cache` says nothing of it; nor does a stream of a model that keeps
    // only whole answers.
    let (_, cache, _) = post(&server, "/generate", &ask("uncached"), &[]).await;
    assert_eq!(cache, None);
    let mut streamed = ask("gpt-4o");
    streamed["stream"] = json!(true);
    let (status, cache, _) = post(&server, "/generate", &streamed, &[]).await;
    assert_eq!((status, cache), (200, None));
    assert_eq!(calls(), 7);

    // `streams = true`: a stream that fails is not kept; one that ends is, and comes back as
    // the same text, usage and finish.
    let mut stream = chat("streamy");
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    openai.push(Scripted::StreamException {
        after_chunks: 1,
        kind: "cut".into(),
        message: "cut".into(),
    });
    let (_, cache, _) = post(&server, "/v1/chat/completions", &stream, &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    let (_, cache, first) = post(&server, "/v1/chat/completions", &stream, &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"), "the failed stream was kept");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, cache, again) = post(&server, "/v1/chat/completions", &stream, &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(calls(), 9);
    let told = |text: &str| {
        let events = parse_sse(text);
        let words: String = events
            .iter()
            .filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        let finish: Vec<Value> = events
            .iter()
            .map(|(_, e)| e["choices"][0]["finish_reason"].clone())
            .filter(|f| !f.is_null())
            .collect();
        let usage = events
            .iter()
            .rev()
            .find(|(_, e)| !e["usage"].is_null())
            .map(|(_, e)| e["usage"].clone());
        (words, finish, usage)
    };
    let (words, finish, usage) = told(&first);
    assert!(!words.is_empty(), "{first}");
    assert_eq!(told(&again), (words, finish, usage));

    // Entries expire after their model's ttl_secs.
    let (_, cache, _) = post(&server, "/v1/chat/completions", &chat("brief"), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, cache, _) = post(&server, "/v1/chat/completions", &chat("brief"), &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (_, cache, _) = post(&server, "/v1/chat/completions", &chat("brief"), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"));

    // Lookups are counted in /metrics.
    let metrics = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hits = metrics
        .lines()
        .find(|l| {
            l.starts_with("ragway_cache_lookups_total")
                && l.contains("model=\"gpt-4o\"")
                && l.contains("result=\"hit\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(hits.ends_with(" 3"), "{hits}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_kept_answers_through_redis_and_an_outage_only_costs_hits() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let mut redis = RedisServer::start().unwrap();
    let with_redis = format!(
        "[server.state]\nredis_url = \"env::RAGWAY_TEST_REDIS_URL\"\nredis_timeout_secs = 2\n{}",
        config(&openai.url())
    );
    let url = redis.url();
    let replica = || {
        Server::start_with(&with_redis, |command| {
            command.env("RAGWAY_TEST_REDIS_URL", &url);
        })
    };
    let (a, b) = (replica().await, replica().await);

    let (_, cache, first) = post(&a, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("miss"), "{first}");
    // Kept by a task of its own once answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, cache, again) = post(&b, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"), "{again}");
    assert_eq!(content(&again), content(&first));
    assert_eq!(openai.requests().len(), 1);
    let keys = redis.command("KEYS ragway:cache:*").unwrap();
    let key = keys
        .lines()
        .find(|line| line.starts_with("ragway:cache:"))
        .unwrap_or_else(|| panic!("{keys}"));
    let ttl = redis.command(&format!("TTL {key}")).unwrap();
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!((1..=600).contains(&ttl), "{ttl}");

    // Another writer left something that is not an answer there: a miss, and the model's
    // answer replaces it.
    let written = redis
        .command(&format!("SET {key} '{{\"choices\":7}}'"))
        .unwrap();
    assert!(written.starts_with("+OK"), "{written}");
    let (status, cache, body) = post(&a, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!((status, cache.as_deref()), (200, Some("miss")), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, cache, _) = post(&b, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(openai.requests().len(), 2);

    // Redis down: the cache misses and the model answers.
    redis.stop();
    let (status, cache, body) = post(&b, "/v1/chat/completions", &chat("gpt-4o"), &[]).await;
    assert_eq!((status, cache.as_deref()), (200, Some("miss")), "{body}");
    assert_eq!(openai.requests().len(), 3);
}
