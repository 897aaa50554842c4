//! `ragway ingest`: read files and folders into a writable store (FAISS or pgvector), adopt an
//! existing FAISS index, or copy one store into another without re-embedding, with a progress
//! bar. Unchanged files are skipped; changed ones replace their chunks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ragway_core::IngestReport;
use ragway_core::config::{Config, EmbedderConfig, VectorStoreConfig, known};
use ragway_retrieval::WritableStore;
use ragway_retrieval::ingest::{Phase, Progress, read_paths};

#[derive(clap::Args)]
pub struct IngestArgs {
    /// The store to add to (a `[[vector_store]]` name of type faiss or pgvector).
    #[arg(long)]
    store: String,
    /// Files and folders to read (.txt, .md, .html, .pdf, .jsonl), folders recursively.
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

    let reading = spinner("reading files");
    let paths = args.paths.clone();
    let (documents, read) = tokio::task::spawn_blocking(move || read_paths(&paths)).await??;
    reading.finish_and_clear();
    for failure in &read.failed {
        eprintln!("warning: {failure}");
    }
    if !read.skipped.is_empty() {
        eprintln!(
            "skipped {} file(s) of unsupported type or without text",
            read.skipped.len()
        );
    }
    if documents.is_empty() {
        println!("nothing to ingest: no readable documents under the given paths");
        return Ok(if read.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<22} [{bar:30}] {pos}/{len} chunks  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let shown = bar.clone();
    let report = store
        .add_with_progress(documents, move |p: Progress| {
            shown.set_length(p.chunks_total as u64);
            shown.set_position(p.chunks_done as u64);
            shown.set_message(match p.phase {
                Phase::Embedding => format!("files {}/{}", p.documents_done, p.documents_total),
                Phase::Saving => "saving".to_owned(),
                Phase::Done => "done".to_owned(),
            });
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} file(s) into \"{}\": {} added, {} replaced, {} unchanged; {} chunks in {:.1} s ({:.0} chunks/s)",
        read.files,
        args.store,
        report.added,
        report.replaced,
        report.unchanged,
        report.chunks,
        seconds,
        report.chunks as f64 / seconds.max(1e-9)
    );
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
