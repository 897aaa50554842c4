//! Test helpers: a deterministic hashing embedder (the same hashing as
//! `tests/python/hash_embedding.py`), FAISS store configs, documents and a Python runner.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use ragway_core::config::{FaissStoreConfig, IndexKind, Metric};
use ragway_core::{Document, Embedder, ProviderError};
use ragway_retrieval::faiss::FaissStore;

pub const DIMENSION: usize = 384;

/// Bag of words hashed into `dimension` buckets with a sign (FNV-1a, 64 bits): texts sharing
/// words get close vectors. Words are runs of ASCII letters and digits, lower-cased.
pub struct HashEmbedder {
    pub dimension: usize,
}

impl HashEmbedder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            dimension: DIMENSION,
        })
    }

    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0f32; self.dimension];
        for word in text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let hash = fnv1a(word.to_ascii_lowercase().as_bytes());
            let bucket = (hash % self.dimension as u64) as usize;
            let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
            vector[bucket] += sign;
        }
        vector
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

pub fn config(path: &Path, metric: Metric, index: IndexKind) -> FaissStoreConfig {
    FaissStoreConfig {
        name: "test".into(),
        path: path.to_path_buf(),
        embedder: "hash".into(),
        metric,
        index,
        hnsw_m: 16,
        ef_search: 64,
        hnsw_max_deleted_share: ragway_core::config::default_hnsw_max_deleted_share(),
        chunk_size: 200,
        chunk_overlap: 30,
        retrieval: Default::default(),
        hybrid: Default::default(),
        rerank: None,
    }
}

pub fn open(path: &Path, metric: Metric, index: IndexKind) -> FaissStore {
    FaissStore::open(&config(path, metric, index), HashEmbedder::new()).unwrap()
}

pub fn doc(id: &str, text: &str) -> Document {
    Document {
        id: id.into(),
        text: text.into(),
        title: Some(format!("Title of {id}")),
        uri: Some(format!("file:///{id}")),
        metadata: serde_json::Map::new(),
        version: None,
    }
}

/// Words that make each numbered document distinct.
pub fn topic_text(n: usize, words: usize) -> String {
    (0..words)
        .map(|w| format!("topic{n} word{} common", (n * 31 + w) % 97))
        .collect::<Vec<_>>()
        .join(" ")
        + "."
}

/// `tests/python/<name>`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Runs a Python script with arguments; panics with its output when it fails.
pub fn python(name: &str, args: &[&Path]) -> String {
    let output = Command::new("python3")
        .arg(script(name))
        .args(args)
        .output()
        .expect("python3 must be installed (scripts/install-deps.sh)");
    assert!(
        output.status.success(),
        "{name} failed (did scripts/install-deps.sh install tests/requirements.txt?):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Little-endian f32 file, as numpy's `tofile` writes and `fromfile` reads.
pub fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
