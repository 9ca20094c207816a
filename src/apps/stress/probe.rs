//! The stress tester's handler: many idle connections, a few measured ones.
//!
//! It runs on the same loop as the servers, in client mode, in four phases:
//!
//! 1. **Connecting**: start connects (active ones first) while fewer than
//!    `--max-inflight` are in flight and the `--rate` allows; each connect gets a
//!    deadline (`--connect-timeout`). A non-blocking connect completes as a writable
//!    event, which the loop turns into `on_open` or a `ConnectFailed` close; either one
//!    frees a place, so more connects start from there.
//! 2. **Holding** for `--hold` seconds: idle connections sit still (or send
//!    `--keepalive-data` every `--keepalive` seconds); active ones do back-to-back round
//!    trips, each timed into an HDR histogram.
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
//! An idle connection costs the loop a slot and this handler a 16-byte state, so the
//! stress tester itself stays cheap per connection: that is the loop's claim, tested on
//! the client side.
//!
//! Latency with `--rate-limit` follows wrk2: each active connection has a schedule of
//! *intended* send times, and latency is measured from the intended time, so a stalled
//! server shows up as high latency instead of as fewer, fast samples (coordinated
//! omission). The loop's timers have millisecond resolution and may fire a little
//! early, so a round is timed from whichever came first, the intended time or the send.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mio::Token;

use crate::apps::stress::report::{record_us, rss_kb, server_rss_per_conn, Report};
use crate::core::{CloseReason, Closed, Ctx, Handler, Millis, Target, TimerId};
use crate::proto::http_probe::HttpResponse;

/// After the hold, how long to wait for replies to requests already sent.
const DRAIN: Duration = Duration::from_secs(1);

/// Timer key: the `--rate` allows the next connect now.
pub const LAUNCH_TIMER: u64 = 1;
/// Timer key: `--hold` is over; send nothing more, wait for what is owed.
pub const HOLD_TIMER: u64 = 2;
/// Timer key: the drain after the hold is over; close the books.
pub const DRAIN_TIMER: u64 = 3;
/// Timer key: half way through the hold, when every connection is open and none has
/// been closed yet: read the target's memory (`--server-pid`).
pub const MID_HOLD_TIMER: u64 = 4;
/// Timer keys below this one are `Stress`'s; a handler that wraps it uses keys from
/// here up for its own timers and passes the others on.
pub const FIRST_FREE_TIMER: u64 = 16;

/// What an active connection checks in each reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Send `--size` bytes, expect the same bytes back.
    Echo,
    /// Send an HTTP/1.1 GET (keep-alive), read one response.
    Http,
    /// Active connections send nothing (only hold).
    None,
}

/// The work one stress process does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where to connect.
    pub target: Target,
    /// Idle connections to open.
    pub idle: usize,
    /// Active (probing) connections to open.
    pub active: usize,
    /// Bytes per echo round trip.
    pub size: usize,
    /// What active connections do.
    pub probe: ProbeKind,
    /// The HTTP request sent by `--probe http`.
    pub http_request: Vec<u8>,
    /// How long to hold the connections (and measure).
    pub hold: Duration,
    /// Connects per second (None: as fast as the target accepts).
    pub rate: Option<f64>,
    /// Connects in flight at most.
    pub max_inflight: usize,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// Idle connections send `keepalive_data` this often.
    pub keepalive: Option<Duration>,
    /// What idle connections send.
    pub keepalive_data: Vec<u8>,
    /// Source addresses to spread connections over (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Total round trips per second over all active connections (None: back to back).
    pub rate_limit: Option<f64>,
    /// The target's process id, read half way through the hold (None in workers: the
    /// parent measures the target, over all of them).
    pub server_pid: Option<u32>,
}

/// Per-connection state: 16 bytes for an idle connection.
#[derive(Debug, Default)]
pub struct ProbeState {
    connected: bool,
    active: Option<Box<ActiveProbe>>,
}

/// A measuring connection's progress through its current round trip.
#[derive(Debug)]
struct ActiveProbe {
    /// Round number (also varies the echo payload, so stale bytes are caught).
    seq: u64,
    /// When this round was meant to be sent: on the `--rate-limit` schedule, or else
    /// when the previous reply came.
    intended: Instant,
    /// What this round's latency is counted from: `intended`, or the real send time
    /// when a timer sent it a little before `intended`.
    from: Instant,
    /// Bytes of the reply seen so far (echo), or the response parser (http).
    received: usize,
    http: HttpResponse,
    /// A reply is outstanding.
    in_flight: bool,
    /// This round's reply differed from what was sent.
    bad: bool,
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

/// Progress, for the live line and for the parent of worker processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Connections open now.
    pub open: u64,
    /// Connections asked for.
    pub requested: u64,
    /// Failed connects so far.
    pub connect_errors: u64,
    /// Round trips so far.
    pub round_trips: u64,
    /// Current p99 latency, microseconds.
    pub p99_us: u64,
}

/// The stress handler.
pub struct Stress {
    plan: Plan,
    /// Results so far.
    pub report: Report,
    phase: Phase,
    /// When connecting started, on the loop's clock (the `--rate` schedule's zero).
    started: Millis,
    launched_active: usize,
    launched_idle: usize,
    inflight: usize,
    open: u64,
    next_source: usize,
    active_tokens: Vec<Token>,
    /// When the hold started, on the loop's clock.
    hold_started: Option<Millis>,
    /// The pending `LAUNCH_TIMER`, so that there is only ever one.
    launch_timer: Option<TimerId>,
    /// Hold automatically when connected (single process); workers wait for `go`.
    pub auto_hold: bool,
    payload: Vec<u8>,
    /// This process's RSS before connecting, KiB.
    rss_before_kb: Option<u64>,
    /// The target's RSS before connecting, KiB (with `server_pid`).
    server_rss_before_kb: Option<u64>,
    /// A bad HTTP response was logged (once is enough).
    http_error_logged: bool,
}

impl Stress {
    /// A handler for `plan`.
    pub fn new(plan: Plan) -> Stress {
        let report = Report {
            conns_requested: (plan.idle + plan.active) as u64,
            active: plan.active as u64,
            ..Report::default()
        };
        Stress {
            payload: vec![0; plan.size],
            server_rss_before_kb: plan.server_pid.and_then(|p| rss_kb(&p.to_string())),
            plan,
            report,
            phase: Phase::Connecting,
            started: 0,
            launched_active: 0,
            launched_idle: 0,
            inflight: 0,
            open: 0,
            next_source: 0,
            active_tokens: Vec::new(),
            hold_started: None,
            launch_timer: None,
            auto_hold: true,
            rss_before_kb: rss_kb("self"),
            http_error_logged: false,
        }
    }

    /// Start connecting (before the loop runs). If no connect can even start, the run
    /// is over at once and the loop is stopped.
    pub fn start(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.started = ctx.now();
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

    /// Start the hold: active connections begin their round trips, and the timers for
    /// its end (and its middle, to measure the target) are set.
    pub fn start_hold(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.hold_started = Some(ctx.now());
        self.phase = Phase::Holding;
        ctx.timer_after(self.plan.hold, HOLD_TIMER);
        if self.plan.server_pid.is_some() {
            ctx.timer_after(self.plan.hold / 2, MID_HOLD_TIMER);
        }
        let now = Instant::now();
        for token in self.active_tokens.clone() {
            self.begin_probing(ctx, token, now);
        }
    }

    /// Close the books and stop the loop (once).
    pub fn end(&mut self, ctx: &mut Ctx<ProbeState>) {
        if self.phase != Phase::Done {
            self.finish(ctx);
            ctx.stop();
        }
    }

    /// Count connections that are still open and close the books. A request still
    /// unanswered is recorded with the time it has waited so far: a stalled server
    /// must show up as latency, not as silence.
    fn finish(&mut self, ctx: &mut Ctx<ProbeState>) {
        let now = Instant::now();
        if matches!(self.phase, Phase::Holding | Phase::Draining) {
            for &token in &self.active_tokens {
                if let Some(Some(probe)) = ctx.state(token).map(|s| s.active.as_ref()) {
                    if probe.in_flight {
                        let us = now.saturating_duration_since(probe.from).as_micros() as u64;
                        record_us(&mut self.report.latency, us);
                        self.report.unanswered += 1;
                    }
                }
            }
        }
        self.report.still_open_at_end = self.open;
        if let (Some(t), 0.0) = (self.hold_started, self.report.hold_secs) {
            self.report.hold_secs = secs_since(ctx, t);
        }
        self.phase = Phase::Done;
    }

    /// `HOLD_TIMER`: the hold is what the rate is measured over; replies to requests sent
    /// during it still count, so wait a little for them before closing the books.
    fn hold_over(&mut self, ctx: &mut Ctx<ProbeState>) {
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
    fn in_flight(&self, ctx: &Ctx<ProbeState>) -> usize {
        self.active_tokens
            .iter()
            .filter(|&&t| {
                ctx.state(t)
                    .and_then(|s| s.active.as_ref())
                    .is_some_and(|p| p.in_flight)
            })
            .count()
    }

    /// While draining: end as soon as nothing is owed any more.
    fn end_if_drained(&mut self, ctx: &mut Ctx<ProbeState>) {
        if self.phase == Phase::Draining && self.in_flight(ctx) == 0 {
            self.end(ctx);
        }
    }

    /// This process's memory growth per open connection since it started connecting.
    fn rss_growth_per_conn(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kb?, rss_kb("self")?);
        (self.open > 0).then(|| (after as f64 - before as f64) * 1024.0 / self.open as f64)
    }

    fn total(&self) -> usize {
        self.plan.idle + self.plan.active
    }

    fn launched(&self) -> usize {
        self.launched_active + self.launched_idle
    }

    /// While connecting: start what may start, and end the phase once all are done.
    /// Called when connecting starts, when a connect completes or fails (a place is
    /// free), and when `LAUNCH_TIMER` says the rate allows more.
    fn advance(&mut self, ctx: &mut Ctx<ProbeState>) {
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
    fn launch(&mut self, ctx: &mut Ctx<ProbeState>) {
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

    fn connect_one(&mut self, ctx: &mut Ctx<ProbeState>, is_active: bool) {
        let source = if self.plan.sources.is_empty() {
            None
        } else {
            self.next_source = (self.next_source + 1) % self.plan.sources.len();
            Some(self.plan.sources[self.next_source])
        };
        let now = Instant::now();
        let state = ProbeState {
            connected: false,
            active: is_active.then(|| {
                Box::new(ActiveProbe {
                    seq: 0,
                    intended: now,
                    from: now,
                    received: 0,
                    http: HttpResponse::default(),
                    in_flight: false,
                    bad: false,
                })
            }),
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

    fn connect_failed(&mut self, e: &io::Error) {
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

    fn begin_probing(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, now: Instant) {
        if let Some(Some(probe)) = ctx.state_mut(token).map(|s| s.active.as_mut()) {
            probe.intended = now;
        }
        self.send_round(ctx, token);
    }

    /// Send the current round's request on an active connection.
    fn send_round(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let Some(probe) = ctx.state_mut(token).and_then(|s| s.active.as_mut()) else {
            return;
        };
        probe.in_flight = true;
        probe.from = probe.intended.min(Instant::now());
        probe.received = 0;
        probe.bad = false;
        probe.http = HttpResponse::default();
        match self.plan.probe {
            ProbeKind::Echo => {
                fill_payload(&mut self.payload, probe.seq);
                ctx.send(token, &self.payload);
            }
            ProbeKind::Http => {
                ctx.send(token, &self.plan.http_request);
            }
            ProbeKind::None => probe.in_flight = false,
        }
    }

    /// A round trip finished: record it, and send the next one (now or on schedule).
    fn complete_round(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let now = Instant::now();
        let holding = self.phase == Phase::Holding;
        let measuring = holding || self.phase == Phase::Draining;
        let Some(probe) = ctx.state_mut(token).and_then(|s| s.active.as_mut()) else {
            return;
        };
        probe.in_flight = false;
        if measuring {
            let us = now.saturating_duration_since(probe.from).as_micros() as u64;
            record_us(&mut self.report.latency, us);
            self.report.round_trips += 1;
            if probe.bad {
                self.report.mismatches += 1;
            }
        }
        probe.seq += 1;
        if !holding {
            self.end_if_drained(ctx);
            return;
        }
        match self.plan.rate_limit {
            None => probe.intended = now,
            Some(total_rate) => {
                let per_conn = total_rate / self.plan.active.max(1) as f64;
                probe.intended += Duration::from_secs_f64(1.0 / per_conn.max(1e-3));
                if probe.intended > now {
                    // Not yet: the connection's deadline sends it (`on_deadline`).
                    let wait = probe.intended - now;
                    ctx.set_deadline(token, ceil_ms(wait));
                    return;
                }
            }
        }
        self.send_round(ctx, token);
    }

    fn connect_phase_over(&mut self, ctx: &mut Ctx<ProbeState>) {
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

/// Seconds on the loop's clock since `t` (exact to a millisecond: enough for phases).
fn secs_since(ctx: &Ctx<ProbeState>, t: Millis) -> f64 {
    ctx.now().saturating_sub(t) as f64 / 1000.0
}

/// `d` rounded up to the loop's whole milliseconds.
fn ceil_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_micros().div_ceil(1000) as u64)
}

/// The echo payload of round `seq`: printable, and different every round.
fn fill_payload(buf: &mut [u8], seq: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = b'a' + ((seq as usize + i) % 26) as u8;
    }
}

impl Handler for Stress {
    type State = ProbeState;

    fn on_open(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.inflight -= 1;
        self.open += 1;
        ctx.clear_deadline(token);
        let Some(state) = ctx.state_mut(token) else {
            return;
        };
        state.connected = true;
        if state.active.is_some() {
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
        let size = self.plan.size;
        let kind = self.plan.probe;
        let Some(probe) = ctx.state_mut(token).and_then(|s| s.active.as_mut()) else {
            return data.len(); // idle connections ignore whatever the target sends
        };
        if !probe.in_flight {
            probe.bad = true;
            self.report.mismatches += 1;
            return data.len();
        }
        match kind {
            ProbeKind::Echo => {
                let seq = probe.seq as usize;
                for (i, &b) in data.iter().enumerate() {
                    let at = probe.received + i;
                    if at >= size || b != b'a' + ((seq + at) % 26) as u8 {
                        probe.bad = true;
                        break;
                    }
                }
                probe.received += data.len();
                if probe.received >= size {
                    self.complete_round(ctx, token);
                }
                data.len()
            }
            ProbeKind::Http => match probe.http.feed(data) {
                Ok((used, done)) => {
                    if done {
                        probe.bad |= !probe.http.ok_status();
                        self.complete_round(ctx, token);
                    }
                    used
                }
                Err(msg) => {
                    if !self.http_error_logged {
                        self.http_error_logged = true;
                        log::warn!(
                            "--probe http: {msg} (connection closed; counted as a mismatch)"
                        );
                    }
                    probe.bad = true;
                    self.report.mismatches += 1;
                    ctx.close(token, CloseReason::Done);
                    data.len()
                }
            },
            ProbeKind::None => data.len(),
        }
    }

    /// The connection's own deadline; its state says which one it was.
    fn on_deadline(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let Some(state) = ctx.state(token) else {
            return;
        };
        if !state.connected {
            let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            ctx.close(token, CloseReason::ConnectFailed(e));
        } else if state.active.is_some() {
            // The rate-limited schedule says: now (unless the hold ended meanwhile).
            if self.phase == Phase::Holding {
                self.send_round(ctx, token);
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
            HOLD_TIMER if self.phase == Phase::Holding => self.hold_over(ctx),
            DRAIN_TIMER if self.phase == Phase::Draining => self.end(ctx),
            MID_HOLD_TIMER if self.phase == Phase::Holding => {
                self.report.server_rss_bytes_per_conn =
                    server_rss_per_conn(self.plan.server_pid, self.server_rss_before_kb, self.open);
            }
            _ => {}
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, closed: Closed<ProbeState>) {
        let (state, reason) = (closed.state, &closed.reason);
        if !state.connected {
            self.inflight -= 1;
            match reason {
                CloseReason::ConnectFailed(e) | CloseReason::Error(e) => self.connect_failed(e),
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
        if state.active.is_some() {
            self.active_tokens.retain(|&t| t != token);
            if by_peer && self.phase == Phase::Holding {
                // Keep measuring: replace the active connection the target closed.
                self.connect_one(ctx, true);
            }
            self.end_if_drained(ctx);
        }
    }
}
