//! Deletes from an HNSW FAISS store, for `bench/hnsw_deletes.sh`.
//!
//! Fills a new store with `--n` one-chunk documents (clustered unit vectors of `--dim` floats,
//! looked up by name so embedding costs nothing; HNSW m 32, efSearch 64, inner product), then
//! prints:
//! - the time to delete one document and to replace one, before (a store configured with
//!   `hnsw_max_deleted_share = 0`, which rebuilds the index at every delete as every store did
//!   before deleted vectors were kept) and after (the default: the vectors stay, skipped by
//!   searches), medians of `--repeat` writes for the latter;
//! - search latency through `Retriever::search` (`--queries` queries of `--k`, one at a time)
//!   and recall@k against exact search over the live vectors, with 0 %, 10 % and 20 % of the
//!   index's vectors deleted;
//! - the commit that crosses 20 % and compacts (rebuilds) the index.
//!
//! It writes the base vectors to `DIR/base.f32` for the Python anchor.
//!
//! usage: hnsw_deletes_bench --dir DIR [--n 100000] [--dim 384] [--queries 500] [--k 10]
//!        [--repeat 5]

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faiss::{Index, MetricType};
use ragway_core::config::{FaissStoreConfig, IndexKind, Metric, default_hnsw_max_deleted_share};
use ragway_core::{Document, Filter, Retriever};
use ragway_retrieval::faiss::FaissStore;

mod bench_support;
use bench_support::{Flags, LookupEmbedder, clustered_vectors, summary};

struct Args {
    dir: PathBuf,
    n: usize,
    dim: usize,
    queries: usize,
    k: usize,
    repeat: usize,
}

fn args() -> Result<Args, String> {
    let map = Flags::parse()?;
    let number = |key: &str, default: usize| map.number(key, default);
    Ok(Args {
        dir: map
            .get("dir")
            .map(PathBuf::from)
            .ok_or("--dir is required")?,
        n: number("n", 100_000)?,
        dim: number("dim", 384)?,
        queries: number("queries", 500)?,
        k: number("k", 10)?,
        repeat: number("repeat", 5)?,
    })
}

/// Where a live document's vector comes from: `v<i>` (base) or `q<i>` (a query-table vector,
/// used as new content when a document is replaced).
#[derive(Clone, Copy)]
enum Content {
    Base(usize),
    Extra(usize),
}

impl Content {
    fn text(self) -> String {
        match self {
            Self::Base(i) => format!("v{i}"),
            Self::Extra(i) => format!("q{i}"),
        }
    }
}

struct Bench {
    args: Args,
    embedder: Arc<LookupEmbedder>,
    /// Live documents by number (`doc-<n>`), with their content.
    live: BTreeMap<usize, Content>,
    /// Next unused vector of the query table for replacements.
    next_extra: usize,
}

fn document(n: usize, content: Content) -> Document {
    Document {
        id: format!("doc-{n}"),
        text: content.text(),
        title: None,
        uri: None,
        metadata: serde_json::Map::new(),
        version: None,
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn median(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

impl Bench {
    fn open(&self, share: f64) -> Result<FaissStore, Box<dyn Error>> {
        Ok(FaissStore::open(
            &FaissStoreConfig {
                name: "bench".into(),
                path: self.args.dir.join("store"),
                embedder: "lookup".into(),
                metric: Metric::InnerProduct,
                index: IndexKind::Hnsw,
                hnsw_m: 32,
                ef_search: 64,
                hnsw_max_deleted_share: share,
                chunk_size: 1000,
                chunk_overlap: 0,
                retrieval: Default::default(),
                hybrid: Default::default(),
                rerank: None,
            },
            self.embedder.clone(),
        )?)
    }

    fn vector(&self, content: Content) -> &[f32] {
        let d = self.args.dim;
        match content {
            Content::Base(i) => &self.embedder.base[i * d..(i + 1) * d],
            Content::Extra(i) => &self.embedder.queries[i * d..(i + 1) * d],
        }
    }

    /// A document still stored, picked evenly through the store.
    fn pick(&self, nth: usize) -> usize {
        let step = self.args.n / (self.args.repeat * 4 + 1);
        let mut n = (nth * step + 1) % self.args.n;
        while !self.live.contains_key(&n) {
            n = (n + 1) % self.args.n;
        }
        n
    }

    /// Times deleting one document.
    async fn delete_one(
        &mut self,
        store: &FaissStore,
        nth: usize,
    ) -> Result<Duration, Box<dyn Error>> {
        let n = self.pick(nth);
        let started = Instant::now();
        assert!(store.delete(&format!("doc-{n}")).await?);
        let took = started.elapsed();
        self.live.remove(&n);
        Ok(took)
    }

    /// Times replacing one document with new content (one new chunk).
    async fn replace_one(
        &mut self,
        store: &FaissStore,
        nth: usize,
    ) -> Result<Duration, Box<dyn Error>> {
        let n = self.pick(nth + self.args.repeat * 2);
        let content = Content::Extra(self.next_extra);
        self.next_extra += 1;
        let started = Instant::now();
        let report = store
            .add_with_progress(vec![document(n, content)], |_| {})
            .await?;
        let took = started.elapsed();
        assert_eq!(report.replaced, 1);
        self.live.insert(n, content);
        Ok(took)
    }

    /// Search latency and recall@k against exact search over the live vectors.
    async fn searches(&self, store: &FaissStore, label: &str) -> Result<(), Box<dyn Error>> {
        let (d, k) = (self.args.dim, self.args.k);
        let mut exact = faiss::index_factory(d as u32, "Flat", MetricType::InnerProduct)?;
        let numbers: Vec<usize> = self.live.keys().copied().collect();
        let vectors: Vec<f32> = self
            .live
            .values()
            .flat_map(|c| self.vector(*c).iter().copied())
            .collect();
        exact.add(&vectors)?;
        let queries = &self.embedder.queries[..self.args.queries * d];
        let truth = exact.search(queries, k)?;

        let retriever: Arc<dyn Retriever> = Arc::new(store.clone());
        for j in 0..self.args.queries.min(50) {
            retriever
                .search(&format!("q{j}"), k, &Filter::new())
                .await?;
        }
        let mut times = Vec::with_capacity(self.args.queries);
        let mut found = 0;
        let wall = Instant::now();
        for j in 0..self.args.queries {
            let started = Instant::now();
            let passages = retriever
                .search(&format!("q{j}"), k, &Filter::new())
                .await?;
            times.push(started.elapsed());
            assert_eq!(passages.len(), k, "top_k live hits");
            let got: HashSet<&str> = passages
                .iter()
                .map(|p| p.id.trim_end_matches("#0"))
                .collect();
            for label in &truth.labels[j * k..(j + 1) * k] {
                let position = label.get().ok_or("exact search found too few")? as usize;
                if got.contains(format!("doc-{}", numbers[position]).as_str()) {
                    found += 1;
                }
            }
        }
        let check = store.check()?;
        summary(label, times, wall.elapsed());
        println!(
            "{:<34} recall@{k} {:.3} vs exact over the {} live vectors; index holds {} \
             ({:.1} % deleted)",
            "",
            found as f64 / (self.args.queries * k) as f64,
            check.chunks,
            check.index_vectors,
            check.deleted_vectors as f64 * 100.0 / check.index_vectors as f64
        );
        Ok(())
    }

    /// Deletes documents (in one commit) until `share` of the index's vectors are deleted.
    async fn delete_to(&mut self, store: &FaissStore, share: f64) -> Result<(), Box<dyn Error>> {
        let check = store.check()?;
        let target = (share * check.index_vectors as f64).floor() as usize;
        let more = target.saturating_sub(check.deleted_vectors);
        // Spread over the store: every few documents.
        let step = (self.live.len() / more.max(1)).max(1);
        let chosen: Vec<usize> = self.live.keys().copied().step_by(step).take(more).collect();
        let started = Instant::now();
        let deleted = store
            .delete_many(chosen.iter().map(|n| format!("doc-{n}")).collect())
            .await?;
        assert_eq!(deleted, chosen.len());
        for n in &chosen {
            self.live.remove(n);
        }
        let check = store.check()?;
        println!(
            "deleted {} documents in one commit in {:.1} ms: {} of {} vectors deleted",
            chosen.len(),
            ms(started.elapsed()),
            check.deleted_vectors,
            check.index_vectors
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let (n, dim) = (args.n, args.dim);
    let replacements = args.repeat * 2 + 2;
    let base = Arc::new(clustered_vectors(n, dim, 1000, 42));
    let queries = Arc::new(clustered_vectors(args.queries + replacements, dim, 1000, 7));
    let store_dir = args.dir.join("store");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let bytes: Vec<u8> = base.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(args.dir.join("base.f32"), bytes)?;
    let mut bench = Bench {
        embedder: Arc::new(LookupEmbedder { dim, base, queries }),
        live: (0..n).map(|i| (i, Content::Base(i))).collect(),
        next_extra: args.queries,
        args,
    };
    let (k, repeat) = (bench.args.k, bench.args.repeat);
    println!(
        "== HNSW deletes: {n} chunks x {dim} dims, m 32, efSearch 64, k {k}, {} queries, {} cores",
        bench.args.queries,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );

    let store = bench.open(default_hnsw_max_deleted_share())?;
    let started = Instant::now();
    let documents: Vec<Document> = (0..n).map(|i| document(i, Content::Base(i))).collect();
    store.add_with_progress(documents, |_| {}).await?;
    println!(
        "ingested {n} documents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    bench.searches(&store, "search, 0 % deleted").await?;
    drop(store);

    // Before: every delete rebuilt the index from the stored vectors.
    let eager = bench.open(0.0)?;
    let delete_before = bench.delete_one(&eager, 0).await?;
    let replace_before = bench.replace_one(&eager, 0).await?;
    drop(eager);

    // After: the vectors stay; deletes link the file, replacements add to the graph.
    let store = bench.open(default_hnsw_max_deleted_share())?;
    let mut deletes = Vec::new();
    let mut replaces = Vec::new();
    for i in 1..=repeat {
        deletes.push(bench.delete_one(&store, i).await?);
        replaces.push(bench.replace_one(&store, i).await?);
    }
    let (delete_after, delete_max) = median(deletes);
    let (replace_after, replace_max) = median(replaces);
    println!(
        "{:<44} {:>10.1} ms",
        "delete 1 document, before (full rebuild)",
        ms(delete_before)
    );
    println!(
        "{:<44} {:>10.1} ms  (median of {repeat}, max {:.1} ms)",
        "delete 1 document, after (vectors kept)",
        ms(delete_after),
        ms(delete_max)
    );
    println!(
        "{:<44} {:>10.1} ms",
        "replace 1 document, before (full rebuild)",
        ms(replace_before)
    );
    println!(
        "{:<44} {:>10.1} ms  (median of {repeat}, max {:.1} ms)",
        "replace 1 document, after (add, old kept)",
        ms(replace_after),
        ms(replace_max)
    );

    bench.delete_to(&store, 0.10).await?;
    bench.searches(&store, "search, 10 % deleted").await?;
    bench.delete_to(&store, 0.20).await?;
    bench.searches(&store, "search, 20 % deleted").await?;

    // The next delete crosses the share: its commit rebuilds without the deleted vectors.
    let compaction = bench.delete_one(&store, repeat * 4).await?;
    let check = store.check()?;
    assert_eq!(check.deleted_vectors, 0, "compacted: {check:?}");
    assert_eq!(check.index_vectors, check.chunks as u64);
    println!(
        "{:<44} {:>10.1} ms  ({} vectors left)",
        "compaction: the delete that crosses 20 %",
        ms(compaction),
        check.index_vectors
    );
    bench.searches(&store, "search, after compaction").await?;
    Ok(())
}
