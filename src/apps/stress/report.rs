//! `Report`: what one stress run measured, mergeable across worker processes.
//!
//! Latency goes into an HDR histogram (microseconds, 3 significant digits), so p99 and
//! p99.9 are exact to 0.1 % whatever the number of round trips, in constant memory.
//! Workers send their report to the parent as one JSON line that includes the
//! histogram's non-empty buckets; the parent adds the buckets and the counters up.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Highest latency the histogram tracks (60 s in microseconds); above is clamped.
const MAX_US: u64 = 60_000_000;

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
    /// Target's RSS growth per connection opened, when `--server-pid` was given.
    pub server_rss_bytes_per_conn: Option<f64>,
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
            server_rss_bytes_per_conn: None,
            source_ips: None,
            source_ips_automatic: false,
            pacing_cuts: 0,
            stalled_connects: 0,
            pacing_rate: None,
            pacing_window: 0,
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

    fn quantile(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q)
        }
    }

    /// The JSON object printed by `--json` (and, with `buckets`, sent by workers).
    pub fn to_json(&self, buckets: bool) -> Value {
        let e = &self.connect_errors;
        let mut v = json!({
            "conns_requested": self.conns_requested,
            "conns_open": self.conns_open,
            "connect_errors": {
                "refused": e.refused, "timeout": e.timeout, "reset": e.reset, "other": e.other,
                "total": e.total(),
            },
            "first_error": self.first_error,
            "connect_secs": round3(self.connect_secs),
            "closed_by_peer": self.closed_by_peer,
            "still_open_at_end": self.still_open_at_end,
            "active": self.active,
            "round_trips": self.round_trips,
            "hold_secs": round3(self.hold_secs),
            "rps": round3(self.rps()),
            "p50_us": self.quantile(0.50),
            "p90_us": self.quantile(0.90),
            "p99_us": self.quantile(0.99),
            "p999_us": self.quantile(0.999),
            "max_us": if self.latency.is_empty() { 0 } else { self.latency.max() },
            "mismatches": self.mismatches,
            "unanswered": self.unanswered,
            "interrupted": self.interrupted,
            "client_rss_kb": self.client_rss_kb,
            "client_rss_bytes_per_conn": self.client_rss_bytes_per_conn.map(round3),
            "server_rss_bytes_per_conn": self.server_rss_bytes_per_conn.map(round3),
            "source_ips": self.source_ips,
            "source_ips_automatic": self.source_ips_automatic,
            "pacing": {
                "cuts": self.pacing_cuts,
                "stalled_connects": self.stalled_connects,
                "rate": self.pacing_rate.map(round3),
                "window": self.pacing_window,
            },
        });
        if buckets {
            let pairs: Vec<[u64; 2]> = self
                .latency
                .iter_recorded()
                .map(|b| [b.value_iterated_to(), b.count_at_value()])
                .collect();
            v["latency_buckets"] = json!(pairs);
        }
        v
    }

    /// Read a worker's JSON report back.
    pub fn from_json(v: &Value) -> Option<Report> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let e = v.get("connect_errors")?;
        let pacing = |k: &str| v.get("pacing").and_then(|p| p.get(k));
        let en = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
        let mut latency = new_histogram();
        for pair in v.get("latency_buckets")?.as_array()? {
            let value = pair.get(0).and_then(Value::as_u64)?;
            let count = pair.get(1).and_then(Value::as_u64)?;
            let _ = latency.record_n(value.clamp(1, MAX_US), count);
        }
        Some(Report {
            conns_requested: n("conns_requested")?,
            conns_open: n("conns_open")?,
            connect_errors: ConnectErrors {
                refused: en("refused"),
                timeout: en("timeout"),
                reset: en("reset"),
                other: en("other"),
            },
            first_error: v
                .get("first_error")
                .and_then(Value::as_str)
                .map(String::from),
            connect_secs: f("connect_secs")?,
            closed_by_peer: n("closed_by_peer")?,
            still_open_at_end: n("still_open_at_end")?,
            active: n("active")?,
            round_trips: n("round_trips")?,
            hold_secs: f("hold_secs")?,
            mismatches: n("mismatches")?,
            unanswered: n("unanswered").unwrap_or(0),
            interrupted: v
                .get("interrupted")
                .and_then(Value::as_str)
                .map(String::from),
            client_rss_kb: n("client_rss_kb")?,
            client_rss_bytes_per_conn: f("client_rss_bytes_per_conn"),
            server_rss_bytes_per_conn: f("server_rss_bytes_per_conn"),
            source_ips: v
                .get("source_ips")
                .and_then(Value::as_str)
                .map(String::from),
            source_ips_automatic: v
                .get("source_ips_automatic")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            pacing_cuts: pacing("cuts").and_then(Value::as_u64).unwrap_or(0),
            stalled_connects: pacing("stalled_connects")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            pacing_rate: pacing("rate").and_then(Value::as_f64),
            pacing_window: pacing("window").and_then(Value::as_u64).unwrap_or(0),
            latency,
        })
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
        self.client_rss_bytes_per_conn = match (
            self.client_rss_bytes_per_conn,
            other.client_rss_bytes_per_conn,
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.source_ips.is_none() {
            self.source_ips = other.source_ips.clone();
            self.source_ips_automatic = other.source_ips_automatic;
        }
        self.pacing_cuts += other.pacing_cuts;
        self.stalled_connects += other.stalled_connects;
        self.pacing_rate = match (self.pacing_rate, other.pacing_rate) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.pacing_window += other.pacing_window;
        let _ = self.latency.add(&other.latency);
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let e = &self.connect_errors;
        let mut s = String::new();
        if let Some(signal) = &self.interrupted {
            s.push_str(&format!(
                "INTERRUPTED by {signal}: what follows is what was measured until then\n"
            ));
        }
        s.push_str(&format!(
            "connections: {} of {} open after {:.2}s; connect errors {} (refused {}, timeout {}, reset {}, other {})\n",
            self.conns_open, self.conns_requested, self.connect_secs, e.total(), e.refused,
            e.timeout, e.reset, e.other
        ));
        if let Some(err) = &self.first_error {
            s.push_str(&format!("first connect error: {err}\n"));
        }
        if let Some(ips) = &self.source_ips {
            let how = if self.source_ips_automatic {
                " (chosen automatically: one address's ports would not do)"
            } else {
                ""
            };
            s.push_str(&format!("source addresses: {ips}{how}\n"));
        }
        if self.pacing_cuts > 0 || self.stalled_connects > 0 {
            s.push_str(&format!(
                "pacing: slowed down {} times (stalled connects {}); ended at {} connects/s, \
                 {} in flight at most\n",
                self.pacing_cuts,
                self.stalled_connects,
                self.pacing_rate
                    .map_or_else(|| "unlimited".to_string(), |r| format!("{r:.0}")),
                self.pacing_window
            ));
        }
        s.push_str(&format!(
            "hold: {:.2}s; closed by peer {}; still open at end {}\n",
            self.hold_secs, self.closed_by_peer, self.still_open_at_end
        ));
        if self.active > 0 {
            s.push_str(&format!(
                "active: {} connections, {} round trips, {:.0}/s, mismatches {}, unanswered {}\n\
                 latency us: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
                self.active,
                self.round_trips,
                self.rps(),
                self.mismatches,
                self.unanswered,
                self.quantile(0.5),
                self.quantile(0.9),
                self.quantile(0.99),
                self.quantile(0.999),
                if self.latency.is_empty() {
                    0
                } else {
                    self.latency.max()
                },
            ));
        }
        s.push_str(&format!("client RSS: {} KiB", self.client_rss_kb));
        if let Some(per) = self.client_rss_bytes_per_conn {
            s.push_str(&format!(" (grew {per:.0} bytes per connection)"));
        }
        s.push('\n');
        if let Some(per) = self.server_rss_bytes_per_conn {
            s.push_str(&format!(
                "server RSS growth: {per:.1} bytes per connection\n"
            ));
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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
