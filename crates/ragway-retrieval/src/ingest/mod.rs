//! Ingestion: reading files and folders into documents, cutting documents into chunks, and the
//! progress a store reports while it embeds and saves them.

pub mod chunk;
pub mod read;

pub use chunk::chunk_text;
pub use read::{EXTENSIONS, ReadReport, read_jsonl, read_paths};

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
