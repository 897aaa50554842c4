//! End to end: the seed's own example through the Bedrock and Kendra fakes, the same through
//! OpenAI, and streaming.

use ragway_testkit::{Scripted, kendra};
use serde_json::{Value, json};

use crate::support::{KENDRA_INDEX, OPENAI_KEY, Stack};

/// The text of every user message in a Converse request.
fn converse_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| {
            m["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["text"].as_str())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_example_answers_through_bedrock_with_kendra_passages() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post(
            "/generate",
            &json!({"prompt": "Explain quantum computing", "llm_name": "claude-3-opus", "vector_search_type": "kendra"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["response"],
        "ragway fake answer from us.anthropic.claude-3-opus-20240229-v1:0."
    );
    assert_eq!(body["llm_name"], "claude-3-opus");
    assert_eq!(body["vector_search_type"], "kendra");

    // Kendra was asked with the prompt, the configured index and the default top_k.
    let searches = stack.kendra.requests();
    assert_eq!(searches.len(), 1);
    assert_eq!(
        searches[0].header("x-amz-target"),
        Some("AWSKendraFrontendService.Retrieve")
    );
    assert_eq!(searches[0].body["IndexId"], KENDRA_INDEX);
    assert_eq!(searches[0].body["QueryText"], "Explain quantum computing");
    assert_eq!(searches[0].body["PageSize"], 4);

    // Every passage is a source, and every one is in the prompt Bedrock received, numbered.
    let passages = kendra::default_passages();
    let sources = body["sources"].as_array().unwrap();
    assert_eq!(sources.len(), passages.len());
    let calls = stack.bedrock.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].path,
        "/model/us.anthropic.claude-3-opus-20240229-v1:0/converse"
    );
    let prompt = converse_user_text(&calls[0].body);
    for (i, (source, passage)) in sources.iter().zip(&passages).enumerate() {
        assert_eq!(source["text"], passage.content.as_str());
        assert_eq!(source["title"], passage.title.as_str());
        assert_eq!(source["uri"], passage.uri.as_str());
        assert!(source["score"].as_f64().unwrap() > 0.0);
        assert!(
            prompt.contains(&format!(
                "<passage number=\"{}\" title=\"{}\">\n{}\n</passage>",
                i + 1,
                passage.title,
                passage.content
            )),
            "{prompt}"
        );
    }
    assert!(
        prompt.contains("Question: Explain quantum computing"),
        "{prompt}"
    );
    let system = calls[0].body["system"][0]["text"].as_str().unwrap();
    assert!(
        system.contains("[1]"),
        "the system prompt asks for citations: {system}"
    );

    assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 10);
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);
    for stage in ["retrieval", "generation", "total"] {
        assert!(body["timings_ms"][stage].as_f64().is_some(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_example_answers_through_openai() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post(
            "/generate",
            &json!({"prompt": "Explain quantum computing", "llm_name": "gpt-4o", "vector_search_type": "kendra",
                    "top_k": 2, "max_tokens": 64, "temperature": 0.3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"], "ragway fake answer from gpt-4o.");
    assert_eq!(body["sources"].as_array().unwrap().len(), 2);
    assert_eq!(stack.kendra.requests()[0].body["PageSize"], 2);

    let calls = stack.openai.requests();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/v1/chat/completions");
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(call.body["model"], "gpt-4o");
    assert_eq!(call.body["max_tokens"], 64);
    assert!((call.body["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let messages = call.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let user = messages[1]["content"].as_str().unwrap();
    for passage in &kendra::default_passages()[..2] {
        assert!(user.contains(&passage.content), "{user}");
    }
    assert!(!user.contains(&kendra::default_passages()[2].content));
    assert_eq!(body["usage"]["output_tokens"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn none_skips_retrieval_and_sends_the_prompt_alone() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post(
            "/generate",
            &json!({"prompt": "Hello there", "llm_name": "gpt-4o", "vector_search_type": "none"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"], json!([]));
    assert!(stack.kendra.requests().is_empty());
    let messages = stack.openai.requests()[0].body["messages"].clone();
    assert_eq!(
        messages,
        json!([{"role": "user", "content": "Hello there"}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn titan_gets_its_system_prompt_folded_into_the_user_turn() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post("/generate", &json!({"prompt": "Explain quantum computing", "llm_name": "titan", "vector_search_type": "kendra"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let call = &stack.bedrock.requests()[0];
    assert!(
        call.body.get("system").is_none(),
        "Titan rejects system prompts: {}",
        call.body
    );
    let text = converse_user_text(&call.body);
    assert!(
        text.starts_with("You answer questions using the numbered passages"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_sends_sources_then_deltas_then_done() {
    let stack = Stack::start().await;
    for llm in ["claude-3-opus", "gpt-4o"] {
        let request = json!({"prompt": "Explain quantum computing", "llm_name": llm, "vector_search_type": "kendra"});
        let (_, _, whole) = stack.server.post("/generate", &request).await;
        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        let (status, events) = stack.server.post_sse("/generate", &streamed).await;
        assert_eq!(status, 200);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"sources"), "{names:?}");
        assert_eq!(names.last(), Some(&"done"), "{names:?}");
        assert!(
            names.iter().filter(|n| **n == "delta").count() > 1,
            "answer arrives in pieces: {names:?}"
        );
        assert_eq!(events[0].1["sources"], whole["sources"]);
        let text: String = events
            .iter()
            .filter(|(n, _)| n == "delta")
            .map(|(_, d)| d["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, whole["response"].as_str().unwrap(), "{llm}");
        let done = &events.last().unwrap().1;
        assert_eq!(done["usage"], whole["usage"], "{llm}");
        assert_eq!(done["finish_reason"], "stop");
        assert!(done["timings_ms"]["total"].as_f64().is_some());
    }
    let stream_call = stack
        .bedrock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/converse-stream"));
    assert!(
        stream_call.is_some(),
        "Bedrock streaming used ConverseStream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_stop_reasons_pass_through() {
    let stack = Stack::start().await;
    stack
        .bedrock
        .push(Scripted::StopReason("some_new_reason".into()));
    let request =
        json!({"prompt": "hi", "llm_name": "claude-3-opus", "vector_search_type": "none"});
    let (status, _, body) = stack.server.post("/generate", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["finish_reason"], "some_new_reason");

    stack
        .bedrock
        .push(Scripted::StopReason("another_new_reason".into()));
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (_, events) = stack.server.post_sse("/generate", &streamed).await;
    assert_eq!(
        events.last().unwrap().1["finish_reason"],
        "another_new_reason"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn models_root_and_health_answer() {
    let stack = Stack::start().await;
    let (status, models) = stack.server.get("/models").await;
    assert_eq!(status, 200);
    assert_eq!(
        models["llm_models"],
        json!(["claude-3-opus", "down", "gpt-4o", "slow", "titan"])
    );
    assert_eq!(
        models["vector_dbs"],
        json!(["kendra", "kendra-confident", "none"])
    );
    let (status, root) = stack.server.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(root["message"], "Welcome to LLM Inference API");
    let (status, health) = stack.server.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let (status, _, search) = stack
        .server
        .post(
            "/search",
            &json!({"query": "qubits", "vector_search_type": "kendra", "top_k": 1}),
        )
        .await;
    assert_eq!(status, 200, "{search}");
    assert_eq!(search["passages"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn kendra_applies_the_configured_filter_and_minimum_confidence() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post(
            "/search",
            &json!({"query": "qubits", "vector_search_type": "kendra-confident", "top_k": 10}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let passages = body["passages"].as_array().unwrap();
    let confidences: Vec<&str> = passages
        .iter()
        .map(|p| p["metadata"]["score_confidence"].as_str().unwrap())
        .collect();
    assert_eq!(confidences, ["VERY_HIGH", "HIGH"], "LOW is dropped: {body}");
    let sent = &stack.kendra.requests()[0].body;
    assert_eq!(sent["IndexId"], "other-index");
    assert_eq!(sent["PageSize"], 10);
    assert_eq!(sent["AttributeFilter"]["EqualsTo"]["Key"], "_language_code");
    assert_eq!(
        sent["AttributeFilter"]["EqualsTo"]["Value"]["StringValue"],
        "en"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_logged_with_its_id_and_never_with_the_prompt() {
    let stack = Stack::start().await;
    let prompt = "A secret-ish question about zebra migrations";
    let response = crate::support::client()
        .post(format!("{}/generate", stack.server.url))
        .header("x-request-id", "client-trace-42")
        .json(&json!({"prompt": prompt, "llm_name": "gpt-4o", "vector_search_type": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-trace-42");
    // Without one, ragway makes one and says which.
    let response = crate::support::client()
        .get(format!("{}/models", stack.server.url))
        .send()
        .await
        .unwrap();
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "{made}");

    let logs = stack
        .server
        .logs_once_they_contain(&made, std::time::Duration::from_secs(5))
        .await;
    assert!(
        logs.contains("client-trace-42") && logs.contains("/generate"),
        "{logs}"
    );
    assert!(logs.contains(&made), "{logs}");
    assert!(
        !logs.contains("zebra"),
        "the prompt reached the logs: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_route_model_store_and_status() {
    let stack = Stack::start().await;
    let (status, _, _) = stack
        .server
        .post(
            "/generate",
            &json!({"prompt": "hi", "llm_name": "gpt-4o", "vector_search_type": "kendra"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, events) = stack
        .server
        .post_sse(
            "/generate",
            &json!({"prompt": "hi", "llm_name": "claude-3-opus", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    let done = &events.last().unwrap().1;
    let (input, output) = (
        &done["usage"]["input_tokens"],
        &done["usage"]["output_tokens"],
    );
    assert!(output.as_u64().unwrap() > 0, "{done}");
    let (status, _, _) = stack
        .server
        .post("/generate", &json!({"prompt": "hi", "llm_name": "nope"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = stack.server.get("/stores").await;
    assert_eq!(status, 200);

    let response = crate::support::client()
        .get(format!("{}/metrics", stack.server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|line| line.starts_with(needle));
    for line in [
        // By route pattern, status, and the configured model and store the request named; an
        // unknown name is never a label.
        r#"ragway_requests_total{route="/generate",method="POST",status="200",model="gpt-4o",store="kendra"} 1"#,
        r#"ragway_requests_total{route="/generate",method="POST",status="200",model="claude-3-opus",store="none"} 1"#,
        r#"ragway_requests_total{route="/generate",method="POST",status="400",model="",store=""} 1"#,
        r#"ragway_requests_total{route="/stores",method="GET",status="200",model="",store=""} 1"#,
        r#"ragway_request_duration_seconds_bucket{route="/generate",le="+Inf"} 3"#,
        r#"ragway_retrieval_duration_seconds_count{store="kendra"} 1"#,
        // Time to first words for the stream only; generation time for both answers.
        r#"ragway_time_to_first_token_seconds_count{model="claude-3-opus"} 1"#,
        r#"ragway_generation_duration_seconds_count{model="claude-3-opus"} 1"#,
        r#"ragway_generation_duration_seconds_count{model="gpt-4o"} 1"#,
        &format!(r#"ragway_tokens_total{{model="claude-3-opus",type="input"}} {input}"#),
        &format!(r#"ragway_tokens_total{{model="claude-3-opus",type="output"}} {output}"#),
        "ragway_requests_in_flight 0",
    ] {
        assert!(has(line), "no line {line} in:\n{text}");
    }
    assert!(!text.contains("nope"), "{text}");
    assert!(
        !has("ragway_time_to_first_token_seconds_count{model=\"gpt-4o\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retrieval_mode_kendra_lacks_is_refused_by_generate_and_v1_before_any_call() {
    let stack = Stack::start().await;
    let (status, _, body) = stack
        .server
        .post(
            "/generate",
            &json!({"prompt": "Hello", "llm_name": "gpt-4o", "vector_search_type": "kendra", "retrieval": "keyword"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("\"kendra\" searches in its own way only"),
        "{body}"
    );
    let (status, _, body) = stack
        .server
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}],
                    "vector_search_type": "kendra", "retrieval": "hybrid"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "retrieval", "{body}");
    assert!(stack.kendra.requests().is_empty());
    assert!(stack.openai.requests().is_empty());
}
