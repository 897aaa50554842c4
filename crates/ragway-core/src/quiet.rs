//! A timer for quiet spells, shared by the providers' stall bound, the server's stream limits
//! and its SSE keep-alive: it fires once nothing has happened for a while (or a deadline
//! passed). It is not moved at every event (a timer-wheel update each time, tens of thousands a
//! second under load): each event notes its time, and a timer that fires early is set again
//! from the last one. Nor is it polled again while it holds the waiting task's waker and has
//! not fired (a poll would only register the same waker again, at every quiet moment of a
//! busy stream).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
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
    /// The waker the timer will wake, once polled.
    armed: Option<Waker>,
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
            armed: None,
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
        let armed = self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !self.timer.is_elapsed() {
            return Poll::Pending;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                if !armed {
                    self.armed = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
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

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_timer_polled_again_and_again_wakes_the_latest_waker_when_it_fires() {
        use std::sync::Arc;
        use std::sync::atomic::Ordering::SeqCst;
        let (a, b) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let (waker_a, waker_b) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut quiet = QuietTimer::new(ms(100), None);
        for _ in 0..3 {
            assert!(
                quiet
                    .poll_quiet(&mut Context::from_waker(&waker_a))
                    .is_pending()
            );
        }
        // Another task waits now: the timer must wake it, not the first.
        assert!(
            quiet
                .poll_quiet(&mut Context::from_waker(&waker_b))
                .is_pending()
        );
        assert!(
            quiet
                .poll_quiet(&mut Context::from_waker(&waker_b))
                .is_pending()
        );
        tokio::time::sleep(ms(300)).await;
        assert_eq!((a.0.load(SeqCst), b.0.load(SeqCst)), (0, 1));
        let fired = quiet.poll_quiet(&mut Context::from_waker(&waker_b));
        assert_eq!(fired, Poll::Ready(Quiet::Idle));
        // An event since the last poll puts the next firing a period after it.
        quiet.event();
        assert!(
            quiet
                .poll_quiet(&mut Context::from_waker(&waker_b))
                .is_pending()
        );
        tokio::time::sleep(ms(300)).await;
        assert_eq!(b.0.load(SeqCst), 2);
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
