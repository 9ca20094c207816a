//! `Report`: what one stress run measured, mergeable across worker processes.
//!
//! Latency goes into an HDR histogram (microseconds, 3 significant digits), so p99 and
//! p99.9 are exact to 0.1 % whatever the number of round trips, in constant memory.
//! Workers send their report to the parent as one JSON line that includes the
//! histogram's non-empty buckets (`report_json.rs`); the parent adds the buckets and the
//! counters up (`merge`), and so does `stress merge` for the logs of several hosts. The
//! text for people is in `report_text.rs`.

use hdrhistogram::Histogram;

use crate::apps::stress::hdrlog::{add_interval, Interval};

/// Highest latency the histogram tracks (60 s in microseconds); above is clamped.
pub const MAX_US: u64 = 60_000_000;

/// Connect failures by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectErrors {
    /// The target refused (RST to our SYN): nothing listens, or its backlog overflowed.
    pub refused: u64,
    /// No answer within `--connect-timeout`.
    pub timeout: u64,
    /// Reset during the handshake.
    pub reset: u64,
    /// Anything else (no ports left, no descriptors, ...); see `first_error`.
    pub other: u64,
}

impl ConnectErrors {
    /// Sum of all kinds.
    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.reset + self.other
    }
}

/// A stress run's results.
#[derive(Clone, Debug)]
pub struct Report {
    /// Connections asked for (idle + active).
    pub conns_requested: u64,
    /// Connections that were open when the connect phase ended.
    pub conns_open: u64,
    /// Failed connects, by kind.
    pub connect_errors: ConnectErrors,
    /// The first connect error's message, for the human report.
    pub first_error: Option<String>,
    /// Length of the connect phase.
    pub connect_secs: f64,
    /// Connections the target closed during the run.
    pub closed_by_peer: u64,
    /// Connections still open when the hold ended.
    pub still_open_at_end: u64,
    /// Active (probing) connections asked for.
    pub active: u64,
    /// Completed round trips during the hold.
    pub round_trips: u64,
    /// Length of the measured hold.
    pub hold_secs: f64,
    /// Replies that differed from what was expected (or bad HTTP responses).
    pub mismatches: u64,
    /// Requests still unanswered when the hold ended (recorded with their wait so far).
    pub unanswered: u64,
    /// The run was cut short by this signal (Ctrl-C, SIGTERM): the figures cover what
    /// was measured until then.
    pub interrupted: Option<String>,
    /// Resident memory of the stress process(es), KiB.
    pub client_rss_kb: u64,
    /// This process's RSS growth per connection opened (a worker's, or the largest).
    pub client_rss_bytes_per_conn: Option<f64>,
    /// The same for anonymous RSS only: the process's own memory, without the shared
    /// program code that RSS counts in every process (`memory.rs`).
    pub client_anon_bytes_per_conn: Option<f64>,
    /// Target's RSS growth per connection opened, when `--server-pid` was given.
    pub server_rss_bytes_per_conn: Option<f64>,
    /// Target's anonymous RSS growth per connection opened (`--server-pid`).
    pub server_anon_bytes_per_conn: Option<f64>,
    /// The source addresses connections were spread over (None: the kernel's choice).
    pub source_ips: Option<String>,
    /// Those were chosen by the tester (a loopback target needing more than one).
    pub source_ips_automatic: bool,
    /// Times the pacer halved its window and rate (congestion signals).
    pub pacing_cuts: u64,
    /// Connects that were still in flight after the stall threshold (a dropped SYN).
    pub stalled_connects: u64,
    /// The pacer's connect rate when the connect phase ended (summed over workers).
    pub pacing_rate: Option<f64>,
    /// The pacer's in-flight window when the connect phase ended (summed over workers).
    pub pacing_window: u64,
    /// The `--segment K/N` this run was (several, once merged).
    pub segments: Vec<String>,
    /// `--start-at`, seconds since the Unix epoch.
    pub start_at: Option<f64>,
    /// When the hold began, seconds since the Unix epoch: the earliest and the latest
    /// over the processes (or hosts) merged, which says how well they were aligned.
    pub hold_began: Option<(f64, f64)>,
    /// The hold's latency per `hdrlog::INTERVAL` (with `--hdr-log`).
    pub intervals: Vec<Interval>,
    /// Round-trip latency, microseconds.
    pub latency: Histogram<u64>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            conns_requested: 0,
            conns_open: 0,
            connect_errors: ConnectErrors::default(),
            first_error: None,
            connect_secs: 0.0,
            closed_by_peer: 0,
            still_open_at_end: 0,
            active: 0,
            round_trips: 0,
            hold_secs: 0.0,
            mismatches: 0,
            unanswered: 0,
            interrupted: None,
            client_rss_kb: 0,
            client_rss_bytes_per_conn: None,
            client_anon_bytes_per_conn: None,
            server_rss_bytes_per_conn: None,
            server_anon_bytes_per_conn: None,
            source_ips: None,
            source_ips_automatic: false,
            pacing_cuts: 0,
            stalled_connects: 0,
            pacing_rate: None,
            pacing_window: 0,
            segments: Vec::new(),
            start_at: None,
            hold_began: None,
            intervals: Vec::new(),
            latency: new_histogram(),
        }
    }
}

/// An empty latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid, so this cannot fail at run time.
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| unreachable!())
}

/// Record one latency, clamped into the histogram's range.
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_US));
}

impl Report {
    /// Round trips per second during the hold.
    pub fn rps(&self) -> f64 {
        if self.hold_secs > 0.0 {
            self.round_trips as f64 / self.hold_secs
        } else {
            0.0
        }
    }

    /// The latency at quantile `q` (0 with no samples), microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q)
        }
    }

    /// Add another worker's results to these.
    pub fn merge(&mut self, other: &Report) {
        self.conns_requested += other.conns_requested;
        self.conns_open += other.conns_open;
        let (a, b) = (&mut self.connect_errors, &other.connect_errors);
        a.refused += b.refused;
        a.timeout += b.timeout;
        a.reset += b.reset;
        a.other += b.other;
        if self.first_error.is_none() {
            self.first_error = other.first_error.clone();
        }
        self.connect_secs = self.connect_secs.max(other.connect_secs);
        self.closed_by_peer += other.closed_by_peer;
        self.still_open_at_end += other.still_open_at_end;
        self.active += other.active;
        self.round_trips += other.round_trips;
        self.hold_secs = self.hold_secs.max(other.hold_secs);
        self.mismatches += other.mismatches;
        self.unanswered += other.unanswered;
        if self.interrupted.is_none() {
            self.interrupted = other.interrupted.clone();
        }
        self.client_rss_kb += other.client_rss_kb;
        let largest = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.client_rss_bytes_per_conn = largest(
            self.client_rss_bytes_per_conn,
            other.client_rss_bytes_per_conn,
        );
        self.client_anon_bytes_per_conn = largest(
            self.client_anon_bytes_per_conn,
            other.client_anon_bytes_per_conn,
        );
        // Hosts (merged logs) each name their own addresses: keep every distinct one.
        match (&mut self.source_ips, &other.source_ips) {
            (None, theirs) => {
                self.source_ips = theirs.clone();
                self.source_ips_automatic = other.source_ips_automatic;
            }
            (Some(ours), Some(theirs)) if !ours.split(", ").any(|s| s == theirs) => {
                ours.push_str(", ");
                ours.push_str(theirs);
            }
            _ => {}
        }
        self.pacing_cuts += other.pacing_cuts;
        self.stalled_connects += other.stalled_connects;
        self.pacing_rate = match (self.pacing_rate, other.pacing_rate) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.pacing_window += other.pacing_window;
        self.segments.extend(other.segments.iter().cloned());
        self.start_at = self.start_at.or(other.start_at);
        self.hold_began = match (self.hold_began, other.hold_began) {
            (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
            (a, b) => a.or(b),
        };
        // Interval i of every process is the same window (their holds began together).
        for (i, theirs) in other.intervals.iter().enumerate() {
            match self.intervals.get_mut(i) {
                Some(ours) => {
                    if let Err(e) = add_interval(ours, theirs) {
                        log::warn!("interval {i} not merged: {e}");
                    }
                }
                None => self.intervals.push(theirs.clone()),
            }
        }
        let _ = self.latency.add(&other.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_merge() {
        let mut a = Report {
            conns_requested: 10,
            conns_open: 9,
            round_trips: 3,
            hold_secs: 1.0,
            ..Report::default()
        };
        a.connect_errors.refused = 1;
        for us in [100, 200, 300] {
            record_us(&mut a.latency, us);
        }
        let b = Report::from_json(&a.to_json(true)).expect("parse");
        assert_eq!(b.conns_open, 9);
        assert_eq!(b.latency.len(), 3);
        a.merge(&b);
        assert_eq!(a.conns_requested, 20);
        assert_eq!(a.connect_errors.refused, 2);
        assert_eq!(a.latency.len(), 6);
        assert_eq!(a.to_json(false)["round_trips"], 6);
    }
}
