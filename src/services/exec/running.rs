//! Children on the loop: starting them, reading their pipes, their exit, their limits.
//!
//! Every one of these is an event of the one loop, never a wait:
//!
//! - **a slot frees** → the oldest waiting job starts (`start_waiting`): fork + exec,
//!   its stdout and stderr put on the loop as `Stream::PipeIn` connections whose state
//!   names the job, and a loop timer for `--timeout`;
//! - **a pipe is readable** → the loop reads it until `WouldBlock` and hands the bytes
//!   to `pipe_data`, which keeps them up to `--max-output` (past it: truncated, pipes
//!   closed, group killed);
//! - **a pipe reaches EOF** → it closes (`pipe_closed`);
//! - **SIGCHLD** → every running child is asked, without blocking, whether it exited
//!   (`reap_children`); signals coalesce, so one SIGCHLD may stand for several exits;
//! - **a timer** → `--timeout` passed (SIGTERM to the group), the kill grace passed
//!   (SIGKILL), the pipes of an exited child stayed open too long (closed), or a client
//!   read nothing of its reply for `--timeout` (closed).
//!
//! A job's output is complete when its child is reaped **and** both pipes are closed:
//! two kinds of events in no promised order (a child may exit with output still in the
//! pipe; a pipe may close long before the exit), so each of them asks `finish`.

use std::time::Duration;

use log::{debug, warn};
use mio::Token;

use super::child::{self, Spec};
use super::job::{append_capped, JobId, Phase, Pipe};
use super::{Exec, Slot, KILL_GRACE, PIPE_DRAIN};
use crate::core::{CloseReason, Ctx, Peer, Stream};

/// Timer keys: the kind in the top byte, the job number below.
const KIND_SHIFT: u32 = 56;
const TIMEOUT: u64 = 1;
const KILL: u64 = 2;
const DRAIN: u64 = 3;
pub(super) const STALL: u64 = 4;
/// The per-minute summary line.
pub(super) const REPORT: u64 = 5 << KIND_SHIFT;

/// The key of timer `kind` for job `id`.
pub(super) fn timer_key(kind: u64, id: JobId) -> u64 {
    (kind << KIND_SHIFT) | (id & ((1 << KIND_SHIFT) - 1))
}

impl Exec {
    /// Start waiting jobs while slots are free, oldest first.
    pub(super) fn start_waiting(&mut self, ctx: &mut Ctx<Slot>) {
        while self.slots < self.opts.max_children && !self.stopping {
            let Some(id) = self.waiting.pop_front() else {
                return;
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                continue; // abandoned while waiting
            };
            let Phase::Waiting(allowed) = std::mem::replace(&mut job.phase, Phase::Running) else {
                continue;
            };
            let spec = Spec {
                program: &allowed.program,
                args: &allowed.args,
                dir: &self.opts.dir,
                env: &self.env,
            };
            let started = match child::spawn(&spec) {
                Ok(started) => started,
                Err(e) => {
                    let now = ctx.now();
                    let message = format_args!("exec: {}: {e}", job.peer);
                    self.spawn_warnings.warn(now, message);
                    self.counts.refused += 1;
                    let why = e.to_string();
                    let (client, peer, line) = (job.client, job.peer, job.line.clone());
                    let refused = super::job::Job::refused(client, peer, line, &why, ctx.now());
                    self.jobs.insert(id, refused);
                    self.dirty.push(client);
                    continue;
                }
            };
            let pid = started.process.pid();
            job.process = Some(started.process);
            job.started_at = ctx.now();
            job.holds_slot = true;
            self.slots += 1;
            self.counts.ran += 1;
            debug!("{}: running {} (pid {pid})", job.peer, job.line);
            for (pipe, end) in [
                (Pipe::Stdout, started.stdout),
                (Pipe::Stderr, started.stderr),
            ] {
                let stream = Stream::PipeIn(end);
                match ctx.add_stream(stream, Peer::Process(pid), Slot::Pipe(id, pipe)) {
                    Ok(token) => job.pipes[pipe as usize] = Some(token),
                    Err(e) => {
                        // Without its pipe the output is lost: stop the command.
                        warn!("exec: child {pid}: {e}");
                        job.truncated = true;
                    }
                }
            }
            let timeout = ctx.timer_after(self.opts.timeout, timer_key(TIMEOUT, id));
            job.timers.timeout = Some(timeout);
            let client = job.client;
            if job.truncated {
                self.terminate(ctx, id);
            }
            // A reply may already be filling the client's queue: pace from the start.
            self.pace_pipes(ctx, client);
        }
    }

    /// Output from a child; always all consumed (kept, or dropped past the limit).
    pub(super) fn pipe_data(&mut self, ctx: &mut Ctx<Slot>, id: JobId, pipe: Pipe, data: &[u8]) {
        let max = self.opts.max_output;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.truncated {
            return;
        }
        let held = job.output[0].len() + job.output[1].len();
        let room = max.saturating_sub(held);
        let keep = data.len().min(room);
        append_capped(&mut job.output[pipe as usize], &data[..keep], max);
        if keep < data.len() {
            debug!(
                "{}: {} printed over {max} bytes: killed",
                job.peer, job.line
            );
            job.truncated = true;
            self.counts.truncated += 1;
            // Closing our ends makes its next write fail (SIGPIPE); the group gets
            // SIGTERM too, and SIGKILL after the grace.
            self.close_pipes(ctx, id);
            self.terminate(ctx, id);
        }
    }

    /// A pipe closed (EOF, error, or closed by us).
    pub(super) fn pipe_closed(&mut self, ctx: &mut Ctx<Slot>, id: JobId, pipe: Pipe) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.pipes[pipe as usize] = None;
        }
        self.finish(ctx, id);
    }

    /// SIGCHLD: reap every child that exited.
    pub(super) fn reap_children(&mut self, ctx: &mut Ctx<Slot>) {
        let running: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.process.as_ref().is_some_and(|p| p.status().is_none()))
            .map(|(&id, _)| id)
            .collect();
        for id in running {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let Some(status) = job.process.as_mut().and_then(|p| p.try_reap()) else {
                continue;
            };
            debug!("{}: {} exited: {status}", job.peer, job.line);
            for timer in [job.timers.timeout.take(), job.timers.kill.take()]
                .into_iter()
                .flatten()
            {
                ctx.cancel_timer(timer);
            }
            if job.pipes.iter().any(Option::is_some) {
                let drain = ctx.timer_after(PIPE_DRAIN, timer_key(DRAIN, id));
                job.timers.drain = Some(drain);
            }
            self.finish(ctx, id);
        }
    }

    /// A job's timer came up.
    pub(super) fn job_timer(&mut self, ctx: &mut Ctx<Slot>, key: u64) {
        let (kind, id) = (key >> KIND_SHIFT, key & ((1 << KIND_SHIFT) - 1));
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match kind {
            TIMEOUT => {
                job.timers.timeout = None;
                debug!(
                    "{}: {} ran past {:?}: killed",
                    job.peer, job.line, self.opts.timeout
                );
                job.timed_out = true;
                self.counts.timed_out += 1;
                self.terminate(ctx, id);
            }
            KILL => {
                job.timers.kill = None;
                if let Some(process) = &job.process {
                    debug!("{}: SIGKILL to process group {}", job.peer, process.pid());
                    process.signal_group(libc::SIGKILL);
                }
            }
            DRAIN if job.paused => {
                // Not read because the client is slow, not because nobody writes.
                job.timers.drain = Some(ctx.timer_after(PIPE_DRAIN, key));
            }
            DRAIN => {
                job.timers.drain = None;
                debug!(
                    "{}: {}: pipes still open after its exit: closed",
                    job.peer, job.line
                );
                self.close_pipes(ctx, id);
            }
            STALL => {
                job.timers.stall = None;
                let (client, peer) = (job.client, job.peer);
                debug!(
                    "{peer}: read nothing of its reply for {:?}: closed",
                    self.opts.timeout
                );
                ctx.close(client, CloseReason::Timeout);
            }
            _ => debug!("exec: unknown timer key {key:#x}"),
        }
    }

    /// SIGTERM to the job's process group now, SIGKILL after the grace.
    pub(super) fn terminate(&mut self, ctx: &mut Ctx<Slot>, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(process) = job.process.as_ref().filter(|p| p.status().is_none()) else {
            return;
        };
        process.signal_group(libc::SIGTERM);
        if job.timers.kill.is_none() {
            job.timers.kill = Some(ctx.timer_after(KILL_GRACE, timer_key(KILL, id)));
        }
    }

    /// SIGTERM (SIGKILL with `now`) to every child: the server is stopping.
    pub(super) fn terminate_all(&mut self, ctx: &mut Ctx<Slot>, now: bool) {
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            if now {
                if let Some(p) = self.jobs.get(&id).and_then(|j| j.process.as_ref()) {
                    p.signal_group(libc::SIGKILL);
                }
            } else {
                self.terminate(ctx, id);
            }
        }
        self.waiting.clear();
    }

    fn close_pipes(&mut self, ctx: &mut Ctx<Slot>, id: JobId) {
        if let Some(job) = self.jobs.get(&id) {
            for token in job.pipes.iter().flatten() {
                ctx.close(*token, CloseReason::Done);
            }
        }
    }

    /// The client is gone: kill what it started; forget what it was owed.
    pub(super) fn abandon(&mut self, ctx: &mut Ctx<Slot>, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.abandoned = true;
        match job.phase {
            Phase::Running => {
                debug!("{}: gone; killing {}", job.peer, job.line);
                self.counts.abandoned += 1;
                self.close_pipes(ctx, id);
                self.terminate(ctx, id);
                self.finish(ctx, id);
            }
            Phase::Waiting(_) | Phase::Done(_) => self.forget(ctx, id),
        }
    }

    /// If the job's child is reaped and its pipes are closed: build its reply (or, if
    /// its client is gone, forget it).
    fn finish(&mut self, ctx: &mut Ctx<Slot>, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.finished_running() {
            return;
        }
        if job.abandoned {
            self.forget(ctx, id);
            return;
        }
        for timer in job.timers.take_all() {
            ctx.cancel_timer(timer);
        }
        job.build_reply();
        let took = Duration::from_millis(ctx.now().saturating_sub(job.started_at));
        debug!(
            "{}: {}: {} bytes, exit {:?}, signal {:?}, {took:?}",
            job.peer,
            job.line,
            job.output[0].len() + job.output[1].len(),
            job.process.as_ref().and_then(|p| p.status()?.code()),
            job.process.as_ref().and_then(|p| {
                use std::os::unix::process::ExitStatusExt;
                p.status()?.signal()
            }),
        );
        self.dirty.push(job.client);
    }

    /// Drop the job (reaped, or never started), freeing its slot and its timers.
    pub(super) fn forget(&mut self, ctx: &mut Ctx<Slot>, id: JobId) {
        let unreaped = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.process.as_ref().is_some_and(|p| p.status().is_none()));
        if unreaped {
            // Cannot happen (only reaped jobs are forgotten once they ran); if it did,
            // keeping the job lets the next SIGCHLD reap it.
            warn!("exec: job {id} almost forgotten before its child was reaped");
            return;
        }
        let Some(mut job) = self.jobs.remove(&id) else {
            return;
        };
        for timer in job.timers.take_all() {
            ctx.cancel_timer(timer);
        }
        if job.holds_slot {
            self.slots -= 1;
        }
    }

    /// Stop (or resume) reading the job's pipes: its child then blocks on a full pipe.
    pub(super) fn pause_pipes(&mut self, ctx: &mut Ctx<Slot>, id: JobId, pause: bool) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.paused == pause {
            return;
        }
        job.paused = pause;
        for token in job.pipes.iter().flatten().copied().collect::<Vec<Token>>() {
            if pause {
                ctx.pause_reading(token);
            } else {
                ctx.resume_reading(token);
            }
        }
    }
}
