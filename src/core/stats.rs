//! `Stats`: counters the loop keeps, printed as one summary line at shutdown.
//!
//! Plain integers bumped on the paths that already run (accept, read, write, close): no
//! extra system calls, no per-connection memory.

use std::fmt;

/// Totals since the loop started.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Connections accepted from listeners.
    pub accepted: u64,
    /// Outbound connections that completed.
    pub connected: u64,
    /// Connections accepted and closed at once because of `--max-conns`.
    pub rejected_max_conns: u64,
    /// Most connections open at once.
    pub peak_open: usize,
    /// Bytes read from stream connections.
    pub bytes_in: u64,
    /// Bytes written to stream connections.
    pub bytes_out: u64,
    /// Closed after the peer's EOF, or by the handler when done.
    pub closed_by_peer: u64,
    /// Closed by the idle timeout.
    pub closed_by_timeout: u64,
    /// Closed by a limit (`--max-conns` rejections, input over the read buffer limit).
    pub closed_by_limit: u64,
    /// Closed by a socket error (reset, failed connect, ...).
    pub closed_by_error: u64,
    /// Closed by the server shutting down.
    pub closed_by_shutdown: u64,
    /// Episodes of accepting paused because descriptors ran out.
    pub accept_pauses: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Replies dropped because the UDP socket's send buffer was full.
    pub datagrams_dropped: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} peak_open={} bytes_in={} bytes_out={} closed_by_peer={} \
             closed_by_timeout={} closed_by_limit={} closed_by_error={} closed_by_shutdown={} \
             rejected_max_conns={} accept_pauses={} datagrams_in={} datagrams_out={}",
            self.accepted,
            self.peak_open,
            self.bytes_in,
            self.bytes_out,
            self.closed_by_peer,
            self.closed_by_timeout,
            self.closed_by_limit,
            self.closed_by_error,
            self.closed_by_shutdown,
            self.rejected_max_conns,
            self.accept_pauses,
            self.datagrams_in,
            self.datagrams_out,
        )
    }
}
