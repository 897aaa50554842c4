//! Reading and writing a store are separate grants on the real binary: a key with `stores`
//! searches and sees document ids but cannot add or delete (a 403 naming `write_stores`), a key
//! with `write_stores` can, keys from `keys_file` write only what `[server.auth] write_stores`
//! grants, and `/stores` tells each key what it may write.

use serde_json::{Value, json};

use crate::support::{Server, client};

/// `env::RAGWAY_TEST_API_KEY` (support.rs): may read every store, write none.
const READER_KEY: &str = "rk-test-team-a-0c81";
const WRITER_KEY: &str = "rk-test-writer";
const WRITER_KEY_SHA256: &str = "b64c632406aa28acb6c1ccd7767ddeab6c0add5aa6f49dceccb5bb45d1236dfb";
/// In the keys file.
const OPS_KEY: &str = "rk-test-ops";
const OPS_KEY_SHA256: &str = "d7923ba0b1d9c27da69681ff8e0dff6b27d84c6e8845aa92e0dc8cb6b2e511fd";

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, Value) {
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
    let response = request.bearer_auth(key).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_a_store_needs_write_stores_and_a_reader_cannot_delete_what_it_finds() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.sha256");
    std::fs::write(&keys_file, format!("{OPS_KEY_SHA256} ops\n")).unwrap();
    let config = format!(
        r#"
[server.auth]
keys_file = "{keys_file}"

[[server.auth.keys]]
name = "reader"
key = "env::RAGWAY_TEST_API_KEY"

[[server.auth.keys]]
name = "writer"
sha256 = "{WRITER_KEY_SHA256}"
write_stores = ["faiss"]

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
"#,
        keys_file = keys_file.display(),
        openai = openai.url(),
        faiss = dir.path().join("faiss").display(),
    );
    let server = Server::start(&config).await;
    let documents = json!({"documents": [
        {"id": "qubits", "text": "A qubit can be in a superposition of 0 and 1."},
    ]});

    for key in [READER_KEY, OPS_KEY] {
        let (status, body) = call(
            &server,
            "POST",
            "/stores/faiss/documents",
            key,
            Some(&documents),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("\"faiss\"") && detail.contains("write_stores"),
            "the 403 names the store and the grant: {detail}"
        );
    }
    let (status, body) = call(
        &server,
        "POST",
        "/stores/faiss/documents",
        WRITER_KEY,
        Some(&documents),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["added"], 1);

    // The reader finds the document, its id in the passage's (`{document}#{chunk}`: clients
    // need it)...
    let search = json!({"query": "qubit", "vector_search_type": "faiss", "top_k": 1});
    let (status, found) = call(&server, "POST", "/search", READER_KEY, Some(&search)).await;
    assert_eq!(status, 200, "{found}");
    let passage = found["passages"][0]["id"].as_str().unwrap();
    let (id, _chunk) = passage.rsplit_once('#').unwrap();
    assert_eq!(id, "qubits");
    // ... and cannot delete it with that id.
    let path = format!("/stores/faiss/documents/{id}");
    let (status, body) = call(&server, "DELETE", &path, READER_KEY, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("write_stores"),
        "{body}"
    );

    // /stores says who may write.
    for (key, may_write) in [(READER_KEY, false), (OPS_KEY, false), (WRITER_KEY, true)] {
        let (status, listing) = call(&server, "GET", "/stores", key, None).await;
        assert_eq!(status, 200);
        assert_eq!(listing["stores"][0]["writable"], true, "{listing}");
        assert_eq!(
            listing["stores"][0]["may_write"], may_write,
            "{key}: {listing}"
        );
    }

    let (status, body) = call(&server, "DELETE", &path, WRITER_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], "qubits");
}
