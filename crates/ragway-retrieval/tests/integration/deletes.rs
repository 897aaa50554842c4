//! Deletes from an HNSW store: the vectors of deleted and replaced chunks stay in the index
//! file (no rebuild per delete) and searches skip them, until they pass the configured share
//! and a write (or `--reindex`) rebuilds the index without them; other handles on the folder
//! and reopened stores see the same deleted set.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ragway_core::config::{IndexKind, Metric};
use ragway_core::{Document, DocumentStore, Filter};
use ragway_retrieval::faiss::{FaissStore, INDEX_LINK, MANIFEST_FILE, read_vectors};

use crate::support::{HashEmbedder, config, doc, open, topic_text};

fn corpus(n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| doc(&format!("doc-{i}"), &topic_text(i, 40)))
        .collect()
}

/// The inode of the committed index: the same one means the file was not written again.
fn index_inode(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(INDEX_LINK)).unwrap().ino()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

/// Every passage for a document's own words, as many as asked: none of `gone`.
async fn assert_never_found(store: &FaissStore, gone: &[&str], top_k: usize) {
    for id in gone {
        let n: usize = id.trim_start_matches("doc-").parse().unwrap();
        let passages = store
            .search(&format!("topic{n} common"), top_k, &Filter::new())
            .await
            .unwrap();
        assert_eq!(passages.len(), top_k, "{id}: top_k live chunks exist");
        assert!(
            passages
                .iter()
                .all(|p| !gone.iter().any(|g| p.id.starts_with(&format!("{g}#")))),
            "{id}: {passages:?}"
        );
    }
}

#[tokio::test]
async fn hnsw_deletes_keep_the_index_file_and_skip_the_dead_vectors_until_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    DocumentStore::add(&store, corpus(30)).await.unwrap();
    let start = store.check().unwrap();
    assert_eq!(start.deleted_vectors, 0);
    let chunks_of = |id: &str| {
        let store = store.clone();
        let id = id.to_owned();
        async move { store.document(&id).await.unwrap().unwrap().chunks }
    };

    // A delete changes no vector: the new generation's file is the old one, dead vectors in.
    let inode = index_inode(dir.path());
    let dead = chunks_of("doc-4").await;
    assert!(DocumentStore::delete(&store, "doc-4").await.unwrap());
    let check = store.check().unwrap();
    assert_eq!(check.generation, start.generation + 1);
    assert_eq!(check.deleted_vectors, dead);
    assert_eq!(check.index_vectors, start.index_vectors, "{check:?}");
    assert!(check.is_consistent(), "{check:?}");
    assert_eq!(
        index_inode(dir.path()),
        inode,
        "the index file was written again"
    );
    assert_eq!(manifest(dir.path())["deleted_vectors"], dead);

    // A replacement adds the new vectors to the graph and keeps the old ones, dead.
    let before = read_vectors(&store.index_file().unwrap()).unwrap().labels;
    let old = chunks_of("doc-7").await;
    DocumentStore::add(
        &store,
        vec![doc("doc-7", "topic7 zebras topic7 zebras common")],
    )
    .await
    .unwrap();
    let check = store.check().unwrap();
    assert_eq!(check.deleted_vectors, dead + old);
    assert_eq!(check.index_vectors, start.index_vectors + 1);
    assert!(check.is_consistent(), "{check:?}");
    let after = read_vectors(&store.index_file().unwrap()).unwrap().labels;
    assert!(
        before.iter().all(|l| after.contains(l)),
        "nothing was removed"
    );

    // Searches never return a deleted or replaced chunk (the old doc-7's are the nearest
    // after the new one), and still fill top_k.
    let passages = store
        .search("topic7 zebras", 10, &Filter::new())
        .await
        .unwrap();
    assert_eq!(passages.len(), 10);
    assert_eq!(passages[0].id, "doc-7#0");
    assert!(
        passages
            .iter()
            .all(|p| !p.id.starts_with("doc-7#") || p.text.contains("zebras")),
        "{passages:?}"
    );
    assert_never_found(&store, &["doc-4"], 10).await;

    // Past a fifth of the index dead, the write that crosses it rebuilds without them.
    let mut deleted = vec!["doc-4".to_owned()];
    let mut compacted = false;
    for n in 10..30 {
        let id = format!("doc-{n}");
        let inode = index_inode(dir.path());
        DocumentStore::delete(&store, &id).await.unwrap();
        let check = store.check().unwrap();
        assert!(check.is_consistent(), "{check:?}");
        let share = check.deleted_vectors as f64 / check.index_vectors as f64;
        assert!(share <= 0.2, "{check:?}");
        if check.deleted_vectors == 0 {
            assert_eq!(check.index_vectors, check.chunks as u64, "{check:?}");
            assert_ne!(index_inode(dir.path()), inode, "rebuilt into a new file");
            assert_eq!(manifest(dir.path())["deleted_vectors"], 0);
            compacted = true;
            break;
        }
        deleted.push(id);
    }
    assert!(compacted, "no compaction after deleting {deleted:?}");
    assert_never_found(&store, &["doc-4", "doc-10", "doc-11"], 5).await;
}

#[tokio::test]
async fn a_share_of_zero_rebuilds_at_every_delete_and_reindex_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path(), Metric::L2, IndexKind::Hnsw);
    settings.hnsw_max_deleted_share = 0.0;
    let eager = FaissStore::open(&settings, HashEmbedder::new()).unwrap();
    DocumentStore::add(&eager, corpus(30)).await.unwrap();
    DocumentStore::delete(&eager, "doc-1").await.unwrap();
    let check = eager.check().unwrap();
    assert_eq!(check.deleted_vectors, 0);
    assert_eq!(check.index_vectors, check.chunks as u64);
    drop(eager);

    let store = open(dir.path(), Metric::L2, IndexKind::Hnsw);
    assert_eq!(
        store
            .delete_many(vec!["doc-2".into(), "doc-3".into(), "nope".into()])
            .await
            .unwrap(),
        2
    );
    let check = store.check().unwrap();
    assert!(check.deleted_vectors > 0, "{check:?}");
    let generation = check.generation;
    drop(store);

    // `ragway ingest --reindex`: same settings, but the dead vectors go.
    let store = FaissStore::open_reindexing(
        &config(dir.path(), Metric::L2, IndexKind::Hnsw),
        HashEmbedder::new(),
    )
    .unwrap();
    let check = store.check().unwrap();
    assert_eq!(check.generation, generation + 1);
    assert_eq!(check.deleted_vectors, 0);
    assert_eq!(check.index_vectors, check.chunks as u64);
    assert_never_found(&store, &["doc-1", "doc-2", "doc-3"], 5).await;
}

#[tokio::test]
async fn other_handles_and_reopened_stores_see_the_same_deleted_vectors() {
    // Two handles on one folder behave like `ragway serve` and `ragway ingest` side by side.
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    let ingest = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    DocumentStore::add(&ingest, corpus(20)).await.unwrap();
    assert_eq!(
        server
            .search("topic3", 4, &Filter::new())
            .await
            .unwrap()
            .len(),
        4
    );

    DocumentStore::delete(&ingest, "doc-3").await.unwrap();
    DocumentStore::add(&ingest, vec![doc("doc-5", "replaced by the ingest")])
        .await
        .unwrap();
    let written = ingest.check().unwrap();
    assert!(written.deleted_vectors > 0, "{written:?}");
    assert_never_found(&server, &["doc-3"], 8).await;
    let passages = server
        .search("topic5 common", 20, &Filter::new())
        .await
        .unwrap();
    assert!(
        passages.iter().all(|p| !p.id.starts_with("doc-5#")),
        "{passages:?}"
    );
    assert_eq!(
        server.check().unwrap(),
        written,
        "the server loaded the new version"
    );

    // A store opened afresh loads the index with its deleted set: no rebuild.
    drop((server, ingest));
    let reopened = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    assert_eq!(reopened.check().unwrap(), written);
    assert_never_found(&reopened, &["doc-3"], 8).await;
}

#[tokio::test]
async fn a_store_written_before_deleted_labels_existed_opens_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    DocumentStore::add(&store, corpus(10)).await.unwrap();
    let generation = store.check().unwrap().generation;
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("store.sqlite3")).unwrap();
    db.execute("DROP TABLE deleted_labels", []).unwrap();
    drop(db);

    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    let check = store.check().unwrap();
    assert_eq!(check.generation, generation, "opened as it was: {check:?}");
    assert!(DocumentStore::delete(&store, "doc-2").await.unwrap());
    let check = store.check().unwrap();
    assert!(
        check.deleted_vectors > 0 && check.is_consistent(),
        "{check:?}"
    );
    assert_never_found(&store, &["doc-2"], 5).await;
}
