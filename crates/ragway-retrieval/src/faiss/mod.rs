//! The local FAISS store: a folder holding a FAISS index (readable by Python's
//! `faiss.read_index`), a SQLite document store and a manifest. Searchable and writable.
//!
//! # Layout
//! - `index-<generation>.faiss`: the committed index, an `IndexIDMap2` over `IndexFlat` or
//!   `IndexHNSWFlat` whose labels are chunk ids. `index.faiss` is a hard link to it, for
//!   people who open the store from Python. An HNSW index may also hold the vectors of
//!   deleted chunks: a label with no chunk row is deleted (see below).
//! - `store.sqlite3`: documents (id, title, uri, metadata JSON, content hash), chunks (text,
//!   raw vector; the row id is the FAISS label), the deleted labels the index still holds, and
//!   the settings, including the committed generation.
//! - `manifest.json`: embedder name and dimension, metric, index type, current index file,
//!   and how many of its vectors are deleted ones.
//!
//! # Deletes from an HNSW index
//! FAISS's HNSW cannot remove a vector, and rebuilding the graph takes tens of seconds per
//! 100k vectors. So a delete or replacement leaves the old vectors in the index and records
//! their labels in SQLite's `deleted_labels` (in the write's transaction, with the rows); a
//! delete alone changes no vector, and its generation's file is a hard link to the previous
//! one. Searches skip the deleted labels, searching deeper as for metadata filters. When the
//! deleted vectors pass `hnsw_max_deleted_share` of the index, the write rebuilds the index
//! from the live vectors and forgets the labels (compaction; `ragway ingest --reindex` too).
//! A flat index removes vectors for real and never holds deleted ones.
//!
//! # Atomic writes
//! A write (add, delete, adopt) runs one SQLite transaction: it changes the rows (and the
//! deleted labels) and bumps the generation, then builds the new index aside and writes
//! `index-<new>.faiss` (or, when no vector changes, links the committed file under that name),
//! fsyncs the file and the folder, and only then commits. The commit is the one moment the new version comes
//! into being: a crash before it leaves the old generation committed and its file untouched
//! (the half-written new file is deleted on the next open); a crash after it leaves the new
//! one. In memory, searches read an immutable snapshot of the index that the writer swaps after
//! committing, and check that SQLite's committed generation matches it, so a search sees the
//! rows and the index of one version. Writes are serialised, across processes too (the
//! folder's `write.lock`, held from the transaction to the tidying of old files); reads never
//! wait for them. A folder that cannot be written is opened for searching only.

pub mod index;

mod db;
mod lock;
mod search;
mod write;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use ragway_core::config::{FaissStoreConfig, HybridConfig, IndexKind, Metric, RetrievalMode};
use ragway_core::{
    Document, DocumentStore, Embedder, Filter, IngestReport, Passage, ProviderError, Retriever,
    StoreStats,
};
use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ingest::{Phase, Progress, embed_documents};
pub use index::{Hit, IndexInfo, IndexType, OpenOptions, SearchIndex, StoredVectors, read_vectors};

pub const PROVIDER_TYPE: &str = "faiss";

/// The SQLite file inside a store folder.
pub const DB_FILE: &str = "store.sqlite3";
/// The manifest inside a store folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// A hard link to the committed index, for other tools.
pub const INDEX_LINK: &str = "index.faiss";

/// Texts sent to the embedder per call while ingesting.
const EMBED_BATCH: usize = 32;
/// Readers kept open for reuse.
const MAX_IDLE_READERS: usize = 16;
/// Times a search looks again when SQLite and the loaded index are of different versions.
const SYNC_ATTEMPTS: usize = 100;
/// Of those, the first ones wait for this process's writer to publish; after them the version
/// is taken to come from another process (`ragway ingest` beside `ragway serve`) and loaded.
const LOCAL_WAIT_ATTEMPTS: usize = 20;

/// A FAISS store opened from its folder.
#[derive(Clone)]
pub struct FaissStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    provider: String,
    dir: PathBuf,
    settings: Settings,
    embedder: Arc<dyn Embedder>,
    embedder_name: String,
    dimension: usize,
    current: RwLock<Arc<Snapshot>>,
    readers: Mutex<Vec<Connection>>,
    /// Serialises whole writes, embedding included.
    write_turn: tokio::sync::Mutex<()>,
    /// The writing connection; `None` until the folder exists.
    writer: Mutex<Option<Connection>>,
    /// Serialises loading versions that another process committed.
    refreshing: Mutex<()>,
    /// The folder cannot be written (an image's): searched as it is, never changed.
    read_only: bool,
}

/// How a store builds and searches its index, from the config.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Settings {
    metric: Metric,
    index: IndexKind,
    hnsw_m: u32,
    ef_search: u32,
    hnsw_max_deleted_share: f64,
    chunk_size: usize,
    chunk_overlap: usize,
    retrieval: RetrievalMode,
    hybrid: HybridConfig,
}

/// One committed version of the index, as searches see it.
struct Snapshot {
    generation: u64,
    /// Shared with the next version when a write only deletes (no vector changes).
    index: Option<Arc<SearchIndex>>,
    /// Labels the index holds whose chunks this version deleted: searches skip them.
    deleted: HashSet<i64>,
}

/// What [`FaissStore::adopt`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptReport {
    /// Documents added, replaced or unchanged; one chunk per vector.
    pub ingest: IngestReport,
    /// The imported index as found (its metric may differ from the store's: vectors are
    /// re-indexed with the store's metric, normalised for inner product).
    pub source: IndexInfo,
}

/// A stored document as [`FaissStore::document`] returns it (its text lives in its chunks).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredDocument {
    pub id: String,
    pub title: Option<String>,
    pub uri: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Chunks indexed for it.
    pub chunks: usize,
}

/// A store's consistency, as [`FaissStore::check`] finds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCheck {
    /// The committed generation (0: nothing committed yet).
    pub generation: u64,
    /// Vectors in the loaded index, deleted ones included.
    pub index_vectors: u64,
    /// Chunk rows in SQLite.
    pub chunks: usize,
    /// Vectors of deleted chunks that the committed index still holds (HNSW only).
    pub deleted_vectors: usize,
    pub documents: usize,
}

impl StoreCheck {
    /// The index and the rows agree: one vector per chunk, plus the deleted ones.
    pub fn is_consistent(&self) -> bool {
        self.index_vectors == (self.chunks + self.deleted_vectors) as u64
    }
}

/// A document to write with its chunks' texts and vectors.
struct Prepared {
    document: Document,
    hash: String,
    /// The store held another version when the write was prepared.
    replaces: bool,
    chunks: Vec<String>,
}

/// The changes of one write. Rows are found by document id inside the write's transaction, so
/// a write is right even when another process changed the store since it was prepared.
#[derive(Default)]
struct Change {
    /// Documents to delete.
    delete: Vec<String>,
    /// Documents to insert, each replacing any stored one with its id.
    insert: Vec<(Prepared, Vec<Vec<f32>>)>,
    /// Rebuild the index from every stored vector instead of editing the current one.
    rebuild: bool,
}

impl FaissStore {
    /// Opens the store in `config.path`; a folder that does not exist yet is an empty store,
    /// created by the first write.
    ///
    /// Fails when the store holds vectors of another dimension than the embedder makes, or was
    /// built with another metric, index type or HNSW `m` than configured (naming both): a
    /// server and `ragway ingest` with different configs must not rebuild each other's index.
    /// [`Self::open_reindexing`] rebuilds it with the configured settings instead.
    pub fn open(config: &FaissStoreConfig, embedder: Arc<dyn Embedder>) -> Result<Self> {
        Self::open_with(config, embedder, false)
    }

    /// [`Self::open`], rebuilding the index from the stored vectors (a new generation; no
    /// re-embedding) when the configured metric, index type or HNSW `m` differ from the
    /// store's: `ragway ingest --reindex`.
    pub fn open_reindexing(config: &FaissStoreConfig, embedder: Arc<dyn Embedder>) -> Result<Self> {
        Self::open_with(config, embedder, true)
    }

    fn open_with(
        config: &FaissStoreConfig,
        embedder: Arc<dyn Embedder>,
        reindex: bool,
    ) -> Result<Self> {
        let dimension = embedder.dimension();
        if dimension == 0 {
            return Err(Error::invalid(
                &config.path,
                format!("embedder \"{}\" reports 0 dimensions", config.embedder),
            ));
        }
        let inner = Inner {
            name: config.name.clone(),
            provider: format!("{PROVIDER_TYPE} store \"{}\"", config.name),
            dir: config.path.clone(),
            settings: Settings {
                metric: config.metric,
                index: config.index,
                hnsw_m: config.hnsw_m,
                ef_search: config.ef_search,
                hnsw_max_deleted_share: config.hnsw_max_deleted_share,
                chunk_size: config.chunk_size,
                chunk_overlap: config.chunk_overlap,
                retrieval: config.retrieval,
                hybrid: config.hybrid,
            },
            embedder,
            embedder_name: config.embedder.clone(),
            dimension,
            current: RwLock::new(Arc::new(Snapshot {
                generation: 0,
                index: None,
                deleted: HashSet::new(),
            })),
            readers: Mutex::new(Vec::new()),
            write_turn: tokio::sync::Mutex::new(()),
            writer: Mutex::new(None),
            refreshing: Mutex::new(()),
            read_only: config.path.join(DB_FILE).exists() && !lock::can_write(&config.path),
        };
        if inner.db_path().exists() {
            inner.load(reindex)?;
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The store's name in the config.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Vector length (the embedder's).
    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// The committed index file, once something was written.
    pub fn index_file(&self) -> Option<PathBuf> {
        let generation = self.inner.snapshot().generation;
        (generation > 0).then(|| self.inner.index_path(generation))
    }

    /// Searches by text the store's way (`retrieval`: dense, keyword or hybrid) and returns the
    /// `top_k` best chunks whose document metadata equals `filter` on every key.
    pub async fn search(&self, query: &str, top_k: usize, filter: &Filter) -> Result<Vec<Passage>> {
        self.search_as(self.inner.settings.retrieval, query, top_k, filter)
            .await
    }

    /// Searches by text in the given mode. Scores: for `dense`, cosine similarity (inner
    /// product) or `1 / (1 + squared L2 distance)`; for `keyword`, BM25; for `hybrid`, the
    /// fused reciprocal-rank score. Higher is better in each.
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
                crate::fusion::hybrid(&self.inner.settings.hybrid, top_k, |mode, k| async move {
                    match mode {
                        RetrievalMode::Keyword => self.keyword_search(query, k, filter).await,
                        _ => self.dense_search(query, k, filter).await,
                    }
                })
                .await
            }
        }
    }

    /// BM25 over the keyword index.
    async fn keyword_search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        if top_k == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let (query, filter) = (query.to_owned(), filter.clone());
        let provider = self.inner.provider.clone();
        ragway_core::cpu::run(&provider, move || {
            inner.keyword_search_blocking(&query, top_k, &filter)
        })
        .await?
    }

    /// Nearest chunks to the query's embedding.
    async fn dense_search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        let empty = self.inner.snapshot().index.is_none() && !self.inner.db_path().exists();
        if top_k == 0 || empty {
            return Ok(Vec::new());
        }
        let mut vectors = self.inner.embed(&[query.to_owned()]).await?;
        let vector = vectors.pop().unwrap_or_default();
        self.search_vector(vector, top_k, filter).await
    }

    /// Searches by an already-embedded query vector (of [`dimension`](Self::dimension) floats).
    pub async fn search_vector(
        &self,
        vector: Vec<f32>,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        let inner = self.inner.clone();
        let filter = filter.clone();
        // CPU work (the index walk, SQLite reads): it takes its turn in the CPU pool.
        let provider = self.inner.provider.clone();
        ragway_core::cpu::run(&provider, move || {
            inner.search_blocking(vector, top_k, &filter)
        })
        .await?
    }

    /// Adds or replaces documents, reporting progress; see [`DocumentStore::add`].
    ///
    /// Documents are split into chunks of about `chunk_size` characters, embedded in batches by
    /// the store's embedder and written in one atomic commit. A document whose id and content
    /// (text, title, uri, metadata, chunking settings) match what the store holds is skipped; a
    /// changed one has its old chunks replaced. When two documents share an id, the last wins.
    /// Callers that want to keep partial progress of a very large ingest call this per slice:
    /// documents already committed are then skipped cheaply on a re-run.
    pub async fn add_with_progress(
        &self,
        documents: Vec<Document>,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<IngestReport> {
        let _turn = self.inner.write_turn.lock().await;
        let documents_total = documents.len();
        let inner = self.inner.clone();
        let (prepared, unchanged) = blocking(move || inner.prepare(documents)).await?;
        let chunks_total: usize = prepared.iter().map(|p| p.chunks.len()).sum();
        let mut state = Progress {
            phase: Phase::Embedding,
            documents_done: unchanged,
            documents_total,
            chunks_done: 0,
            chunks_total,
        };
        progress(state);
        let mut report = IngestReport {
            unchanged,
            ..IngestReport::default()
        };
        if prepared.is_empty() {
            state.phase = Phase::Done;
            progress(state);
            return Ok(report);
        }

        let ids: Vec<&str> = prepared.iter().map(|d| d.document.id.as_str()).collect();
        let texts: Vec<&[String]> = prepared.iter().map(|d| d.chunks.as_slice()).collect();
        let inner = &self.inner;
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
        let mut change = Change::default();
        for (document, vectors) in prepared.into_iter().zip(vectors) {
            state.documents_done += 1;
            if document.replaces {
                report.replaced += 1;
            } else {
                report.added += 1;
            }
            report.chunks += document.chunks.len();
            change.insert.push((document, vectors));
        }
        progress(state);

        state.phase = Phase::Saving;
        progress(state);
        let inner = self.inner.clone();
        blocking(move || inner.commit(change)).await?;
        state.phase = Phase::Done;
        progress(state);
        Ok(report)
    }

    /// Removes a document and its chunks; false if the store holds none with that id.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.delete_many(vec![id.to_owned()]).await? > 0)
    }

    /// Removes documents and their chunks in one commit; returns how many the store held.
    pub async fn delete_many(&self, ids: Vec<String>) -> Result<usize> {
        let _turn = self.inner.write_turn.lock().await;
        let inner = self.inner.clone();
        blocking(move || {
            let committed = inner.commit(Change {
                delete: ids,
                ..Change::default()
            })?;
            Ok(committed.map_or(0, |c| c.deleted_documents))
        })
        .await
    }

    /// Number of documents and chunks, and the vector length.
    pub async fn stats(&self) -> Result<StoreStats> {
        let inner = self.inner.clone();
        blocking(move || {
            let check = inner.check()?;
            Ok(StoreStats {
                documents: check.documents,
                chunks: check.chunks,
                dimension: inner.dimension,
            })
        })
        .await
    }

    /// A stored document by id.
    pub async fn document(&self, id: &str) -> Result<Option<StoredDocument>> {
        let inner = self.inner.clone();
        let id = id.to_owned();
        blocking(move || {
            if inner.snapshot().generation == 0 && !inner.db_path().exists() {
                return Ok(None);
            }
            let mut reader = inner.reader()?;
            db::document(reader.connection()?, &id).map_err(|e| inner.sqlite(e))
        })
        .await
    }

    /// The content hash of each of `ids` the store holds (what "unchanged" is judged by; see
    /// [`content_hash`](crate::ingest::content_hash)).
    pub async fn stored_hashes(&self, ids: Vec<String>) -> Result<HashMap<String, String>> {
        let inner = self.inner.clone();
        blocking(move || {
            if ids.is_empty() || !inner.db_path().exists() {
                return Ok(HashMap::new());
            }
            let mut reader = inner.reader()?;
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let found =
                db::document_hashes(reader.connection()?, &ids).map_err(|e| inner.sqlite(e))?;
            Ok(found
                .into_iter()
                .map(|(id, (_, hash))| (id, hash))
                .collect())
        })
        .await
    }

    /// How documents are cut: `(chunk_size, chunk_overlap)`.
    pub fn chunking(&self) -> (usize, usize) {
        (
            self.inner.settings.chunk_size,
            self.inner.settings.chunk_overlap,
        )
    }

    /// Up to `limit` stored documents after the position `after` (0 to start), with their
    /// chunks' texts and raw vectors, and the position to go on from (`None` at the end); for
    /// copying the store into another without re-embedding. Reads one committed version.
    pub async fn export(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<crate::ingest::EmbeddedDocument>, Option<i64>)> {
        let inner = self.inner.clone();
        blocking(move || {
            if !inner.db_path().exists() {
                return Ok((Vec::new(), None));
            }
            let mut reader = inner.reader()?;
            let conn = reader.connection()?;
            let tx = conn.transaction().map_err(|e| inner.sqlite(e))?;
            db::export(&tx, after, limit).map_err(|e| inner.sqlite(e))
        })
        .await
    }

    /// Compares the loaded index with the committed rows.
    pub fn check(&self) -> Result<StoreCheck> {
        self.inner.check()
    }

    /// Whether searches can be served: the document store reads, and the loaded index holds
    /// one vector per chunk of its version. A newer version committed by another process
    /// (`ragway ingest` beside `ragway serve`) is fine: the next search loads it. A committed
    /// version older than the loaded one means the store's files changed under ragway.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        let inner = self.inner.clone();
        blocking(move || {
            let loaded = inner.snapshot().generation;
            let check = inner.check()?;
            Ok((loaded, check))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|(loaded, check)| readiness(loaded, &check))
    }

    /// Imports an index that another tool built (LangChain's `index.faiss`, or any flat,
    /// HNSW or IVF-flat index) with its documents, without re-embedding.
    ///
    /// `documents` is JSON Lines, one line per vector position in the index's storage order
    /// (what `scripts/export_langchain_faiss.py` writes): `text`, `id`, optional `title`,
    /// `uri`, `metadata`. Each line becomes a one-chunk document whose vector is read back from
    /// the index. The vectors must have the embedder's dimension, since queries are embedded by
    /// it. Unchanged documents are skipped and changed ones replaced, as with `add`.
    pub async fn adopt(&self, index_file: &Path, documents: &Path) -> Result<AdoptReport> {
        let _turn = self.inner.write_turn.lock().await;
        let inner = self.inner.clone();
        let index_file = index_file.to_path_buf();
        let documents = documents.to_path_buf();
        blocking(move || inner.adopt(&index_file, &documents)).await
    }
}

#[async_trait]
impl Retriever for FaissStore {
    async fn search(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>, ProviderError> {
        FaissStore::search(self, query, top_k, filter)
            .await
            .map_err(|e| e.into_provider(&self.inner.provider))
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
        FaissStore::search_as(self, mode, query, top_k, filter)
            .await
            .map_err(|e| e.into_provider(&self.inner.provider))
    }

    async fn ready(&self) -> Result<(), String> {
        FaissStore::ready(self).await
    }
}

/// The verdict of [`FaissStore::ready`] on what it found.
fn readiness(loaded: u64, check: &StoreCheck) -> std::result::Result<(), String> {
    if check.generation < loaded {
        return Err(format!(
            "the store's files went back from version {loaded} to version {}: they were \
             replaced or deleted while ragway served them",
            check.generation
        ));
    }
    if check.generation == loaded && !check.is_consistent() {
        return Err(format!(
            "the loaded index holds {} vectors but the store has {} chunks and {} deleted \
             vectors",
            check.index_vectors, check.chunks, check.deleted_vectors
        ));
    }
    Ok(())
}

#[async_trait]
impl DocumentStore for FaissStore {
    async fn add(&self, documents: Vec<Document>) -> Result<IngestReport, ProviderError> {
        self.add_with_progress(documents, |_| {})
            .await
            .map_err(|e| e.into_provider(&self.inner.provider))
    }

    async fn delete(&self, id: &str) -> Result<bool, ProviderError> {
        FaissStore::delete(self, id)
            .await
            .map_err(|e| e.into_provider(&self.inner.provider))
    }

    async fn stats(&self) -> Result<StoreStats, ProviderError> {
        FaissStore::stats(self)
            .await
            .map_err(|e| e.into_provider(&self.inner.provider))
    }
}

/// Runs blocking work (FAISS, SQLite, files) off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Error::task)?
}

impl Inner {
    fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    fn index_path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("index-{generation}.faiss"))
    }

    fn sqlite(&self, error: rusqlite::Error) -> Error {
        Error::sqlite(self.db_path(), error)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes a newer version the one searches see (an older one, loaded late, is dropped).
    fn publish(&self, snapshot: Snapshot) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if snapshot.generation > current.generation {
            *current = Arc::new(snapshot);
        }
    }

    /// The writing connection, opened on first use if the store exists (another process may
    /// have created it since this one opened it empty).
    fn writer(&self) -> Result<MutexGuard<'_, Option<Connection>>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer.is_none() && self.db_path().exists() {
            *writer = Some(db::open_write(&self.db_path()).map_err(|e| self.sqlite(e))?);
        }
        Ok(writer)
    }

    fn open_options(&self) -> OpenOptions {
        OpenOptions {
            ef_search: Some(self.settings.ef_search),
        }
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

    /// The vector as it goes into the index: L2-normalised for inner product.
    fn index_ready(&self, vector: &[f32]) -> Vec<f32> {
        match self.settings.metric {
            Metric::L2 => vector.to_vec(),
            Metric::InnerProduct => normalized(vector),
        }
    }
}

fn normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        vector.iter().map(|x| x / norm).collect()
    } else {
        vector.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(generation: u64, index_vectors: u64, chunks: usize) -> StoreCheck {
        StoreCheck {
            generation,
            index_vectors,
            chunks,
            deleted_vectors: 0,
            documents: 1,
        }
    }

    #[test]
    fn a_store_is_ready_when_its_index_matches_its_rows() {
        assert_eq!(readiness(0, &StoreCheck::default()), Ok(()));
        assert_eq!(readiness(3, &found(3, 10, 10)), Ok(()));
        // An HNSW index still holding the vectors of 2 deleted chunks.
        let tombstones = StoreCheck {
            deleted_vectors: 2,
            ..found(3, 10, 8)
        };
        assert_eq!(readiness(3, &tombstones), Ok(()));
        // Another process committed version 4; the next search loads it.
        assert_eq!(readiness(3, &found(4, 10, 12)), Ok(()));
    }

    #[test]
    fn a_store_whose_files_changed_under_it_is_not_ready() {
        let error = readiness(3, &found(3, 10, 9)).unwrap_err();
        assert!(
            error.contains("10 vectors but the store has 9 chunks and 0 deleted vectors"),
            "{error}"
        );
        let error = readiness(3, &found(0, 10, 0)).unwrap_err();
        assert!(error.contains("from version 3 to version 0"), "{error}");
    }
}
