//! A timer for quiet spells, shared by the stream limits and the SSE keep-alive: it fires once
//! nothing has happened for a while (or a deadline passed). It is not moved at every event (a
//! timer-wheel update each time, tens of thousands a second under load): each event notes its
//! time, and a timer that fires early is set again from the last one.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Why a [`QuietTimer`] fired.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// Nothing happened for the period.
    Idle,
    /// The deadline passed.
    PastDeadline,
}

pub(crate) struct QuietTimer {
    timer: Pin<Box<Sleep>>,
    last: Instant,
    period: Duration,
    deadline: Option<Instant>,
}

impl QuietTimer {
    /// A timer for `period` without events from now, or `deadline` if that comes first.
    pub(crate) fn new(period: Duration, deadline: Option<Instant>) -> Self {
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
    pub(crate) fn event(&mut self) {
        self.last = Instant::now();
    }

    /// Ready once the period passed since the last event, or the deadline passed.
    pub(crate) fn poll_quiet(&mut self, cx: &mut Context<'_>) -> Poll<Quiet> {
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
}
