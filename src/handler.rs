//! `Handler`: what an application plugs into the loop.
//!
//! The loop (`event_loop.rs`) owns the sockets and does all the readiness bookkeeping:
//! accepting, reading until `WouldBlock`, queueing what the kernel will not take,
//! deadlines, closing. A handler only says what the bytes *mean*. Every callback gets
//! the connection table (`Conns`) so it can send, close, set deadlines or open new
//! connections; none of them may block.
//!
//! This mirrors seed 001's `selectors` programs, where each registration carries a
//! callback (`accept`, `read`, `send_request`) — but here there is one handler per
//! loop, and the loop, not the callback, owns the reading and writing.

use std::io;
use std::net::SocketAddr;

use mio::Token;

use crate::event_loop::Conns;

/// Why a connection closed.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer sent EOF and everything owed to it was written.
    PeerClosed,
    /// The handler finished with it (e.g. the hello service's `exit`).
    Done,
    /// No traffic for the idle timeout (or another handler deadline).
    IdleTimeout,
    /// The server is shutting down.
    Shutdown,
    /// The peer sent more unconsumed input than the read buffer limit allows.
    InputTooLarge,
    /// A socket error (reset, broken pipe, ...).
    Error(io::Error),
    /// A non-blocking connect failed.
    ConnectFailed(io::Error),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => write!(f, "closed by peer"),
            CloseReason::Done => write!(f, "done"),
            CloseReason::IdleTimeout => write!(f, "idle timeout"),
            CloseReason::Shutdown => write!(f, "server shutdown"),
            CloseReason::InputTooLarge => write!(f, "input buffer limit exceeded"),
            CloseReason::Error(e) => write!(f, "error: {e}"),
            CloseReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
        }
    }
}

/// What the loop does about a signal, as decided by `Handler::on_signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    /// Graceful shutdown: stop accepting, flush, close (a second time: close now).
    Shutdown,
    /// Nothing more: the handler dealt with it.
    Handled,
}

/// An application running on the loop. Only `on_data` is required.
pub trait Handler {
    /// Per-connection state kept in each slot; `Default` makes the state of an accepted
    /// connection. Keep it small (or zero-sized): idle servers hold many slots.
    type State: Default;

    /// A connection was accepted, or an outbound connect completed.
    fn on_open(&mut self, conns: &mut Conns<Self::State>, token: Token) {
        let _ = (conns, token);
    }

    /// Bytes arrived. `data` is the connection's unconsumed input followed by the new
    /// bytes; return how many bytes were consumed. Unconsumed bytes are kept in the
    /// connection's read buffer and offered again, with more, on the next read.
    fn on_data(&mut self, conns: &mut Conns<Self::State>, token: Token, data: &mut [u8]) -> usize;

    /// The socket has nothing more to read for now (a read burst ended: a short read or
    /// `WouldBlock`), and the peer may be waiting for an answer to what it sent. Input
    /// the handler left unconsumed is still in `Conns::unconsumed`.
    fn on_burst_end(&mut self, conns: &mut Conns<Self::State>, token: Token) {
        let _ = (conns, token);
    }

    /// The peer half-closed (EOF). By default: finish sending what is queued, then close.
    fn on_eof(&mut self, conns: &mut Conns<Self::State>, token: Token) {
        conns.close_when_flushed(token);
    }

    /// The connection's outbound queue became empty after a queued write drained. Not
    /// called when `send` wrote everything at once (nothing was queued): a producer
    /// that paces itself on this callback must also continue after such sends (e.g.
    /// from `on_turn`, with `Conns::wake_after`).
    fn on_drained(&mut self, conns: &mut Conns<Self::State>, token: Token) {
        let _ = (conns, token);
    }

    /// The connection's deadline passed. By default: close it as idle.
    fn on_deadline(&mut self, conns: &mut Conns<Self::State>, token: Token) {
        conns.close(token, CloseReason::IdleTimeout);
    }

    /// The connection is gone; `state` is its final state.
    fn on_close(
        &mut self,
        conns: &mut Conns<Self::State>,
        token: Token,
        state: Self::State,
        reason: &CloseReason,
    ) {
        let _ = (conns, token, state, reason);
    }

    /// A datagram arrived on UDP port number `port` (reply with `conns.send_datagram`).
    fn on_datagram(
        &mut self,
        conns: &mut Conns<Self::State>,
        port: usize,
        from: SocketAddr,
        data: &mut [u8],
    ) {
        let _ = (conns, port, from, data);
    }

    /// A signal registered with `EventLoop::handle_signals_from` arrived. By default
    /// SIGINT and SIGTERM shut the loop down gracefully and others are ignored.
    fn on_signal(&mut self, conns: &mut Conns<Self::State>, signal: i32) -> SignalAction {
        let _ = conns;
        if signal == libc::SIGINT || signal == libc::SIGTERM {
            SignalAction::Shutdown
        } else {
            SignalAction::Handled
        }
    }

    /// Another thread called `wake()` on the loop's waker (see `EventLoop::waker`).
    fn on_wake(&mut self, conns: &mut Conns<Self::State>) {
        let _ = conns;
    }

    /// Called once at the end of every turn of the loop (for progress, scheduling).
    fn on_turn(&mut self, conns: &mut Conns<Self::State>) {
        let _ = conns;
    }
}
