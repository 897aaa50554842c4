//! The OpenAI-compatible API (`/v1`): shapes, streaming, retrieval, errors and embeddings
//! checked on the wire, then the official `openai` SDK and LangChain's `ChatOpenAI`
//! (tests/openai_sdk_check.py) and LlamaIndex (tests/llamaindex_check.py) as clients, against
//! the OpenAI and Bedrock fakes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use ragway_testkit::{Fake, Scripted};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::{Server, client, config, run_check, test_env};

/// The fakes, and a server over them with a FAISS store (named `faiss`) embedded by the OpenAI
/// fake, already holding three documents.
pub struct V1Stack {
    pub openai: Fake,
    pub bedrock: Fake,
    _kendra: Fake,
    _store: tempfile::TempDir,
    pub server: Server,
}

pub const QUBIT_TEXT: &str = "A qubit can be in a superposition of 0 and 1.";

impl V1Stack {
    pub async fn start() -> V1Stack {
        let openai = ragway_testkit::openai::start().await.unwrap();
        let bedrock = ragway_testkit::bedrock::start().await.unwrap();
        let kendra = ragway_testkit::kendra::start().await.unwrap();
        let store = tempfile::tempdir().unwrap();
        let config = format!(
            r#"{}
[[embedder]]
name = "text-embedding-3-small"
type = "openai"
model = "text-embedding-3-small"
base_url = "{}/v1"
dimensions = 8

[[vector_store]]
name = "faiss"
type = "faiss"
path = "{}"
embedder = "text-embedding-3-small"
"#,
            config(&openai.url(), &bedrock.url(), &kendra.url()),
            openai.url(),
            store.path().join("faiss").display()
        );
        let server = Server::start(&config).await;
        let documents = json!({"documents": [
            {"id": "qubits", "text": QUBIT_TEXT, "title": "Qubits"},
            {"id": "planets", "text": "Jupiter is the largest planet of the Solar System."},
            {"id": "plants", "text": "Photosynthesis turns light into chemical energy."},
        ]});
        let (status, _, report) = server.post("/stores/faiss/documents", &documents).await;
        assert_eq!(status, 200, "{report}");
        V1Stack {
            openai,
            bedrock,
            _kendra: kendra,
            _store: store,
            server,
        }
    }
}

fn chat(model: &str, content: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": content }] })
}

/// The `data:` payloads of an SSE body, in order.
fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completions_answer_in_openais_shape() {
    let stack = V1Stack::start().await;
    let server = &stack.server;
    let mut request = chat("gpt-4o", "Explain quantum computing");
    request["messages"] = json!([
        { "role": "developer", "content": "Be brief." },
        { "role": "user", "content": [{ "type": "text", "text": "Explain" }, { "type": "text", "text": "quantum computing" }] },
    ]);
    request["max_completion_tokens"] = json!(50);
    request["seed"] = json!(7);
    request["user"] = json!("user-1");
    request["stop"] = json!("END");
    request["logit_bias"] = json!({}); // unknown to ragway: ignored, as OpenAI ignores them
    let (status, _, body) = server.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["choices"][0]["message"],
        json!({ "role": "assistant", "content": "ragway fake answer from gpt-4o.", "refusal": null })
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(
        body["usage"]["total_tokens"].as_u64().unwrap(),
        body["usage"]["prompt_tokens"].as_u64().unwrap() + 5
    );
    assert!(body.get("sources").is_none(), "no retrieval, no sources");
    let chats: Vec<_> = stack
        .openai
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    let sent = &chats[0].body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["messages"][1]["content"], "Explain\nquantum computing");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["user"], "user-1");
    assert_eq!(sent["stop"], json!(["END"]));

    // Retrieval grounds the last user message; the sources come back beside the choices.
    let mut grounded = chat("claude-3-opus", QUBIT_TEXT);
    grounded["vector_search_type"] = json!("faiss");
    grounded["top_k"] = json!(1);
    let (status, _, body) = server.post("/v1/chat/completions", &grounded).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"][0]["text"], QUBIT_TEXT, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "ragway fake answer from us.anthropic.claude-3-opus-20240229-v1:0."
    );
    let converse = &stack.bedrock.requests()[0].body;
    let prompt = converse["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        prompt.contains(&format!(
            "<passage number=\"1\" title=\"Qubits\">\n{QUBIT_TEXT}\n</passage>"
        )),
        "{prompt}"
    );
    assert!(
        converse["system"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Cite")
    );

    // n choices from a provider without native n: one request per choice, usage summed.
    let mut several = chat("gpt-4o", "hello");
    several["n"] = json!(3);
    let chat_requests = |fake: &Fake| {
        fake.requests()
            .iter()
            .filter(|r| r.path == "/v1/chat/completions")
            .count()
    };
    let before = chat_requests(&stack.openai);
    let (status, _, body) = server.post("/v1/chat/completions", &several).await;
    assert_eq!(status, 200, "{body}");
    let indexes: Vec<u64> = body["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(body["usage"]["completion_tokens"], 15);
    assert_eq!(chat_requests(&stack.openai) - before, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_completions_are_chunks_ending_in_done() {
    let stack = V1Stack::start().await;
    let mut request = chat("claude-3-opus", QUBIT_TEXT);
    request["stream"] = json!(true);
    request["stream_options"] = json!({ "include_usage": true });
    request["vector_search_type"] = json!("faiss");
    let response = client()
        .post(format!("{}/v1/chat/completions", stack.server.url))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let lines = data_lines(&response.text().await.unwrap());
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id = &chunks[0]["id"];
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && &c["id"] == id)
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["sources"][0]["text"], QUBIT_TEXT);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        "ragway fake answer from us.anthropic.claude-3-opus-20240229-v1:0."
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.get("usage") == Some(&Value::Null)),
        "with include_usage every other chunk carries \"usage\": null: {chunks:?}"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.get("system_fingerprint") == Some(&Value::Null)
                && c["choices"].as_array().unwrap().iter().all(|choice| {
                    choice["index"] == 0 && choice.get("logprobs") == Some(&Value::Null)
                })),
        "{chunks:?}"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    assert!(
        chunks[1].get("sources").is_none(),
        "sources on the first chunk only"
    );

    // Without include_usage there is no usage chunk and no usage field.
    let plain = json!({ "model": "gpt-4o", "stream": true, "messages": [{ "role": "user", "content": "hi" }] });
    let text = client()
        .post(format!("{}/v1/chat/completions", stack.server.url))
        .json(&plain)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = data_lines(&text);
    let last: Value = serde_json::from_str(&lines[lines.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none(), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_come_in_openais_shape() {
    let stack = V1Stack::start().await;
    let server = &stack.server;
    let error_of = |body: &Value| body["error"].clone();

    let (status, _, body) = server
        .post("/v1/chat/completions", &chat("gpt-5-turbo", "hi"))
        .await;
    assert_eq!(status, 404, "{body}");
    let error = error_of(&body);
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], "model");
    assert!(
        error["message"].as_str().unwrap().contains("gpt-4o"),
        "lists the models: {error}"
    );

    let cases = [
        (json!({ "model": "gpt-4o", "messages": [] }), "messages"),
        (json!({ "model": "gpt-4o" }), "messages"),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "wizard", "content": "x" }] }),
            "messages.0.role",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": [{ "type": "image_url", "image_url": {} }] }] }),
            "messages.0.content.0.image_url.url",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }], "temperature": 3 }),
            "temperature",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }], "stop": [1] }),
            "stop.0",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }], "n": 2, "stream": true }),
            "n",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }], "top_k": 0 }),
            "top_k",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }], "vector_search_type": "pinecone" }),
            "vector_search_type",
        ),
        (
            json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }], "max_tokens": "many" }),
            "max_tokens",
        ),
    ];
    for (request, param) in cases {
        let (status, _, body) = server.post("/v1/chat/completions", &request).await;
        assert_eq!(status, 400, "{request} -> {body}");
        assert_eq!(error_of(&body)["type"], "invalid_request_error", "{body}");
        assert_eq!(error_of(&body)["param"], param, "{request} -> {body}");
    }
    let (status, text) = server
        .post_raw("/v1/chat/completions", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid_request_error"), "{text}");

    // Upstream throttling keeps its meaning and its wait.
    stack.openai.push(Scripted::Error {
        status: 429,
        kind: "rate_limit_exceeded".into(),
        message: "slow down".into(),
    });
    let (status, headers, body) = server
        .post("/v1/chat/completions", &chat("gpt-4o", "hi"))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_of(&body)["type"], "rate_limit_error");
    assert!(headers.contains_key("retry-after"));
    stack.openai.push(Scripted::Error {
        status: 500,
        kind: "server_error".into(),
        message: "boom".into(),
    });
    let (status, _, body) = server
        .post("/v1/chat/completions", &chat("gpt-4o", "hi"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        error_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("boom")
    );

    let (status, body) = server.get("/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body)["code"], "unknown_url");
    let (status, body) = server.get("/v1/models/no-such-model").await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body)["code"], "model_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_and_embeddings() {
    let stack = V1Stack::start().await;
    let server = &stack.server;
    let (status, body) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gpt-4o") && ids.contains(&"claude-3-opus"),
        "{ids:?}"
    );
    assert!(ids.contains(&"text-embedding-3-small"), "{ids:?}");
    let (status, body) = server.get("/v1/models/claude-3-opus").await;
    assert_eq!(status, 200);
    assert_eq!(body["owned_by"], "ragway:bedrock");

    let (status, _, body) = server
        .post(
            "/v1/embeddings",
            &json!({ "model": "text-embedding-3-small", "input": ["first", "second"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (i, text) in ["first", "second"].iter().enumerate() {
        let vector: Vec<f32> =
            serde_json::from_value(body["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(vector, ragway_testkit::embed(text, 8));
        assert_eq!(body["data"][i]["index"], i);
    }
    let (status, _, body) = server
        .post(
            "/v1/embeddings",
            &json!({ "model": "text-embedding-3-small", "input": "first", "encoding_format": "base64" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let vector: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(vector, ragway_testkit::embed("first", 8));

    for (request, status_wanted, param) in [
        (json!({ "model": "ada", "input": "x" }), 404, "model"),
        (
            json!({ "model": "text-embedding-3-small", "input": [] }),
            400,
            "input",
        ),
        (
            json!({ "model": "text-embedding-3-small", "input": ["ok", ""] }),
            400,
            "input.1",
        ),
        (
            json!({ "model": "text-embedding-3-small", "input": [[1, 2]] }),
            400,
            "input.0",
        ),
        (
            json!({ "model": "text-embedding-3-small", "input": "x", "dimensions": 4 }),
            400,
            "dimensions",
        ),
        (
            json!({ "model": "text-embedding-3-small", "input": "x", "encoding_format": "hex" }),
            400,
            "encoding_format",
        ),
    ] {
        let (status, _, body) = server.post("/v1/embeddings", &request).await;
        assert_eq!(status, status_wanted, "{request} -> {body}");
        assert_eq!(body["error"]["param"], param, "{request} -> {body}");
    }
}

/// A client that hangs up mid-stream: the upstream request is cancelled within a second.
async fn hang_up_midway(stack: &V1Stack, fake: &Fake, path: &str, body: Value) {
    let before = fake.cancelled();
    fake.push(Scripted::StreamDelay(Duration::from_millis(300)));
    let response = client()
        .post(format!("{}{path}", stack.server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut bytes = response.bytes_stream();
    let first = bytes.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(bytes);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while fake.cancelled() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: upstream not cancelled within 1 s of the client leaving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let stack = V1Stack::start().await;
    for (fake, model) in [(&stack.openai, "gpt-4o"), (&stack.bedrock, "claude-3-opus")] {
        let before = fake.cancelled();
        assert_eq!(before, 0);
        let mut chat = chat(model, "Tell me a long story");
        chat["stream"] = json!(true);
        hang_up_midway(&stack, fake, "/v1/chat/completions", chat).await;
        let generate =
            json!({ "prompt": "Tell me a long story", "llm_name": model, "stream": true });
        hang_up_midway(&stack, fake, "/generate", generate).await;
        assert_eq!(fake.cancelled(), 2, "{model}");
    }
}

/// Runs tests/openai_sdk_check.py against a server; its checks say what they found.
pub async fn run_sdk_check(url: &str, env: &[(&str, &str)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_sdk_check.py");
    let mut python = Command::new("python3");
    python
        .arg(&script)
        .env("RAGWAY_URL", url)
        .envs(env.iter().copied())
        .envs(test_env());
    run_check(python, "openai SDK check passed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_and_langchain_work_against_the_fakes() {
    let stack = V1Stack::start().await;
    let fake_openai = stack.openai.url();
    let fake_bedrock = stack.bedrock.url();
    // claude-3-opus has no structured outputs on Bedrock: the check expects them refused.
    for (model, fake, structured) in [
        ("gpt-4o", &fake_openai, "1"),
        ("claude-3-opus", &fake_bedrock, "0"),
    ] {
        run_sdk_check(
            &stack.server.url,
            &[
                ("CHAT_MODEL", model),
                ("STRUCTURED", structured),
                ("CHAT_FAKE_URL", fake),
                ("FAKE_OPENAI_URL", &fake_openai),
                ("EMBEDDING_MODEL", "text-embedding-3-small"),
                ("STORE", "faiss"),
                ("GROUNDED_QUESTION", QUBIT_TEXT),
                ("GROUNDED_WORD", "superposition"),
            ],
        )
        .await;
    }
}

/// The Python of the LlamaIndex virtualenv that scripts/install-deps.sh makes (LlamaIndex pins
/// `openai<3`, so it cannot share the SDK check's packages): `RAGWAY_LLAMAINDEX_PYTHON`, else
/// `venvs/llamaindex` in ragway's cache folder (`RAGWAY_CACHE`, else `~/.cache/ragway`).
fn llamaindex_python() -> PathBuf {
    if let Some(python) = std::env::var_os("RAGWAY_LLAMAINDEX_PYTHON") {
        return python.into();
    }
    let cache = std::env::var_os("RAGWAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache/ragway")
        });
    cache.join("venvs/llamaindex/bin/python")
}

/// Runs tests/llamaindex_check.py against a server with the Python of LlamaIndex's virtualenv;
/// `env` names the model, store, grounded question and embedder, as for `run_sdk_check`.
pub async fn run_llamaindex_check(url: &str, env: &[(&str, &str)]) {
    let python = llamaindex_python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-deps.sh, which makes LlamaIndex's virtualenv",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/llamaindex_check.py");
    let mut check = Command::new(&python);
    check
        .arg(&script)
        .env("RAGWAY_URL", url)
        .envs(env.iter().copied());
    run_check(check, "LlamaIndex check passed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llamaindex_works_against_the_fakes() {
    let stack = V1Stack::start().await;
    for model in ["gpt-4o", "claude-3-opus"] {
        run_llamaindex_check(
            &stack.server.url,
            &[
                ("CHAT_MODEL", model),
                ("STORE", "faiss"),
                ("GROUNDED_QUESTION", QUBIT_TEXT),
                ("GROUNDED_WORD", "superposition"),
                ("EMBEDDING_MODEL", "text-embedding-3-small"),
            ],
        )
        .await;
    }
}
