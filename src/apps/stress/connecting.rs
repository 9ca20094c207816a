//! Connecting: how many connects may start, and when (the `Connecting` phase).
//!
//! Connects start (active connections first, so measuring can begin with all of them)
//! while fewer than `--max-inflight` are in flight and the `--rate` allows: connect
//! number n may start n / rate seconds after the first. When the rate is what holds the
//! next one back, one `LAUNCH_TIMER` is set for the moment it may start. Each connect
//! gets a deadline (`--connect-timeout`); a non-blocking connect completes as a writable
//! event, which the loop turns into `on_open` or a `ConnectFailed` close, and either one
//! frees a place, so `advance` is called from there and more connects start.
//!
//! Failures are counted by kind (refused, timeout, reset, other) from the `io::Error`,
//! and the first one's message is kept for the report.

use std::io;
use std::time::{Duration, Instant};

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
        if self.launched() >= self.total() && self.inflight == 0 {
            self.connect_phase_over(ctx);
        }
    }

    /// Start as many connects as the in-flight bound and the rate allow; if the rate is
    /// what stops us, set `LAUNCH_TIMER` for when it allows the next one.
    pub(super) fn launch(&mut self, ctx: &mut Ctx<ProbeState>) {
        while self.launched() < self.total() && self.inflight < self.plan.max_inflight {
            if let Some(rate) = self.plan.rate {
                // Connect number n (from 0) may start n / rate seconds after the first.
                let elapsed = ctx.now().saturating_sub(self.started);
                let due = (self.launched() as f64 * 1000.0 / rate).ceil() as Millis;
                if due > elapsed {
                    if self.launch_timer.is_none() {
                        let wait = Duration::from_millis(due - elapsed);
                        self.launch_timer = Some(ctx.timer_after(wait, LAUNCH_TIMER));
                    }
                    return;
                }
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
        let state = ProbeState {
            connected: false,
            active: is_active.then(|| Box::new(ActiveProbe::new(Instant::now()))),
        };
        match ctx.connect_from(&self.plan.target, source, state) {
            Ok(token) => {
                self.inflight += 1;
                ctx.set_deadline(token, self.plan.connect_timeout);
            }
            Err(e) => {
                self.connect_failed(&e);
                if is_active {
                    self.launched_active -= 1;
                    self.launched_idle += 1; // count it as attempted, do not retry
                }
            }
        }
    }

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

    pub(super) fn connect_phase_over(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.report.conns_open = self.open;
        self.report.connect_secs = secs_since(ctx, self.started);
        self.report.client_rss_bytes_per_conn = self.rss_growth_per_conn();
        self.phase = Phase::Connected;
        if self.open == 0 {
            // Nothing to hold or measure: say so now rather than after the hold.
            self.end(ctx);
            return;
        }
        if self.auto_hold {
            self.start_hold(ctx);
        }
    }
}
