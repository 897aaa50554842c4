//! Per-key requests-per-minute and tokens-per-minute limits, kept in memory.
//!
//! Each limit is a sliding-window counter: the count of the current minute plus the previous
//! minute's, weighted by how much of it still overlaps the last 60 seconds. That is two numbers
//! per key and limit, exact enough for quotas, and cheap under one short lock. Tokens are known
//! only after a model answers, so a request is admitted while the key's token estimate is under
//! its limit and its tokens are counted when the answer is done (a key may overshoot by one
//! answer, never more). GCRA limiters such as `governor` cannot take that after-the-fact charge,
//! which is why this is not one.
//!
//! Several replicas behind a load balancer each keep their own counts, so a key gets up to its
//! limit per replica. To share one budget, the same scheme moves to Redis behind the same two
//! calls ([`Window::admit`] and [`Window::spend`]): `INCRBY ragway:{key}:{limit}:{minute} n` with
//! `EXPIRE 120` to count, and one `MGET` of the current and previous minute to estimate, so a
//! request costs one round trip per limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);

/// One limit: at most `limit` units in any 60 seconds (estimated).
#[derive(Debug)]
pub struct Window {
    limit: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Start of the current minute.
    started: Instant,
    current: u64,
    previous: u64,
}

impl Window {
    pub fn new(limit: u64) -> Self {
        Self::starting(limit, Instant::now())
    }

    fn starting(limit: u64, now: Instant) -> Self {
        Self {
            limit,
            state: Mutex::new(State {
                started: now,
                current: 0,
                previous: 0,
            }),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Counts `units` now if they fit under the limit; otherwise how long to wait before they
    /// would.
    pub fn admit(&self, units: u64) -> Result<(), Duration> {
        self.admit_at(units, Instant::now())
    }

    /// Whether the estimate is still under the limit (for tokens, counted afterwards).
    pub fn has_room(&self) -> Result<(), Duration> {
        self.has_room_at(Instant::now())
    }

    /// Counts `units` already used, even past the limit.
    pub fn spend(&self, units: u64) {
        self.spend_at(units, Instant::now());
    }

    fn admit_at(&self, units: u64, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        state.roll(now);
        let wait = state.wait_for(units, self.limit, now);
        if wait.is_none() {
            state.current += units;
        }
        wait.map_or(Ok(()), Err)
    }

    fn has_room_at(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        state.roll(now);
        // Room for at least one more unit.
        state.wait_for(1, self.limit, now).map_or(Ok(()), Err)
    }

    fn spend_at(&self, units: u64, now: Instant) {
        let mut state = self.lock();
        state.roll(now);
        state.current = state.current.saturating_add(units);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two counters; a panic elsewhere cannot leave them inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// Moves to the minute that contains `now`.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < MINUTE {
            return;
        }
        let minutes = elapsed.as_secs() / 60;
        self.previous = if minutes == 1 { self.current } else { 0 };
        self.current = 0;
        self.started += MINUTE * u32::try_from(minutes).unwrap_or(u32::MAX);
    }

    /// None if `units` more fit now; otherwise the wait until they would (at least a second).
    fn wait_for(&self, units: u64, limit: u64, now: Instant) -> Option<Duration> {
        let into = now.saturating_duration_since(self.started).as_secs_f64() / 60.0;
        let estimate = self.previous as f64 * (1.0 - into) + self.current as f64;
        if estimate + units as f64 <= limit as f64 {
            return None;
        }
        // The previous minute's share fades linearly; the current one only leaves when the
        // minute ends.
        let room = limit as f64 - self.current as f64 - units as f64;
        let left_this_minute = (1.0 - into) * 60.0;
        let wait = if room >= 0.0 && self.previous > 0 {
            let fade_to = 1.0 - room / self.previous as f64;
            ((fade_to - into) * 60.0).clamp(0.0, left_this_minute)
        } else {
            left_this_minute
        };
        Some(Duration::from_secs_f64(wait.ceil().max(1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_up_to_its_limit_then_says_how_long_to_wait() {
        let t0 = Instant::now();
        let window = Window::starting(3, t0);
        for _ in 0..3 {
            window.admit_at(1, t0).unwrap();
        }
        let wait = window
            .admit_at(1, t0 + Duration::from_secs(10))
            .unwrap_err();
        // Nothing from a previous minute: the wait is the rest of this one.
        assert_eq!(wait, Duration::from_secs(50));
        // The next minute still carries the last one's count, fading.
        assert!(window.admit_at(1, t0 + Duration::from_secs(61)).is_err());
        window.admit_at(1, t0 + Duration::from_secs(81)).unwrap();
        // Two idle minutes forget everything.
        for _ in 0..3 {
            window.admit_at(1, t0 + Duration::from_secs(200)).unwrap();
        }
    }

    #[test]
    fn tokens_are_charged_afterwards_and_block_until_they_fade() {
        let t0 = Instant::now();
        let window = Window::starting(100, t0);
        window.has_room_at(t0).unwrap();
        // One answer may overshoot the limit.
        window.spend_at(150, t0 + Duration::from_secs(1));
        let wait = window.has_room_at(t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(58));
        // Half-way into the next minute, 150 × 0.5 = 75 are still counted: room again.
        assert!(window.has_room_at(t0 + Duration::from_secs(61)).is_err());
        window
            .has_room_at(t0 + Duration::from_secs(90))
            .expect("the previous minute's share has faded below the limit");
    }

    #[test]
    fn a_request_larger_than_the_limit_is_never_admitted_silently() {
        let t0 = Instant::now();
        let window = Window::starting(5, t0);
        assert!(window.admit_at(6, t0).is_err());
        window.admit_at(5, t0).unwrap();
    }
}
