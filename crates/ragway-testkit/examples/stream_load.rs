//! Streaming load for `bench/streaming.sh`: keeps `--streams` server-sent-event requests open
//! at once for `--seconds`, and reports time to first byte, time to first token (the first
//! event that carries text: an OpenAI chunk with non-empty `content`, or a `/generate` `delta`
//! event) and the gaps between events as they arrive (so buffering anywhere on the path shows
//! as bursts: near-zero gaps then long ones).
//!
//! The streams start spread evenly over `--ramp-ms` (default 1000), as independent clients
//! would, rather than all in the same instant: started together, equally long streams would
//! also end together and start again together for the whole run, so every stream would open
//! in a burst of 500 at once. Only streams started after the ramp are counted.
//!
//! usage: stream_load --url URL --body JSON [--streams 500] [--seconds 10] [--ramp-ms 1000]
//!
//! Prints one JSON line: requests, errors, ttfb, ttft and gap percentiles in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::json;

struct Args {
    url: String,
    body: String,
    streams: usize,
    seconds: u64,
    ramp: Duration,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        body: String::new(),
        streams: 500,
        seconds: 10,
        ramp: Duration::from_secs(1),
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("missing value after {}", pair[0]));
        };
        match key.as_str() {
            "--url" => args.url = value.clone(),
            "--body" => args.body = value.clone(),
            "--streams" => args.streams = value.parse().map_err(|_| "--streams: a number")?,
            "--seconds" => args.seconds = value.parse().map_err(|_| "--seconds: a number")?,
            "--ramp-ms" => {
                args.ramp =
                    Duration::from_millis(value.parse().map_err(|_| "--ramp-ms: a number")?);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.url.is_empty() || args.body.is_empty() {
        return Err(
            "usage: stream_load --url URL --body JSON [--streams 500] [--seconds 10] [--ramp-ms 1000]"
                .into(),
        );
    }
    Ok(args)
}

#[derive(Default)]
struct Sample {
    requests: usize,
    errors: usize,
    ttfb: Vec<Duration>,
    ttft: Vec<Duration>,
    gaps: Vec<Duration>,
}

/// Whether an SSE piece carries text: `"content":"` followed by anything but the closing quote
/// (OpenAI's chunks), or a `/generate` `delta` event.
fn has_text(piece: &[u8]) -> bool {
    const CONTENT: &[u8] = b"\"content\":\"";
    piece
        .windows(CONTENT.len() + 1)
        .any(|w| w.starts_with(CONTENT) && w[CONTENT.len()] != b'"')
        || piece.windows(12).any(|w| w == b"event: delta")
}

/// One stream: time to the first body byte, then the gap before each later event.
async fn one(client: &reqwest::Client, url: &str, body: &str, sample: &mut Sample) {
    sample.requests += 1;
    let started = Instant::now();
    let response = match client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => response,
        _ => {
            sample.errors += 1;
            return;
        }
    };
    let mut bytes = response.bytes_stream();
    let mut last: Option<Instant> = None;
    let mut texted = false;
    while let Some(piece) = bytes.next().await {
        let Ok(piece) = piece else {
            sample.errors += 1;
            return;
        };
        let now = Instant::now();
        // Every SSE event ends with a blank line; count the events in this piece.
        let events = piece.windows(2).filter(|w| w == b"\n\n").count().max(1);
        match last {
            None => sample.ttfb.push(now - started),
            Some(previous) => sample.gaps.push(now - previous),
        }
        if !texted && has_text(&piece) {
            texted = true;
            sample.ttft.push(now - started);
        }
        for _ in 1..events {
            sample.gaps.push(Duration::ZERO);
        }
        last = Some(now);
    }
}

fn percentiles(mut values: Vec<Duration>) -> serde_json::Value {
    if values.is_empty() {
        return json!(null);
    }
    values.sort();
    let pick = |q: f64| {
        let at = ((values.len() as f64 - 1.0) * q).round() as usize;
        (values[at].as_secs_f64() * 1e6).round() / 1e3
    };
    json!({ "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": pick(1.0), "count": values.len() })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(args()?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.streams)
        .tcp_nodelay(true)
        .build()?;
    let start = Instant::now();
    let counted_from = start + args.ramp;
    let deadline = counted_from + Duration::from_secs(args.seconds);
    let mut tasks = Vec::with_capacity(args.streams);
    for stream in 0..args.streams {
        let (client, args) = (client.clone(), Arc::clone(&args));
        let offset = args.ramp.mul_f64(stream as f64 / args.streams as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + offset).into()).await;
            let mut sample = Sample::default();
            while Instant::now() < deadline {
                if Instant::now() < counted_from {
                    one(&client, &args.url, &args.body, &mut Sample::default()).await;
                } else {
                    one(&client, &args.url, &args.body, &mut sample).await;
                }
            }
            sample
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        let sample = task.await?;
        total.requests += sample.requests;
        total.errors += sample.errors;
        total.ttfb.extend(sample.ttfb);
        total.ttft.extend(sample.ttft);
        total.gaps.extend(sample.gaps);
    }
    let zero_gaps = total.gaps.iter().filter(|g| g.is_zero()).count();
    println!(
        "{}",
        json!({
            "requests": total.requests,
            "errors": total.errors,
            "ttfb_ms": percentiles(total.ttfb),
            "ttft_ms": percentiles(total.ttft),
            "gap_ms": percentiles(total.gaps),
            "events_in_one_read": zero_gaps,
        })
    );
    Ok(())
}
