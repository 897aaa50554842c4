//! The FAISS store through its public API and the factory: add, search, replace, delete,
//! reopen, settings changes, dimension checks and concurrent reads during writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ragway_core::config::{IndexKind, Metric, VectorStoreConfig};
use ragway_core::{Document, DocumentStore, Embedder, Filter, IngestReport};
use ragway_retrieval::faiss::{FaissStore, INDEX_LINK, MANIFEST_FILE};
use ragway_retrieval::ingest::Phase;

use crate::support::{HashEmbedder, config, doc, open, topic_text};

fn corpus(n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| doc(&format!("doc-{i}"), &topic_text(i, 40)))
        .collect()
}

#[tokio::test]
async fn a_missing_folder_is_an_empty_store_created_on_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/store");
    let store = open(&path, Metric::InnerProduct, IndexKind::Flat);
    assert!(!path.exists());
    assert!(
        store
            .search("anything", 4, &Filter::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 0);
    assert!(!store.delete("nope").await.unwrap());
    assert!(
        !path.exists(),
        "reads and no-op deletes must not create the store"
    );

    let report = DocumentStore::add(&store, vec![doc("a", "hello world")])
        .await
        .unwrap();
    assert_eq!(
        report,
        IngestReport {
            added: 1,
            replaced: 0,
            unchanged: 0,
            chunks: 1
        }
    );
    assert!(path.join("store.sqlite3").exists());
    assert!(path.join("index-1.faiss").exists());
    assert!(path.join(INDEX_LINK).exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["dimension"], 384);
    assert_eq!(manifest["embedder"], "hash");
    assert_eq!(manifest["metric"], "inner_product");
    assert_eq!(manifest["index"], "flat");
    assert_eq!(manifest["index_file"], "index-1.faiss");
}

#[tokio::test]
async fn finds_the_right_document_in_each_metric_and_index() {
    for (metric, kind) in [
        (Metric::InnerProduct, IndexKind::Flat),
        (Metric::L2, IndexKind::Flat),
        (Metric::InnerProduct, IndexKind::Hnsw),
        (Metric::L2, IndexKind::Hnsw),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), metric, kind);
        let report = DocumentStore::add(&store, corpus(30)).await.unwrap();
        assert_eq!(report.added, 30);
        assert!(report.chunks > 30, "long documents are chunked: {report:?}");

        let passages = store
            .search("topic17 word3 word7", 3, &Filter::new())
            .await
            .unwrap();
        assert_eq!(passages.len(), 3, "{metric:?} {kind:?}");
        assert!(
            passages[0].id.starts_with("doc-17#"),
            "{metric:?} {kind:?}: {passages:?}"
        );
        assert_eq!(passages[0].title.as_deref(), Some("Title of doc-17"));
        assert_eq!(passages[0].uri.as_deref(), Some("file:///doc-17"));
        assert!(passages[0].text.contains("topic17"));
        assert!(passages[0].score >= passages[1].score);
        if metric == Metric::InnerProduct {
            assert!(passages[0].score <= 1.0001 && passages[0].score > 0.0);
        }
    }
}

#[tokio::test]
async fn unchanged_documents_write_nothing_and_changed_ones_replace_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    DocumentStore::add(&store, corpus(5)).await.unwrap();
    let before = store.check().unwrap();
    let generation = before.generation;

    let report = DocumentStore::add(&store, corpus(5)).await.unwrap();
    assert_eq!(report.unchanged, 5);
    assert_eq!(report.added + report.replaced + report.chunks, 0);
    assert_eq!(
        store.check().unwrap().generation,
        generation,
        "nothing written"
    );

    let mut changed = corpus(5);
    changed[2].text = "entirely new words about zebras".into();
    let report = DocumentStore::add(&store, changed).await.unwrap();
    assert_eq!(
        (report.unchanged, report.replaced, report.chunks),
        (4, 1, 1)
    );
    let after = store.check().unwrap();
    assert!(after.is_consistent(), "{after:?}");
    assert_eq!(after.documents, 5);
    assert!(after.chunks < before.chunks);
    assert_eq!(store.document("doc-2").await.unwrap().unwrap().chunks, 1);

    let passages = store.search("zebras", 10, &Filter::new()).await.unwrap();
    assert_eq!(passages[0].id, "doc-2#0");
    assert!(
        passages
            .iter()
            .all(|p| !p.id.starts_with("doc-2#") || p.text.contains("zebras")),
        "old chunks are gone: {passages:?}"
    );

    // The same id twice in one call: the last one wins.
    let report = DocumentStore::add(
        &store,
        vec![
            doc("twice", "first version"),
            doc("twice", "second version"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.added, 1);
    let passages = store.search("version", 1, &Filter::new()).await.unwrap();
    assert_eq!(passages[0].text, "second version");
}

#[tokio::test]
async fn delete_removes_a_document_from_flat_and_hnsw_indexes() {
    for kind in [IndexKind::Flat, IndexKind::Hnsw] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Metric::InnerProduct, kind);
        DocumentStore::add(&store, corpus(10)).await.unwrap();
        assert!(DocumentStore::delete(&store, "doc-4").await.unwrap());
        assert!(!DocumentStore::delete(&store, "doc-4").await.unwrap());
        assert!(store.document("doc-4").await.unwrap().is_none());
        let passages = store.search("topic4", 50, &Filter::new()).await.unwrap();
        assert!(passages.iter().all(|p| !p.id.starts_with("doc-4#")));
        let check = store.check().unwrap();
        assert!(check.is_consistent(), "{kind:?}: {check:?}");
        assert_eq!(check.documents, 9);
        let stats = DocumentStore::stats(&store).await.unwrap();
        assert_eq!(stats.documents, 9);
        assert_eq!(stats.chunks, check.chunks);
        assert_eq!(stats.dimension, 384);
        // Only the committed generation's file is left.
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("index-"))
            .collect();
        assert_eq!(files, vec![format!("index-{}.faiss", check.generation)]);
    }
}

#[tokio::test]
async fn metadata_filters_select_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    let mut documents = corpus(40);
    for (i, d) in documents.iter_mut().enumerate() {
        d.metadata
            .insert("lang".into(), if i % 10 == 0 { "fr" } else { "en" }.into());
        d.metadata.insert("n".into(), i.into());
    }
    DocumentStore::add(&store, documents).await.unwrap();

    let fr = ("lang".to_owned(), "fr".into());
    let filter = Filter::equals([fr.clone()]);
    let passages = store.search("topic17", 3, &filter).await.unwrap();
    assert_eq!(passages.len(), 3);
    assert!(
        passages.iter().all(|p| p.metadata["lang"] == "fr"),
        "{passages:?}"
    );

    let filter = Filter::equals([fr.clone(), ("n".to_owned(), 20.into())]);
    let passages = store.search("common", 100, &filter).await.unwrap();
    assert!(!passages.is_empty());
    assert!(passages.iter().all(|p| p.id.starts_with("doc-20#")));

    let filter = Filter::equals([fr, ("n".to_owned(), 21.into())]);
    assert!(store.search("common", 5, &filter).await.unwrap().is_empty());
}

#[tokio::test]
async fn reopening_finds_everything_and_other_settings_are_refused_until_reindexed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
        DocumentStore::add(&store, corpus(20)).await.unwrap();
    }
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    let check = store.check().unwrap();
    assert_eq!(check.documents, 20);
    assert!(check.is_consistent());
    let generation = check.generation;
    drop(store);

    // A config with other settings (another process's, say) is refused, naming both, and
    // leaves the store as it was.
    let Err(error) = FaissStore::open(
        &config(dir.path(), Metric::L2, IndexKind::Hnsw),
        HashEmbedder::new(),
    ) else {
        panic!("a store built with other settings was opened");
    };
    let message = error.to_string();
    assert!(
        message.contains("metric inner_product, index flat")
            && message.contains("metric l2, index hnsw (hnsw_m 16)")
            && message.contains("--reindex"),
        "{message}"
    );
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    assert_eq!(store.check().unwrap().generation, generation);
    drop(store);

    // Reindexing switches to HNSW from the stored vectors, without the embedder's help.
    let store = FaissStore::open_reindexing(
        &config(dir.path(), Metric::L2, IndexKind::Hnsw),
        HashEmbedder::new(),
    )
    .unwrap();
    let check = store.check().unwrap();
    assert_eq!(check.generation, generation + 1);
    assert!(check.is_consistent(), "{check:?}");
    let passages = store
        .search("topic11 word2", 2, &Filter::new())
        .await
        .unwrap();
    assert!(passages[0].id.starts_with("doc-11#"), "{passages:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["index"], "hnsw");
    assert_eq!(manifest["metric"], "l2");
    drop(store);

    // An index file of another metric put in place of the committed one is not searched
    // with the store's: the store rebuilds its own from the stored vectors.
    let committed = dir.path().join(format!("index-{}.faiss", generation + 1));
    let foreign = tempfile::tempdir().unwrap();
    let other = open(foreign.path(), Metric::InnerProduct, IndexKind::Hnsw);
    DocumentStore::add(&other, corpus(20)).await.unwrap();
    std::fs::copy(other.index_file().unwrap(), &committed).unwrap();
    let store = open(dir.path(), Metric::L2, IndexKind::Hnsw);
    let check = store.check().unwrap();
    assert_eq!(check.generation, generation + 2, "rebuilt: {check:?}");
    assert!(check.is_consistent(), "{check:?}");
    assert!(!committed.exists(), "the foreign file was tidied away");
}

#[tokio::test]
async fn an_embedder_of_another_dimension_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    DocumentStore::add(&store, corpus(2)).await.unwrap();
    drop(store);

    let other: Arc<dyn Embedder> = Arc::new(HashEmbedder { dimension: 128 });
    let mut embedders = BTreeMap::new();
    embedders.insert("hash".to_owned(), other);
    let config =
        VectorStoreConfig::Faiss(config(dir.path(), Metric::InnerProduct, IndexKind::Flat));
    let shared = ragway_retrieval::Shared {
        aws: None,
        embedders: &embedders,
        rerankers: &Default::default(),
    };
    let Err(error) = ragway_retrieval::build(&config, &shared).await else {
        panic!("a dimension mismatch must fail the build");
    };
    let message = error.to_string();
    assert!(message.contains("vector_store \"test\""), "{message}");
    assert!(
        message.contains("384") && message.contains("128"),
        "{message}"
    );
}

#[tokio::test]
async fn the_factory_builds_a_searchable_writable_store() {
    let dir = tempfile::tempdir().unwrap();
    let embedder: Arc<dyn Embedder> = HashEmbedder::new();
    let mut embedders = BTreeMap::new();
    embedders.insert("hash".to_owned(), embedder);
    let shared = ragway_retrieval::Shared {
        aws: None,
        embedders: &embedders,
        rerankers: &Default::default(),
    };
    let config =
        VectorStoreConfig::Faiss(config(dir.path(), Metric::InnerProduct, IndexKind::Flat));
    let built = ragway_retrieval::build(&config, &shared).await.unwrap();
    let documents = built.documents.expect("faiss stores are writable");
    documents.add(corpus(3)).await.unwrap();
    let passages = built
        .retriever
        .search("topic2", 1, &Filter::new())
        .await
        .unwrap();
    assert!(passages[0].id.starts_with("doc-2#"));

    let mut unknown = BTreeMap::new();
    unknown.insert("other".to_owned(), HashEmbedder::new() as Arc<dyn Embedder>);
    let shared = ragway_retrieval::Shared {
        aws: None,
        embedders: &unknown,
        rerankers: &Default::default(),
    };
    assert!(ragway_retrieval::build(&config, &shared).await.is_err());
}

#[tokio::test]
async fn progress_is_reported_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    let seen = std::sync::Mutex::new(Vec::new());
    let report = store
        .add_with_progress(corpus(6), |p| seen.lock().unwrap().push(p))
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    let last = *seen.last().unwrap();
    assert_eq!(last.phase, Phase::Done);
    assert_eq!(last.documents_done, 6);
    assert_eq!(last.chunks_done, report.chunks);
    assert_eq!(last.chunks_total, report.chunks);
    assert!(seen.iter().any(|p| p.phase == Phase::Saving));
    assert!(
        seen.windows(2)
            .all(|w| w[0].chunks_done <= w[1].chunks_done)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_run_during_writes_and_always_see_whole_versions() {
    for kind in [IndexKind::Flat, IndexKind::Hnsw] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Metric::InnerProduct, kind);
        DocumentStore::add(&store, corpus(10)).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..4 {
            let store = store.clone();
            let stop = stop.clone();
            readers.push(tokio::spawn(async move {
                let mut searches = 0;
                while !stop.load(Ordering::Relaxed) {
                    let passages = store
                        .search(&format!("topic{} common", r * 3), 5, &Filter::new())
                        .await
                        .unwrap();
                    assert_eq!(passages.len(), 5, "every version holds enough chunks");
                    searches += 1;
                }
                searches
            }));
        }
        for round in 0..8 {
            // Replace half the documents with new text and delete one, each round.
            let documents: Vec<Document> = (0..5)
                .map(|i| {
                    doc(
                        &format!("doc-{i}"),
                        &format!("{} round{round}", topic_text(i, 30)),
                    )
                })
                .collect();
            DocumentStore::add(&store, documents).await.unwrap();
            DocumentStore::delete(&store, &format!("doc-{}", 5 + round % 5))
                .await
                .unwrap();
            DocumentStore::add(
                &store,
                vec![doc(
                    &format!("doc-{}", 5 + round % 5),
                    &topic_text(5 + round % 5, 40),
                )],
            )
            .await
            .unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.await.unwrap() > 0);
        }
        assert!(store.check().unwrap().is_consistent());
    }
}

#[tokio::test]
async fn two_processes_sharing_a_store_see_each_others_writes() {
    // Two handles on one folder behave like `ragway serve` and `ragway ingest` side by side.
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    let ingest = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    DocumentStore::add(&ingest, corpus(5)).await.unwrap();

    let passages = server.search("topic3", 1, &Filter::new()).await.unwrap();
    assert!(passages[0].id.starts_with("doc-3#"), "{passages:?}");

    // The server replaces a document the other handle wrote, and deletes another.
    let report = DocumentStore::add(&server, vec![doc("doc-3", "replaced by the server")])
        .await
        .unwrap();
    assert_eq!(report.replaced, 1);
    assert!(DocumentStore::delete(&server, "doc-1").await.unwrap());
    let passages = ingest.search("server", 1, &Filter::new()).await.unwrap();
    assert_eq!(passages[0].id, "doc-3#0");
    assert!(ingest.document("doc-1").await.unwrap().is_none());
    for store in [&server, &ingest] {
        let check = store.check().unwrap();
        assert!(check.is_consistent(), "{check:?}");
        assert_eq!(check.documents, 4);
    }
}
