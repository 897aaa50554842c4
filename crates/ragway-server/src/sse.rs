//! Server-sent event responses for the streaming routes: axum's `Sse`, with a keep-alive
//! comment after 15 s without an event so that proxies keep the connection open (timed by a
//! [`QuietTimer`], which is not moved at every event, unlike axum's own keep-alive).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse as _, Response};
use futures::{Stream, StreamExt as _};
use ragway_core::quiet::QuietTimer;
use serde::Serialize;

/// How long a stream may go without an event before a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An event carrying `data` as JSON, named `name` if given. The JSON is written whole, then
/// copied into the event once (axum's `json_data` checks and copies every fragment serde writes).
pub fn json_event(name: Option<&'static str>, data: &impl Serialize) -> Event {
    let event = match name {
        Some(name) => Event::default().event(name),
        None => Event::default(),
    };
    match serde_json::to_string(data) {
        Ok(json) => event.data(json),
        Err(error) => {
            // Only maps with keys that are not text fail to serialize, and no event holds one.
            tracing::error!(%error, "an event could not be written as JSON");
            Event::default()
                .event("error")
                .data(r#"{"status":500,"detail":"ragway could not write an event"}"#)
        }
    }
}

/// `events` as a `text/event-stream` response.
pub fn response<S>(events: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    Sse::new(KeptAlive::new(events.boxed(), KEEP_ALIVE)).into_response()
}

/// `events` with a comment (`: ` and a blank line) after every `period` without one.
struct KeptAlive {
    events: futures::stream::BoxStream<'static, Event>,
    quiet: QuietTimer,
}

impl KeptAlive {
    fn new(events: futures::stream::BoxStream<'static, Event>, period: Duration) -> Self {
        Self {
            events,
            quiet: QuietTimer::new(period, None),
        }
    }
}

impl Stream for KeptAlive {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Poll::Ready(event) = this.events.poll_next_unpin(cx) {
            this.quiet.event();
            return Poll::Ready(event.map(Ok));
        }
        ready!(this.quiet.poll_quiet(cx));
        // The comment counts as an event: the next one is a period away.
        this.quiet.event();
        Poll::Ready(Some(Ok(Event::default().comment(""))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body text of a response, read until it ends or `within` passes.
    async fn body_text(response: Response, within: Duration) -> String {
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        let _ = tokio::time::timeout(within, async {
            while let Some(Ok(bytes)) = body.next().await {
                text.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        })
        .await;
        text
    }

    #[tokio::test]
    async fn a_quiet_stream_gets_keep_alive_comments_and_a_busy_one_none() {
        // Events 20 ms apart (200 ms in all), then a silence of 500 ms: a 200 ms period sends
        // comments only in the silence (at 200 and 400 ms into it), because every event moves
        // the next one on.
        let events = async_stream::stream! {
            for n in 0..10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                yield Event::default().data(n.to_string());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            yield Event::default().data("last");
        };
        let kept = KeptAlive::new(events.boxed(), Duration::from_millis(200));
        let response = Sse::new(kept).into_response();
        let text = body_text(response, Duration::from_secs(5)).await;
        let pieces: Vec<&str> = text.split_terminator("\n\n").collect();
        let expected: Vec<String> = (0..10)
            .map(|n| format!("data: {n}"))
            .chain([": ".into(), ": ".into(), "data: last".into()])
            .collect();
        assert_eq!(pieces, expected, "{text:?}");
    }
}
