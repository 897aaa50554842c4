//! Local reranker latency, for `bench/rerank.sh`: one call per query scoring `--candidates`
//! passages, as a store with `rerank = { candidates = N }` does for each search.
//!
//! usage: rerank_bench --model DIR --passages FILE --queries FILE [--candidates 20]
//!
//! Both files hold one text per line. Prints one line in the layout of `bench/rerank_anchor.py`,
//! which scores the same pairs outside ragway.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ragway_core::config::LocalRerankerConfig;
use ragway_core::{Passage, Reranker};
use ragway_retrieval::rerank::local::LocalReranker;

struct Args {
    model: PathBuf,
    passages: PathBuf,
    queries: PathBuf,
    candidates: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        model: PathBuf::new(),
        passages: PathBuf::new(),
        queries: PathBuf::new(),
        candidates: 20,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("missing value after {}", pair[0]));
        };
        match key.as_str() {
            "--model" => args.model = value.into(),
            "--passages" => args.passages = value.into(),
            "--queries" => args.queries = value.into(),
            "--candidates" => {
                args.candidates = value
                    .parse::<usize>()
                    .map_err(|_| format!("{key}: not a number"))?
                    .max(1)
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if [&args.model, &args.passages, &args.queries]
        .iter()
        .any(|p| p.as_os_str().is_empty())
    {
        return Err(
            "usage: rerank_bench --model DIR --passages FILE --queries FILE [--candidates 20]"
                .to_owned(),
        );
    }
    Ok(args)
}

fn lines(path: &PathBuf) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let passages: Vec<Passage> = lines(&args.passages)?
        .into_iter()
        .take(args.candidates)
        .enumerate()
        .map(|(i, text)| Passage {
            id: format!("p{i}"),
            text,
            score: 0.0,
            title: None,
            uri: None,
            metadata: serde_json::Map::new(),
        })
        .collect();
    let queries = lines(&args.queries)?;
    let reranker = LocalReranker::new(&LocalRerankerConfig {
        name: "bench".into(),
        path: args.model.clone(),
        max_tokens: 512,
    })?;
    for query in queries.iter().take(3) {
        reranker.rerank(query, passages.clone(), 4).await?;
    }
    let mut times = Vec::with_capacity(queries.len());
    for query in &queries {
        let started = Instant::now();
        reranker.rerank(query, passages.clone(), 4).await?;
        times.push(started.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{:<34} {} candidates  p50 {:>7.1} ms  p99 {:>7.1} ms",
        "ragway (candle, CPU pool)",
        passages.len(),
        millis(pick(0.5)),
        millis(pick(0.99))
    );
    Ok(())
}
