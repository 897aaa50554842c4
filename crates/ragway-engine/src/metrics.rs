//! The engine's series, recorded through the `metrics` facade (the server installs the
//! recorder and renders `/metrics`): `ragway_retrieval_duration_seconds{store}`,
//! `ragway_time_to_first_token_seconds{model}` (streams: from the call until the model's first
//! words), `ragway_generation_duration_seconds{model}` (the whole answer, streamed or not),
//! `ragway_tokens_total{model, type}` (`input` and `output`, as the model reported them), by
//! the model that answered; and the retries, fallbacks and cooldowns of `crate::resilience`.
//!
//! A request's model and store become known deep in the engine; [`label`] records them for
//! the request being served, in [`LABELS`], a task-local slot the server opens around each
//! request for its `ragway_requests_total` line.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use ragway_core::{Delta, DeltaStream, ProviderError, Usage};

/// The configured model and store a request named, once the handler has resolved them.
#[derive(Default)]
pub struct Labels {
    pub model: String,
    pub store: String,
}

tokio::task_local! {
    /// The labels of the request being served; opened by the server around each request.
    pub static LABELS: RefCell<Labels>;
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

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use ragway_core::FinishReason;

    use super::*;

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
