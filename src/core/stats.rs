//! `Stats`: counters the loop keeps, printed as one summary line at shutdown.
//!
//! Plain integers bumped on the paths that already run (accept, read, write, close): no
//! extra system calls, no per-connection memory.

use std::fmt;

/// Counts of observations by upper bound, for a Prometheus histogram: `counts[i]` is
/// how many were `<= bounds[i]` and above the previous bound; the last counts the rest.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending.
    pub bounds: &'static [u64],
    /// One count per bound, plus one for everything above the last.
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: u64,
}

impl Histogram {
    /// An empty histogram over these bounds.
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    /// Count one observation.
    pub fn observe(&mut self, value: u64) {
        if self.counts.is_empty() {
            return;
        }
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.sum += value;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Bucket bounds for events per turn.
pub const EVENTS_BOUNDS: &[u64] = &[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/// Bucket bounds for time asleep per turn, in microseconds.
pub const ASLEEP_US_BOUNDS: &[u64] = &[
    10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 10_000_000,
];

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
    /// Closed by a limit (`--max-conns` rejections, input over the read buffer limit,
    /// outbound queue over the hard cap, the total input budget).
    pub closed_by_limit: u64,
    /// Of those, closed because all connections' unconsumed input passed its budget.
    pub closed_input_budget: u64,
    /// Closed by a socket error (reset, failed connect, ...).
    pub closed_by_error: u64,
    /// Of those, resets and broken pipes: the peer went away.
    pub resets: u64,
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
    /// Turns of the loop.
    pub turns: u64,
    /// Connections whose reading is paused by backpressure now (a gauge).
    pub paused_now: u64,
    /// Bytes in all outbound queues now (a gauge).
    pub queued_bytes: u64,
    /// Events returned per wake-up (with `LoopConfig::measure_turns`).
    pub turn_events: Histogram,
    /// Microseconds asleep in `poll` per turn (with `LoopConfig::measure_turns`).
    pub turn_asleep_us: Histogram,
}

impl Stats {
    /// What changed since `before`, as `key=+N` pairs (`None` if nothing did), for the
    /// periodic INFO line.
    pub fn since(&self, before: &Stats) -> Option<String> {
        let pairs = [
            ("accepted", self.accepted, before.accepted),
            ("connected", self.connected, before.connected),
            ("closed_by_peer", self.closed_by_peer, before.closed_by_peer),
            (
                "closed_by_timeout",
                self.closed_by_timeout,
                before.closed_by_timeout,
            ),
            (
                "closed_by_limit",
                self.closed_by_limit,
                before.closed_by_limit,
            ),
            (
                "closed_by_error",
                self.closed_by_error,
                before.closed_by_error,
            ),
            ("resets", self.resets, before.resets),
            (
                "rejected_max_conns",
                self.rejected_max_conns,
                before.rejected_max_conns,
            ),
            ("bytes_in", self.bytes_in, before.bytes_in),
            ("bytes_out", self.bytes_out, before.bytes_out),
            ("datagrams_in", self.datagrams_in, before.datagrams_in),
            (
                "datagrams_dropped",
                self.datagrams_dropped,
                before.datagrams_dropped,
            ),
        ];
        let changed: Vec<String> = pairs
            .iter()
            .filter(|(_, now, then)| now > then)
            .map(|(name, now, then)| format!("{name}=+{}", now - then))
            .collect();
        (!changed.is_empty()).then(|| changed.join(" "))
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} peak_open={} bytes_in={} bytes_out={} closed_by_peer={} \
             closed_by_timeout={} closed_by_limit={} closed_by_error={} resets={} \
             closed_by_shutdown={} \
             rejected_max_conns={} closed_input_budget={} accept_pauses={} datagrams_in={} \
             datagrams_out={} datagrams_dropped={}",
            self.accepted,
            self.peak_open,
            self.bytes_in,
            self.bytes_out,
            self.closed_by_peer,
            self.closed_by_timeout,
            self.closed_by_limit,
            self.closed_by_error,
            self.resets,
            self.closed_by_shutdown,
            self.rejected_max_conns,
            self.closed_input_budget,
            self.accept_pauses,
            self.datagrams_in,
            self.datagrams_out,
            self.datagrams_dropped,
        )
    }
}
