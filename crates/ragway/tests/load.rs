//! Load: 100,000 `/generate` requests with 256 in flight through ragway to the OpenAI fake. Every
//! one is answered, and the server's resident memory after 100k requests is within 10% of what
//! it was after the first 10k (nothing grows per request).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::support::Server;

const IN_FLIGHT: usize = 256;
const WARM_UP: usize = 10_000;
const TOTAL: usize = 100_000;

/// The resident set of a process, from /proc, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Sends `count` requests, `IN_FLIGHT` at a time, and fails the test on any failed answer.
async fn send(client: &reqwest::Client, url: &str, count: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..IN_FLIGHT).map(|_| {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let body = json!({
                    "prompt": "Explain quantum computing",
                    "llm_name": "gpt-4o",
                    "vector_search_type": "none",
                });
                match client.post(&url).json(&body).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let answer: serde_json::Value = response.json().await.unwrap_or_default();
                        let text = answer["response"].as_str().unwrap_or_default();
                        if status != 200 || text.is_empty() {
                            failures.push(format!("{status}: {answer}"));
                        }
                    }
                    Err(error) => failures.push(error.to_string()),
                }
            }
            failures
        })
    });
    let mut failures = Vec::new();
    for worker in futures::future::join_all(workers).await {
        failures.extend(worker.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {count} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_requests_all_answered_and_memory_stays_flat() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let config = format!(
        r#"
[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
api_key = "env::TEST_OPENAI_KEY"
base_url = "{}/v1"
"#,
        openai.url()
    );
    // One log line per request would make the test about the log; warnings still show.
    let server = Server::start_with(&config, |command| {
        command.env("RUST_LOG", "warn");
    })
    .await;
    let url = format!("{}/generate", server.url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();

    let started = Instant::now();
    send(&client, &url, WARM_UP).await;
    let after_warm_up = resident_kib(server.pid());

    send(&client, &url, TOTAL - WARM_UP).await;
    let after_all = resident_kib(server.pid());
    let elapsed = started.elapsed();
    println!(
        "{TOTAL} requests, {IN_FLIGHT} in flight, in {:.1} s ({:.0}/s); resident {} MiB after \
         {WARM_UP}, {} MiB after {TOTAL}",
        elapsed.as_secs_f64(),
        TOTAL as f64 / elapsed.as_secs_f64(),
        after_warm_up / 1024,
        after_all / 1024
    );
    assert!(
        after_all * 10 <= after_warm_up * 11,
        "resident memory grew from {after_warm_up} KiB after {WARM_UP} requests to \
         {after_all} KiB after {TOTAL}"
    );
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("ragway_requests_total{")
                && line.contains("route=\"/generate\"")
                && line.contains("status=\"200\"")
                && line.ends_with(&format!(" {TOTAL}"))),
        "/metrics does not count the {TOTAL} answers:\n{metrics}"
    );
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}
