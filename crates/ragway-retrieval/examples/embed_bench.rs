//! Local embedder speed, for `bench/embedding.sh`: query latency (one short text per call, as
//! `/search` and `/generate` embed a question) and batch throughput over chunk-sized texts (as
//! ingestion embeds them).
//!
//! usage: embed_bench --model DIR --texts FILE [--query TEXT] [--queries 200] [--batch 32]
//!
//! FILE holds one text per line. Prints one line per figure in the same layout as
//! `bench/embed_st.py`, which measures sentence-transformers on the same inputs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ragway_core::Embedder;
use ragway_core::config::LocalEmbedderConfig;
use ragway_retrieval::embedder::local::LocalEmbedder;

struct Args {
    model: PathBuf,
    texts: PathBuf,
    query: String,
    queries: usize,
    batch: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        model: PathBuf::new(),
        texts: PathBuf::new(),
        query: "How does a qubit differ from a classical bit?".to_owned(),
        queries: 200,
        batch: 32,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("missing value after {}", pair[0]));
        };
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{key}: not a number"))
        };
        match key.as_str() {
            "--model" => args.model = value.into(),
            "--texts" => args.texts = value.into(),
            "--query" => args.query = value.clone(),
            "--queries" => args.queries = number()?.max(1),
            "--batch" => args.batch = number()?.max(1),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.model.as_os_str().is_empty() || args.texts.as_os_str().is_empty() {
        return Err(
            "usage: embed_bench --model DIR --texts FILE [--query TEXT] \
                    [--queries 200] [--batch 32]"
                .to_owned(),
        );
    }
    Ok(args)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let texts: Vec<String> = std::fs::read_to_string(&args.texts)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let embedder = LocalEmbedder::new(&LocalEmbedderConfig {
        name: "minilm".into(),
        path: args.model.clone(),
        batch_size: args.batch,
        max_tokens: 256,
    })?;

    let query = vec![args.query.clone()];
    for _ in 0..10 {
        embedder.embed(&query).await?;
    }
    let mut times = Vec::with_capacity(args.queries);
    for _ in 0..args.queries {
        let started = Instant::now();
        embedder.embed(&query).await?;
        times.push(started.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{:<28} query p50 {:>7.2} ms  p99 {:>7.2} ms",
        "ragway",
        millis(pick(0.5)),
        millis(pick(0.99))
    );

    embedder
        .embed(&texts[..args.batch.min(texts.len())])
        .await?;
    let started = Instant::now();
    for batch in texts.chunks(args.batch) {
        embedder.embed(batch).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{:<28} {} chunks (batches of {}) {:>7.1} chunks/s",
        "ragway",
        texts.len(),
        args.batch,
        texts.len() as f64 / seconds
    );
    Ok(())
}
