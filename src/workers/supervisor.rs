//! The parent of `netloop serve --workers N`: a `Handler` that supervises the workers.
//!
//! `serve_workers.rs` reserves the ports and knows how to start a worker; this file is
//! what the parent does afterwards, and it does it the way all of netloop does: as a
//! handler on the one `EventLoop`. A supervisor has no clients, but its job has the
//! loop's shape all the same — wait for several things at once, react to whichever
//! comes first:
//!
//! - **signals** arrive in `on_signal`. SIGINT and SIGTERM start the stop (or, a second
//!   time, hurry it). They return `Handled`, not `Shutdown`: the loop's own shutdown is
//!   about flushing and closing connections, while the supervisor's is to tell its
//!   workers and wait for them. SIGCHLD only wakes the loop.
//! - **each worker's stdout** is a connection: our end of its socket pair, with the
//!   worker's slot number as the connection's state. `on_data` consumes whole lines
//!   (`listening on` lines are collected, anything else is passed on to our stdout) and
//!   leaves an unfinished line to the loop, which offers it again with the rest.
//! - **the children and the clock** are checked in `on_turn`, after every turn: a
//!   `try_wait` for each child (signals coalesce, so one SIGCHLD may stand for several
//!   exits; asking costs one non-blocking `waitpid` each), then the deadlines (startup,
//!   restarts, SIGKILL), then `wake_after` for the nearest one.
//!
//! A worker is finished with once it has exited **and** its stdout has closed. Those are
//! two events in no promised order, and the lines a worker printed just before it died
//! decide what its death means (had it started listening?), so its exit is judged only
//! when both are in.
//!
//! The phases are `Starting` (until every worker listens), `Running` (restarting workers
//! that die) and `Stopping` (SIGTERM sent, SIGKILL at a deadline). A failure to start —
//! a worker that dies first, or one that takes too long — also goes through `Stopping`,
//! so the other workers are stopped as carefully; the error waits in `outcome`.

use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::Token;

use crate::core::Ctx;
use crate::core::{Closed, Handler, SignalAction};
use crate::core::{Peer, Stream};
use crate::workers::spawn::{Worker, WorkerCommand};

/// How long all workers together may take to report that they listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time beyond `--grace` that stopping workers get before SIGKILL (to log, to exit).
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// A worker's stdout line longer than this is passed on in pieces.
const MAX_LINE: usize = 64 * 1024;
/// What a worker prints once per listener when it is ready.
const LISTENING: &str = "listening on ";

/// A connection's state: the slot of the worker whose stdout it is.
pub type Slot = Option<usize>;

enum Phase {
    /// Waiting for every worker's `listening on` lines.
    Starting { deadline: Instant },
    /// Announced; restarting workers that die.
    Running,
    /// SIGTERM sent; SIGKILL for the rest at `kill_at` (once).
    Stopping { kill_at: Instant, killed: bool },
}

/// The parent's handler.
pub struct Supervisor {
    command: WorkerCommand,
    /// How many `listening on` lines a ready worker prints (one per `--listen`).
    expected_lines: usize,
    grace: Duration,
    workers: Vec<Worker>,
    phase: Phase,
    /// What ends the server with an error (a worker that could not start).
    failure: Option<io::Error>,
    /// Workers that did not stop cleanly when told to.
    unclean: Vec<String>,
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
            workers: (0..count).map(|_| Worker::new()).collect(),
            phase: Phase::Starting {
                deadline: Instant::now() + STARTUP_TIMEOUT,
            },
            failure: None,
            unclean: Vec::new(),
        }
    }

    /// Start every worker, before `run`. If one fails, those already started are stopped.
    pub fn start_all(&mut self, ctx: &mut Ctx<Slot>) {
        for slot in 0..self.workers.len() {
            if let Err(e) = self.start(ctx, slot) {
                self.fail(e);
                break;
            }
        }
        self.schedule(ctx);
    }

    /// After `run`: the failure, if any, else whether every worker stopped cleanly.
    pub fn outcome(&mut self) -> io::Result<()> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let restarts: u64 = self.workers.iter().map(|w| w.restarts).sum();
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
        let (mut child, stdout) = self.command.spawn(slot)?;
        let stream = Stream::Unix(mio::net::UnixStream::from_std(stdout));
        let token = match ctx.add_stream(stream, Peer::Local, Some(slot)) {
            Ok(token) => token,
            Err(e) => {
                // It is not listening yet: nothing to drain, so no need to be gentle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        info!("worker {slot}: started, pid {}", child.id());
        self.workers[slot].started(child, token);
        Ok(())
    }

    /// A line of a worker's stdout: collect `listening on` lines, pass anything else on.
    fn on_line(&mut self, slot: usize, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
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
            Phase::Starting { .. } => {
                debug!("worker {slot} (pid {pid}) is listening");
                if self.workers.iter().all(|w| w.listening.len() == expected) {
                    if let Err(e) = self.announce() {
                        self.fail(e);
                    }
                }
            }
            Phase::Running => info!("worker {slot} (pid {pid}) is listening again"),
            Phase::Stopping { .. } => {}
        }
    }

    /// Print the listening lines once for all workers (they are the same in each).
    fn announce(&mut self) -> io::Result<()> {
        let n = self.workers.len();
        let mut out = io::stdout().lock();
        for line in &self.workers[0].listening {
            writeln!(out, "{line}  ({n} workers)")?;
        }
        out.flush()?;
        let pids: Vec<String> = self.workers.iter().map(|w| w.pid.to_string()).collect();
        info!("{n} workers listening, pids {}", pids.join(" "));
        self.phase = Phase::Running;
        Ok(())
    }

    /// Something that must end the server: keep the first such error, stop the workers.
    fn fail(&mut self, e: io::Error) {
        self.failure.get_or_insert(e);
        if !matches!(self.phase, Phase::Stopping { .. }) {
            self.stop_workers();
        }
    }

    /// SIGTERM to every worker, no more restarts, SIGKILL after `--grace` plus a margin.
    fn stop_workers(&mut self) {
        self.phase = Phase::Stopping {
            kill_at: Instant::now() + self.grace + KILL_MARGIN,
            killed: false,
        };
        for w in &mut self.workers {
            w.restart_at = None;
        }
        self.signal_all(libc::SIGTERM);
    }

    fn signal_all(&self, signal: i32) {
        for (slot, w) in self.workers.iter().enumerate() {
            w.signal(slot, signal);
        }
    }

    /// Judge the exit of every worker that is finished: reaped, its stdout read to the end.
    fn reap(&mut self) {
        for slot in 0..self.workers.len() {
            if let Some(status) = self.workers[slot].finished(slot) {
                self.exited(slot, status);
            }
        }
    }

    fn exited(&mut self, slot: usize, status: ExitStatus) {
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
                self.fail(io::Error::other(format!(
                    "worker {slot} exited {what} ({status}); its error, if any, is above"
                )));
            }
            Phase::Stopping { .. } if self.failure.is_some() => {
                info!("worker {slot} (pid {pid}) exited: {status}");
            }
            Phase::Stopping { .. } => {
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
                let wait = w.plan_restart(Instant::now());
                warn!(
                    "worker {slot} (pid {pid}) died: {status}; restarting it in {:.1}s",
                    wait.as_secs_f64()
                );
            }
        }
    }

    fn on_deadlines(&mut self, ctx: &mut Ctx<Slot>) {
        let now = Instant::now();
        match self.phase {
            Phase::Starting { deadline } if now >= deadline => {
                let waiting: Vec<String> = self
                    .workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.listening.len() < self.expected_lines)
                    .map(|(slot, _)| slot.to_string())
                    .collect();
                self.fail(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "workers {} did not report listening within {STARTUP_TIMEOUT:?}",
                        waiting.join(", ")
                    ),
                ));
            }
            Phase::Running => {
                for slot in 0..self.workers.len() {
                    if self.workers[slot].restart_at.is_none_or(|t| t > now) {
                        continue;
                    }
                    self.workers[slot].restarts += 1;
                    if let Err(e) = self.start(ctx, slot) {
                        let delay = self.workers[slot].retry_later(now);
                        warn!("worker {slot}: {e}; trying again in {delay:?}");
                    }
                }
            }
            Phase::Stopping { kill_at, killed } if !killed && now >= kill_at => {
                let left = self.workers.iter().filter(|w| w.is_running()).count();
                warn!("{left} workers still running after the grace period: SIGKILL");
                self.signal_all(libc::SIGKILL);
                self.phase = Phase::Stopping {
                    kill_at,
                    killed: true,
                };
            }
            Phase::Starting { .. } | Phase::Stopping { .. } => {}
        }
    }

    /// End the loop once every slot is empty for good; else have it turn by the next
    /// deadline.
    fn schedule(&self, ctx: &mut Ctx<Slot>) {
        if self.workers.iter().all(Worker::is_empty) {
            ctx.stop();
            return;
        }
        let phase = match self.phase {
            Phase::Starting { deadline } => Some(deadline),
            Phase::Running => None,
            Phase::Stopping { kill_at, killed } => (!killed).then_some(kill_at),
        };
        let next = self
            .workers
            .iter()
            .filter_map(|w| w.restart_at)
            .chain(phase)
            .min();
        if let Some(at) = next {
            // Rounded up to the loop's whole milliseconds: waking early only turns twice.
            let wait = at.saturating_duration_since(Instant::now());
            ctx.timer_after(
                Duration::from_millis(wait.as_micros().div_ceil(1000) as u64),
                0,
            );
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
            self.on_line(slot, &data[used..used + end]);
            used += end + 1;
        }
        if data.len() - used > MAX_LINE {
            self.on_line(slot, &data[used..]);
            used = data.len();
        }
        used
    }

    fn on_eof(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        // A last line without a newline is a line all the same.
        if let Some(slot) = ctx.state(token).copied().flatten() {
            let rest = ctx.unconsumed(token);
            if !rest.is_empty() {
                self.on_line(slot, rest);
            }
        }
        ctx.close_when_flushed(token);
    }

    fn on_close(&mut self, _: &mut Ctx<Slot>, _: Token, closed: Closed<Slot>) {
        let (slot, reason) = (closed.state, &closed.reason);
        if let Some(slot) = slot {
            debug!("worker {slot}: stdout closed ({reason})");
            self.workers[slot].stdout = None;
        }
    }

    fn on_signal(&mut self, _: &mut Ctx<Slot>, signal: i32) -> SignalAction {
        if signal == libc::SIGCHLD {
            // `on_turn` asks every child after this turn anyway.
        } else if let Phase::Stopping { .. } = self.phase {
            // As for a single server, a second signal means "now": each worker closes
            // its remaining connections when it gets its second SIGTERM.
            info!("signal {signal} again: telling workers to close connections now");
            self.signal_all(libc::SIGTERM);
        } else {
            let running = self.workers.iter().filter(|w| w.is_running()).count();
            info!("signal {signal}: stopping {running} workers");
            self.stop_workers();
        }
        // Not `Shutdown`: that would close our connections (the workers' stdouts) rather
        // than stop the workers.
        SignalAction::Handled
    }

    fn on_turn(&mut self, ctx: &mut Ctx<Slot>) {
        self.reap();
        self.on_deadlines(ctx);
        self.schedule(ctx);
    }
}
