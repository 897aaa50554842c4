//! What ragway's chat model and embedder share when they call an OpenAI-compatible server:
//! sending a request ([`OpenAiServer::send`]), how a failed call becomes a [`ProviderError`]
//! (throttling with the server's `Retry-After`, the message out of OpenAI's `{"error":
//! {"message"}}`, timeouts, unreachable servers, the error's whole chain) and how an answer's
//! body is read within a cap. Written once so that the two cannot drift apart.
//!
//! A crate of its own rather than part of ragway-core, which has no HTTP client (the fuzz
//! targets link ragway-core, and reqwest would bring TLS into them).

use std::error::Error;
use std::time::Duration;

use futures::Stream;
use ragway_core::ProviderError;
use ragway_core::upstream::{CappedError, MAX_ERROR_BYTES, read_capped, read_prefix};
use reqwest::header::RETRY_AFTER;
use serde_json::Value;

/// How much of an error answer that is not in OpenAI's error shape becomes the message: enough
/// for an HTML error page's title and first lines, not the whole page.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// What an HTTP client reported when a call failed before its answer was read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// The call's time ran out.
    TimedOut,
    /// The answer's body could not be decoded (a broken chunked or compressed body).
    Undecodable,
    /// Anything else: the connection was refused or reset, DNS or TLS failed.
    Unreachable,
}

/// An OpenAI-compatible server as one configured component calls it: the name its failures
/// carry and the time each call may take.
#[derive(Clone, Debug)]
pub struct OpenAiServer {
    provider: String,
    timeout: Duration,
}

impl OpenAiServer {
    /// `provider` names the component in errors (`openai model "gpt-4o"`).
    pub fn new(provider: String, timeout: Duration) -> Self {
        Self { provider, timeout }
    }

    /// The component's name in errors.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The time each call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request`: the answer when its status is a success, else the failure as a
    /// [`ProviderError`] (the status, the server's message and `Retry-After`; or why nothing
    /// came back).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.send_error(failure(&e), &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes_stream();
        Err(self
            .status_error(status.as_u16(), retry_after.as_deref(), body)
            .await)
    }

    /// The call did not finish within the timeout.
    pub fn timed_out(&self) -> ProviderError {
        ProviderError::Timeout {
            provider: self.provider.clone(),
            after: self.timeout,
        }
    }

    /// The failure an HTTP client's `error` stands for, with the error's whole chain as the
    /// message. The client's errors must not print credentials: reqwest's name the URL, never
    /// headers, so no key leaks through them.
    pub fn send_error(&self, failure: SendFailure, error: &dyn Error) -> ProviderError {
        match failure {
            SendFailure::TimedOut => self.timed_out(),
            SendFailure::Undecodable => {
                ProviderError::invalid_response(&self.provider, error_chain(error))
            }
            SendFailure::Unreachable => {
                ProviderError::unreachable(&self.provider, error_chain(error))
            }
        }
    }

    /// The failure an answer with a non-success `status` stands for. `retry_after` is the
    /// answer's `Retry-After` header, if it had one; only the start of `body` is read.
    pub async fn status_error<S, B, E>(
        &self,
        status: u16,
        retry_after: Option<&str>,
        body: S,
    ) -> ProviderError
    where
        S: Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
    {
        let retry_after = retry_after.and_then(retry_after_secs);
        // Only the start of it: an upstream's error body is no reason to hold megabytes.
        let message = error_message(&read_prefix(body, MAX_ERROR_BYTES).await);
        match status {
            429 => ProviderError::Throttled {
                provider: self.provider.clone(),
                message,
                retry_after,
            },
            408 | 504 => self.timed_out(),
            _ => ProviderError::upstream(&self.provider, Some(status), message),
        }
    }

    /// A successful answer's body, whole. Past `limit` bytes reading stops, and the error says
    /// the answer is larger than `limit_in_words` (`"16 MiB"`); `failure` tells what the HTTP
    /// client's error while reading was.
    pub async fn read_body<S, B, E>(
        &self,
        body: S,
        limit: usize,
        limit_in_words: &str,
        failure: impl FnOnce(&E) -> SendFailure,
    ) -> Result<Vec<u8>, ProviderError>
    where
        S: Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
        E: Error,
    {
        read_capped(body, limit).await.map_err(|error| match error {
            CappedError::TooLarge { .. } => ProviderError::invalid_response(
                &self.provider,
                format!("the answer is larger than {limit_in_words}; not read further"),
            ),
            CappedError::Failed(error) => self.send_error(failure(&error), &error),
        })
    }
}

/// A `Retry-After` of whole seconds; the HTTP-date form is not used by OpenAI-compatible
/// servers and is ignored.
fn retry_after_secs(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The message of an error answer: OpenAI's `error.message`, else the start of the text.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| truncate(text, MAX_MESSAGE_CHARS))
}

/// What kind of failure reqwest reported (for [`OpenAiServer::read_body`] too).
pub fn failure(error: &reqwest::Error) -> SendFailure {
    if error.is_timeout() {
        SendFailure::TimedOut
    } else if error.is_decode() {
        SendFailure::Undecodable
    } else {
        SendFailure::Unreachable
    }
}

/// `error` and each of its causes, joined with `": "`.
pub fn error_chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The first `max` characters of `text`, with `…` if there were more.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> OpenAiServer {
        OpenAiServer::new("openai model \"m\"".into(), Duration::from_secs(3))
    }

    fn body(text: &str) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> {
        futures::stream::iter([Ok(text.as_bytes().to_vec())])
    }

    async fn status_error(status: u16, retry_after: Option<&str>, text: &str) -> ProviderError {
        server().status_error(status, retry_after, body(text)).await
    }

    const OPENAI_ERROR: &str = r#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#;

    #[tokio::test]
    async fn throttling_carries_the_servers_retry_after_in_whole_seconds() {
        // (Retry-After header, what the error carries)
        let cases = [
            (Some("7"), Some(Duration::from_secs(7))),
            (Some(" 12 "), Some(Duration::from_secs(12))),
            (Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            (Some("soon"), None),
            (None, None),
        ];
        for (header, expected) in cases {
            let error = status_error(429, header, OPENAI_ERROR).await;
            let ProviderError::Throttled {
                message,
                retry_after,
                ..
            } = &error
            else {
                panic!("{header:?}: {error:?}");
            };
            assert_eq!(*retry_after, expected, "{header:?}");
            assert_eq!(message, "slow down");
        }
    }

    #[tokio::test]
    async fn other_failures_are_upstream_errors_or_timeouts_with_openais_message() {
        let error = status_error(503, None, OPENAI_ERROR).await;
        assert!(
            matches!(&error, ProviderError::Upstream { status: Some(503), message, .. } if message == "slow down"),
            "{error:?}"
        );
        let error = status_error(401, None, "not json").await;
        assert!(
            matches!(&error, ProviderError::Upstream { status: Some(401), message, .. } if message == "not json"),
            "{error:?}"
        );
        for status in [408, 504] {
            let error = status_error(status, None, "gateway timeout").await;
            assert!(
                matches!(error, ProviderError::Timeout { after, .. } if after == Duration::from_secs(3)),
                "{status}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_error_page_is_cut_to_its_start() {
        let page = "é".repeat(2 * MAX_MESSAGE_CHARS);
        let ProviderError::Upstream { message, .. } = status_error(500, None, &page).await else {
            panic!("not an upstream error");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'), "{message}");
    }

    /// An error with a cause, as HTTP clients report a refused connection.
    #[derive(Debug)]
    struct Failed(Option<std::io::Error>);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl Error for Failed {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.0.as_ref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn a_client_failure_becomes_a_timeout_an_unreadable_answer_or_an_unreachable_server() {
        let refused = Failed(Some(std::io::Error::other("connection refused")));
        let error = server().send_error(SendFailure::Unreachable, &refused);
        assert!(
            matches!(&error, ProviderError::Unreachable { message, .. } if message == "error sending request: connection refused"),
            "{error:?}"
        );
        let error = server().send_error(SendFailure::Undecodable, &Failed(None));
        assert!(
            matches!(error, ProviderError::InvalidResponse { .. }),
            "{error:?}"
        );
        let error = server().send_error(SendFailure::TimedOut, &Failed(None));
        assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_body_past_its_cap_or_cut_off_is_an_error() {
        let server = server();
        let unreachable = |_: &std::io::Error| SendFailure::Unreachable;
        let read = server.read_body(body("12345678"), 8, "8 bytes", unreachable);
        assert_eq!(read.await.unwrap(), b"12345678");
        let error = server
            .read_body(body("123456789"), 8, "8 bytes", unreachable)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ProviderError::InvalidResponse { message, .. } if message == "the answer is larger than 8 bytes; not read further"),
            "{error:?}"
        );
        let cut = futures::stream::iter([
            Ok(b"{".to_vec()),
            Err(std::io::Error::other("connection reset")),
        ]);
        let error = server
            .read_body(cut, 8, "8 bytes", unreachable)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ProviderError::Unreachable { message, .. } if message == "connection reset"),
            "{error:?}"
        );
    }
}
