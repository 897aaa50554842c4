//! Images in chat messages: data URLs passed to OpenAI as they came and to Bedrock as Converse
//! image blocks (the fakes refuse what those services would), Bedrock's limits and a model
//! without vision refused with a 400 before any call, and image addresses fetched only from
//! the hosts `[server.images] fetch_hosts` lists, bounded in time, size and where they lead.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use base64::Engine as _;
use ragway_testkit::image::{ImageFormat, header_only};
use serde_json::{Value, json};

use crate::support::{Server, config};

fn data_url(bytes: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn image_part(url: &str) -> Value {
    json!({ "type": "image_url", "image_url": { "url": url } })
}

/// A question about the images at `urls`.
fn ask(model: &str, urls: &[String]) -> Value {
    let mut parts: Vec<Value> = urls.iter().map(|url| image_part(url)).collect();
    parts.push(json!({ "type": "text", "text": "What is in the picture?" }));
    json!({ "model": model, "messages": [{ "role": "user", "content": parts }] })
}

/// A PNG header of `width`x`height`, padded with zeros to `len` bytes.
fn png(width: u16, height: u16, len: usize) -> Vec<u8> {
    let mut bytes = header_only(ImageFormat::Png, width, height);
    bytes.resize(len.max(bytes.len()), 0);
    bytes
}

/// A web server with an image, a page, a redirect, a slow image and one too big, sent
/// without a length.
async fn image_host() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/cat.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(64, 48, 2_000)) }),
        )
        .route("/big.png", get(|| async { png(640, 480, 3_800_000) }))
        .route(
            "/huge.png",
            get(|| async {
                let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![0u8; 100_000]));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/page.html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html>hi</html>") }),
        )
        .route(
            "/moved.png",
            get(|| async { Redirect::temporary("/cat.png") }),
        )
        .route(
            "/slow.png",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                png(8, 8, 100)
            }),
        )
        .route(
            "/gone.png",
            get(|| async { (StatusCode::NOT_FOUND, "no").into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://127.0.0.1:{port}"), task)
}

#[tokio::test(flavor = "multi_thread")]
async fn images_reach_vision_models_in_their_wire_form_within_their_limits() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let (host, _task) = image_host().await;
    let server = Server::start(&format!(
        r#"
[server.images]
# 127.0.0.1 by its address (plain http allowed for loopback); anything else public.
fetch_hosts = ["127.0.0.1", "*"]
max_bytes = 5000000
fetch_timeout_secs = 1
{}"#,
        config(&openai.url(), &bedrock.url(), &kendra.url())
    ))
    .await;
    let cat = png(64, 48, 300);

    // OpenAI: the parts as they came (image first, then the text), detail included.
    let mut body = ask("gpt-4o", &[data_url(&cat)]);
    body["messages"][0]["content"][0]["image_url"]["detail"] = json!("low");
    let (status, _, answer) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = openai.requests().pop().unwrap().body;
    let parts = &sent["messages"][0]["content"];
    assert_eq!(parts[0]["image_url"]["url"], data_url(&cat), "{sent}");
    assert_eq!(parts[0]["image_url"]["detail"], "low");
    assert_eq!(parts[1]["text"], "What is in the picture?");

    // Bedrock: a Converse image block with the same bytes, before the text.
    let (status, _, answer) = server
        .post(
            "/v1/chat/completions",
            &ask("claude-3-opus", &[data_url(&cat)]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let sent = bedrock.requests().pop().unwrap().body;
    let blocks = &sent["messages"][0]["content"];
    assert_eq!(blocks[0]["image"]["format"], "png", "{sent}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blocks[0]["image"]["source"]["bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, cat);
    assert_eq!(blocks[1]["text"], "What is in the picture?");

    // Refused before any call: a model that reads no images, and Bedrock's limits.
    let calls = bedrock.requests().len();
    let refusals = [
        (
            ask("titan", &[data_url(&cat)]),
            "messages",
            "\"titan\" does not read images",
        ),
        (
            ask("claude-3-opus", &vec![data_url(&cat); 21]),
            "messages",
            "21 images",
        ),
        (
            ask(
                "claude-3-opus",
                &[data_url(&cat), data_url(&png(9_000, 10, 100))],
            ),
            "messages.0.content",
            "image 2 of messages.0 is 9000x10 pixels",
        ),
        (
            ask("claude-3-opus", &[format!("{host}/big.png")]),
            "messages.0.content",
            "3800000 bytes",
        ),
    ];
    for (body, param, expected) in refusals {
        let (status, _, refused) = server.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["param"], param, "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(
        bedrock.requests().len(),
        calls,
        "a refused request was sent"
    );
    // OpenAI scales large images itself.
    let (status, _, answer) = server
        .post(
            "/v1/chat/completions",
            &ask("gpt-4o", &[data_url(&png(9_000, 10, 100))]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    // An address on a listed host is fetched, and the model gets the bytes.
    let (status, _, answer) = server
        .post(
            "/v1/chat/completions",
            &ask("claude-3-opus", &[format!("{host}/cat.png")]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let sent = bedrock.requests().pop().unwrap().body;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            sent["messages"][0]["content"][0]["image"]["source"]["bytes"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(bytes, png(64, 48, 2_000));

    // Addresses that are not images, or lead elsewhere, or never end: the caller's 400.
    let port = host.rsplit(':').next().unwrap();
    let calls = bedrock.requests().len();
    for (url, expected) in [
        (format!("{host}/page.html"), "not an image"),
        (format!("{host}/moved.png"), "follows no redirects"),
        (format!("{host}/gone.png"), "404"),
        (format!("{host}/slow.png"), "did not arrive within 1s"),
        (format!("{host}/huge.png"), "more than 5000000 bytes"),
        // Only `*` allows it, and `*` never reaches loopback.
        (format!("https://127.0.0.2:{port}/cat.png"), "loopback"),
    ] {
        let (status, _, refused) = server
            .post(
                "/v1/chat/completions",
                &ask("claude-3-opus", std::slice::from_ref(&url)),
            )
            .await;
        assert_eq!(status, 400, "{url}: {refused}");
        assert_eq!(refused["error"]["param"], "messages.0.content", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{url}: {message}");
    }
    assert_eq!(
        bedrock.requests().len(),
        calls,
        "a refused request was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_addresses_are_refused_unless_configured() {
    let openai = ragway_testkit::openai::start().await.unwrap();
    let bedrock = ragway_testkit::bedrock::start().await.unwrap();
    let kendra = ragway_testkit::kendra::start().await.unwrap();
    let (host, _task) = image_host().await;
    let server = Server::start(&config(&openai.url(), &bedrock.url(), &kendra.url())).await;
    let (status, _, refused) = server
        .post(
            "/v1/chat/completions",
            &ask("gpt-4o", &[format!("{host}/cat.png")]),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["param"],
        "messages.0.content.0.image_url.url"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("fetch_hosts"), "{message}");
    assert!(openai.requests().is_empty());
}
