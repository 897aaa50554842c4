//! `/openapi.json` as a contract: schemathesis (PyPI) generates requests from it against ragway
//! over the fakes and checks that no answer is a server error and every answer matches the
//! document (status, content type, headers, body schema). tests/schemathesis_hooks.py steers
//! half the requests to names the server knows so that the answers, not only the errors, are
//! checked.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::Server;

/// The key the server's config reads from `RAGWAY_TEST_API_KEY` (support::test_env).
const API_KEY: &str = "rk-test-team-a-0c81";

/// What schemathesis checks on every response.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// A server whose every model and store works: the OpenAI fake as chat model and embedder, a
/// FAISS store in a temporary directory and the Kendra fake as a read-only store. (No model that
/// times out or is down: those answer 502/504 by design.)
async fn server() -> (
    ragway_testkit::Fake,
    ragway_testkit::Fake,
    tempfile::TempDir,
    Server,
) {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[[server.auth.keys]]
name = "schemathesis"
key = "env::RAGWAY_TEST_API_KEY"
write_stores = ["faiss"]

[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{openai}/v1"
api_key = "env::TEST_OPENAI_KEY"

[[embedder]]
name = "text-embedding-3-small"
type = "openai"
model = "text-embedding-3-small"
base_url = "{openai}/v1"
dimensions = 8

[[vector_store]]
name = "faiss"
type = "faiss"
path = "{faiss}"
embedder = "text-embedding-3-small"

[[vector_store]]
name = "kendra"
type = "kendra"
index_id = "env::KENDRA_INDEX_ID"
region = "us-west-2"
endpoint_url = "{kendra}"
max_attempts = 1
"#,
        openai = openai.url(),
        kendra = kendra.url(),
        faiss = store.path().join("faiss").display(),
    );
    let server = Server::start(&config).await;
    let documents = json!({"documents": [
        {"id": "qubits", "text": "A qubit can be in a superposition of 0 and 1.", "title": "Qubits"},
        {"id": "planets", "text": "Jupiter is the largest planet of the Solar System."},
    ]});
    let response = crate::support::client()
        .post(format!("{}/stores/faiss/documents", server.url))
        .bearer_auth(API_KEY)
        .json(&documents)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    (openai, kendra, store, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let (_openai, _kendra, _store, server) = server().await;
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let reports = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("schemathesis");
    command
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args(["--checks", CHECKS])
        .args(["--max-examples", "25", "--seed", "20261125"])
        // Not the coverage phase: schemathesis 4.32.5 itself fails in it on the chat body
        // (a hypothesis FlakyFailure inside its own generator, not an answer of ragway's).
        .args(["--phases", "examples,fuzzing,stateful"])
        .args([
            "--max-time",
            "90",
            "--workers",
            "2",
            "--request-timeout",
            "30",
        ])
        .args(["--generation-database", "none", "--no-color"])
        .arg("--report-dir")
        .arg(reports.path())
        // Its cache (.schemathesis/) goes there too, not into the source tree.
        .current_dir(reports.path())
        .args(["-H", &format!("Authorization: Bearer {API_KEY}")])
        .env("SCHEMATHESIS_HOOKS", tests.join("schemathesis_hooks.py"))
        .env("CHAT_MODEL", "gpt-4o")
        .env("EMBEDDING_MODEL", "text-embedding-3-small")
        .env("STORES", "faiss,kendra")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("schemathesis did not finish within 5 minutes")
        .expect("cannot run schemathesis: pip install -r tests/requirements.txt");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- ragway's log\n{}",
        output.status,
        server.logs()
    );
}

/// Swagger UI in a real browser (Debian's chromium driven by playwright-core from tests/ui):
/// every operation of the document renders from the vendored assets, nothing is fetched off
/// the server, and the page's Content-Security-Policy blocks nothing it needs.
#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_renders_every_operation_in_a_browser_under_its_csp() {
    let (_openai, _kendra, _store, server) = server().await;
    let (status, document) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(operations > 10, "{operations} operations");

    crate::support::browser_check(
        "docs",
        &[
            ("RAGWAY_URL", server.url.clone()),
            ("OPERATIONS", operations.to_string()),
        ],
    )
    .await;
}
