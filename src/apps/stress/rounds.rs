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
//! *intended* send times (an `Instant`, nanoseconds), and latency is measured from the
//! intended time, so a stalled server shows up as high latency instead of as fewer,
//! fast samples (coordinated omission). Every time here is read with `Instant::now()`,
//! never the loop's millisecond clock.
//!
//! The loop's timers, though, have millisecond resolution, and a timer that fires late
//! would add *its* lateness to every sample: aimed at the intended time, a deadline
//! fires up to a millisecond or two after it, and a 100 µs round trip was reported as
//! 1,080 µs. So the deadline is aimed a little *before* the intended time
//! (`wait_before_send`), and a request leaves when it is due or at most `EARLY_SLACK`
//! ahead of it. A round is timed from whichever came first, the intended time or the
//! real send (`ActiveProbe::from`): a request that left early is timed from when it
//! left (exactly its round trip, never less), one that left late — because the server
//! had not answered the previous one yet — from when it should have left. The schedule
//! itself advances from intended times, not send times, so leaving early never changes
//! the rate, and no sample can be negative.

use std::time::{Duration, Instant};

use mio::Token;

use crate::apps::stress::plan::ProbeKind;
use crate::apps::stress::probe::{Phase, ProbeState, Stress};
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
    /// With `--rate-limit`, where active connection `i`'s schedule starts, after the
    /// first one's: spread over one period, so that the total rate is even (one request
    /// every 1/rate seconds) rather than a burst of one request per connection at once,
    /// which would queue them behind each other and time the queue.
    pub(super) fn stagger(&self, i: usize) -> Duration {
        match self.plan.rate_limit {
            Some(total_rate) => Duration::from_secs_f64(i as f64 / total_rate.max(1e-3)),
            None => Duration::ZERO,
        }
    }

    /// An active connection starts its round trips at `first` (at the hold's start, or on
    /// opening as the replacement of one the target closed during the hold).
    pub(super) fn begin_probing(
        &mut self,
        ctx: &mut Ctx<ProbeState>,
        token: Token,
        first: Instant,
    ) {
        if let Some(probe) = self.probe_mut(ctx, token) {
            probe.intended = first;
        }
        self.send_when_due(ctx, token);
    }

    /// The round-trip state of an active connection (None: idle, or gone).
    pub(super) fn probe(&self, ctx: &Ctx<ProbeState>, token: Token) -> Option<&ActiveProbe> {
        let key = ctx.state(token)?.probe()?;
        self.probes.get(key)
    }

    /// The round-trip state of an active connection, to change.
    pub(super) fn probe_mut(
        &mut self,
        ctx: &Ctx<ProbeState>,
        token: Token,
    ) -> Option<&mut ActiveProbe> {
        let key = ctx.state(token)?.probe()?;
        self.probes.get_mut(key)
    }

    /// Send the current round's request on an active connection.
    pub(super) fn send_round(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let Some(key) = ctx.state(token).and_then(|s| s.probe()) else {
            return;
        };
        let Some(probe) = self.probes.get_mut(key) else {
            return;
        };
        probe.in_flight = true;
        probe.from = timed_from(probe.intended, Instant::now());
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

    /// The connection's deadline came up during the hold: send the scheduled request if
    /// it is due (or nearly), else wait again for the rest of the time.
    pub(super) fn send_when_due(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let Some(probe) = self.probe(ctx, token) else {
            return;
        };
        match wait_before_send(probe.intended, Instant::now()) {
            Some(wait) => ctx.set_deadline(token, wait),
            None => self.send_round(ctx, token),
        }
    }

    /// A round trip finished: record it, and send the next one (now or on schedule).
    pub(super) fn complete_round(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        let now = Instant::now();
        let holding = self.phase == Phase::Holding;
        let measuring = holding || self.phase == Phase::Draining;
        let Some(probe) = self.probe_mut(ctx, token) else {
            return;
        };
        probe.in_flight = false;
        probe.seq += 1;
        let (from, bad) = (probe.from, probe.bad);
        if measuring {
            let us = now.saturating_duration_since(from).as_micros() as u64;
            self.record(us);
            self.report.round_trips += 1;
            if bad {
                self.report.mismatches += 1;
            }
        }
        if !holding {
            self.end_if_drained(ctx);
            return;
        }
        let (rate_limit, active) = (self.plan.rate_limit, self.plan.active);
        let Some(probe) = self.probe_mut(ctx, token) else {
            return;
        };
        match rate_limit {
            None => probe.intended = now,
            Some(total_rate) => {
                let per_conn = total_rate / active.max(1) as f64;
                probe.intended += Duration::from_secs_f64(1.0 / per_conn.max(1e-3));
                if let Some(wait) = wait_before_send(probe.intended, now) {
                    // Not yet: the connection's deadline sends it (`send_when_due`).
                    ctx.set_deadline(token, wait);
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
        if self.phase == Phase::Done {
            // The books are closed (the loop stops at the end of this turn): replies
            // still arriving, after an interrupt, are nobody's mismatch.
            return data.len();
        }
        let size = self.plan.size;
        let kind = self.plan.probe;
        let Some(key) = ctx.state(token).and_then(|s| s.probe()) else {
            return data.len(); // idle connections ignore whatever the target sends
        };
        let Some(probe) = self.probes.get_mut(key) else {
            return data.len();
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

/// How far ahead of its intended time a scheduled request may leave: two ticks of the
/// loop's millisecond timers (one for the poll's rounding, one for a turn clock that may
/// be a millisecond old). Leaving early costs no accuracy (the round is then timed from
/// the real send); leaving late would add the timer's lateness to the sample.
pub const EARLY_SLACK: Duration = Duration::from_millis(2);

/// For a request intended at `intended`, seen at `now`: `None` to send it now (it is due,
/// or due within `EARLY_SLACK`), or how long to wait for the connection's deadline. The
/// wait is whole milliseconds, rounded *down* and `EARLY_SLACK` less, because a deadline
/// may fire up to that much after its time: it then still fires before `intended`, and
/// `send_when_due` asks again.
pub fn wait_before_send(intended: Instant, now: Instant) -> Option<Duration> {
    let ahead = intended.saturating_duration_since(now);
    if ahead <= EARLY_SLACK {
        return None;
    }
    let slack = EARLY_SLACK.as_millis() as u64;
    let ms = (ahead.as_millis() as u64).saturating_sub(slack).max(1);
    Some(Duration::from_millis(ms))
}

/// What a round's latency is counted from: the intended send time, or the real send when
/// that came first (a request that left a little early). Never after the send, so the
/// reply, which comes after the send, can never give a negative latency.
pub fn timed_from(intended: Instant, sent: Instant) -> Instant {
    intended.min(sent)
}

/// The echo payload of round `seq`: printable, and different every round.
fn fill_payload(buf: &mut [u8], seq: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = b'a' + ((seq as usize + i) % 26) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_sends_never_wait_past_their_intended_time() {
        let now = Instant::now();
        let us = Duration::from_micros;
        // Due, overdue, or due within a tick: now.
        assert_eq!(wait_before_send(now, now), None);
        assert_eq!(wait_before_send(now, now + us(5_000)), None);
        assert_eq!(wait_before_send(now + us(1_900), now), None);
        // Later: wake before it, by the timer's possible lateness, whatever the clock.
        for ahead_us in [2_001, 3_999, 4_000, 10_700, 250_000] {
            let wait = wait_before_send(now + us(ahead_us), now).expect("should wait");
            assert!(wait >= Duration::from_millis(1), "{ahead_us}: {wait:?}");
            if ahead_us >= 3_000 {
                assert!(wait + EARLY_SLACK <= us(ahead_us), "{ahead_us}: {wait:?}");
            }
        }
    }

    #[test]
    fn a_round_is_timed_from_the_earlier_of_intended_and_sent() {
        let t = Instant::now();
        let us = Duration::from_micros;
        // Left 400 µs early: timed from the real send, so exactly the round trip.
        let from = timed_from(t + us(400), t);
        assert_eq!((t + us(100)).duration_since(from), us(100));
        // Left 3 ms late (the previous reply came late): timed from the schedule.
        let from = timed_from(t, t + us(3_000));
        assert_eq!((t + us(3_100)).duration_since(from), us(3_100));
    }
}
