//! `ragway ingest`: read files, folders and `s3://bucket/prefix` addresses into a writable
//! store (FAISS or pgvector), adopt an existing FAISS index, or copy one store into another
//! without re-embedding. Documents are read as they are needed ([`sources`]) and committed in
//! batches (every `--batch-chunks` chunks or `--commit-secs` seconds), so memory is bounded by
//! a batch, a crash loses at most the batch in flight, and the same command run again skips
//! what was committed (unchanged documents are skipped; changed ones replace their chunks; an
//! S3 object the store holds at its ETag is not even downloaded). Progress ([`shown`]) is a bar
//! on a terminal, and lines in a log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use ragway_core::IngestReport;
use ragway_core::config::{Config, EmbedderConfig, VectorStoreConfig, known};
use ragway_retrieval::WritableStore;
use ragway_retrieval::ingest::Progress;

mod shown;
mod sources;

use shown::Shown;
use sources::Sources;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// The store to add to (a `[[vector_store]]` name of type faiss or pgvector).
    #[arg(long)]
    store: String,
    /// Files and folders to read (.txt, .md, .html, .pdf, .jsonl), folders recursively, and
    /// s3://BUCKET/PREFIX addresses (every object whose key starts with PREFIX; AWS
    /// credentials, region and AWS_ENDPOINT_URL as the AWS CLI takes them).
    #[arg(
        required_unless_present_any = ["from_faiss", "from_store", "reindex"],
        conflicts_with_all = ["from_faiss", "from_store"]
    )]
    paths: Vec<PathBuf>,
    /// Rebuild a faiss store's index with the config's metric, index and hnsw_m from its
    /// stored vectors (no re-embedding), without the vectors of deleted chunks an HNSW index
    /// still holds. Without it, a store built with other settings than the config's is
    /// refused, so that two configs cannot rebuild each other's index.
    #[arg(long)]
    reindex: bool,
    /// Copy every document of another store (a faiss store) into this one (a pgvector store)
    /// with its chunks and vectors, without re-embedding. Documents already copied are skipped.
    #[arg(long, value_name = "NAME", conflicts_with = "from_faiss")]
    from_store: Option<String>,
    /// Adopt the vectors of an existing FAISS index file (e.g. LangChain's index.faiss)
    /// without re-embedding; needs --docs.
    #[arg(long, requires = "docs")]
    from_faiss: Option<PathBuf>,
    /// The documents of --from-faiss as JSON Lines, one per vector position, as written by
    /// scripts/export_langchain_faiss.py.
    #[arg(long, requires = "from_faiss")]
    docs: Option<PathBuf>,
    /// Commit at least every this many chunks: a crash loses at most the batch in flight, and
    /// running the same command again skips what was committed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    batch_chunks: u32,
    /// Commit at least this often too (batches are sized by the embedding rate so far).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    commit_secs: u32,
}

impl IngestArgs {
    /// Reading `paths` into `store`, as `ragway ingest --store STORE PATHS...` does.
    pub fn files(store: &str, paths: Vec<PathBuf>) -> Self {
        Self {
            store: store.to_owned(),
            paths,
            reindex: false,
            from_store: None,
            from_faiss: None,
            docs: None,
            batch_chunks: 1024,
            commit_secs: 60,
        }
    }
}

pub async fn ingest(config: &Config, args: IngestArgs) -> Result<ExitCode> {
    let store = open_store(config, &args.store, args.reindex).await?;
    if args.reindex
        && args.paths.is_empty()
        && args.from_store.is_none()
        && args.from_faiss.is_none()
    {
        println!("\"{}\" is indexed with the config's settings", args.store);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(source) = &args.from_store {
        return copy_store(config, source, &args.store, &store).await;
    }
    if let (Some(index), Some(docs)) = (&args.from_faiss, &args.docs) {
        let WritableStore::Faiss(store) = &store else {
            bail!(
                "--from-faiss adopts an index into a faiss store; \"{}\" is a pgvector store \
                 (adopt into a faiss store, then copy it with --from-store)",
                args.store
            );
        };
        let started = Instant::now();
        let report = store.adopt(index, docs).await?;
        println!(
            "adopted {} vectors of {} into \"{}\": {} added, {} replaced, {} unchanged in {:.1} s",
            report.source.ntotal,
            index.display(),
            args.store,
            report.ingest.added,
            report.ingest.replaced,
            report.ingest.unchanged,
            started.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let chunk_size = chunk_size(config, &args.store);
    let store = Arc::new(store);
    let sources = Sources::open(&args.paths, &store).await?;
    let mut shown = Shown::new(&args.store, sources.bytes_total);
    let mut batch_chunks = args.batch_chunks as usize;
    let mut next = tokio::spawn(sources.read_batch(batch_chunks, chunk_size));
    let mut totals = IngestReport::default();
    let started = Instant::now();
    let (sources, batches) = loop {
        let (sources, batch) = next.await??;
        if batch.is_empty() {
            break (sources, shown.commits);
        }
        let read_to = sources.bytes_read();
        // The next batch is read while this one is embedded.
        next = tokio::spawn(sources.read_batch(batch_chunks, chunk_size));
        let batch_started = Instant::now();
        let documents = batch.len();
        let added = store
            .add_with_progress(batch, |p: Progress| shown.embedding(&p, read_to))
            .await;
        let report = match added {
            Ok(report) => report,
            Err(error) => {
                shown.finish();
                eprintln!("{}", shown.summary(&totals, started));
                return Err(error).context(format!(
                    "a batch of {documents} documents could not be ingested; the {} documents \
                     before it are committed, and running the same command again skips them",
                    totals.added + totals.replaced + totals.unchanged
                ));
            }
        };
        totals.added += report.added;
        totals.replaced += report.replaced;
        totals.unchanged += report.unchanged;
        totals.chunks += report.chunks;
        shown.committed(&totals, read_to);
        // Sized to the embedding rate so far, so that a commit comes about every commit_secs.
        let seconds = batch_started.elapsed().as_secs_f64().max(1e-3);
        let rate = report.chunks as f64 / seconds;
        if report.chunks > 0 {
            let fits = (rate * f64::from(args.commit_secs)) as usize;
            batch_chunks = fits.clamp(1, args.batch_chunks as usize);
        }
    };
    shown.finish();
    // Objects the store held at their ETag were left out before reading.
    totals.unchanged += sources.unchanged;
    let read = sources.report;
    for failure in &read.failed {
        eprintln!("warning: {failure}");
    }
    if !read.skipped.is_empty() {
        eprintln!(
            "skipped {} file(s) of unsupported type or without text",
            read.skipped.len()
        );
    }
    if batches == 0 && sources.unchanged == 0 {
        println!("nothing to ingest: no readable documents under the given paths");
        return Ok(if read.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!(
        "{} file(s) into \"{}\": {}",
        read.files,
        args.store,
        shown.summary(&totals, started)
    );
    if sources.unchanged > 0 {
        println!(
            "{} S3 object(s) not downloaded: the store holds them at their ETag",
            sources.unchanged
        );
    }
    if read.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} file(s) could not be read (see the warnings above)",
            read.failed.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The chunk size of the store named `name` (what batches are measured in).
fn chunk_size(config: &Config, name: &str) -> usize {
    config
        .vector_store
        .iter()
        .find_map(|store| match store {
            VectorStoreConfig::Faiss(c) if c.name == name => Some(c.chunk_size),
            VectorStoreConfig::Pgvector(c) if c.name == name => Some(c.chunk_size),
            _ => None,
        })
        .unwrap_or(1000)
}

/// Copies every document of the store `source` into `store` (named `target`), a page at a
/// time: each page is one transaction, so an interrupted copy keeps whole documents and a
/// rerun skips what is already there.
async fn copy_store(
    config: &Config,
    source: &str,
    target: &str,
    store: &WritableStore,
) -> Result<ExitCode> {
    /// Documents read and written per page.
    const PAGE: usize = 256;
    if source == target {
        bail!("--from-store names the store being written (\"{target}\"); name another");
    }
    let WritableStore::Pgvector(into) = store else {
        bail!("--from-store copies into a pgvector store; \"{target}\" is not one");
    };
    let WritableStore::Faiss(from) = open_store(config, source, false).await? else {
        bail!("--from-store copies from a faiss store; \"{source}\" is not one");
    };
    let started = Instant::now();
    let bar = spinner(&format!("copying \"{source}\" into \"{target}\""));
    let mut total = IngestReport::default();
    let mut after = 0;
    loop {
        let (page, last) = from.export(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        let report = into.add_embedded(page).await?;
        total.added += report.added;
        total.replaced += report.replaced;
        total.unchanged += report.unchanged;
        total.chunks += report.chunks;
        bar.set_message(format!(
            "copying \"{source}\" into \"{target}\": {} documents",
            total.added + total.replaced + total.unchanged
        ));
        match last {
            Some(key) => after = key,
            None => break,
        }
    }
    bar.finish_and_clear();
    println!(
        "copied \"{source}\" into \"{target}\": {} added, {} replaced, {} unchanged; {} chunks in {:.1} s",
        total.added,
        total.replaced,
        total.unchanged,
        total.chunks,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Opens the named writable store with its embedder, without building the rest of the config
/// (no chat model is loaded to ingest).
async fn open_store(config: &Config, name: &str, reindex: bool) -> Result<WritableStore> {
    let Some(store) = config.vector_store.iter().find(|s| s.name() == name) else {
        let names: Vec<&str> = config.vector_store.iter().map(|s| s.name()).collect();
        bail!(
            "no vector_store named \"{name}\"; configured: {}",
            known(&names)
        );
    };
    let writable = || -> Vec<&str> {
        config
            .vector_store
            .iter()
            .filter(|s| {
                !matches!(
                    s,
                    VectorStoreConfig::Kendra(_) | VectorStoreConfig::BedrockKb(_)
                )
            })
            .map(|s| s.name())
            .collect()
    };
    let Some(embedder_name) = store.embedder() else {
        bail!(
            "vector_store \"{name}\" is a {} store, which is read-only; ingest works on faiss and pgvector stores: {}",
            store.kind(),
            known(&writable())
        );
    };
    let embedder_config = config
        .embedder
        .iter()
        .find(|e| e.name() == embedder_name)
        .with_context(|| format!("no embedder named \"{embedder_name}\""))?;
    let aws = match embedder_config {
        EmbedderConfig::Bedrock(c) => Some(ragway_aws::load_sdk_config(c.region.clone()).await),
        EmbedderConfig::Openai(_) | EmbedderConfig::Local(_) => None,
    };
    let shared = ragway_retrieval::embedder::Shared {
        http: reqwest_client()?,
        aws: aws.as_ref(),
    };
    let embedder = ragway_retrieval::embedder::build(embedder_config, &shared)?;
    match WritableStore::open(store, Arc::clone(&embedder), reindex).await {
        Some(opened) => Ok(opened.with_context(|| format!("opening vector_store \"{name}\""))?),
        None => bail!(
            "vector_store \"{name}\" is a {} store, which is read-only; ingest works on faiss and pgvector stores: {}",
            store.kind(),
            known(&writable())
        ),
    }
}

fn reqwest_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
