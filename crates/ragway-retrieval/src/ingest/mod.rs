//! Ingestion: reading files and folders into documents, cutting documents into chunks, and the
//! progress a store reports while it embeds and saves them.

pub mod chunk;
pub mod read;
pub mod s3;

pub use chunk::chunk_text;
pub use read::{DocumentReader, EXTENSIONS, ReadReport, read_jsonl, read_paths};

use ragway_core::Document;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Identifies a document's stored form: its content and, for chunked documents, the chunking
/// settings `(chunk_size, chunk_overlap)` (a changed `chunk_size` re-chunks on the next
/// ingest). Adopted documents, stored whole, hash without them. Every writable store uses it,
/// so a document copied from one store to another with the same settings stays "unchanged".
///
/// A document with a [`version`](Document::version) hashes it in place of its text and title
/// (both read from the bytes the version names), so its hash is known before it is read.
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
    match &document.version {
        Some(version) => {
            field(b"version");
            field(version.as_bytes());
        }
        None => {
            field(document.text.as_bytes());
            field(document.title.as_deref().unwrap_or("\u{0}").as_bytes());
        }
    }
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

/// Calls of one batch to the embedder, the first included, while it fails in a way worth
/// trying again (throttled, unreachable, a 5xx).
const EMBED_ATTEMPTS: u32 = 5;
/// The wait before the second call, doubled for each next one, unless the embedder says how
/// long (`Retry-After`); at most [`MAX_EMBED_WAIT`].
const FIRST_EMBED_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
const MAX_EMBED_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Embeds the chunks of several documents (`chunks[i]` are document `ids[i]`'s) in batches of
/// `batch` that run across documents, up to `concurrency` batches at once (a remote embedder
/// serves several; the local one runs its own pool), in order; `done` hears how many chunks
/// each finished batch held. A batch the embedder refuses for a passing reason (throttling,
/// an outage) is tried again, after the wait the embedder asked for if it said; one that still
/// fails is named by the first document in it. One list of vectors per document comes back.
pub(crate) async fn embed_documents<F, Fut>(
    ids: &[&str],
    chunks: &[&[String]],
    batch: usize,
    concurrency: usize,
    embed: F,
    mut done: impl FnMut(usize),
) -> crate::error::Result<Vec<Vec<Vec<f32>>>>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<Vec<Vec<f32>>>>,
{
    use futures::StreamExt as _;
    // Every chunk with the index of its document.
    let all: Vec<(usize, &String)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(d, texts)| texts.iter().map(move |text| (d, text)))
        .collect();
    // Futures made up front (they do nothing until polled): a closure inside the stream would
    // not be general enough over the texts' lifetime for `async_trait`'s boxing.
    let calls: Vec<_> = all
        .chunks(batch.max(1))
        .map(|part| {
            let first = part.first().map_or(0, |(d, _)| *d);
            let texts: Vec<String> = part.iter().map(|(_, text)| (*text).clone()).collect();
            let count = texts.len();
            let embed = &embed;
            async move {
                let mut attempt = 1;
                loop {
                    match embed(texts.clone()).await {
                        Err(crate::error::Error::Embed(error))
                            if error.is_retryable() && attempt < EMBED_ATTEMPTS =>
                        {
                            let backoff = FIRST_EMBED_WAIT * 2u32.pow(attempt - 1);
                            let wait = error.retry_after().unwrap_or(backoff).min(MAX_EMBED_WAIT);
                            tracing::warn!(%error, attempt, wait_ms = wait.as_millis() as u64, "embedding a batch again");
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                        result => return (first, count, result),
                    }
                }
            }
        })
        .collect();
    let mut batches = futures::stream::iter(calls).buffered(concurrency.max(1));
    let mut vectors = Vec::with_capacity(all.len());
    while let Some((first, count, embedded)) = batches.next().await {
        let embedded = embedded.map_err(|error| match error {
            crate::error::Error::Embed(cause) => crate::error::Error::EmbedDocument {
                document: ids.get(first).copied().unwrap_or_default().to_owned(),
                cause,
            },
            other => other,
        })?;
        vectors.extend(embedded);
        done(count);
    }
    let mut vectors = vectors.into_iter();
    Ok(chunks
        .iter()
        .map(|texts| vectors.by_ref().take(texts.len()).collect())
        .collect())
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use ragway_core::ProviderError;

    use super::*;
    use crate::error::Error;

    #[tokio::test]
    async fn batches_run_across_documents_at_once_and_come_back_in_order() {
        let texts =
            |n: usize, doc: &str| -> Vec<String> { (0..n).map(|i| format!("{doc}-{i}")).collect() };
        let (a, b, c) = (texts(3, "a"), texts(1, "b"), texts(4, "c"));
        let calls = Mutex::new(Vec::new());
        let in_flight = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        let mut done = Vec::new();
        let vectors = embed_documents(
            &["a", "b", "c"],
            &[&a, &b, &c],
            3,
            2,
            |batch: Vec<String>| {
                calls.lock().unwrap().push(batch.clone());
                let (in_flight, most) = (&in_flight, &most);
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = in_flight.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    // The first batch is the slowest: the order must still hold.
                    let wait = if batch[0] == "a-0" { 30 } else { 5 };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    in_flight.fetch_sub(1, SeqCst);
                    Ok(batch.iter().map(|t| vec![t.len() as f32]).collect())
                }
            },
            |count| done.push(count),
        )
        .await
        .unwrap();
        // Batches of three across documents: [a0 a1 a2] [b0 c0 c1] [c2 c3].
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1], ["b-0", "c-0", "c-1"]);
        assert_eq!(done, [3, 3, 2]);
        assert_eq!(most.into_inner(), 2, "two batches at once");
        let lengths: Vec<usize> = vectors.iter().map(Vec::len).collect();
        assert_eq!(lengths, [3, 1, 4]);
        assert_eq!(vectors[2][3], vec![3.0]);
    }

    #[tokio::test]
    async fn a_failed_batch_names_its_first_document() {
        let (a, b) = (vec!["x".to_owned()], vec!["y".to_owned(), "z".to_owned()]);
        let error = embed_documents(
            &["first.md", "second.md"],
            &[&a, &b],
            1,
            1,
            |batch: Vec<String>| async move {
                if batch[0] == "y" {
                    Err(Error::Embed(ProviderError::upstream(
                        "embedder",
                        Some(400),
                        "input too long",
                    )))
                } else {
                    Ok(vec![vec![1.0]])
                }
            },
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, Error::EmbedDocument { document, .. } if document == "second.md"),
            "{error}"
        );
        assert!(error.to_string().contains("\"second.md\""), "{error}");
    }

    #[tokio::test]
    async fn a_throttled_batch_waits_as_told_and_is_tried_again() {
        let texts = vec!["x".to_owned()];
        let calls = std::sync::atomic::AtomicU32::new(0);
        let vectors = embed_documents(
            &["a"],
            &[&texts],
            8,
            1,
            |_batch: Vec<String>| {
                let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if call < 2 {
                        Err(Error::Embed(ProviderError::Throttled {
                            provider: "embedder".into(),
                            message: "slow down".into(),
                            retry_after: Some(Duration::from_millis(20)),
                        }))
                    } else {
                        Ok(vec![vec![1.0]])
                    }
                }
            },
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(vectors, vec![vec![vec![1.0]]]);
        assert_eq!(calls.into_inner(), 3);
    }
}
