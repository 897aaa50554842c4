//! Token reservations: a request holds, against its key's tokens-per-minute, as much as its
//! answer may cost before the model is called, and is settled to what it really cost when the
//! answer ends — the difference given back or charged. A streamed answer is metered as it goes,
//! so one the client cuts off is charged for what was generated up to then.
//!
//! What a request may cost ([`estimate`]): its prompt, at about four bytes a token (the same
//! estimate that fits passages into the context window), plus the longest answer it allows —
//! `max_tokens`, else the model's own default (local models), else `[server.prompt]
//! answer_reserve` — once per choice, since `n` choices are `n` calls that each read the prompt.
//!
//! Reservations make the limit hold for requests that arrive together: each counts before the
//! next is admitted. A key can still end a minute above its limit by what its answers used
//! beyond their reservations: a provider that counts the prompt's tokens higher than four
//! bytes a token, or an answer without `max_tokens` that runs past the reserve. With `max_tokens`
//! on every request and a tokenizer near the estimate, the slack is none.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::{Stream, StreamExt as _};
use ragway_core::prompt::approx_tokens;
use ragway_core::{ChatRequest, Delta, DeltaStream, ProviderError, Usage};

use super::{Limit, Taken};
use crate::error::ApiError;

/// Allowance for the chat format's own tokens around each message (as in prompt assembly).
const MESSAGE_OVERHEAD_TOKENS: u64 = 8;

/// Tokens `request`'s prompt is estimated to take: its messages with their tool calls, and the
/// tools it offers.
pub fn prompt_tokens(request: &ChatRequest) -> u64 {
    let tokens = |text: &str| approx_tokens(text) as u64;
    let messages: u64 = request
        .messages
        .iter()
        .map(|message| {
            MESSAGE_OVERHEAD_TOKENS
                + tokens(&message.content)
                + message
                    .tool_calls
                    .iter()
                    .map(|call| tokens(&call.name) + tokens(&call.arguments))
                    .sum::<u64>()
        })
        .sum();
    let tools: u64 = request
        .tools
        .iter()
        .map(|tool| {
            tokens(&tool.name)
                + tool.description.as_deref().map_or(0, tokens)
                + tokens(&tool.parameters.to_string())
        })
        .sum();
    messages + tools
}

/// The most `request` may cost for `choices` answers: its prompt and the longest answer it
/// allows (`max_tokens`, else `default_answer`), for each choice.
pub fn estimate(request: &ChatRequest, default_answer: u32, choices: u32) -> u64 {
    let answer = u64::from(request.max_tokens.unwrap_or(default_answer));
    (prompt_tokens(request) + answer).saturating_mul(u64::from(choices.max(1)))
}

/// What an answer cost: its prompt and its answer tokens, as the provider reported them.
pub fn cost(usage: &Usage) -> u64 {
    u64::from(usage.input_tokens) + u64::from(usage.output_tokens)
}

/// What settling a reservation of `reserved` tokens for an answer that used `used` does to
/// the count: gives back the rest, or charges the excess.
pub fn settlement(reserved: u64, used: u64) -> i64 {
    let difference = i64::try_from(reserved.abs_diff(used)).unwrap_or(i64::MAX);
    if used >= reserved {
        difference
    } else {
        -difference
    }
}

/// Tokens held for one answer until it is settled; settled to what it used so far when
/// dropped (an error before the answer: all given back; a stream cut off: what it generated).
#[must_use = "a reservation is settled when dropped: keep it until the answer ends"]
pub struct Reservation {
    /// The limit and where the tokens were counted; `None` when nothing was counted (no token
    /// limit, or Redis unreachable under `fail_open`), so there is nothing to settle.
    counted: Option<(Arc<Limit>, Taken)>,
    reserved: u64,
    /// What the answer used so far, settled to if the reservation is dropped.
    used: u64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("counted", &self.counted.is_some())
            .field("reserved", &self.reserved)
            .field("used", &self.used)
            .finish()
    }
}

impl Reservation {
    /// Reserves `tokens` under `limit` (none: nothing to count). A 429 when they do not fit, a
    /// 503 when Redis is unreachable under `fail_closed`.
    pub async fn take(limit: Option<&Arc<Limit>>, tokens: u64) -> Result<Self, ApiError> {
        let counted = match limit {
            Some(limit) => limit
                .take(tokens)
                .await?
                .map(|taken| (Arc::clone(limit), taken)),
            None => None,
        };
        Ok(Self {
            counted,
            reserved: tokens,
            used: 0,
        })
    }

    /// Tokens reserved.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Settles to `used` tokens now (an answer that came whole).
    pub async fn settle(mut self, used: u64) {
        if let Some((limit, taken)) = self.counted.take() {
            limit.adjust(&taken, settlement(self.reserved, used)).await;
        }
    }

    /// `deltas` as they are, with the tokens they use counted as they come and settled when
    /// they end or are dropped (the client left): the prompt once the model has started, the
    /// answer at about four bytes a token, both replaced by the usage the model reports.
    pub fn meter(self, deltas: DeltaStream, prompt_tokens: u64) -> DeltaStream {
        Box::pin(Metered {
            deltas,
            reservation: Some(self),
            prompt_tokens,
            answer_bytes: 0,
            reported: None,
        })
    }

    /// Settles to what was used so far, without waiting: at once in memory, on a task of its
    /// own for Redis.
    fn settle_detached(&mut self) {
        if let Some((limit, taken)) = self.counted.take() {
            limit.adjust_detached(taken, settlement(self.reserved, self.used));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.settle_detached();
    }
}

/// A streamed answer under [`Reservation::meter`]: a plain wrapper, polled once per delta.
struct Metered {
    deltas: DeltaStream,
    /// Until the stream ends.
    reservation: Option<Reservation>,
    prompt_tokens: u64,
    /// Bytes of text and tool calls generated so far.
    answer_bytes: usize,
    /// The usage the model reported, which replaces the estimate.
    reported: Option<Usage>,
}

impl Metered {
    /// Tokens used so far: the usage the model reported, else the prompt and what was
    /// generated, at about four bytes a token.
    fn used(&self) -> u64 {
        match &self.reported {
            Some(usage) => cost(usage),
            None => self.prompt_tokens + self.answer_bytes.div_ceil(4) as u64,
        }
    }
}

impl Stream for Metered {
    type Item = Result<Delta, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = ready!(this.deltas.poll_next_unpin(cx));
        match &item {
            Some(Ok(Delta::Text(text))) => this.answer_bytes += text.len(),
            Some(Ok(Delta::ToolCall {
                name, arguments, ..
            })) => {
                this.answer_bytes += arguments.len() + name.as_ref().map_or(0, String::len);
            }
            Some(Ok(Delta::Usage(usage))) => this.reported = Some(*usage),
            Some(Ok(Delta::Started | Delta::Finish(_)) | Err(_)) | None => {}
        }
        let used = this.used();
        if let Some(reservation) = &mut this.reservation {
            reservation.used = used;
        }
        if item.is_none() {
            // Settled now rather than when the response is dropped, so the key's next request
            // sees it.
            this.reservation = None;
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use ragway_core::{FinishReason, Message, Tool};

    use super::*;
    use crate::rate_limit::LimitStore;

    fn request(messages: Vec<Message>, max_tokens: Option<u32>) -> ChatRequest {
        ChatRequest {
            messages,
            max_tokens,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn an_estimate_is_the_prompt_and_the_longest_answer_for_each_choice() {
        // 40 bytes: 10 tokens, and 8 for the message around them.
        let asked = request(vec![Message::user("x".repeat(40))], Some(100));
        assert_eq!(prompt_tokens(&asked), 18);
        assert_eq!(estimate(&asked, 512, 1), 118);
        assert_eq!(estimate(&asked, 512, 3), 354, "n choices are n calls");
        // Without max_tokens, the default answer length stands in.
        let open = request(vec![Message::user("x".repeat(40))], None);
        assert_eq!(estimate(&open, 512, 1), 18 + 512);
        // Tools are read as part of the prompt.
        let mut with_tool = open.clone();
        with_tool.tools.push(Tool {
            name: "lookup".into(),
            description: Some("x".repeat(16)),
            parameters: serde_json::json!({}),
        });
        assert_eq!(prompt_tokens(&with_tool), 18 + 2 + 4 + 1);
    }

    #[test]
    fn settling_gives_back_the_rest_or_charges_the_excess() {
        assert_eq!(settlement(100, 30), -70);
        assert_eq!(settlement(100, 100), 0);
        assert_eq!(settlement(100, 130), 30);
        assert_eq!(settlement(0, u64::MAX), i64::MAX);
    }

    fn deltas(items: Vec<Result<Delta, ProviderError>>) -> DeltaStream {
        Box::pin(futures::stream::iter(items))
    }

    /// The tokens counted now under an in-memory `limit`.
    fn counted(limit: &Limit) -> u64 {
        match &limit.counter {
            super::super::Counter::Memory { counts, .. } => {
                let counts = super::super::lock(counts);
                counts.current + counts.previous
            }
            super::super::Counter::Redis { .. } => panic!("not in memory"),
        }
    }

    #[tokio::test]
    async fn a_whole_answer_is_settled_to_its_usage_and_an_error_gives_everything_back() {
        let limit = Arc::new(LimitStore::memory().limit("k", "tokens", 1000));
        let reservation = Reservation::take(Some(&limit), 600).await.unwrap();
        assert_eq!(counted(&limit), 600);
        assert!(Reservation::take(Some(&limit), 401).await.is_err());
        reservation.settle(250).await;
        assert_eq!(counted(&limit), 250);

        // Dropped before an answer (the model failed): nothing is charged.
        let failed = Reservation::take(Some(&limit), 700).await.unwrap();
        drop(failed);
        assert_eq!(counted(&limit), 250);
    }

    #[tokio::test]
    async fn a_stream_is_settled_to_the_usage_it_reports() {
        let limit = Arc::new(LimitStore::memory().limit("k", "tokens", 1000));
        let reservation = Reservation::take(Some(&limit), 500).await.unwrap();
        let stream = reservation.meter(
            deltas(vec![
                Ok(Delta::Started),
                Ok(Delta::Text("hello there".into())),
                Ok(Delta::Finish(FinishReason::Stop)),
                Ok(Delta::Usage(Usage {
                    input_tokens: 40,
                    output_tokens: 2,
                })),
            ]),
            50,
        );
        let passed: Vec<_> = stream.collect().await;
        assert_eq!(passed.len(), 4, "every delta passes through");
        assert_eq!(counted(&limit), 42);
    }

    #[tokio::test]
    async fn a_stream_cut_off_is_charged_for_what_it_generated() {
        let limit = Arc::new(LimitStore::memory().limit("k", "tokens", 1000));
        let reservation = Reservation::take(Some(&limit), 500).await.unwrap();
        let mut stream = reservation.meter(
            deltas(vec![
                Ok(Delta::Started),
                Ok(Delta::Text("x".repeat(40))),
                Ok(Delta::Text("y".repeat(40))),
                Ok(Delta::Text("never sent".into())),
            ]),
            50,
        );
        for _ in 0..3 {
            stream.next().await.unwrap().unwrap();
        }
        // The client left here: the prompt and 80 bytes of answer.
        drop(stream);
        assert_eq!(counted(&limit), 50 + 20);
    }

    #[tokio::test]
    async fn nothing_is_settled_when_nothing_was_counted() {
        let reservation = Reservation::take(None, 500).await.unwrap();
        assert_eq!(reservation.reserved(), 500);
        reservation.settle(900).await;
    }
}
