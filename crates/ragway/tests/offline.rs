//! The offline default end to end: the sample corpus ingested by the CLI with the local
//! embedder, then questions answered by the local model over that FAISS store — through
//! `/generate` and through the OpenAI SDK and LangChain (the README's first command, tested).

use serde_json::json;

use crate::openai_api::run_sdk_check;
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
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ragway"))
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
async fn the_openai_sdk_and_langchain_work_against_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = offline_server(&dir).await;
    run_sdk_check(
        &server.url,
        &[
            ("CHAT_MODEL", "smollm2"),
            ("EMBEDDING_MODEL", "minilm"),
            ("STORE", "faiss"),
            ("GROUNDED_QUESTION", "What is a qubit?"),
            ("GROUNDED_WORD", "qubit"),
            ("MAX_TOKENS", "32"),
        ],
    )
    .await;
}
