//! The offline default end to end: the sample corpus ingested by the CLI with the local
//! embedder, then questions answered by the local model over that FAISS store — through
//! `/generate` and through the OpenAI SDK, LangChain and LlamaIndex (the README's first
//! command, tested).

use serde_json::json;

use crate::openai_api::{run_llamaindex_check, run_sdk_check};
use crate::support::{Server, test_env};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The built-in offline config with absolute model paths and a store in `store_dir`.
fn offline_config(store_dir: &std::path::Path) -> String {
    let default = std::fs::read_to_string(format!("{ROOT}/examples/offline.toml")).unwrap();
    default
        .replace("\"models/", &format!("\"{ROOT}/models/"))
        .replace("\"data/faiss\"", &format!("\"{}\"", store_dir.display()))
}

/// Ingests examples/corpus into a fresh store and serves the offline config over it.
async fn offline_server(dir: &tempfile::TempDir) -> Server {
    let config = offline_config(&dir.path().join("faiss"));
    let path = dir.path().join("offline.toml");
    std::fs::write(&path, &config).unwrap();
    let out = tokio::process::Command::new(crate::support::ragway_bin())
        .arg("ingest")
        .arg("--config")
        .arg(&path)
        .args(["--store", "faiss"])
        .arg(format!("{ROOT}/examples/corpus"))
        .envs(test_env())
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("3 file(s)"), "{printed}");
    Server::start(&config).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_model_answers_over_the_ingested_sample_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let server = offline_server(&dir).await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let checks = ready["checks"].as_array().unwrap();
    for (component, name) in [
        ("llm", "smollm2"),
        ("embedder", "minilm"),
        ("vector_store", "faiss"),
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["component"] == component && c["name"] == name && c["status"] == "ok"),
            "{ready}"
        );
    }
    let (status, _, body) = server
        .post(
            "/generate",
            &json!({
                "prompt": "What is a qubit?",
                "llm_name": "smollm2",
                "vector_search_type": "faiss",
                "max_tokens": 48,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body["response"].as_str().unwrap().trim().is_empty(),
        "{body}"
    );
    let sources = body["sources"].as_array().unwrap();
    assert!(
        sources[0]["text"].as_str().unwrap().contains("qubit"),
        "the best passage is about qubits: {body}"
    );
    assert!(
        sources[0]["uri"]
            .as_str()
            .unwrap_or_default()
            .ends_with("quantum-computing.md"),
        "{body}"
    );
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(body["timings_ms"]["retrieval"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_langchain_and_llamaindex_work_against_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = offline_server(&dir).await;
    let env = [
        ("CHAT_MODEL", "smollm2"),
        ("EMBEDDING_MODEL", "minilm"),
        ("STORE", "faiss"),
        ("GROUNDED_QUESTION", "What is a qubit?"),
        ("GROUNDED_WORD", "qubit"),
    ];
    run_sdk_check(&server.url, &[&env[..], &[("MAX_TOKENS", "32")]].concat()).await;
    run_llamaindex_check(&server.url, &env).await;
}

/// The playground in a real browser (Debian's chromium driven by playwright-core from
/// tests/ui): a question to the local model over the sample corpus streams its answer in, with
/// the sources, usage and timings shown. The screenshot's path is printed for CI to keep.
#[tokio::test(flavor = "multi_thread")]
async fn the_playground_streams_an_answer_with_its_sources_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = offline_server(&dir).await;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let page = crate::support::client()
        .get(format!("{}/ui", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("ragway playground"));

    crate::support::browser_check(
        "playground",
        &[
            ("RAGWAY_URL", server.url.clone()),
            ("LLM", "smollm2".into()),
            ("STORE", "faiss".into()),
            ("QUESTION", "What is a qubit?".into()),
            ("SOURCE_WORD", "qubit".into()),
        ],
    )
    .await;
}
