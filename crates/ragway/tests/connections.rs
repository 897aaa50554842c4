//! Slow, idle and too many connections on the real binary: clients that send half a request
//! header, or keep a connection open doing nothing, are closed after
//! `header_read_timeout_secs` while `/healthz` goes on answering; past `max_connections` a new
//! connection gets a 503 and is closed at once, and service resumes when the others go. An
//! HTTP/2 connection left idle after its request is closed the same way.

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
async fn closed_by_server(tcp: TcpStream, within: Duration) -> String {
    String::from_utf8_lossy(&closed_by_server_bytes(tcp, within).await).into_owned()
}

/// [`closed_by_server`], as bytes.
async fn closed_by_server_bytes(mut tcp: TcpStream, within: Duration) -> Vec<u8> {
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
    received
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

/// One HTTP/2 frame: its type, flags, stream and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The frames in `bytes` as (type, stream, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        let Some(payload) = bytes.get(9..9 + length) else {
            break;
        };
        frames.push((bytes[3], stream, payload.to_vec()));
        bytes = &bytes[9 + length..];
    }
    frames
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_after_its_request() {
    let server = Server::start(&config(1.0, 1000)).await;
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    // HTTP/2 with prior knowledge: the preface, empty settings, and `GET /healthz` on stream 1
    // (HPACK: :method GET, :scheme http, then :path and :authority as literals).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"127.0.0.1");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(0x4, 0, 0, &[]));
    hello.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // END_HEADERS | END_STREAM
    tcp.write_all(&hello).await.unwrap();

    // The server answers, then, with nothing more asked, says goodbye and closes: this client
    // never answers the ping of HTTP/2's orderly close, so the server cuts it in the end.
    let received = closed_by_server_bytes(tcp, Duration::from_secs(20)).await;
    let frames = frames(&received);
    assert!(
        frames.iter().any(|(kind, stream, block)| *kind == 0x1
            && *stream == 1
            && block.first() == Some(&0x88)),
        "no 200 answer on stream 1: {frames:?}"
    );
    let goaway = frames
        .iter()
        .find(|(kind, _, _)| *kind == 0x7)
        .unwrap_or_else(|| panic!("no GOAWAY: {frames:?}"));
    assert_eq!(
        &goaway.2[4..8],
        &[0, 0, 0, 0],
        "GOAWAY with an error instead of an orderly close: {frames:?}"
    );
}
