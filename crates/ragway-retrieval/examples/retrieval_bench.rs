//! Search latency and throughput of a FAISS or pgvector store through ragway, for
//! `bench/retrieval.sh` and `bench/pgvector.sh`.
//!
//! Builds a store of `--n` unit vectors (`--dim` floats; FAISS flat or HNSW, or pgvector's
//! HNSW) with an embedder that looks vectors up by name, so embedding costs nothing and the
//! figures are the store plus ragway's own work (FAISS: blocking pool, SQLite rows, passages;
//! pgvector: the pooled connection, the SQL round trip, rows into passages). Ingest is timed
//! (chunks/s with that zero-cost embedder: the store's own cost of chunking, writing and
//! indexing). It then times `--queries` searches of `k` neighbours through `Retriever::search`
//! one at a time (latency) and with `--concurrency` tasks at once (throughput), and for FAISS
//! the index alone through ragway's wrapper; and writes the queries next to the store so the
//! scripts can send the same vectors to Python's FAISS or to Postgres directly.
//!
//! The vectors are clustered like real embeddings (`--clusters` centres, each vector a centre
//! plus noise, cosine about 0.9 to its centre); uniformly random vectors in hundreds of
//! dimensions have no near neighbours worth the name, which no approximate index handles well.
//! `--clusters 0` gives uniform vectors.
//!
//! pgvector: the store is named `bench` (schema `ragway_bench`), metric inner product, and
//! reads its DSN from the variable `--dsn-env` names (`postgres://…`); an existing store of
//! `--n` chunks is reused rather than filled again.
//!
//! usage: retrieval_bench --dir DIR [--n 100000] [--dim 384] [--queries 2000] [--k 4]
//!        [--store faiss|pgvector] [--index flat|hnsw] [--concurrency 2] [--clusters 1000]
//!        [--hnsw-m 32 (FAISS) / 16 (pgvector)] [--ef-construction 64] [--ef-search 64]
//!        [--dsn-env RAGWAY_BENCH_PG_DSN]

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ragway_core::config::{FaissStoreConfig, IndexKind, Metric, PgMetric, PgvectorStoreConfig};
use ragway_core::{Document, Filter, ProviderError, Retriever, SecretRef};
use ragway_retrieval::faiss::{FaissStore, OpenOptions, SearchIndex};
use ragway_retrieval::pgvector::PgvectorStore;

mod bench_support;
use bench_support::{Flags, LookupEmbedder, clustered_vectors, summary};

#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Faiss,
    Pgvector,
}

struct Args {
    dir: PathBuf,
    n: usize,
    dim: usize,
    queries: usize,
    k: usize,
    store: StoreKind,
    index: IndexKind,
    concurrency: usize,
    clusters: usize,
    hnsw_m: Option<u32>,
    ef_construction: u32,
    ef_search: u32,
    dsn_env: String,
}

fn args() -> Result<Args, String> {
    let map = Flags::parse()?;
    let number = |key: &str, default: usize| map.number(key, default);
    let small = |key: &str, default: u32| -> Result<u32, String> {
        u32::try_from(number(key, default as usize)?).map_err(|_| format!("--{key}: too large"))
    };
    Ok(Args {
        dir: map
            .get("dir")
            .map(PathBuf::from)
            .ok_or("--dir is required")?,
        n: number("n", 100_000)?,
        dim: number("dim", 384)?,
        queries: number("queries", 2000)?,
        k: number("k", 4)?,
        store: match map.get("store").map(String::as_str) {
            None | Some("faiss") => StoreKind::Faiss,
            Some("pgvector") => StoreKind::Pgvector,
            Some(other) => return Err(format!("--store {other}: expected faiss or pgvector")),
        },
        index: match map.get("index").map(String::as_str) {
            None | Some("flat") => IndexKind::Flat,
            Some("hnsw") => IndexKind::Hnsw,
            Some(other) => return Err(format!("--index {other}: expected flat or hnsw")),
        },
        concurrency: number("concurrency", 2)?,
        clusters: number("clusters", 1000)?,
        hnsw_m: map
            .get("hnsw-m")
            .is_some()
            .then(|| small("hnsw-m", 0))
            .transpose()?,
        ef_construction: small("ef-construction", 64)?,
        ef_search: small("ef-search", 64)?,
        dsn_env: map
            .get("dsn-env")
            .cloned()
            .unwrap_or_else(|| "RAGWAY_BENCH_PG_DSN".into()),
    })
}

/// The store under test: what the benchmark needs of each beyond `Retriever`.
#[derive(Clone)]
enum Store {
    Faiss(FaissStore),
    Pgvector(PgvectorStore),
}

impl Store {
    async fn open(args: &Args, embedder: Arc<LookupEmbedder>) -> Result<Self, Box<dyn Error>> {
        Ok(match args.store {
            StoreKind::Faiss => Self::Faiss(FaissStore::open(
                &FaissStoreConfig {
                    name: "bench".into(),
                    path: args.dir.join("store"),
                    embedder: "lookup".into(),
                    metric: Metric::InnerProduct,
                    index: args.index,
                    hnsw_m: args.hnsw_m.unwrap_or(32),
                    ef_search: args.ef_search,
                    hnsw_max_deleted_share: ragway_core::config::default_hnsw_max_deleted_share(),
                    chunk_size: 1000,
                    chunk_overlap: 0,
                    retrieval: Default::default(),
                    hybrid: Default::default(),
                    rerank: None,
                },
                embedder,
            )?),
            StoreKind::Pgvector => Self::Pgvector(
                PgvectorStore::open(
                    &PgvectorStoreConfig {
                        name: "bench".into(),
                        dsn: SecretRef::parse(&format!("env::{}", args.dsn_env))?,
                        embedder: "lookup".into(),
                        schema: None,
                        ssl_root_cert: None,
                        metric: PgMetric::InnerProduct,
                        hnsw_m: args.hnsw_m.unwrap_or(16),
                        ef_construction: args.ef_construction,
                        ef_search: args.ef_search,
                        chunk_size: 1000,
                        chunk_overlap: 0,
                        pool_size: 10,
                        connect_timeout_secs: 3.0,
                        // Filling an indexed table in one transaction takes minutes.
                        statement_timeout_secs: 3600.0,
                        retrieval: Default::default(),
                        hybrid: Default::default(),
                        rerank: None,
                    },
                    embedder,
                )
                .await?,
            ),
        })
    }

    async fn chunks(&self) -> Result<usize, Box<dyn Error>> {
        Ok(match self {
            Self::Faiss(store) => store.check()?.chunks,
            Self::Pgvector(store) => store.stats().await?.chunks,
        })
    }

    async fn add(&self, documents: Vec<Document>) -> Result<usize, Box<dyn Error>> {
        Ok(match self {
            Self::Faiss(store) => store.add_with_progress(documents, |_| {}).await?.chunks,
            Self::Pgvector(store) => store.add_with_progress(documents, |_| {}).await?.chunks,
        })
    }

    fn retriever(&self) -> Arc<dyn Retriever> {
        match self {
            Self::Faiss(store) => Arc::new(store.clone()),
            Self::Pgvector(store) => Arc::new(store.clone()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let base = Arc::new(clustered_vectors(args.n, args.dim, args.clusters, 42));
    let queries = Arc::new(clustered_vectors(args.queries, args.dim, args.clusters, 7));
    std::fs::create_dir_all(&args.dir)?;
    let queries_file = args.dir.join("queries.f32");
    let embedder = Arc::new(LookupEmbedder {
        dim: args.dim,
        base,
        queries: queries.clone(),
    });
    let store = Store::open(&args, embedder).await?;
    if store.chunks().await? != args.n {
        let started = Instant::now();
        let documents = (0..args.n)
            .map(|i| Document {
                id: format!("doc-{i}"),
                text: format!("v{i}"),
                title: None,
                uri: None,
                metadata: serde_json::Map::new(),
                version: None,
            })
            .collect();
        let chunks = store.add(documents).await?;
        let seconds = started.elapsed().as_secs_f64();
        let what = match args.store {
            StoreKind::Faiss => format!("FAISS {:?}", args.index),
            StoreKind::Pgvector => "pgvector HNSW".into(),
        };
        println!(
            "ingested {chunks} vectors of {} dims into {what} in {seconds:.1} s: {:.0} chunks/s",
            args.dim,
            chunks as f64 / seconds
        );
    }
    let bytes: Vec<u8> = queries.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&queries_file, bytes)?;
    let filter = Filter::new();
    let retriever = store.retriever();

    // Warm up (page cache, pools).
    for j in 0..args.queries.min(50) {
        retriever.search(&format!("q{j}"), args.k, &filter).await?;
    }

    let index_file = match &store {
        Store::Faiss(store) => Some(store.index_file().ok_or("no index written")?),
        Store::Pgvector(_) => None,
    };
    if let Some(index_file) = &index_file {
        let index = SearchIndex::open(
            index_file,
            OpenOptions {
                ef_search: Some(args.ef_search),
            },
        )?;
        let mut times = Vec::with_capacity(args.queries);
        let wall = Instant::now();
        for j in 0..args.queries {
            let started = Instant::now();
            index.search(&queries[j * args.dim..(j + 1) * args.dim], args.k)?;
            times.push(started.elapsed());
        }
        summary("ragway FAISS index, 1 thread", times, wall.elapsed());
    }

    let mut times = Vec::with_capacity(args.queries);
    let wall = Instant::now();
    for j in 0..args.queries {
        let started = Instant::now();
        let passages = retriever.search(&format!("q{j}"), args.k, &filter).await?;
        times.push(started.elapsed());
        assert_eq!(passages.len(), args.k.min(args.n));
    }
    summary("ragway store search, 1 at a time", times, wall.elapsed());

    let wall = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let retriever = retriever.clone();
        let (k, queries, concurrency) = (args.k, args.queries, args.concurrency);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for j in (t..queries).step_by(concurrency) {
                let started = Instant::now();
                retriever
                    .search(&format!("q{j}"), k, &Filter::new())
                    .await?;
                times.push(started.elapsed());
            }
            Ok::<_, ProviderError>(times)
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await??);
    }
    summary(
        &format!("ragway store search, {} at once", args.concurrency),
        times,
        wall.elapsed(),
    );
    if let Some(index_file) = index_file {
        println!("index file: {}", index_file.display());
    }
    Ok(())
}
