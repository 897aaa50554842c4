//! `ragway eval`: how well a configured store retrieves, on a labelled set in BEIR's layout.
//! Optionally ingests the set's corpus first, runs every judged query through the store as
//! `ragway serve` would search it, ranks documents by their best chunk, and prints nDCG@10,
//! Recall@10 and @100, MRR@10 and MAP (trec_eval's definitions) with the search latency;
//! `--json` for machines, `--run-file` for other tools (trec_eval, pytrec_eval, ranx).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ragway_core::Filter;
use ragway_core::config::{
    Config, EmbedderConfig, KnowledgeBaseSearchType, RerankerConfig, RetrievalMode,
    VectorStoreConfig, known,
};
use ragway_retrieval::eval::{self, Dataset, Run, Scores};
use serde::Serialize;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The store to measure (a `[[vector_store]]` name).
    #[arg(long)]
    store: String,
    /// A folder in BEIR's layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.
    dataset: PathBuf,
    /// The judgements to use (qrels/<split>.tsv).
    #[arg(long, default_value = "test")]
    split: String,
    /// Ingest the set's corpus.jsonl into the store first (documents already there unchanged
    /// are skipped).
    #[arg(long)]
    ingest: bool,
    /// Retrieval modes to compare, e.g. `dense,keyword,hybrid` (a faiss store searches in each;
    /// other stores in their own only). Default: the store's configured `retrieval`.
    #[arg(long, value_delimiter = ',', value_enum)]
    mode: Vec<Mode>,
    /// Documents ranked per query (MAP and Recall@100 read this deep).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(10..=1000))]
    depth: u32,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the run in TREC format (`query Q0 document rank score tag`).
    #[arg(long, value_name = "PATH")]
    run_file: Option<PathBuf>,
}

/// A retrieval mode, as `--mode` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Dense,
    Keyword,
    Hybrid,
}

impl From<Mode> for RetrievalMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Dense => Self::Dense,
            Mode::Keyword => Self::Keyword,
            Mode::Hybrid => Self::Hybrid,
        }
    }
}

/// What one evaluation found, as `--json` prints it.
#[derive(Serialize)]
struct Report {
    dataset: String,
    split: String,
    store: String,
    queries: usize,
    judgements: usize,
    depth: u32,
    results: Vec<ModeResult>,
}

#[derive(Serialize)]
struct ModeResult {
    mode: &'static str,
    #[serde(flatten)]
    scores: Scores,
    search_ms: Latency,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
}

pub async fn eval(config: &Config, args: EvalArgs) -> Result<ExitCode> {
    let store = store_config(config, &args.store)?;
    let dataset = Dataset::read(&args.dataset, &args.split)
        .with_context(|| format!("reading the labelled set in {}", args.dataset.display()))?;
    if args.ingest {
        let corpus = dataset.corpus();
        if !corpus.is_file() {
            bail!("--ingest: {} does not exist", corpus.display());
        }
        let code = crate::ingest::ingest(
            config,
            crate::ingest::IngestArgs::files(&args.store, vec![corpus]),
        )
        .await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    // One store, searched in each mode asked for (none asked: the store's own way).
    let retriever = open(config, store).await?;
    let modes: Vec<Option<RetrievalMode>> = if args.mode.is_empty() {
        vec![None]
    } else {
        args.mode.iter().map(|&m| Some(m.into())).collect()
    };
    for mode in modes.iter().flatten() {
        if !retriever.modes().contains(mode) {
            bail!(
                "vector_store \"{}\" is a {} store, which cannot search in {} mode; \
                 --mode dense, keyword and hybrid are for faiss stores",
                store.name(),
                store.kind(),
                mode.name()
            );
        }
    }

    let depth = args.depth as usize;
    let mut results = Vec::new();
    let mut runs = String::new();
    for mode in modes {
        let name = mode.unwrap_or_else(|| configured_mode(store)).name();
        let mut run = Run::new();
        let mut latencies = Vec::with_capacity(dataset.queries.len());
        for (id, text) in &dataset.queries {
            let started = Instant::now();
            let documents = search(retriever.as_ref(), mode, text, depth)
                .await
                .with_context(|| format!("searching \"{}\" for query {id}", args.store))?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            run.insert(id.clone(), documents);
        }
        runs.push_str(&eval::trec_run(&run, &format!("ragway-{name}")));
        results.push(ModeResult {
            mode: name,
            scores: eval::evaluate(&dataset.qrels, &run),
            search_ms: Latency {
                p50: eval::percentile(&latencies, 50.0),
                p99: eval::percentile(&latencies, 99.0),
            },
        });
    }
    if let Some(path) = &args.run_file {
        write_atomically(path, &runs)
            .with_context(|| format!("writing the run file {}", path.display()))?;
    }

    let report = Report {
        dataset: args.dataset.display().to_string(),
        split: args.split.clone(),
        store: args.store.clone(),
        queries: dataset.queries.len(),
        judgements: dataset.judgements(),
        depth: args.depth,
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Searches deep enough to rank `depth` documents (a document may have many chunks).
async fn search(
    retriever: &dyn ragway_core::Retriever,
    mode: Option<RetrievalMode>,
    query: &str,
    depth: usize,
) -> Result<Vec<(String, f32)>> {
    let mut chunks = depth * 3;
    let filter = Filter::new();
    loop {
        let passages = match mode {
            Some(mode) => retriever.search_as(mode, query, chunks, &filter).await?,
            None => retriever.search(query, chunks, &filter).await?,
        };
        let documents = eval::documents(&passages, depth);
        if documents.len() >= depth || passages.len() < chunks {
            return Ok(documents);
        }
        chunks *= 2;
    }
}

fn print_table(report: &Report) {
    println!(
        "{} ({}): {} queries, {} judgements; store \"{}\", {} documents a query",
        report.dataset, report.split, report.queries, report.judgements, report.store, report.depth
    );
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "mode", "nDCG@10", "R@10", "R@100", "MRR@10", "MAP", "p50 ms", "p99 ms"
    );
    for result in &report.results {
        let s = &result.scores;
        println!(
            "{:<8} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.2} {:>8.2}",
            result.mode,
            s.ndcg_10,
            s.recall_10,
            s.recall_100,
            s.mrr_10,
            s.map,
            result.search_ms.p50,
            result.search_ms.p99
        );
    }
}

/// The mode a store searches in as configured.
fn configured_mode(store: &VectorStoreConfig) -> RetrievalMode {
    match store {
        VectorStoreConfig::Faiss(c) => c.retrieval,
        VectorStoreConfig::Pgvector(c) => c.retrieval,
        VectorStoreConfig::Kendra(_) => RetrievalMode::Dense,
        VectorStoreConfig::BedrockKb(c) => match c.search_type {
            Some(KnowledgeBaseSearchType::Hybrid) => RetrievalMode::Hybrid,
            Some(KnowledgeBaseSearchType::Semantic) | None => RetrievalMode::Dense,
        },
    }
}

/// The store, built as `ragway serve` builds it (its embedder and reranker only; no model is
/// loaded).
async fn open(
    config: &Config,
    store: &VectorStoreConfig,
) -> Result<Arc<dyn ragway_core::Retriever>> {
    // AWS settings when the store or its embedder is an AWS service, in its region.
    let embedder_region = config.embedder.iter().find_map(|e| match e {
        EmbedderConfig::Bedrock(c) if Some(e.name()) == store.embedder() => Some(c.region.clone()),
        _ => None,
    });
    let reranker = match store.rerank() {
        Some(rerank) => Some(
            config
                .reranker
                .iter()
                .find(|r| r.name() == rerank.reranker)
                .with_context(|| format!("no reranker named \"{}\"", rerank.reranker))?,
        ),
        None => None,
    };
    let reranker_region = match reranker {
        Some(RerankerConfig::Bedrock(c)) => Some(c.region.clone()),
        _ => None,
    };
    let region = match store {
        VectorStoreConfig::Kendra(c) => Some(c.region.clone()),
        VectorStoreConfig::BedrockKb(c) => Some(c.region.clone()),
        VectorStoreConfig::Faiss(_) | VectorStoreConfig::Pgvector(_) => {
            embedder_region.or(reranker_region)
        }
    };
    let aws = match region {
        Some(region) => Some(ragway_aws::load_sdk_config(region).await),
        None => None,
    };
    let mut embedders = BTreeMap::new();
    if let Some(embedder_name) = store.embedder() {
        let embedder_config = config
            .embedder
            .iter()
            .find(|e| e.name() == embedder_name)
            .with_context(|| format!("no embedder named \"{embedder_name}\""))?;
        let shared = ragway_retrieval::embedder::Shared {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            aws: aws.as_ref(),
        };
        let embedder = ragway_retrieval::embedder::build(embedder_config, &shared)?;
        embedders.insert(embedder_name.to_owned(), embedder);
    }
    let mut rerankers = BTreeMap::new();
    if let Some(reranker) = reranker {
        let built = ragway_retrieval::build_reranker(reranker, aws.as_ref())?;
        rerankers.insert(reranker.name().to_owned(), built);
    }
    let shared = ragway_retrieval::Shared {
        aws: aws.as_ref(),
        embedders: &embedders,
        rerankers: &rerankers,
    };
    let built = ragway_retrieval::build(store, &shared).await?;
    Ok(built.retriever)
}

fn store_config<'a>(config: &'a Config, name: &str) -> Result<&'a VectorStoreConfig> {
    match config.vector_store.iter().find(|s| s.name() == name) {
        Some(store) => Ok(store),
        None => {
            let names: Vec<&str> = config.vector_store.iter().map(|s| s.name()).collect();
            bail!(
                "no vector_store named \"{name}\"; configured: {}",
                known(&names)
            )
        }
    }
}

/// Writes `text` to `path` through a temporary file beside it, so a reader never sees half.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
