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
//! per second), then by a smaller step once past the threshold the last cut left. Both
//! are **halved** on a congestion signal — but only by a signal about a connect started
//! *after* the last cut: one overflow produces a burst of signals, all about connects
//! started at the rate that caused it, and the cut already answered them (TCP cuts once
//! per window of data for the same reason). A signal is several losses at once — at
//! least `LOSSES_MIN` in a second, and at least 1 % of the connects that ended in it (a
//! loss now and then is not an overflow) — where a loss is:
//!
//! - a connect that **fails**: timed out, reset or refused (a refusal on loopback is
//!   also what a full queue does with `tcp_abort_on_overflow`);
//! - a **lost SYN**, as the kernel counts them (`netstat.rs`, read every `STALL_CHECK`):
//!   SYNs this machine had to retransmit, and for a loopback target the SYNs its
//!   listeners dropped — the overflow itself, seen the moment it happens;
//! - only where those counters cannot be read: a connect **stalled** 900 ms past the
//!   fastest connect seen (`stall_ms`), as a dropped SYN is retransmitted after a
//!   second. Timing is the weaker signal: on a busy machine completions wait hundreds of
//!   milliseconds for a CPU on their own (here, against `serve --workers auto` on two
//!   cores, connects took a second with 3 SYNs retransmitted in 60,000), and a pacer
//!   that took those for losses ran at half the machine's pace. `connecting.rs` keeps
//!   the connects in start order, oldest first, to find stalled ones.
//!
//! Each limit grows only while it is the one holding connects back (RFC 7661's rule for
//! TCP): the window when it was full, the rate when the bucket refused a start in the
//! last second. On loopback the window is therefore never full and stays at 16 — which
//! is what bounds how many SYNs an overflow can drop before starts stop.
//!
//! Why it matters even when nothing times out: with `tcp_syncookies=1` (the default),
//! a SYN retransmitted into a full queue is answered with a cookie, the client's
//! connect *completes*, and the server drops the final ACK because its accept queue is
//! still full. The client then holds a connection the server never had (measured here:
//! 600 connects to a server accepting 200/s with a backlog of 4, all "open" after a
//! second, 1,754 `ListenOverflows`, and the server ever accepted 18 of them). Pacing below the
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
/// round (`1 / window` each), the rate e^0.5-fold (65 %) per second: a connect phase is
/// short, and a cut that was too deep must not cost the rest of it.
const AVOIDANCE_RATE_STEP: f64 = 0.5;
/// What a cut leaves of the window and the rate.
const CUT: f64 = 0.5;
/// A dropped SYN is resent after a second (the kernel's minimum retransmission timeout),
/// so a connect that lost one takes at least its round trip plus a second. A connect in
/// flight for its round trip plus this much has lost its SYN; anything less may be a
/// busy machine (on this 2-core one, completions waited up to ~900 ms for a CPU while
/// 120 processes competed, and those are not the target's doing).
const STALL_MARGIN_MS: Millis = 900;
/// Losses within one `EPOCH_MS` that make a congestion signal: at least this many...
const LOSSES_MIN: u64 = 3;
/// ... and at least this share (percent) of the connects that ended meanwhile. A loss
/// now and then (measured here: 17 SYNs resent in 60,000 connects, with no accept queue
/// overflowing) says nothing about the target's pace; an overflow drops many at once.
const LOSS_PERCENT: u64 = 1;
/// The period over which losses are counted.
const EPOCH_MS: Millis = 1_000;
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
    /// The fastest connect seen, ms: the target's distance without any queueing, for
    /// the stall threshold (None until one completes).
    fastest_ms: Option<Millis>,
    /// When the token bucket last held a start back: the rate is only raised while it
    /// is what limits (RFC 7661's rule for TCP: do not grow a limit nobody is using).
    rate_limited_at: Option<Millis>,
    /// The current counting period: when it began, connects that completed quickly in
    /// it, and losses (failures, stalls) in it.
    epoch: (Millis, u64, u64),
    /// Stalled and slow connects count as losses: only where the kernel's own count of
    /// lost SYNs cannot be read (`netstat.rs`), since a busy machine makes them too.
    pub timing_losses: bool,
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
            rate_limited_at: None,
            epoch: (0, 0, 0),
            timing_losses: true,
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
        self.rate_limited_at = Some(now);
        let ms = ((1.0 - self.credit) * 1000.0 / rate).ceil().max(1.0);
        Err(Duration::from_millis(ms as u64))
    }

    /// How long a connect may be in flight before it counts as stalled: the fastest
    /// connect plus `STALL_MARGIN_MS` (None until one connect has completed: the
    /// target's distance is unknown).
    pub fn stall_ms(&self) -> Option<Millis> {
        self.fastest_ms.map(|f| f + STALL_MARGIN_MS)
    }

    /// A connect started at `started` completed at `now`, with `in_flight` others still
    /// in flight: grow, unless it took so long that its SYN must have been dropped (then
    /// it is a congestion signal like any other). Each limit grows only while it is the
    /// one holding connects back: the window when it was full, the rate when the bucket
    /// refused a start in the last second. On loopback the handshakes complete at once,
    /// so the window is never full and stays small — which is what bounds how many SYNs
    /// an overflow can drop before starts stop.
    pub fn opened(&mut self, started: Millis, now: Millis, in_flight: usize) {
        let took_ms = now.saturating_sub(started);
        let stalled = self.stall_ms().is_some_and(|stall| took_ms > stall);
        self.fastest_ms = Some(self.fastest_ms.map_or(took_ms, |f| f.min(took_ms)));
        if stalled {
            // A lost SYN, or a busy machine: a loss only if the kernel cannot say.
            if self.timing_losses {
                self.congested(started, now);
            }
            return;
        }
        self.roll(now);
        self.epoch.1 += 1;
        if self.pacing == Pacing::Fixed {
            return;
        }
        if in_flight + 1 >= self.window() {
            if self.window < self.window_threshold {
                self.window += 1.0;
            } else {
                self.window += 1.0 / self.window;
            }
            self.window = self.window.min(self.max_window as f64);
        }
        let rate_bound = self
            .rate_limited_at
            .is_some_and(|t| now.saturating_sub(t) < 1_000);
        if rate_bound {
            if self.rate < self.rate_threshold {
                self.rate += SLOW_START_RATE_STEP;
            } else {
                self.rate += AVOIDANCE_RATE_STEP;
            }
        }
        if let Some(cap) = self.max_rate {
            self.rate = self.rate.min(cap);
        }
    }

    /// A connect started at `started` failed (timeout, reset, refusal) or is stalled:
    /// halve both limits, unless the connect started before the last cut (the cut
    /// already answered the overflow it was part of).
    pub fn congested(&mut self, started: Millis, now: Millis) {
        self.lost(1, started, now);
    }

    /// `count` SYNs of connects started at about `started` were lost (the kernel's
    /// count, `netstat.rs`): as many losses.
    pub fn lost(&mut self, count: u64, started: Millis, now: Millis) {
        if self.pacing == Pacing::Fixed || count == 0 {
            return;
        }
        if self.last_cut.is_some_and(|cut| started < cut) {
            return;
        }
        self.roll(now);
        self.epoch.2 += count;
        let (_, fast, lost) = self.epoch;
        if lost < LOSSES_MIN || lost * 100 < (fast + lost) * LOSS_PERCENT {
            return; // a loss now and then, not an overflow
        }
        self.epoch = (now, 0, 0);
        self.last_cut = Some(now);
        self.cuts += 1;
        self.window_threshold = (self.window * CUT).max(MIN_WINDOW);
        self.window = self.window_threshold;
        // The rate in force when the signal came (it may be capped below `self.rate`).
        let rate = self.rate().unwrap_or(self.rate);
        self.rate_threshold = (rate * CUT).max(MIN_RATE);
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

impl Pacer {
    /// Begin a new counting period if the current one is over.
    fn roll(&mut self, now: Millis) {
        if now.saturating_sub(self.epoch.0) >= EPOCH_MS {
            self.epoch = (now, 0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overflow: several losses of connects started at `started`, seen at `now`.
    fn overflow(p: &mut Pacer, started: Millis, now: Millis) {
        for _ in 0..LOSSES_MIN {
            p.congested(started, now);
        }
    }

    /// Use up the bucket's credit at `now`, so that the rate is what limits.
    fn drain(p: &mut Pacer, now: Millis) {
        while p.take(now).is_ok() {}
    }

    #[test]
    fn grows_while_connects_are_fast_and_is_cut_on_congestion() {
        let mut p = Pacer::new(Pacing::Adaptive, 2048, None);
        assert_eq!(p.window(), 16);
        drain(&mut p, 10);
        for _ in 0..16 {
            // The window was full each time: it grows by one per completed connect.
            p.opened(10, 10, p.window() - 1);
        }
        assert_eq!(
            p.window(),
            32,
            "slow start: +1 per fast connect of a full window"
        );
        assert_eq!(p.rate(), Some(INITIAL_RATE + 16.0 * SLOW_START_RATE_STEP));
        overflow(&mut p, 50, 100);
        assert_eq!(p.window(), 16, "32 / 2");
        assert_eq!(
            p.rate(),
            Some((INITIAL_RATE + 16.0 * SLOW_START_RATE_STEP) * CUT)
        );
        // More signals about connects started before the cut: the cut answered them.
        overflow(&mut p, 99, 200);
        p.opened(60, 1_200, 15);
        assert_eq!((p.window(), p.cuts), (16, 1));
        // Past the threshold, growth is slow: one per window of connects.
        for _ in 0..15 {
            p.opened(500, 500, 15);
        }
        assert_eq!(p.window(), 16, "16 + 15 / ~16.5 is under 17");
        for _ in 0..2 {
            p.opened(500, 500, 16);
        }
        assert_eq!(p.window(), 17);
        // A connect started after the cut that stalls is a new signal; never below
        // the floors.
        for t in 1..20 {
            overflow(&mut p, t * 1_000, t * 1_000);
        }
        assert_eq!(p.window(), MIN_WINDOW as usize);
        assert_eq!(p.rate(), Some(MIN_RATE));
    }

    #[test]
    fn a_limit_that_holds_nothing_back_does_not_grow() {
        let mut p = Pacer::new(Pacing::Adaptive, 2048, None);
        // Loopback: every connect completes at once, nothing else in flight, and the
        // bucket never said no.
        for _ in 0..1_000 {
            p.opened(0, 0, 0);
        }
        assert_eq!(p.window(), 16, "never full, never grown");
        assert_eq!(p.rate(), Some(INITIAL_RATE), "never limiting, never grown");
        drain(&mut p, 5);
        p.opened(5, 5, 0);
        assert_eq!(p.rate(), Some(INITIAL_RATE + SLOW_START_RATE_STEP));
        // A second after the bucket last said no, the rate is no longer the limit.
        p.opened(1_400, 1_500, 0);
        assert_eq!(p.rate(), Some(INITIAL_RATE + SLOW_START_RATE_STEP));
    }

    #[test]
    fn a_slow_connect_is_a_loss_and_the_caps_hold() {
        let mut p = Pacer::new(Pacing::Adaptive, 8, Some(150.0));
        assert_eq!(p.window(), 8, "--max-inflight caps the window");
        assert_eq!(p.rate(), Some(150.0), "--rate caps the rate");
        assert_eq!(p.stall_ms(), None);
        p.opened(0, 2, 7);
        assert_eq!(
            p.stall_ms(),
            Some(902),
            "the fastest connect plus the margin"
        );
        drain(&mut p, 1);
        for _ in 0..100 {
            p.opened(0, 1, 7);
        }
        assert_eq!(p.window(), 8);
        assert_eq!(p.rate(), Some(150.0));
        // Connects that took a second lost their SYNs.
        for _ in 0..LOSSES_MIN {
            p.opened(1_000, 2_000, 7);
        }
        assert_eq!(p.cuts, 1);
        assert_eq!(p.window(), 4);
        assert_eq!(p.rate(), Some(75.0));
    }

    #[test]
    fn a_busy_machine_does_not_count_but_a_lost_syn_does() {
        let mut p = Pacer::new(Pacing::Adaptive, 2048, None);
        // Completions delayed by a busy CPU: 0, 300, 0, 300 ... ms.
        for i in 0..40 {
            p.opened(0, if i % 2 == 0 { 0 } else { 300 }, 0);
        }
        assert_eq!(p.stall_ms(), Some(900));
        p.opened(10_000, 10_800, 0);
        assert_eq!(p.cuts, 0, "an 800 ms connect is a busy machine");
        p.opened(20_000, 21_000, 0);
        assert_eq!(p.cuts, 0, "one lost SYN is not an overflow");
        for _ in 0..500 {
            p.opened(21_000, 21_000, 0);
        }
        p.opened(20_100, 21_100, 0);
        p.opened(20_100, 21_100, 0);
        assert_eq!(p.cuts, 0, "three of 503 (0.6 %) is not one either");
        for _ in 0..3 {
            p.opened(20_200, 21_200, 0);
        }
        assert_eq!(p.cuts, 1, "six of 506 (1.2 %) is");
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
        overflow(&mut p, 0, 0);
        p.opened(0, 5_000, 99);
        assert_eq!((p.window(), p.rate(), p.cuts), (100, Some(1_000.0), 0));
        // No rate at all: every start is allowed.
        let mut free = Pacer::new(Pacing::Fixed, 10, None);
        assert!((0..1_000).all(|_| free.take(0).is_ok()));
    }
}
