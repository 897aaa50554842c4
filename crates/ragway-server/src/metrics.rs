//! `GET /metrics` in Prometheus' text format, and the recorders behind it.
//!
//! - `ragway_requests_total{route, method, status, model, store}` and
//!   `ragway_request_duration_seconds{route}` (until the response head; a stream's length is in
//!   the generation histogram), `ragway_requests_in_flight`.
//! - `ragway_retrieval_duration_seconds{store}`, `ragway_time_to_first_token_seconds{model}`
//!   (streams: from the call until the model's first words), `ragway_generation_duration_seconds{model}`
//!   (the whole answer, streamed or not) and `ragway_tokens_total{model, type}` (`input` and
//!   `output`, as the model reported them), by the model that answered.
//!
//! Routes are labelled by their pattern (`/stores/{name}/documents`), never by the raw path,
//! and model and store labels only ever hold configured names, so labels stay few. A request's
//! model and store become known deep in the handler; [`label`] records them for the request
//! being served (a task-local slot that [`track`] opens around each request). Recorded through
//! the `metrics` facade, so providers and the pipeline add their own series the same way.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ragway_core::{Delta, DeltaStream, Usage};

/// Latency buckets in seconds: from a cached health check to a long local generation.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it. None when another recorder
/// was installed first (then /metrics says so).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!("metrics are off: {error}");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 503, description = "The metrics recorder could not be installed", body = String, content_type = "text/plain"),
    ),
)]
pub async fn render() -> Response {
    match install() {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}

/// A router serving only `GET /metrics`: merged into the API, or served on
/// `[server] metrics_bind` alone.
pub fn router() -> axum::Router {
    axum::Router::new().route("/metrics", get(render))
}

/// The configured model and store a request named, once the handler has resolved them.
#[derive(Default)]
struct Labels {
    model: String,
    store: String,
}

tokio::task_local! {
    static LABELS: RefCell<Labels>;
}

/// Records the model and the store (either may be empty) that the request being served named,
/// for its `ragway_requests_total` line. Only configured names may be given. Outside a
/// request (the CLI) it does nothing.
pub fn label(model: &str, store: &str) {
    let _outside_a_request = LABELS.try_with(|labels| {
        let mut labels = labels.borrow_mut();
        if !model.is_empty() {
            model.clone_into(&mut labels.model);
        }
        if !store.is_empty() {
            store.clone_into(&mut labels.store);
        }
    });
}

/// A search in `store` took `elapsed`.
pub fn retrieved(store: &str, elapsed: Duration) {
    metrics::histogram!("ragway_retrieval_duration_seconds", "store" => store.to_owned())
        .record(elapsed.as_secs_f64());
}

/// `model` said its first words `elapsed` after it was called (streams).
pub fn first_token(model: &str, elapsed: Duration) {
    metrics::histogram!("ragway_time_to_first_token_seconds", "model" => model.to_owned())
        .record(elapsed.as_secs_f64());
}

/// `model` finished an answer `elapsed` after it was called, reporting `usage`.
pub fn generated(model: &str, elapsed: Duration, usage: &Usage) {
    metrics::histogram!("ragway_generation_duration_seconds", "model" => model.to_owned())
        .record(elapsed.as_secs_f64());
    tokens(model, usage);
}

/// Tokens `model` read and wrote.
pub fn tokens(model: &str, usage: &Usage) {
    metrics::counter!("ragway_tokens_total", "model" => model.to_owned(), "type" => "input")
        .increment(u64::from(usage.input_tokens));
    metrics::counter!("ragway_tokens_total", "model" => model.to_owned(), "type" => "output")
        .increment(u64::from(usage.output_tokens));
}

/// `stream` as it is, recording the time to its first words, its usage and, when it ends
/// without an error, the whole generation time since `called`. A stream dropped midway (the
/// client left) or failed counts the tokens it reported but no generation time.
pub fn observe_stream(stream: DeltaStream, model: String, called: Instant) -> DeltaStream {
    let mut stream = stream;
    Box::pin(async_stream::stream! {
        let mut usage = Usage::default();
        let mut failed = false;
        let mut said_something = false;
        while let Some(item) = stream.next().await {
            match &item {
                Ok(Delta::Text(_) | Delta::ToolCall { .. }) if !said_something => {
                    said_something = true;
                    first_token(&model, called.elapsed());
                }
                Ok(Delta::Usage(reported)) => usage = *reported,
                Err(_) => failed = true,
                Ok(_) => {}
            }
            yield item;
        }
        if failed {
            tokens(&model, &usage);
        } else {
            generated(&model, called.elapsed(), &usage);
        }
    })
}

/// Middleware: counts and times every request by route pattern, status, model and store.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    // The request's trace span is named by its route, known only now.
    crate::telemetry::route(&method, &route);
    let started = Instant::now();
    let in_flight = metrics::gauge!("ragway_requests_in_flight");
    in_flight.increment(1.0);
    let (response, labels) = LABELS
        .scope(RefCell::default(), async {
            let response = next.run(request).await;
            (response, LABELS.with(RefCell::take))
        })
        .await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "ragway_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status,
        "model" => labels.model,
        "store" => labels.store,
    )
    .increment(1);
    metrics::histogram!("ragway_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
