//! OpenTelemetry spans of a request: the server span, its retrieval, its model call and its
//! embeddings call, the model calls with the GenAI semantic conventions' attributes (`gen_ai.system`,
//! `gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...).
//!
//! They are plain `tracing` spans under their own target, [`TARGET`], made only once the binary
//! exports traces ([`set_exporting`]): without an exporter nothing is made, and the logs never
//! show them (the binary keeps the target out of its log layer). No span carries prompt or
//! answer text, and no secret: names, model ids, numbers and the request id only.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderMap, Method, StatusCode};
use futures::StreamExt as _;
use ragway_core::{ChatRequest, Delta, DeltaStream, Usage};
use tracing::Span;
use tracing::field::Empty;

use crate::error::ApiError;
use crate::registry::{EmbedderModel, Llm, Registry, Store};
use crate::resilience::Answered;

/// The target of every span made for OpenTelemetry; the exporter takes only these.
pub const TARGET: &str = "ragway::otel";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Called by the binary once it exports spans of [`TARGET`].
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether spans are exported (else none is made).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// `gen_ai.system` of a provider kind (`openai`, `bedrock`, `local`).
pub fn gen_ai_system(kind: &str) -> &str {
    match kind {
        "bedrock" => "aws.bedrock",
        other => other,
    }
}

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

/// The span of a search in `store` for `top_k` passages.
pub fn retrieval(store: &Store, top_k: usize) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "retrieval",
        otel.name = format!("retrieval {}", store.name),
        otel.kind = "internal",
        otel.status_code = Empty,
        ragway.vector_store.name = %store.name,
        ragway.vector_store.kind = store.kind,
        ragway.retrieval.top_k = i64::try_from(top_k).unwrap_or(i64::MAX),
        ragway.retrieval.passages = Empty,
        error.type = Empty,
        request_id = crate::request_id::current(),
    )
}

/// Records a search's outcome on its span.
pub fn retrieved<T, E: std::fmt::Display>(span: &Span, result: &Result<Vec<T>, E>) {
    match result {
        Ok(passages) => {
            span.record(
                "ragway.retrieval.passages",
                i64::try_from(passages.len()).unwrap_or(i64::MAX),
            );
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", "retrieval_failed");
        }
    }
}

/// The span of a chat model call (`chat gpt-4o`), retries and fallbacks included: the
/// request's `gen_ai.*` attributes now, the response's when it is recorded.
pub fn chat(llm: &Llm, request: &ChatRequest) -> Span {
    if !exporting() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "chat",
        otel.name = format!("chat {}", llm.model_id),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.system = gen_ai_system(llm.kind),
        gen_ai.request.model = %llm.model_id,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        ragway.llm.name = %llm.name,
        ragway.fallback_from = Empty,
        error.type = Empty,
        request_id = crate::request_id::current(),
    );
    if let Some(max_tokens) = request.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(max_tokens));
    }
    if let Some(temperature) = request.temperature {
        span.record("gen_ai.request.temperature", decimal(temperature));
    }
    if let Some(top_p) = request.top_p {
        span.record("gen_ai.request.top_p", decimal(top_p));
    }
    span
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
        request_id = crate::request_id::current(),
    )
}

/// An `f32` from a request as the decimal the client wrote (0.3, not 0.30000001192092896).
fn decimal(value: f32) -> f64 {
    (f64::from(value) * 1e6).round() / 1e6
}

/// Records which model answered (after a fallback, another than the one asked for).
pub fn answered(span: &Span, registry: &Registry, answered: &Answered) {
    if span.is_none() {
        return;
    }
    if let Ok(llm) = registry.llm(&answered.model) {
        span.record("gen_ai.system", gen_ai_system(llm.kind));
        span.record("gen_ai.response.model", llm.model_id.as_str());
    }
    if let Some(from) = &answered.fallback_from {
        span.record("ragway.fallback_from", from.as_str());
    }
}

/// Records the tokens the model reported (an embeddings span has no output tokens).
pub fn usage(span: &Span, usage: &Usage) {
    span.record("gen_ai.usage.input_tokens", i64::from(usage.input_tokens));
    span.record("gen_ai.usage.output_tokens", i64::from(usage.output_tokens));
}

/// Records a failed call on its span.
pub fn failed(span: &Span, error: &ApiError) {
    if span.is_none() {
        return;
    }
    span.record("otel.status_code", "ERROR");
    let kind = match error {
        ApiError::Provider(error) => error.kind().to_owned(),
        other => other.status().0.as_u16().to_string(),
    };
    span.record("error.type", kind);
}

/// `stream` as it is, recording its usage on `span` and ending the span with the stream.
pub fn observe_stream(stream: DeltaStream, span: Span) -> DeltaStream {
    if span.is_none() {
        return stream;
    }
    let mut stream = stream;
    Box::pin(async_stream::stream! {
        while let Some(item) = stream.next().await {
            match &item {
                Ok(Delta::Usage(reported)) => usage(&span, reported),
                Err(error) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", error.kind());
                }
                Ok(_) => {}
            }
            yield item;
        }
    })
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
    fn bedrock_is_aws_bedrock_and_the_others_keep_their_names() {
        assert_eq!(gen_ai_system("bedrock"), "aws.bedrock");
        assert_eq!(gen_ai_system("openai"), "openai");
        assert_eq!(gen_ai_system("local"), "local");
    }

    #[test]
    fn temperatures_are_recorded_as_written() {
        assert_eq!(decimal(0.3), 0.3);
        assert_eq!(decimal(1.0), 1.0);
    }

    #[test]
    fn nothing_is_made_without_an_exporter() {
        assert!(!exporting());
        assert!(server(&Method::POST, &HeaderMap::new(), "id").is_none());
    }
}
