//! Writable stores over HTTP and from the CLI: documents added, listed, searched, skipped when
//! unchanged, deleted; read-only and unknown stores refused with the right status.

use serde_json::json;

use crate::support::{Server, test_env};

fn config(dir: &std::path::Path, kendra: &str) -> String {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/all-MiniLM-L6-v2");
    format!(
        r#"
[[embedder]]
name = "minilm"
type = "local"
path = "{models}"

[[vector_store]]
name = "docs"
type = "faiss"
path = "{store}"
embedder = "minilm"

[[vector_store]]
name = "kendra"
type = "kendra"
index_id = "idx"
region = "us-east-1"
endpoint_url = "{kendra}"
"#,
        store = dir.join("docs").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_added_listed_searched_and_deleted_over_http() {
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), &kendra.url())).await;
    let documents = json!({"documents": [
        {"id": "qubits", "text": "A qubit can be in a superposition of 0 and 1.", "title": "Qubits"},
        {"id": "planets", "text": "Jupiter is the largest planet of the Solar System."},
    ]});
    let (status, _, report) = server.post("/stores/docs/documents", &documents).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 2);
    let (_, _, again) = server.post("/stores/docs/documents", &documents).await;
    assert_eq!(
        again["unchanged"], 2,
        "unchanged documents are skipped: {again}"
    );

    let (status, listing) = server.get("/stores").await;
    assert_eq!(status, 200);
    let docs = listing["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "docs")
        .unwrap()
        .clone();
    assert_eq!(docs["documents"], 2, "{listing}");
    assert_eq!(docs["dimension"], 384);

    let (_, _, found) = server
        .post(
            "/search",
            &json!({"query": "what is a qubit", "vector_search_type": "docs", "top_k": 1}),
        )
        .await;
    assert!(
        found["passages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("superposition"),
        "{found}"
    );

    let client = crate::support::client();
    let deleted = client
        .delete(format!("{}/stores/docs/documents/qubits", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let missing = client
        .delete(format!("{}/stores/docs/documents/qubits", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    let (status, _, body) = server.post("/stores/kendra/documents", &documents).await;
    assert_eq!(status, 405, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    let (status, _, _) = server.post("/stores/nowhere/documents", &documents).await;
    assert_eq!(status, 404);
    let (status, _, body) = server
        .post(
            "/stores/docs/documents",
            &json!({"documents": [{"id": "x", "text": " "}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "documents", "0", "text"])
    );
}

#[test]
fn ingest_reads_a_folder_and_skips_it_when_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/corpus");
    let ingest = || {
        std::process::Command::new(crate::support::ragway_bin())
            .args([
                "ingest",
                "--config",
                path.to_str().unwrap(),
                "--store",
                "docs",
                corpus,
            ])
            .envs(test_env())
            .output()
            .unwrap()
    };
    let first = ingest();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("3 added, 0 replaced, 0 unchanged"),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    let second = ingest();
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("0 added, 0 replaced, 3 unchanged"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );

    let kendra = std::process::Command::new(crate::support::ragway_bin())
        .args([
            "ingest",
            "--config",
            path.to_str().unwrap(),
            "--store",
            "kendra",
            corpus,
        ])
        .envs(test_env())
        .output()
        .unwrap();
    assert!(!kendra.status.success());
    assert!(String::from_utf8_lossy(&kendra.stderr).contains("read-only"));
}

/// A store embedded by Titan Text Embeddings V2 on Bedrock (the fake embeds a text the same way
/// every time, so the exact text of a document finds that document first).
#[tokio::test(flavor = "multi_thread")]
async fn a_store_embedded_by_bedrock_titan_takes_documents_and_searches() {
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
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
        bedrock = bedrock.url(),
        store = dir.path().join("docs").display()
    );
    let server = Server::start(&config).await;
    let texts = [
        "A qubit can be in a superposition of 0 and 1.",
        "Jupiter is the largest planet of the Solar System.",
        "Photosynthesis turns light into chemical energy.",
    ];
    let documents: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"id": format!("doc-{i}"), "text": text}))
        .collect();
    let (status, _, report) = server
        .post("/stores/docs/documents", &json!({ "documents": documents }))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 3, "{report}");
    let (_, listing) = server.get("/stores").await;
    assert_eq!(listing["stores"][0]["dimension"], 256, "{listing}");

    let (status, _, found) = server
        .post(
            "/search",
            &json!({"query": texts[1], "vector_search_type": "docs", "top_k": 2}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["passages"][0]["text"], texts[1], "{found}");
    let invoked = bedrock
        .requests()
        .iter()
        .filter(|r| r.path == "/model/amazon.titan-embed-text-v2:0/invoke")
        .count();
    assert_eq!(invoked, 4, "three documents and one query");
}
