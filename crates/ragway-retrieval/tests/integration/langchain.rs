//! LangChain import: a FAISS folder made by LangChain (`FAISS.from_texts` + `save_local`) is
//! exported by `scripts/export_langchain_faiss.py`, adopted without re-embedding, and searched:
//! ragway finds what LangChain's `similarity_search_with_score` finds.

use std::path::Path;

use ragway_core::config::{IndexKind, Metric};
use ragway_core::{DocumentStore, Filter};
use ragway_retrieval::faiss::IndexType;
use serde_json::Value;

use crate::support::{open, python};

fn export_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/export_langchain_faiss.py")
}

#[tokio::test]
async fn a_langchain_folder_is_adopted_and_searched_like_langchain() {
    let dir = tempfile::tempdir().unwrap();
    python("langchain_make.py", &[dir.path()]);
    let docs = dir.path().join("docs.jsonl");
    let output = std::process::Command::new("python3")
        .arg(export_script())
        .arg(dir.path().join("lc"))
        .arg(&docs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();

    // LangChain's default index is L2 on raw vectors: a store with the same metric finds the
    // same documents at the same distances.
    let store = open(&dir.path().join("store"), Metric::L2, IndexKind::Flat);
    let report = store
        .adopt(&dir.path().join("lc/index.faiss"), &docs)
        .await
        .unwrap();
    assert_eq!(report.ingest.added, 24);
    assert_eq!(report.ingest.chunks, 24);
    assert_eq!(report.source.index_type, IndexType::Flat);
    assert!(!report.source.id_map);
    assert_eq!(report.source.metric, Metric::L2);

    for (query, want) in expected.as_object().unwrap() {
        let want: Vec<(String, f64)> = serde_json::from_value(want.clone()).unwrap();
        let passages = store.search(query, 4, &Filter::new()).await.unwrap();
        assert_eq!(passages.len(), 4, "{query}");
        let boundary = want.last().unwrap().1;
        for (position, passage) in passages.iter().enumerate() {
            // score = 1 / (1 + squared distance)
            let distance = 1.0 / f64::from(passage.score) - 1.0;
            assert!(
                (distance - want[position].1).abs() < 1e-3,
                "{query}: {passages:?} vs {want:?}"
            );
            let id = passage.id.strip_suffix("#0").unwrap();
            let same = want
                .iter()
                .any(|(w, d)| w == id && (d - distance).abs() < 1e-3);
            assert!(
                same || (distance - boundary).abs() < 1e-3,
                "{query}: {passages:?} vs {want:?}"
            );
        }
        assert!(passages[0].metadata.contains_key("animal"));
        assert!(passages[0].uri.as_deref().unwrap().starts_with("notes/"));
    }

    // Adopting again changes nothing; the ids are LangChain's docstore ids.
    let again = store
        .adopt(&dir.path().join("lc/index.faiss"), &docs)
        .await
        .unwrap();
    assert_eq!(again.ingest.unchanged, 24);
    assert_eq!(again.ingest.added, 0);
    assert_eq!(store.document("otter-1").await.unwrap().unwrap().chunks, 1);
    assert!(DocumentStore::delete(&store, "otter-1").await.unwrap());
    assert!(store.check().unwrap().is_consistent());

    // Into an inner-product store the vectors are normalised: cosine ranking, same top hit.
    let cosine = open(
        &dir.path().join("cosine"),
        Metric::InnerProduct,
        IndexKind::Hnsw,
    );
    cosine
        .adopt(&dir.path().join("lc/index.faiss"), &docs)
        .await
        .unwrap();
    let passages = cosine.search("gecko", 1, &Filter::new()).await.unwrap();
    assert!(passages[0].id.starts_with("gecko-"), "{passages:?}");
}

#[tokio::test]
async fn adopting_refuses_mismatched_inputs() {
    let dir = tempfile::tempdir().unwrap();
    python("langchain_make.py", &[dir.path()]);
    let docs = dir.path().join("docs.jsonl");
    let output = std::process::Command::new("python3")
        .arg(export_script())
        .arg(dir.path().join("lc"))
        .arg(&docs)
        .output()
        .unwrap();
    assert!(output.status.success());
    let store = open(&dir.path().join("store"), Metric::L2, IndexKind::Flat);
    let index = dir.path().join("lc/index.faiss");

    let text = std::fs::read_to_string(&docs).unwrap();
    let short = dir.path().join("short.jsonl");
    std::fs::write(&short, text.lines().take(5).collect::<Vec<_>>().join("\n")).unwrap();
    let error = store.adopt(&index, &short).await.unwrap_err().to_string();
    assert!(error.contains("5 documents for the 24 vectors"), "{error}");

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, text.replacen("\"text\"", "\"txet\"", 1)).unwrap();
    let error = store.adopt(&index, &broken).await.unwrap_err().to_string();
    assert!(error.contains("broken.jsonl:1:"), "{error}");
    assert_eq!(store.check().unwrap().generation, 0, "nothing was written");
}
