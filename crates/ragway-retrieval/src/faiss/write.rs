//! Writing a FAISS store: opening an existing folder, preparing documents (hash, chunk),
//! adopting a foreign index, and the atomic commit, which edits, links or rebuilds the index
//! (compacting an HNSW index's deleted vectors; see the module docs of `faiss`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use ::faiss::index::IndexImpl;
use ragway_core::config::{IndexKind, Metric};
use ragway_core::{Document, IngestReport};
use rusqlite::TransactionBehavior;
use serde::Serialize;

use super::{
    AdoptReport, Change, INDEX_LINK, Inner, MANIFEST_FILE, Prepared, SearchIndex, Snapshot, db,
    index, lock, read_vectors,
};
use crate::error::{Error, Result};
use crate::ingest::{chunk_text, content_hash, last_of_each_id, read_jsonl};

/// The manifest written next to the index.
#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    format_version: u32,
    embedder: &'a str,
    dimension: usize,
    metric: &'static str,
    normalized: bool,
    index: &'static str,
    hnsw_m: Option<u32>,
    generation: u64,
    index_file: String,
    documents: usize,
    chunks: usize,
    /// Vectors the index file holds for deleted chunks (labels with no chunk row).
    deleted_vectors: usize,
}

/// What [`Inner::commit`] wrote.
pub(super) struct Committed {
    /// Documents of `Change::delete` that the store held.
    pub deleted_documents: usize,
}

/// How a commit makes the new generation's index file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Read the committed file and change it: add the new vectors, and remove the old ones
    /// (flat) or record their labels as deleted (HNSW, which cannot remove them).
    Edit,
    /// No vector changes (an HNSW delete): a hard link to the committed file.
    Link,
    /// Build it anew from every stored vector: the first write, a settings change, a lost
    /// file, or too many deleted vectors in an HNSW index (compaction).
    Rebuild,
}

impl Inner {
    /// Opens an existing store: checks its settings, loads the committed index, removes what
    /// an interrupted write left behind, and, when `reindex`, rebuilds the index if the config
    /// changed its settings (otherwise a change is an error).
    pub(super) fn load(&self, reindex: bool) -> Result<()> {
        let conn = if self.read_only {
            db::open_read(&self.db_path(), true)
        } else {
            db::open_write(&self.db_path())
        }
        .map_err(|e| self.sqlite(e))?;
        let meta = |key: &str| db::get_meta(&conn, key).map_err(|e| self.sqlite(e));
        if let Some(version) = meta("format_version")?
            && version.parse::<u32>().ok() != Some(db::FORMAT_VERSION)
        {
            return Err(Error::invalid(
                &self.dir,
                format!(
                    "store format {version} is not supported (expected {}); ingest the \
                     documents again into a new store path",
                    db::FORMAT_VERSION
                ),
            ));
        }
        if let Some(stored) = meta("dimension")?.and_then(|d| d.parse::<usize>().ok())
            && stored != self.dimension
        {
            return Err(Error::invalid(
                &self.dir,
                format!(
                    "the store holds {stored}-dimension vectors but embedder \"{}\" makes \
                     {}-dimension vectors; use the embedder the store was built with, or \
                     another store path",
                    self.embedder_name, self.dimension
                ),
            ));
        }
        if let Some(stored) = meta("embedder")?
            && stored != self.embedder_name
        {
            tracing::warn!(
                store = %self.name,
                "store was built with embedder \"{stored}\", now searched with \"{}\" of the \
                 same dimension",
                self.embedder_name
            );
        }
        // The version's generation, rows and deleted labels, read together.
        let (generation, chunks, deleted) = conn
            .unchecked_transaction()
            .and_then(|tx| {
                Ok((
                    db::generation(&tx)?,
                    db::counts(&tx)?.1,
                    db::deleted_labels(&tx)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let built = (
            meta("metric")?.unwrap_or_default(),
            meta("index")?.unwrap_or_default(),
            meta("hnsw_m")?.unwrap_or_default(),
        );
        let settings_changed = generation > 0
            && (built.0 != metric_name(self.settings.metric)
                || built.1 != index_name(self.settings.index)
                || (self.settings.index == IndexKind::Hnsw
                    && built.2.parse().ok() != Some(self.settings.hnsw_m)));
        if settings_changed && !reindex {
            let m = |index: &str, m: &str| {
                if index == "hnsw" {
                    format!(" (hnsw_m {m})")
                } else {
                    String::new()
                }
            };
            return Err(Error::invalid(
                &self.dir,
                format!(
                    "the store's index was built with metric {}, index {}{}, but the config \
                     says metric {}, index {}{}: configure the settings it was built with, or \
                     rebuild its index with the config's from the stored vectors: ragway \
                     ingest --store {} --reindex",
                    built.0,
                    built.1,
                    m(&built.1, &built.2),
                    metric_name(self.settings.metric),
                    index_name(self.settings.index),
                    m(
                        index_name(self.settings.index),
                        &self.settings.hnsw_m.to_string()
                    ),
                    self.name
                ),
            ));
        }
        if self.read_only {
            if settings_changed {
                return Err(Error::ReadOnly); // --reindex, where nothing can be rebuilt
            }
            return self.load_as_it_is(generation, chunks, deleted);
        }
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);

        // `--reindex` also compacts: the rebuilt index holds no deleted vectors.
        let compact = reindex && !deleted.is_empty();
        let deleted_vectors = deleted.len();
        let mut rebuild = settings_changed || compact;
        if generation > 0 && !rebuild {
            match self.load_index(generation, chunks, deleted_vectors) {
                Ok(index) => self.publish(Snapshot {
                    generation,
                    index: Some(Arc::new(index)),
                    deleted,
                }),
                Err(error) => {
                    tracing::warn!(
                        store = %self.name,
                        "index generation {generation} cannot be used ({error}); rebuilding it \
                         from the stored vectors"
                    );
                    rebuild = true;
                }
            }
        }
        if rebuild {
            if settings_changed {
                tracing::info!(
                    store = %self.name,
                    "index settings changed; rebuilding the index from the stored vectors"
                );
            } else if compact {
                tracing::info!(
                    store = %self.name,
                    "rebuilding the index without the {deleted_vectors} vectors of deleted chunks"
                );
            }
            self.commit(Change {
                rebuild: true,
                ..Change::default()
            })?;
        } else {
            // Under the lock, around the latest version: another process may have committed
            // one since `generation` was read, and its file must stay.
            let _lock = lock::acquire(&self.dir, &self.name)?;
            let latest = match self.writer()?.as_ref() {
                Some(conn) => db::generation(conn).map_err(|e| self.sqlite(e))?,
                None => generation,
            };
            self.tidy(latest);
        }
        Ok(())
    }

    /// Opens a store whose folder cannot be written: its committed index as it is, with no
    /// tidying and no rebuild.
    fn load_as_it_is(&self, generation: u64, chunks: usize, deleted: HashSet<i64>) -> Result<()> {
        let wal = self.db_path().with_extension("sqlite3-wal");
        if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            tracing::warn!(
                store = %self.name,
                "the read-only store has an unmerged write-ahead log ({}); what it holds is \
                 not seen: copy stores after the writer has closed them",
                wal.display()
            );
        }
        if generation > 0 {
            let index = self.load_index(generation, chunks, deleted.len())?;
            self.publish(Snapshot {
                generation,
                index: Some(Arc::new(index)),
                deleted,
            });
        }
        Ok(())
    }

    /// Loads the committed index file and checks it against the rows: one vector per chunk,
    /// plus the `deleted` ones it still holds.
    pub(super) fn load_index(
        &self,
        generation: u64,
        chunks: usize,
        deleted: usize,
    ) -> Result<SearchIndex> {
        let path = self.index_path(generation);
        let search = SearchIndex::open(&path, self.open_options())?;
        let info = search.info();
        if info.dimension != self.dimension {
            return Err(Error::Dimension {
                what: format!("index {}", path.display()),
                expected: self.dimension,
                found: info.dimension,
            });
        }
        // A file of another metric or kind than the store's (put there by hand, or by a
        // writer with another config) would answer with meaningless scores: refuse it.
        let kind = match self.settings.index {
            IndexKind::Flat => index::IndexType::Flat,
            IndexKind::Hnsw => index::IndexType::Hnsw,
        };
        if info.metric != self.settings.metric || info.index_type != kind {
            return Err(Error::invalid(
                &path,
                format!(
                    "holds a {:?} index of metric {}, but the store is a {} index of metric {}",
                    info.index_type,
                    metric_name(info.metric),
                    index_name(self.settings.index),
                    metric_name(self.settings.metric)
                ),
            ));
        }
        if info.ntotal != (chunks + deleted) as u64 {
            return Err(Error::invalid(
                &path,
                format!(
                    "holds {} vectors for {chunks} chunks and {deleted} deleted vectors",
                    info.ntotal
                ),
            ));
        }
        Ok(search)
    }

    /// Splits documents into those to write (chunked, hashed) and the number unchanged.
    pub(super) fn prepare(&self, documents: Vec<Document>) -> Result<(Vec<Prepared>, usize)> {
        let documents = last_of_each_id(documents);
        let existing = self.existing_hashes(&documents)?;
        let mut unchanged = 0;
        let mut prepared = Vec::new();
        for document in documents {
            let hash = content_hash(
                &document,
                Some((self.settings.chunk_size, self.settings.chunk_overlap)),
            );
            let replaces = match existing.get(&document.id) {
                Some((_, stored)) if *stored == hash => {
                    unchanged += 1;
                    continue;
                }
                Some(_) => true,
                None => false,
            };
            let chunks = chunk_text(
                &document.text,
                self.settings.chunk_size,
                self.settings.chunk_overlap,
            );
            prepared.push(Prepared {
                document,
                hash,
                replaces,
                chunks,
            });
        }
        Ok((prepared, unchanged))
    }

    pub(super) fn existing_hashes(
        &self,
        documents: &[Document],
    ) -> Result<HashMap<String, (i64, String)>> {
        let writer = self.writer()?;
        let Some(conn) = writer.as_ref() else {
            return Ok(HashMap::new());
        };
        let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
        db::document_hashes(conn, &ids).map_err(|e| self.sqlite(e))
    }

    /// Imports an index file and its documents (see [`FaissStore::adopt`]).
    pub(super) fn adopt(&self, index_file: &Path, documents: &Path) -> Result<AdoptReport> {
        let stored = read_vectors(index_file)?;
        if stored.info.dimension != self.dimension {
            return Err(Error::Dimension {
                what: format!(
                    "index {} against embedder \"{}\"",
                    index_file.display(),
                    self.embedder_name
                ),
                expected: self.dimension,
                found: stored.info.dimension,
            });
        }
        let file_id = documents
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lines = read_jsonl(documents, &file_id)?;
        if lines.len() != stored.labels.len() {
            return Err(Error::invalid(
                documents,
                format!(
                    "{} documents for the {} vectors of {}; the file needs one line per vector",
                    lines.len(),
                    stored.labels.len(),
                    index_file.display()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (n, line) in lines.iter().enumerate() {
            if !seen.insert(line.id.as_str()) {
                return Err(Error::Line {
                    path: documents.to_path_buf(),
                    line: n + 1,
                    message: format!("duplicate id \"{}\"", line.id),
                });
            }
        }
        let existing = self.existing_hashes(&lines)?;
        let mut report = IngestReport::default();
        let mut change = Change::default();
        let d = self.dimension;
        for (position, document) in lines.into_iter().enumerate() {
            let hash = content_hash(&document, None);
            let replaces = match existing.get(&document.id) {
                Some((_, stored)) if *stored == hash => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => true,
                None => false,
            };
            if replaces {
                report.replaced += 1;
            } else {
                report.added += 1;
            }
            let vector = stored.vectors[position * d..(position + 1) * d].to_vec();
            let chunks = if document.text.trim().is_empty() {
                Vec::new()
            } else {
                vec![document.text.clone()]
            };
            let vectors = if chunks.is_empty() {
                Vec::new()
            } else {
                vec![vector]
            };
            report.chunks += chunks.len();
            change.insert.push((
                Prepared {
                    document,
                    hash,
                    replaces,
                    chunks,
                },
                vectors,
            ));
        }
        if !change.insert.is_empty() {
            self.commit(change)?;
        }
        Ok(AdoptReport {
            ingest: report,
            source: stored.info,
        })
    }

    /// Writes one change atomically (see the module docs) and publishes the new snapshot.
    /// Returns what it committed, or `None` when there was nothing to change (the documents
    /// to delete are not there).
    pub(super) fn commit(&self, change: Change) -> Result<Option<Committed>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut writer = self.writer()?;
        if writer.is_none() && change.insert.is_empty() {
            return Ok(None); // nothing stored, nothing to delete
        }
        if writer.is_none() {
            fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        // Held until the folder is tidied, at the end of this function.
        let _lock = lock::acquire(&self.dir, &self.name)?;
        if writer.is_none() {
            *writer = Some(db::open_write(&self.db_path()).map_err(|e| self.sqlite(e))?);
            sync_dir(&self.dir)?;
        }
        let Some(conn) = writer.as_mut() else {
            return Err(Error::invalid(&self.dir, "no database connection"));
        };
        let sql = |e| Error::sqlite(self.db_path(), e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let old_generation = db::generation(&tx).map_err(sql)?;
        let mut removed = Vec::new();
        let mut deleted_documents = 0;
        let replaced = change.insert.iter().map(|(p, _)| &p.document.id);
        for (n, id) in change.delete.iter().chain(replaced).enumerate() {
            if let Some(key) = db::document_key(&tx, id).map_err(sql)? {
                removed.extend(db::delete_documents(&tx, &[key]).map_err(sql)?);
                deleted_documents += usize::from(n < change.delete.len());
            }
        }
        if change.insert.is_empty() && deleted_documents == 0 && !change.rebuild {
            return Ok(None);
        }
        let mut new_labels = Vec::new();
        let mut new_vectors = Vec::new();
        for (prepared, vectors) in &change.insert {
            let document = &prepared.document;
            let chunks: Vec<(&str, &[f32])> = prepared
                .chunks
                .iter()
                .map(String::as_str)
                .zip(vectors.iter().map(Vec::as_slice))
                .collect();
            let ids = db::insert_document(
                &tx,
                &db::NewDocument {
                    id: &document.id,
                    title: document.title.as_deref(),
                    uri: document.uri.as_deref(),
                    metadata: &document.metadata,
                    content_hash: &prepared.hash,
                },
                &chunks,
            )
            .map_err(sql)?;
            new_labels.extend(ids);
            for vector in vectors {
                new_vectors.extend(self.index_ready(vector));
            }
        }
        let generation = old_generation + 1;
        for (key, value) in [
            ("format_version", db::FORMAT_VERSION.to_string()),
            ("generation", generation.to_string()),
            ("dimension", self.dimension.to_string()),
            ("embedder", self.embedder_name.clone()),
            ("metric", metric_name(self.settings.metric).to_owned()),
            ("index", index_name(self.settings.index).to_owned()),
            ("hnsw_m", self.settings.hnsw_m.to_string()),
        ] {
            db::set_meta(&tx, key, &value).map_err(sql)?;
        }
        let (documents, chunks) = db::counts(&tx).map_err(sql)?;

        // The new index, built aside (see `Plan`).
        let old_path = self.index_path(old_generation);
        let mut deleted = db::deleted_labels(&tx).map_err(sql)?;
        let can_edit = !change.rebuild && old_generation > 0 && old_path.exists();
        let plan = match self.settings.index {
            _ if !can_edit => Plan::Rebuild,
            IndexKind::Flat if new_vectors.is_empty() && removed.is_empty() => Plan::Link,
            IndexKind::Flat => Plan::Edit,
            IndexKind::Hnsw => {
                let dead = deleted.len() + removed.len();
                let total = (chunks + dead) as f64;
                if dead as f64 > self.settings.hnsw_max_deleted_share * total {
                    tracing::info!(
                        store = %self.name,
                        "{dead} of the index's {total} vectors belong to deleted chunks; \
                         rebuilding it without them"
                    );
                    Plan::Rebuild
                } else if new_vectors.is_empty() {
                    Plan::Link
                } else {
                    Plan::Edit
                }
            }
        };
        if plan != Plan::Rebuild && self.settings.index == IndexKind::Hnsw {
            db::add_deleted_labels(&tx, &removed).map_err(sql)?;
            deleted.extend(&removed);
        }
        let built = match plan {
            Plan::Edit => {
                let mut built = index::read(&old_path)?;
                if self.settings.index == IndexKind::Flat {
                    index::remove(&mut built, &removed)?;
                }
                index::add(&mut built, &new_vectors, &new_labels)?;
                Some(built)
            }
            Plan::Link => None,
            Plan::Rebuild => {
                db::clear_deleted_labels(&tx).map_err(sql)?;
                deleted.clear();
                Some(self.rebuilt(&tx)?)
            }
        };
        let path = self.index_path(generation);
        // A file a crashed write left under the new name may be a hard link to the committed
        // one: writing through it would change the committed version. Unlink it first.
        let _ = fs::remove_file(&path);
        let search = match built {
            Some(built) => {
                if self.settings.index == IndexKind::Hnsw {
                    // Stored in the file, so Python searches it as ragway does.
                    index::set_ef_search(&built, self.settings.ef_search)?;
                }
                let vectors = ::faiss::Index::ntotal(&built);
                check_size(&old_path, vectors, chunks, deleted.len())?;
                let written = index::write(&built, &path).and_then(|()| {
                    fs::File::open(&path)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| Error::io(&path, e))
                });
                // Ready the searchable form before committing, so that searches see the new
                // rows and the new index within moments of each other.
                let info = index::store_info(
                    self.dimension,
                    vectors,
                    self.settings.metric,
                    self.settings.index,
                );
                written
                    .and_then(|()| SearchIndex::from_built(built, info, self.open_options()))
                    .map(Arc::new)
            }
            // No vector changes: the new generation's file is the old one under a new name.
            None => link_or_copy(&old_path, &path).and_then(|()| {
                // The loaded index, unless another process committed the old version.
                let current = self.snapshot();
                let index = match &current.index {
                    Some(index) if current.generation == old_generation => Arc::clone(index),
                    _ => Arc::new(SearchIndex::open(&path, self.open_options())?),
                };
                check_size(&old_path, index.len(), chunks, deleted.len())?;
                Ok(index)
            }),
        }
        .and_then(|search| {
            sync_dir(&self.dir)?;
            tx.commit().map_err(sql)?;
            Ok(search)
        });
        let search = match search {
            Ok(search) => search,
            Err(error) => {
                // The transaction rolled back when dropped; the new file is stale.
                let _ = fs::remove_file(&path);
                return Err(error);
            }
        };
        let deleted_vectors = deleted.len();
        self.publish(Snapshot {
            generation,
            index: Some(search),
            deleted,
        });
        drop(writer);
        self.write_manifest(generation, documents, chunks, deleted_vectors);
        self.tidy(generation);
        Ok(Some(Committed { deleted_documents }))
    }

    /// A new index of every stored vector, for a rebuild.
    fn rebuilt(&self, conn: &rusqlite::Connection) -> Result<IndexImpl> {
        let mut built = index::new_store_index(
            self.dimension,
            self.settings.metric,
            self.settings.index,
            self.settings.hnsw_m,
        )?;
        let (labels, raw) = db::all_vectors(conn).map_err(|e| self.sqlite(e))?;
        if raw.len() != labels.len() * self.dimension {
            return Err(Error::invalid(
                self.db_path(),
                "stored vectors do not match the store's dimension",
            ));
        }
        let vectors: Vec<f32> = raw
            .chunks_exact(self.dimension)
            .flat_map(|v| self.index_ready(v))
            .collect();
        index::add(&mut built, &vectors, &labels)?;
        Ok(built)
    }

    /// Best effort after a commit or on open: points `index.faiss` at the committed file and
    /// deletes files older or newer generations left (a crash mid-write leaves a new one).
    pub(super) fn tidy(&self, generation: u64) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale_index = name
                .strip_prefix("index-")
                .and_then(|rest| rest.strip_suffix(".faiss"))
                .and_then(|g| g.parse::<u64>().ok())
                .is_some_and(|g| g != generation);
            if (stale_index || name.ends_with(".tmp"))
                && let Err(error) = fs::remove_file(entry.path())
            {
                tracing::warn!(store = %self.name, "cannot remove {name}: {error}");
            }
        }
        if generation == 0 {
            return;
        }
        let link = self.dir.join(INDEX_LINK);
        let temporary = self.dir.join(format!("{INDEX_LINK}.tmp"));
        let linked = fs::hard_link(self.index_path(generation), &temporary)
            .and_then(|()| fs::rename(&temporary, &link));
        // rename() between two links of one file does nothing: drop the temporary either way.
        let _ = fs::remove_file(&temporary);
        if let Err(error) = linked {
            tracing::warn!(store = %self.name, "cannot link {INDEX_LINK}: {error}");
        }
    }

    pub(super) fn write_manifest(
        &self,
        generation: u64,
        documents: usize,
        chunks: usize,
        deleted_vectors: usize,
    ) {
        let manifest = Manifest {
            format: "ragway-faiss",
            format_version: db::FORMAT_VERSION,
            embedder: &self.embedder_name,
            dimension: self.dimension,
            metric: metric_name(self.settings.metric),
            normalized: self.settings.metric == Metric::InnerProduct,
            index: index_name(self.settings.index),
            hnsw_m: (self.settings.index == IndexKind::Hnsw).then_some(self.settings.hnsw_m),
            generation,
            index_file: format!("index-{generation}.faiss"),
            documents,
            chunks,
            deleted_vectors,
        };
        let path = self.dir.join(MANIFEST_FILE);
        let temporary = self.dir.join(format!("{MANIFEST_FILE}.tmp"));
        let written = serde_json::to_vec_pretty(&manifest)
            .map_err(std::io::Error::other)
            .and_then(|bytes| fs::write(&temporary, bytes))
            .and_then(|()| fs::File::open(&temporary)?.sync_all())
            .and_then(|()| fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::warn!(store = %self.name, "cannot write {MANIFEST_FILE}: {error}");
        }
    }
}

/// Checks that a new index holds one vector per chunk, plus the deleted ones.
fn check_size(old_path: &Path, vectors: u64, chunks: usize, deleted: usize) -> Result<()> {
    if vectors == (chunks + deleted) as u64 {
        return Ok(());
    }
    Err(Error::invalid(
        old_path,
        format!(
            "the new index would hold {vectors} vectors for {chunks} chunks and {deleted} \
             deleted vectors"
        ),
    ))
}

/// Gives `from` a second name (a copy where the file system has no hard links), made durable.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)
        .and_then(|_| fs::File::open(to)?.sync_all())
        .map_err(|e| Error::io(to, e))
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::InnerProduct => "inner_product",
        Metric::L2 => "l2",
    }
}

fn index_name(kind: IndexKind) -> &'static str {
    match kind {
        IndexKind::Flat => "flat",
        IndexKind::Hnsw => "hnsw",
    }
}

/// Makes a folder's entries (a new or renamed file) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
