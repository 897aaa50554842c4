//! OpenTelemetry spans of the engine's work: a request's retrieval and its model call, with
//! the GenAI semantic conventions' attributes (`gen_ai.system`, `gen_ai.request.model`,
//! `gen_ai.usage.input_tokens`, ...). The server adds the request's own span around them.
//!
//! They are plain `tracing` spans under their own target, [`TARGET`], made only once the binary
//! exports traces ([`set_exporting`]): without an exporter nothing is made, and the logs never
//! show them (the binary keeps the target out of its log layer). No span carries prompt or
//! answer text, and no secret: names, model ids, numbers and the request id only.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use ragway_core::{ChatRequest, Delta, DeltaStream, Usage};
use tracing::Span;
use tracing::field::Empty;

use crate::error::EngineError;
use crate::registry::{Llm, Registry, Store};
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

tokio::task_local! {
    /// The id of the request being served; the server opens it around each request.
    pub static REQUEST_ID: String;
}

/// The id of the request being served, for the trace spans (they carry it as `request_id`);
/// empty when traces are off or outside a request (the CLI).
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
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
        request_id = request_id(),
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
        request_id = request_id(),
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

/// An `f32` from a request as the decimal the client wrote (0.3, not 0.30000001192092896).
pub fn decimal(value: f32) -> f64 {
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

/// Records a failed call on its span: the provider's kind of failure, else the status the
/// request is refused with.
pub fn failed(span: &Span, error: &EngineError) {
    let kind = match error {
        EngineError::Provider(error) => error.kind(),
        EngineError::UnknownModel { .. }
        | EngineError::UnknownStore { .. }
        | EngineError::BadRequest { .. } => "400",
        EngineError::CoolingDown { .. } => "503",
        EngineError::InvalidAnswer { .. } => "invalid_answer",
    };
    failed_as(span, kind);
}

/// Records a failed call on its span as `kind` (`error.type`).
pub fn failed_as(span: &Span, kind: &str) {
    if span.is_none() {
        return;
    }
    span.record("otel.status_code", "ERROR");
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
}
