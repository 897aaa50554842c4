//! Server-sent event responses for the streaming routes. Each event is written out whole, once,
//! as the bytes that go on the wire (`event: NAME`, `data: JSON`, a blank line): its data is
//! compact JSON, which never holds a line break, so it is one `data` line as it stands. (axum's
//! `Event` copies the data again, line by line, and was ~5% of ragway's instructions when
//! relaying a stream.) A keep-alive comment follows 15 s without an event, so that proxies keep
//! the connection open (timed by a [`QuietTimer`], which is not moved at every event, unlike
//! axum's own keep-alive).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse as _, Response};
use futures::{Stream, StreamExt as _};
use ragway_core::quiet::QuietTimer;
use serde::Serialize;

/// How long a stream may go without an event before a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event, as the bytes sent for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event(Bytes);

impl Event {
    /// An event carrying `data` as JSON, named `name` if given.
    pub fn json(name: Option<&'static str>, data: &impl Serialize) -> Self {
        Self::write(name, |out| serde_json::to_writer(out, data))
    }

    /// An event whose data `write` puts down as compact JSON (no line breaks; serde_json's
    /// writer never makes one), named `name` if given. Should `write` fail, the event is an
    /// `error` event saying so instead.
    pub fn write(
        name: Option<&'static str>,
        write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> Self {
        let mut out = Vec::with_capacity(256);
        if let Some(name) = name {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        let head = out.len();
        if let Err(error) = write(&mut out) {
            // Only maps with keys that are not text fail to serialize, and no event holds one.
            tracing::error!(%error, "an event could not be written as JSON");
            return Self(Bytes::from_static(
                b"event: error\ndata: {\"status\":500,\"detail\":\"ragway could not write an event\"}\n\n",
            ));
        }
        debug_assert!(
            !out[head..].iter().any(|&b| b == b'\n' || b == b'\r'),
            "an event's JSON holds a line break"
        );
        out.extend_from_slice(b"\n\n");
        Self(Bytes::from(out))
    }

    /// An unnamed event whose data is the fixed text `data` (one line), as OpenAI's `[DONE]`.
    pub fn fixed(data: &'static str) -> Self {
        debug_assert!(!data.contains(['\n', '\r']));
        Self(Bytes::from([b"data: ", data.as_bytes(), b"\n\n"].concat()))
    }

    /// The bytes sent for the event.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// A comment: `: ` and a blank line, which clients skip.
    fn keep_alive() -> Self {
        Self(Bytes::from_static(b": \n\n"))
    }
}

/// `events` as a `text/event-stream` response.
pub fn response<S>(events: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    kept_alive_response(events.boxed(), KEEP_ALIVE)
}

/// `events` as a `text/event-stream` response with a comment after every `period` without one.
fn kept_alive_response(
    events: futures::stream::BoxStream<'static, Event>,
    period: Duration,
) -> Response {
    let body = Body::from_stream(KeptAlive::new(events, period));
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
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
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Poll::Ready(event) = this.events.poll_next_unpin(cx) {
            this.quiet.event();
            return Poll::Ready(event.map(|event| Ok(event.into_bytes())));
        }
        ready!(this.quiet.poll_quiet(cx));
        // The comment counts as an event: the next one is a period away.
        this.quiet.event();
        Poll::Ready(Some(Ok(Event::keep_alive().into_bytes())))
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
                yield Event::json(None, &n);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            yield Event::fixed("last");
        };
        let response = kept_alive_response(events.boxed(), Duration::from_millis(200));
        let text = body_text(response, Duration::from_secs(5)).await;
        let pieces: Vec<&str> = text.split_terminator("\n\n").collect();
        let expected: Vec<String> = (0..10)
            .map(|n| format!("data: {n}"))
            .chain([": ".into(), ": ".into(), "data: last".into()])
            .collect();
        assert_eq!(pieces, expected, "{text:?}");
    }

    #[tokio::test]
    async fn events_are_whole_frames_in_an_uncached_event_stream() {
        let events = futures::stream::iter([
            Event::json(
                Some("delta"),
                &serde_json::json!({ "text": "two\nlines \"quoted\"" }),
            ),
            Event::fixed("[DONE]"),
        ]);
        let response = response(events);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        let text = body_text(response, Duration::from_secs(5)).await;
        assert_eq!(
            text,
            "event: delta\ndata: {\"text\":\"two\\nlines \\\"quoted\\\"\"}\n\ndata: [DONE]\n\n"
        );
    }

    #[test]
    fn data_that_cannot_be_json_is_an_error_event() {
        // JSON object keys are text; a map keyed by lists cannot be written.
        let data = std::collections::BTreeMap::from([(vec![1u8], 1u8)]);
        let bytes = Event::json(Some("delta"), &data).into_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("event: error\ndata: {\"status\":500"),
            "{text}"
        );
        assert!(text.ends_with("}\n\n"), "{text}");
    }
}
