//! The keyword index of a FAISS store (SQLite FTS5, BM25, Porter stemming) and the hybrid
//! mode: words found that vectors miss, stems matched, search syntax in a query taken as
//! words, deleted and replaced chunks gone from it in the same commit, a store written before
//! the index existed indexed when next opened for writing, and
//! hybrid results fusing both rankings.

use ragway_core::config::{IndexKind, Metric, RetrievalMode};
use ragway_core::{Document, DocumentStore, Filter};
use ragway_retrieval::faiss::{DB_FILE, FaissStore};

use crate::support::{HashEmbedder, config, doc, open};

fn documents() -> Vec<Document> {
    let mut documents = vec![
        doc(
            "volcano",
            "Volcanoes erupted across the island, burying the harbour in ash.",
        ),
        doc(
            "bees",
            "Honey bees dance to tell the hive where the flowers are.",
        ),
        doc(
            "tides",
            "The moon pulls the oceans, and the tides rise and fall.",
        ),
    ];
    let mut tagged = doc("bread", "Yeast ferments sugar in dough and the loaf rises.");
    tagged.metadata.insert("kind".into(), "kitchen".into());
    documents.push(tagged);
    documents
}

fn ids(passages: &[ragway_core::Passage]) -> Vec<&str> {
    passages.iter().map(|p| p.id.as_str()).collect()
}

#[tokio::test]
async fn keyword_search_finds_words_and_their_stems_and_reads_no_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    DocumentStore::add(&store, documents()).await.unwrap();
    let keyword = |query: &'static str, top_k: usize| {
        let store = store.clone();
        async move {
            store
                .search_as(RetrievalMode::Keyword, query, top_k, &Filter::new())
                .await
                .unwrap()
        }
    };

    // "eruption" and "erupted" share the stem "erupt"; the title is searched too.
    let found = keyword("eruption", 5).await;
    assert_eq!(ids(&found), ["volcano#0"], "{found:?}");
    assert!(found[0].score > 0.0);
    assert_eq!(ids(&keyword("Title of bees", 1).await), ["bees#0"]);
    // Any word may match; the one with more of them ranks first.
    let found = keyword("hive flowers tides", 5).await;
    assert_eq!(ids(&found)[0], "bees#0", "{found:?}");
    assert!(ids(&found).contains(&"tides#0"));
    // FTS5 syntax in a query is taken as words, never as an error or an injection.
    for hostile in [
        "\"unbalanced",
        "NEAR(moon tides)",
        "moon AND",
        "* OR",
        "title:moon",
        "-moon",
        "^moon",
        "moon\"); DROP TABLE chunks; --",
        "",
        "   ",
        "!!!",
    ] {
        let found = store
            .search_as(RetrievalMode::Keyword, hostile, 5, &Filter::new())
            .await
            .unwrap_or_else(|e| panic!("{hostile:?}: {e}"));
        if hostile.contains("moon") {
            // Operators are words like any other ("and" is in the bread document).
            assert_eq!(ids(&found).first(), Some(&"tides#0"), "{hostile:?}");
        } else {
            assert!(found.is_empty(), "{hostile:?}: {found:?}");
        }
    }
    // A metadata filter applies to keyword search as to dense.
    let kitchen = Filter::equals([("kind".to_owned(), "kitchen".into())]);
    let found = store
        .search_as(RetrievalMode::Keyword, "dough tides", 5, &kitchen)
        .await
        .unwrap();
    assert_eq!(ids(&found), ["bread#0"]);
}

#[tokio::test]
async fn deleted_and_replaced_chunks_leave_the_keyword_index_in_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    DocumentStore::add(&store, documents()).await.unwrap();
    assert!(DocumentStore::delete(&store, "volcano").await.unwrap());
    DocumentStore::add(
        &store,
        vec![doc("bees", "Wasps build paper nests from chewed wood.")],
    )
    .await
    .unwrap();
    let keyword = |query: &'static str| {
        let store = store.clone();
        async move {
            store
                .search_as(RetrievalMode::Keyword, query, 5, &Filter::new())
                .await
                .unwrap()
        }
    };
    assert!(keyword("erupted ash").await.is_empty());
    assert!(keyword("honey dance hive").await.is_empty());
    assert_eq!(ids(&keyword("wasps nests").await), ["bees#0"]);

    // Another handle on the folder (another process, say) reads the same version.
    let other = open(dir.path(), Metric::InnerProduct, IndexKind::Hnsw);
    let found = other
        .search_as(RetrievalMode::Keyword, "wasps honey", 5, &Filter::new())
        .await
        .unwrap();
    assert_eq!(ids(&found), ["bees#0"]);
}

#[tokio::test]
async fn a_store_written_before_the_keyword_index_is_indexed_when_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    DocumentStore::add(
        &open(dir.path(), Metric::InnerProduct, IndexKind::Flat),
        documents(),
    )
    .await
    .unwrap();
    // As an older ragway left it: no keyword table, no marker.
    {
        let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        db.execute_batch("DROP TABLE keywords; DELETE FROM meta WHERE key = 'keywords';")
            .unwrap();
    }
    // Opened for writing, every chunk is indexed once.
    let store = open(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    let found = store
        .search_as(RetrievalMode::Keyword, "tides", 3, &Filter::new())
        .await
        .unwrap();
    assert_eq!(ids(&found), ["tides#0"]);
}

#[tokio::test]
async fn hybrid_fuses_the_dense_and_keyword_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let mut hybrid = config(dir.path(), Metric::InnerProduct, IndexKind::Flat);
    hybrid.retrieval = RetrievalMode::Hybrid;
    let store = FaissStore::open(&hybrid, HashEmbedder::new()).unwrap();
    DocumentStore::add(&store, documents()).await.unwrap();
    let query = "moon tides";
    let dense = store
        .search_as(RetrievalMode::Dense, query, 4, &Filter::new())
        .await
        .unwrap();
    let keyword = store
        .search_as(RetrievalMode::Keyword, query, 4, &Filter::new())
        .await
        .unwrap();
    let fused = store.search(query, 4, &Filter::new()).await.unwrap();
    assert_eq!(fused.len(), 4, "{fused:?}");
    // The keyword hit is in both rankings' candidates; fused, it comes first.
    assert_eq!(ids(&keyword), ["tides#0"]);
    assert_eq!(fused[0].id, "tides#0", "dense {dense:?} fused {fused:?}");
    // Fused scores are reciprocal-rank sums, at most (1 + 1) / (60 + 1).
    assert!(
        fused
            .iter()
            .all(|p| p.score > 0.0 && p.score <= 2.0 / 61.0 + 1e-6)
    );
}
