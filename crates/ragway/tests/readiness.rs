//! `/readyz` asks every component whether it can serve: AWS credentials that resolve, a FAISS
//! index that matches its documents. A failing component makes it 503 and names itself.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;

fn config(bedrock: &str, store: &std::path::Path) -> String {
    format!(
        r#"
[[llm]]
name = "claude"
type = "bedrock"
model_id = "anthropic.claude-3-haiku-20240307-v1:0"
region = "us-east-1"
endpoint_url = "{bedrock}"

[[embedder]]
name = "titan"
type = "bedrock"
region = "us-east-1"
endpoint_url = "{bedrock}"
dimensions = 256

[[vector_store]]
name = "docs"
type = "faiss"
path = "{store}"
embedder = "titan"
"#,
        store = store.display()
    )
}

fn check<'a>(ready: &'a Value, component: &str, name: &str) -> &'a Value {
    ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == component && c["name"] == name)
        .unwrap_or_else(|| panic!("no check of {component} {name}: {ready}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_when_a_faiss_store_loses_its_files_under_the_server() {
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("docs");
    let server = Server::start(&config(&bedrock.url(), &store)).await;

    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    for (component, name) in [
        ("llm", "claude"),
        ("embedder", "titan"),
        ("vector_store", "docs"),
    ] {
        assert_eq!(check(&ready, component, name)["status"], "ok", "{ready}");
    }

    let (status, _, report) = server
        .post(
            "/stores/docs/documents",
            &json!({"documents": [{"id": "a", "text": "A qubit holds a superposition."}]}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");

    // Someone wipes the document store while ragway serves the index loaded from it.
    for entry in std::fs::read_dir(&store).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("store.sqlite3")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "not_ready");
    let docs = check(&ready, "vector_store", "docs");
    assert_eq!(docs["status"], "failing", "{ready}");
    assert!(
        docs["detail"]
            .as_str()
            .unwrap()
            .contains("went back from version 1"),
        "{ready}"
    );
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .starts_with("vector_store \"docs\": "),
        "{ready}"
    );
    assert_eq!(check(&ready, "llm", "claude")["status"], "ok", "{ready}");
    let logs = server
        .logs_once_they_contain("not ready", Duration::from_secs(5))
        .await;
    assert!(logs.contains("not ready"), "{logs}");

    // With its folder gone too, a write fails inside the store: the caller learns which
    // store, not its files.
    std::fs::remove_dir_all(&store).unwrap();
    let (status, _, failed) = server
        .post(
            "/stores/docs/documents",
            &json!({"documents": [{"id": "b", "text": "Gates act on qubits."}]}),
        )
        .await;
    assert_eq!(status, 500, "{failed}");
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.contains("store \"docs\" failed inside ragway"),
        "{detail}"
    );
    let folder = dir.path().display().to_string();
    assert!(
        !detail.contains(&folder) && !detail.contains("sqlite"),
        "{detail}"
    );
    let logs = server
        .logs_once_they_contain("internal error", Duration::from_secs(5))
        .await;
    assert!(logs.contains(&folder), "the log has the details: {logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_while_aws_credentials_do_not_resolve() {
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-aws-file");
    let server = Server::start_with(
        &config(&bedrock.url(), &dir.path().join("docs")),
        |command| {
            command
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
                .env("AWS_CONFIG_FILE", &missing)
                .env("AWS_SHARED_CREDENTIALS_FILE", &missing);
        },
    )
    .await;

    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    for (component, name) in [("llm", "claude"), ("embedder", "titan")] {
        let failing = check(&ready, component, name);
        assert_eq!(failing["status"], "failing", "{ready}");
        assert!(
            failing["detail"]
                .as_str()
                .unwrap()
                .contains("AWS credentials do not resolve"),
            "{ready}"
        );
    }
    // The store itself is fine; only its embedder cannot reach AWS.
    assert_eq!(
        check(&ready, "vector_store", "docs")["status"],
        "ok",
        "{ready}"
    );
    // Liveness is another matter: the process is up.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
}

/// With API keys guarding the API, `/readyz` is the one door anyone may knock on: it says not
/// ready and which components, never why (credential-chain errors, paths) nor what else is
/// configured; the reasons are in the log.
#[tokio::test(flavor = "multi_thread")]
async fn with_keys_readyz_names_failing_components_and_keeps_the_reasons_in_the_log() {
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-aws-file");
    let keyed = format!(
        "[[server.auth.keys]]\nname = \"ops\"\nkey = \"env::RAGWAY_TEST_API_KEY\"\n{}",
        config(&bedrock.url(), &dir.path().join("docs"))
    );
    let server = Server::start_with(&keyed, |command| {
        command
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", &missing)
            .env("AWS_SHARED_CREDENTIALS_FILE", &missing);
    })
    .await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        ready,
        json!({
            "status": "not_ready",
            "detail": "not ready: llm \"claude\", embedder \"titan\" cannot serve (the server's log says why)",
            "checks": [
                {"component": "llm", "name": "claude", "status": "failing"},
                {"component": "embedder", "name": "titan", "status": "failing"},
            ],
        })
    );
    let text = ready.to_string();
    for secret in ["credentials", "no-such-aws-file", "docs"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let logs = server
        .logs_once_they_contain("AWS credentials do not resolve", Duration::from_secs(5))
        .await;
    assert!(logs.contains("claude"), "{logs}");
}
