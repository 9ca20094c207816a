//! Delivery: body bytes from the parser to the writer thread, the pause that bounds
//! what waits for it, and the end of a transfer, reported once its output is written.
//!
//! Every piece of output is a job for the output's writer thread (`output.rs`,
//! `writer.rs`), so the loop never blocks on a pipe or a disk. What may wait for that
//! thread is bounded: after each read, a transfer with more than `PER_TRANSFER` bytes
//! unwritten — or any transfer, while all of them together have more than `TOTAL` — has
//! its connection paused (`Ctx::pause_reading`): its bytes stay in the kernel, and TCP
//! flow control stops the server. Its idle deadline is cleared meanwhile: the silence
//! is ours, not the server's. As the writer's answers come back (`on_wake`), paused
//! connections are resumed once their transfer is down to half its bound and the total
//! to half of its own (`resume_reading`, which also reads what arrived meanwhile).
//!
//! Nothing is lost: a transfer that ends (complete, failed, timed out) hands the writer
//! a last job after its bytes, `Finish`, and its result is reported only when that
//! comes back — its file kept or its partial file removed, or the output error that
//! spoiled it (`EPIPE` on stdout, a full disk), which then is the URL's error. A write
//! error while the body is still arriving ends the transfer at once.

use std::time::Duration;

use mio::Token;

use super::fetcher::{Fetcher, Link};
use super::output::{Destination, PER_TRANSFER, TOTAL};
use super::report::FetchResult;
use super::transfer::{Phase, Transfer};
use super::writer::{Key, Sink, Written};
use crate::core::{CloseReason, Ctx};

impl Fetcher {
    /// Hand output of transfer `id` (body bytes, or an `--include` head) to the writer.
    pub(super) fn deliver(&mut self, id: usize, sink: Sink, bytes: &[u8]) {
        if let Some(t) = self.transfers.get_mut(id) {
            t.unwritten += self.output.write(t.key(id), sink, bytes);
        }
    }

    /// A read of transfer `id`'s response on `token` was handled and more is expected:
    /// pause the connection if too much output waits for the writer, else push its
    /// idle deadline back.
    pub(super) fn after_read(&mut self, ctx: &mut Ctx<Link>, token: Token, id: usize) {
        let total = self.output.unwritten();
        let Some(t) = self.transfers.get_mut(id) else {
            return;
        };
        if t.unwritten > PER_TRANSFER || total > TOTAL {
            if !t.paused {
                t.paused = true;
                self.paused += 1;
                ctx.pause_reading(token);
                ctx.clear_deadline(token);
                log::debug!(
                    "{}: {} bytes unwritten ({total} in all), reading paused",
                    t.url,
                    t.unwritten
                );
            }
        } else if t.parser.head_complete() {
            ctx.set_deadline(token, self.plan.idle_timeout);
        }
        // Until the final head is complete, the deadline set with the request stands:
        // a head trickled a byte at a time, or endless `100 Continue`, cannot push it
        // back (`exchange.rs`).
    }

    /// The transfer is done reading on its connection (the response is complete): undo
    /// a pause before the connection is reused or closed.
    pub(super) fn unpause(&mut self, ctx: &mut Ctx<Link>, id: usize, token: Token) {
        if let Some(t) = self.transfers.get_mut(id).filter(|t| t.paused) {
            t.paused = false;
            self.paused -= 1;
            ctx.resume_reading(token);
        }
    }

    /// The writer's answers (from `on_wake`): output written or failed, transfers'
    /// output finished, result lines printed.
    pub(super) fn output_answers(&mut self, ctx: &mut Ctx<Link>) {
        for answer in self.output.answers() {
            match answer {
                Written::Body { key, bytes, error } => {
                    let Some(t) = self.live(key) else {
                        continue; // over already: its `Finished` will carry the error
                    };
                    t.unwritten = t.unwritten.saturating_sub(bytes);
                    if error.is_some() {
                        self.finish(ctx, key.id, error);
                    }
                }
                Written::Finished { key, outcome } => {
                    let Some((mut result, started)) = self.finishing.remove(&key.serial) else {
                        continue;
                    };
                    match outcome {
                        Ok(file) => result.file = file,
                        Err(e) => {
                            result.error.get_or_insert(e);
                        }
                    }
                    result.elapsed = started.elapsed();
                    self.record(result);
                }
                Written::Lines { succeeded, error } => {
                    if let Some(e) = error {
                        self.reporter.print_failed(succeeded, &e);
                    }
                    // Admission may have stopped for lines waiting to be printed.
                    if self.next_url < self.plan.urls.len() {
                        self.schedule_admit(ctx);
                    }
                }
            }
        }
        self.resume_caught_up(ctx);
        self.stop_if_done(ctx);
    }

    /// Resume the paused connections whose output the writer has caught up with.
    fn resume_caught_up(&mut self, ctx: &mut Ctx<Link>) {
        if self.paused == 0 || self.output.unwritten() > TOTAL / 2 {
            return;
        }
        for (_, t) in self.transfers.iter_mut() {
            if t.paused && t.unwritten <= PER_TRANSFER / 2 {
                t.paused = false;
                self.paused -= 1;
                if let Some(token) = t.conn {
                    ctx.resume_reading(token);
                    ctx.set_deadline(token, self.plan.idle_timeout);
                }
            }
        }
    }

    /// Transfer `key`, if it is still running.
    fn live(&mut self, key: Key) -> Option<&mut Transfer> {
        self.transfers
            .get_mut(key.id)
            .filter(|t| t.serial == key.serial)
    }

    /// The transfer is over: cancel its timer, drop its connection if it still has one
    /// (mid-response, so it cannot be reused), free its place in the window, and report
    /// its result once the writer has finished with its output.
    pub(super) fn finish(&mut self, ctx: &mut Ctx<Link>, id: usize, error: Option<String>) {
        // Happy eyeballs: connects still racing for it are closed (`eyeballs.rs`).
        self.cancel_race(ctx, id);
        let Some(t) = self.transfers.try_remove(id) else {
            return;
        };
        if let Some(timer) = t.timeout {
            ctx.cancel_timer(timer);
        }
        if t.paused {
            self.paused -= 1;
        }
        if let Some(token) = t.conn {
            if let Some(link) = ctx.state_mut(token) {
                link.transfer = None;
            }
            ctx.close(token, CloseReason::Done);
        }
        if matches!(t.phase, Phase::Resolving | Phase::Waiting) {
            self.pool.host(t.host).waiting.retain(|&w| w != id);
            self.forget_descriptor_wait(id);
        }
        self.schedule_admit(ctx);
        let (key, sink, started) = (t.key(id), t.sink, t.started);
        let result = t.into_result(error);
        if matches!(self.output.destination, Destination::Discard) {
            // Nothing of it was handed to the writer.
            return self.record(result);
        }
        self.output.finish(key, sink, result.error.is_none());
        self.finishing.insert(key.serial, (result, started));
    }

    /// A URL that failed before it could start (not a URL, wrong scheme).
    pub(super) fn report_unstarted(&mut self, ctx: &mut Ctx<Link>, url: String, error: String) {
        self.schedule_admit(ctx);
        self.record(FetchResult {
            url,
            status: None,
            bytes: 0,
            wire_bytes: 0,
            elapsed: Duration::ZERO,
            redirects: 0,
            file: None,
            error: Some(error),
            attempts: 0,
            timings: None,
        });
    }

    /// Count the result and have its line printed (after all output before it, at
    /// the end of this turn: `on_turn` flushes the turn's lines as one writer job).
    fn record(&mut self, result: FetchResult) {
        if let Some(line) = self.reporter.record(&result) {
            let (to_stderr, bar) = (self.reporter.to_stderr(), self.reporter.bar_to_clear());
            self.output.print(&line, to_stderr, bar, result.succeeded());
        }
        if self.keep_results {
            self.results.push(result);
        }
    }
}
