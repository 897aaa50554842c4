//! Shared plumbing of every fake: binding, stop on drop, request recording, the script queue and the control endpoint.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Oldest requests are forgotten past this many, so a long-running fake stays bounded.
const RECORD_CAP: usize = 10_000;

/// Largest request body a fake reads.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A fake remote service listening on loopback; it stops when dropped.
pub struct Fake {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Fake {
    /// The socket address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order (control requests excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests().iter().cloned().collect()
    }

    /// Queues a behaviour for the next request; queued behaviours are used first in, first out.
    pub fn push(&self, scripted: Scripted) {
        self.state.script().push_back(scripted);
    }

    /// How many streaming responses the client dropped before they finished.
    pub fn cancelled(&self) -> usize {
        self.state.cancelled.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Fake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fake")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already be gone; nothing is left to stop then.
            let _ = shutdown.send(());
        }
    }
}

/// How to start a fake.
#[derive(Clone, Copy, Debug)]
pub struct FakeOptions {
    /// Loopback port to bind; 0 picks a free one.
    pub port: u16,
    /// Whether to keep requests for [`Fake::requests`]; benchmarks turn this off.
    pub record: bool,
    /// Pause before each streamed text chunk unless a script says otherwise, so a stream
    /// behaves like a model writing (the streaming benchmark).
    pub chunk_delay: Option<Duration>,
    /// Words in the answer when nothing is scripted (at least the five of the default
    /// sentence), so benchmark streams last as long as a real model's.
    pub answer_words: Option<usize>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            port: 0,
            record: true,
            chunk_delay: None,
            answer_words: None,
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Percent-decoded path, e.g. `/model/us.anthropic.claude-3-opus-20240229-v1:0/converse`.
    pub path: String,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Null` if it is not JSON.
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A behaviour queued for one request with [`Fake::push`] or `POST /__fake/script`.
#[derive(Clone, Debug, PartialEq)]
pub enum Scripted {
    /// Answer with this text instead of the default.
    Text(String),
    /// Fail with an HTTP error in the service's own error shape; 429 also carries `retry-after: 1`.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
    /// OpenAI only: fail with 429 in OpenAI's error shape and `retry-after` of this many
    /// seconds, for clients that must honour the server's wait.
    Throttled { retry_after_secs: u64 },
    /// Wait this long before the first byte, then answer normally.
    Delay(Duration),
    /// Report this stop reason (Bedrock `stopReason`, OpenAI `finish_reason`).
    StopReason(String),
    /// Streams only: send `after_chunks` text chunks, then a Bedrock exception event or, for
    /// OpenAI, cut the connection.
    StreamException {
        after_chunks: usize,
        kind: String,
        message: String,
    },
    /// Streams only: answer 200, then fail before anything else — a Bedrock exception event in
    /// place of `messageStart`, or for OpenAI an `{"error": ...}` event in place of the role
    /// chunk.
    StreamRefused { kind: String, message: String },
    /// Streams only: wait this long before each text chunk, so a client can hang up mid-stream.
    StreamDelay(Duration),
    /// Answer with a call of this tool (arguments as JSON text) instead of text; the request
    /// must offer tools, or the fake refuses it as the real service would not call one.
    ToolCall { name: String, arguments: String },
    /// Read the request, then close the connection without answering (a reset connection).
    Reset,
    /// Answer 200 with a body that is not what the service sends (broken JSON, or a broken
    /// event stream).
    Garbage,
}

pub(crate) type Shared = Arc<FakeState>;

/// What a fake's handlers share: the record log, the script queue and counters.
#[derive(Debug)]
pub(crate) struct FakeState {
    record: bool,
    /// Default pause before each streamed chunk.
    pub(crate) chunk_delay: Option<Duration>,
    /// Words in the default answer.
    pub(crate) answer_words: Option<usize>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    script: Mutex<VecDeque<Scripted>>,
    cancelled: AtomicUsize,
    ids: AtomicU64,
}

impl FakeState {
    fn new(options: &FakeOptions) -> Self {
        Self {
            record: options.record,
            chunk_delay: options.chunk_delay,
            answer_words: options.answer_words,
            requests: Mutex::new(VecDeque::new()),
            script: Mutex::new(VecDeque::new()),
            cancelled: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
        }
    }

    /// A number unique within this fake, for response ids.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn requests(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        // A panicking test thread must not hide the log from the others.
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn script(&self) -> MutexGuard<'_, VecDeque<Scripted>> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, request: RecordedRequest) {
        let mut requests = self.requests();
        if requests.len() == RECORD_CAP {
            requests.pop_front();
        }
        requests.push_back(request);
    }
}

/// Binds loopback, serves `app` plus the control routes, and returns the handle.
pub(crate) async fn start(
    options: FakeOptions,
    app: impl FnOnce(Shared) -> Router,
) -> anyhow::Result<Fake> {
    let state: Shared = Arc::new(FakeState::new(&options));
    let router = app(state.clone()).merge(control(state.clone()));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Without TCP_NODELAY small stream frames wait on delayed ACKs.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!("fake could not set TCP_NODELAY: {err}");
        }
    });
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let signal = async {
            // A dropped sender means the same as a sent stop.
            let _ = stopped.await;
        };
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::warn!("fake on {addr} stopped with an error: {err}");
        }
    });
    Ok(Fake {
        addr,
        state,
        shutdown: Some(shutdown),
    })
}

/// A request to a fake's service routes: recorded on arrival, with its scripted behaviour taken
/// from the queue.
pub(crate) struct Call {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) script: Option<Scripted>,
    pub(crate) started: Instant,
    pub(crate) state: Shared,
}

impl Call {
    /// Sleeps if the script asked for a delay before answering.
    pub(crate) async fn scripted_delay(&self) {
        if let Some(Scripted::Delay(delay)) = &self.script {
            tokio::time::sleep(*delay).await;
        }
    }

    /// Milliseconds since the request arrived, for `latencyMs`.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts counting a streaming response as cancelled unless it is finished.
    pub(crate) fn stream_guard(&self) -> StreamGuard {
        StreamGuard {
            state: self.state.clone(),
            done: false,
        }
    }
}

impl<S> FromRequest<S> for Call
where
    S: Send + Sync,
    Shared: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let started = Instant::now();
        let state = Shared::from_ref(state);
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|err| (StatusCode::BAD_REQUEST, err.to_string()).into_response())?;
        if state.record {
            state.remember(RecordedRequest {
                method: parts.method.to_string(),
                path: percent_decode(parts.uri.path()),
                headers: parts
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            });
        }
        let script = state.script().pop_front();
        Ok(Self {
            headers: parts.headers,
            body,
            script,
            started,
            state,
        })
    }
}

/// Lives inside a streaming body; if the body is dropped before [`StreamGuard::finish`], the
/// client hung up and the fake counts a cancellation.
pub(crate) struct StreamGuard {
    state: Shared,
    done: bool,
}

impl StreamGuard {
    pub(crate) fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The answer to a scripted [`Scripted::Reset`] or [`Scripted::Garbage`], if one was scripted:
/// a body that fails before hyper has written anything, so the connection closes with no
/// response at all, or `garbage` with status 200.
pub(crate) fn scripted_fault(
    call: &Call,
    content_type: &'static str,
    garbage: &'static [u8],
) -> Option<Response> {
    match &call.script {
        Some(Scripted::Reset) => {
            let fail = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("scripted connection reset"))
            });
            Some(axum::body::Body::from_stream(fail).into_response())
        }
        Some(Scripted::Garbage) => {
            let mut response = (StatusCode::OK, garbage).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Some(response)
        }
        _ => None,
    }
}

/// The HTTP status of a scripted error; an out-of-range status becomes 500.
pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON error response; 429 adds `retry-after: 1` as real services do.
pub(crate) fn json_error(
    status: StatusCode,
    content_type: &'static str,
    extra: &[(&'static str, &str)],
    body: &serde_json::Value,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

/// An AWS restJson1 error (Bedrock's protocols): the type in `x-amzn-ErrorType`, the text in
/// `{"message": ...}`.
pub(crate) fn rest_json_error(status: StatusCode, kind: &str, message: &str) -> Response {
    json_error(
        status,
        "application/json",
        &[("x-amzn-errortype", kind)],
        &serde_json::json!({ "message": message }),
    )
}

/// Decodes `%XX` escapes; malformed escapes stay as written.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Routes every fake serves beside its service: scripting and reading the record over HTTP, for
/// clients in other processes (the boto3 check, benchmarks).
fn control(state: Shared) -> Router {
    Router::new()
        .route("/__fake/script", post(push_script))
        .route("/__fake/requests", get(list_requests))
        .with_state(state)
}

/// Body of `POST /__fake/script`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ScriptCommand {
    Text {
        value: String,
    },
    Error {
        status: u16,
        error: String,
        message: String,
    },
    Delay {
        ms: u64,
    },
    StopReason {
        value: String,
    },
    StreamException {
        after_chunks: usize,
        exception: String,
        message: String,
    },
    StreamRefused {
        exception: String,
        message: String,
    },
    StreamDelay {
        ms: u64,
    },
    ToolCall {
        name: String,
        arguments: String,
    },
    Reset,
    Garbage,
}

impl From<ScriptCommand> for Scripted {
    fn from(command: ScriptCommand) -> Self {
        match command {
            ScriptCommand::Text { value } => Scripted::Text(value),
            ScriptCommand::Error {
                status,
                error,
                message,
            } => Scripted::Error {
                status,
                kind: error,
                message,
            },
            ScriptCommand::Delay { ms } => Scripted::Delay(Duration::from_millis(ms)),
            ScriptCommand::StopReason { value } => Scripted::StopReason(value),
            ScriptCommand::StreamException {
                after_chunks,
                exception,
                message,
            } => Scripted::StreamException {
                after_chunks,
                kind: exception,
                message,
            },
            ScriptCommand::StreamRefused { exception, message } => Scripted::StreamRefused {
                kind: exception,
                message,
            },
            ScriptCommand::StreamDelay { ms } => Scripted::StreamDelay(Duration::from_millis(ms)),
            ScriptCommand::ToolCall { name, arguments } => Scripted::ToolCall { name, arguments },
            ScriptCommand::Reset => Scripted::Reset,
            ScriptCommand::Garbage => Scripted::Garbage,
        }
    }
}

async fn push_script(State(state): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<ScriptCommand>(&body) {
        Ok(command) => {
            let mut script = state.script();
            script.push_back(command.into());
            let queued = script.len();
            drop(script);
            axum::Json(serde_json::json!({ "queued": queued })).into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "message": format!("bad script: {err}") })),
        )
            .into_response(),
    }
}

async fn list_requests(State(state): State<Shared>) -> Response {
    let requests: Vec<RecordedRequest> = state.requests().iter().cloned().collect();
    axum::Json(requests).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_handles_model_ids_and_bad_escapes() {
        assert_eq!(
            percent_decode("/model/us.anthropic.claude-3-opus-20240229-v1%3A0/converse"),
            "/model/us.anthropic.claude-3-opus-20240229-v1:0/converse"
        );
        assert_eq!(percent_decode("/a%2Fb%zz%4"), "/a/b%zz%4");
    }

    #[test]
    fn script_commands_parse() {
        let parse = |text: &str| -> Scripted {
            serde_json::from_str::<ScriptCommand>(text).unwrap().into()
        };
        assert_eq!(
            parse(
                r#"{"kind":"stream_exception","after_chunks":2,"exception":"throttlingException","message":"Too many requests"}"#
            ),
            Scripted::StreamException {
                after_chunks: 2,
                kind: "throttlingException".into(),
                message: "Too many requests".into()
            }
        );
        assert_eq!(
            parse(
                r#"{"kind":"stream_refused","exception":"throttlingException","message":"busy"}"#
            ),
            Scripted::StreamRefused {
                kind: "throttlingException".into(),
                message: "busy".into()
            }
        );
        assert_eq!(
            parse(
                r#"{"kind":"error","status":429,"error":"ThrottlingException","message":"slow down"}"#
            ),
            Scripted::Error {
                status: 429,
                kind: "ThrottlingException".into(),
                message: "slow down".into()
            }
        );
        assert_eq!(
            parse(r#"{"kind":"stop_reason","value":"some_new_reason"}"#),
            Scripted::StopReason("some_new_reason".into())
        );
        assert_eq!(
            parse(r#"{"kind":"delay","ms":250}"#),
            Scripted::Delay(Duration::from_millis(250))
        );
        assert_eq!(parse(r#"{"kind":"reset"}"#), Scripted::Reset);
        assert_eq!(parse(r#"{"kind":"garbage"}"#), Scripted::Garbage);
        assert!(serde_json::from_str::<ScriptCommand>(r#"{"kind":"delay","ms":1,"x":2}"#).is_err());
        assert!(serde_json::from_str::<ScriptCommand>(r#"{"kind":"nope"}"#).is_err());
    }
}
