//! Slow, idle and too many connections on the real binary: clients that send half a request
//! header, or keep a connection open doing nothing, are closed after
//! `header_read_timeout_secs` while `/healthz` goes on answering; past `max_connections` a new
//! connection gets a 503 and is closed at once, and service resumes when the others go.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Server, client};

fn config(header_read_timeout_secs: f64, max_connections: usize) -> String {
    format!(
        r#"
[server.limits]
header_read_timeout_secs = {header_read_timeout_secs}
max_connections = {max_connections}

[[llm]]
name = "m"
type = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
"#
    )
}

/// A connection that sent the start of a request and stops there.
async fn half_sent(server: &Server) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    tcp
}

/// Reads until the server closes the connection; what it sent first. Fails the test if the
/// server has not closed it within `within` (a hang, not a measurement).
async fn closed_by_server(mut tcp: TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

async fn healthz(server: &Server) -> u16 {
    client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_and_idle_connections_are_closed_and_healthz_answers_meanwhile() {
    let server = Server::start(&config(1.0, 1000)).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(half_sent(&server).await);
    }
    // Idle keep-alive connections: one request answered, then nothing.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        idle.push(tcp);
    }
    // Meanwhile the server answers.
    assert_eq!(healthz(&server).await, 200);
    // Every one of them is closed by the server, well before a test would hang.
    let closing = slow
        .into_iter()
        .chain(idle)
        .map(|tcp| closed_by_server(tcp, Duration::from_secs(20)));
    for received in futures::future::join_all(closing).await {
        assert!(
            received.is_empty() || received.starts_with("HTTP/1.1 408"),
            "{received}"
        );
    }
    assert_eq!(healthz(&server).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_cap_a_connection_gets_503_and_service_resumes_after() {
    let server = Server::start(&config(2.0, 20)).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(half_sent(&server).await);
    }
    // The cap is taken up: the next connection is told so and closed at once.
    let mut extra = TcpStream::connect(server.addr()).await.unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_by_server(extra, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("limit of open connections"), "{answer}");
    // The held ones time out and free their places; then requests are served again.
    for tcp in held {
        closed_by_server(tcp, Duration::from_secs(20)).await;
    }
    let mut status = 0;
    for _ in 0..50 {
        status = healthz(&server).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("ragway_connections_refused_total ")
                && !line.ends_with(" 0")),
        "{metrics}"
    );
}
