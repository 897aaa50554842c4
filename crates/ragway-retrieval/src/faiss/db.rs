//! The SQLite side of a FAISS store: documents, their chunks (the chunk's row id is its FAISS
//! label), the chunks' raw vectors (apart, so that the rows searches read stay small and cached),
//! the labels of deleted chunks whose vectors the committed HNSW index still holds, the keyword
//! index (SQLite FTS5, BM25), and the store's settings, including the committed generation.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use ragway_core::Filter;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::{Map, Value};

/// Bumped when the schema changes incompatibly.
pub const FORMAT_VERSION: u32 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    key          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    title        TEXT,
    uri          TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,
    chunks       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    document INTEGER NOT NULL REFERENCES documents(key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document, position);
CREATE TABLE IF NOT EXISTS vectors (
    chunk  INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
-- Labels of deleted chunks whose vectors the committed index still holds (HNSW cannot remove
-- a vector); searches skip them. Added after format 2 came out: a store written before it
-- gets the table when next opened for writing, and reads as having none until then.
CREATE TABLE IF NOT EXISTS deleted_labels (
    label INTEGER PRIMARY KEY
);
-- The keyword index: each chunk's document title and text, stemmed (Porter), for BM25. Its
-- row id is the chunk's; it holds no copy of the text (contentless), only the index. Written
-- in the same transactions as the chunks, so it is always of the same version. Added after
-- format 2 came out: a store written before it is indexed when next opened for writing.
CREATE VIRTUAL TABLE IF NOT EXISTS keywords USING fts5(
    body, content = '', contentless_delete = 1, tokenize = 'porter unicode61 remove_diacritics 2'
);
";

/// The `meta` key saying every chunk is in the keyword index.
const KEYWORDS_READY: &str = "keywords";

/// Most distinct words of a query the keyword search looks for.
const MAX_QUERY_WORDS: usize = 64;

/// Opens (creating if needed) the database for writing: WAL, full fsync on commit.
pub fn open_write(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(SCHEMA)?;
    index_keywords(&conn)?;
    Ok(conn)
}

/// Puts every chunk into the keyword index once, in a store written before it existed (a new
/// store has none to put). One transaction: another writer waits, and sees it done.
fn index_keywords(conn: &Connection) -> rusqlite::Result<()> {
    if get_meta(conn, KEYWORDS_READY)?.is_some() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| {
        if get_meta(conn, KEYWORDS_READY)?.is_none() {
            conn.execute(
                "INSERT INTO keywords (rowid, body)
                 SELECT c.id, coalesce(d.title || char(10), '') || c.text
                 FROM chunks c JOIN documents d ON d.key = c.document",
                [],
            )?;
            set_meta(conn, KEYWORDS_READY, "1")?;
        }
        Ok(())
    })();
    match done {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Whether the store has a keyword index (one written before it existed and not opened for
/// writing since has none).
pub fn has_keywords(conn: &Connection) -> rusqlite::Result<bool> {
    let table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'keywords'",
        [],
        |r| r.get(0),
    )?;
    Ok(table && get_meta(conn, KEYWORDS_READY)?.is_some())
}

/// The best `limit` chunks for the words of `query` by BM25 (k1 1.2, b 0.75), best first,
/// with BM25's score (higher is better), among `allowed` when given. Only the query's words
/// (letters and digits) are searched, each as a quoted term, so nothing in a query is read as
/// search syntax.
pub fn keyword_search(
    conn: &Connection,
    query: &str,
    limit: usize,
    allowed: Option<&HashSet<i64>>,
) -> rusqlite::Result<Vec<(i64, f32)>> {
    let Some(expression) = match_expression(query) else {
        return Ok(Vec::new());
    };
    let mut statement = conn.prepare_cached(
        "SELECT rowid, -bm25(keywords) FROM keywords WHERE keywords MATCH ?1
         ORDER BY rank LIMIT ?2",
    )?;
    let mut depth = match allowed {
        Some(_) => limit.saturating_mul(4).max(64),
        None => limit,
    };
    loop {
        let hits: Vec<(i64, f32)> = statement
            .query_map(params![expression, depth as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)? as f32))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let exhausted = hits.len() < depth;
        let found: Vec<(i64, f32)> = match allowed {
            Some(allowed) => hits
                .into_iter()
                .filter(|(label, _)| allowed.contains(label))
                .take(limit)
                .collect(),
            None => hits,
        };
        if found.len() >= limit || exhausted {
            return Ok(found);
        }
        depth = depth.saturating_mul(4);
    }
}

/// An FTS5 query matching any of the words of `query` (`"w1" OR "w2" ...`); `None` when it has
/// no word.
fn match_expression(query: &str) -> Option<String> {
    let mut seen = HashSet::new();
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| seen.insert(w.clone()))
        .take(MAX_QUERY_WORDS)
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

/// Opens the database for reading only. In a folder that cannot be written (`immutable`),
/// SQLite is told the file never changes: it can then read a WAL database without creating
/// its shared-memory file beside it.
pub fn open_read(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    conn.busy_timeout(Duration::from_secs(30))?;
    // Searches read a few rows each: map the file rather than read() it page by page.
    conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
    Ok(conn)
}

/// `path` written for a `file:` URI: the characters a URI gives a meaning to, escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

pub fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The committed index generation; 0 before the first commit.
pub fn generation(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(get_meta(conn, "generation")?
        .and_then(|g| g.parse().ok())
        .unwrap_or(0))
}

/// Content hash and row key of each of `ids` that the store holds.
pub fn document_hashes(
    conn: &Connection,
    ids: &[&str],
) -> rusqlite::Result<HashMap<String, (i64, String)>> {
    let mut statement =
        conn.prepare_cached("SELECT key, content_hash FROM documents WHERE id = ?1")?;
    let mut found = HashMap::new();
    for id in ids {
        if let Some(row) = statement
            .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .optional()?
        {
            found.insert((*id).to_owned(), row);
        }
    }
    Ok(found)
}

/// Deletes documents (and their chunks) by row key; returns the chunk ids that went.
pub fn delete_documents(conn: &Connection, keys: &[i64]) -> rusqlite::Result<Vec<i64>> {
    let mut chunk_ids = Vec::new();
    let mut select = conn.prepare_cached("SELECT id FROM chunks WHERE document = ?1")?;
    let mut delete = conn.prepare_cached("DELETE FROM documents WHERE key = ?1")?;
    for key in keys {
        let ids = select.query_map([key], |r| r.get::<_, i64>(0))?;
        for id in ids {
            chunk_ids.push(id?);
        }
        conn.execute(
            "DELETE FROM vectors WHERE chunk IN (SELECT id FROM chunks WHERE document = ?1)",
            [key],
        )?;
        conn.execute(
            "DELETE FROM keywords WHERE rowid IN (SELECT id FROM chunks WHERE document = ?1)",
            [key],
        )?;
        conn.execute("DELETE FROM chunks WHERE document = ?1", [key])?;
        delete.execute([key])?;
    }
    Ok(chunk_ids)
}

/// A document row to insert.
pub struct NewDocument<'a> {
    pub id: &'a str,
    pub title: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub metadata: &'a Map<String, Value>,
    pub content_hash: &'a str,
}

/// Inserts a document and its chunks (text and raw vector); returns the new chunk ids in order.
pub fn insert_document(
    conn: &Connection,
    document: &NewDocument<'_>,
    chunks: &[(&str, &[f32])],
) -> rusqlite::Result<Vec<i64>> {
    let metadata = Value::Object(document.metadata.clone()).to_string();
    conn.prepare_cached(
        "INSERT INTO documents (id, title, uri, metadata, content_hash, chunks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        document.id,
        document.title,
        document.uri,
        metadata,
        document.content_hash,
        chunks.len() as i64,
    ])?;
    let key = conn.last_insert_rowid();
    let mut insert =
        conn.prepare_cached("INSERT INTO chunks (document, position, text) VALUES (?1, ?2, ?3)")?;
    let mut insert_vector =
        conn.prepare_cached("INSERT INTO vectors (chunk, vector) VALUES (?1, ?2)")?;
    let mut insert_keywords =
        conn.prepare_cached("INSERT INTO keywords (rowid, body) VALUES (?1, ?2)")?;
    let mut ids = Vec::with_capacity(chunks.len());
    for (position, (text, vector)) in chunks.iter().enumerate() {
        insert.execute(params![key, position as i64, text])?;
        let id = conn.last_insert_rowid();
        insert_vector.execute(params![id, vector_bytes(vector)])?;
        let body = match document.title {
            Some(title) => format!("{title}\n{text}"),
            None => (*text).to_owned(),
        };
        insert_keywords.execute(params![id, body])?;
        ids.push(id);
    }
    Ok(ids)
}

/// The row key of a document, if the store holds it.
pub fn document_key(conn: &Connection, id: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT key FROM documents WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
}

/// A document's stored fields and its number of chunks.
pub fn document(conn: &Connection, id: &str) -> rusqlite::Result<Option<super::StoredDocument>> {
    conn.query_row(
        "SELECT id, title, uri, metadata, chunks FROM documents WHERE id = ?1",
        [id],
        |r| {
            let metadata: String = r.get(3)?;
            Ok(super::StoredDocument {
                id: r.get(0)?,
                title: r.get(1)?,
                uri: r.get(2)?,
                metadata: match serde_json::from_str(&metadata) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                },
                chunks: usize::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            })
        },
    )
    .optional()
}

/// Up to `limit` documents after row key `after`, in key order, each with its chunks' texts
/// and raw vectors; and the last key read (for the next page).
pub fn export(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<crate::ingest::EmbeddedDocument>, Option<i64>)> {
    let mut documents = conn.prepare_cached(
        "SELECT key, id, title, uri, metadata, content_hash FROM documents
         WHERE key > ?1 ORDER BY key LIMIT ?2",
    )?;
    let mut chunks = conn.prepare_cached(
        "SELECT c.text, v.vector FROM chunks c JOIN vectors v ON v.chunk = c.id
         WHERE c.document = ?1 ORDER BY c.position",
    )?;
    let mut page = Vec::new();
    let mut last = None;
    let rows = documents.query_map(params![after, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (key, id, title, uri, metadata, content_hash) = row?;
        let texts = chunks
            .query_map([key], |r| {
                let vector = vector_from_bytes(r.get_ref(1)?.as_blob()?);
                Ok((r.get::<_, String>(0)?, vector))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        last = Some(key);
        page.push(crate::ingest::EmbeddedDocument {
            id,
            title,
            uri,
            metadata: match serde_json::from_str(&metadata) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            },
            content_hash,
            chunks: texts,
        });
    }
    Ok((page, last))
}

/// Every chunk's id and raw vector (back to back), in id order, for rebuilding an index.
pub fn all_vectors(conn: &Connection) -> rusqlite::Result<(Vec<i64>, Vec<f32>)> {
    let mut statement = conn.prepare("SELECT chunk, vector FROM vectors ORDER BY chunk")?;
    let mut rows = statement.query([])?;
    let mut ids = Vec::new();
    let mut vectors = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let blob = row.get_ref(1)?.as_blob()?;
        ids.push(id);
        vectors.extend(vector_from_bytes(blob));
    }
    Ok((ids, vectors))
}

/// The labels of deleted chunks that the committed index still holds (none in a store
/// written before the table existed, opened read-only).
pub fn deleted_labels(conn: &Connection) -> rusqlite::Result<HashSet<i64>> {
    if !has_deleted_labels_table(conn)? {
        return Ok(HashSet::new());
    }
    let mut statement = conn.prepare_cached("SELECT label FROM deleted_labels")?;
    let labels = statement.query_map([], |r| r.get::<_, i64>(0))?;
    labels.collect()
}

/// How many [`deleted_labels`] there are.
pub fn deleted_count(conn: &Connection) -> rusqlite::Result<usize> {
    if !has_deleted_labels_table(conn)? {
        return Ok(0);
    }
    let count: i64 = conn.query_row("SELECT count(*) FROM deleted_labels", [], |r| r.get(0))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

fn has_deleted_labels_table(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'deleted_labels'",
        [],
        |r| r.get(0),
    )
}

/// Records labels whose chunks went while their vectors stay in the index.
pub fn add_deleted_labels(conn: &Connection, labels: &[i64]) -> rusqlite::Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO deleted_labels (label) VALUES (?1)")?;
    for label in labels {
        insert.execute([label])?;
    }
    Ok(())
}

/// Forgets every deleted label: the index was rebuilt from the live vectors alone.
pub fn clear_deleted_labels(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM deleted_labels", [])?;
    Ok(())
}

/// Number of documents and of chunks.
pub fn counts(conn: &Connection) -> rusqlite::Result<(usize, usize)> {
    let documents: i64 = conn.query_row("SELECT count(*) FROM documents", [], |r| r.get(0))?;
    let chunks: i64 = conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
    Ok((
        usize::try_from(documents).unwrap_or(0),
        usize::try_from(chunks).unwrap_or(0),
    ))
}

/// A chunk with its document's fields, as search returns it.
pub struct ChunkRow {
    pub document_id: String,
    pub position: i64,
    pub text: String,
    pub title: Option<String>,
    pub uri: Option<String>,
    pub metadata: Map<String, Value>,
}

/// The rows of the given chunk ids (ids the store no longer holds are left out).
pub fn chunk_rows(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, ChunkRow>> {
    let mut rows = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(rows);
    }
    // One statement per result size, cached: `?, ?, ?, ?` for k = 4.
    let placeholders = vec!["?"; ids.len()].join(", ");
    let mut statement = conn.prepare_cached(&format!(
        "SELECT c.id, d.id, c.position, c.text, d.title, d.uri, d.metadata
         FROM chunks c JOIN documents d ON d.key = c.document
         WHERE c.id IN ({placeholders})"
    ))?;
    let mut found = statement.query(rusqlite::params_from_iter(ids))?;
    while let Some(r) = found.next()? {
        let metadata: String = r.get(6)?;
        rows.insert(
            r.get(0)?,
            ChunkRow {
                document_id: r.get(1)?,
                position: r.get(2)?,
                text: r.get(3)?,
                title: r.get(4)?,
                uri: r.get(5)?,
                metadata: match serde_json::from_str(&metadata) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                },
            },
        );
    }
    Ok(rows)
}

/// Ids of the chunks whose document metadata passes `filter`.
pub fn matching_chunks(conn: &Connection, filter: &Filter) -> rusqlite::Result<HashSet<i64>> {
    let mut documents = conn.prepare_cached("SELECT key, metadata FROM documents")?;
    let mut keys = Vec::new();
    let mut rows = documents.query([])?;
    while let Some(row) = rows.next()? {
        let metadata: String = row.get(1)?;
        let Ok(Value::Object(metadata)) = serde_json::from_str::<Value>(&metadata) else {
            continue;
        };
        if filter.matches(&metadata) {
            keys.push(row.get::<_, i64>(0)?);
        }
    }
    let mut chunks = conn.prepare_cached("SELECT id FROM chunks WHERE document = ?1")?;
    let mut ids = HashSet::new();
    for key in keys {
        for id in chunks.query_map([key], |r| r.get::<_, i64>(0))? {
            ids.insert(id?);
        }
    }
    Ok(ids)
}

/// Little-endian `f32`s.
pub fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn vector_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_chunks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        let mut conn = open_write(&path).unwrap();
        let tx = conn.transaction().unwrap();
        let mut metadata = Map::new();
        metadata.insert("lang".into(), "en".into());
        let ids = insert_document(
            &tx,
            &NewDocument {
                id: "a",
                title: Some("A"),
                uri: None,
                metadata: &metadata,
                content_hash: "h1",
            },
            &[("one", &[1.0, 2.0]), ("two", &[3.0, 4.0])],
        )
        .unwrap();
        let other = insert_document(
            &tx,
            &NewDocument {
                id: "b",
                title: None,
                uri: Some("b.txt"),
                metadata: &Map::new(),
                content_hash: "h2",
            },
            &[("three", &[5.0, 6.0])],
        )
        .unwrap();
        set_meta(&tx, "generation", "4").unwrap();
        tx.commit().unwrap();

        assert_eq!(generation(&conn).unwrap(), 4);
        assert_eq!(counts(&conn).unwrap(), (2, 3));
        let (all_ids, vectors) = all_vectors(&conn).unwrap();
        assert_eq!(all_ids.len(), 3);
        assert_eq!(vectors, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let rows = chunk_rows(&conn, &[ids[1], 999]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[&ids[1]].text, "two");
        assert_eq!(rows[&ids[1]].position, 1);
        assert_eq!(rows[&ids[1]].metadata["lang"], "en");

        let filter = Filter::equals([("lang".to_owned(), "en".into())]);
        assert_eq!(
            matching_chunks(&conn, &filter).unwrap(),
            ids.iter().copied().collect()
        );
        let hashes = document_hashes(&conn, &["a", "zzz"]).unwrap();
        assert_eq!(hashes.len(), 1);
        assert_eq!(hashes["a"].1, "h1");

        let key = document_key(&conn, "a").unwrap().unwrap();
        let gone = delete_documents(&conn, &[key]).unwrap();
        assert_eq!(gone, ids);
        assert_eq!(counts(&conn).unwrap(), (1, 1));
        // Ids are never reused.
        let again = insert_document(
            &conn,
            &NewDocument {
                id: "a",
                title: None,
                uri: None,
                metadata: &Map::new(),
                content_hash: "h3",
            },
            &[("x", &[0.0, 0.0])],
        )
        .unwrap();
        assert!(again[0] > other[0]);

        let reader = open_read(&path, false).unwrap();
        assert_eq!(counts(&reader).unwrap(), (2, 2));
    }

    #[test]
    fn deleted_labels_are_recorded_and_cleared_and_absent_before_the_table_existed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        let conn = open_write(&path).unwrap();
        assert!(deleted_labels(&conn).unwrap().is_empty());
        add_deleted_labels(&conn, &[7, 3, 7]).unwrap();
        assert_eq!(deleted_labels(&conn).unwrap(), HashSet::from([3, 7]));
        assert_eq!(deleted_count(&conn).unwrap(), 2);
        clear_deleted_labels(&conn).unwrap();
        assert!(deleted_labels(&conn).unwrap().is_empty());

        // A store written before the table existed, opened read-only (no schema run).
        conn.execute("DROP TABLE deleted_labels", []).unwrap();
        drop(conn);
        let reader = open_read(&path, true).unwrap();
        assert!(deleted_labels(&reader).unwrap().is_empty());
        assert_eq!(deleted_count(&reader).unwrap(), 0);
    }
}
