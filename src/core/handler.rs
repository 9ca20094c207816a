//! `Handler`: what an application plugs into the loop.
//!
//! The loop (`event_loop.rs`) owns the sockets and does all the readiness bookkeeping:
//! accepting, reading until `WouldBlock`, queueing what the kernel will not take,
//! timers, closing. A handler only says what the bytes *mean*. Every callback gets the
//! handler's context (`Ctx`) so it can send, close, set timers or open new connections;
//! none of them may block (blocking work goes to an `offload::Pool`).
//!
//! This mirrors seed 001's `selectors` programs, where each registration carries a
//! callback (`accept`, `read`, `send_request`) — but here there is one handler per
//! loop, and the loop, not the callback, owns the reading and writing.

use std::net::SocketAddr;

use mio::Token;

use super::close::{CloseReason, Closed};
use super::ctx::Ctx;

/// What the loop does about a signal, as decided by `Handler::on_signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    /// Graceful shutdown: stop accepting, flush, close (a second time: close now).
    Shutdown,
    /// Nothing more: the handler dealt with it.
    Handled,
}

/// A signal's name for messages (`on_signal` gets its number): `SIGINT`, `SIGTERM`,
/// `SIGHUP`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// An application running on the loop. Only `on_data` is required.
pub trait Handler {
    /// Per-connection state kept in each slot; `Default` makes the state of an accepted
    /// connection. Keep it small (or zero-sized): idle servers hold many slots.
    type State: Default;

    /// A connection was accepted, or an outbound connect completed.
    fn on_open(&mut self, ctx: &mut Ctx<Self::State>, token: Token) {
        let _ = (ctx, token);
    }

    /// Bytes arrived. `data` is the connection's unconsumed input followed by the new
    /// bytes; return how many bytes were consumed. Unconsumed bytes are kept in the
    /// connection's read buffer and offered again, with more, on the next read.
    fn on_data(&mut self, ctx: &mut Ctx<Self::State>, token: Token, data: &mut [u8]) -> usize;

    /// The socket has nothing more to read for now (a read burst ended: a short read or
    /// `WouldBlock`), and the peer may be waiting for an answer to what it sent. Input
    /// the handler left unconsumed is still in `Ctx::unconsumed`.
    fn on_burst_end(&mut self, ctx: &mut Ctx<Self::State>, token: Token) {
        let _ = (ctx, token);
    }

    /// The peer half-closed (EOF). By default: finish sending what is queued, then close.
    fn on_eof(&mut self, ctx: &mut Ctx<Self::State>, token: Token) {
        ctx.close_when_flushed(token);
    }

    /// The connection's outbound queue became empty after a queued write drained. Not
    /// called when `send` wrote everything at once (nothing was queued): a producer
    /// that paces itself on this callback must also continue after such sends.
    fn on_drained(&mut self, ctx: &mut Ctx<Self::State>, token: Token) {
        let _ = (ctx, token);
    }

    /// The idle timeout passed with no activity. By default: close as idle. A handler
    /// may send a notice first and close with `close_after_flush`.
    fn on_idle(&mut self, ctx: &mut Ctx<Self::State>, token: Token) {
        ctx.close(token, CloseReason::IdleTimeout);
    }

    /// The connection's handler deadline (`Ctx::set_deadline`) passed. By default:
    /// close with `Timeout`.
    fn on_deadline(&mut self, ctx: &mut Ctx<Self::State>, token: Token) {
        ctx.close(token, CloseReason::Timeout);
    }

    /// A loop timer (`Ctx::timer_after`, `Ctx::timer_every`) with this key came up.
    fn on_timer(&mut self, ctx: &mut Ctx<Self::State>, key: u64) {
        let _ = (ctx, key);
    }

    /// The connection is finished for the handler: called once, with its peer, reason,
    /// final state and leftover input. For a graceful close this comes as soon as
    /// everything owed is written, not after the lingering close the loop then does on
    /// its own; the token is not reused before that ends, and sends to it are ignored.
    fn on_close(&mut self, ctx: &mut Ctx<Self::State>, token: Token, closed: Closed<Self::State>) {
        let _ = (ctx, token, closed);
    }

    /// A datagram arrived on UDP port number `port` (reply with `ctx.send_datagram`).
    fn on_datagram(
        &mut self,
        ctx: &mut Ctx<Self::State>,
        port: usize,
        from: SocketAddr,
        data: &mut [u8],
    ) {
        let _ = (ctx, port, from, data);
    }

    /// A signal registered with `EventLoop::handle_signals_from` arrived. By default
    /// SIGINT and SIGTERM shut the loop down gracefully and others are ignored.
    fn on_signal(&mut self, ctx: &mut Ctx<Self::State>, signal: i32) -> SignalAction {
        let _ = ctx;
        if signal == libc::SIGINT || signal == libc::SIGTERM {
            SignalAction::Shutdown
        } else {
            SignalAction::Handled
        }
    }

    /// Graceful shutdown began (`EventLoop::begin_shutdown`: a SIGINT/SIGTERM whose
    /// `on_signal` said `Shutdown`). Listeners are already closed and every connection is
    /// still open; right after this returns, each one is closed as soon as its queue is
    /// flushed. So this is the place to tell peers in the middle of something why they
    /// are about to be cut off (a `send` here goes out before the close) and to drop
    /// their half-done work. By default: nothing.
    fn on_shutdown(&mut self, ctx: &mut Ctx<Self::State>) {
        let _ = ctx;
    }

    /// Another thread called `wake()` on the loop's waker (`Ctx::waker`): an offload
    /// pool finished a job, a resolver thread has addresses.
    fn on_wake(&mut self, ctx: &mut Ctx<Self::State>) {
        let _ = ctx;
    }

    /// Called once at the end of every turn, before the loop sleeps again (Redis's
    /// `beforesleep`): for progress lines, not for scheduling (use a timer).
    fn on_turn(&mut self, ctx: &mut Ctx<Self::State>) {
        let _ = ctx;
    }
}
