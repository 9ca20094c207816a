//! A `Report` for people: a few lines, the figures that matter first.

use crate::apps::stress::report::Report;

impl Report {
    /// The report for people.
    pub fn human(&self) -> String {
        let e = &self.connect_errors;
        let mut s = String::new();
        if !self.segments.is_empty() {
            s.push_str(&format!("segments: {}", self.segments.join(" ")));
            if let Some((first, last)) = self.hold_began.filter(|_| self.segments.len() > 1) {
                s.push_str(&format!(
                    " (holds began within {:.0} ms)",
                    (last - first) * 1000.0
                ));
            }
            s.push('\n');
        }
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
            s.push_str(&format!(" (grew {per:.0} bytes per connection"));
            if let Some(anon) = self.client_anon_bytes_per_conn {
                s.push_str(&format!("; its own memory, without shared code: {anon:.0}"));
            }
            s.push(')');
        }
        s.push('\n');
        if let Some(per) = self.server_rss_bytes_per_conn {
            s.push_str(&format!("server RSS growth: {per:.1} bytes per connection"));
            if let Some(anon) = self.server_anon_bytes_per_conn {
                s.push_str(&format!(
                    " (its own memory, without shared code: {anon:.1})"
                ));
            }
            s.push('\n');
        }
        s
    }
}
