//! Connecting: how many connects may start, and when (the `Connecting` phase).
//!
//! Connects start (active connections first, so measuring can begin with all of them)
//! while the pacer (`pacing.rs`) allows: fewer than its window in flight, and a credit
//! of its rate. When the rate is what holds the next one back, one `LAUNCH_TIMER` is set
//! for the moment it may start; a repeating `STALL_TIMER` looks for connects that have
//! been in flight too long (a dropped SYN), the pacer's early congestion signal. Each connect
//! gets a deadline (`--connect-timeout`); a non-blocking connect completes as a writable
//! event, which the loop turns into `on_open` or a `ConnectFailed` close, and either one
//! frees a place, so `advance` is called from there and more connects start.
//!
//! Failures are counted by kind (refused, timeout, reset, other) from the `io::Error`,
//! and the first one's message is kept for the report.

use std::io;
use std::time::Instant;

use crate::apps::stress::netstat;
use crate::apps::stress::probe::{secs_since, Phase, ProbeState, Stress, LAUNCH_TIMER};
use crate::apps::stress::rounds::ActiveProbe;
use crate::core::{Ctx, Millis};

impl Stress {
    pub(super) fn total(&self) -> usize {
        self.plan.idle + self.plan.active
    }

    pub(super) fn launched(&self) -> usize {
        self.launched_active + self.launched_idle
    }

    /// While connecting: start what may start, and end the phase once all are done.
    /// Called when connecting starts, when a connect completes or fails (a place is
    /// free), and when `LAUNCH_TIMER` says the rate allows more.
    pub(super) fn advance(&mut self, ctx: &mut Ctx<ProbeState>) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.launch(ctx);
        if self.launched() >= self.total() && self.connecting.is_empty() {
            self.connect_phase_over(ctx);
        }
    }

    /// Start as many connects as the pacer's window and rate allow; if the rate is what
    /// stops us, set `LAUNCH_TIMER` for when it allows the next one.
    pub(super) fn launch(&mut self, ctx: &mut Ctx<ProbeState>) {
        while self.launched() < self.total() && self.connecting.len() < self.pacer.window() {
            if let Err(wait) = self.pacer.take(ctx.now()) {
                if self.launch_timer.is_none() {
                    self.launch_timer = Some(ctx.timer_after(wait, LAUNCH_TIMER));
                }
                return;
            }
            let is_active = self.launched_active < self.plan.active;
            if is_active {
                self.launched_active += 1;
            } else {
                self.launched_idle += 1;
            }
            self.connect_one(ctx, is_active);
        }
    }

    pub(super) fn connect_one(&mut self, ctx: &mut Ctx<ProbeState>, is_active: bool) {
        let source = if self.plan.sources.is_empty() {
            None
        } else {
            self.next_source = (self.next_source + 1) % self.plan.sources.len();
            Some(self.plan.sources[self.next_source])
        };
        // The time of this very call, on the loop's clock: the turn's own time may be
        // a long turn old (launching thousands of connects takes a while), and that
        // wait is ours, not the target's. The completion is timed at the turn that
        // sees it (when the poll returned), for the same reason.
        let started = (ctx.now() + ctx.instant().elapsed().as_millis() as Millis) as u32;
        let probe = is_active.then(|| self.probes.insert(ActiveProbe::new(Instant::now())));
        let state = probe.map_or_else(ProbeState::default, ProbeState::active);
        match ctx.connect_from(&self.plan.target, source, state) {
            Ok(token) => {
                self.pending.push_back((token, started));
                self.connecting.insert(token, started);
                ctx.set_deadline(token, self.plan.connect_timeout);
            }
            Err(e) => {
                if let Some(key) = probe {
                    self.probes.remove(key);
                }
                self.connect_failed(&e);
                if is_active {
                    self.launched_active -= 1;
                    self.launched_idle += 1; // count it as attempted, do not retry
                }
            }
        }
    }

    /// Counts a failed connect by kind.
    pub(super) fn connect_failed(&mut self, e: &io::Error) {
        let errors = &mut self.report.connect_errors;
        match e.kind() {
            io::ErrorKind::ConnectionRefused => errors.refused += 1,
            io::ErrorKind::TimedOut => errors.timeout += 1,
            io::ErrorKind::ConnectionReset => errors.reset += 1,
            _ => errors.other += 1,
        }
        if self.report.first_error.is_none() {
            self.report.first_error = Some(e.to_string());
        }
    }

    /// `STALL_TIMER`: a connect in flight for longer than the pacer's stall threshold
    /// lost its SYN (a full accept queue): a congestion signal, one per such connect.
    pub(super) fn check_stalls(&mut self, ctx: &mut Ctx<ProbeState>) {
        let now = ctx.now();
        if let Some(before) = self.syn_counters {
            if let Some(counters) = netstat::read() {
                let lost = counters.losses_since(&before, self.loopback);
                // A listener's drop is seen at once; a retransmission a second after
                // the connect began.
                let age = if self.loopback { 100 } else { 1_000 };
                self.pacer.lost(lost, now.saturating_sub(age), now);
                self.syn_counters = Some(counters);
            }
        }
        let stall = self.pacer.stall_ms();
        while let Some(&(token, started)) = self.pending.front() {
            // Still the same connect (a token is reused once its connection closes).
            let pending = self.connecting.get(&token) == Some(&started);
            if pending {
                match stall {
                    Some(stall) if now.saturating_sub(started as Millis) > stall => {
                        self.report.stalled_connects += 1;
                        if self.pacer.timing_losses {
                            self.pacer.congested(started as Millis, now);
                        }
                    }
                    _ => return, // the oldest is not stalled, so none is
                }
            }
            self.pending.pop_front();
        }
    }

    /// The pacer's state, into the report (summed over workers by the parent).
    pub(super) fn report_pacing(&mut self) {
        self.report.pacing_cuts = self.pacer.cuts;
        self.report.pacing_rate = self.pacer.rate();
        self.report.pacing_window = self.pacer.window() as u64;
    }

    pub(super) fn connect_phase_over(&mut self, ctx: &mut Ctx<ProbeState>) {
        if let Some(timer) = self.stall_timer.take() {
            ctx.cancel_timer(timer);
        }
        self.pending = Default::default();
        self.connecting = Default::default();
        self.report_pacing();
        self.report.conns_open = self.open;
        self.report.connect_secs = secs_since(ctx, self.started);
        self.report_memory();
        self.phase = Phase::Connected;
        if self.open == 0 {
            // Nothing to hold or measure: say so now rather than after the hold.
            self.end(ctx);
            return;
        }
        if self.auto_hold {
            self.hold_when_due(ctx);
        }
    }
}

/// A failed connect that says the target is overloaded (its accept queue overflowed):
/// a timeout, a reset, a refusal. Others (no ports left here, no descriptors) say
/// nothing about the target's pace.
pub(super) fn is_congestion(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}
