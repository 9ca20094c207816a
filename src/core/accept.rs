//! Accepting: take every waiting connection off a listener's backlog.
//!
//! Readiness rule relied on: a listener's readable edge may stand for many queued
//! connections, so `accept` runs until `WouldBlock`. Two failures need a policy of their
//! own. Out of descriptors (`EMFILE`): the connection stays in the backlog and the
//! listener stays readable, so retrying at once would spin; accepting pauses until a
//! connection closes or `ACCEPT_RETRY` passes. Other errors (a client that gave up) skip
//! that client, but an error that repeats is treated like `EMFILE`.

use std::time::Duration;

use log::{debug, info, trace, warn};

use super::event_loop::EventLoop;
use super::handler::Handler;
use super::io_util::{interrupted, out_of_descriptors, would_block};
use super::record::record;
use super::slot::NO_LISTENER;

/// Accept errors in a row (other than `WouldBlock`) before backing off.
const MAX_ACCEPT_FAILURES: usize = 64;
/// How long to wait before retrying `accept` after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(200);

impl<S: Default> EventLoop<S> {
    /// Accept until `WouldBlock` (edge-triggered: the backlog may hold many).
    pub(super) fn accept<H: Handler<State = S>>(&mut self, handler: &mut H, index: usize) {
        let mut failures = 0;
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if would_block(&e) => {
                    trace!("listener {index}: accept WouldBlock");
                    if self.accept_pause_logged {
                        info!("backlog drained: accepting normally again");
                        self.accept_pause_logged = false;
                    }
                    return;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) if out_of_descriptors(&e) => {
                    // The pending connection stays in the backlog and the listener stays
                    // readable: retrying now would spin. Pause; closes and a timer resume.
                    if !self.accept_pause_logged {
                        warn!(
                            "accept on {}: {e}; pausing accepts until descriptors free up",
                            listener.describe()
                        );
                        self.accept_pause_logged = true;
                        self.ctx.stats.accept_pauses += 1;
                    }
                    self.accept_paused_until = Some(self.ctx.clock.after(ACCEPT_RETRY));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that client gave up; others may wait. An
                    // error that repeats is not about one client: back off as for EMFILE
                    // rather than spin on it.
                    debug!("accept on {}: {e}", listener.describe());
                    failures += 1;
                    if failures >= MAX_ACCEPT_FAILURES {
                        let now = self.ctx.clock.now();
                        let what = listener.describe();
                        let message =
                            format_args!("accept on {what}: {e} (repeated); retrying later");
                        self.ctx.warnings.accept.warn(now, message);
                        self.accept_paused_until = Some(self.ctx.clock.after(ACCEPT_RETRY));
                        return;
                    }
                    continue;
                }
            };
            self.ctx.stats.accepted += 1;
            if let Some(max) = self.ctx.config.max_conns {
                if self.ctx.slab.len() >= max {
                    debug!("{peer}: over --max-conns {max}, closed at once");
                    self.ctx.stats.rejected_max_conns += 1;
                    self.ctx.stats.closed_by_limit += 1;
                    drop(stream);
                    continue;
                }
            }
            match self.ctx.insert(stream, peer, S::default(), false) {
                Ok(token) => {
                    if let Some(conn) = self.ctx.slab.get_mut(token.0) {
                        conn.listener = u8::try_from(index).unwrap_or(NO_LISTENER);
                    }
                    debug!("token {}: accepted {peer}", token.0);
                    record!(self.ctx, "accept", conn = token.0, peer = peer.to_string());
                    handler.on_open(&mut self.ctx, token);
                    self.reap(handler);
                }
                Err(e) => {
                    let now = self.ctx.clock.now();
                    self.ctx.warnings.accept.warn(now, format_args!("{e}"));
                }
            }
        }
    }

    /// Retry accepting on every listener (after a pause for lack of descriptors).
    pub(super) fn accept_all<H: Handler<State = S>>(&mut self, handler: &mut H) {
        self.accept_paused_until = None;
        for i in 0..self.listeners.len() {
            self.accept(handler, i);
            if self.accept_paused_until.is_some() {
                return;
            }
        }
    }
}
