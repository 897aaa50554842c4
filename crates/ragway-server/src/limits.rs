//! `[server.limits]` at work: how many requests run at once (past the limit: 503 with
//! `Retry-After` at once, never a queue), how long one may take (504), and how long a stream
//! may wait for its next piece. Body size is enforced by axum's body limit and reported by
//! the body extractors (`json.rs`) as a 413 in the route's shape; prompt and `max_tokens`
//! ceilings are checked with the rest of each body's validation.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::{Stream, StreamExt as _};
use ragway_core::limits::LimitsConfig;
use ragway_core::quiet::{Quiet, QuietTimer};
use ragway_core::{Delta, DeltaStream, ProviderError};
use tokio::sync::Semaphore;

use crate::error::{ApiError, in_route_shape};

/// The body size limit, in the request's extensions for the body extractors' 413.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// The shared state of the limits middleware.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
    timeout: Duration,
    body: BodyLimit,
}

impl Admission {
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            limit: limits.max_in_flight,
            timeout: limits.request_timeout(),
            body: BodyLimit(limits.max_body_bytes),
        }
    }
}

/// The middleware: takes a slot or answers 503 at once, and answers 504 if the handler has
/// not produced a response within the request timeout. The slot is held until the response
/// body (a stream included) is finished or dropped.
pub async fn admit(
    State(admission): State<Admission>,
    mut request: Request,
    next: Next,
) -> Response {
    request.extensions_mut().insert(admission.body);
    let path = request.uri().path().to_owned();
    let Ok(permit) = admission.slots.clone().try_acquire_owned() else {
        metrics::counter!("ragway_overloaded_total").increment(1);
        return in_route_shape(
            &path,
            ApiError::Overloaded {
                limit: admission.limit,
            },
        );
    };
    match tokio::time::timeout(admission.timeout, next.run(request)).await {
        Ok(response) => response.map(|body| crate::held_body::hold(body, permit)),
        Err(_) => {
            tracing::warn!(
                timeout_secs = admission.timeout.as_secs_f64(),
                "request timed out"
            );
            in_route_shape(
                &path,
                ApiError::TimedOut {
                    after: admission.timeout,
                },
            )
        }
    }
}

/// `deltas`, ended with a timeout error when the model sends nothing for the idle timeout or
/// the whole request passes its deadline (counted from `started`). The error ends the stream
/// the way any provider failure does (an `error` event).
pub fn bound_stream(deltas: DeltaStream, limits: &LimitsConfig, started: Instant) -> DeltaStream {
    let idle = limits.stream_idle_timeout();
    let total = limits.request_timeout();
    let deadline = tokio::time::Instant::from_std(started) + total;
    Box::pin(Bounded {
        deltas,
        quiet: QuietTimer::new(idle, Some(deadline)),
        idle,
        total,
        ended: false,
    })
}

/// A stream under an idle timeout and a deadline.
struct Bounded {
    deltas: DeltaStream,
    quiet: QuietTimer,
    idle: Duration,
    total: Duration,
    ended: bool,
}

impl Stream for Bounded {
    type Item = Result<Delta, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.deltas.poll_next_unpin(cx) {
            match item {
                Some(Ok(_)) => this.quiet.event(),
                // An error ends the stream like its end does.
                _ => this.ended = true,
            }
            return Poll::Ready(item);
        }
        let (limit, what) = match ready!(this.quiet.poll_quiet(cx)) {
            Quiet::PastDeadline => (this.total, "was still streaming after"),
            Quiet::Idle => (this.idle, "sent nothing for"),
        };
        this.ended = true;
        tracing::warn!(limit_secs = limit.as_secs_f64(), "stream {what} its limit");
        Poll::Ready(Some(Err(ProviderError::Timeout {
            provider: format!(
                "the model (server.limits: the stream {what} {}s)",
                limit.as_secs_f64()
            ),
            after: limit,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(idle: f64, total: f64) -> LimitsConfig {
        LimitsConfig {
            stream_idle_timeout_secs: idle,
            request_timeout_secs: total,
            ..LimitsConfig::default()
        }
    }

    /// Text pieces after pauses of the given milliseconds.
    fn slow(pauses: &[u64]) -> DeltaStream {
        let pauses = pauses.to_vec();
        async_stream::stream! {
            for pause in pauses {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                yield Ok(Delta::Text("x".into()));
            }
        }
        .boxed()
    }

    async fn collect(stream: DeltaStream) -> (usize, Option<ProviderError>) {
        let items: Vec<_> = stream.collect().await;
        let texts = items.iter().filter(|i| i.is_ok()).count();
        (texts, items.into_iter().find_map(Result::err))
    }

    #[tokio::test]
    async fn a_stream_that_goes_quiet_ends_with_a_timeout() {
        let started = Instant::now();
        let (texts, error) = collect(bound_stream(
            slow(&[10, 20, 5000, 10]),
            &limits(0.2, 300.0),
            started,
        ))
        .await;
        assert_eq!(texts, 2);
        match error {
            Some(ProviderError::Timeout { after, provider }) => {
                assert_eq!(after, Duration::from_millis(200));
                assert!(provider.contains("sent nothing for 0.2s"), "{provider}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stream_that_keeps_going_past_the_deadline_is_cut() {
        let started = Instant::now();
        let (texts, error) =
            collect(bound_stream(slow(&[100; 50]), &limits(1.0, 0.75), started)).await;
        assert!((1..50).contains(&texts), "{texts}");
        assert!(
            matches!(error, Some(ProviderError::Timeout { after, .. }) if after == Duration::from_millis(750)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_idle_timeout_counts_from_the_last_piece() {
        // Eight pieces 150 ms apart: 1.2 s in all, each within the 0.25 s idle limit, so the
        // timer set at the start is moved on every time it fires early.
        let started = Instant::now();
        let (texts, error) =
            collect(bound_stream(slow(&[150; 8]), &limits(0.25, 300.0), started)).await;
        assert_eq!((texts, error.is_none()), (8, true), "{error:?}");
    }

    #[tokio::test]
    async fn a_stream_within_its_limits_is_untouched() {
        let started = Instant::now();
        let (texts, error) = collect(bound_stream(
            slow(&[10, 50, 50]),
            &limits(1.0, 300.0),
            started,
        ))
        .await;
        assert_eq!((texts, error.is_none()), (3, true));
    }
}
