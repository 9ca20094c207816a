//! `Pacer`: how many connects may be in flight, and how many may start per second.
//!
//! Opening connections as fast as possible overloads the target's **accept queue**: when
//! it is full, the kernel drops new SYNs, the client retransmits them after 1, 3 and 7
//! seconds, and connects time out (the issue behind this file saw 52,920 timeouts in a
//! 500,000-connection run with 2,048 connects in flight per process). So by default the
//! stress tester finds the target's pace by itself, the way TCP finds a path's capacity
//! (additive increase, multiplicative decrease), with two limits that adapt together:
//!
//! - an **in-flight window**: connects started and not yet completed. Over a real
//!   network (a round trip of milliseconds) this is what bounds the rate, window / RTT,
//!   exactly as a TCP congestion window does. It also bounds how many SYNs can be lost
//!   at once: when the window is full of stalled connects, nothing new starts, the target
//!   drains its queue, and the retransmissions find room.
//! - a **connect rate**: on loopback or a LAN the handshake completes in the kernel in
//!   microseconds, *before* the server has accepted anything, so almost nothing is ever
//!   in flight and a window alone would not slow us down until the queue overflowed. A
//!   token bucket (10 ms of credit at most) spaces the starts.
//!
//! Both grow while connects complete quickly: in **slow start** (the window by one per
//! completed connect, so it doubles per round; the rate by two, so it grows e²-fold, 7×,
//! per second), then by a small step once past the threshold the last cut left. Both are
//! **halved** on a congestion signal — but only by a signal about a connect started
//! *after* the last cut: one overflow produces a burst of signals, all about connects
//! started at the rate that caused it, and the cut already answered them (TCP cuts once
//! per window of data for the same reason). The signals:
//!
//! - a connect that **fails**: timed out, reset or refused (a refusal on loopback is
//!   also what a full queue does with `tcp_abort_on_overflow`);
//! - a connect that is **stalled**: still in flight after `stall_ms` (at least 250 ms,
//!   or four times the fastest connect seen, for targets far away). A dropped SYN is only
//!   retransmitted after a second, and waiting for that second (or for the timeout)
//!   would let the overflow go on all that time; a handshake that takes 250 ms when
//!   others take 50 µs was dropped, so the stall *is* the loss signal, seen early.
//!   `connecting.rs` looks for stalled connects every `STALL_CHECK` with a queue of
//!   connects in start order, oldest first.
//!
//! Why it matters even when nothing times out: with `tcp_syncookies=1` (the default),
//! a SYN retransmitted into a full queue is answered with a cookie, the client's
//! connect *completes*, and the server drops the final ACK because its accept queue is
//! still full. The client then holds a connection the server never had (measured here:
//! 600 connects to a server accepting 200/s with a backlog of 4, all "open" after a
//! second, 1,754 `ListenOverflows`, half of them never accepted). Pacing below the
//! target's accept rate is the only way the client's count means the server's.
//!
//! `--max-inflight` and `--rate` remain caps on the two limits. `--pacing fixed` turns
//! adaptation off: exactly `--max-inflight` in flight and `--rate` (or no limit), as
//! before. Every decision is taken on the loop's millisecond clock (`Ctx::now`).

use std::time::Duration;

use crate::core::Millis;

/// Window at the start (before anything is known about the target).
const INITIAL_WINDOW: f64 = 16.0;
/// Window never cut below this.
const MIN_WINDOW: f64 = 4.0;
/// Connects per second at the start.
const INITIAL_RATE: f64 = 200.0;
/// Growth of the rate per fast connect in slow start: e²-fold per second.
const SLOW_START_RATE_STEP: f64 = 2.0;
/// Rate never cut below this.
const MIN_RATE: f64 = 20.0;
/// Growth per fast connect once past the slow-start threshold: the window gains one per
/// round (`1 / window` each), the rate 10 % per second.
const AVOIDANCE_RATE_STEP: f64 = 0.1;
/// A connect in flight this long is stalled (its SYN was dropped), at the least.
const STALL_MIN_MS: Millis = 250;
/// How often `connecting.rs` looks for stalled connects.
pub const STALL_CHECK: Duration = Duration::from_millis(50);
/// The most credit the token bucket keeps, in milliseconds of the rate.
const BURST_MS: f64 = 10.0;

/// Whether the limits adapt (`--pacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Find the target's pace (the default).
    Adaptive,
    /// Exactly `--max-inflight` and `--rate`.
    Fixed,
}

/// The two limits on starting connects, and how they adapt.
#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    /// `--max-inflight`: the window's cap.
    max_window: usize,
    /// `--rate`: the rate's cap (None: no cap).
    max_rate: Option<f64>,
    window: f64,
    window_threshold: f64,
    rate: f64,
    rate_threshold: f64,
    /// Token bucket: starts allowed now, and when it was last refilled.
    credit: f64,
    refilled: Option<Millis>,
    last_cut: Option<Millis>,
    /// The fastest connect seen, for the stall threshold (None until one completes).
    fastest_ms: Option<Millis>,
    /// Times the limits were cut (reported).
    pub cuts: u64,
}

impl Pacer {
    /// Limits for `pacing`, capped by `--max-inflight` and `--rate`.
    pub fn new(pacing: Pacing, max_inflight: usize, rate: Option<f64>) -> Pacer {
        let max_window = max_inflight.max(1);
        Pacer {
            pacing,
            max_window,
            max_rate: rate,
            window: INITIAL_WINDOW.min(max_window as f64),
            window_threshold: max_window as f64,
            rate: rate.map_or(INITIAL_RATE, |r| r.min(INITIAL_RATE)),
            rate_threshold: f64::INFINITY,
            credit: 1.0,
            refilled: None,
            last_cut: None,
            fastest_ms: None,
            cuts: 0,
        }
    }

    /// Connects that may be in flight now.
    pub fn window(&self) -> usize {
        match self.pacing {
            Pacing::Fixed => self.max_window,
            Pacing::Adaptive => (self.window as usize).clamp(1, self.max_window),
        }
    }

    /// Connects that may start per second now (None: no limit).
    pub fn rate(&self) -> Option<f64> {
        match self.pacing {
            Pacing::Fixed => self.max_rate,
            Pacing::Adaptive => Some(self.max_rate.map_or(self.rate, |cap| self.rate.min(cap))),
        }
    }

    /// May a connect start at `now`? Takes one start's credit if so; if not, returns how
    /// long until one is there.
    pub fn take(&mut self, now: Millis) -> Result<(), Duration> {
        let Some(rate) = self.rate() else {
            return Ok(());
        };
        let burst = (rate * BURST_MS / 1000.0).max(1.0);
        if let Some(then) = self.refilled {
            let earned = rate * now.saturating_sub(then) as f64 / 1000.0;
            self.credit = (self.credit + earned).min(burst);
        }
        self.refilled = Some(now);
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            return Ok(());
        }
        let ms = ((1.0 - self.credit) * 1000.0 / rate).ceil().max(1.0);
        Err(Duration::from_millis(ms as u64))
    }

    /// How long a connect may be in flight before it counts as stalled (None until one
    /// connect has completed: the target's distance is unknown).
    pub fn stall_ms(&self) -> Option<Millis> {
        self.fastest_ms.map(|f| (4 * f).max(STALL_MIN_MS))
    }

    /// A connect started at `started` completed at `now`: grow, unless it took so long
    /// that its SYN must have been dropped (then it is a congestion signal like any other).
    pub fn opened(&mut self, started: Millis, now: Millis) {
        let took_ms = now.saturating_sub(started);
        if self.stall_ms().is_some_and(|stall| took_ms > stall) {
            self.congested(started, now);
            return;
        }
        self.fastest_ms = Some(self.fastest_ms.map_or(took_ms, |f| f.min(took_ms)));
        if self.pacing == Pacing::Fixed {
            return;
        }
        if self.window < self.window_threshold {
            self.window += 1.0;
        } else {
            self.window += 1.0 / self.window;
        }
        self.window = self.window.min(self.max_window as f64);
        if self.rate < self.rate_threshold {
            self.rate += SLOW_START_RATE_STEP;
        } else {
            self.rate += AVOIDANCE_RATE_STEP;
        }
        if let Some(cap) = self.max_rate {
            self.rate = self.rate.min(cap);
        }
    }

    /// A connect started at `started` failed (timeout, reset, refusal) or is stalled:
    /// halve both limits, unless the connect started before the last cut (the cut
    /// already answered the overflow it was part of).
    pub fn congested(&mut self, started: Millis, now: Millis) {
        if self.pacing == Pacing::Fixed {
            return;
        }
        if self.last_cut.is_some_and(|cut| started < cut) {
            return;
        }
        self.last_cut = Some(now);
        self.cuts += 1;
        self.window_threshold = (self.window / 2.0).max(MIN_WINDOW);
        self.window = self.window_threshold;
        // The rate in force when the signal came (it may be capped below `self.rate`).
        let rate = self.rate().unwrap_or(self.rate);
        self.rate_threshold = (rate / 2.0).max(MIN_RATE);
        self.rate = self.rate_threshold;
        self.credit = self.credit.min(1.0);
        log::debug!(
            "pacing: congestion at {now} ms (a connect started at {started} ms): window {}, \
             {:.0} connects/s",
            self.window(),
            self.rate
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_connects_are_fast_and_halves_on_congestion() {
        let mut p = Pacer::new(Pacing::Adaptive, 2048, None);
        assert_eq!(p.window(), 16);
        for _ in 0..16 {
            p.opened(10, 10);
        }
        assert_eq!(p.window(), 32, "slow start: +1 per fast connect");
        assert_eq!(p.rate(), Some(INITIAL_RATE + 32.0));
        p.congested(50, 100);
        assert_eq!(p.window(), 16);
        assert_eq!(p.rate(), Some((INITIAL_RATE + 32.0) / 2.0));
        // More signals about connects started before the cut: the cut answered them.
        p.congested(99, 200);
        p.opened(60, 1_200);
        assert_eq!((p.window(), p.cuts), (16, 1));
        // Past the threshold, growth is slow: one per window of connects.
        for _ in 0..16 {
            p.opened(500, 500);
        }
        assert_eq!(p.window(), 16, "16 + 16 * 1/16 rounds to 16.99..");
        p.opened(500, 500);
        assert_eq!(p.window(), 17);
        // A connect started after the cut that stalls is a new signal; never below
        // the floors.
        for t in 1..20 {
            p.congested(t * 1_000, t * 1_000);
        }
        assert_eq!(p.window(), MIN_WINDOW as usize);
        assert_eq!(p.rate(), Some(MIN_RATE));
    }

    #[test]
    fn a_slow_connect_is_a_loss_and_the_caps_hold() {
        let mut p = Pacer::new(Pacing::Adaptive, 8, Some(150.0));
        assert_eq!(p.window(), 8, "--max-inflight caps the window");
        assert_eq!(p.rate(), Some(150.0), "--rate caps the rate");
        assert_eq!(p.stall_ms(), None);
        p.opened(0, 2);
        assert_eq!(p.stall_ms(), Some(STALL_MIN_MS));
        for _ in 0..100 {
            p.opened(0, 1);
        }
        assert_eq!(p.window(), 8);
        assert_eq!(p.rate(), Some(150.0));
        // A connect that took a second lost its SYN.
        p.opened(1_000, 2_000);
        assert_eq!(p.cuts, 1);
        assert_eq!(p.window(), 4);
        assert_eq!(p.rate(), Some(75.0));
    }

    #[test]
    fn the_bucket_spaces_starts_and_fixed_pacing_never_adapts() {
        let mut p = Pacer::new(Pacing::Fixed, 100, Some(1_000.0));
        // 10 ms of credit at most: a burst of 10, then one per millisecond.
        let mut started = 0;
        while p.take(0).is_ok() {
            started += 1;
        }
        assert_eq!(started, 1, "the first start has one credit");
        assert!(p.take(5).is_ok());
        let mut burst = 0;
        while p.take(100).is_ok() {
            burst += 1;
        }
        assert_eq!(burst, 10);
        assert_eq!(p.take(100), Err(Duration::from_millis(1)));
        p.congested(0, 0);
        p.opened(0, 5_000);
        assert_eq!((p.window(), p.rate(), p.cuts), (100, Some(1_000.0), 0));
        // No rate at all: every start is allowed.
        let mut free = Pacer::new(Pacing::Fixed, 10, None);
        assert!((0..1_000).all(|_| free.take(0).is_ok()));
    }
}
