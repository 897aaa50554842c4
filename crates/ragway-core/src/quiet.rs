//! A timer for quiet spells, shared by the providers' stall bound, the server's stream limits
//! and its SSE keep-alive: it fires once nothing has happened for a while (or a deadline
//! passed). It is not moved at every event (a timer-wheel update each time, tens of thousands a
//! second under load): each event notes its time, and a timer that fires early is set again
//! from the last one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Why a [`QuietTimer`] fired.
#[derive(Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing happened for the period.
    Idle,
    /// The deadline passed.
    PastDeadline,
}

/// Fires after a period without events, or at a deadline.
pub struct QuietTimer {
    timer: Pin<Box<Sleep>>,
    last: Instant,
    period: Duration,
    deadline: Option<Instant>,
}

impl QuietTimer {
    /// A timer for `period` without events from now, or `deadline` if that comes first.
    pub fn new(period: Duration, deadline: Option<Instant>) -> Self {
        let last = Instant::now();
        let due = Self::due_after(last, period, deadline);
        Self {
            timer: Box::pin(tokio::time::sleep_until(due)),
            last,
            period,
            deadline,
        }
    }

    fn due_after(last: Instant, period: Duration, deadline: Option<Instant>) -> Instant {
        let idle = last + period;
        deadline.map_or(idle, |deadline| idle.min(deadline))
    }

    /// Notes an event: the quiet spell starts again.
    pub fn event(&mut self) {
        self.last = Instant::now();
    }

    /// Ready once the period passed since the last event, or the deadline passed.
    pub fn poll_quiet(&mut self, cx: &mut Context<'_>) -> Poll<Quiet> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            if self.deadline.is_some_and(|deadline| now >= deadline) {
                return Poll::Ready(Quiet::PastDeadline);
            }
            if now >= self.last + self.period {
                return Poll::Ready(Quiet::Idle);
            }
            let due = Self::due_after(self.last, self.period, self.deadline);
            self.timer.as_mut().reset(due);
        }
    }

    /// `work`'s output, unless the period passes first, counted from now (the time a caller
    /// spent elsewhere since the last event is not held against the next one). The wait's start
    /// is its only note: the next wait notes its own.
    pub async fn within<F: Future>(&mut self, work: F) -> Result<F::Output, Quiet> {
        self.event();
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Ok(output)),
            Poll::Pending => self.poll_quiet(cx).map(Err),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn within_counts_the_period_from_each_wait() {
        let mut quiet = QuietTimer::new(ms(200), None);
        // Time spent between waits (a slow reader) is not held against the next wait.
        tokio::time::sleep(ms(500)).await;
        assert_eq!(quiet.within(tokio::time::sleep(ms(100))).await, Ok(()));
        assert_eq!(quiet.within(async { 7 }).await, Ok(7));
        let started = Instant::now();
        let stalled = quiet.within(tokio::time::sleep(ms(2_000))).await;
        assert_eq!(stalled, Err(Quiet::Idle));
        let waited = started.elapsed();
        assert!(
            waited >= ms(200) && waited < ms(1_500),
            "gave up after {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_deadline_fires_however_busy_the_events() {
        let started = Instant::now();
        let mut quiet = QuietTimer::new(ms(300), Some(started + ms(400)));
        let mut fired = None;
        for _ in 0..40 {
            if let Err(why) = quiet.within(tokio::time::sleep(ms(50))).await {
                fired = Some(why);
                break;
            }
        }
        assert_eq!(fired, Some(Quiet::PastDeadline));
        assert!(started.elapsed() >= ms(400));
    }
}
