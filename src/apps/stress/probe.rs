//! The stress tester's handler: many idle connections, a few measured ones.
//!
//! It runs on the same loop as the servers, in client mode, in four phases:
//!
//! 1. **Connecting** (`connecting.rs`): start connects (active ones first) while fewer
//!    than `--max-inflight` are in flight and the `--rate` allows, each with a deadline
//!    (`--connect-timeout`).
//! 2. **Holding** for `--hold` seconds: idle connections sit still (or send
//!    `--keepalive-data` every `--keepalive` seconds); active ones do round trips, each
//!    checked and timed into an HDR histogram (`rounds.rs`).
//! 3. **Draining** (at most a second): no new requests; replies to those already sent
//!    are still timed; any still missing are counted as `unanswered`, with their wait.
//! 4. **Done**: the loop stops and the counters become a `Report`.
//!
//! What is due at a time is the loop's business, in two forms:
//!
//! - **loop timers** for the run as a whole, each with a key: `LAUNCH_TIMER` (the
//!   `--rate` allows the next connect), `HOLD_TIMER` (the hold is over), `DRAIN_TIMER`
//!   (the drain is over), `MID_HOLD_TIMER` (read the server's memory half way);
//! - **a connection's deadline** (`Ctx::set_deadline`, `on_deadline`) for what is due
//!   on one connection, and its state says what that is: a connect that has not
//!   completed times out; an idle connection sends its keepalive; an active one sends
//!   its next `--rate-limit`ed request.
//!
//! So the loop sleeps until exactly the next thing due and nothing here runs per turn:
//! with 20,000 idle connections a turn that handles one reply costs one reply.
//!
//! An idle connection costs the loop a slot and this handler an 8-byte state, so the
//! stress tester itself stays cheap per connection: that is the loop's claim, tested on
//! the client side.
//!
//! This file holds the handler's state, its phases and its callbacks; the work of the
//! two busy phases is in `connecting.rs` and `rounds.rs`, as more `impl Stress` blocks.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use mio::Token;
use slab::Slab;

use crate::apps::stress::connecting::is_congestion;
use crate::apps::stress::hdrlog::IntervalRecorder;
use crate::apps::stress::memory::{mem_kb, server_mem_per_conn, tree_mem_kb, Mem};
use crate::apps::stress::netstat::{self, SynCounters};
use crate::apps::stress::pacing::{Pacer, STALL_CHECK};
use crate::apps::stress::plan::Plan;
use crate::apps::stress::progress::Progress;
use crate::apps::stress::report::Report;
use crate::apps::stress::rounds::ActiveProbe;
use crate::core::signal_name;
use crate::core::{CloseReason, Closed, Ctx, Handler, Millis, SignalAction, Target, TimerId};

/// After the hold, how long to wait for replies to requests already sent.
pub(super) const DRAIN: Duration = Duration::from_secs(1);

/// Timer key: the `--rate` allows the next connect now.
pub const LAUNCH_TIMER: u64 = 1;
/// Timer key: `--hold` is over; send nothing more, wait for what is owed.
pub const HOLD_TIMER: u64 = 2;
/// Timer key: the drain after the hold is over; close the books.
pub const DRAIN_TIMER: u64 = 3;
/// Timer key: half way through the hold, when every connection is open and none has
/// been closed yet: read the target's memory (`--server-pid`).
pub const MID_HOLD_TIMER: u64 = 4;
/// Timer key (repeating, while connecting): look for stalled connects (`pacing.rs`).
pub const STALL_TIMER: u64 = 5;
/// Timer key: `--start-at` has come (checked against the wall clock; `hold.rs`).
pub const START_TIMER: u64 = 6;
/// Timer key (repeating, during the hold): close the `--hdr-log` interval.
pub const INTERVAL_TIMER: u64 = 7;
/// Timer keys below this one are `Stress`'s; a handler that wraps it uses keys from
/// here up for its own timers and passes the others on.
pub const FIRST_FREE_TIMER: u64 = 16;

/// Per-connection state: 4 bytes, the number of an active connection's round-trip
/// state in `Stress::probes` (None: an idle connection).
///
/// Why so little: a million idle connections keep a million of these, inside the loop's
/// slots. The slot has 6 bytes of padding, so a 4-byte state costs nothing more, where a
/// pointer to the probe (8 bytes, as before) made every slot 8 bytes larger. What only a
/// connect in flight needs (when it started) is in `Stress::connecting`, which holds as
/// many entries as there are connects in flight, not connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeState {
    /// Key + 1 of the connection's `ActiveProbe` in `Stress::probes` (None: idle).
    active: Option<NonZeroU32>,
}

impl ProbeState {
    /// The state of an active connection whose probe is `probes[key]`.
    pub(super) fn active(key: usize) -> ProbeState {
        ProbeState {
            active: u32::try_from(key + 1).ok().and_then(NonZeroU32::new),
        }
    }

    /// The key of the connection's probe in `Stress::probes`, if it is an active one.
    pub(super) fn probe(self) -> Option<usize> {
        self.active.map(|k| k.get() as usize - 1)
    }

    /// An active (measuring) connection.
    pub(super) fn is_active(self) -> bool {
        self.active.is_some()
    }
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections.
    Connecting,
    /// Connect phase over; waiting for the go-ahead (worker processes).
    Connected,
    /// Holding and measuring, until `HOLD_TIMER`.
    Holding,
    /// Hold over: no new requests; waiting (until `DRAIN_TIMER` at most) for the
    /// replies to requests already sent.
    Draining,
    /// Finished.
    Done,
}

/// The stress handler.
pub struct Stress {
    pub(super) plan: Plan,
    /// Results so far.
    pub report: Report,
    pub(super) phase: Phase,
    /// When connecting started, on the loop's clock (the `--rate` schedule's zero).
    pub(super) started: Millis,
    pub(super) launched_active: usize,
    pub(super) launched_idle: usize,
    pub(super) open: u64,
    pub(super) next_source: usize,
    pub(super) active_tokens: Vec<Token>,
    /// The round-trip state of each active connection (`ProbeState` holds its key).
    pub(super) probes: Slab<ActiveProbe>,
    /// When the hold started, on the loop's clock.
    pub(super) hold_started: Option<Millis>,
    /// The pending `LAUNCH_TIMER`, so that there is only ever one.
    pub(super) launch_timer: Option<TimerId>,
    /// How many connects may be in flight and start per second (`pacing.rs`).
    pub(super) pacer: Pacer,
    /// Connects in start order with their start times, oldest first, to find stalled
    /// ones (entries of completed connects are dropped as they reach the front).
    pub(super) pending: VecDeque<(Token, u32)>,
    /// The connects in flight, with their start times on the loop's clock (ms; for
    /// the pacer). A connection not in here has completed its connect.
    pub(super) connecting: HashMap<Token, u32>,
    /// The repeating `STALL_TIMER`, while connecting.
    pub(super) stall_timer: Option<TimerId>,
    /// The kernel's count of lost SYNs at the last check (None: not readable; then
    /// stalled connects are the loss signal).
    pub(super) syn_counters: Option<SynCounters>,
    /// The target is on this machine: its listeners' drops are ours to count.
    pub(super) loopback: bool,
    /// Hold automatically when connected (single process); workers wait for `go`.
    pub auto_hold: bool,
    pub(super) payload: Vec<u8>,
    /// This process's memory just before the first connect (read in `start`: the loop
    /// and this handler are set up by then, so their own memory is not counted as the
    /// connections').
    pub(super) mem_before: Option<Mem>,
    /// The target's memory before connecting (with `server_pid`).
    pub(super) server_mem_before: Option<Mem>,
    /// The `--hdr-log` intervals of the hold, while it lasts.
    pub(super) intervals: Option<IntervalRecorder>,
    /// A bad HTTP response was logged (once is enough).
    pub(super) http_error_logged: bool,
}

impl Stress {
    /// A handler for `plan`.
    pub fn new(plan: Plan) -> Stress {
        let report = Report {
            conns_requested: (plan.idle + plan.active) as u64,
            active: plan.active as u64,
            ..Report::default()
        };
        let (plan_pacing, plan_max_inflight, plan_rate) =
            (plan.pacing, plan.max_inflight, plan.rate);
        let loopback = matches!(&plan.target, Target::Tcp(a) if a.ip().is_loopback());
        Stress {
            payload: vec![0; plan.size],
            server_mem_before: tree_mem_kb(&plan.server_pids),
            plan,
            report,
            phase: Phase::Connecting,
            started: 0,
            launched_active: 0,
            launched_idle: 0,
            open: 0,
            next_source: 0,
            active_tokens: Vec::new(),
            probes: Slab::new(),
            hold_started: None,
            launch_timer: None,
            pacer: Pacer::new(plan_pacing, plan_max_inflight, plan_rate),
            pending: VecDeque::new(),
            connecting: HashMap::new(),
            stall_timer: None,
            syn_counters: None,
            loopback,
            auto_hold: true,
            mem_before: None,
            intervals: None,
            http_error_logged: false,
        }
    }

    /// Start connecting (before the loop runs). If no connect can even start, the run
    /// is over at once and the loop is stopped.
    pub fn start(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.mem_before = mem_kb("self");
        self.started = ctx.now();
        if matches!(self.plan.target, Target::Tcp(_)) {
            self.syn_counters = netstat::read();
            self.pacer.timing_losses = self.syn_counters.is_none();
        }
        self.stall_timer = Some(ctx.timer_every(STALL_CHECK, STALL_TIMER));
        self.advance(ctx);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Numbers for a progress line.
    pub fn progress(&self) -> Progress {
        Progress {
            open: self.open,
            requested: self.report.conns_requested,
            connect_errors: self.report.connect_errors.total(),
            round_trips: self.report.round_trips,
            p99_us: if self.report.latency.is_empty() {
                0
            } else {
                self.report.latency.value_at_quantile(0.99)
            },
        }
    }

    /// This process's memory growth per open connection since it started connecting,
    /// into the report: RSS, and anonymous RSS (`memory.rs`).
    pub(super) fn report_memory(&mut self) {
        let growth = mem_kb("self").and_then(|m| m.growth_per_conn(self.mem_before?, self.open));
        self.report.client_rss_bytes_per_conn = growth.map(|g| g.0);
        self.report.client_anon_bytes_per_conn = growth.map(|g| g.1);
    }
}

/// Seconds on the loop's clock since `t` (exact to a millisecond: enough for phases).
pub(super) fn secs_since(ctx: &Ctx<ProbeState>, t: Millis) -> f64 {
    ctx.now().saturating_sub(t) as f64 / 1000.0
}

impl Handler for Stress {
    type State = ProbeState;

    fn on_open(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.open += 1;
        ctx.clear_deadline(token);
        let now = ctx.now();
        if let Some(started) = self.connecting.remove(&token) {
            self.pacer
                .opened(started as Millis, now, self.connecting.len());
        }
        let Some(&state) = ctx.state(token) else {
            return;
        };
        if state.is_active() {
            self.active_tokens.push(token);
            if self.phase == Phase::Holding {
                // A replacement for an active connection the target closed.
                self.begin_probing(ctx, token, Instant::now());
            }
        } else if let Some(every) = self.plan.keepalive {
            ctx.set_deadline(token, every);
        }
        self.advance(ctx);
    }

    fn on_data(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, data: &mut [u8]) -> usize {
        self.on_reply(ctx, token, data)
    }

    /// The connection's own deadline; its state says which one it was.
    fn on_deadline(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let Some(&state) = ctx.state(token) else {
            return;
        };
        if self.connecting.contains_key(&token) {
            let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            ctx.close(token, CloseReason::ConnectFailed(e));
        } else if state.is_active() {
            // The rate-limited schedule says: now, or nearly (unless the hold ended).
            if self.phase == Phase::Holding {
                self.send_when_due(ctx, token);
            }
        } else if let Some(every) = self.plan.keepalive {
            ctx.send(token, &self.plan.keepalive_data);
            ctx.set_deadline(token, every);
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<ProbeState>, key: u64) {
        match key {
            LAUNCH_TIMER => {
                self.launch_timer = None;
                self.advance(ctx);
            }
            STALL_TIMER => {
                self.check_stalls(ctx);
                self.advance(ctx);
            }
            HOLD_TIMER if self.phase == Phase::Holding => self.hold_over(ctx),
            DRAIN_TIMER if self.phase == Phase::Draining => self.end(ctx),
            START_TIMER if self.phase == Phase::Connected => self.hold_when_due(ctx),
            INTERVAL_TIMER => self.cut_interval(),
            MID_HOLD_TIMER if self.phase == Phase::Holding => {
                let growth =
                    server_mem_per_conn(&self.plan.server_pids, self.server_mem_before, self.open);
                self.report.server_rss_bytes_per_conn = growth.map(|g| g.0);
                self.report.server_anon_bytes_per_conn = growth.map(|g| g.1);
            }
            _ => {}
        }
    }

    /// SIGINT or SIGTERM (the only ones the loop is asked for): end now, with a report.
    fn on_signal(&mut self, ctx: &mut Ctx<ProbeState>, signal: i32) -> SignalAction {
        self.interrupt(ctx, &signal_name(signal));
        SignalAction::Handled
    }

    fn on_close(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, closed: Closed<ProbeState>) {
        let (state, reason) = (closed.state, &closed.reason);
        if let Some(key) = state.probe() {
            self.probes.try_remove(key);
        }
        if let Some(started) = self.connecting.remove(&token) {
            match reason {
                CloseReason::ConnectFailed(e) | CloseReason::Error(e) => {
                    self.connect_failed(e);
                    if is_congestion(e) {
                        self.pacer.congested(started as Millis, ctx.now());
                    }
                }
                _ => self.connect_failed(&io::Error::other(reason.to_string())),
            }
            self.advance(ctx);
            return;
        }
        self.open -= 1;
        // `Done` is our own close (a probe that could not be read): not the peer's doing.
        let by_peer = !matches!(reason, CloseReason::Done);
        if self.phase != Phase::Done && by_peer {
            self.report.closed_by_peer += 1;
            log::debug!("token {}: closed during the run: {reason}", token.0);
        }
        if state.is_active() {
            self.active_tokens.retain(|&t| t != token);
            if by_peer && self.phase == Phase::Holding {
                // Keep measuring: replace the active connection the target closed.
                self.connect_one(ctx, true);
            }
            self.end_if_drained(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection costs the tester the loop's slot and nothing more: the state
    /// fits in the slot's padding (a layout fact, checked so it cannot grow back).
    #[test]
    fn probe_state_fits_in_the_slot() {
        use std::mem::size_of;
        assert_eq!(size_of::<ProbeState>(), 4);
        assert_eq!(size_of::<crate::core::slot::Slot<ProbeState>>(), 40);
        assert_eq!(ProbeState::active(0).probe(), Some(0));
        assert_eq!(ProbeState::active(41).probe(), Some(41));
        assert!(!ProbeState::default().is_active());
    }
}
