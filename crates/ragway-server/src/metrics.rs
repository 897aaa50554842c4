//! `GET /metrics` in Prometheus' text format, and the recorders behind it.
//!
//! - `ragway_requests_total{route, method, status, model, store}` and
//!   `ragway_request_duration_seconds{route}` (until the response head; a stream's length is in
//!   the generation histogram), `ragway_requests_in_flight`.
//! - `ragway_retrieval_duration_seconds{store}`, `ragway_time_to_first_token_seconds{model}`
//!   (streams: from the call until the model's first words), `ragway_generation_duration_seconds{model}`
//!   (the whole answer, streamed or not) and `ragway_tokens_total{model, type}` (`input` and
//!   `output`, as the model reported them), by the model that answered.
//! - `ragway_rate_limited_total{key, limit}`: requests refused over a key's requests- or
//!   tokens-per-minute; `ragway_rate_limit_store_unavailable_total{limit, step}`: each time a
//!   limit could not be counted because Redis did not answer, at admission (`step="admit"`:
//!   the request was let in uncounted or refused, as `[server.state] redis_unavailable` says) or
//!   when settling a reservation (`step="settle"`). Recorded in `crate::rate_limit`.
//!
//! Routes are labelled by their pattern (`/stores/{name}/documents`), never by the raw path,
//! and model and store labels only ever hold configured names, so labels stay few. A request's
//! model and store become known deep in the engine, which records them in a task-local slot
//! that [`track`] opens around each request (`ragway_engine::metrics::label`). Recorded through
//! the `metrics` facade, so providers and the engine add their own series the same way
//! (`ragway_engine::metrics` holds the retrieval, generation and token series).

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
pub use ragway_engine::metrics::{label, tokens};

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
    let cpu = ragway_core::cpu::pool();
    metrics::gauge!("ragway_cpu_jobs_running").set(cpu.busy() as f64);
    metrics::gauge!("ragway_cpu_jobs_waiting").set(cpu.waiting() as f64);
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
    let (response, labels) = ragway_engine::metrics::LABELS
        .scope(RefCell::default(), async {
            let response = next.run(request).await;
            (response, ragway_engine::metrics::LABELS.with(RefCell::take))
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

/// Whether series may name API keys' holders: only when `/metrics` has an address of its own
/// (`[server] metrics_bind`, an internal port); on the API's port anyone may read it.
static KEY_NAMES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets series name keys' holders (see [`key_label`]); set once at start-up.
pub fn show_key_names(show: bool) {
    KEY_NAMES.store(show, std::sync::atomic::Ordering::Relaxed);
}

/// The `key` label of a per-key series: the holder's name when `/metrics` is internal, else
/// `hidden`.
pub fn key_label(name: &str) -> String {
    if KEY_NAMES.load(std::sync::atomic::Ordering::Relaxed) {
        name.to_owned()
    } else {
        "hidden".to_owned()
    }
}

/// A connection turned away at `[server.limits] max_connections`.
pub fn connection_refused() {
    metrics::counter!("ragway_connections_refused_total").increment(1);
}

/// A response-cache lookup for `model`: a hit or a miss (`ragway_cache_lookups_total`).
pub fn cache_lookup(model: &str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("ragway_cache_lookups_total", "model" => model.to_owned(), "result" => result)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_holders_are_named_only_on_an_internal_metrics_address() {
        show_key_names(true);
        assert_eq!(key_label("team-a"), "team-a");
        show_key_names(false);
        assert_eq!(key_label("team-a"), "hidden");
    }
}
