//! The one reading of a streamed answer that every API shares: the model's deltas in,
//! [`Piece`]s out — text and tool calls as they come, then either the failure that ended the
//! stream or a summary of its usage, finish reason and timings. `/generate`, `/v1` and
//! `ragway ask` only render pieces in their wire format.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::{Stream, StreamExt as _};
use ragway_core::{Delta, DeltaStream, FinishReason, Usage};

use crate::error::EngineError;
use crate::pipeline::{Timings, millis};
use crate::shape::Shape;

/// A piece of a streamed answer.
#[derive(Debug)]
pub enum Piece {
    /// Words of the answer.
    Text(String),
    /// A piece of a tool call: the id and name come with the call's first piece, the
    /// arguments in pieces.
    ToolCall {
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// The model failed midway: the answer ends here, without a summary.
    Failed(EngineError),
    /// The answer ended: the last piece.
    Done(Summary),
}

/// What a whole streamed answer cost and why it stopped.
#[derive(Clone, Debug)]
pub struct Summary {
    /// As the model reported it (zero when it reported none).
    pub usage: Usage,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

/// When a streamed answer's stages started, for its [`Timings`].
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// When the request was taken up.
    pub started: Instant,
    pub retrieval_ms: f64,
    /// When the model was first called.
    pub generation_started: Instant,
}

impl Clock {
    pub fn timings(&self) -> Timings {
        Timings {
            retrieval: self.retrieval_ms,
            generation: millis(self.generation_started),
            total: millis(self.started),
        }
    }
}

/// A streamed answer read as [`Piece`]s (a plain stream rather than a generator: it is
/// polled once per piece, on the path of every streamed word).
pub struct Accounted {
    deltas: DeltaStream,
    clock: Clock,
    usage: Usage,
    finish: FinishReason,
    ended: bool,
    /// The shape the answer must take and the model answering, with the text so far: a
    /// structured answer is checked when it ends, and one that is not the JSON asked for
    /// ends in a failure rather than a summary.
    checked: Option<(Shape, String)>,
    text: String,
}

impl Accounted {
    pub fn new(deltas: DeltaStream, clock: Clock, checked: Option<(Shape, String)>) -> Self {
        Self {
            deltas,
            clock,
            usage: Usage::default(),
            finish: FinishReason::Stop,
            ended: false,
            checked,
            text: String::new(),
        }
    }
}

impl Stream for Accounted {
    type Item = Piece;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Piece>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let piece = match ready!(this.deltas.poll_next_unpin(cx)) {
                Some(Ok(Delta::Text(text))) => {
                    if this.checked.is_some() {
                        this.text.push_str(&text);
                    }
                    Piece::Text(text)
                }
                Some(Ok(Delta::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                })) => Piece::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                },
                Some(Ok(Delta::Usage(usage))) => {
                    this.usage = usage;
                    continue;
                }
                Some(Ok(Delta::Finish(reason))) => {
                    this.finish = reason;
                    continue;
                }
                // Each API stands for the start in its own way (a `sources` event, a role chunk).
                Some(Ok(Delta::Started)) => continue,
                Some(Err(error)) => {
                    this.ended = true;
                    tracing::warn!(%error, "stream failed mid-answer");
                    Piece::Failed(error.into())
                }
                None => {
                    this.ended = true;
                    if let Some((shape, model)) = &this.checked
                        && let Err(error) = shape.check(model, &this.text)
                    {
                        tracing::warn!(%error, "a structured answer did not follow its schema");
                        return Poll::Ready(Some(Piece::Failed(error)));
                    }
                    Piece::Done(Summary {
                        usage: this.usage,
                        finish_reason: std::mem::replace(&mut this.finish, FinishReason::Stop),
                        timings: this.clock.timings(),
                    })
                }
            };
            return Poll::Ready(Some(piece));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use ragway_core::ProviderError;

    use super::*;

    fn accounted(items: Vec<Result<Delta, ProviderError>>) -> Vec<Piece> {
        let clock = Clock {
            started: Instant::now(),
            retrieval_ms: 1.5,
            generation_started: Instant::now(),
        };
        block_on(Accounted::new(Box::pin(futures::stream::iter(items)), clock, None).collect())
    }

    #[test]
    fn text_passes_and_the_end_tells_usage_finish_and_timings() {
        let usage = Usage {
            input_tokens: 3,
            output_tokens: 2,
        };
        let pieces = accounted(vec![
            Ok(Delta::Started),
            Ok(Delta::Text("a".into())),
            Ok(Delta::Text("b".into())),
            Ok(Delta::Finish(FinishReason::Length)),
            Ok(Delta::Usage(usage)),
        ]);
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert!(matches!(&pieces[0], Piece::Text(t) if t == "a"));
        assert!(matches!(&pieces[1], Piece::Text(t) if t == "b"));
        let Piece::Done(summary) = &pieces[2] else {
            panic!("{pieces:?}");
        };
        assert_eq!(summary.usage, usage);
        assert_eq!(summary.finish_reason, FinishReason::Length);
        assert_eq!(summary.timings.retrieval, 1.5);
    }

    #[test]
    fn a_failure_ends_the_answer_without_a_summary() {
        let pieces = accounted(vec![
            Ok(Delta::Text("a".into())),
            Err(ProviderError::unreachable("p", "cut")),
            Ok(Delta::Text("never".into())),
        ]);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert!(matches!(
            &pieces[1],
            Piece::Failed(EngineError::Provider(_))
        ));
    }
}
