//! Graceful shutdown of the real binary: SIGTERM with 50 streams in flight, a grace period
//! that runs out, `/readyz`, and `ragway healthcheck` against a serving and a closed port.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use ragway_testkit::{Fake, FakeOptions};
use serde_json::{Value, json};

use crate::support::{Server, client, parse_sse, test_env};

const ANSWER: &str = "ragway fake answer from gpt-4o.";

/// An OpenAI fake that pauses `chunk_delay` before each of the answer's five text chunks.
async fn slow_openai(chunk_delay: Duration) -> Fake {
    ragway_testkit::openai::start_with_options(FakeOptions {
        chunk_delay: Some(chunk_delay),
        ..FakeOptions::default()
    })
    .await
    .unwrap()
}

fn config(openai: &Fake, grace_secs: f64) -> String {
    format!(
        r#"
[server]
shutdown_grace_secs = {grace_secs}

[[llm]]
name = "gpt-4o"
type = "openai"
model = "gpt-4o"
base_url = "{}/v1"
api_key = "env::TEST_OPENAI_KEY"
"#,
        openai.url()
    )
}

/// Request `i` of a batch: even ones on `/generate`, odd ones on `/v1/chat/completions`.
fn streaming_request(i: usize) -> (&'static str, Value) {
    if i.is_multiple_of(2) {
        (
            "/generate",
            json!({ "prompt": format!("question {i}"), "llm_name": "gpt-4o", "vector_search_type": "none", "stream": true }),
        )
    } else {
        (
            "/v1/chat/completions",
            json!({ "model": "gpt-4o", "stream": true, "messages": [{ "role": "user", "content": format!("question {i}") }] }),
        )
    }
}

/// The text a stream carried and whether it ended with its route's final event.
fn stream_outcome(path: &str, body: &[u8]) -> (String, bool) {
    let events = parse_sse(&String::from_utf8_lossy(body));
    if path == "/generate" {
        let text = events
            .iter()
            .filter(|(name, _)| name == "delta")
            .filter_map(|(_, data)| data["text"].as_str())
            .collect();
        let done = events
            .last()
            .is_some_and(|(name, data)| name == "done" && data["finish_reason"] == "stop");
        (text, done)
    } else {
        let text = events
            .iter()
            .filter_map(|(_, data)| data["choices"][0]["delta"]["content"].as_str())
            .collect();
        let finished = events
            .iter()
            .any(|(_, data)| data["choices"][0]["finish_reason"] == "stop");
        let done = finished && events.last().is_some_and(|(_, data)| data == "[DONE]");
        (text, done)
    }
}

/// Opens a stream, reports its first bytes on `first_bytes`, then reads it to the end:
/// (status, body, whether reading ended in an error).
async fn open_stream(
    url: String,
    body: Value,
    first_bytes: tokio::sync::mpsc::Sender<()>,
) -> (u16, Vec<u8>, bool) {
    let response = client().post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let mut chunks = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    let mut announced = false;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                received.extend_from_slice(&chunk);
                if !announced {
                    announced = true;
                    first_bytes.send(()).await.unwrap();
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    (status, received, failed)
}

/// Waits until `count` streams have announced their first bytes.
async fn wait_first_bytes(rx: &mut tokio::sync::mpsc::Receiver<()>, count: usize, server: &Server) {
    for seen in 0..count {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {seen} of {count} streams started; server log:\n{}",
                    server.logs()
                )
            })
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_50_streams_finish_refuses_new_connections_and_exits_0() {
    const STREAMS: usize = 50;
    // Five chunks a second apart: each stream runs about 5 s after its first bytes, long
    // enough to observe the closed listener while every one of them is still open.
    let openai = slow_openai(Duration::from_secs(1)).await;
    let mut server = Server::start(&config(&openai, 25.0)).await;

    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["llm_models"], json!(["gpt-4o"]));

    let (tx, mut rx) = tokio::sync::mpsc::channel(STREAMS);
    let finished = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let (path, body) = streaming_request(i);
        let url = format!("{}{path}", server.url);
        let (tx, finished) = (tx.clone(), finished.clone());
        streams.push(tokio::spawn(async move {
            let outcome = open_stream(url, body, tx).await;
            finished.fetch_add(1, Ordering::SeqCst);
            (path, outcome)
        }));
    }
    wait_first_bytes(&mut rx, STREAMS, &server).await;

    server.terminate();

    // The listener closes as soon as the signal is handled: a new connection is refused (or,
    // if it slipped in just before, is closed without an answer or told 503 by /readyz).
    let addr = server.addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "new connections still accepted 10 s after SIGTERM; log:\n{}",
                    server.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let refused_with_open_streams = STREAMS - finished.load(Ordering::SeqCst);
    assert!(
        refused_with_open_streams > 0,
        "the listener closed only after every stream had ended"
    );
    let late = client().get(format!("{}/readyz", server.url)).send().await;
    match late {
        Err(error) => assert!(error.is_connect(), "{error}"),
        Ok(response) => assert_eq!(response.status(), 503),
    }

    for stream in streams {
        let (path, (status, body, failed)) = stream.await.unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(
            !failed,
            "{path}: the stream was cut: {}",
            String::from_utf8_lossy(&body)
        );
        let (text, done) = stream_outcome(path, &body);
        assert_eq!(text, ANSWER, "{path}");
        assert!(
            done,
            "{path}: no final event: {}",
            String::from_utf8_lossy(&body)
        );
    }

    let exit = server.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "log:\n{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("every request in flight finished"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_longer_than_the_grace_period_is_cut_and_the_process_still_exits_0() {
    // Five chunks 4 s apart: 20 s of streaming against a grace period of 1 s.
    let openai = slow_openai(Duration::from_secs(4)).await;
    let mut server = Server::start(&config(&openai, 1.0)).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (path, body) = streaming_request(1);
    let stream = tokio::spawn(open_stream(format!("{}{path}", server.url), body, tx));
    wait_first_bytes(&mut rx, 1, &server).await;

    server.terminate();
    // Only "does not hang" is asserted: the grace period plus a generous margin.
    let exit = server.wait_exit(Duration::from_secs(1 + 10)).await;
    assert_eq!(exit.code(), Some(0), "log:\n{}", server.logs());
    let logs = server.logs();
    assert!(
        logs.contains("the shutdown grace period ran out; cut 1 request(s) still in flight"),
        "{logs}"
    );

    let (status, body, failed) = tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the client still waits on a stream whose server exited")
        .unwrap();
    assert_eq!(status, 200);
    let (text, done) = stream_outcome(path, &body);
    assert!(
        failed || !done,
        "the stream was expected to be cut, got all of it"
    );
    assert_ne!(text, ANSWER);
}

fn healthcheck(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    Command::new(crate::support::ragway_bin())
        .arg("healthcheck")
        .args(args)
        .envs(test_env())
        .env_remove("RAGWAY_CONFIG")
        .env_remove("RAGWAY_BIND")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_exits_0_against_a_ready_server() {
    let openai = slow_openai(Duration::ZERO).await;
    let server = Server::start(&config(&openai, 25.0)).await;
    let url = format!("{}/readyz", server.url);
    let out = healthcheck(&["--url", &url], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The container's way: the address `serve` was given (0.0.0.0) is probed on loopback.
    let bind = format!("0.0.0.0:{}", server.addr().port());
    let out = healthcheck(&[], &[("RAGWAY_BIND", bind.clone())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = healthcheck(&["--live"], &[("RAGWAY_BIND", bind)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn healthcheck_exits_1_and_says_why_against_a_closed_port() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let out = healthcheck(&["--url", &url, "--timeout-secs", "2"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("not ready: cannot connect to {url}")),
        "{stderr}"
    );

    // With no --url, the address comes from `[server] bind`, 0.0.0.0 probed on loopback.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragway.toml");
    std::fs::write(&path, format!("[server]\nbind = \"0.0.0.0:{port}\"\n")).unwrap();
    let out = healthcheck(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to http://127.0.0.1:{port}/readyz")),
        "{stderr}"
    );

    // --live (the ECS task's check) asks /healthz instead: whether the process answers.
    let out = healthcheck(&["--config", path.to_str().unwrap(), "--live"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "not live: cannot connect to http://127.0.0.1:{port}/healthz"
        )),
        "{stderr}"
    );
}
