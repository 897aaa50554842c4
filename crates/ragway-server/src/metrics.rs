//! `GET /metrics` in Prometheus' text format: requests by route and status, their latency, and
//! the requests in flight. Routes are labelled by their pattern (`/stores/{name}/documents`),
//! never by the raw path, so labels stay few. Recorded through the `metrics` facade, so
//! providers and the pipeline add their own series the same way.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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

/// Middleware: counts and times every request by route pattern and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let in_flight = metrics::gauge!("ragway_requests_in_flight");
    in_flight.increment(1.0);
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::counter!("ragway_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("ragway_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
