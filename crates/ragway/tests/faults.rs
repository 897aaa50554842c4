//! Fault injection through the fakes: throttling storms, 5xx, resets, garbage, slow first
//! bytes, streams cut midway and Bedrock in-stream exceptions. ragway answers with the right
//! status, retries only what is worth retrying (never once a stream has opened), falls
//! back, cools failing models down, stays within its timeouts and never panics.

use std::time::{Duration, Instant};

use ragway_testkit::{Fake, Scripted};
use serde_json::{Value, json};

use crate::support::{Server, client};

/// Two OpenAI fakes (the main one and a backup) and a Bedrock fake behind one server. Pauses
/// between retries are a few milliseconds so that the tests stay fast.
struct Faults {
    main: Fake,
    backup: Fake,
    bedrock: Fake,
    server: Server,
}

impl Faults {
    async fn start() -> Faults {
        let main = ragway_testkit::openai::start().await.unwrap();
        let backup = ragway_testkit::openai::start().await.unwrap();
        let bedrock = ragway_testkit::bedrock::start().await.unwrap();
        let (main_url, backup_url, bedrock_url) = (main.url(), backup.url(), bedrock.url());
        let config = format!(
            r#"
[[llm]]
name = "gpt"
type = "openai"
model = "gpt-4o"
base_url = "{main_url}/v1"
timeout_secs = 1
retry = {{ attempts = 3, initial_backoff_ms = 5, max_backoff_ms = 20 }}
cooldown = {{ after_failures = 0 }}

[[llm]]
name = "gpt-with-backup"
type = "openai"
model = "gpt-4o"
base_url = "{main_url}/v1"
retry = {{ attempts = 2, initial_backoff_ms = 5, max_backoff_ms = 20 }}
cooldown = {{ after_failures = 0 }}
fallbacks = ["backup"]

[[llm]]
name = "flaky"
type = "openai"
model = "gpt-4o"
base_url = "{main_url}/v1"
retry = {{ attempts = 1 }}
cooldown = {{ after_failures = 2, secs = 1.5 }}
fallbacks = ["backup"]

[[llm]]
name = "lonely"
type = "openai"
model = "gpt-4o"
base_url = "{main_url}/v1"
retry = {{ attempts = 1 }}
cooldown = {{ after_failures = 1, secs = 30 }}

[[llm]]
name = "backup"
type = "openai"
model = "gpt-4o-mini"
base_url = "{backup_url}/v1"

[[llm]]
name = "claude"
type = "bedrock"
model_id = "us.anthropic.claude-3-haiku-20240307-v1:0"
region = "us-east-1"
endpoint_url = "{bedrock_url}"
timeout_secs = 2
retry = {{ attempts = 3, initial_backoff_ms = 5, max_backoff_ms = 20 }}
cooldown = {{ after_failures = 0 }}
"#
        );
        let server = Server::start(&config).await;
        Faults {
            main,
            backup,
            bedrock,
            server,
        }
    }

    async fn generate(&self, llm: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        self.server.post("/generate", &ask(llm)).await
    }

    async fn stream(&self, llm: &str) -> (u16, Vec<(String, Value)>) {
        let mut request = ask(llm);
        request["stream"] = json!(true);
        self.server.post_sse("/generate", &request).await
    }

    async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series in `/metrics`, 0 when it is absent.
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .find(|line| {
                labels
                    .iter()
                    .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
            })
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |value| value.parse().unwrap())
    }

    fn assert_no_panic(&self) {
        let logs = self.server.logs();
        assert!(!logs.contains("panicked"), "ragway panicked:\n{logs}");
    }
}

fn ask(llm: &str) -> Value {
    json!({ "prompt": "What is a qubit?", "llm_name": llm, "vector_search_type": "none" })
}

fn error(status: u16, kind: &str, message: &str) -> Scripted {
    Scripted::Error {
        status,
        kind: kind.into(),
        message: message.into(),
    }
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttling_storm_is_retried_then_429_with_retry_after() {
    let faults = Faults::start().await;
    for _ in 0..3 {
        faults
            .main
            .push(error(429, "rate_limit_exceeded", "Rate limit reached"));
    }
    let (status, headers, body) = faults.generate("gpt").await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached")
    );
    assert_eq!(faults.main.requests().len(), 3, "three attempts in all");
    let retries = [("model", "gpt"), ("kind", "throttled")];
    assert_eq!(faults.metric("ragway_retries_total", &retries).await, 2);
    assert_eq!(
        faults
            .metric("ragway_provider_errors_total", &retries)
            .await,
        3
    );
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_and_resets_are_retried_client_errors_are_not() {
    let faults = Faults::start().await;
    faults
        .main
        .push(error(500, "server_error", "the GPU caught fire"));
    let (status, headers, body) = faults.generate("gpt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["llm_name"], "gpt");
    assert!(body.get("fallback_from").is_none(), "{body}");
    assert_eq!(headers["x-ragway-model"], "gpt");
    assert_eq!(faults.main.requests().len(), 2, "one retry");

    faults.main.push(Scripted::Reset);
    let (status, _, body) = faults.generate("gpt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(faults.main.requests().len(), 4, "a reset is retried");
    let resets = [("model", "gpt"), ("kind", "unreachable")];
    assert_eq!(faults.metric("ragway_retries_total", &resets).await, 1);

    faults
        .main
        .push(error(400, "invalid_request_error", "messages are too long"));
    let (status, _, body) = faults.generate("gpt").await;
    assert_eq!(status, 502, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("too long"));
    assert_eq!(faults.main.requests().len(), 5, "a 400 is not retried");

    // Nor is a 400 handed to a fallback: the request itself is wrong.
    faults
        .main
        .push(error(400, "invalid_request_error", "messages are too long"));
    let (status, _, _) = faults.generate("gpt-with-backup").await;
    assert_eq!(status, 502);
    assert_eq!(faults.main.requests().len(), 6);
    assert!(faults.backup.requests().is_empty());
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_502_not_retried_and_falls_back_when_it_can() {
    let faults = Faults::start().await;
    faults.main.push(Scripted::Garbage);
    let (status, _, body) = faults.generate("gpt").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("cannot read"),
        "{body}"
    );
    assert_eq!(faults.main.requests().len(), 1, "garbage is not retried");

    faults.main.push(Scripted::Garbage);
    let (status, headers, body) = faults.generate("gpt-with-backup").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["llm_name"], "backup", "{body}");
    assert_eq!(body["fallback_from"], "gpt-with-backup", "{body}");
    assert_eq!(body["response"], "ragway fake answer from gpt-4o-mini.");
    assert_eq!(headers["x-ragway-model"], "backup");
    assert_eq!(headers["x-ragway-fallback-from"], "gpt-with-backup");
    assert_eq!(faults.main.requests().len(), 2);
    assert_eq!(faults.backup.requests().len(), 1);
    let fallback = [("from", "gpt-with-backup"), ("to", "backup")];
    assert_eq!(faults.metric("ragway_fallbacks_total", &fallback).await, 1);
    let garbage = [("model", "gpt-with-backup"), ("kind", "invalid_response")];
    assert_eq!(
        faults
            .metric("ragway_provider_errors_total", &garbage)
            .await,
        1
    );

    // The OpenAI-compatible route names the model that answered too, streamed or not.
    faults.main.push(Scripted::Garbage);
    let chat = json!({
        "model": "gpt-with-backup",
        "messages": [{ "role": "user", "content": "hi" }],
    });
    let (status, headers, body) = faults.server.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "backup");
    assert_eq!(headers["x-ragway-model"], "backup");

    faults.main.push(Scripted::Garbage);
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (status, events) = faults
        .server
        .post_sse("/v1/chat/completions", &streamed)
        .await;
    assert_eq!(status, 200, "{events:?}");
    assert_eq!(events[0].1["model"], "backup", "{events:?}");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_enormous_or_revealing_answers_are_cut() {
    let faults = Faults::start().await;
    // 20 MB of answer: past the 16 MiB a completion may be, a 502 that says so. ("lonely" has
    // the default timeout: the fake takes a while to write that much.)
    faults.main.push(Scripted::Text("x".repeat(20 << 20)));
    let (status, _, body) = faults.generate("lonely").await;
    assert_eq!(
        status,
        502,
        "{}",
        &body.to_string()[..200.min(body.to_string().len())]
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("larger than 16 MiB"),
        "{}",
        &detail[..detail.len().min(300)]
    );
    // 4 MB of error message: the caller gets its start, not megabytes.
    faults.main.push(Scripted::Error {
        status: 400,
        kind: "invalid_request_error".into(),
        message: "y".repeat(4 << 20),
    });
    let (status, _, body) = faults.generate("gpt").await;
    assert_eq!(status, 502);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.len() < 2_000, "{} bytes of detail", detail.len());
    assert!(detail.contains("yyyy"), "{detail}");
    // An upstream quoting a credential: the reason reaches the caller, the credential not.
    faults.main.push(Scripted::Error {
        status: 401,
        kind: "invalid_request_error".into(),
        message: "Incorrect API key provided: sk-proj-Zx81abcdefgh1234. Check your key.".into(),
    });
    let (status, _, body) = faults.generate("gpt").await;
    assert_eq!(status, 502);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("Incorrect API key provided: [redacted]. Check your key."),
        "{detail}"
    );
    assert!(!detail.contains("Zx81"), "{detail}");
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_first_byte_is_504_within_the_timeout_not_retried() {
    let faults = Faults::start().await;
    faults.main.push(Scripted::Delay(Duration::from_secs(5)));
    let started = Instant::now();
    let (status, _, body) = faults.generate("gpt").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(faults.main.requests().len(), 1, "a timeout is not retried");

    faults.main.push(Scripted::Delay(Duration::from_secs(5)));
    let started = Instant::now();
    let (status, events) = faults.stream("gpt").await;
    assert_eq!(status, 504, "{events:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_retried_until_it_opens_never_after() {
    let faults = Faults::start().await;
    faults.main.push(Scripted::StreamException {
        after_chunks: 2,
        kind: "cut".into(),
        message: "cut".into(),
    });
    let (status, events) = faults.stream("gpt").await;
    assert_eq!(status, 200);
    assert_eq!(
        names(&events),
        ["sources", "delta", "delta", "error"],
        "{events:?}"
    );
    assert_eq!(events[3].1["status"], 502);
    assert_eq!(
        faults.main.requests().len(),
        1,
        "no retry after the first words"
    );

    // Cut after the role chunk: the answer had started (the client had its first byte), so the
    // stream ends with an error, unretried.
    faults.main.push(Scripted::StreamException {
        after_chunks: 0,
        kind: "cut".into(),
        message: "cut".into(),
    });
    let (status, events) = faults.stream("gpt").await;
    assert_eq!(status, 200);
    assert_eq!(names(&events), ["sources", "error"], "{events:?}");
    assert_eq!(events[1].1["status"], 502);
    assert_eq!(faults.main.requests().len(), 2);

    // An error event in place of the first chunk: retried, and the client never notices.
    faults.main.push(Scripted::StreamRefused {
        kind: "server_error".into(),
        message: "overloaded".into(),
    });
    let (status, events) = faults.stream("gpt").await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap().0, "done", "{events:?}");
    assert!(!names(&events).contains(&"error"), "{events:?}");
    assert_eq!(faults.main.requests().len(), 4);

    faults.main.push(Scripted::Reset);
    faults.main.push(error(503, "server_error", "overloaded"));
    let (status, events) = faults.stream("gpt").await;
    assert_eq!(status, 200);
    let (name, done) = events.last().unwrap();
    assert_eq!(name, "done", "{events:?}");
    assert_eq!(done["llm_name"], "gpt");
    assert_eq!(faults.main.requests().len(), 7);

    // Refused on every attempt: an ordinary error status, not a 200 that ends in an error.
    for _ in 0..3 {
        faults.main.push(Scripted::StreamRefused {
            kind: "server_error".into(),
            message: "overloaded".into(),
        });
    }
    let (status, events) = faults.stream("gpt").await;
    assert_eq!(status, 502, "{events:?}");
    assert_eq!(faults.main.requests().len(), 10);
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_throttling_and_model_not_ready_are_retried_stream_exceptions_only_before_it_opens()
{
    let faults = Faults::start().await;
    faults
        .bedrock
        .push(error(500, "InternalServerException", "Internal error"));
    faults
        .bedrock
        .push(error(429, "ModelNotReadyException", "Model is loading"));
    faults
        .bedrock
        .push(error(429, "ThrottlingException", "Too many requests"));
    let (status, headers, body) = faults.generate("claude").await;
    assert_eq!(status, 429, "three failures use up three attempts: {body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        faults.bedrock.requests().len(),
        3,
        "no SDK retries underneath"
    );

    faults
        .bedrock
        .push(error(429, "ModelNotReadyException", "Model is loading"));
    faults
        .bedrock
        .push(error(500, "InternalServerException", "Internal error"));
    let (status, _, body) = faults.generate("claude").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(faults.bedrock.requests().len(), 6);

    faults
        .bedrock
        .push(error(400, "ValidationException", "bad input"));
    let (status, _, _) = faults.generate("claude").await;
    assert_eq!(status, 502);
    assert_eq!(
        faults.bedrock.requests().len(),
        7,
        "validation is not retried"
    );

    faults.bedrock.push(Scripted::StreamException {
        after_chunks: 1,
        kind: "modelStreamErrorException".into(),
        message: "the model broke down".into(),
    });
    let (status, events) = faults.stream("claude").await;
    assert_eq!(status, 200);
    assert_eq!(names(&events), ["sources", "delta", "error"], "{events:?}");
    assert!(
        events[2].1["detail"]
            .as_str()
            .unwrap()
            .contains("the model broke down"),
        "{events:?}"
    );
    assert_eq!(
        faults.bedrock.requests().len(),
        8,
        "no retry after the first words"
    );

    // Throttled after messageStart, before any text: the answer had started, so unretried.
    faults.bedrock.push(Scripted::StreamException {
        after_chunks: 0,
        kind: "throttlingException".into(),
        message: "Too many tokens".into(),
    });
    let (status, events) = faults.stream("claude").await;
    assert_eq!(status, 200);
    assert_eq!(names(&events), ["sources", "error"], "{events:?}");
    assert_eq!(events[1].1["status"], 429, "{events:?}");
    assert_eq!(faults.bedrock.requests().len(), 9);

    // Throttled in place of messageStart: retried, and the client never notices.
    faults.bedrock.push(Scripted::StreamRefused {
        kind: "throttlingException".into(),
        message: "Too many tokens".into(),
    });
    let (status, events) = faults.stream("claude").await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap().0, "done", "{events:?}");
    assert!(!names(&events).contains(&"error"), "{events:?}");
    assert_eq!(faults.bedrock.requests().len(), 11);

    // A stream that stalls after messageStart ends within the model's timeout (2 s), unretried.
    faults
        .bedrock
        .push(Scripted::StreamDelay(Duration::from_secs(6)));
    let started = Instant::now();
    let (status, events) = faults.stream("claude").await;
    assert_eq!(status, 200, "{events:?}");
    assert_eq!(names(&events), ["sources", "error"], "{events:?}");
    assert_eq!(events[1].1["status"], 504, "{events:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(faults.bedrock.requests().len(), 12);

    faults.bedrock.push(Scripted::Garbage);
    let (status, _, body) = faults.generate("claude").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        faults.bedrock.requests().len(),
        13,
        "garbage is not retried"
    );
    faults.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_model_cools_down_is_skipped_then_tried_again() {
    let faults = Faults::start().await;
    faults.main.push(error(500, "server_error", "down"));
    faults.main.push(error(500, "server_error", "down"));
    for expected_main in [1, 2] {
        let (status, _, body) = faults.generate("flaky").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["llm_name"], "backup");
        assert_eq!(faults.main.requests().len(), expected_main);
    }
    assert_eq!(
        faults
            .metric("ragway_cooldowns_total", &[("model", "flaky")])
            .await,
        1
    );
    // Cooling down: skipped without a call.
    let (status, _, body) = faults.generate("flaky").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["llm_name"], "backup");
    assert_eq!(body["fallback_from"], "flaky");
    assert_eq!(
        faults.main.requests().len(),
        2,
        "a cooling model is not called"
    );
    assert_eq!(faults.backup.requests().len(), 3);

    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let (status, headers, body) = faults.generate("flaky").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["llm_name"], "flaky", "tried again after the cooldown");
    assert_eq!(headers["x-ragway-model"], "flaky");
    assert_eq!(faults.main.requests().len(), 3);

    // With no fallback to turn to, a cooling model is a 503 naming it and when to come back.
    faults.main.push(error(502, "server_error", "down"));
    let (status, _, _) = faults.generate("lonely").await;
    assert_eq!(status, 502);
    let (status, headers, body) = faults.generate("lonely").await;
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"lonely\"") && detail.contains("cooling down"),
        "{detail}"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&wait), "{wait}");
    assert_eq!(faults.main.requests().len(), 4);

    let chat = json!({ "model": "lonely", "messages": [{ "role": "user", "content": "hi" }] });
    let (status, _, body) = faults.server.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "model_cooling_down", "{body}");
    faults.assert_no_panic();
}
