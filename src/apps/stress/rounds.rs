//! Round trips on the active connections: sending, checking replies, timing.
//!
//! Each active connection does one round at a time: send a request (`--size` echo bytes,
//! different every round, or an HTTP/1.1 GET), read the whole reply, check it, record
//! the time into the HDR histogram, send the next. A reply is checked as it arrives,
//! byte by byte for echo (so stale or foreign bytes count as a mismatch) and through the
//! incremental response parser for HTTP; bytes that arrive with no request outstanding
//! are a mismatch too.
//!
//! Latency with `--rate-limit` follows wrk2: each active connection has a schedule of
//! *intended* send times, and latency is measured from the intended time, so a stalled
//! server shows up as high latency instead of as fewer, fast samples (coordinated
//! omission). The loop's timers have millisecond resolution and may fire a little
//! early, so a round is timed from whichever came first, the intended time or the send.

use std::time::{Duration, Instant};

use mio::Token;

use crate::apps::stress::plan::ProbeKind;
use crate::apps::stress::probe::{Phase, ProbeState, Stress};
use crate::apps::stress::report::record_us;
use crate::core::{CloseReason, Ctx};
use crate::proto::http_probe::HttpResponse;

/// A measuring connection's progress through its current round trip.
#[derive(Debug)]
pub(super) struct ActiveProbe {
    /// Round number (also varies the echo payload, so stale bytes are caught).
    pub(super) seq: u64,
    /// When this round was meant to be sent: on the `--rate-limit` schedule, or else
    /// when the previous reply came.
    pub(super) intended: Instant,
    /// What this round's latency is counted from: `intended`, or the real send time
    /// when a timer sent it a little before `intended`.
    pub(super) from: Instant,
    /// Bytes of the reply seen so far (echo), or the response parser (http).
    pub(super) received: usize,
    /// The HTTP response being read (`--probe http`).
    pub(super) http: HttpResponse,
    /// A reply is outstanding.
    pub(super) in_flight: bool,
    /// This round's reply differed from what was sent.
    pub(super) bad: bool,
}

impl ActiveProbe {
    /// A probe for a new connection, due at once.
    pub(super) fn new(now: Instant) -> ActiveProbe {
        ActiveProbe {
            seq: 0,
            intended: now,
            from: now,
            received: 0,
            http: HttpResponse::default(),
            in_flight: false,
            bad: false,
        }
    }
}

impl Stress {
    /// An active connection starts its round trips (at the hold's start, or on opening
    /// as the replacement of one the target closed during the hold).
    pub(super) fn begin_probing(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, now: Instant) {
        if let Some(Some(probe)) = ctx.state_mut(token).map(|s| s.active.as_mut()) {
            probe.intended = now;
        }
        self.send_round(ctx, token);
    }

    /// Send the current round's request on an active connection.
    pub(super) fn send_round(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let Some(probe) = ctx.state_mut(token).and_then(|s| s.active.as_mut()) else {
            return;
        };
        probe.in_flight = true;
        probe.from = probe.intended.min(Instant::now());
        probe.received = 0;
        probe.bad = false;
        probe.http = HttpResponse::default();
        match self.plan.probe {
            ProbeKind::Echo => {
                fill_payload(&mut self.payload, probe.seq);
                ctx.send(token, &self.payload);
            }
            ProbeKind::Http => {
                ctx.send(token, &self.plan.http_request);
            }
            ProbeKind::None => probe.in_flight = false,
        }
    }

    /// A round trip finished: record it, and send the next one (now or on schedule).
    pub(super) fn complete_round(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let now = Instant::now();
        let holding = self.phase == Phase::Holding;
        let measuring = holding || self.phase == Phase::Draining;
        let Some(probe) = ctx.state_mut(token).and_then(|s| s.active.as_mut()) else {
            return;
        };
        probe.in_flight = false;
        if measuring {
            let us = now.saturating_duration_since(probe.from).as_micros() as u64;
            record_us(&mut self.report.latency, us);
            self.report.round_trips += 1;
            if probe.bad {
                self.report.mismatches += 1;
            }
        }
        probe.seq += 1;
        if !holding {
            self.end_if_drained(ctx);
            return;
        }
        match self.plan.rate_limit {
            None => probe.intended = now,
            Some(total_rate) => {
                let per_conn = total_rate / self.plan.active.max(1) as f64;
                probe.intended += Duration::from_secs_f64(1.0 / per_conn.max(1e-3));
                if probe.intended > now {
                    // Not yet: the connection's deadline sends it (`on_deadline`).
                    let wait = probe.intended - now;
                    ctx.set_deadline(token, ceil_ms(wait));
                    return;
                }
            }
        }
        self.send_round(ctx, token);
    }

    /// Bytes arrived on a connection: check them against the outstanding request.
    pub(super) fn on_reply(
        &mut self,
        ctx: &mut Ctx<ProbeState>,
        token: Token,
        data: &mut [u8],
    ) -> usize {
        let size = self.plan.size;
        let kind = self.plan.probe;
        let Some(probe) = ctx.state_mut(token).and_then(|s| s.active.as_mut()) else {
            return data.len(); // idle connections ignore whatever the target sends
        };
        if !probe.in_flight {
            probe.bad = true;
            self.report.mismatches += 1;
            return data.len();
        }
        match kind {
            ProbeKind::Echo => {
                let seq = probe.seq as usize;
                for (i, &b) in data.iter().enumerate() {
                    let at = probe.received + i;
                    if at >= size || b != b'a' + ((seq + at) % 26) as u8 {
                        probe.bad = true;
                        break;
                    }
                }
                probe.received += data.len();
                if probe.received >= size {
                    self.complete_round(ctx, token);
                }
                data.len()
            }
            ProbeKind::Http => match probe.http.feed(data) {
                Ok((used, done)) => {
                    if done {
                        probe.bad |= !probe.http.ok_status();
                        self.complete_round(ctx, token);
                    }
                    used
                }
                Err(msg) => {
                    if !self.http_error_logged {
                        self.http_error_logged = true;
                        log::warn!(
                            "--probe http: {msg} (connection closed; counted as a mismatch)"
                        );
                    }
                    probe.bad = true;
                    self.report.mismatches += 1;
                    ctx.close(token, CloseReason::Done);
                    data.len()
                }
            },
            ProbeKind::None => data.len(),
        }
    }
}

/// `d` rounded up to the loop's whole milliseconds.
fn ceil_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_micros().div_ceil(1000) as u64)
}

/// The echo payload of round `seq`: printable, and different every round.
fn fill_payload(buf: &mut [u8], seq: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = b'a' + ((seq as usize + i) % 26) as u8;
    }
}
