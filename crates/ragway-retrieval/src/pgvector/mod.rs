//! The pgvector store: documents and their chunks in PostgreSQL with the pgvector extension
//! (RDS, Aurora, any Postgres >= 14), searched through an HNSW index. Searchable and writable,
//! and shared: every replica that names the same database and schema sees the same documents.
//!
//! # Layout
//! One Postgres schema per store (`ragway_<name>` unless configured): `documents` (id, title,
//! uri, metadata as JSONB, content hash), `chunks` (text and `vector(<dimension>)`, the row
//! going with its document on delete), `settings` and sqlx's `schema_migrations`. Vectors are
//! stored as the embedder made them; the metric only decides the index's operator class, so a
//! changed metric rebuilds the index and nothing else (see `schema`).
//!
//! # Atomic writes
//! One `add` is one transaction: a document is visible whole or not at all, on every replica at
//! once, and a writer killed mid-way leaves nothing behind (Postgres rolls the transaction
//! back). Documents are upserted in id order before their chunks are replaced, so two replicas
//! writing the same documents wait on each other's row locks instead of deadlocking, and the
//! last to commit wins.
//!
//! # Metadata filters
//! A filter becomes a SQL condition on the document's JSONB metadata, made per search: its
//! text follows the filter's shape, and every key, value and bound is a bound parameter (an
//! `$in` or `$nin` list at most two: its numbers and its strings). It means exactly what
//! [`Filter::matches`] means: numbers compared as `f64`s, strings and booleans exactly (by
//! `@>`, which the GIN index serves), a missing field failing a test and passing `$ne` and
//! `$nin`. A date range reads the document's string as
//! [`parse_date`](ragway_core::filter::parse_date) does, in integers from a regex's parts
//! rather than by a cast to a timestamp (which would fail the search on a malformed date, keep
//! only microseconds and read a zoneless time in the session's time zone); so any Postgres
//! this store runs on applies every filter. Dense search keeps scanning the HNSW graph until
//! `top_k` chunks pass (pgvector's iterative scans).

mod filter;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ragway_core::config::{
    HybridConfig, PgMetric, PgvectorStoreConfig, RetrievalMode, is_sql_identifier, secs,
};
use ragway_core::{
    Document, DocumentStore, Embedder, Filter, IngestReport, Passage, ProviderError, Retriever,
    StoreStats,
};
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Row as _, SqlSafeStr as _, SqlStr};

use crate::error::{Error, Result};
use crate::ingest::{
    EmbeddedDocument, Phase, Progress, chunk_text, content_hash, embed_documents, last_of_each_id,
};
use filter::SqlFilter;

pub use schema::latest_version;

pub const PROVIDER_TYPE: &str = "pgvector";

/// Texts sent to the embedder per call while ingesting.
const EMBED_BATCH: usize = 32;
/// Chunk rows written per INSERT (a few MB of vectors as text at 384 dimensions).
const INSERT_BATCH: usize = 500;

/// A pgvector store, connected (lazily: the pool opens connections as searches need them).
#[derive(Clone)]
pub struct PgvectorStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    provider: String,
    schema: String,
    pool: PgPool,
    settings: Settings,
    embedder: Arc<dyn Embedder>,
    embedder_name: String,
    dimension: usize,
    queries: Queries,
    /// Postgres cancels a statement running longer (`statement_timeout`): a 504, not a 500.
    statement_timeout: Duration,
    /// How a search without a mode of its own searches.
    retrieval: RetrievalMode,
    hybrid: HybridConfig,
}

/// How the store chunks and indexes, from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub metric: PgMetric,
    pub hnsw_m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
    pub chunk_size: usize,
    pub chunk_overlap: usize,
}

/// The store's statements, with its schema written in once. A filtered search's statement
/// depends on the filter's shape and is made per search ([`Queries::search_filtered`]).
struct Queries {
    schema: String,
    /// The dense search up to its `WHERE`.
    dense_select: String,
    search: SqlStr,
    keyword_search: SqlStr,
    hashes: SqlStr,
    upsert_documents: SqlStr,
    delete_chunks: SqlStr,
    insert_chunks: SqlStr,
    delete_document: SqlStr,
    counts: SqlStr,
}

/// SQL text made at run time. Only validated identifiers (the schema, checked by
/// [`is_sql_identifier`]), numbers and fixed fragments (a filter's, with its parameter numbers)
/// are ever written into it; values are bound.
pub(crate) fn sql_text(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

impl Queries {
    fn new(schema: &str, metric: PgMetric) -> Self {
        let op = schema::operator(metric);
        let select = format!(
            "SELECT c.document_id, c.position, c.text, d.title, d.uri, d.metadata,
                    c.embedding {op} $1::real[]::vector AS distance
             FROM {schema}.chunks c JOIN {schema}.documents d ON d.id = c.document_id"
        );
        Self {
            schema: schema.to_owned(),
            search: sql_text(format!("{select} ORDER BY distance LIMIT $2")),
            dense_select: select,
            keyword_search: sql_text(keyword_search(schema, "true")),
            hashes: sql_text(format!(
                "SELECT id, content_hash FROM {schema}.documents WHERE id = ANY($1)"
            )),
            upsert_documents: sql_text(format!(
                "INSERT INTO {schema}.documents (id, title, uri, metadata, content_hash, chunks)
                 SELECT id, title, uri, metadata::jsonb, content_hash, chunks
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[])
                      AS u(id, title, uri, metadata, content_hash, chunks)
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, uri = excluded.uri,
                    metadata = excluded.metadata, content_hash = excluded.content_hash,
                    chunks = excluded.chunks, updated_at = now()"
            )),
            delete_chunks: sql_text(format!(
                "DELETE FROM {schema}.chunks WHERE document_id = ANY($1)"
            )),
            // A chunk's keywords are its document's title and its text, as in the FAISS
            // store's index; the documents were upserted first, in the same transaction.
            insert_chunks: sql_text(format!(
                "INSERT INTO {schema}.chunks (document_id, position, text, embedding, keywords, words)
                 SELECT u.document_id, u.position, u.text, u.embedding::vector, k.keywords,
                        (SELECT coalesce(sum(cardinality(p.positions)), 0) FROM unnest(k.keywords) p)
                 FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[])
                      AS u(document_id, position, text, embedding)
                 JOIN {schema}.documents d ON d.id = u.document_id
                 CROSS JOIN LATERAL (
                     SELECT to_tsvector('english', coalesce(d.title, '') || E'\\n' || u.text) AS keywords
                 ) k"
            )),
            delete_document: sql_text(format!("DELETE FROM {schema}.documents WHERE id = $1")),
            counts: sql_text(format!(
                "SELECT (SELECT count(*) FROM {schema}.documents),
                        (SELECT count(*) FROM {schema}.chunks)"
            )),
        }
    }

    /// The dense search of the chunks whose document passes `filter` (`$1` the vector, `$2`
    /// how many, the filter's values after).
    fn search_filtered(&self, filter: &SqlFilter) -> SqlStr {
        sql_text(format!(
            "{} WHERE {} ORDER BY distance LIMIT $2",
            self.dense_select, filter.condition
        ))
    }

    /// The keyword search of the chunks whose document passes `filter` (`$1` the query, `$2`
    /// how many, the filter's values after).
    fn keyword_search_filtered(&self, filter: &SqlFilter) -> SqlStr {
        sql_text(keyword_search(&self.schema, &filter.condition))
    }
}

/// BM25 parameters, as the FAISS store's keyword index has them (SQLite FTS5's defaults).
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;

/// BM25 over the keyword index, in SQL: `$1` the query's text (stemmed as the chunks were),
/// `$2` how many chunks, `filter` the condition each chunk's document (`d`) must pass. A chunk
/// matches when it holds any word of the query (the GIN index finds them); each word weighs
/// its inverse document frequency over the chunks, its count in the chunk saturating by `k1`,
/// normalised by the chunk's length against the average (`b`). Query words reach the
/// `tsquery` as quoted lexemes, so nothing a caller types is ever read as tsquery syntax.
fn keyword_search(schema: &str, filter: &str) -> String {
    // A lexeme as a quoted tsquery operand: backslashes and quotes doubled.
    let quote = |column: &str| {
        format!(r"('''' || replace(replace({column}, '\', '\\'), '''', '''''') || '''')")
    };
    let (each, term) = (quote("lexeme"), quote("t.lexeme"));
    format!(
        "WITH terms AS (
             SELECT DISTINCT t.lexeme
             FROM unnest(to_tsvector('english', $1)) AS t(lexeme, positions, weights)
         ), stats AS (
             SELECT greatest(chunks, 1)::float8 AS n,
                    greatest(words, 1)::float8 / greatest(chunks, 1) AS avgdl
             FROM {schema}.keyword_stats
         ), query AS (
             SELECT string_agg({each}, ' | ')::tsquery AS q FROM terms
         ), weighted AS (
             SELECT t.lexeme, ln(1 + (s.n - f.df + 0.5) / (f.df + 0.5)) AS idf
             FROM terms t CROSS JOIN stats s
             CROSS JOIN LATERAL (
                 SELECT count(*)::float8 AS df FROM {schema}.chunks c
                 WHERE c.keywords @@ {term}::tsquery
             ) f
         ), scored AS (
             SELECT c.id, sum(w.idf * cardinality(u.positions) * ({k1} + 1)
                    / (cardinality(u.positions) + {k1} * (1 - {b} + {b} * c.words / s.avgdl))) AS score
             FROM {schema}.chunks c
             JOIN {schema}.documents d ON d.id = c.document_id
             CROSS JOIN query q CROSS JOIN stats s
             CROSS JOIN LATERAL unnest(c.keywords) AS u(lexeme, positions, weights)
             JOIN weighted w ON w.lexeme = u.lexeme
             WHERE c.keywords @@ q.q AND {filter}
             GROUP BY c.id
         )
         SELECT c.document_id, c.position, c.text, d.title, d.uri, d.metadata, sc.score
         FROM scored sc
         JOIN {schema}.chunks c ON c.id = sc.id
         JOIN {schema}.documents d ON d.id = c.document_id
         ORDER BY sc.score DESC, c.id
         LIMIT $2",
        k1 = BM25_K1,
        b = BM25_B,
    )
}

impl PgvectorStore {
    /// Connects, migrates the schema to this binary's version (under Postgres's advisory lock)
    /// and makes the vector column and HNSW index match the config.
    ///
    /// Fails when the DSN is missing or malformed, Postgres cannot be reached within the
    /// connect timeout, the schema is newer than this binary, or the stored vectors have
    /// another dimension than the embedder makes.
    pub async fn open(config: &PgvectorStoreConfig, embedder: Arc<dyn Embedder>) -> Result<Self> {
        let dsn = config
            .dsn
            .resolve()
            .map_err(|message| Error::Schema { message })?;
        Self::open_with_dsn(config, dsn.expose_secret(), embedder).await
    }

    /// [`open`](Self::open) with the DSN given rather than read from the environment.
    pub async fn open_with_dsn(
        config: &PgvectorStoreConfig,
        dsn: &str,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Self> {
        let dimension = embedder.dimension();
        let schema = config.schema();
        if !is_sql_identifier(&schema) {
            return Err(Error::Schema {
                message: format!("\"{schema}\" is not a plain Postgres identifier"),
            });
        }
        let options = connect_options(config, dsn)?;
        let connect_timeout = secs(config.connect_timeout_secs);
        let settings = Settings {
            metric: config.metric,
            hnsw_m: config.hnsw_m,
            ef_construction: config.ef_construction,
            ef_search: config.ef_search,
            chunk_size: config.chunk_size,
            chunk_overlap: config.chunk_overlap,
        };

        let mut connection = tokio::time::timeout(connect_timeout, options.connect())
            .await
            .map_err(|_| Error::Postgres {
                context: "connecting".into(),
                source: sqlx::Error::PoolTimedOut,
            })?
            .map_err(|e| Error::postgres("connecting", e))?;
        let prepared = schema::prepare(&mut connection, &schema, &settings, dimension).await;
        let _ = sqlx::Connection::close(connection).await;
        prepared?;

        // Every pooled session searches with the configured breadth, and a filtered search
        // goes on scanning the graph until it has `top_k` rows that pass (pgvector 0.8's
        // iterative scans) instead of returning fewer.
        let session = options.clone().options([
            (
                "statement_timeout",
                format!(
                    "{}",
                    // Never 0, which would be Postgres's "no limit".
                    (config.statement_timeout_secs * 1000.0).round().max(1.0) as u64
                ),
            ),
            ("hnsw.ef_search", config.ef_search.to_string()),
            ("hnsw.iterative_scan", "strict_order".to_owned()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(session);
        Ok(Self {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                provider: format!("{PROVIDER_TYPE} store \"{}\"", config.name),
                queries: Queries::new(&schema, config.metric),
                schema,
                pool,
                settings,
                embedder,
                embedder_name: config.embedder.clone(),
                dimension,
                statement_timeout: Duration::from_secs_f64(config.statement_timeout_secs),
                retrieval: config.retrieval,
                hybrid: config.hybrid,
            }),
        })
    }

    /// The store's name in the config.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Postgres schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Vector length (the embedder's).
    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// Searches by text the store's way (`retrieval`: dense, keyword or hybrid) and returns the
    /// `top_k` best chunks whose document's metadata passes `filter`.
    pub async fn search(&self, query: &str, top_k: usize, filter: &Filter) -> Result<Vec<Passage>> {
        self.search_as(self.inner.retrieval, query, top_k, filter)
            .await
    }

    /// Searches by text in the given mode. Scores: for `dense`, as [`search_vector`]
    /// (Self::search_vector) says; for `keyword`, BM25; for `hybrid`, the fused reciprocal-rank
    /// score. Higher is better in each.
    pub async fn search_as(
        &self,
        mode: RetrievalMode,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        match mode {
            RetrievalMode::Dense => self.dense_search(query, top_k, filter).await,
            RetrievalMode::Keyword => self.keyword_search(query, top_k, filter).await,
            RetrievalMode::Hybrid => {
                crate::fusion::hybrid(&self.inner.hybrid, top_k, |mode, k| async move {
                    match mode {
                        RetrievalMode::Keyword => self.keyword_search(query, k, filter).await,
                        _ => self.dense_search(query, k, filter).await,
                    }
                })
                .await
            }
        }
    }

    /// Embeds `query` and returns the nearest chunks.
    async fn dense_search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        if top_k == 0 {
            return Ok(Vec::new());
        }
        let mut vectors = self.inner.embed(&[query.to_owned()]).await?;
        let vector = vectors.pop().unwrap_or_default();
        self.search_vector(vector, top_k, filter).await
    }

    /// BM25 over the keyword index (see [`keyword_search`]); the score is the chunk's BM25.
    async fn keyword_search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        if top_k == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let limit = i64::try_from(top_k).unwrap_or(i64::MAX);
        // Postgres's text cannot hold a NUL, and a NUL is no word: a separator, as a space.
        let query = query.replace('\0', " ");
        let search = if filter.is_empty() {
            sqlx::query(inner.queries.keyword_search.clone())
                .bind(&query)
                .bind(limit)
        } else {
            let filter = SqlFilter::new(filter, 3);
            let statement = inner.queries.keyword_search_filtered(&filter);
            filter.bind(sqlx::query(statement).bind(&query).bind(limit))
        };
        let rows = search
            .fetch_all(&inner.pool)
            .await
            .map_err(|e| Error::postgres("searching by keywords", e))?;
        passages(&rows, |score| score)
    }

    /// Searches by an already-embedded query vector.
    pub async fn search_vector(
        &self,
        vector: Vec<f32>,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        let inner = &self.inner;
        if vector.len() != inner.dimension {
            return Err(Error::Dimension {
                what: "query vector".into(),
                expected: inner.dimension,
                found: vector.len(),
            });
        }
        let limit = i64::try_from(top_k).unwrap_or(i64::MAX);
        let query = if filter.is_empty() {
            sqlx::query(inner.queries.search.clone())
                .bind(vector)
                .bind(limit)
        } else {
            let filter = SqlFilter::new(filter, 3);
            let statement = inner.queries.search_filtered(&filter);
            filter.bind(sqlx::query(statement).bind(vector).bind(limit))
        };
        let rows = query
            .fetch_all(&inner.pool)
            .await
            .map_err(|e| Error::postgres("searching", e))?;
        let metric = inner.settings.metric;
        passages(&rows, |distance| score(metric, distance))
    }

    /// The content hash of each of `ids` the store holds (what "unchanged" is judged by; see
    /// [`content_hash`]).
    pub async fn stored_hashes(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        self.inner.hashes(ids).await
    }

    /// How documents are cut: `(chunk_size, chunk_overlap)`.
    pub fn chunking(&self) -> (usize, usize) {
        (
            self.inner.settings.chunk_size,
            self.inner.settings.chunk_overlap,
        )
    }

    /// Adds or replaces documents, reporting progress; see [`DocumentStore::add`]. Documents
    /// are chunked by the store's settings, embedded in batches and written in one transaction.
    pub async fn add_with_progress(
        &self,
        documents: Vec<Document>,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<IngestReport> {
        let inner = &self.inner;
        if let Some(message) = documents.iter().find_map(holds_nul) {
            return Err(Error::Rejected { message });
        }
        let documents = last_of_each_id(documents);
        let documents_total = documents.len();
        let ids: Vec<String> = documents.iter().map(|d| d.id.clone()).collect();
        let existing = inner.hashes(&ids).await?;
        let chunking = Some((inner.settings.chunk_size, inner.settings.chunk_overlap));
        let mut report = IngestReport::default();
        let mut todo = Vec::new();
        for document in documents {
            let hash = content_hash(&document, chunking);
            match existing.get(&document.id) {
                Some(stored) if *stored == hash => report.unchanged += 1,
                Some(_) => {
                    report.replaced += 1;
                    todo.push((document, hash));
                }
                None => {
                    report.added += 1;
                    todo.push((document, hash));
                }
            }
        }
        let chunked: Vec<(Document, String, Vec<String>)> = todo
            .into_iter()
            .map(|(document, hash)| {
                let chunks = chunk_text(
                    &document.text,
                    inner.settings.chunk_size,
                    inner.settings.chunk_overlap,
                );
                (document, hash, chunks)
            })
            .collect();
        let mut state = Progress {
            phase: Phase::Embedding,
            documents_done: report.unchanged,
            documents_total,
            chunks_done: 0,
            chunks_total: chunked.iter().map(|(_, _, c)| c.len()).sum(),
        };
        progress(state);

        let ids: Vec<&str> = chunked.iter().map(|(d, _, _)| d.id.as_str()).collect();
        let texts: Vec<&[String]> = chunked.iter().map(|(_, _, c)| c.as_slice()).collect();
        let vectors = embed_documents(
            &ids,
            &texts,
            EMBED_BATCH,
            inner.embedder.concurrency(),
            |batch| async move { inner.embed(&batch).await },
            |count| {
                state.chunks_done += count;
                progress(state);
            },
        )
        .await?;
        let mut embedded = Vec::with_capacity(chunked.len());
        for ((document, hash, chunks), vectors) in chunked.into_iter().zip(vectors) {
            state.documents_done += 1;
            report.chunks += chunks.len();
            embedded.push(EmbeddedDocument {
                id: document.id,
                title: document.title,
                uri: document.uri,
                metadata: document.metadata,
                content_hash: hash,
                chunks: chunks.into_iter().zip(vectors).collect(),
            });
        }
        state.phase = Phase::Saving;
        progress(state);
        inner.write(embedded).await?;
        state.phase = Phase::Done;
        progress(state);
        Ok(report)
    }

    /// Writes documents whose chunks are already embedded (copied from another store), in one
    /// transaction; documents whose stored hash equals theirs are skipped.
    pub async fn add_embedded(&self, documents: Vec<EmbeddedDocument>) -> Result<IngestReport> {
        let inner = &self.inner;
        if let Some(bad) = documents
            .iter()
            .flat_map(|d| &d.chunks)
            .find(|(_, v)| v.len() != inner.dimension)
        {
            return Err(Error::Dimension {
                what: "copied vectors".into(),
                expected: inner.dimension,
                found: bad.1.len(),
            });
        }
        let ids: Vec<String> = documents.iter().map(|d| d.id.clone()).collect();
        let existing = inner.hashes(&ids).await?;
        let mut report = IngestReport::default();
        let mut todo = Vec::new();
        for document in documents {
            match existing.get(&document.id) {
                Some(stored) if *stored == document.content_hash => report.unchanged += 1,
                found => {
                    if found.is_some() {
                        report.replaced += 1;
                    } else {
                        report.added += 1;
                    }
                    report.chunks += document.chunks.len();
                    todo.push(document);
                }
            }
        }
        inner.write(todo).await?;
        Ok(report)
    }

    /// Removes a document and its chunks; false if the store holds none with that id.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(self.inner.queries.delete_document.clone())
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| Error::postgres("deleting a document", e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Number of documents and chunks, and the vector length.
    pub async fn stats(&self) -> Result<StoreStats> {
        let row = sqlx::query(self.inner.queries.counts.clone())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| Error::postgres("counting documents", e))?;
        let count = |i: usize| -> Result<usize> {
            let n: i64 = row
                .try_get(i)
                .map_err(|e| Error::postgres("counting documents", e))?;
            Ok(usize::try_from(n).unwrap_or(0))
        };
        Ok(StoreStats {
            documents: count(0)?,
            chunks: count(1)?,
            dimension: self.inner.dimension,
        })
    }

    /// Whether Postgres answers now, within the pool's connect timeout.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .map(|_| ())
            .map_err(|e| Error::postgres("checking the connection", e).to_string())
    }
}

impl Inner {
    /// `error` as the callers see it: a statement Postgres cancelled at `statement_timeout` is
    /// this store not answering in time (504); the rest as [`Error::into_provider`] says.
    fn provider_error(&self, error: Error) -> ProviderError {
        if error.is_statement_timeout() {
            return ProviderError::Timeout {
                provider: self.provider.clone(),
                after: self.statement_timeout,
            };
        }
        error.into_provider(&self.provider)
    }

    /// Embeds texts, checking the embedder's answer.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        crate::embedder::embed_checked(
            self.embedder.as_ref(),
            &self.embedder_name,
            self.dimension,
            texts,
        )
        .await
    }

    /// The stored content hash of each of `ids` the store holds.
    async fn hashes(&self, ids: &[String]) -> Result<std::collections::HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows = sqlx::query(self.queries.hashes.clone())
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::postgres("reading document hashes", e))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| Error::postgres("reading document hashes", e))
    }

    /// Upserts the documents (in id order, so that concurrent writers lock rows in one order)
    /// and replaces their chunks, all in one transaction.
    async fn write(&self, mut documents: Vec<EmbeddedDocument>) -> Result<()> {
        if documents.is_empty() {
            return Ok(());
        }
        documents.sort_by(|a, b| a.id.cmp(&b.id));
        let failed = |e| Error::postgres("writing documents", e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
        let chunk_counts: Vec<i32> = documents
            .iter()
            .map(|d| i32::try_from(d.chunks.len()).unwrap_or(i32::MAX))
            .collect();
        sqlx::query(self.queries.upsert_documents.clone())
            .bind(&ids)
            .bind(
                documents
                    .iter()
                    .map(|d| d.title.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                documents
                    .iter()
                    .map(|d| d.uri.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                documents
                    .iter()
                    .map(|d| Value::Object(d.metadata.clone()).to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                documents
                    .iter()
                    .map(|d| d.content_hash.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(&chunk_counts)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(self.queries.delete_chunks.clone())
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let rows: Vec<(&str, i32, &str, &[f32])> = documents
            .iter()
            .flat_map(|d| {
                d.chunks
                    .iter()
                    .enumerate()
                    .map(|(position, (text, vector))| {
                        (
                            d.id.as_str(),
                            i32::try_from(position).unwrap_or(i32::MAX),
                            text.as_str(),
                            vector.as_slice(),
                        )
                    })
            })
            .collect();
        for batch in rows.chunks(INSERT_BATCH) {
            sqlx::query(self.queries.insert_chunks.clone())
                .bind(batch.iter().map(|r| r.0).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.1).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| r.2).collect::<Vec<_>>())
                .bind(batch.iter().map(|r| vector_text(r.3)).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }
}

/// Search results as passages: rows of (document id, position, text, title, uri, metadata,
/// a number `score` makes the passage's score of).
fn passages(rows: &[sqlx::postgres::PgRow], score: impl Fn(f64) -> f64) -> Result<Vec<Passage>> {
    rows.iter()
        .map(|row| {
            let document: String = row.try_get(0)?;
            let position: i32 = row.try_get(1)?;
            let metadata: Value = row.try_get(5)?;
            let number: f64 = row.try_get(6)?;
            Ok(Passage {
                id: format!("{document}#{position}"),
                text: row.try_get(2)?,
                score: score(number) as f32,
                title: row.try_get(3)?,
                uri: row.try_get(4)?,
                metadata: match metadata {
                    Value::Object(map) => map,
                    _ => Map::new(),
                },
            })
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(|e| Error::postgres("reading search results", e))
}

/// Why Postgres cannot store `document` as it is, if it cannot: its `text` and `jsonb` hold no
/// NUL character, and the statement would fail half-way through a batch with a cryptic error.
fn holds_nul(document: &Document) -> Option<String> {
    let fields = [
        ("id", Some(document.id.as_str())),
        ("text", Some(document.text.as_str())),
        ("title", document.title.as_deref()),
        ("uri", document.uri.as_deref()),
    ];
    let field = fields
        .iter()
        .find(|(_, value)| value.is_some_and(|v| v.contains('\0')))
        .map(|(name, _)| *name)
        .or_else(|| {
            document
                .metadata
                .iter()
                .any(|(key, value)| key.contains('\0') || json_holds_nul(value))
                .then_some("metadata")
        })?;
    Some(format!(
        "document \"{}\": its {field} holds a NUL character, which Postgres cannot store",
        document.id.escape_default()
    ))
}

pub(crate) fn json_holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(json_holds_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || json_holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A vector in pgvector's text form, `[0.1,0.2]`; Rust prints the shortest text that reads
/// back as the same `f32`, so nothing is lost.
fn vector_text(vector: &[f32]) -> String {
    let mut text = String::with_capacity(vector.len() * 12 + 2);
    text.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&x.to_string());
    }
    text.push(']');
    text
}

/// A higher-is-better score from pgvector's distance: the cosine similarity for cosine, the
/// inner product for inner product (pgvector's `<#>` is its negative), `1 / (1 + d²)` for L2
/// (as the FAISS store's L2 score).
fn score(metric: PgMetric, distance: f64) -> f64 {
    match metric {
        PgMetric::Cosine => 1.0 - distance,
        PgMetric::InnerProduct => -distance,
        PgMetric::L2 => 1.0 / (1.0 + distance * distance),
    }
}

/// The connection settings from the DSN and the config.
fn connect_options(config: &PgvectorStoreConfig, dsn: &str) -> Result<PgConnectOptions> {
    // The DSN carries the password: the errors name the variable, never the text.
    if !(dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")) {
        return Err(Error::Schema {
            message: format!(
                "environment variable {} does not hold a Postgres URL: it must start with \
                 postgres:// (postgres://user:password@host:5432/database)",
                config.dsn.var()
            ),
        });
    }
    let options: PgConnectOptions = dsn.parse().map_err(|e: sqlx::Error| Error::Schema {
        message: format!(
            "environment variable {} does not hold a valid Postgres URL \
             (postgres://user:password@host:5432/database): {}",
            config.dsn.var(),
            redact(&e.to_string(), dsn)
        ),
    })?;
    let options = options.application_name("ragway");
    Ok(match &config.ssl_root_cert {
        Some(path) => options.ssl_root_cert(path),
        None => options,
    })
}

/// `message` without `secret` in it (a parser may quote what it was given).
fn redact(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "<dsn>")
    }
}

#[async_trait]
impl Retriever for PgvectorStore {
    async fn search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        PgvectorStore::search(self, query, top_k, filter)
            .await
            .map_err(|e| self.inner.provider_error(e))
    }

    fn modes(&self) -> &'static [RetrievalMode] {
        &RetrievalMode::ALL
    }

    async fn search_as(
        &self,
        mode: RetrievalMode,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        PgvectorStore::search_as(self, mode, query, top_k, filter)
            .await
            .map_err(|e| self.inner.provider_error(e))
    }

    async fn ready(&self) -> Result<(), String> {
        PgvectorStore::ready(self).await
    }
}

#[async_trait]
impl DocumentStore for PgvectorStore {
    async fn add(&self, documents: Vec<Document>) -> Result<IngestReport, ProviderError> {
        self.add_with_progress(documents, |_| {})
            .await
            .map_err(|e| self.inner.provider_error(e))
    }

    async fn delete(&self, id: &str) -> Result<bool, ProviderError> {
        PgvectorStore::delete(self, id)
            .await
            .map_err(|e| self.inner.provider_error(e))
    }

    async fn stats(&self) -> Result<StoreStats, ProviderError> {
        PgvectorStore::stats(self)
            .await
            .map_err(|e| self.inner.provider_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_written_in_pgvectors_text_form_without_loss() {
        let vector = [0.1f32, -2.5, 1e-8, f32::MAX];
        let text = vector_text(&vector);
        assert!(text.starts_with('[') && text.ends_with(']'), "{text}");
        let back: Vec<f32> = text[1..text.len() - 1]
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(back, vector);
        assert_eq!(vector_text(&[]), "[]");
    }

    #[test]
    fn scores_are_higher_for_closer_vectors_in_every_metric() {
        for metric in [PgMetric::Cosine, PgMetric::InnerProduct, PgMetric::L2] {
            let (near, far) = match metric {
                PgMetric::Cosine => (0.1, 0.9),
                PgMetric::InnerProduct => (-0.9, -0.1),
                PgMetric::L2 => (0.1, 2.0),
            };
            assert!(score(metric, near) > score(metric, far), "{metric:?}");
        }
        assert!((score(PgMetric::Cosine, 0.0) - 1.0).abs() < 1e-12);
        assert!((score(PgMetric::L2, 0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_dsn_never_appears_in_an_error() {
        let dsn = "postgres://u:hunter2@db/x";
        assert_eq!(redact(&format!("bad url {dsn}"), dsn), "bad url <dsn>");
    }
}
