//! `LoopConfig`: the limits one loop enforces on every connection, whatever the handler.
//!
//! Two numbers bound a connection's memory. Unconsumed input is capped by
//! `max_read_buf` (a peer that sends a line or frame header longer than that is closed
//! with `InputTooLarge`), and all connections' unconsumed input together by
//! `max_input_total`. Unsent output has two limits: past `max_queue` (the high
//! watermark) the loop stops *reading* from that connection, which is all an echo-style
//! handler needs, because it only sends in answer to what it reads; and past
//! `max_queue_hard` the loop closes the connection (`QueueOverflow`), which is what
//! bounds a fan-out handler that sends one peer's bytes to everyone: pausing the slow
//! reader's input does nothing about what *others* make us send it.

use std::time::Duration;

/// What counts as activity for the idle timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdleCounts {
    /// Only what the peer sends: a client that receives ticks but says nothing is idle.
    #[default]
    Input,
    /// Reading and writing alike (a download in progress is not idle).
    Both,
}

/// Tunable limits of a loop.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// High watermark: stop reading from a connection whose outbound queue is larger.
    /// Reading resumes below a quarter of it (the low watermark).
    pub max_queue: usize,
    /// Hard cap: a connection whose outbound queue would grow past this is closed with
    /// `CloseReason::QueueOverflow`. At least `max_queue`.
    pub max_queue_hard: usize,
    /// Largest unconsumed input a connection may hold (an incomplete line or frame).
    pub max_read_buf: usize,
    /// Largest unconsumed input all connections together may hold. Past it, the
    /// connections holding the most are closed (`InputTooLarge`) until the total fits:
    /// 5,000 clients each holding an almost complete 64 KiB header cannot add up to
    /// 320 MB.
    pub max_input_total: usize,
    /// Close connections with no activity for this long (`Handler::on_idle`).
    pub idle_timeout: Option<Duration>,
    /// What counts as activity for `idle_timeout`.
    pub idle_counts: IdleCounts,
    /// Accept at most this many open connections; extra ones are closed at once.
    pub max_conns: Option<usize>,
    /// How long shutdown waits for queued bytes to be flushed.
    pub shutdown_grace: Duration,
    /// How long `close_when_flushed` waits for a peer to read what it is owed before
    /// closing anyway (a peer that never reads must not keep its connection for ever).
    pub flush_timeout: Duration,
    /// Log one INFO line of aggregated counts this often (when anything changed);
    /// per-connection events are DEBUG.
    pub report_every: Option<Duration>,
    /// Keep histograms of events per turn and time asleep per turn (`Stats`), for
    /// metrics: two clock reads per turn.
    pub measure_turns: bool,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            max_queue: 1024 * 1024,
            max_queue_hard: 4 * 1024 * 1024,
            max_read_buf: 1024 * 1024,
            max_input_total: 64 * 1024 * 1024,
            idle_timeout: None,
            idle_counts: IdleCounts::Input,
            max_conns: None,
            shutdown_grace: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(30),
            report_every: None,
            measure_turns: false,
        }
    }
}
