//! A response body that holds something (an in-flight count, a concurrency slot) until hyper
//! has sent its last byte or dropped it, so that streams count for as long as they run.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};

/// `body`, holding `guard` until the body is finished or dropped.
pub(crate) fn hold<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Body::new(Held {
        inner: body,
        _guard: guard,
    })
}

struct Held<G> {
    inner: Body,
    _guard: G,
}

impl<G: Unpin> HttpBody for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
