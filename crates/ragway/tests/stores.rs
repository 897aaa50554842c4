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

    // Another config's settings are refused, naming both; --reindex rebuilds with them.
    let l2 = dir.path().join("l2.toml");
    std::fs::write(
        &l2,
        config(dir.path(), "http://127.0.0.1:9").replacen(
            "embedder = \"minilm\"\n",
            "embedder = \"minilm\"\nmetric = \"l2\"\n",
            1,
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::ragway_bin())
            .args([
                "ingest",
                "--config",
                l2.to_str().unwrap(),
                "--store",
                "docs",
            ])
            .args(args)
            .envs(test_env())
            .output()
            .unwrap()
    };
    let refused = run(&[corpus]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("metric inner_product")
            && stderr.contains("metric l2")
            && stderr.contains("--reindex"),
        "{stderr}"
    );
    let reindexed = run(&["--reindex"]);
    assert!(
        reindexed.status.success(),
        "{}",
        String::from_utf8_lossy(&reindexed.stderr)
    );
    let manifest = std::fs::read_to_string(dir.path().join("docs/manifest.json")).unwrap();
    assert!(manifest.contains("\"metric\": \"l2\""), "{manifest}");
    let again = run(&[corpus]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("3 unchanged"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
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

/// The names of the files in a folder, sorted.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The `index-N.faiss` files the store folder holds.
fn index_files(store: &std::path::Path) -> Vec<String> {
    file_names(store)
        .into_iter()
        .filter(|name| name.starts_with("index-") && name.ends_with(".faiss"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_and_ingest_writing_one_store_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = config(dir.path(), "http://127.0.0.1:9");
    let config_path = dir.path().join("c.toml");
    std::fs::write(&config_path, &config_text).unwrap();
    let server = Server::start(&config_text).await;
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();

    // The server takes documents one request at a time while `ragway ingest` runs again and
    // again over a folder that grows (and changes) between runs.
    let writes = {
        let url = server.url.clone();
        tokio::spawn(async move {
            for i in 0..24 {
                let text = format!("Server note {i}: the lighthouse keeper logs storm number {i}.");
                let response = crate::support::client()
                    .post(format!("{url}/stores/docs/documents"))
                    .json(&json!({"documents": [{"id": format!("server-{i}"), "text": text}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        })
    };
    for round in 0..6 {
        for i in 0..=round {
            std::fs::write(
                corpus.join(format!("ingest-{i}.txt")),
                format!("Ingested page {i}, round {round}: the orchard grows pear variety {i}."),
            )
            .unwrap();
        }
        ingest_docs(&config_path, &corpus).await;
    }
    writes.await.unwrap();

    // Everything both wrote is there, once, and the server searches the latest index: the
    // newest document of each writer is found, and one index file is left.
    let (status, listing) = server.get("/stores").await;
    assert_eq!(status, 200);
    assert_eq!(listing["stores"][0]["documents"], 24 + 6, "{listing}");
    for (query, id) in [
        ("lighthouse keeper logs storm number 23", "server-23#0"),
        ("orchard grows pear variety 5", "corpus/ingest-5.txt#0"),
    ] {
        let (status, _, found) = server
            .post(
                "/search",
                &json!({"query": query, "vector_search_type": "docs", "top_k": 1}),
            )
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["passages"][0]["id"], id, "{found}");
    }
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(index_files(&dir.path().join("docs")).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_in_a_read_only_folder_is_searched_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = config(dir.path(), "http://127.0.0.1:9");
    let config_path = dir.path().join("c.toml");
    std::fs::write(&config_path, &config_text).unwrap();
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/corpus");
    ingest_docs(&config_path, std::path::Path::new(corpus)).await;
    // As in an image: nothing in the folder can be written. Root writes anywhere, so the
    // server runs without the capability that lets it (setpriv, util-linux).
    let store = dir.path().join("docs");
    let _ = std::fs::remove_file(store.join("write.lock"));
    // As an older ragway wrote it: no keyword index (only a writable open could build one).
    rusqlite::Connection::open(store.join("store.sqlite3"))
        .unwrap()
        .execute_batch("DROP TABLE keywords; DELETE FROM meta WHERE key = 'keywords';")
        .unwrap();
    let before = file_names(&store);
    let chmod = |mode: &str| {
        let status = std::process::Command::new("chmod")
            .args(["-R", mode])
            .arg(&store)
            .status()
            .unwrap();
        assert!(status.success());
    };
    chmod("a-w");
    let server = Server::start_under(
        &[
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search,-fowner",
            "--",
        ],
        &config_text,
        |_| {},
    )
    .await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}\n{}", server.logs());
    let (status, _, found) = server
        .post(
            "/search",
            &json!({"query": "What is a qubit?", "vector_search_type": "docs", "top_k": 1}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert!(
        found["passages"][0]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("qubit"),
        "{found}"
    );
    let (status, _, refused) = server
        .post(
            "/stores/docs/documents",
            &json!({"documents": [{"id": "new", "text": "not written"}]}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("read-only"),
        "{refused}"
    );
    // Keyword search needs the index it cannot build here: a 400 that says how to get it.
    let (status, _, refused) = server
        .post(
            "/search",
            &json!({"query": "qubit", "vector_search_type": "docs", "retrieval": "keyword"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("has no keyword index yet"),
        "{refused}"
    );
    let after = file_names(&store);
    chmod("u+w");
    assert_eq!(before, after, "nothing was created in the folder");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_chooses_how_a_faiss_store_searches_and_others_refuse_it() {
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), &kendra.url())).await;
    let documents = json!({"documents": [
        {"id": "qubits", "text": "A qubit can be in a superposition of 0 and 1.", "title": "Qubits"},
        {"id": "planets", "text": "Jupiter is the largest planet of the Solar System."},
        {"id": "bread", "text": "Yeast ferments sugar in dough and the loaf rises."},
    ]});
    let (status, _, report) = server.post("/stores/docs/documents", &documents).await;
    assert_eq!(status, 200, "{report}");

    let search = |retrieval: &str| json!({"query": "Jupiter planets", "vector_search_type": "docs", "top_k": 3, "retrieval": retrieval});
    // Keyword: only the document with those words (stemmed: "planets" finds "planet"), scored
    // by BM25. Dense: all three, by cosine similarity. Hybrid: fused reciprocal ranks.
    let (status, _, keyword) = server.post("/search", &search("keyword")).await;
    assert_eq!(status, 200, "{keyword}");
    let passages = keyword["passages"].as_array().unwrap();
    assert_eq!(passages.len(), 1, "{keyword}");
    assert_eq!(passages[0]["id"], "planets#0");
    let (_, _, dense) = server.post("/search", &search("dense")).await;
    assert_eq!(dense["passages"].as_array().unwrap().len(), 3, "{dense}");
    assert!(dense["passages"][0]["score"].as_f64().unwrap() <= 1.0);
    let (_, _, hybrid) = server.post("/search", &search("hybrid")).await;
    assert_eq!(hybrid["passages"][0]["id"], "planets#0", "{hybrid}");
    assert!(hybrid["passages"][0]["score"].as_f64().unwrap() <= 2.0 / 61.0 + 1e-6);

    // A store without modes (Kendra) is a 400 naming it.
    let (status, _, refused) = server
        .post(
            "/search",
            &json!({"query": "q", "vector_search_type": "kendra", "retrieval": "keyword"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("vector_store \"kendra\" searches in its own way only"),
        "{refused}"
    );
    let (status, _, unknown) = server.post("/search", &search("sparse")).await;
    assert_eq!(status, 422, "{unknown}");
    assert_eq!(
        unknown["detail"][0]["loc"],
        json!(["body", "retrieval"]),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_filters_narrow_every_route_and_a_store_says_what_it_cannot_apply() {
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{}
[[llm]]
name = "gpt"
type = "openai"
model = "gpt-4o"
base_url = "{}/v1"
api_key = "env::TEST_OPENAI_KEY"
"#,
        config(dir.path(), &kendra.url()),
        openai.url()
    );
    let server = Server::start(&config).await;
    let documents = json!({"documents": [
        {"id": "q20", "text": "Qubits and superposition, a survey.", "metadata": {"lang": "en", "year": 2020, "published": "2020-03-01", "tags": ["physics"]}},
        {"id": "q22", "text": "Qubits in superconducting circuits.", "metadata": {"lang": "en", "year": 2022, "published": "2022-11-30T23:30:00-02:00", "tags": ["physics", "hardware"]}},
        {"id": "q23", "text": "Les qubits et la superposition.", "metadata": {"lang": "fr", "year": 2023.0, "published": "2023-01-15"}},
        {"id": "q24", "text": "Qubits for beginners.", "metadata": {"lang": "en", "year": "2024", "published": "soon"}},
    ]});
    let (status, _, report) = server.post("/stores/docs/documents", &documents).await;
    assert_eq!(status, 200, "{report}");

    let search = |filter: serde_json::Value, retrieval: &str| {
        json!({"query": "qubits superposition", "vector_search_type": "docs", "top_k": 10,
               "retrieval": retrieval, "filter": filter})
    };
    let ids = |body: &serde_json::Value| {
        let mut ids: Vec<String> = body["passages"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|p| p["id"].as_str().unwrap().trim_end_matches("#0").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let cases = [
        (json!({"lang": "en"}), vec!["q20", "q22", "q24"]),
        (json!({"year": {"$gte": 2021}}), vec!["q22", "q23"]),
        (json!({"year": {"$in": [2020, 2023]}}), vec!["q20", "q23"]),
        (
            json!({"lang": {"$nin": ["fr"]}, "year": {"$lt": 2021}}),
            vec!["q20"],
        ),
        (
            json!({"published": {"$gte": "2022-12-01"}}),
            vec!["q22", "q23"],
        ),
        (json!({"tags": {"$contains": "hardware"}}), vec!["q22"]),
        (
            json!({"$or": [{"lang": "fr"}, {"year": "2024"}]}),
            vec!["q23", "q24"],
        ),
        (
            json!({"$not": {"tags": {"$contains": "physics"}}}),
            vec!["q23", "q24"],
        ),
        (json!({"lang": "de"}), vec![]),
        (json!({}), vec!["q20", "q22", "q23", "q24"]),
    ];
    for (filter, expected) in cases {
        for retrieval in ["dense", "keyword", "hybrid"] {
            let (status, _, body) = server
                .post("/search", &search(filter.clone(), retrieval))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(ids(&body), expected, "{filter} in {retrieval} mode: {body}");
        }
    }

    // /generate and /v1/chat/completions ground the answer in the filtered passages only.
    let (status, _, answer) = server
        .post(
            "/generate",
            &json!({"prompt": "What is a qubit?", "llm_name": "gpt", "vector_search_type": "docs",
                    "filter": {"lang": "fr"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let sources: Vec<&str> = answer["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["q23#0"], "{answer}");
    let (status, _, completion) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "What is a qubit?"}],
                    "vector_search_type": "docs", "filter": {"year": {"$gt": 2021, "$lt": 2023}}}),
        )
        .await;
    assert_eq!(status, 200, "{completion}");
    let sources: Vec<&str> = completion["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("{completion}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["q22#0"], "{completion}");
    let sent = openai.requests().last().unwrap().body.clone();
    let prompt = sent["messages"].to_string();
    assert!(
        prompt.contains("superconducting") && !prompt.contains("beginners"),
        "{prompt}"
    );

    // A filter that cannot be read is a 422 (ragway's routes) or a 400 (OpenAI's) at its place.
    let (status, _, body) = server
        .post(
            "/search",
            &search(json!({"$or": [{"year": {"$gt": "soon"}}]}), "dense"),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "filter", "$or", "0", "year", "$gt"])
    );
    let (status, _, body) = server
        .post(
            "/generate",
            &json!({"prompt": "q", "llm_name": "gpt", "vector_search_type": "docs",
                    "filter": {"lang": {"$regex": "e.*"}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("unknown operator $regex"),
        "{body}"
    );
    let (status, _, body) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "q"}],
                    "vector_search_type": "docs", "filter": ["lang", "en"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "filter", "{body}");

    // Kendra gets the filter as its AttributeFilter; what it cannot apply is a 400 naming the
    // store and the reason, and Kendra is never called.
    let kendra_search = |filter: serde_json::Value| json!({"query": "qubits", "vector_search_type": "kendra", "filter": filter});
    let (status, _, body) = server
        .post(
            "/search",
            &kendra_search(json!({"_category": {"$in": ["a", "b"]}, "year": {"$gte": 2020}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = kendra.requests().last().unwrap().body.clone();
    assert_eq!(
        sent["AttributeFilter"],
        json!({"AndAllFilters": [
            {"OrAllFilters": [
                {"EqualsTo": {"Key": "_category", "Value": {"StringValue": "a"}}},
                {"EqualsTo": {"Key": "_category", "Value": {"StringValue": "b"}}}
            ]},
            {"GreaterThanOrEquals": {"Key": "year", "Value": {"LongValue": 2020}}}
        ]}),
        "{sent}"
    );
    let calls = kendra.requests().len();
    let (status, _, body) = server
        .post("/search", &kendra_search(json!({"score": {"$gt": 0.5}})))
        .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("vector_store \"kendra\" cannot apply this filter")
            && detail.contains("whole numbers"),
        "{body}"
    );
    assert_eq!(kendra.requests().len(), calls, "Kendra was not called");
}

/// A FAISS store embedded by the OpenAI fake (fast and deterministic), for ingests of
/// thousands of documents.
pub(crate) fn fast_config(dir: &std::path::Path, openai: &str) -> String {
    format!(
        r#"
[[embedder]]
name = "fake"
type = "openai"
model = "text-embedding-3-small"
base_url = "{openai}/v1"
dimensions = 32

[[vector_store]]
name = "docs"
type = "faiss"
path = "{store}"
embedder = "fake"
"#,
        store = dir.join("docs").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_killed_midway_resumes_and_holds_every_document_once() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("c.toml");
    std::fs::write(&config_path, fast_config(dir.path(), &openai.url())).unwrap();
    let documents = 2_000;
    let corpus = dir.path().join("corpus.jsonl");
    let lines: String = (0..documents)
        .map(|i| {
            format!(
                "{{\"id\": \"d{i}\", \"text\": \"document {i} about topic {}\"}}\n",
                i % 13
            )
        })
        .collect();
    std::fs::write(&corpus, lines).unwrap();
    let ingest = || {
        let mut command = tokio::process::Command::new(crate::support::ragway_bin());
        command
            .args([
                "ingest",
                "--store",
                "docs",
                "--batch-chunks",
                "100",
                "--config",
            ])
            .arg(&config_path)
            .arg(&corpus)
            .envs(test_env())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    };

    // Not a terminal: a line per commit. Killed (SIGKILL) after the third.
    let mut child = ingest().spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let third = line.contains("committed batch 3:");
        seen.push(line);
        if third {
            break;
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let progress = seen.join("\n");
    assert!(
        progress.contains("committed batch 1: 100 documents, 100 chunks"),
        "{progress}"
    );
    assert!(progress.contains("% of input"), "{progress}");
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(dir.path().join("docs/store.sqlite3"))
            .unwrap()
            .query_row(sql, [], |row| row.get(0))
            .unwrap()
    };
    let committed = count("SELECT count(*) FROM documents");
    assert!(
        (300..documents).contains(&committed),
        "{committed} documents committed when killed after the third batch"
    );

    // The same command again: what was committed is skipped, the rest added, each once.
    let output = ingest().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{} added, 0 replaced, {committed} unchanged (skipped)",
            documents - committed
        )),
        "{stdout}"
    );
    assert_eq!(count("SELECT count(*) FROM documents"), documents);
    assert_eq!(count("SELECT count(DISTINCT id) FROM documents"), documents);
    assert_eq!(count("SELECT count(*) FROM chunks"), documents);
    assert_eq!(count("SELECT count(*) FROM vectors"), documents);

    // The store opens consistent (its index checked against its rows) and finds a document
    // from each side of the kill.
    let server = Server::start(&fast_config(dir.path(), &openai.url())).await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let (_, listing) = server.get("/stores").await;
    let docs = listing["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "docs")
        .unwrap()
        .clone();
    assert_eq!(docs["documents"], documents, "{docs}");
    assert_eq!(docs["chunks"], documents, "{docs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedder_failing_midway_names_the_document_and_keeps_what_was_committed() {
    use ragway_testkit::Scripted;

    let openai = ragway_testkit::openai::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("c.toml");
    // One batch at a time, so that the calls come in the order of the documents.
    let config = fast_config(dir.path(), &openai.url())
        .replace("dimensions = 32\n", "dimensions = 32\nconcurrency = 1\n");
    std::fs::write(&config_path, config).unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let lines: String = (0..300)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"document {i}\"}}\n"))
        .collect();
    std::fs::write(&corpus, lines).unwrap();
    // The first batch of 100 is four calls of at most 32 texts; the fifth call, the second
    // batch's first, is refused as the real service refuses a bad input (not worth retrying).
    for _ in 0..4 {
        openai.push(Scripted::Delay(std::time::Duration::ZERO));
    }
    openai.push(Scripted::Error {
        status: 400,
        kind: "invalid_request_error".into(),
        message: "This input is too long.".into(),
    });
    let output = std::process::Command::new(crate::support::ragway_bin())
        .args([
            "ingest",
            "--store",
            "docs",
            "--batch-chunks",
            "100",
            "--config",
        ])
        .arg(&config_path)
        .arg(&corpus)
        .envs(test_env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("\"d100\""), "{stderr}");
    assert_eq!(stderr.matches("too long").count(), 1, "{stderr}");
    assert!(
        stderr.contains("the 100 documents before it are committed"),
        "{stderr}"
    );
    let documents: i64 = rusqlite::Connection::open(dir.path().join("docs/store.sqlite3"))
        .unwrap()
        .query_row("SELECT count(*) FROM documents", [], |row| row.get(0))
        .unwrap();
    assert_eq!(documents, 100);
}

/// An OpenAI-compatible embeddings server that holds each request until `width` are in
/// flight (or half a second passes), and keeps the most it saw at once.
async fn gathering_embedder(
    width: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    #[derive(Clone)]
    struct Counts {
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        width: usize,
    }
    async fn embeddings(
        axum::extract::State(counts): axum::extract::State<Counts>,
        axum::Json(body): axum::Json<serde_json::Value>,
    ) -> axum::Json<serde_json::Value> {
        let now = counts.now.fetch_add(1, SeqCst) + 1;
        counts.most.fetch_max(now, SeqCst);
        for _ in 0..50 {
            if counts.now.load(SeqCst) >= counts.width {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let inputs = body["input"].as_array().cloned().unwrap_or_default();
        let data: Vec<serde_json::Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let seed = text.as_str().unwrap_or_default().len() as f32;
                json!({"object": "embedding", "index": index, "embedding": [seed, 1.0, 0.5, 0.25]})
            })
            .collect();
        // Answer after the others have counted this one in.
        tokio::time::sleep(Duration::from_millis(20)).await;
        counts.now.fetch_sub(1, SeqCst);
        axum::Json(
            json!({"object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
        )
    }
    let counts = Counts {
        now: Arc::default(),
        most: Arc::default(),
        width,
    };
    let most = counts.most.clone();
    let app = axum::Router::new()
        .route("/v1/embeddings", axum::routing::post(embeddings))
        .with_state(counts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, most)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openai_embedder_takes_as_many_batches_at_once_as_configured() {
    for concurrency in [1, 3] {
        // The server would take more at once than configured: what it sees is ragway's limit.
        let (url, most) = gathering_embedder(concurrency + 2).await;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("c.toml");
        let config = format!(
            r#"
[[embedder]]
name = "remote"
type = "openai"
model = "text-embedding-3-small"
base_url = "{url}/v1"
dimensions = 4
concurrency = {concurrency}

[[vector_store]]
name = "docs"
type = "faiss"
path = "{store}"
embedder = "remote"
"#,
            store = dir.path().join("docs").display()
        );
        std::fs::write(&config_path, config).unwrap();
        // 400 one-chunk documents: 13 batches of 32 in one commit.
        let corpus = dir.path().join("corpus.jsonl");
        let lines: String = (0..400)
            .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"document number {i}\"}}\n"))
            .collect();
        std::fs::write(&corpus, lines).unwrap();
        let stdout = ingest_docs(&config_path, &corpus).await;
        assert!(stdout.contains("400 added"), "{stdout}");
        assert_eq!(
            most.load(std::sync::atomic::Ordering::SeqCst),
            concurrency,
            "batches in flight at once with concurrency = {concurrency}"
        );
    }
}

/// `ragway ingest --store docs --config CONFIG PATH`, failing the test with its output unless
/// it succeeds; its stdout.
async fn ingest_docs(config: &std::path::Path, path: &std::path::Path) -> String {
    let output = tokio::process::Command::new(crate::support::ragway_bin())
        .args(["ingest", "--store", "docs", "--config"])
        .arg(config)
        .arg(path)
        .envs(test_env())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
