//! The hold: starting it (at once, or at `--start-at`), timing it, ending it.
//!
//! A single process holds as soon as its connections are open; a worker waits for the
//! parent's `go` (every worker connected); with `--start-at UNIX_SECONDS` the hold
//! begins at that wall-clock moment instead, so that instances on many hosts (`--segment
//! K/N`) measure the same window. The wait is a loop timer (`START_TIMER`), and as the
//! loop's clock is monotonic and the target is a wall-clock time, it is checked again
//! when it fires: the hold never begins before `--start-at`. A `--start-at` already past
//! when the connections are open begins the hold at once, with a warning.
//!
//! During the hold every latency sample goes into the run's histogram and, with
//! `--hdr-log`, into the current interval's (`hdrlog.rs`, cut every `INTERVAL` by
//! `INTERVAL_TIMER`). The end: `HOLD_TIMER` stops new requests, replies still owed get
//! up to a second (`DRAIN_TIMER`), and the books are closed (`finish`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::apps::stress::hdrlog::{IntervalRecorder, INTERVAL};
use crate::apps::stress::probe::{
    secs_since, Phase, ProbeState, Stress, DRAIN, DRAIN_TIMER, HOLD_TIMER, INTERVAL_TIMER,
    MID_HOLD_TIMER, START_TIMER,
};
use crate::apps::stress::report::record_us;
use crate::core::Ctx;

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Stress {
    /// The connect phase is over (single process): hold now, or at `--start-at`.
    pub(super) fn hold_when_due(&mut self, ctx: &mut Ctx<ProbeState>) {
        if let Some(at) = self.plan.start_at {
            match at.duration_since(SystemTime::now()) {
                Ok(wait) if !wait.is_zero() => {
                    // Whole milliseconds up, so the timer does not fire just before.
                    let ms = wait.as_micros().div_ceil(1000) as u64;
                    ctx.timer_after(Duration::from_millis(ms.max(1)), START_TIMER);
                    return;
                }
                Ok(_) => {}
                Err(e) => log::warn!(
                    "--start-at passed {:.3} s before the connections were open: holding now",
                    e.duration().as_secs_f64()
                ),
            }
        }
        self.start_hold(ctx);
    }

    /// Start the hold: active connections begin their round trips, and the timers for
    /// its end (and its middle, to measure the target) are set.
    pub fn start_hold(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.hold_started = Some(ctx.now());
        let began = unix_now();
        self.report.hold_began = Some((began, began));
        self.phase = Phase::Holding;
        ctx.timer_after(self.plan.hold, HOLD_TIMER);
        if self.plan.log_intervals {
            self.intervals = Some(IntervalRecorder::new());
            ctx.timer_every(INTERVAL, INTERVAL_TIMER);
        }
        if !self.plan.server_pids.is_empty() {
            ctx.timer_after(self.plan.hold / 2, MID_HOLD_TIMER);
        }
        let now = Instant::now();
        for (i, token) in self.active_tokens.clone().into_iter().enumerate() {
            self.begin_probing(ctx, token, now + self.stagger(i));
        }
    }

    /// Close the books and stop the loop (once).
    pub fn end(&mut self, ctx: &mut Ctx<ProbeState>) {
        if self.phase != Phase::Done {
            self.finish(ctx);
            ctx.stop();
        }
    }

    /// A signal (Ctrl-C, SIGTERM) cuts the run short, in whatever phase: close the books
    /// on what was measured so far, marked as interrupted, and stop. Requests in flight
    /// are not counted as unanswered: they were not given their chance.
    pub fn interrupt(&mut self, ctx: &mut Ctx<ProbeState>, signal: &str) {
        if self.phase == Phase::Done {
            return;
        }
        self.report.interrupted = Some(signal.to_string());
        if self.phase == Phase::Connecting {
            if let Some(timer) = self.stall_timer.take() {
                ctx.cancel_timer(timer);
            }
            self.report_pacing();
            self.report.conns_open = self.open;
            self.report.connect_secs = secs_since(ctx, self.started);
            self.report_memory();
        }
        for probe in self.probes.iter_mut().map(|(_, p)| p) {
            probe.in_flight = false;
        }
        self.end(ctx);
    }

    /// Count connections that are still open and close the books. A request still
    /// unanswered is recorded with the time it has waited so far: a stalled server
    /// must show up as latency, not as silence.
    pub(super) fn finish(&mut self, ctx: &mut Ctx<ProbeState>) {
        let now = Instant::now();
        if matches!(self.phase, Phase::Holding | Phase::Draining) {
            let waits: Vec<u64> = self
                .active_tokens
                .iter()
                .filter_map(|&t| self.probe(ctx, t))
                .filter(|probe| probe.in_flight)
                .map(|probe| now.saturating_duration_since(probe.from).as_micros() as u64)
                .collect();
            for us in waits {
                self.record(us);
                self.report.unanswered += 1;
            }
        }
        // The last, partial interval: every sample is then in exactly one.
        self.cut_interval();
        if let Some(intervals) = self.intervals.take() {
            self.report.intervals = intervals.done;
        }
        self.report.still_open_at_end = self.open;
        if let (Some(t), 0.0) = (self.hold_started, self.report.hold_secs) {
            self.report.hold_secs = secs_since(ctx, t);
        }
        self.phase = Phase::Done;
    }

    /// `HOLD_TIMER`: the hold is what the rate is measured over; replies to requests sent
    /// during it still count, so wait a little for them before closing the books.
    pub(super) fn hold_over(&mut self, ctx: &mut Ctx<ProbeState>) {
        if let Some(t) = self.hold_started {
            self.report.hold_secs = secs_since(ctx, t);
        }
        self.phase = Phase::Draining;
        if self.in_flight(ctx) == 0 {
            self.end(ctx);
        } else {
            ctx.timer_after(DRAIN, DRAIN_TIMER);
        }
    }

    /// Requests sent and not yet answered.
    pub(super) fn in_flight(&self, ctx: &Ctx<ProbeState>) -> usize {
        self.active_tokens
            .iter()
            .filter(|&&t| self.probe(ctx, t).is_some_and(|p| p.in_flight))
            .count()
    }

    /// While draining: end as soon as nothing is owed any more.
    pub(super) fn end_if_drained(&mut self, ctx: &mut Ctx<ProbeState>) {
        if self.phase == Phase::Draining && self.in_flight(ctx) == 0 {
            self.end(ctx);
        }
    }

    /// One latency sample, into the run's histogram and the current interval's.
    pub(super) fn record(&mut self, us: u64) {
        record_us(&mut self.report.latency, us);
        if let Some(intervals) = &mut self.intervals {
            intervals.record(us);
        }
    }

    /// `INTERVAL_TIMER`: close the log's current interval.
    pub(super) fn cut_interval(&mut self) {
        if let Some(intervals) = &mut self.intervals {
            if let Err(e) = intervals.cut() {
                log::warn!("--hdr-log: {e}");
            }
        }
    }
}
