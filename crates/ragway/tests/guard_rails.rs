//! API keys and request limits on the real binary: every route that does work refuses a
//! request without a valid key (in its own error shape), keys never reach the logs, allow-lists
//! and per-key limits hold, and bodies, prompts, `max_tokens`, concurrency, time and stream
//! silences past their limits get clear errors instead of hangs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ragway_testkit::Scripted;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::{Server, client, parse_sse, ragway_bin, test_env};

/// Read from the environment through `env::RAGWAY_TEST_API_KEY`.
const ENV_KEY: &str = "rk-test-team-a-0c81";
/// Configured by its SHA-256 only.
const HASHED_KEY: &str = "rk-test-team-b-5f2c";
const HASHED_KEY_SHA256: &str = "0510e99f01e40ed075754d89595a354305a5246b5f13a8eb41b860fe9660e07f";
/// In a keys file.
const FILE_KEY: &str = "rk-test-file-key-9a1d";
const FILE_KEY_SHA256: &str = "da796a65d1720520ff8ed80e173efa63cb42462674148d61f39f8c064c6c42b5";
/// Allowed 100 tokens a minute.
const THRIFTY_KEY: &str = "rk-test-thrifty";
const THRIFTY_KEY_SHA256: &str = "5c58847cd2bec3c8dceb5bf895d5cc83cecbadf05480c72259174e3e66eacd48";
const WRONG_KEY: &str = "rk-test-not-a-key-77aa";

fn config(openai: &str, keys_file: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[server.auth]
keys_file = "{keys_file}"

[[server.auth.keys]]
name = "team-a"
key = "env::RAGWAY_TEST_API_KEY"

[[server.auth.keys]]
name = "team-b"
sha256 = "{HASHED_KEY_SHA256}"
models = ["gpt-4o"]
stores = []
requests_per_minute = 3

[[server.auth.keys]]
name = "thrifty"
sha256 = "{THRIFTY_KEY_SHA256}"
tokens_per_minute = 100

{extra}

[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"

[[llm]]
name = "other"
type = "openai"
model = "gpt-4o-mini"
base_url = "{openai}/v1"
"#,
        keys_file = keys_file.display(),
    )
}

async fn start(extra: &str) -> (ragway_testkit::Fake, Server, tempfile::TempDir) {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.sha256");
    std::fs::write(
        &keys_file,
        format!("# ops keys\n{FILE_KEY_SHA256} ops-dashboard\n"),
    )
    .unwrap();
    let server = Server::start(&config(&openai.url(), &keys_file, extra)).await;
    (openai, server, dir)
}

enum Key<'a> {
    None,
    Bearer(&'a str),
    Header(&'a str),
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: &Key<'_>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}{path}", server.url);
    let mut request = match method {
        "GET" => client().get(url),
        "POST" => client().post(url),
        "DELETE" => client().delete(url),
        other => panic!("no method {other}"),
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    request = match key {
        Key::None => request,
        Key::Bearer(key) => request.bearer_auth(key),
        Key::Header(key) => request.header("x-api-key", *key),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, json)
}

fn ask(model: &str) -> Value {
    json!({"prompt": "What is ragway?", "llm_name": model, "vector_search_type": "none"})
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_that_does_work_needs_a_key_and_keys_never_reach_the_logs() {
    let (openai, server, _dir) = start("").await;
    let generate = ask("gpt-4o");
    let search = json!({"query": "q", "vector_search_type": "none"});
    let documents = json!({"documents": [{"id": "d", "text": "t"}]});
    let embeddings = json!({"model": "none", "input": "x"});
    let protected: Vec<(&str, &str, Option<&Value>)> = vec![
        ("GET", "/models", None),
        ("POST", "/generate", Some(&generate)),
        ("POST", "/search", Some(&search)),
        ("GET", "/stores", None),
        ("POST", "/stores/faiss/documents", Some(&documents)),
        ("DELETE", "/stores/faiss/documents/a/b", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/gpt-4o", None),
        ("POST", "/v1/chat/completions", Some(&generate)),
        ("POST", "/v1/embeddings", Some(&embeddings)),
    ];
    for (method, path, body) in &protected {
        for key in [Key::None, Key::Bearer(WRONG_KEY), Key::Header(WRONG_KEY)] {
            let (status, headers, body) = call(&server, method, path, *body, &key).await;
            assert_eq!(status, 401, "{method} {path}: {body}");
            assert_eq!(headers["www-authenticate"], "Bearer", "{method} {path}");
            if path.starts_with("/v1") {
                assert_eq!(body["error"]["code"], "invalid_api_key", "{path}: {body}");
                assert!(body["error"]["message"].is_string(), "{body}");
            } else {
                assert!(
                    body["detail"].as_str().unwrap().contains("API key"),
                    "{path}: {body}"
                );
            }
        }
    }
    // The same for every operation the OpenAPI document says needs a key, so that a route
    // added later cannot slip outside the key check unnoticed; and the open ones stay open.
    let (status, _, document) = call(&server, "GET", "/openapi.json", None, &Key::None).await;
    assert_eq!(status, 200);
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{name}", "faiss")
            .replace("{id}", "doc-1")
            .replace("{asset}", "swagger-ui.css");
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let needs_key = !operation["security"].as_array().unwrap().is_empty();
            let body = (method == "POST").then(|| json!({}));
            let (status, _, answer) =
                call(&server, &method, &concrete, body.as_ref(), &Key::None).await;
            if needs_key {
                assert_eq!(status, 401, "{method} {path}: {answer}");
                checked += 1;
            } else {
                assert_ne!(
                    status, 401,
                    "{method} {path} is documented as open: {answer}"
                );
            }
        }
    }
    assert_eq!(
        checked,
        protected.len(),
        "every protected route above is in the document"
    );
    assert!(
        openai.requests().is_empty(),
        "nothing refused went upstream"
    );

    // Each way of giving each kind of key gets in.
    for key in [
        Key::Bearer(ENV_KEY),
        Key::Header(ENV_KEY),
        Key::Bearer(HASHED_KEY),
        Key::Header(FILE_KEY),
    ] {
        let (status, _, body) = call(&server, "POST", "/generate", Some(&generate), &key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["response"], "ragway fake answer from gpt-4o.");
    }
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&chat("gpt-4o")),
        &Key::Bearer(FILE_KEY),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Probes, metrics and the pages stay open.
    for path in ["/", "/healthz", "/readyz", "/metrics", "/ui"] {
        let (status, _, body) = call(&server, "GET", path, None, &Key::None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    let logs = server
        .logs_once_they_contain("unknown API key", std::time::Duration::from_secs(5))
        .await;
    for secret in [ENV_KEY, HASHED_KEY, FILE_KEY, WRONG_KEY, HASHED_KEY_SHA256] {
        assert!(!logs.contains(secret), "{secret} is in the logs:\n{logs}");
    }
    assert!(logs.contains("unknown API key"), "{logs}");
    assert!(logs.contains("team-a"), "the key's name is logged: {logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_uses_only_its_models_and_stores_and_its_requests_per_minute() {
    let (openai, server, _dir) = start("").await;
    let team_b = Key::Bearer(HASHED_KEY);

    let (status, _, body) = call(&server, "GET", "/models", None, &team_b).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"llm_models": ["gpt-4o"], "vector_dbs": ["none"]})
    );

    let (status, _, body) = call(&server, "POST", "/generate", Some(&ask("other")), &team_b).await;
    assert_eq!(status, 403, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"other\"") && detail.contains("gpt-4o"),
        "{detail}"
    );

    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&chat("other")),
        &team_b,
    )
    .await;
    // Third request of the minute: still within the limit of 3.
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert!(openai.requests().is_empty(), "refused requests go nowhere");

    // The fourth request in the minute is one too many, whatever it asks.
    let (status, headers, body) =
        call(&server, "POST", "/generate", Some(&ask("gpt-4o")), &team_b).await;
    assert_eq!(status, 429, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("3 requests per minute"),
        "{body}"
    );
    // Counted, without naming the key's holder: /metrics is on the API's port, open to all.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("ragway_rate_limited_total{key=\"hidden\",limit=\"requests\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("team-b"), "{metrics}");
    // Another key is not affected.
    let (status, _, _) = call(
        &server,
        "POST",
        "/generate",
        Some(&ask("other")),
        &Key::Bearer(ENV_KEY),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_learns_nothing_about_a_model_it_may_not_use() {
    let embedder = "[[embedder]]\nname = \"ada\"\ntype = \"openai\"\nmodel = \"text-embedding-3-small\"\nbase_url = \"http://127.0.0.1:9/v1\"\ndimensions = 256\n";
    let (openai, server, _dir) = start(embedder).await;
    let team_b = Key::Bearer(HASHED_KEY);
    // Asking for another size than the embedder makes would say its size: the key may not
    // use it, so it hears only that.
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/embeddings",
        Some(&json!({"model": "ada", "input": "x", "dimensions": 7})),
        &team_b,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains("256"), "{body}");
    // The same for a chat with a model it may not use and a setting (n) that a model may
    // refuse: the permission answers first.
    let mut asked = chat("other");
    asked["n"] = json!(2);
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&asked),
        &team_b,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(openai.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_reserved_before_the_model_is_called_and_settled_after() {
    let (openai, server, _dir) = start("").await;
    let thrifty = Key::Bearer(THRIFTY_KEY);
    let chat = |max_tokens: u32| {
        json!({"model": "gpt-4o", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}]})
    };
    // Reserves its prompt (15 bytes: 4 tokens, and 8 around the message) and max_tokens: 72 of
    // the 100 allowed; the fake answers with 3 prompt and 5 answer tokens, and 8 it costs.
    let mut first = ask("gpt-4o");
    first["max_tokens"] = json!(60);
    let (status, _, body) = call(&server, "POST", "/generate", Some(&first), &thrifty).await;
    assert_eq!(status, 200, "{body}");
    let used = body["usage"]["input_tokens"].as_u64().unwrap()
        + body["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(used, 8, "{body}");

    // 9 + 90 more would be 107: a 429 that says why and when, and nothing goes upstream.
    let upstream = openai.requests().len();
    let (status, headers, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&chat(90)),
        &thrifty,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100 tokens per minute"),
        "{body}"
    );
    assert_eq!(openai.requests().len(), upstream);

    // 9 + 80 fits beside the 8 the first answer was settled to (not the 72 it reserved).
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&chat(80)),
        &thrifty,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A request that could never fit says so.
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&chat(200)),
        &thrifty,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this request alone needs"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_refused_for_its_format_is_charged_all_the_same() {
    let (openai, server, _dir) = start("").await;
    let thrifty = Key::Bearer(THRIFTY_KEY);
    // Sixty words that are not the JSON asked for: a 502, but the model read and wrote them.
    openai.push(Scripted::Text(vec!["word"; 60].join(" ")));
    let structured = json!({"model": "gpt-4o", "max_tokens": 70,
        "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "Answer in JSON."}]});
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&structured),
        &thrifty,
    )
    .await;
    assert_eq!(status, 502, "{body}");

    // Those 60-odd tokens count: another 9 + 60 no longer fits in the 100 a minute.
    let mut next = chat("gpt-4o");
    next["max_tokens"] = json!(60);
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&next),
        &thrifty,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        openai.requests().len(),
        1,
        "the second request went upstream"
    );
}

const TIGHT: &str = r#"
[server.limits]
max_body_bytes = 2048
max_prompt_chars = 100
max_tokens = 50
max_in_flight = 2
request_timeout_secs = 2
stream_idle_timeout_secs = 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn bodies_prompts_and_max_tokens_past_their_limits_are_refused_clearly() {
    let (openai, server, _dir) = start(TIGHT).await;
    let key = Key::Bearer(ENV_KEY);

    let big = json!({"prompt": "x".repeat(4096), "llm_name": "gpt-4o"});
    let (status, _, body) = call(&server, "POST", "/generate", Some(&big), &key).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("2048 bytes"),
        "{body}"
    );
    let big_chat =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&big_chat),
        &key,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "request_too_large", "{body}");

    let long = json!({"prompt": "é".repeat(101), "llm_name": "gpt-4o"});
    let (status, _, body) = call(&server, "POST", "/generate", Some(&long), &key).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "prompt"]));
    assert_eq!(body["detail"][0]["type"], "string_too_long");
    // 100 two-byte characters are within a limit counted in characters.
    let (status, _, body) = call(
        &server,
        "POST",
        "/generate",
        Some(&json!({"prompt": "é".repeat(100), "llm_name": "gpt-4o"})),
        &key,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let long_chat = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "s".repeat(60)},
        {"role": "user", "content": "u".repeat(60)}]});
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&long_chat),
        &key,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages", "{body}");

    let greedy = json!({"prompt": "hi", "llm_name": "gpt-4o", "max_tokens": 51});
    let (status, _, body) = call(&server, "POST", "/generate", Some(&greedy), &key).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "max_tokens"]));
    let greedy_chat = json!({"model": "gpt-4o", "max_completion_tokens": 51,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&greedy_chat),
        &key,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "max_completion_tokens", "{body}");

    assert_eq!(
        openai.requests().len(),
        1,
        "only the request within limits went upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_in_flight_limit_is_503_at_once_and_slow_requests_time_out() {
    let (openai, server, _dir) = start(TIGHT).await;
    // Two requests hold both slots for a while.
    openai.push(Scripted::Delay(Duration::from_millis(1500)));
    openai.push(Scripted::Delay(Duration::from_millis(1500)));
    let slow = |server_url: String| async move {
        client()
            .post(format!("{server_url}/generate"))
            .bearer_auth(ENV_KEY)
            .json(&ask("gpt-4o"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let first = tokio::spawn(slow(server.url.clone()));
    let second = tokio::spawn(slow(server.url.clone()));
    let waiting = Instant::now();
    while openai.requests().len() < 2 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the slow requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, headers, body) = call(
        &server,
        "POST",
        "/generate",
        Some(&ask("gpt-4o")),
        &Key::Bearer(ENV_KEY),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("2 requests at once"),
        "{body}"
    );
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(&chat("gpt-4o")),
        &Key::Bearer(ENV_KEY),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    // Probes are not counted against the limit.
    assert_eq!(
        call(&server, "GET", "/readyz", None, &Key::None).await.0,
        200
    );
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);

    // A request that outlives the 2 s limit is a 504, on time.
    openai.push(Scripted::Delay(Duration::from_secs(30)));
    let started = Instant::now();
    let (status, _, body) = call(
        &server,
        "POST",
        "/generate",
        Some(&ask("gpt-4o")),
        &Key::Bearer(ENV_KEY),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("request_timeout_secs"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Its slot was given back.
    let (status, _, _) = call(
        &server,
        "POST",
        "/generate",
        Some(&ask("gpt-4o")),
        &Key::Bearer(ENV_KEY),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_goes_quiet_ends_with_an_error_event() {
    // The answer starts (the model's stream opens with its role chunk, and ragway answers
    // from there), then the model goes quiet for longer than the idle limit.
    let (openai, server, _dir) =
        start(&TIGHT.replace("request_timeout_secs = 2", "request_timeout_secs = 60")).await;
    openai.push(Scripted::StreamDelay(Duration::from_secs(3)));
    let started = Instant::now();
    let response = client()
        .post(format!("{}/generate", server.url))
        .bearer_auth(ENV_KEY)
        .json(&json!({"prompt": "hi", "llm_name": "gpt-4o", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = parse_sse(&response.text().await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["sources", "error"], "{events:?}");
    let data = &events[1].1;
    assert_eq!(data["status"], 504, "{data}");
    assert!(
        data["detail"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 1s"),
        "{data}"
    );
}

/// Starts `ragway serve` with `args`, returning its first stdout line or its error output.
async fn serve_outcome(
    config: &str,
    args: &[&str],
) -> Result<(tokio::process::Child, Vec<String>), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragway.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(ragway_bin())
        .arg("serve")
        .args(args)
        .arg("--config")
        .arg(&path)
        .envs(test_env())
        .env_remove("RAGWAY_INSECURE_NO_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let listening = line.starts_with("ragway listening on ");
            seen.push(line);
            if listening {
                return true;
            }
        }
        false
    })
    .await
    .expect("serve neither started nor exited");
    if read {
        return Ok((child, seen));
    }
    let output = child.wait_with_output().await.unwrap();
    assert!(!output.status.success());
    Err(String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_beyond_loopback_without_keys_needs_insecure_no_auth() {
    let open = "[[llm]]\nname = \"m\"\ntype = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let refused = serve_outcome(open, &["--bind", "0.0.0.0:0"])
        .await
        .unwrap_err();
    assert!(
        refused.contains("refusing to serve on 0.0.0.0:0 without API keys")
            && refused.contains("--insecure-no-auth"),
        "{refused}"
    );
    let (_child, lines) = serve_outcome(open, &["--bind", "0.0.0.0:0", "--insecure-no-auth"])
        .await
        .unwrap();
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("ragway listening on http://0.0.0.0:")
    );
    // Loopback needs no flag.
    serve_outcome(open, &["--bind", "127.0.0.1:0"])
        .await
        .unwrap();
    // With a key, any address.
    let keyed =
        format!("[[server.auth.keys]]\nname = \"k\"\nsha256 = \"{HASHED_KEY_SHA256}\"\n{open}");
    serve_outcome(&keyed, &["--bind", "0.0.0.0:0"])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_move_to_their_own_address() {
    let config = "[server]\nmetrics_bind = \"127.0.0.1:0\"\n\n[[llm]]\nname = \"m\"\ntype = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let (_child, lines) = serve_outcome(config, &["--bind", "127.0.0.1:0"])
        .await
        .unwrap();
    let metrics = lines
        .iter()
        .find_map(|line| line.strip_prefix("ragway metrics on "))
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    let api = lines
        .last()
        .unwrap()
        .strip_prefix("ragway listening on ")
        .unwrap();
    let api_call = client().get(format!("{api}/healthz")).send().await.unwrap();
    assert_eq!(api_call.status(), 200);
    let response = client().get(&metrics).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("ragway_requests_total{route=\"/healthz\""),
        "{text}"
    );
    let response = client().get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(
        response.status(),
        404,
        "the API's address no longer serves /metrics"
    );
}

/// CPU seconds the process has used so far (user and system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ, 100 on Linux
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedding_batch_nobody_waits_for_stops() {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/all-MiniLM-L6-v2");
    let config = format!(
        "[[llm]]\nname = \"m\"\ntype = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [[embedder]]\nname = \"minilm\"\ntype = \"local\"\npath = \"{models}\"\n"
    );
    let server = Server::start(&config).await;
    // 2,048 long inputs: many seconds of work on these cores.
    let inputs: Vec<String> = (0..2048)
        .map(|i| format!("passage {i} ") + &"words about many things ".repeat(60))
        .collect();
    let gave_up = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({"model": "minilm", "input": inputs}))
        .send()
        .await;
    assert!(
        gave_up.is_err(),
        "the batch finished within 2 s: make it longer"
    );
    // The batch running when the client left may finish; nothing after it starts. A few
    // seconds later the server is idle: well under a core's worth of CPU over a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_seconds(server.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds(server.pid()) - before;
    assert!(
        used < 0.3,
        "the server still works for nobody: {used:.2} CPU s in 1 s"
    );
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
}

/// Starts a request in the background that the test never waits for (dropped with the task).
fn background(url: String, body: Value) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = client().post(url).json(&body).send().await;
    })
}

/// Asserts a refusal of a full CPU queue: 503, `Retry-After`, in the OpenAI error shape.
async fn assert_busy(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 503, "{what}");
    assert!(response.headers().contains_key("retry-after"), "{what}");
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is busy") && message.contains("server.limits.max_queued_jobs"),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedding_work_past_the_cpu_queue_is_refused_at_once() {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/all-MiniLM-L6-v2");
    let config = format!(
        "[server.limits]\ncpu_workers = 1\nmax_queued_jobs = 1\n\n\
         [[llm]]\nname = \"m\"\ntype = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [[embedder]]\nname = \"minilm\"\ntype = \"local\"\npath = \"{models}\"\n"
    );
    let server = Server::start(&config).await;
    let url = format!("{}/v1/embeddings", server.url);
    // Two requests of many long inputs take turns on the one worker, batch by batch: one
    // embeds while the other waits, and that fills the queue.
    let inputs: Vec<String> = (0..1024)
        .map(|i| format!("passage {i} ") + &"words about many things ".repeat(60))
        .collect();
    let body = json!({"model": "minilm", "input": inputs});
    let first = background(url.clone(), body.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = background(url.clone(), body);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A third, even a one-word one, is refused at once instead of queueing behind them.
    let third = client()
        .post(&url)
        .json(&json!({"model": "minilm", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_busy(third, "a third embedding request").await;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("ragway_busy_total{component=\"local embedder \\\"minilm\\\"\"} 1")
            && metrics.contains("ragway_cpu_jobs_running 1")
            && metrics.contains("ragway_cpu_jobs_waiting 1"),
        "{metrics}"
    );
    first.abort();
    second.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_a_local_models_queue_are_refused_at_once() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let config = format!(
        "[server.limits]\nmax_queued_jobs = 1\n\n\
         [[llm]]\nname = \"smollm2\"\ntype = \"local\"\n\
         path = \"{root}/models/SmolLM2-135M-Instruct.Q4_1.gguf\"\ncontext_window = 4096\nparallel = 1\n"
    );
    let server = Server::start(&config).await;
    let url = format!("{}/v1/chat/completions", server.url);
    // A long prompt keeps the one slot busy for seconds; the next request waits for it.
    let long = "The archive lists every shipment by date, port and weight. ".repeat(250);
    let body = |content: String| {
        json!({
            "model": "smollm2",
            "max_tokens": 400,
            "messages": [{"role": "user", "content": content}],
        })
    };
    let first = background(url.clone(), body(format!("{long}\nCount from 1 to 500.")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = background(url.clone(), body(format!("{long}\nCount from 1 to 500.")));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let third = client()
        .post(&url)
        .json(&body("Say hi.".into()))
        .send()
        .await
        .unwrap();
    assert_busy(third, "a third request to a one-slot model").await;
    first.abort();
    second.abort();
}
