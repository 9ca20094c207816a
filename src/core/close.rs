//! `CloseReason` and `Closed`: how a connection ended, as the handler learns it.
//!
//! Kept apart from `handler.rs` and `ctx.rs` because both use it: the context closes
//! connections with a reason, and the handler's `on_close` receives it.

use std::io;

use super::slot::Peer;

/// Why a connection closed.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer sent EOF and everything owed to it was written.
    PeerClosed,
    /// The handler finished with it (e.g. the hello service's `exit`).
    Done,
    /// Nothing counted as activity for the idle timeout (`LoopConfig::idle_timeout`).
    IdleTimeout,
    /// A handler deadline passed (`Ctx::set_deadline`) and the handler did not say more.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// The peer sent more unconsumed input than the read buffer limit allows.
    InputTooLarge,
    /// The peer did not read what it was sent: its outbound queue reached the hard cap.
    QueueOverflow,
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
            CloseReason::Timeout => write!(f, "timeout"),
            CloseReason::Shutdown => write!(f, "server shutdown"),
            CloseReason::InputTooLarge => write!(f, "input buffer limit exceeded"),
            CloseReason::QueueOverflow => write!(f, "outbound queue over the hard limit"),
            CloseReason::Error(e) => write!(f, "error: {e}"),
            CloseReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
        }
    }
}

/// A connection as it was when it closed: what `Handler::on_close` receives.
#[derive(Debug)]
pub struct Closed<S> {
    /// Who was on the other end.
    pub peer: Peer,
    /// Why it closed.
    pub reason: CloseReason,
    /// The handler's final per-connection state.
    pub state: S,
    /// Input the handler had not consumed (an unfinished line or frame).
    pub unconsumed: Vec<u8>,
    /// Bytes that were still queued for the peer and will never be sent.
    pub unsent: usize,
}
