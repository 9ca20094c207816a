//! Metrics: the loop's counters in Prometheus' text format at `GET /metrics`, served by
//! the same loop as the service (`netloop serve --metrics ADDR`).
//!
//! One loop, two protocols. `WithMetrics<H>` wraps the service's handler `H` and keeps
//! its per-connection `State`: a connection accepted by the metrics listener (the loop
//! says which listener accepted a connection: `Ctx::listener_of`) is answered here, as
//! HTTP/1.1 with one response per connection (`Connection: close`); every other
//! connection, and every datagram, timer, signal and wake-up, goes to `H` unchanged.
//! The response is built from `Ctx::stats` at the moment the request is complete, in
//! the loop thread, so no counter is shared with another thread and nothing is locked.
//!
//! The counts are the loop's: they include the scrapes themselves (a scrape is a
//! connection the loop accepts, reads from and writes to like any other). The names
//! follow Prometheus' conventions: a `netloop_` prefix, the unit in the name
//! (`_bytes`, `_seconds`), `_total` on counters, base units (seconds, not
//! microseconds). The two histograms need `LoopConfig::measure_turns` (two clock
//! reads per turn); without it they are left out.
//!
//! One caveat: a handler that walks over every connection (`Ctx::tokens`, to
//! broadcast) would see the metrics connections too. The services of `netloop serve`
//! answer each connection on its own, which is what this wrapper is for.
//!
//! With `--workers`, each worker is its own loop with its own counters; `netloop serve`
//! refuses `--metrics` there rather than show one worker's share as the whole.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use mio::Token;

use crate::core::stats::Histogram;
use crate::core::{CloseReason, Closed, Ctx, Handler, SignalAction, Stats};

/// Longest request head accepted (a scraper sends a few hundred bytes).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a metrics connection may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The Content-Type of Prometheus' text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A service handler `H`, plus `/metrics` for the connections of one listener.
#[derive(Debug)]
pub struct WithMetrics<H> {
    /// The service.
    pub inner: H,
    /// The metrics listener's number (by the order listeners were added to the loop).
    listener: usize,
    /// Open metrics connections (their slots). Kept here because after a connection
    /// is gone the loop can no longer say which listener accepted it.
    conns: HashSet<usize>,
}

impl<H> WithMetrics<H> {
    /// Wrap `inner`; connections accepted by listener number `listener` get metrics.
    pub fn new(inner: H, listener: usize) -> WithMetrics<H> {
        WithMetrics {
            inner,
            listener,
            conns: HashSet::new(),
        }
    }

    fn is_metrics(&self, token: Token) -> bool {
        self.conns.contains(&token.0)
    }
}

/// Answer one HTTP request from a metrics connection; returns the bytes consumed.
fn answer<S>(ctx: &mut Ctx<S>, token: Token, data: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let (status, body, head_only) = match request.parse(data) {
        Ok(httparse::Status::Partial) if data.len() <= MAX_REQUEST_HEAD => return 0,
        Ok(httparse::Status::Partial) => {
            ("431 Request Header Fields Too Large", String::new(), false)
        }
        Err(_) => ("400 Bad Request", String::new(), false),
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            match (request.method.unwrap_or(""), path) {
                (method @ ("GET" | "HEAD"), "/metrics") => {
                    let text = exposition(ctx.stats(), ctx.len());
                    ("200 OK", text, method == "HEAD")
                }
                ("GET" | "HEAD", _) => (
                    "404 Not Found",
                    "netloop serves its metrics at /metrics\n".to_string(),
                    false,
                ),
                _ => ("405 Method Not Allowed", String::new(), false),
            }
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let body = if head_only { "" } else { body.as_str() };
    ctx.send_parts(token, &[head.as_bytes(), body.as_bytes()]);
    ctx.close_when_flushed(token);
    data.len()
}

impl<H: Handler> Handler for WithMetrics<H> {
    type State = H::State;

    fn on_open(&mut self, ctx: &mut Ctx<H::State>, token: Token) {
        if ctx.listener_of(token) == Some(self.listener) {
            self.conns.insert(token.0);
            ctx.set_deadline(token, REQUEST_TIMEOUT);
        } else {
            self.inner.on_open(ctx, token);
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<H::State>, token: Token, data: &mut [u8]) -> usize {
        if self.is_metrics(token) {
            answer(ctx, token, data)
        } else {
            self.inner.on_data(ctx, token, data)
        }
    }

    fn on_burst_end(&mut self, ctx: &mut Ctx<H::State>, token: Token) {
        if !self.is_metrics(token) {
            self.inner.on_burst_end(ctx, token);
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<H::State>, token: Token) {
        if self.is_metrics(token) {
            ctx.close_when_flushed(token);
        } else {
            self.inner.on_eof(ctx, token);
        }
    }

    fn on_drained(&mut self, ctx: &mut Ctx<H::State>, token: Token) {
        if !self.is_metrics(token) {
            self.inner.on_drained(ctx, token);
        }
    }

    fn on_idle(&mut self, ctx: &mut Ctx<H::State>, token: Token) {
        if self.is_metrics(token) {
            ctx.close(token, CloseReason::IdleTimeout);
        } else {
            self.inner.on_idle(ctx, token);
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<H::State>, token: Token) {
        if self.is_metrics(token) {
            ctx.close(token, CloseReason::Timeout);
        } else {
            self.inner.on_deadline(ctx, token);
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<H::State>, key: u64) {
        self.inner.on_timer(ctx, key);
    }

    fn on_close(&mut self, ctx: &mut Ctx<H::State>, token: Token, closed: Closed<H::State>) {
        if !self.conns.remove(&token.0) {
            self.inner.on_close(ctx, token, closed);
        }
    }

    fn on_datagram(
        &mut self,
        ctx: &mut Ctx<H::State>,
        port: usize,
        from: SocketAddr,
        data: &mut [u8],
    ) {
        self.inner.on_datagram(ctx, port, from, data);
    }

    fn on_signal(&mut self, ctx: &mut Ctx<H::State>, signal: i32) -> SignalAction {
        self.inner.on_signal(ctx, signal)
    }

    fn on_wake(&mut self, ctx: &mut Ctx<H::State>) {
        self.inner.on_wake(ctx);
    }

    fn on_turn(&mut self, ctx: &mut Ctx<H::State>) {
        self.inner.on_turn(ctx);
    }
}

/// Writes metric families in the text exposition format.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A histogram; the recorded integers are divided by `per_unit` (1e6 for
    /// microseconds to seconds: a division by a power of ten prints as written).
    fn histogram(&mut self, name: &str, help: &str, h: &Histogram, per_unit: f64) {
        self.family(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            let le = *bound as f64 / per_unit;
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = h.count();
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.0, "{name}_sum {}", h.sum as f64 / per_unit);
        let _ = writeln!(self.0, "{name}_count {count}");
    }
}

/// The loop's counters and gauges in Prometheus' text format; `open` is the number of
/// open connections (`Ctx::len`).
pub fn exposition(s: &Stats, open: usize) -> String {
    let mut e = Exposition(String::with_capacity(4096));
    e.one(
        "netloop_connections_open",
        "gauge",
        "Connections open now (not counting those only lingering before close).",
        open as u64,
    );
    e.one(
        "netloop_connections_open_max",
        "gauge",
        "Most connections open at once since the start.",
        s.peak_open as u64,
    );
    e.one(
        "netloop_accepted_total",
        "counter",
        "Connections accepted from the listeners (metrics scrapes included).",
        s.accepted,
    );
    e.one(
        "netloop_connected_total",
        "counter",
        "Outbound connections that completed.",
        s.connected,
    );
    e.one(
        "netloop_rejected_total",
        "counter",
        "Connections accepted and closed at once because of --max-conns.",
        s.rejected_max_conns,
    );
    e.family(
        "netloop_closed_total",
        "counter",
        "Connections closed, by reason (peer: EOF or the service was done; limit: \
         input or queue limits and --max-conns).",
    );
    for (reason, n) in [
        ("peer", s.closed_by_peer),
        ("timeout", s.closed_by_timeout),
        ("limit", s.closed_by_limit),
        ("error", s.closed_by_error),
        ("shutdown", s.closed_by_shutdown),
    ] {
        let _ = writeln!(e.0, "netloop_closed_total{{reason=\"{reason}\"}} {n}");
    }
    e.one(
        "netloop_resets_total",
        "counter",
        "Connections closed by a reset or broken pipe (part of reason=\"error\").",
        s.resets,
    );
    e.one(
        "netloop_received_bytes_total",
        "counter",
        "Bytes read from stream connections.",
        s.bytes_in,
    );
    e.one(
        "netloop_sent_bytes_total",
        "counter",
        "Bytes written to stream connections.",
        s.bytes_out,
    );
    e.one(
        "netloop_datagrams_received_total",
        "counter",
        "UDP datagrams received.",
        s.datagrams_in,
    );
    e.one(
        "netloop_datagrams_sent_total",
        "counter",
        "UDP datagrams sent.",
        s.datagrams_out,
    );
    e.one(
        "netloop_datagrams_dropped_total",
        "counter",
        "UDP replies dropped because the socket's send buffer was full.",
        s.datagrams_dropped,
    );
    e.one(
        "netloop_paused_connections",
        "gauge",
        "Connections whose reading is paused now because their outbound queue passed \
         the high watermark (backpressure).",
        s.paused_now,
    );
    e.one(
        "netloop_queued_bytes",
        "gauge",
        "Bytes waiting in all outbound queues now.",
        s.queued_bytes,
    );
    e.one(
        "netloop_accept_pauses_total",
        "counter",
        "Times accepting paused because file descriptors ran out.",
        s.accept_pauses,
    );
    e.one(
        "netloop_loop_turns_total",
        "counter",
        "Turns of the event loop (one sleep in epoll_wait each).",
        s.turns,
    );
    if !s.turn_events.counts.is_empty() {
        e.histogram(
            "netloop_events_per_turn",
            "Readiness events returned by each wake-up of the loop.",
            &s.turn_events,
            1.0,
        );
    }
    if !s.turn_asleep_us.counts.is_empty() {
        e.histogram(
            "netloop_turn_asleep_seconds",
            "Time the loop slept in epoll_wait, per turn.",
            &s.turn_asleep_us,
            1e6,
        );
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::stats::{ASLEEP_US_BOUNDS, EVENTS_BOUNDS};

    #[test]
    fn histograms_are_cumulative_in_base_units() {
        let mut s = Stats {
            turns: 3,
            turn_events: Histogram::new(EVENTS_BOUNDS),
            turn_asleep_us: Histogram::new(ASLEEP_US_BOUNDS),
            ..Stats::default()
        };
        for (events, us) in [(0, 5), (1, 700), (3, 2_000_000)] {
            s.turn_events.observe(events);
            s.turn_asleep_us.observe(us);
        }
        let text = exposition(&s, 2);
        assert!(text.contains("netloop_connections_open 2\n"));
        assert!(text.contains("netloop_events_per_turn_bucket{le=\"0\"} 1\n"));
        assert!(text.contains("netloop_events_per_turn_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("netloop_events_per_turn_bucket{le=\"4\"} 3\n"));
        assert!(text.contains("netloop_events_per_turn_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("netloop_events_per_turn_sum 4\n"));
        assert!(text.contains("netloop_turn_asleep_seconds_bucket{le=\"0.00001\"} 1\n"));
        assert!(text.contains("netloop_turn_asleep_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("netloop_turn_asleep_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("netloop_turn_asleep_seconds_count 3\n"));
        // Without measure_turns there are no histograms.
        let plain = exposition(&Stats::default(), 0);
        assert!(!plain.contains("histogram"));
        assert!(plain.contains("netloop_closed_total{reason=\"peer\"} 0\n"));
    }
}
