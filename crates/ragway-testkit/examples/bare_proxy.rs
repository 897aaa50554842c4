//! The least a streaming proxy built on ragway's stack can do, as a floor for
//! `bench/streaming.sh`: axum takes the request, reqwest forwards its body to `--upstream`, and
//! the answer's bytes stream back untouched (no parsing, no middleware, no retries). What
//! ragway adds over this is its own work; what this adds over the upstream is the extra hop on
//! the same machine.
//!
//! usage: bare_proxy --upstream URL   (prints "bare proxy listening on http://ADDR" once bound)

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
}

async fn forward(State(upstream): State<Upstream>, body: Bytes) -> Response {
    let sent = upstream
        .client
        .post(&upstream.url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) => {
            let status = answer.status();
            let kind = answer.headers().get(header::CONTENT_TYPE).cloned();
            let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                kind.unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, url] = args.as_slice() else {
        return Err("usage: bare_proxy --upstream URL".into());
    };
    if flag != "--upstream" {
        return Err(format!("unknown option {flag}; usage: bare_proxy --upstream URL").into());
    }
    // Both sides without Nagle's delay, as ragway's are.
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let app = Router::new()
        .route("/{*path}", post(forward))
        .with_state(Upstream {
            client,
            url: url.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("bare proxy listening on http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
