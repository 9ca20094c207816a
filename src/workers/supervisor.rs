//! The parent of `netloop serve --workers N`: a `Handler` that supervises the workers.
//!
//! `cli/serve_workers.rs` reserves the ports (`ports.rs`) and builds the workers'
//! command line; this file is what the parent does afterwards, and it does it the way
//! all of netloop does: as a handler on the one `EventLoop`. A supervisor has no
//! clients, but its job has the loop's shape all the same — wait for several things at
//! once, react to whichever comes first:
//!
//! - **signals** arrive in `on_signal`. SIGINT and SIGTERM start the stop (or, a second
//!   time, hurry it). They return `Handled`, not `Shutdown`: the loop's own shutdown is
//!   about flushing and closing connections, while the supervisor's is to tell its
//!   workers and wait for them. **SIGCHLD** means some child exited: each slot's process
//!   is asked with one non-blocking `waitpid` (signals coalesce, so one SIGCHLD may stand
//!   for several exits).
//! - **each worker's stdout** is a connection: our end of its socket pair, with the
//!   worker's slot number as the connection's state. `on_data` consumes whole lines
//!   (`listening on` lines are collected, the worker's closing counters line is added to
//!   the total — `summary.rs` —, anything else is passed on to our stdout) and leaves an
//!   unfinished line to the loop, which offers it again with the rest.
//! - **the clock** is the loop's timers, each with a key of its own (`on_timer`): the
//!   startup timeout, one restart timer per slot waiting out its back-off, and the
//!   SIGKILL deadline after the grace period.
//!
//! Why timers rather than looking at the clock in `on_turn` after every turn: a timer
//! is filed once, in the loop's one ordered set, and the loop sleeps exactly until the
//! earliest one; an `on_turn` check costs every turn, needs a stand-in timer anyway to
//! wake the loop on time, and spreads one decision ("restart slot 1 at 12:00:03") over a
//! field, a check and a wake-up. With keys, the decision and its handler sit together.
//!
//! A worker is finished with once it has exited **and** its stdout has closed. Those are
//! two events (SIGCHLD, EOF) in no promised order, and the lines a worker printed just
//! before it died decide what its death means (had it started listening?), so its exit
//! is judged only when both are in: after either event, the slot is asked again.
//!
//! The phases are `Starting` (until every worker listens), `Running` (restarting workers
//! that die) and `Stopping` (SIGTERM sent, SIGKILL when the grace is over). A failure to
//! start — a worker that dies first, or one that takes too long — also goes through
//! `Stopping`, so the other workers are stopped as carefully; the error waits in
//! `outcome`. The loop stops when every slot is empty for good.

use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use log::{debug, error, info, warn};
use mio::Token;

use crate::core::{Closed, Ctx, Handler, SignalAction, Stats, TimerId};
use crate::workers::slot::WorkerSlot;
use crate::workers::spawn::{add_to_loop, spawn_worker, WorkerCommand};
use crate::workers::summary::{self, STATS_PREFIX};

/// How long all workers together may take to report that they listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time beyond `--grace` that stopping workers get before SIGKILL (to log, to exit).
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// A worker's stdout line longer than this is passed on in pieces.
const MAX_LINE: usize = 64 * 1024;
/// What a worker prints once per listener when it is ready.
const LISTENING: &str = "listening on ";

/// Timer key: `STARTUP_TIMEOUT` passed and some worker still does not listen.
const STARTUP_TIMER: u64 = 1;
/// Timer key: the grace period after our SIGTERM is over; SIGKILL what is left.
const KILL_TIMER: u64 = 2;
/// Timer keys from here up: slot `key - RESTART_TIMER` has waited out its back-off.
const RESTART_TIMER: u64 = 1 << 32;

/// A connection's state: the slot of the worker whose stdout it is.
pub type Slot = Option<usize>;

enum Phase {
    /// Waiting for every worker's `listening on` lines, until the startup timer.
    Starting { timer: Option<TimerId> },
    /// Announced; restarting workers that die.
    Running,
    /// SIGTERM sent; SIGKILL for the rest when the kill timer fires.
    Stopping,
}

/// The parent's handler.
pub struct Supervisor {
    command: WorkerCommand,
    /// How many `listening on` lines a ready worker prints (one per `--listen`).
    expected_lines: usize,
    grace: Duration,
    workers: Vec<WorkerSlot>,
    phase: Phase,
    /// What ends the server with an error (a worker that could not start).
    failure: Option<io::Error>,
    /// Workers that did not stop cleanly when told to.
    unclean: Vec<String>,
    /// Every worker process's counters, added up as their closing lines come.
    total: Stats,
    /// How many worker processes sent their counters.
    reported: usize,
}

impl Supervisor {
    /// A supervisor for `count` workers that each print `expected_lines` when ready.
    pub fn new(
        command: WorkerCommand,
        count: usize,
        expected_lines: usize,
        grace: Duration,
    ) -> Supervisor {
        Supervisor {
            command,
            expected_lines,
            grace,
            workers: (0..count).map(|_| WorkerSlot::new()).collect(),
            phase: Phase::Starting { timer: None },
            failure: None,
            unclean: Vec::new(),
            total: Stats::default(),
            reported: 0,
        }
    }

    /// Start every worker, before `run`. If one fails, those already started are stopped.
    pub fn start_all(&mut self, ctx: &mut Ctx<Slot>) {
        self.phase = Phase::Starting {
            timer: Some(ctx.timer_after(STARTUP_TIMEOUT, STARTUP_TIMER)),
        };
        for slot in 0..self.workers.len() {
            if let Err(e) = self.start(ctx, slot) {
                self.fail(ctx, e);
                break;
            }
        }
        self.stop_when_done(ctx);
    }

    /// After `run`: the failure, if any, else whether every worker stopped cleanly.
    pub fn outcome(&mut self) -> io::Result<()> {
        let restarts: u64 = self.workers.iter().map(|w| w.restarts).sum();
        if self.reported > 0 {
            // The single server's line, for the whole server; see `summary.rs`.
            info!(
                "summary: {} ({} workers, {restarts} restarts, {} processes reported)",
                self.total,
                self.workers.len(),
                self.reported
            );
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if self.unclean.is_empty() {
            info!(
                "all {} workers exited cleanly ({restarts} restarts)",
                self.workers.len()
            );
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} of {} workers did not stop cleanly: {}",
                self.unclean.len(),
                self.workers.len(),
                self.unclean.join("; ")
            )))
        }
    }

    /// Put a new worker process in `slot`, its stdout on the loop.
    fn start(&mut self, ctx: &mut Ctx<Slot>, slot: usize) -> io::Result<()> {
        // If the stdout cannot go on the loop, `process` is dropped, which kills it: it
        // is not listening yet, so there is nothing to drain.
        let spawned = spawn_worker(&self.command, slot)?;
        let token = add_to_loop(ctx, spawned.stdout, Some(slot))?;
        info!("worker {slot}: started, pid {}", spawned.process.pid());
        self.workers[slot].started(spawned.process, token, ctx.now());
        Ok(())
    }

    /// A line of a worker's stdout: collect `listening on` lines, pass anything else on.
    fn on_line(&mut self, ctx: &mut Ctx<Slot>, slot: usize, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        if line.starts_with(STATS_PREFIX) {
            match summary::parse_stats_line(&line) {
                Some(stats) => {
                    debug!("worker {slot}: summary: {stats}");
                    summary::add(&mut self.total, &stats);
                    self.reported += 1;
                }
                None => warn!("worker {slot}: unreadable counters line {line:?}"),
            }
            return;
        }
        let expected = self.expected_lines;
        let w = &mut self.workers[slot];
        if !line.starts_with(LISTENING) || w.listening.len() >= expected {
            // Nothing else is printed today; whatever comes is the user's, not ours.
            let mut out = io::stdout().lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                debug!("worker {slot}: passing its output on: {e}");
            }
            return;
        }
        w.listening.push(line.into_owned());
        if w.listening.len() < expected {
            return;
        }
        let pid = w.pid;
        match self.phase {
            Phase::Starting { timer } => {
                debug!("worker {slot} (pid {pid}) is listening");
                if self.workers.iter().all(|w| w.listening.len() == expected) {
                    if let Some(timer) = timer {
                        ctx.cancel_timer(timer);
                    }
                    if let Err(e) = self.announce() {
                        self.fail(ctx, e);
                    }
                }
            }
            Phase::Running => info!("worker {slot} (pid {pid}) is listening again"),
            Phase::Stopping => {}
        }
    }

    /// Print the listening lines once for all workers (they are the same in each).
    fn announce(&mut self) -> io::Result<()> {
        let n = self.workers.len();
        self.phase = Phase::Running;
        let mut out = io::stdout().lock();
        for line in &self.workers[0].listening {
            writeln!(out, "{line}  ({n} workers)")?;
        }
        out.flush()?;
        let pids: Vec<String> = self.workers.iter().map(|w| w.pid.to_string()).collect();
        info!("{n} workers listening, pids {}", pids.join(" "));
        Ok(())
    }

    /// Something that must end the server: keep the first such error, stop the workers.
    fn fail(&mut self, ctx: &mut Ctx<Slot>, e: io::Error) {
        self.failure.get_or_insert(e);
        if !matches!(self.phase, Phase::Stopping) {
            self.stop_workers(ctx);
        }
    }

    /// SIGTERM to every worker, no more restarts, SIGKILL after `--grace` plus a margin.
    fn stop_workers(&mut self, ctx: &mut Ctx<Slot>) {
        if let Phase::Starting { timer: Some(timer) } = self.phase {
            ctx.cancel_timer(timer);
        }
        self.phase = Phase::Stopping;
        ctx.timer_after(self.grace + KILL_MARGIN, KILL_TIMER);
        for w in &mut self.workers {
            if let Some(timer) = w.restart.take() {
                ctx.cancel_timer(timer);
            }
        }
        self.signal_all(libc::SIGTERM);
    }

    fn signal_all(&self, signal: i32) {
        for w in &self.workers {
            w.signal(signal);
        }
    }

    /// Judge the exit of every worker that is finished: reaped, its stdout read to the end.
    fn reap(&mut self, ctx: &mut Ctx<Slot>) {
        for slot in 0..self.workers.len() {
            if let Some(status) = self.workers[slot].finished() {
                self.exited(ctx, slot, status);
            }
        }
    }

    fn exited(&mut self, ctx: &mut Ctx<Slot>, slot: usize, status: ExitStatus) {
        let w = &mut self.workers[slot];
        let pid = w.pid;
        match self.phase {
            Phase::Starting { .. } => {
                // Before the first announcement a death is almost always configuration
                // (a bad option, a port taken): restarting would only repeat it.
                let what = if w.listening.len() < self.expected_lines {
                    "before listening"
                } else {
                    "while the others were starting"
                };
                error!("worker {slot} (pid {pid}) exited {what}: {status}");
                self.fail(
                    ctx,
                    io::Error::other(format!(
                        "worker {slot} exited {what} ({status}); its error, if any, is above"
                    )),
                );
            }
            Phase::Stopping if self.failure.is_some() => {
                info!("worker {slot} (pid {pid}) exited: {status}");
            }
            Phase::Stopping => {
                // Killed by our own SIGTERM counts as clean: that happens when it came
                // before the worker had set up its signal handling.
                if status.success() || status.signal() == Some(libc::SIGTERM) {
                    info!("worker {slot} (pid {pid}) stopped: {status}");
                } else {
                    warn!("worker {slot} (pid {pid}) did not stop cleanly: {status}");
                    self.unclean.push(format!("worker {slot}: {status}"));
                }
            }
            Phase::Running if status.success() => {
                // Exit 0 is a worker told to stop (someone sent *it* SIGTERM): respect it.
                info!("worker {slot} (pid {pid}) exited 0 on its own: not restarting it");
            }
            Phase::Running => {
                let wait = w.restart_delay(ctx.now());
                w.restart = Some(ctx.timer_after(wait, RESTART_TIMER + slot as u64));
                warn!(
                    "worker {slot} (pid {pid}) died: {status}; restarting it in {:.1}s",
                    wait.as_secs_f64()
                );
            }
        }
    }

    /// Slot `slot`'s back-off is over: start its next process (or try again later).
    fn restart(&mut self, ctx: &mut Ctx<Slot>, slot: usize) {
        if slot >= self.workers.len() || self.workers[slot].restart.take().is_none() {
            return; // cancelled meanwhile (a stop began)
        }
        self.workers[slot].restarts += 1;
        if let Err(e) = self.start(ctx, slot) {
            let w = &mut self.workers[slot];
            let delay = w.retry_delay();
            w.restart = Some(ctx.timer_after(delay, RESTART_TIMER + slot as u64));
            warn!("worker {slot}: {e}; trying again in {delay:?}");
        }
    }

    /// End the loop once every slot is empty for good.
    fn stop_when_done(&self, ctx: &mut Ctx<Slot>) {
        if self.workers.iter().all(WorkerSlot::is_empty) {
            ctx.stop();
        }
    }
}

impl Handler for Supervisor {
    type State = Slot;

    /// Whole lines are consumed; an unfinished one stays with the loop until it ends.
    fn on_data(&mut self, ctx: &mut Ctx<Slot>, token: Token, data: &mut [u8]) -> usize {
        let Some(slot) = ctx.state(token).copied().flatten() else {
            return data.len();
        };
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            self.on_line(ctx, slot, &data[used..used + end]);
            used += end + 1;
        }
        if data.len() - used > MAX_LINE {
            self.on_line(ctx, slot, &data[used..]);
            used = data.len();
        }
        used
    }

    fn on_eof(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        // A last line without a newline is a line all the same.
        if let Some(slot) = ctx.state(token).copied().flatten() {
            let rest = ctx.unconsumed(token).to_vec();
            if !rest.is_empty() {
                self.on_line(ctx, slot, &rest);
            }
        }
        ctx.close_when_flushed(token);
    }

    fn on_close(&mut self, ctx: &mut Ctx<Slot>, _: Token, closed: Closed<Slot>) {
        let (slot, reason) = (closed.state, &closed.reason);
        if let Some(slot) = slot {
            debug!("worker {slot}: stdout closed ({reason})");
            self.workers[slot].stdout = None;
            // The other half of "finished": it may have been reaped already.
            self.reap(ctx);
            self.stop_when_done(ctx);
        }
    }

    fn on_signal(&mut self, ctx: &mut Ctx<Slot>, signal: i32) -> SignalAction {
        if signal == libc::SIGCHLD {
            self.reap(ctx);
        } else if let Phase::Stopping = self.phase {
            // As for a single server, a second signal means "now": each worker closes
            // its remaining connections when it gets its second SIGTERM.
            info!("signal {signal} again: telling workers to close connections now");
            self.signal_all(libc::SIGTERM);
        } else {
            let running = self.workers.iter().filter(|w| w.is_running()).count();
            info!("signal {signal}: stopping {running} workers");
            self.stop_workers(ctx);
        }
        self.stop_when_done(ctx);
        // Not `Shutdown`: that would close our connections (the workers' stdouts) rather
        // than stop the workers.
        SignalAction::Handled
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Slot>, key: u64) {
        match key {
            STARTUP_TIMER => {
                if let Phase::Starting { .. } = self.phase {
                    self.phase = Phase::Starting { timer: None };
                    let waiting: Vec<String> = self
                        .workers
                        .iter()
                        .enumerate()
                        .filter(|(_, w)| w.listening.len() < self.expected_lines)
                        .map(|(slot, _)| slot.to_string())
                        .collect();
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "workers {} did not report listening within {STARTUP_TIMEOUT:?}",
                            waiting.join(", ")
                        ),
                    );
                    self.fail(ctx, e);
                }
            }
            KILL_TIMER => {
                let left = self.workers.iter().filter(|w| w.is_running()).count();
                warn!("{left} workers still running after the grace period: SIGKILL");
                self.signal_all(libc::SIGKILL);
            }
            key if key >= RESTART_TIMER => {
                if let Phase::Running = self.phase {
                    self.restart(ctx, (key - RESTART_TIMER) as usize);
                }
            }
            _ => debug!("unknown timer key {key}"),
        }
        self.stop_when_done(ctx);
    }
}
