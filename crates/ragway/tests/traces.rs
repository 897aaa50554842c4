//! OpenTelemetry traces end to end: the real binary exports its spans over OTLP/HTTP to a fake
//! collector, with the GenAI attributes and never the prompt; a collector that is down costs a
//! warning, not a request.

use std::time::Duration;

use ragway_testkit::otlp::{self, ExportedSpan};
use serde_json::json;

use crate::support::{Server, client, config};

/// Spans leave in batches; a short delay keeps the test quick.
fn quick_batches(command: &mut tokio::process::Command) {
    command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
}

fn named<'a>(spans: &'a [ExportedSpan], name: &str) -> Option<&'a ExportedSpan> {
    spans.iter().find(|span| span.name == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generate_request_is_traced_with_gen_ai_attributes_and_without_the_prompt() {
    let collector = otlp::start().await.unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let config = format!(
        "{}\n[server.tracing]\nendpoint = \"{}\"\n",
        config(&openai.url(), &bedrock.url(), &kendra.url()),
        collector.url()
    );
    let server = Server::start_with(&config, quick_batches).await;
    let prompt = "Explain quantum computing to a zebra named Quetzalcoatl";
    let response = client()
        .post(format!("{}/generate", server.url))
        .header("x-request-id", "trace-me-7")
        .json(
            &json!({"prompt": prompt, "llm_name": "gpt-4o", "vector_search_type": "kendra",
                      "top_k": 2, "max_tokens": 64, "temperature": 0.3}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();

    let spans = collector
        .wait_for(Duration::from_secs(20), |spans| {
            ["POST /generate", "retrieval kendra", "chat gpt-4o"]
                .iter()
                .all(|name| named(spans, name).is_some())
        })
        .await;
    let missing = |name: &str| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        panic!(
            "no span {name:?} among {names:?} ({} exports); the server's log:\n{}",
            collector.posts(),
            server.logs()
        )
    };
    let server_span = named(&spans, "POST /generate").unwrap_or_else(|| missing("POST /generate"));
    let retrieval =
        named(&spans, "retrieval kendra").unwrap_or_else(|| missing("retrieval kendra"));
    let chat = named(&spans, "chat gpt-4o").unwrap_or_else(|| missing("chat gpt-4o"));

    // One trace: the request's server span with its two children.
    assert_eq!(server_span.kind, "server");
    assert_eq!(server_span.parent_span_id, "", "a root span");
    assert_eq!(server_span.str("http.route"), Some("/generate"));
    assert_eq!(server_span.str("http.request.method"), Some("POST"));
    assert_eq!(server_span.int("http.response.status_code"), Some(200));
    for span in [server_span, retrieval, chat] {
        assert_eq!(span.trace_id, server_span.trace_id, "{span:#?}");
        assert_eq!(span.str("request_id"), Some("trace-me-7"), "{span:#?}");
        assert_eq!(span.resource["service.name"].text(), "ragway");
    }
    assert_eq!(retrieval.parent_span_id, server_span.span_id);
    assert_eq!(chat.parent_span_id, server_span.span_id);

    assert_eq!(retrieval.str("ragway.vector_store.name"), Some("kendra"));
    assert_eq!(retrieval.int("ragway.retrieval.top_k"), Some(2));
    assert_eq!(retrieval.int("ragway.retrieval.passages"), Some(2));

    assert_eq!(chat.kind, "client");
    assert_eq!(chat.str("gen_ai.system"), Some("openai"));
    assert_eq!(chat.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(chat.str("gen_ai.request.model"), Some("gpt-4o"));
    assert_eq!(chat.str("gen_ai.response.model"), Some("gpt-4o"));
    assert_eq!(chat.int("gen_ai.request.max_tokens"), Some(64));
    assert_eq!(chat.double("gen_ai.request.temperature"), Some(0.3));
    assert_eq!(
        chat.int("gen_ai.usage.input_tokens"),
        body["usage"]["input_tokens"].as_i64()
    );
    assert_eq!(
        chat.int("gen_ai.usage.output_tokens"),
        body["usage"]["output_tokens"].as_i64()
    );
    assert!(chat.int("gen_ai.usage.output_tokens").unwrap() > 0);
    assert_eq!(chat.str("ragway.llm.name"), Some("gpt-4o"));

    // Neither the prompt (nor any word of it), the passages, the answer nor the upstream key is
    // in any exported name or attribute.
    let answer = body["response"].as_str().unwrap();
    for span in &spans {
        let texts: Vec<String> = std::iter::once(span.name.clone())
            .chain(span.events.iter().cloned())
            .chain(span.attributes.values().map(otlp::AttributeValue::text))
            .chain(span.resource.values().map(otlp::AttributeValue::text))
            .collect();
        for text in texts {
            for secret in ["zebra", "Quetzalcoatl", answer, crate::support::OPENAI_KEY] {
                assert!(!text.contains(secret), "{secret:?} exported in {span:#?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standard_variable_turns_tracing_on_and_a_collector_that_is_down_costs_a_warning() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let config = format!(
        "[[llm]]\nname = \"gpt-4o\"\ntype = \"openai\"\nmodel = \"gpt-4o\"\nbase_url = \"{}/v1\"\n",
        openai.url()
    );
    let server = Server::start_with(&config, |command| {
        quick_batches(command);
        command.env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        );
    })
    .await;
    for _ in 0..3 {
        let (status, _, body) = server
            .post(
                "/generate",
                &json!({"prompt": "hello", "llm_name": "gpt-4o", "vector_search_type": "none"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let logs = server
        .logs_once_they_contain("cannot export traces", Duration::from_secs(10))
        .await;
    assert!(logs.contains("exporting traces over OTLP/HTTP"), "{logs}");
    assert_eq!(
        logs.matches("cannot export traces").count(),
        1,
        "one warning, not one per batch: {logs}"
    );
    let (status, _, _) = server
        .post(
            "/generate",
            &json!({"prompt": "still there?", "llm_name": "gpt-4o", "vector_search_type": "none"}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embeddings_request_is_traced_with_gen_ai_attributes_and_without_the_texts() {
    let collector = otlp::start().await.unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let config = format!(
        "[[embedder]]\nname = \"small\"\ntype = \"openai\"\nmodel = \"text-embedding-3-small\"\n\
         base_url = \"{}/v1\"\ndimensions = 8\n\n[server.tracing]\nendpoint = \"{}\"\n",
        openai.url(),
        collector.url()
    );
    let server = Server::start_with(&config, quick_batches).await;
    let response = client()
        .post(format!("{}/v1/embeddings", server.url))
        .header("x-request-id", "embed-me-3")
        .json(&json!({"model": "small", "encoding_format": "base64",
                      "input": ["a zebra named Quetzalcoatl", "a second text"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();

    let name = "embeddings text-embedding-3-small";
    let spans = collector
        .wait_for(Duration::from_secs(20), |spans| {
            named(spans, name).is_some() && named(spans, "POST /v1/embeddings").is_some()
        })
        .await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let server_span = named(&spans, "POST /v1/embeddings")
        .unwrap_or_else(|| panic!("no server span among {names:?}"));
    let span = named(&spans, name).unwrap_or_else(|| panic!("no {name:?} among {names:?}"));
    assert_eq!(span.kind, "client");
    assert_eq!(span.trace_id, server_span.trace_id);
    assert_eq!(span.parent_span_id, server_span.span_id);
    assert_eq!(span.str("request_id"), Some("embed-me-3"));
    assert_eq!(span.str("gen_ai.operation.name"), Some("embeddings"));
    assert_eq!(span.str("gen_ai.system"), Some("openai"));
    assert_eq!(
        span.str("gen_ai.request.model"),
        Some("text-embedding-3-small")
    );
    assert_eq!(span.str("gen_ai.request.encoding_formats"), Some("base64"));
    assert_eq!(span.str("ragway.embedder.name"), Some("small"));
    assert_eq!(span.int("ragway.embeddings.inputs"), Some(2));
    assert_eq!(
        span.int("gen_ai.usage.input_tokens"),
        body["usage"]["prompt_tokens"].as_i64()
    );
    for span in &spans {
        let texts: Vec<String> = std::iter::once(span.name.clone())
            .chain(span.attributes.values().map(otlp::AttributeValue::text))
            .collect();
        for text in texts {
            for secret in ["zebra", "Quetzalcoatl", "second text"] {
                assert!(!text.contains(secret), "{secret:?} exported in {span:#?}");
            }
        }
    }
}
