//! Every request gets an id: the client's `x-request-id` when it sends one (so a caller can
//! follow its own id through ragway's logs), a fresh UUID otherwise. The id is on the
//! request's log span — with the method, the path, the status and the latency, never the
//! prompt — and echoed back in the response's `x-request-id`. When traces are exported, the
//! request's trace span is opened here too (`crate::telemetry`).

use std::time::Duration;

use axum::extract::Request as AxumRequest;
use axum::http::{HeaderName, Request, Response};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as AxumResponse};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::{Instrument as _, Span};

use crate::HttpService;

/// The header that carries the id both ways.
pub const HEADER: &str = "x-request-id";

/// Middleware: makes the request's id available to the engine's spans
/// (`ragway_engine::telemetry::request_id`) while it is handled, inside
/// the request's trace span when traces are exported.
async fn scope(request: AxumRequest, next: Next) -> AxumResponse {
    if !crate::telemetry::exporting() {
        return next.run(request).await;
    }
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = crate::telemetry::server(request.method(), request.headers(), &id);
    let response = ragway_engine::telemetry::REQUEST_ID
        .scope(id, next.run(request))
        .instrument(span.clone())
        .await;
    crate::telemetry::responded(&span, response.status());
    response
}

/// Wraps `inner` so that every request has an id, logged and echoed.
///
/// The layers wrap the service as a whole rather than each route (`Router::layer`), so that a
/// request clones them once instead of once per route layer beneath them.
pub fn layer(inner: impl HttpService) -> impl HttpService {
    let header = HeaderName::from_static(HEADER);
    // Layers run outside in (the first listed runs first): the id is set, then the span sees
    // it, and the response gets it last. The trace layer's body is boxed back into axum's.
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(header.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                        // The API key's holder, filled in once the key is checked.
                        key = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|response: &Response<_>, latency: Duration, _span: &Span| {
                    tracing::info!(
                        status = response.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1e3,
                        "answered"
                    );
                }),
        )
        .layer(PropagateRequestIdLayer::new(header))
        .layer(axum::middleware::from_fn(scope))
        .service(inner)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    async fn answer(id: Option<&str>) -> Option<String> {
        let app = layer(Router::new().route("/", get(|| async { "ok" })));
        let mut request = Request::builder().uri("/");
        if let Some(id) = id {
            request = request.header(HEADER, id);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        response
            .headers()
            .get(HEADER)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn the_clients_id_is_echoed() {
        assert_eq!(
            answer(Some("trace-123")).await.as_deref(),
            Some("trace-123")
        );
    }

    #[tokio::test]
    async fn a_missing_id_is_made_and_echoed() {
        let first = answer(None).await.unwrap();
        let second = answer(None).await.unwrap();
        assert_eq!(first.len(), 36, "a UUID: {first}");
        assert_ne!(first, second);
    }
}
