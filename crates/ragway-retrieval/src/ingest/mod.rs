//! Ingestion: reading files and folders into documents, cutting documents into chunks, and the
//! progress a store reports while it embeds and saves them.

pub mod chunk;
pub mod read;

pub use chunk::chunk_text;
pub use read::{EXTENSIONS, ReadReport, read_jsonl, read_paths};

use ragway_core::Document;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Identifies a document's stored form: its content and, for chunked documents, the chunking
/// settings `(chunk_size, chunk_overlap)` (a changed `chunk_size` re-chunks on the next
/// ingest). Adopted documents, stored whole, hash without them. Every writable store uses it,
/// so a document copied from one store to another with the same settings stays "unchanged".
pub fn content_hash(document: &Document, chunking: Option<(usize, usize)>) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    match chunking {
        Some((size, overlap)) => field(format!("chunked:{size}:{overlap}").as_bytes()),
        None => field(b"whole"),
    }
    field(document.text.as_bytes());
    field(document.title.as_deref().unwrap_or("\u{0}").as_bytes());
    field(document.uri.as_deref().unwrap_or("\u{0}").as_bytes());
    field(
        serde_json::Value::Object(document.metadata.clone())
            .to_string()
            .as_bytes(),
    );
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The last of several documents with one id wins; the others are dropped, order kept.
pub fn last_of_each_id(documents: Vec<Document>) -> Vec<Document> {
    let mut last = std::collections::HashMap::new();
    for (i, document) in documents.iter().enumerate() {
        last.insert(document.id.clone(), i);
    }
    documents
        .into_iter()
        .enumerate()
        .filter(|(i, d)| last.get(&d.id) == Some(i))
        .map(|(_, d)| d)
        .collect()
}

/// How far an ingest has got, passed to the callback of
/// [`FaissStore::add_with_progress`](crate::faiss::FaissStore::add_with_progress).
///
/// The callback is called after each embedded batch, once when saving starts and once at the
/// end; `chunks_done / chunks_total` is what a progress bar shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Documents handled so far (unchanged ones count as handled at once).
    pub documents_done: usize,
    pub documents_total: usize,
    /// Chunks embedded so far.
    pub chunks_done: usize,
    /// Chunks to embed (those of new and changed documents).
    pub chunks_total: usize,
}

/// The stage of an ingest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Chunks are being embedded.
    #[default]
    Embedding,
    /// The new index and rows are being written and committed.
    Saving,
    /// Committed (or nothing to write).
    Done,
}

/// A stored document with its chunks already embedded, as one store exports it and another
/// takes it without re-embedding (`ragway ingest --from-store`).
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddedDocument {
    pub id: String,
    pub title: Option<String>,
    pub uri: Option<String>,
    pub metadata: Map<String, Value>,
    /// The hash "unchanged" is judged by (see [`content_hash`]).
    pub content_hash: String,
    /// Each chunk's text and raw vector, in order.
    pub chunks: Vec<(String, Vec<f32>)>,
}
