//! `Timings`: when each phase of a transfer ended, for `--json` (`dns_us`, `connect_us`,
//! `tls_us`, `ttfb_us`, `total_us`).
//!
//! The figures mean what curl's `-w` variables `time_namelookup`, `time_connect`,
//! `time_appconnect`, `time_starttransfer` and `time_total` mean: each is the time from
//! the transfer's start (its admission into the `--concurrency` window) to the end of
//! that phase, in microseconds, for the request that gave the result (after redirects
//! and retries, the last one). A phase that did not happen for that request is reported
//! as the previous phase's figure, as curl does for a reused connection: a connection
//! taken from the pool "connected" when it was taken; `tls_us` is null for `http://`.
//!
//! This is measurement, not scheduling: each mark reads `Instant::now()` where the event
//! is handled (the loop's cached turn time is only millisecond-fresh, and a loopback
//! transfer takes well under a millisecond). Nothing is ever scheduled from these
//! values; the loop's timers do all the waiting.

use std::time::{Duration, Instant};

/// Phase ends of the current request, as instants (None: not reached yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct Marks {
    /// The host's addresses were known (resolved, cached, `--resolve`, or a literal).
    dns: Option<Instant>,
    /// The TCP connection was up (or an idle one taken from the pool).
    connect: Option<Instant>,
    /// The TLS handshake was done (https only).
    tls: Option<Instant>,
    /// The first byte of the response arrived.
    first_byte: Option<Instant>,
}

impl Marks {
    /// The addresses are known for the request about to be made: a new request starts
    /// here, so the later marks of an earlier request (redirect, retry) are dropped.
    pub fn dns_done(&mut self) {
        *self = Marks {
            dns: Some(Instant::now()),
            ..Marks::default()
        };
    }

    /// A new connection completed its TCP handshake.
    pub fn connected(&mut self) {
        self.connect = Some(Instant::now());
        self.tls = None;
        self.first_byte = None;
    }

    /// An idle keep-alive connection was taken: connected (and, for https, its TLS
    /// session ready) at once.
    pub fn reused(&mut self, tls: bool) {
        let now = Instant::now();
        self.connect = Some(now);
        self.tls = tls.then_some(now);
        self.first_byte = None;
    }

    /// The TLS handshake finished (the first time this is seen for the connection).
    pub fn tls_done(&mut self) {
        if self.tls.is_none() {
            self.tls = Some(Instant::now());
        }
    }

    /// Response bytes arrived: the first of them ends the wait for the response.
    pub fn first_byte(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
    }

    /// A response is being awaited again on a connection (the next request on it).
    pub fn new_response(&mut self) {
        self.first_byte = None;
    }

    /// The figures, relative to `started`, once the transfer is over after `total`.
    pub fn report(&self, started: Instant, https: bool, total: Duration) -> Timings {
        let since = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(started));
        let dns = since(self.dns).unwrap_or(total);
        let connect = since(self.connect).unwrap_or(dns).max(dns);
        let tls = https.then(|| since(self.tls).unwrap_or(connect).max(connect));
        let ttfb = since(self.first_byte)
            .unwrap_or(total)
            .max(tls.unwrap_or(connect));
        Timings {
            dns,
            connect,
            tls,
            ttfb,
            total: total.max(ttfb),
        }
    }
}

/// One result's phase figures, each from the transfer's start (curl's `-w` meaning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Until the addresses were known (`time_namelookup`).
    pub dns: Duration,
    /// Until the TCP connection was up (`time_connect`).
    pub connect: Duration,
    /// Until the TLS handshake was done (`time_appconnect`); None for http.
    pub tls: Option<Duration>,
    /// Until the first response byte (`time_starttransfer`).
    pub ttfb: Duration,
    /// Until the response was complete, or the transfer failed (`time_total`).
    pub total: Duration,
}

impl Timings {
    /// The JSON fields, without braces: `"dns_us":..,"connect_us":..,...`.
    pub fn json_fields(&self) -> String {
        let us = |d: Duration| d.as_micros().to_string();
        format!(
            "\"dns_us\":{},\"connect_us\":{},\"tls_us\":{},\"ttfb_us\":{},\"total_us\":{}",
            us(self.dns),
            us(self.connect),
            self.tls.map_or_else(|| "null".to_string(), us),
            us(self.ttfb),
            us(self.total),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_never_go_backwards_and_fill_forward() {
        let started = Instant::now();
        let mut m = Marks::default();
        m.dns_done();
        m.reused(false);
        let t = m.report(started, false, Duration::from_micros(900));
        assert!(t.dns <= t.connect && t.connect <= t.ttfb && t.ttfb <= t.total);
        assert_eq!(t.tls, None);
        assert!(t.json_fields().contains("\"tls_us\":null"));

        // Nothing reached (a refused connect): every phase is the total.
        let t = Marks::default().report(started, true, Duration::from_micros(50));
        assert!(t
            .json_fields()
            .contains("\"dns_us\":50,\"connect_us\":50,\"tls_us\":50"));
    }
}
