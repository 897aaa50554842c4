//! Every error case of `/generate`: the status, the FastAPI-shaped detail, and no secret in
//! any answer or log line.

use std::time::Duration;

use ragway_testkit::Scripted;
use serde_json::{Value, json};

use crate::support::{OPENAI_KEY, Stack};

fn ask(llm: &str, store: &str) -> Value {
    json!({"prompt": "Explain quantum computing", "llm_name": llm, "vector_search_type": store})
}

fn detail_text(body: &Value) -> String {
    body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("detail is not a sentence: {body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_are_400_listing_the_valid_ones() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post("/generate", &ask("gpt-5-turbo", "kendra"))
        .await;
    assert_eq!(status, 400);
    let detail = detail_text(&body);
    assert!(detail.contains("gpt-5-turbo"), "{detail}");
    assert!(
        detail.contains("claude-3-opus, down, gpt-4o, slow, titan"),
        "{detail}"
    );

    let (status, _, body) = stack
        .server
        .post("/generate", &ask("gpt-4o", "pinecone"))
        .await;
    assert_eq!(status, 400);
    let detail = detail_text(&body);
    assert!(
        detail.contains("pinecone") && detail.contains("kendra, kendra-confident, none"),
        "{detail}"
    );
    assert!(
        stack.openai.requests().is_empty(),
        "nothing is sent upstream for a bad name"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_422_saying_which_field() {
    let stack = Stack::start().await;
    let cases: Vec<(Vec<u8>, &str, Vec<&str>)> = vec![
        (b"{\"prompt\": ".to_vec(), "json_invalid", vec!["body"]),
        (b"not json at all".to_vec(), "json_invalid", vec!["body"]),
        (b"".to_vec(), "json_invalid", vec!["body"]),
        (
            br#"{"llm_name": "gpt-4o"}"#.to_vec(),
            "missing",
            vec!["body", "prompt"],
        ),
        (
            br#"{"prompt": "hi"}"#.to_vec(),
            "missing",
            vec!["body", "llm_name"],
        ),
        (
            br#"{"prompt": "hi", "llm_name": "gpt-4o", "top_k": "five"}"#.to_vec(),
            "type_error",
            vec!["body", "top_k"],
        ),
        (
            br#"{"prompt": 42, "llm_name": "gpt-4o"}"#.to_vec(),
            "type_error",
            vec!["body", "prompt"],
        ),
        (
            br#"{"prompt": "  ", "llm_name": "gpt-4o"}"#.to_vec(),
            "string_too_short",
            vec!["body", "prompt"],
        ),
        (
            br#"{"prompt": "hi", "llm_name": "gpt-4o", "top_k": 0}"#.to_vec(),
            "greater_than_equal",
            vec!["body", "top_k"],
        ),
        (
            br#"{"prompt": "hi", "llm_name": "gpt-4o", "top_k": 1000}"#.to_vec(),
            "less_than_equal",
            vec!["body", "top_k"],
        ),
        (
            br#"{"prompt": "hi", "llm_name": "gpt-4o", "temperature": 9}"#.to_vec(),
            "range",
            vec!["body", "temperature"],
        ),
        (br#"[1, 2]"#.to_vec(), "type_error", vec!["body"]),
    ];
    for (body, kind, loc) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, text) = stack.server.post_raw("/generate", body).await;
        assert_eq!(status, 422, "{shown} → {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        let first = &answer["detail"][0];
        assert_eq!(first["type"], kind, "{shown} → {text}");
        let got: Vec<&str> = first["loc"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(got.starts_with(&loc), "{shown} → {text}");
        assert!(!first["msg"].as_str().unwrap().is_empty());
    }
    assert!(stack.openai.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_failures_are_502_with_the_providers_message_and_no_key() {
    let stack = Stack::start().await;
    stack.openai.push(Scripted::Error {
        status: 500,
        kind: "server_error".into(),
        message: "the GPU caught fire".into(),
    });
    let (status, _, body) = stack.server.post("/generate", &ask("gpt-4o", "none")).await;
    assert_eq!(status, 502);
    let detail = detail_text(&body);
    assert!(detail.contains("the GPU caught fire"), "{detail}");
    assert!(!detail.contains(OPENAI_KEY));

    stack.bedrock.push(Scripted::Error {
        status: 400,
        kind: "ValidationException".into(),
        message: "The provided model identifier is invalid.".into(),
    });
    let (status, _, body) = stack
        .server
        .post("/generate", &ask("claude-3-opus", "none"))
        .await;
    assert_eq!(status, 502);
    let detail = detail_text(&body);
    assert!(
        detail.contains("ValidationException") && detail.contains("model identifier is invalid"),
        "{detail}"
    );

    stack.kendra.push(Scripted::Error {
        status: 400,
        kind: "ResourceNotFoundException".into(),
        message: "Index 0123 does not exist".into(),
    });
    let (status, _, body) = stack
        .server
        .post("/generate", &ask("gpt-4o", "kendra"))
        .await;
    assert_eq!(status, 502);
    assert!(
        detail_text(&body).contains("Index 0123 does not exist"),
        "{body}"
    );

    let (status, _, body) = stack.server.post("/generate", &ask("down", "none")).await;
    assert_eq!(status, 502);
    assert!(detail_text(&body).contains("cannot reach"), "{body}");

    assert!(
        !stack.server.logs().contains(OPENAI_KEY),
        "a key reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_provider_is_504() {
    let stack = Stack::start().await;
    stack.openai.push(Scripted::Delay(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let (status, _, body) = stack.server.post("/generate", &ask("slow", "none")).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        detail_text(&body).contains("did not answer within 1s"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout did not cut the wait"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_429_with_retry_after() {
    let stack = Stack::start().await;
    stack.openai.push(Scripted::Error {
        status: 429,
        kind: "rate_limit_exceeded".into(),
        message: "Rate limit reached".into(),
    });
    let (status, headers, body) = stack.server.post("/generate", &ask("gpt-4o", "none")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert!(detail_text(&body).contains("Rate limit reached"));

    stack.bedrock.push(Scripted::Error {
        status: 429,
        kind: "ThrottlingException".into(),
        message: "Too many requests".into(),
    });
    let (status, headers, body) = stack
        .server
        .post("/generate", &ask("claude-3-opus", "none"))
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.get("retry-after").is_some());
    assert!(detail_text(&body).contains("ThrottlingException"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_inside_a_stream_end_it_with_an_error_event() {
    let stack = Stack::start().await;
    stack.bedrock.push(Scripted::StreamException {
        after_chunks: 2,
        kind: "throttlingException".into(),
        message: "Too many tokens, please wait".into(),
    });
    let mut request = ask("claude-3-opus", "none");
    request["stream"] = json!(true);
    let (status, events) = stack.server.post_sse("/generate", &request).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sources", "delta", "delta", "error"], "{events:?}");
    let error = &events.last().unwrap().1;
    assert_eq!(error["status"], 429, "{error}");
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("Too many tokens, please wait"),
        "{error}"
    );

    stack.openai.push(Scripted::StreamException {
        after_chunks: 1,
        kind: "cut".into(),
        message: "cut".into(),
    });
    let mut request = ask("gpt-4o", "none");
    request["stream"] = json!(true);
    let (_, events) = stack.server.post_sse("/generate", &request).await;
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(data["status"], 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_input_makes_it_panic_or_fail_upstream() {
    let stack = Stack::start().await;
    let long = "x".repeat(100_000);
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00],
        b"{\"prompt\": \"\\ud800\", \"llm_name\": \"gpt-4o\"}".to_vec(),
        b"{\"prompt\": null, \"llm_name\": null}".to_vec(),
        b"{\"prompt\": \"a\", \"llm_name\": \"gpt-4o\", \"top_k\": -1}".to_vec(),
        b"{\"prompt\": \"a\", \"llm_name\": \"gpt-4o\", \"top_k\": 1e99}".to_vec(),
        b"{\"prompt\": \"a\", \"llm_name\": \"gpt-4o\", \"max_tokens\": 99999999999}".to_vec(),
        b"{\"prompt\": \"a\", \"llm_name\": \"gpt-4o\", \"stream\": \"yes\"}".to_vec(),
        format!("{{\"prompt\": \"a\", \"llm_name\": \"{long}\"}}").into_bytes(),
        "[".repeat(10_000).into_bytes(),
        b"{\"prompt\": \"a\", \"llm_name\": \"gpt-4o\", \"prompt\": \"b\"}".to_vec(),
    ];
    for body in bodies {
        let shown: String = String::from_utf8_lossy(&body).chars().take(60).collect();
        let (status, text) = stack.server.post_raw("/generate", body).await;
        assert!((400..500).contains(&status), "{shown} → {status} {text}");
    }
    let (status, _) = stack.server.get("/healthz").await;
    assert_eq!(status, 200, "the server survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_urls_are_404_in_the_detail_shape() {
    let stack = Stack::start().await;
    let (status, body) = stack.server.get("/nowhere/at-all").await;
    assert_eq!(status, 404);
    assert_eq!(
        detail_text(&body),
        "Unknown request URL: GET /nowhere/at-all"
    );
    let (status, _, body) = stack.server.post("/generat", &ask("gpt-4o", "none")).await;
    assert_eq!(status, 404);
    assert!(detail_text(&body).contains("POST /generat"), "{body}");
    assert!(stack.openai.requests().is_empty());
}
