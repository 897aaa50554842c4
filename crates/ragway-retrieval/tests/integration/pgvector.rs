//! The pgvector store against a real PostgreSQL with pgvector (started by each test on a free
//! port): the same document semantics as the FAISS store, two handles sharing one database as
//! two replicas would, migrations under concurrent start-up and a schema newer than the
//! binary, an outage and recovery, concurrent writers, hostile ids, every filter operator
//! finding exactly what `Filter::matches` accepts (dates as `parse_date` reads them), a copy of a
//! FAISS store without re-embedding, and the keyword index (BM25 over Postgres full-text
//! search: scores, hostile queries, totals kept by triggers, the migration of an older
//! database) with hybrid search.

use std::collections::BTreeSet;
use std::sync::Arc;

use ragway_core::config::{PgMetric, PgvectorStoreConfig, RetrievalMode};
use ragway_core::{DocumentStore, Embedder, Filter, IngestReport, ProviderError, Retriever};
use ragway_retrieval::ingest::EmbeddedDocument;
use ragway_retrieval::pgvector::{PgvectorStore, latest_version};
use ragway_testkit::postgres::Postgres;
use ragway_testkit::postgres_tls::TlsFront;
use serde_json::json;
use sqlx::{Connection as _, PgConnection, Row as _};

use crate::support::{HashEmbedder, doc, topic_text};

fn config(schema: &str, metric: PgMetric) -> PgvectorStoreConfig {
    let text = format!(
        r#"name = "pg"
           dsn = "env::RAGWAY_TEST_PG_DSN"
           embedder = "hash"
           schema = "{schema}"
           metric = "{}"
           chunk_size = 200
           chunk_overlap = 30
           connect_timeout_secs = 3"#,
        match metric {
            PgMetric::Cosine => "cosine",
            PgMetric::InnerProduct => "inner_product",
            PgMetric::L2 => "l2",
        }
    );
    toml::from_str(&text).unwrap()
}

async fn open(pg: &Postgres, schema: &str) -> PgvectorStore {
    open_with(pg, &config(schema, PgMetric::Cosine)).await
}

async fn open_with(pg: &Postgres, config: &PgvectorStoreConfig) -> PgvectorStore {
    PgvectorStore::open_with_dsn(config, &pg.dsn(), HashEmbedder::new())
        .await
        .unwrap_or_else(|e| panic!("opening the store: {e}\n{}", pg.log()))
}

async fn sql(pg: &Postgres) -> PgConnection {
    PgConnection::connect(&pg.dsn()).await.unwrap()
}

fn corpus(n: usize) -> Vec<ragway_core::Document> {
    (0..n)
        .map(|i| doc(&format!("doc-{i}"), &topic_text(i, 40)))
        .collect()
}

#[tokio::test]
async fn documents_are_added_searched_replaced_and_deleted() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_docs").await;
    assert!(
        store
            .search("x", 3, &Filter::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 0);

    let report = DocumentStore::add(&store, corpus(5)).await.unwrap();
    assert_eq!((report.added, report.replaced, report.unchanged), (5, 0, 0));
    assert!(
        report.chunks > 5,
        "40-word texts make several chunks of 200"
    );
    let stats = DocumentStore::stats(&store).await.unwrap();
    assert_eq!((stats.documents, stats.chunks), (5, report.chunks));
    assert_eq!(stats.dimension, 384);

    let passages = store
        .search("topic3 common", 3, &Filter::new())
        .await
        .unwrap();
    assert_eq!(passages.len(), 3);
    assert!(passages[0].id.starts_with("doc-3#"), "{passages:?}");
    assert_eq!(passages[0].title.as_deref(), Some("Title of doc-3"));
    assert_eq!(passages[0].uri.as_deref(), Some("file:///doc-3"));
    assert!(passages.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(passages[0].score <= 1.0 + 1e-6 && passages[0].score > 0.0);

    // The same documents again: nothing written.
    let again = DocumentStore::add(&store, corpus(5)).await.unwrap();
    assert_eq!(
        again,
        IngestReport {
            unchanged: 5,
            ..IngestReport::default()
        }
    );
    // A changed one replaces its chunks; the last of two with one id wins.
    let report = DocumentStore::add(
        &store,
        vec![
            doc("doc-1", "first version"),
            doc("doc-1", "zebra zebra zebra"),
        ],
    )
    .await
    .unwrap();
    assert_eq!((report.added, report.replaced, report.chunks), (0, 1, 1));
    let passages = store.search("zebra", 1, &Filter::new()).await.unwrap();
    assert_eq!(passages[0].id, "doc-1#0");
    assert_eq!(passages[0].text, "zebra zebra zebra");
    let mut db = sql(&pg).await;
    let chunks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ragway_docs.chunks WHERE document_id = 'doc-1'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(chunks, 1, "the old version's chunks are gone");

    assert!(DocumentStore::delete(&store, "doc-1").await.unwrap());
    assert!(!DocumentStore::delete(&store, "doc-1").await.unwrap());
    let passages = store.search("zebra", 5, &Filter::new()).await.unwrap();
    assert!(passages.iter().all(|p| !p.id.starts_with("doc-1#")));
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 4);
}

#[tokio::test]
async fn filters_pick_list_fields_by_contains_and_values_by_in_before_top_k() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_filters").await;
    let mut docs = Vec::new();
    for (id, lang, tags) in [
        ("en-1", "en", json!(["a", "b"])),
        ("en-2", "en", json!(["a"])),
        ("fr-1", "fr", json!(["a"])),
    ] {
        let mut d = doc(id, "shared words about the same topic");
        d.metadata.insert("lang".into(), json!(lang));
        d.metadata.insert("tags".into(), tags);
        docs.push(d);
    }
    DocumentStore::add(&store, docs).await.unwrap();

    let filter = |value: serde_json::Value| Filter::parse(&value).unwrap();
    let ids = |passages: Vec<ragway_core::Passage>| {
        let mut ids: Vec<String> = passages.into_iter().map(|p| p.id).collect();
        ids.sort();
        ids
    };
    let found = store
        .search("topic", 10, &filter(json!({"lang": "en"})))
        .await
        .unwrap();
    assert_eq!(ids(found), ["en-1#0", "en-2#0"]);
    // A list field holds a value ($contains); it does not equal one.
    let found = store
        .search("topic", 10, &filter(json!({"tags": {"$contains": "b"}})))
        .await
        .unwrap();
    assert_eq!(ids(found), ["en-1#0"]);
    let found = store
        .search("topic", 10, &filter(json!({"tags": "a"})))
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    let found = store
        .search(
            "topic",
            10,
            &filter(json!({"lang": {"$in": ["fr", "de"]}, "tags": {"$contains": "a"}})),
        )
        .await
        .unwrap();
    assert_eq!(ids(found), ["fr-1#0"]);
    // A hostile key is a value like any other, bound rather than written into the SQL.
    let found = store
        .search("topic", 10, &filter(json!({"x') OR 1=1 --": "y"})))
        .await
        .unwrap();
    assert!(found.is_empty());
    // top_k beyond the HNSW candidate list still fills up (iterative index scans).
    let many: Vec<_> = (0..60)
        .map(|i| {
            let mut d = doc(&format!("bulk-{i}"), &format!("topic bulk {i}"));
            d.metadata
                .insert("lang".into(), json!(if i % 2 == 0 { "de" } else { "it" }));
            d
        })
        .collect();
    DocumentStore::add(&store, many).await.unwrap();
    let found = store
        .search("topic", 25, &filter(json!({"lang": "de"})))
        .await
        .unwrap();
    assert_eq!(found.len(), 25);
    let found = store
        .search(
            "topic",
            25,
            &filter(json!({"lang": {"$nin": ["it", "en"]}})),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 25);
    assert!(
        found.iter().all(|p| p.metadata["lang"] != "it"),
        "{found:?}"
    );
}

/// Documents of one chunk each, all holding the word "shared", with metadata of every kind a
/// filter meets: strings, integers, floats, booleans, dates with and without offsets, dates
/// that are not ("2023-02-30", "now"), lists, nulls, objects, missing fields and hostile keys.
fn filtered_corpus() -> Vec<ragway_core::Document> {
    let metadata = [
        (
            "en-2021",
            json!({"lang": "en", "year": 2021, "score": 0.5, "draft": false,
                   "published": "2021-06-01", "seen": "2021-06-01T12:30:00+02:00",
                   "tags": ["a", "b"], "ratings": [1, 2.5]}),
        ),
        (
            "fr-2020",
            json!({"lang": "fr", "year": 2020, "score": 1, "draft": true,
                   "published": "2020-12-31T23:59:59Z", "tags": ["a"],
                   "it's \"quoted\"": "yes"}),
        ),
        (
            "en-float-year",
            json!({"lang": "en", "year": 2022.0, "score": -0.0, "published": "2023-02-30",
                   "tags": []}),
        ),
        (
            "de-strings",
            json!({"lang": "de", "year": "2021", "published": "now", "tags": "a",
                   "draft": "false"}),
        ),
        ("empty", json!({})),
        (
            "upper-1999",
            json!({"lang": "EN", "year": 1999, "published": "2021-06-01T00:00:00.000000001Z",
                   "seen": "2021-06-01T10:29:59", "ratings": [2.5]}),
        ),
        (
            "big-numbers",
            json!({"year": 9_007_199_254_740_993_u64, "score": 9_007_199_254_740_992.0,
                   "published": " 2021-6-1 ", "seen": "2021-06-01t10:30:00z",
                   "tags": [["a"]]}),
        ),
        (
            "leap-second",
            json!({"lang": "it", "published": "+002021-05-31T23:59:60",
                   "tags": ["b", 1, true]}),
        ),
        (
            "nulls",
            json!({"lang": null, "tags": [1, 2, "1"], "ratings": [1.0],
                   "nested": {"lang": "en"}}),
        ),
        (
            "minus-offset",
            json!({"lang": "en ') OR 1=1 --", "score": 0.25,
                   "published": "2021-06-01T00:30:00\u{2212}01:00"}),
        ),
        (
            "space-separator",
            json!({"lang": "en", "year": 2021, "draft": "false",
                   "published": "2021-06-01 01:00:00+00:00"}),
        ),
        (
            "number-date",
            json!({"lang": ["en"], "published": 20_210_601, "seen": "2021-06-01T24:00:00Z",
                   "x') OR 1=1 --": "y"}),
        ),
    ];
    metadata
        .into_iter()
        .enumerate()
        .map(|(i, (id, metadata))| {
            let mut d = doc(id, &format!("shared words number {i}"));
            d.metadata = metadata.as_object().unwrap().clone();
            d
        })
        .collect()
}

/// The documents a search finds by a filter, by id: each of one chunk, `#0`.
async fn found_by(
    store: &PgvectorStore,
    mode: RetrievalMode,
    filter: &Filter,
) -> Result<BTreeSet<String>, String> {
    let found = store
        .search_as(mode, "shared", 1000, filter)
        .await
        .map_err(|e| e.to_string())?;
    Ok(found
        .into_iter()
        .map(|p| p.id.trim_end_matches("#0").to_owned())
        .collect())
}

/// Keyword search (every chunk holding "shared", scored in SQL) finds exactly `expected`;
/// dense search finds none outside it. Dense search is not held to all of it: an HNSW graph of
/// near-identical vectors can leave a few unreachable, filter or not, so its misses would make
/// the test flaky while its extras still show a filter it did not apply.
async fn assert_found(
    store: &PgvectorStore,
    filter: &Filter,
    expected: &BTreeSet<String>,
    value: &serde_json::Value,
) {
    let keyword = found_by(store, RetrievalMode::Keyword, filter)
        .await
        .unwrap_or_else(|e| panic!("{value} (keyword): {e}"));
    assert_eq!(&keyword, expected, "{value} (keyword)");
    let dense = found_by(store, RetrievalMode::Dense, filter)
        .await
        .unwrap_or_else(|e| panic!("{value} (dense): {e}"));
    assert!(
        dense.is_subset(expected),
        "{value} (dense): {:?} passed the filter without matching it",
        dense.difference(expected).collect::<Vec<_>>()
    );
}

/// The ids of `documents` whose metadata `filter` matches: what every store must find.
fn matched_by(documents: &[ragway_core::Document], filter: &Filter) -> BTreeSet<String> {
    documents
        .iter()
        .filter(|d| filter.matches(&d.metadata))
        .map(|d| d.id.clone())
        .collect()
}

#[tokio::test]
async fn every_filter_finds_in_postgres_exactly_what_filter_matches_accepts() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_operators").await;
    let documents = filtered_corpus();
    DocumentStore::add(&store, documents.clone()).await.unwrap();

    let mut filters = vec![
        json!({"lang": "en"}),
        json!({"lang": {"$eq": "EN"}}),
        // Numbers by value: 2021 is not "2021", 2022 is 2022.0, 0 is -0.0, and two integers
        // the same as f64s are equal (as Filter::matches compares them).
        json!({"year": 2021}),
        json!({"year": 2022}),
        json!({"year": 9_007_199_254_740_992_u64}),
        json!({"score": 0}),
        json!({"draft": false}),
        json!({"draft": "false"}),
        json!({"lang": {"$ne": "en"}}),
        json!({"lang": {"$in": ["fr", "de", "EN"]}}),
        json!({"year": {"$in": [2020, 1999.0, "2021"]}}),
        json!({"lang": {"$nin": ["en", "fr"]}}),
        json!({"lang": {"$nin": [1, true, "en"]}}),
        json!({"tags": {"$in": ["a"]}}),
        json!({"tags": {"$contains": "a"}}),
        json!({"tags": {"$contains": 1}}),
        json!({"tags": {"$contains": true}}),
        json!({"ratings": {"$contains": 1}}),
        json!({"ratings": {"$contains": 2.5}}),
        json!({"lang": {"$contains": "en"}}),
        json!({"year": {"$gte": 2020, "$lt": 2022}}),
        json!({"score": {"$gt": 0, "$lte": 1}}),
        json!({"score": {"$lte": 0}}),
        json!({"published": {"$gt": 20_210_000}}),
        json!({"year": {"$gt": "2000-01-01"}}),
        // Dates: midnight UTC for a day, offsets applied, nanoseconds kept, a leap second
        // after the second before it, chrono's leniency (" 2021-6-1 ") kept, what is no date
        // ("2023-02-30", "now", an hour of 24, a number) never in range.
        json!({"published": {"$gte": "2021-06-01"}}),
        json!({"published": {"$gt": "2021-06-01T00:00:00Z"}}),
        json!({"published": {"$lt": "2021-06-01"}}),
        json!({"published": {"$gt": "2021-05-31T23:59:59.999999999Z"}}),
        json!({"published": {"$lte": "2021-06-01T01:30:00+00:00"}}),
        json!({"published": {"$gte": "2021-06-01T01:30:00.000000001"}}),
        json!({"seen": {"$lt": "2021-06-01T12:00:00Z", "$gt": "2021-06-01T10:29:59"}}),
        json!({"seen": {"$gte": "2021-06-01T10:29:59+00:00"}}),
        json!({"published": {"$lte": "2030-01-01"}, "lang": {"$ne": "fr"}}),
        json!({"$or": [{"lang": "fr"}, {"year": {"$gte": 2022}}]}),
        json!({"$and": [{"lang": "en"}, {"$not": {"year": {"$lt": 2021.5}}}]}),
        json!({"$not": {"lang": "en"}}),
        json!({"$not": {"$or": [{"tags": {"$contains": "a"}}, {"draft": true}]}}),
        json!({"$or": [
            {"$and": [{"lang": "en"}, {"draft": false}]},
            {"$not": {"published": {"$gte": "2000-01-01"}}},
        ]}),
        json!({"nested": {"$ne": "x"}}),
        // Keys and values that would be SQL if written into the statement.
        json!({"it's \"quoted\"": "yes"}),
        json!({"x') OR 1=1 --": "y"}),
        json!({"x') OR 1=1 --": {"$ne": "y"}}),
        json!({"lang": "en ') OR 1=1 --"}),
        json!({"'; DROP TABLE ragway_operators.documents; --": {"$in": ["') OR 1=1 --", 1]}}),
        json!({"k$1": {"$gte": "2021-01-01"}, "\\": {"$nin": ["\"", "'", "$$"]}}),
        // NUL, which Postgres text cannot hold: a key with one is missing everywhere, a value
        // with one equals nothing.
        json!({"lang\u{0}": "en"}),
        json!({"lang\u{0}": {"$ne": "en"}}),
        json!({"lang": "en\u{0}"}),
        json!({"lang": {"$ne": "en\u{0}"}}),
        json!({"lang": {"$in": ["en\u{0}", "fr"]}}),
        json!({"lang": {"$nin": ["en\u{0}"]}}),
        json!({"tags": {"$contains": "a\u{0}"}}),
        json!({"published\u{0}": {"$gt": "2020-01-01"}}),
        json!({"$not": {"lang\u{0}": {"$in": ["a\u{0}"]}}}),
    ];
    // A filter as large as the parser takes: its conditions and values up to the limits,
    // each list one parameter.
    let lists = ragway_core::filter::MAX_CONDITIONS - 11;
    let per_list = ragway_core::filter::MAX_VALUES / lists;
    let mut widest: Vec<serde_json::Value> = (0..lists)
        .map(|i| {
            let values: Vec<serde_json::Value> = (0..per_list)
                .map(|j| match j % 3 {
                    0 => json!(format!("v{i}-{j}")),
                    1 => json!(i * 1000 + j),
                    _ => json!(j % 2 == 0),
                })
                .collect();
            json!({ format!("k{i}"): {"$in": values} })
        })
        .collect();
    widest.extend((0..10).map(|i| json!({"published": {"$gt": format!("20{i:02}-01-01")}})));
    widest.push(json!({"lang": {"$in": ["fr", "it"]}}));
    let widest = json!({"$or": widest});
    assert!(Filter::parse(&widest).is_ok(), "the limits moved");
    filters.push(widest);

    let mut telling = 0;
    for value in filters {
        let filter = Filter::parse(&value).unwrap_or_else(|e| panic!("{value}: {e}"));
        let expected = matched_by(&documents, &filter);
        if !expected.is_empty() && expected.len() < documents.len() {
            telling += 1;
        }
        assert_found(&store, &filter, &expected, &value).await;
    }
    assert!(telling >= 40, "only {telling} filters tell documents apart");
    assert_eq!(
        DocumentStore::stats(&store).await.unwrap().documents,
        documents.len()
    );
}

#[tokio::test]
async fn date_ranges_read_document_dates_exactly_as_parse_date_does() {
    let pg = Postgres::start().unwrap();
    // A zoneless date is UTC whatever the sessions' time zone.
    let mut db = sql(&pg).await;
    sqlx::query("ALTER DATABASE postgres SET TimeZone = 'Asia/Kolkata'")
        .execute(&mut db)
        .await
        .unwrap();
    let store = open(&pg, "ragway_dates").await;
    let texts = [
        // Read by parse_date.
        "2021-06-01",
        "2021-06-01T00:00",
        "2021-06-01T00:00:00",
        "2021-06-01T00:00:00.5",
        "2021-06-01T00:00:00.123456789123",
        "2021-06-01T00:00:00Z",
        "2021-06-01t00:00:00z",
        "2021-06-01 00:00:00+00:00",
        "2021-06-01T02:00:00+02:00",
        "2021-05-31T23:00:00-01:00",
        "2021-05-31T23:00:00\u{2212}01:00",
        "2021-06-01T00:00:00.000+00:00",
        "2021-06-01T23:59:00+23:59",
        "2021-05-31T23:59:60Z",
        "2021-05-31T23:59:60.5",
        " 2021-06-01 ",
        "\u{3000}2021-06-01T00:00\u{a0}",
        "2021-6-1",
        "2021- 6- 1T 0: 0",
        "21-06-01",
        "+2021-06-01",
        "+0002021-06-01T00:00:00.000000001",
        "-0001-01-01",
        "0000-02-29",
        "2024-02-29",
        "1900-02-28",
        "2000-02-29",
        "1970-01-01T00:00:00.000000001Z",
        "1969-12-31T23:59:59.999999999",
        "+262142-12-31T23:59:59",
        "-262143-01-01",
        // Not.
        "2023-02-29",
        "1900-02-29",
        "2021-13-01",
        "2021-00-10",
        "2021-06-00",
        "2021-06-31",
        "2021-06-01T24:00",
        "2021-06-01T23:60",
        "2021-06-01T23:59:61",
        "2021-06-01T00:00:00+24:00",
        "2021-06-01T00:00:00+01:60",
        "2021-06-01T00:00:00+0100",
        "2021-06-01T00:00:00 +01:00",
        "2021-06-01T",
        "2021-06-01T00:00:00.",
        "2021-06-01Z",
        "2021-06-01T00:00Z",
        "2021-06-01 00:00",
        "2021-06-01T00:00:00UTC",
        "2021/06/01",
        "20210601",
        "June 1, 2021",
        "now",
        "today",
        "epoch",
        "infinity",
        "",
        "+-2021-06-01",
        "2021 -06-01",
        "12021-06-01",
        "2021-006-01",
        "\u{661}\u{662}\u{663}\u{664}-01-01",
        "+262143-01-01",
        "-262144-12-31",
        "99999999999999999999999-01-01",
        "+99999999999999999999999-01-01",
    ];
    let documents: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut d = doc(&format!("date-{i}"), &format!("shared date {i}"));
            d.metadata.insert("when".into(), json!(text));
            d
        })
        .collect();
    let readable = texts
        .iter()
        .filter(|t| ragway_core::filter::parse_date(t).is_some())
        .count();
    assert_eq!(
        readable, 31,
        "the list's first part is what parse_date reads"
    );
    DocumentStore::add(&store, documents.clone()).await.unwrap();

    for bound in [
        "2021-06-01",
        "2021-06-01T00:00:00.000000001Z",
        "2021-05-31T23:59:59.999999999Z",
        "2021-06-01T00:00:00.5",
        "1970-01-01",
        "0001-01-01",
        "-0001-06-01",
        "+262142-12-31",
    ] {
        for operator in ["$gt", "$gte", "$lt", "$lte"] {
            let value = json!({"when": {operator: bound}});
            let filter = Filter::parse(&value).unwrap_or_else(|e| panic!("{value}: {e}"));
            let expected = matched_by(&documents, &filter);
            assert_found(&store, &filter, &expected, &value).await;
        }
    }
}

#[tokio::test]
async fn hostile_ids_titles_and_metadata_are_stored_as_given() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_hostile").await;
    let id = "'; DROP TABLE ragway_hostile.documents; --?";
    let mut d = doc(id, "robert tables was here");
    d.title = Some("\u{202e}title with \"quotes\" and \\ backslash".into());
    d.metadata.insert(
        "ключ \"$1\"".into(),
        json!({"nested": [1, null, "\u{1F600}"]}),
    );
    DocumentStore::add(&store, vec![d.clone()]).await.unwrap();
    let found = store
        .search("robert tables", 1, &Filter::new())
        .await
        .unwrap();
    assert_eq!(found[0].id, format!("{}#0", d.id));
    assert_eq!(found[0].title, d.title);
    assert_eq!(found[0].metadata, d.metadata);
    assert!(DocumentStore::delete(&store, &d.id).await.unwrap());
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 0);

    // Postgres text holds no NUL: such a document is refused whole, naming it and the field,
    // as a bad request, and nothing of its batch is written.
    let mut nul = doc("nul", "fine");
    nul.metadata.insert("k".into(), json!("a\u{0}b"));
    let error = DocumentStore::add(&store, vec![doc("good", "fine"), nul])
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unsupported { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("\"nul\": its metadata"),
        "{error}"
    );
    let mut nul = doc("id\u{0}", "fine");
    nul.title = None;
    let error = DocumentStore::add(&store, vec![nul]).await.unwrap_err();
    assert!(error.to_string().contains("its id holds a NUL"), "{error}");
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 0);
}

#[tokio::test]
async fn two_replicas_on_one_database_see_each_others_writes_at_once() {
    let pg = Postgres::start().unwrap();
    let one = open(&pg, "ragway_shared").await;
    let two = open(&pg, "ragway_shared").await;
    DocumentStore::add(&one, vec![doc("note", "penguins live in antarctica")])
        .await
        .unwrap();
    let found = two.search("penguins", 1, &Filter::new()).await.unwrap();
    assert_eq!(found[0].id, "note#0");
    // Unchanged on the other replica too: the hash lives in the database.
    let report = DocumentStore::add(&two, vec![doc("note", "penguins live in antarctica")])
        .await
        .unwrap();
    assert_eq!(report.unchanged, 1);
    assert!(DocumentStore::delete(&two, "note").await.unwrap());
    assert!(
        one.search("penguins", 1, &Filter::new())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn replicas_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let pg = Postgres::start().unwrap();
    let config = config("ragway_race", PgMetric::Cosine);
    let opens = (0..4).map(|_| {
        let config = config.clone();
        let dsn = pg.dsn();
        tokio::spawn(async move {
            PgvectorStore::open_with_dsn(&config, &dsn, HashEmbedder::new())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    for result in futures::future::join_all(opens).await {
        result.unwrap().unwrap();
    }
    let mut db = sql(&pg).await;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM ragway_race.schema_migrations ORDER BY version")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(applied, (1..=latest_version()).collect::<Vec<_>>());
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'ragway_race' AND indexname LIKE 'chunks_hnsw_%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(indexes, 1);

    // A newer ragway recorded a migration this one does not know.
    sqlx::query(
        "INSERT INTO ragway_race.schema_migrations (version, description, success, checksum, execution_time)
         VALUES (999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let Err(error) = PgvectorStore::open_with_dsn(&config, &pg.dsn(), HashEmbedder::new()).await
    else {
        panic!("a schema newer than the binary must be refused");
    };
    let message = error.to_string();
    assert!(
        message.contains("version 999") && message.contains("newer than this ragway"),
        "{message}"
    );
}

#[tokio::test]
async fn vectors_of_another_dimension_are_refused_naming_both() {
    let pg = Postgres::start().unwrap();
    let config = config("ragway_dims", PgMetric::Cosine);
    let store = open_with(&pg, &config).await;
    DocumentStore::add(&store, corpus(1)).await.unwrap();
    let small: Arc<dyn Embedder> = Arc::new(HashEmbedder { dimension: 128 });
    let Err(error) = PgvectorStore::open_with_dsn(&config, &pg.dsn(), small).await else {
        panic!("a dimension mismatch must fail");
    };
    let message = error.to_string();
    assert!(
        message.contains("384") && message.contains("128"),
        "{message}"
    );
}

#[tokio::test]
async fn a_changed_metric_rebuilds_the_index_and_scores_follow_it() {
    let pg = Postgres::start().unwrap();
    let cosine = open(&pg, "ragway_metric").await;
    DocumentStore::add(&cosine, corpus(4)).await.unwrap();
    drop(cosine);
    let l2 = open_with(&pg, &config("ragway_metric", PgMetric::L2)).await;
    let mut db = sql(&pg).await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'ragway_metric' AND indexname LIKE 'chunks_hnsw_%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(names, ["chunks_hnsw_l2_m16_ef64"]);
    // 1 / (1 + d²): in (0, 1), and 1 only for the exact vector.
    let found = l2.search("topic2 common", 2, &Filter::new()).await.unwrap();
    assert!(found[0].score > 0.0 && found[0].score < 1.0, "{found:?}");
    let text: String = sqlx::query_scalar(
        "SELECT text FROM ragway_metric.chunks WHERE document_id = 'doc-2' AND position = 0",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let exact = l2
        .search_vector(HashEmbedder::new().vector(&text), 1, &Filter::new())
        .await
        .unwrap();
    assert_eq!(exact[0].id, "doc-2#0");
    assert!((exact[0].score - 1.0).abs() < 1e-5, "{exact:?}");
}

#[tokio::test]
async fn an_outage_is_unavailable_and_recovers_without_reopening() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_outage").await;
    DocumentStore::add(&store, corpus(2)).await.unwrap();
    pg.stop().unwrap();

    let error = Retriever::search(&store, "topic1", 1, &Filter::new())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "a stopped database is an outage (503), not an internal error: {error:?}"
    );
    assert!(!error.to_string().contains("ragway@"), "{error}");
    let not_ready = Retriever::ready(&store).await.unwrap_err();
    assert!(not_ready.contains("postgres"), "{not_ready}");
    let error = DocumentStore::add(&store, corpus(3)).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error:?}"
    );

    pg.start_again().unwrap();
    Retriever::ready(&store).await.unwrap();
    let found = store.search("topic1", 1, &Filter::new()).await.unwrap();
    assert!(found[0].id.starts_with("doc-1#"));
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 2);
}

#[tokio::test]
async fn a_statement_past_its_timeout_is_a_timeout_and_the_pool_goes_on() {
    let pg = Postgres::start().unwrap();
    let mut config = config("ragway_slow", PgMetric::Cosine);
    config.statement_timeout_secs = 0.3;
    let store = open_with(&pg, &config).await;
    DocumentStore::add(&store, corpus(2)).await.unwrap();

    // Another session holds the table: the search waits on its lock until Postgres cancels it.
    let mut holder = sql(&pg).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE ragway_slow.chunks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let error = Retriever::search(&store, "topic1", 1, &Filter::new())
        .await
        .unwrap_err();
    match &error {
        ProviderError::Timeout { after, .. } => {
            assert_eq!(*after, std::time::Duration::from_millis(300));
        }
        other => panic!("a cancelled statement is a timeout (504), not {other:?}"),
    }
    assert!(
        error.to_string().contains("pgvector store \"pg\""),
        "{error}"
    );
    let error = DocumentStore::add(&store, corpus(3)).await.unwrap_err();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");

    // The lock goes: the same pool answers, and the write that timed out left nothing behind.
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let found = Retriever::search(&store, "topic1", 1, &Filter::new())
        .await
        .unwrap();
    assert!(found[0].id.starts_with("doc-1#"), "{found:?}");
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 2);
}

#[tokio::test]
async fn concurrent_writers_of_the_same_documents_leave_each_whole() {
    let pg = Postgres::start().unwrap();
    let one = open(&pg, "ragway_writers").await;
    let two = open(&pg, "ragway_writers").await;
    // Each round, both replicas write the same ids with different texts (and different chunk
    // counts) at once, in opposite orders: each document ends as one writer's version, whole.
    for round in 0..5 {
        let a: Vec<_> = (0..8)
            .map(|i| doc(&format!("d{i}"), &topic_text(round * 100 + i, 10)))
            .collect();
        let mut b: Vec<_> = (0..8)
            .map(|i| doc(&format!("d{i}"), &topic_text(round * 100 + 50 + i, 60)))
            .collect();
        b.reverse();
        let (ra, rb) = tokio::join!(DocumentStore::add(&one, a), DocumentStore::add(&two, b));
        ra.unwrap();
        rb.unwrap();
    }
    let mut db = sql(&pg).await;
    let rows = sqlx::query(
        "SELECT d.id, d.chunks, count(c.id) AS found, count(DISTINCT c.position) AS positions
         FROM ragway_writers.documents d LEFT JOIN ragway_writers.chunks c ON c.document_id = d.id
         GROUP BY d.id, d.chunks",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 8);
    for row in rows {
        let id: String = row.get(0);
        let chunks: i32 = row.get(1);
        let found: i64 = row.get(2);
        let positions: i64 = row.get(3);
        assert_eq!(
            i64::from(chunks),
            found,
            "{id}: chunks of two versions mixed"
        );
        assert_eq!(found, positions, "{id}");
    }
}

#[tokio::test]
async fn embedded_documents_are_copied_without_the_embedder_and_skipped_when_unchanged() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_copy").await;
    let embedder = HashEmbedder::new();
    let copied = || {
        vec![EmbeddedDocument {
            id: "copied".into(),
            title: Some("Copied".into()),
            uri: None,
            metadata: serde_json::Map::new(),
            content_hash: "hash-from-elsewhere".into(),
            chunks: vec![
                ("alpha part".into(), embedder.vector("alpha part")),
                ("beta part".into(), embedder.vector("beta part")),
            ],
        }]
    };
    let report = store.add_embedded(copied()).await.unwrap();
    assert_eq!((report.added, report.chunks), (1, 2));
    assert_eq!(store.add_embedded(copied()).await.unwrap().unchanged, 1);
    let found = store.search("beta part", 1, &Filter::new()).await.unwrap();
    assert_eq!(found[0].id, "copied#1");

    let mut wrong = copied();
    wrong[0].chunks[0].1.pop();
    let error = store.add_embedded(wrong).await.unwrap_err().to_string();
    assert!(error.contains("384") && error.contains("383"), "{error}");
}

#[tokio::test]
async fn tls_is_spoken_and_the_servers_certificate_checked_against_the_ca() {
    let pg = Postgres::start().unwrap();
    let front = TlsFront::start(&pg).await.unwrap();
    let open_through = |dsn: String, ca: Option<std::path::PathBuf>| async move {
        let mut config = config("ragway_tls", PgMetric::Cosine);
        config.ssl_root_cert = ca;
        PgvectorStore::open_with_dsn(&config, &dsn, HashEmbedder::new()).await
    };

    // verify-full with the CA from the config: the name and the chain are checked, and every
    // statement (the migration, the pool's) goes over TLS.
    let store = open_through(
        front.dsn("localhost", "sslmode=verify-full"),
        Some(front.ca()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    DocumentStore::add(&store, corpus(2)).await.unwrap();
    let found = store.search("topic1", 1, &Filter::new()).await.unwrap();
    assert!(found[0].id.starts_with("doc-1#"), "{found:?}");
    assert!(front.sessions() >= 2, "{} TLS sessions", front.sessions());

    // The CA named in the DSN instead, and the address the certificate names as an IP.
    let ca = front.ca().display().to_string();
    let store = open_through(
        front.dsn(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 2);

    // A certificate from a CA nobody named is refused, saying why, before any statement runs.
    let sessions = front.sessions();
    let error = open_through(
        front.dsn("localhost", "sslmode=verify-full"),
        Some(front.other_ca()),
    )
    .await
    .err()
    .expect("a certificate from another CA was accepted");
    let message = error.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(front.sessions(), sessions, "nothing reached Postgres");

    // require: encrypted, the certificate not checked (libpq's meaning).
    let store = open_through(front.dsn("localhost", "sslmode=require"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(DocumentStore::stats(&store).await.unwrap().documents, 2);
}

#[tokio::test]
async fn an_unreachable_database_fails_the_open_naming_it_without_the_password() {
    let port = ragway_testkit::postgres::free_port().unwrap();
    let dsn = format!("postgres://ragway:hunter2@127.0.0.1:{port}/postgres");
    let config = config("ragway_none", PgMetric::Cosine);
    let Err(error) = PgvectorStore::open_with_dsn(&config, &dsn, HashEmbedder::new()).await else {
        panic!("nothing listens there");
    };
    let message = error.to_string();
    assert!(message.contains("connecting"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let Err(error) =
        PgvectorStore::open_with_dsn(&config, "mysql://x:hunter2@y", HashEmbedder::new()).await
    else {
        panic!("not a Postgres URL");
    };
    let message = error.to_string();
    assert!(message.contains("RAGWAY_TEST_PG_DSN"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

fn untitled(id: &str, text: &str) -> ragway_core::Document {
    ragway_core::Document {
        id: id.into(),
        text: text.into(),
        title: None,
        uri: None,
        metadata: serde_json::Map::new(),
        version: None,
    }
}

fn ids(passages: &[ragway_core::Passage]) -> Vec<&str> {
    passages.iter().map(|p| p.id.as_str()).collect()
}

/// BM25 of one query word in one chunk, as the store computes it (k1 1.2, b 0.75, Lucene's idf).
fn bm25(tf: f64, words: f64, average: f64, chunks: f64, holding: f64) -> f64 {
    let idf = (1.0 + (chunks - holding + 0.5) / (holding + 0.5)).ln();
    idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * words / average))
}

/// The keyword totals the triggers keep, and the same counted from the rows.
async fn keyword_totals(db: &mut PgConnection, schema: &str) -> ((i64, i64), (i64, i64)) {
    let kept = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT chunks, words FROM {schema}.keyword_stats"
    )))
    .fetch_one(&mut *db)
    .await
    .unwrap();
    let counted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum(words), 0)::bigint FROM {schema}.chunks"
    )))
    .fetch_one(&mut *db)
    .await
    .unwrap();
    ((kept.get(0), kept.get(1)), (counted.get(0), counted.get(1)))
}

#[tokio::test]
async fn keyword_search_scores_bm25_over_stems_and_reads_no_query_syntax() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_words").await;
    let mut tagged = untitled("birds", "tiger bear eagle hawk");
    tagged.metadata.insert("kind".into(), json!("sky"));
    DocumentStore::add(
        &store,
        vec![
            untitled("stripes", "zebra zebra lion"),
            untitled("cats", "lion tiger"),
            tagged,
        ],
    )
    .await
    .unwrap();
    let keyword = |query: &'static str, filter: Filter| {
        let store = store.clone();
        async move {
            store
                .search_as(RetrievalMode::Keyword, query, 5, &filter)
                .await
                .unwrap_or_else(|e| panic!("{query:?}: {e}"))
        }
    };

    // Three chunks of 3, 2 and 4 words (average 3). "Zebras" is stemmed to the chunk's word.
    let found = keyword("Zebras!", Filter::new()).await;
    assert_eq!(ids(&found), ["stripes#0"]);
    let expected = bm25(2.0, 3.0, 3.0, 3.0, 1.0);
    assert!(
        (f64::from(found[0].score) - expected).abs() < 1e-5,
        "{found:?} vs {expected}"
    );
    // "lion" is in two chunks: the shorter ranks first, each by its own length.
    let found = keyword("lions", Filter::new()).await;
    assert_eq!(ids(&found), ["cats#0", "stripes#0"]);
    for (passage, words) in found.iter().zip([2.0, 3.0]) {
        let expected = bm25(1.0, words, 3.0, 3.0, 2.0);
        assert!(
            (f64::from(passage.score) - expected).abs() < 1e-5,
            "{found:?}"
        );
    }
    // Words add up: a chunk holding two query words beats one holding one.
    let found = keyword("tiger hawk", Filter::new()).await;
    assert_eq!(ids(&found), ["birds#0", "cats#0"]);
    // A metadata filter applies as to dense search.
    let sky = Filter::equals([("kind".to_owned(), json!("sky"))]);
    assert_eq!(ids(&keyword("tiger lion", sky).await), ["birds#0"]);

    // tsquery syntax in a query is taken as words: never an error, never an operator.
    for hostile in [
        "zebra & !lion",
        "zebra <-> lion",
        "zebra:*",
        "!zebra",
        "'zebra' | 'lion'",
        "zebra\\",
        "zebra'); DROP TABLE ragway_words.chunks; --",
        "(zebra",
        "",
        "   ",
        "the of and",
        "!!!",
        "\u{0}",
        "zebra\u{0}",
    ] {
        let found = store
            .search_as(RetrievalMode::Keyword, hostile, 5, &Filter::new())
            .await;
        let found = found.unwrap_or_else(|e| panic!("{hostile:?}: {e}"));
        if hostile.contains("zebra") {
            assert_eq!(ids(&found).first(), Some(&"stripes#0"), "{hostile:?}");
        } else {
            assert!(found.is_empty(), "{hostile:?}: {found:?}");
        }
    }
    let mut db = sql(&pg).await;
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM ragway_words.chunks")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(chunks, 3);
}

#[tokio::test]
async fn keyword_totals_follow_every_write_on_every_replica() {
    let pg = Postgres::start().unwrap();
    let one = open(&pg, "ragway_totals").await;
    let two = open(&pg, "ragway_totals").await;
    let mut db = sql(&pg).await;
    DocumentStore::add(&one, corpus(6)).await.unwrap();
    let (kept, counted) = keyword_totals(&mut db, "ragway_totals").await;
    assert_eq!(kept, counted);
    assert!(kept.0 > 6 && kept.1 > kept.0, "{kept:?}");

    // Replaced by the other replica, deleted, written by both at once: the totals stay the
    // rows' own, so the scores stay true.
    DocumentStore::add(&two, vec![doc("doc-1", "zebra zebra zebra")])
        .await
        .unwrap();
    assert!(DocumentStore::delete(&one, "doc-2").await.unwrap());
    let (a, b) = tokio::join!(
        DocumentStore::add(&one, corpus(9)),
        DocumentStore::add(&two, corpus(12)),
    );
    a.unwrap();
    b.unwrap();
    let (kept, counted) = keyword_totals(&mut db, "ragway_totals").await;
    assert_eq!(kept, counted);

    // What one replica wrote, the other finds by its words.
    let found = two
        .search_as(RetrievalMode::Keyword, "topic11", 3, &Filter::new())
        .await
        .unwrap();
    assert!(found[0].id.starts_with("doc-11#"), "{found:?}");
}

#[tokio::test]
async fn a_database_from_before_the_keyword_index_is_indexed_by_the_migration() {
    let pg = Postgres::start().unwrap();
    let store = open(&pg, "ragway_upgrade").await;
    DocumentStore::add(
        &store,
        vec![
            doc("stripes", "zebra zebra lion"),
            doc("cats", "lion tiger"),
        ],
    )
    .await
    .unwrap();
    // As the first schema version left it: no keyword columns, totals or triggers.
    let mut db = sql(&pg).await;
    for statement in [
        "DROP TRIGGER keyword_stats_added ON ragway_upgrade.chunks",
        "DROP TRIGGER keyword_stats_removed ON ragway_upgrade.chunks",
        "DROP FUNCTION ragway_upgrade.keyword_stats_added()",
        "DROP FUNCTION ragway_upgrade.keyword_stats_removed()",
        "DROP TABLE ragway_upgrade.keyword_stats",
        "ALTER TABLE ragway_upgrade.chunks DROP COLUMN keywords, DROP COLUMN words",
        "DELETE FROM ragway_upgrade.schema_migrations WHERE version = 2",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }
    drop(store);

    let store = open(&pg, "ragway_upgrade").await;
    let found = store
        .search_as(RetrievalMode::Keyword, "zebra tiger", 5, &Filter::new())
        .await
        .unwrap();
    assert_eq!(ids(&found).len(), 2, "{found:?}");
    // Titles are indexed with the text, as for chunks written since.
    let found = store
        .search_as(RetrievalMode::Keyword, "title cats", 5, &Filter::new())
        .await
        .unwrap();
    assert_eq!(ids(&found)[0], "cats#0");
    let (kept, counted) = keyword_totals(&mut db, "ragway_upgrade").await;
    assert_eq!(kept, counted);
    assert_eq!(kept.0, 2);
}

#[tokio::test]
async fn a_pgvector_store_searches_hybrid_by_config_or_by_request() {
    let pg = Postgres::start().unwrap();
    let mut config = config("ragway_hybrid", PgMetric::Cosine);
    config.retrieval = RetrievalMode::Hybrid;
    let store = open_with(&pg, &config).await;
    DocumentStore::add(&store, corpus(8)).await.unwrap();
    assert_eq!(Retriever::modes(&store), RetrievalMode::ALL);
    let query = "topic5 word3";
    // Each ranking gives max(5 × top_k, 50) candidates; fused by reciprocal rank (k 60).
    let dense = store
        .search_as(RetrievalMode::Dense, query, 50, &Filter::new())
        .await
        .unwrap();
    let keyword = store
        .search_as(RetrievalMode::Keyword, query, 50, &Filter::new())
        .await
        .unwrap();
    let fused = store.search(query, 4, &Filter::new()).await.unwrap();
    let expected =
        ragway_retrieval::fusion::reciprocal_rank(&[(&dense, 1.0), (&keyword, 1.0)], 60.0, 4);
    assert_eq!(ids(&fused), ids(&expected));
    assert!(fused[0].id.starts_with("doc-5#"), "{fused:?}");
    for (got, want) in fused.iter().zip(&expected) {
        assert!((got.score - want.score).abs() < 1e-7, "{fused:?}");
    }
    // Through the trait, as /search calls it.
    let through = Retriever::search_as(&store, RetrievalMode::Keyword, query, 4, &Filter::new())
        .await
        .unwrap();
    assert_eq!(ids(&through), ids(&keyword[..4]));
}
