//! A `Report` as JSON: the object `--json` prints, and the line a worker sends its
//! parent (with the histogram's buckets and the hold's intervals, so nothing is lost).
//!
//! Fields added later are optional when read back, so a parent can read what a worker of
//! the same build sends and `stress merge` can read logs of older runs.

use serde_json::{json, Value};

use crate::apps::stress::hdrlog::Interval;
use crate::apps::stress::report::{new_histogram, ConnectErrors, Report, MAX_US};

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Report {
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
            "client_anon_bytes_per_conn": self.client_anon_bytes_per_conn.map(round3),
            "server_rss_bytes_per_conn": self.server_rss_bytes_per_conn.map(round3),
            "server_anon_bytes_per_conn": self.server_anon_bytes_per_conn.map(round3),
            "source_ips": self.source_ips,
            "source_ips_automatic": self.source_ips_automatic,
            "pacing": {
                "cuts": self.pacing_cuts,
                "stalled_connects": self.stalled_connects,
                "rate": self.pacing_rate.map(round3),
                "window": self.pacing_window,
            },
        });
        if !self.segments.is_empty() {
            v["segments"] = json!(self.segments);
        }
        v["start_at"] = json!(self.start_at);
        v["hold_began"] = json!(self.hold_began.map(|(a, b)| [a, b]));
        if buckets {
            v["intervals"] = self
                .intervals
                .iter()
                .map(|i| json!({"start": i.start, "secs": i.secs, "hist": i.encoded}))
                .collect();
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
        let no_buckets = Vec::new();
        let buckets = match v.get("latency_buckets") {
            Some(b) => b.as_array()?,
            None => &no_buckets, // a log's report line: the intervals hold the latency
        };
        for pair in buckets {
            let value = pair.get(0).and_then(Value::as_u64)?;
            let count = pair.get(1).and_then(Value::as_u64)?;
            let _ = latency.record_n(value.clamp(1, MAX_US), count);
        }
        let mut intervals = Vec::new();
        for i in v
            .get("intervals")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            intervals.push(Interval {
                start: i.get("start")?.as_f64()?,
                secs: i.get("secs")?.as_f64()?,
                encoded: i.get("hist")?.as_str()?.to_string(),
            });
        }
        let hold_began = v
            .get("hold_began")
            .and_then(Value::as_array)
            .and_then(|a| Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?)));
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
            client_anon_bytes_per_conn: f("client_anon_bytes_per_conn"),
            server_rss_bytes_per_conn: f("server_rss_bytes_per_conn"),
            server_anon_bytes_per_conn: f("server_anon_bytes_per_conn"),
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
            segments: v
                .get("segments")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            start_at: v.get("start_at").and_then(Value::as_f64),
            hold_began,
            intervals,
            latency,
        })
    }
}
