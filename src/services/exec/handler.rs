//! The `Handler` callbacks of the exec service: each says which kind of slot the event
//! is for (a client, or a child's pipe) and hands over to `requests.rs`, `running.rs`
//! or `replies.rs`, then lets `settle` move whatever the event unblocked.

use std::time::Duration;

use log::info;
use mio::Token;

use super::running::REPORT;
use super::{Exec, Slot};
use crate::core::{CloseReason, Closed, Ctx, Handler, SignalAction};

/// How often the counts are logged (when anything happened).
const REPORT_EVERY: Duration = Duration::from_secs(60);

impl Handler for Exec {
    type State = Slot;

    fn on_open(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        if self.report_timer.is_none() {
            self.report_timer = Some(ctx.timer_every(REPORT_EVERY, REPORT));
        }
        if self.stopping {
            ctx.close(token, CloseReason::Shutdown);
            return;
        }
        self.client_opened(ctx, token);
    }

    fn on_data(&mut self, ctx: &mut Ctx<Slot>, token: Token, data: &mut [u8]) -> usize {
        match ctx.state(token) {
            Some(Slot::Pipe(id, pipe)) => {
                let (id, pipe) = (*id, *pipe);
                self.pipe_data(ctx, id, pipe, data);
                self.settle(ctx);
                data.len()
            }
            Some(Slot::Client(_)) => self.client_data(ctx, token, data),
            None => data.len(),
        }
    }

    fn on_burst_end(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        if let Some(Slot::Client(_)) = ctx.state(token) {
            self.client_burst_end(ctx, token);
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        match ctx.state(token) {
            // A pipe's EOF: its writers are all gone. Close it (`on_close` follows).
            Some(Slot::Pipe(..)) => ctx.close_when_flushed(token),
            Some(Slot::Client(_)) => self.client_ended(ctx, token),
            None => {}
        }
    }

    fn on_drained(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        if let Some(Slot::Client(_)) = ctx.state(token) {
            self.dirty.push(token);
            self.settle(ctx);
        }
    }

    fn on_idle(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        // A pipe is never idle (the command's time limit covers it), nor is a client
        // waiting for its reply; the next byte the client sends starts its idle time anew.
        if let Some(Slot::Client(client)) = ctx.state(token) {
            if client.jobs.is_empty() {
                ctx.close(token, CloseReason::IdleTimeout);
            }
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        if let Some(Slot::Client(_)) = ctx.state(token) {
            self.client_deadline(ctx, token);
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Slot>, key: u64) {
        if key == REPORT {
            self.report();
            return;
        }
        self.job_timer(ctx, key);
        self.settle(ctx);
    }

    fn on_close(&mut self, ctx: &mut Ctx<Slot>, _token: Token, closed: Closed<Slot>) {
        match closed.state {
            Slot::Pipe(id, pipe) => self.pipe_closed(ctx, id, pipe),
            Slot::Client(client) => self.client_closed(ctx, client),
        }
        self.settle(ctx);
    }

    fn on_signal(&mut self, ctx: &mut Ctx<Slot>, signal: i32) -> SignalAction {
        match signal {
            libc::SIGCHLD => {
                self.reap_children(ctx);
                self.settle(ctx);
                SignalAction::Handled
            }
            libc::SIGINT | libc::SIGTERM => {
                let children = self
                    .jobs
                    .values()
                    .filter(|j| j.process.as_ref().is_some_and(|p| p.status().is_none()))
                    .count();
                if self.stopping {
                    info!("exec: signal {signal} again: SIGKILL to {children} children");
                    self.terminate_all(ctx, true);
                } else {
                    info!(
                        "exec: stopping: SIGTERM to {children} children; summary: {}",
                        self.summary(&Default::default())
                    );
                    self.stopping = true;
                    self.running_at_stop = children;
                    self.terminate_all(ctx, false);
                }
                // The loop closes every connection and pipe; children still there when
                // it ends are killed and reaped in `Drop`.
                SignalAction::Shutdown
            }
            _ => SignalAction::Handled,
        }
    }
}
