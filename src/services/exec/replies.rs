//! Replies in order, at the pace the client reads them.
//!
//! A connection's replies go out in the order its requests came, each whole before the
//! next. A reply is handed to the loop a piece (`CHUNK`) at a time while the
//! connection's outbound queue is under the loop's high watermark (`max_queue`); when a
//! piece takes it over, the rest waits for `on_drained`. So the loop's queue never holds
//! more than about one watermark of a reply, and never reaches its hard cap (which would
//! close the connection) however large the reply is.
//!
//! **Backpressure to the child.** While a reply goes out, the connection's next command
//! may already run. Whenever the queue is over the watermark (the client is not keeping
//! up), that command's pipes are **not read** (`Ctx::pause_reading` on the pipe tokens):
//! the kernel's pipe buffer fills and the child blocks in its own `write`, not the
//! server. Reading resumes when the queue drains. A client that reads nothing at all
//! for `--timeout` is closed (`STALL` timer), which frees its slot and kills its command.
//!
//! A job keeps its child slot until its reply is entirely in the loop's hands, so the
//! output held by the service is at most `--max-children` × `--max-output`.

use mio::Token;

use super::job::{JobId, Phase};
use super::running::{timer_key, STALL};
use super::{Exec, Slot};
use crate::core::{Ctx, SendStatus};

/// Bytes of a reply handed to the loop at a time.
const CHUNK: usize = 256 * 1024;

impl Exec {
    /// Start waiting jobs in free slots and move every client's replies on, until
    /// nothing changes. Every event that can change either ends here.
    pub(super) fn settle(&mut self, ctx: &mut Ctx<Slot>) {
        loop {
            self.start_waiting(ctx);
            let Some(token) = self.dirty.pop() else {
                return;
            };
            self.advance(ctx, token);
        }
    }

    /// Send what the client is owed, in order; then decide whether it may send more.
    fn advance(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        while ctx.is_open(token) {
            let Some(Slot::Client(client)) = ctx.state(token) else {
                return;
            };
            let Some(&id) = client.jobs.front() else {
                break;
            };
            if !matches!(self.jobs.get(&id).map(|j| &j.phase), Some(Phase::Done(_))) {
                break;
            }
            if !self.feed(ctx, token, id) {
                break;
            }
            if let Some(Slot::Client(client)) = ctx.state_mut(token) {
                client.jobs.pop_front();
            }
            self.forget(ctx, id);
        }
        self.pace_pipes(ctx, token);
        let Some(Slot::Client(client)) = ctx.state(token) else {
            return;
        };
        if client.ended && client.jobs.is_empty() {
            ctx.close_when_flushed(token);
        } else if self.can_accept(client) && !ctx.unconsumed(token).is_empty() {
            // The next request is already here, left unconsumed while we were busy: the
            // loop offers it again in the next turn (no new bytes need to arrive).
            ctx.defer(token);
        }
    }

    /// Hand the job's reply to the loop while the queue is under the watermark. Returns
    /// true once all of it is handed over.
    fn feed(&mut self, ctx: &mut Ctx<Slot>, token: Token, id: JobId) -> bool {
        let watermark = ctx.config().max_queue;
        loop {
            if ctx.queued(token) > watermark {
                break;
            }
            let Some(job) = self.jobs.get(&id) else {
                return true;
            };
            let parts = job.next_chunk(CHUNK);
            if parts.is_empty() {
                if let Some(timer) = self.jobs.get_mut(&id).and_then(|j| j.timers.stall.take()) {
                    ctx.cancel_timer(timer);
                }
                return true;
            }
            let n: usize = parts.iter().map(|p| p.len()).sum();
            let status = ctx.send_parts(token, &parts);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.advance(n);
            }
            if status == SendStatus::Closed {
                return false; // `on_close` abandons the connection's jobs
            }
        }
        // The client reads slower than we send: the rest waits for `on_drained`, and it
        // has `--timeout` to read something (each `on_drained` starts the time anew).
        if let Some(job) = self.jobs.get_mut(&id) {
            if let Some(timer) = job.timers.stall.take() {
                ctx.cancel_timer(timer);
            }
            let timer = ctx.timer_after(self.opts.timeout, timer_key(STALL, id));
            job.timers.stall = Some(timer);
        }
        false
    }

    /// Read the connection's running command's pipes only while its queue is under the
    /// watermark.
    pub(super) fn pace_pipes(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        let over = ctx.queued(token) > ctx.config().max_queue;
        let Some(Slot::Client(client)) = ctx.state(token) else {
            return;
        };
        let running: Vec<JobId> = client
            .jobs
            .iter()
            .copied()
            .filter(|id| matches!(self.jobs.get(id).map(|j| &j.phase), Some(Phase::Running)))
            .collect();
        for id in running {
            self.pause_pipes(ctx, id, over);
        }
    }
}
