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
//! model and store become known deep in the handler; [`label`] records them for the request
//! being served (a task-local slot that [`track`] opens around each request). Recorded through
//! the `metrics` facade, so providers and the pipeline add their own series the same way.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ragway_core::{Delta, DeltaStream, ProviderError, Usage};

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
    Box::pin(Observed {
        stream,
        model,
        called,
        usage: Usage::default(),
        said_something: false,
        failed: false,
        recorded: false,
    })
}

/// A stream under [`observe_stream`]: a plain wrapper rather than a generator, since it is
/// polled once per streamed event, and one that records on drop as well as at the end.
struct Observed {
    stream: DeltaStream,
    model: String,
    called: Instant,
    usage: Usage,
    said_something: bool,
    failed: bool,
    /// The end was recorded (it is recorded once, at the end or on drop).
    recorded: bool,
}

impl Observed {
    fn record(&mut self, ended: bool) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        if ended && !self.failed {
            generated(&self.model, self.called.elapsed(), &self.usage);
        } else {
            tokens(&self.model, &self.usage);
        }
    }
}

impl Stream for Observed {
    type Item = Result<Delta, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.recorded {
            return Poll::Ready(None);
        }
        let item = ready!(this.stream.poll_next_unpin(cx));
        match &item {
            Some(Ok(Delta::Text(_) | Delta::ToolCall { .. })) if !this.said_something => {
                this.said_something = true;
                first_token(&this.model, this.called.elapsed());
            }
            Some(Ok(Delta::Usage(reported))) => this.usage = *reported,
            Some(Err(_)) => this.failed = true,
            Some(Ok(_)) => {}
            None => this.record(true),
        }
        Poll::Ready(item)
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.record(false);
    }
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

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use ragway_core::FinishReason;

    use super::*;

    #[test]
    fn key_holders_are_named_only_on_an_internal_metrics_address() {
        show_key_names(true);
        assert_eq!(key_label("team-a"), "team-a");
        show_key_names(false);
        assert_eq!(key_label("team-a"), "hidden");
    }

    /// What `run` recorded, in the text format, through a recorder of its own.
    fn recorded(run: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, run);
        handle.render()
    }

    fn observed(items: Vec<Result<Delta, ProviderError>>) -> DeltaStream {
        observe_stream(
            Box::pin(futures::stream::iter(items)),
            "m".into(),
            Instant::now(),
        )
    }

    fn usage() -> Delta {
        Delta::Usage(Usage {
            input_tokens: 3,
            output_tokens: 5,
        })
    }

    #[test]
    fn a_stream_read_to_its_end_records_first_words_generation_and_tokens() {
        let text = recorded(|| {
            let items = vec![
                Ok(Delta::Started),
                Ok(Delta::Text("hi".into())),
                Ok(Delta::Finish(FinishReason::Stop)),
                Ok(usage()),
            ];
            let passed: Vec<_> = block_on(observed(items).collect());
            assert_eq!(passed.len(), 4, "every item passes through");
        });
        assert!(
            text.contains(r#"ragway_tokens_total{model="m",type="output"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ragway_generation_duration_seconds_count{model="m"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ragway_time_to_first_token_seconds_count{model="m"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_stream_dropped_midway_or_failed_counts_its_tokens_but_no_generation_time() {
        let dropped = recorded(|| {
            let mut stream = observed(vec![
                Ok(usage()),
                Ok(Delta::Text("hi".into())),
                Ok(Delta::Text("more".into())),
            ]);
            block_on(stream.next()).unwrap().unwrap();
            block_on(stream.next()).unwrap().unwrap();
            // The client left here.
        });
        let failed = recorded(|| {
            let items = vec![
                Ok(usage()),
                Err(ProviderError::unreachable("openai", "stream broke off")),
            ];
            let passed: Vec<_> = block_on(observed(items).collect());
            assert!(passed[1].is_err());
        });
        for text in [dropped, failed] {
            assert!(
                text.contains(r#"ragway_tokens_total{model="m",type="input"} 3"#),
                "{text}"
            );
            assert!(
                !text.contains("ragway_generation_duration_seconds"),
                "{text}"
            );
        }
    }
}
