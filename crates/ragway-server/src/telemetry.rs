//! OpenTelemetry spans of a request: the server span, and the embeddings call of
//! `/v1/embeddings`. The engine makes the spans of retrieval and model calls beneath them
//! (`ragway_engine::telemetry`, which also holds the switch, [`set_exporting`], and the
//! target, [`TARGET`]). No span carries prompt or answer text, and no secret.

use axum::http::{HeaderMap, Method, StatusCode};
use ragway_engine::registry::EmbedderModel;
pub use ragway_engine::telemetry::{
    TARGET, exporting, failed, failed_as, gen_ai_system, set_exporting, usage,
};
use tracing::Span;
use tracing::field::Empty;

/// The span of one HTTP request, a child of the caller's trace when its headers carry a W3C
/// `traceparent`. Named by the method until the route is known ([`route`]).
pub fn server(method: &Method, headers: &HeaderMap, request_id: &str) -> Span {
    if !exporting() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        http.response.status_code = Empty,
        request_id,
    );
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(headers))
    });
    // Without a `traceparent` the context is empty and the span starts a trace of its own.
    let _ = span.set_parent(parent);
    span
}

/// Names the request's span by its route (`POST /stores/{name}/documents`): the current span
/// when called from a route's middleware.
pub fn route(method: &str, route: &str) {
    if exporting() {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let span = Span::current();
        span.record("http.route", route);
        // The span has started: its name changes through OpenTelemetry, not a field.
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
    }
}

/// Records the response status on a request's span.
pub fn responded(span: &Span, status: StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of an embeddings call (`embeddings text-embedding-3-small`) for `inputs` texts.
pub fn embeddings(model: &EmbedderModel, inputs: usize, base64: bool) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "embeddings",
        otel.name = format!("embeddings {}", model.model_id),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "embeddings",
        gen_ai.system = gen_ai_system(model.kind),
        gen_ai.request.model = %model.model_id,
        gen_ai.request.encoding_formats = if base64 { "base64" } else { "float" },
        gen_ai.usage.input_tokens = Empty,
        ragway.embedder.name = %model.name,
        ragway.embeddings.inputs = i64::try_from(inputs).unwrap_or(i64::MAX),
        error.type = Empty,
        request_id = ragway_engine::telemetry::request_id(),
    )
}

/// Request headers as OpenTelemetry's propagators read them.
struct Headers<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_made_without_an_exporter() {
        assert!(!exporting());
        assert!(server(&Method::POST, &HeaderMap::new(), "id").is_none());
    }
}
