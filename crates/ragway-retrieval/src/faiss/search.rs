//! Reading a FAISS store: searches (plain, or skipping deleted vectors and those a metadata
//! filter leaves out), the pool of read-only SQLite connections, and picking up versions
//! another process committed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ragway_core::config::Metric;
use ragway_core::{Filter, Passage};
use rusqlite::Connection;

use super::{
    Hit, Inner, LOCAL_WAIT_ATTEMPTS, MAX_IDLE_READERS, SYNC_ATTEMPTS, SearchIndex, Snapshot,
    StoreCheck, db,
};
use crate::error::{Error, Result};

impl Inner {
    pub(super) fn check(&self) -> Result<StoreCheck> {
        let snapshot = self.snapshot();
        let index_vectors = snapshot.index.as_ref().map_or(0, |index| index.len());
        if !self.db_path().exists() {
            return Ok(StoreCheck {
                index_vectors,
                ..StoreCheck::default()
            });
        }
        let mut reader = self.reader()?;
        let conn = reader.connection()?;
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let generation = db::generation(&tx).map_err(|e| self.sqlite(e))?;
        let (documents, chunks) = db::counts(&tx).map_err(|e| self.sqlite(e))?;
        let deleted_vectors = db::deleted_count(&tx).map_err(|e| self.sqlite(e))?;
        Ok(StoreCheck {
            generation,
            index_vectors,
            chunks,
            deleted_vectors,
            documents,
        })
    }

    pub(super) fn reader(&self) -> Result<Reader<'_>> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => db::open_read(&self.db_path(), self.read_only).map_err(|e| self.sqlite(e))?,
        };
        Ok(Reader {
            pool: &self.readers,
            conn: Some(conn),
        })
    }

    pub(super) fn search_blocking(
        &self,
        query: Vec<f32>,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        if query.len() != self.dimension {
            return Err(Error::Dimension {
                what: "query vector".into(),
                expected: self.dimension,
                found: query.len(),
            });
        }
        let query = self.index_ready(&query);
        if self.snapshot().index.is_none() && !self.db_path().exists() {
            return Ok(Vec::new());
        }
        let mut reader = self.reader()?;
        let conn = reader.connection()?;
        // A search reads the rows of the version its index snapshot holds. This process's
        // writer commits SQLite and then swaps the snapshot at once, so a mismatch clears by
        // looking again; one that lasts means another process committed, and its index is loaded.
        for attempt in 0..=SYNC_ATTEMPTS {
            let snapshot = self.snapshot();
            let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
            let generation = db::generation(&tx).map_err(|e| self.sqlite(e))?;
            if generation != snapshot.generation && attempt < SYNC_ATTEMPTS {
                if generation > snapshot.generation && attempt >= LOCAL_WAIT_ATTEMPTS {
                    let (_, chunks) = db::counts(&tx).map_err(|e| self.sqlite(e))?;
                    let deleted = db::deleted_labels(&tx).map_err(|e| self.sqlite(e))?;
                    drop(tx);
                    self.refresh(generation, chunks, deleted);
                } else if generation > snapshot.generation && attempt >= 10 {
                    drop(tx);
                    std::thread::sleep(Duration::from_millis(1));
                } else {
                    drop(tx);
                    std::thread::yield_now();
                }
                continue;
            }
            let Some(index) = snapshot.index.as_ref() else {
                return Ok(Vec::new());
            };
            let deleted = &snapshot.deleted;
            let hits = if filter.is_empty() && deleted.is_empty() {
                index.search(&query, top_k)?
            } else if filter.is_empty() {
                filtered_search(index, &query, top_k, |label| !deleted.contains(&label))?
            } else {
                // Deleted labels have no chunk rows, so no filter matches them.
                let allowed = db::matching_chunks(&tx, filter).map_err(|e| self.sqlite(e))?;
                if allowed.is_empty() {
                    return Ok(Vec::new());
                }
                filtered_search(index, &query, top_k, |label| allowed.contains(&label))?
            };
            let labels: Vec<i64> = hits.iter().map(|h| h.label).collect();
            let mut rows = db::chunk_rows(&tx, &labels).map_err(|e| self.sqlite(e))?;
            return Ok(hits
                .into_iter()
                .filter_map(|hit| {
                    let row = rows.remove(&hit.label)?;
                    Some(Passage {
                        id: format!("{}#{}", row.document_id, row.position),
                        text: row.text,
                        score: self.score(hit.distance),
                        title: row.title,
                        uri: row.uri,
                        metadata: row.metadata,
                    })
                })
                .collect());
        }
        Ok(Vec::new())
    }

    /// The `top_k` best chunks for the words of `query` by BM25 (the keyword index), among
    /// those whose document metadata matches `filter`. Scores are BM25's (higher is better).
    pub(super) fn keyword_search_blocking(
        &self,
        query: &str,
        top_k: usize,
        filter: &Filter,
    ) -> Result<Vec<Passage>> {
        if !self.db_path().exists() {
            return Ok(Vec::new());
        }
        let mut reader = self.reader()?;
        let conn = reader.connection()?;
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        if !db::has_keywords(&tx).map_err(|e| self.sqlite(e))? {
            return Err(Error::Rejected {
                message: format!(
                    "store \"{}\" has no keyword index yet (it was written by an older \
                     ragway and opened read-only since): open it for writing once, e.g. \
                     ragway ingest --store {} --reindex",
                    self.name, self.name
                ),
            });
        }
        let allowed = if filter.is_empty() {
            None
        } else {
            Some(db::matching_chunks(&tx, filter).map_err(|e| self.sqlite(e))?)
        };
        if allowed.as_ref().is_some_and(HashSet::is_empty) {
            return Ok(Vec::new());
        }
        let hits =
            db::keyword_search(&tx, query, top_k, allowed.as_ref()).map_err(|e| self.sqlite(e))?;
        let labels: Vec<i64> = hits.iter().map(|(label, _)| *label).collect();
        let mut rows = db::chunk_rows(&tx, &labels).map_err(|e| self.sqlite(e))?;
        Ok(hits
            .into_iter()
            .filter_map(|(label, score)| {
                let row = rows.remove(&label)?;
                Some(Passage {
                    id: format!("{}#{}", row.document_id, row.position),
                    text: row.text,
                    score,
                    title: row.title,
                    uri: row.uri,
                    metadata: row.metadata,
                })
            })
            .collect())
    }

    /// Loads a version that another process committed, unless it is already loaded.
    pub(super) fn refresh(&self, generation: u64, chunks: usize, deleted: HashSet<i64>) {
        let _one_at_a_time = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.snapshot().generation >= generation {
            return;
        }
        match self.load_index(generation, chunks, deleted.len()) {
            Ok(index) => {
                tracing::info!(store = %self.name, "loaded index generation {generation} written by another process");
                self.publish(Snapshot {
                    generation,
                    index: Some(Arc::new(index)),
                    deleted,
                });
            }
            // A newer commit may already have replaced that file; the next search sees it.
            Err(error) => {
                tracing::debug!(store = %self.name, "cannot load generation {generation}: {error}")
            }
        }
    }

    pub(super) fn score(&self, distance: f32) -> f32 {
        match self.settings.metric {
            Metric::InnerProduct => distance,
            Metric::L2 => 1.0 / (1.0 + distance.max(0.0)),
        }
    }
}

/// A pooled read-only connection, returned to the pool when dropped.
pub(super) struct Reader<'a> {
    pool: &'a Mutex<Vec<Connection>>,
    conn: Option<Connection>,
}

impl Reader<'_> {
    pub(super) fn connection(&mut self) -> Result<&mut Connection> {
        self.conn.as_mut().ok_or_else(|| Error::Task {
            message: "reader connection already returned".into(),
        })
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

/// Searches ever deeper until `top_k` hits that `keep` accepts are found or the index is
/// exhausted: what skips deleted vectors and applies metadata filters. (FAISS's own id
/// selectors would leak through the faiss crate's API, and its C API cannot pass them to an
/// HNSW search.)
fn filtered_search(
    index: &SearchIndex,
    query: &[f32],
    top_k: usize,
    keep: impl Fn(i64) -> bool,
) -> Result<Vec<Hit>> {
    let total = usize::try_from(index.len()).unwrap_or(usize::MAX);
    let mut depth = (top_k * 4).max(32);
    loop {
        let hits = index.search(query, depth)?;
        let found: Vec<Hit> = hits
            .into_iter()
            .filter(|h| keep(h.label))
            .take(top_k)
            .collect();
        if found.len() >= top_k || depth >= total {
            return Ok(found);
        }
        depth = depth.saturating_mul(4).min(total);
    }
}
