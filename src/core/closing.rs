//! Closing: how a connection ends, and how the whole loop ends.
//!
//! Handlers (and the loop) only *mark* a connection closed (`Ctx::close`,
//! `close_when_flushed`); after each callback `reap` finishes what was marked: it tells
//! the handler once (`on_close`, with a `Closed` value: peer, reason, state, leftover
//! input), counts it, and frees the slot — or, for a graceful close, leaves the slot to a
//! lingering close the loop completes on its own. Deferring the removal is what keeps a
//! token valid, and not reused, while a callback still holds it.
//!
//! Shutdown (SIGINT/SIGTERM) is the same thing for everyone at once: stop accepting,
//! let the handler have its last word (`Handler::on_shutdown`), close each connection
//! once its queue is flushed, give up after the grace period.

use log::{debug, info, warn};
use mio::Token;

use super::close::{CloseReason, Closed};
use super::ctx::Closing;
use super::event_loop::EventLoop;
use super::handler::{Handler, SignalAction};
use super::io_util::peer_gone;
use super::record::record;
use super::slot::{flags, Slot};

impl<S: Default> EventLoop<S> {
    /// Finish the connections closed during the last callback (if any).
    #[inline(always)]
    pub(super) fn reap<H: Handler<State = S>>(&mut self, handler: &mut H) {
        if !self.ctx.closing.is_empty() {
            self.reap_closing(handler);
        }
    }

    /// Tell the handler (once) about each closed connection, then free the slot, or
    /// leave it to a lingering close the loop completes alone.
    fn reap_closing<H: Handler<State = S>>(&mut self, handler: &mut H) {
        let mut freed = false;
        while let Some(Closing {
            token,
            reason,
            linger,
        }) = self.ctx.closing.pop()
        {
            let key = token.0;
            let Some(conn) = self.ctx.slab.get_mut(key) else {
                continue;
            };
            let notify = !conn.has(flags::DETACHED);
            if linger && (!notify || conn.has(flags::CLOSING)) {
                continue; // already told, or closed outright since
            }
            if conn.has(flags::READ_PAUSED) {
                conn.flags &= !flags::READ_PAUSED;
                self.ctx.stats.paused_now = self.ctx.stats.paused_now.saturating_sub(1);
            }
            let unsent = conn.queued() as u64;
            if !linger {
                self.ctx.stats.queued_bytes = self.ctx.stats.queued_bytes.saturating_sub(unsent);
            }
            let unconsumed = conn
                .pending
                .as_mut()
                .map(|p| std::mem::take(&mut p.read_buf))
                .unwrap_or_default();
            self.ctx.input_held -= unconsumed.capacity();
            let v6_peers = &self.ctx.v6_peers;
            let peer = conn.peer.get(|| v6_peers.get(&key));
            let closed = notify.then(|| Closed {
                peer,
                state: std::mem::take(&mut conn.state),
                unconsumed,
                unsent: conn.queued(),
                reason,
            });
            if let Some(closed) = &closed {
                let kind = if linger { "closing" } else { "closed" };
                let reason = closed.reason.to_string();
                record!(self.ctx, kind, conn = key, reason = reason);
            } else {
                record!(
                    self.ctx,
                    "closed",
                    conn = key,
                    reason = "lingering close done"
                );
            }
            let Some(conn) = self.ctx.slab.get_mut(key) else {
                continue;
            };
            if linger {
                conn.flags |= flags::DETACHED;
                self.ctx.detached += 1;
            } else {
                let conn = self.ctx.slab.remove(key);
                if conn.has(flags::DETACHED) {
                    self.ctx.detached -= 1;
                }
                if let Some(filed) = conn.idle_filed(self.ctx.clock.now()) {
                    self.ctx.timers.unfile_idle(key, filed);
                }
                if conn.peer.is_v6() {
                    self.ctx.v6_peers.remove(&key);
                }
                // Dropping the stream closes the descriptor, which also removes it from
                // the epoll set (the kernel drops an epoll entry when the last descriptor
                // of the socket closes, and the loop never duplicates a connection's
                // descriptor), so no deregister call is needed.
                drop::<Slot<S>>(conn);
                freed = true;
            }
            self.ctx.timers.clear_deadline(key);
            self.ctx.flush_reasons.remove(&key);
            if let Some(closed) = closed {
                self.count_close(token, &closed);
                handler.on_close(&mut self.ctx, token, closed);
            }
        }
        if freed && self.accept_paused_until.is_some() && !self.ctx.shutting_down {
            // A descriptor came back: try the waiting backlog now.
            self.accept_all(handler);
        }
    }

    fn count_close(&mut self, token: Token, closed: &Closed<S>) {
        let stats = &mut self.ctx.stats;
        let reason = &closed.reason;
        match reason {
            CloseReason::PeerClosed | CloseReason::Done => stats.closed_by_peer += 1,
            CloseReason::IdleTimeout | CloseReason::Timeout => stats.closed_by_timeout += 1,
            CloseReason::Shutdown => stats.closed_by_shutdown += 1,
            CloseReason::InputTooLarge | CloseReason::QueueOverflow => stats.closed_by_limit += 1,
            CloseReason::Error(e) if peer_gone(e) => {
                stats.closed_by_error += 1;
                stats.resets += 1;
            }
            CloseReason::Error(_) | CloseReason::ConnectFailed(_) => stats.closed_by_error += 1,
        }
        // Per-connection events are DEBUG: a peer that resets a thousand connections a
        // second must not write a thousand log lines a second (see `log_limit.rs`).
        match reason {
            CloseReason::Error(e) if !peer_gone(e) => {
                let now = self.ctx.clock.now();
                let message = format_args!("{}: {reason}", closed.peer);
                self.ctx.warnings.conn_error.warn(now, message);
            }
            _ => debug!("token {}: {} {reason}", token.0, closed.peer),
        }
    }

    /// Stop accepting, stop reading, close every connection once its queue is flushed.
    pub fn begin_shutdown<H: Handler<State = S>>(&mut self, handler: &mut H) {
        self.ctx.shutting_down = true;
        self.listeners.clear(); // closes them (and removes Unix socket files)
        self.ctx.udp.clear();
        self.accept_paused_until = None;
        self.shutdown_deadline = Some(self.ctx.clock.after(self.ctx.config.shutdown_grace));
        // The handler's last word to connections in the middle of something (an error
        // frame, say), queued before the close below, which waits for it to flush.
        handler.on_shutdown(&mut self.ctx);
        self.reap(handler);
        let keys: Vec<usize> = self.ctx.slab.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.ctx.close_when_flushed(Token(key));
        }
        self.reap(handler);
    }

    /// Grace period over (or a second signal): close whatever is left.
    pub(super) fn abandon_unflushed(&mut self) {
        self.shutdown_deadline = None;
        let keys: Vec<usize> = self.ctx.slab.iter().map(|(k, _)| k).collect();
        if !keys.is_empty() {
            warn!("closing {} connections with unsent data", keys.len());
        }
        for key in keys {
            self.ctx.close(Token(key), CloseReason::Shutdown);
        }
    }

    pub(super) fn on_signal<H: Handler<State = S>>(&mut self, handler: &mut H) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            record!(self.ctx, "signal", signal = signal as u64);
            if handler.on_signal(&mut self.ctx, signal) != SignalAction::Shutdown {
                continue;
            }
            if self.ctx.shutting_down {
                info!(
                    "signal {signal} again: closing {} connections now",
                    self.ctx.len()
                );
                self.abandon_unflushed();
            } else {
                info!(
                    "signal {signal}: shutting down ({} connections open)",
                    self.ctx.len()
                );
                self.begin_shutdown(handler);
            }
        }
    }
}
