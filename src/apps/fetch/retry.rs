//! `--retry N`: transient failures are tried again, after a wait that grows.
//!
//! What counts as transient is what curl's `--retry` (with `--retry-connrefused`) takes:
//! a connect that failed or timed out (every address), a connection reset or closed
//! before the response was complete, a server silent past `--idle-timeout`, and the
//! statuses 408, 429, 500, 502, 503 and 504. Anything else (a malformed response, TLS, a
//! redirect loop, DNS) is final at once. The separate rule that re-sends a request
//! once on a fresh connection when a *reused* keep-alive connection turns out to be
//! closed (`exchange.rs`) is not a `--retry` attempt: it is how keep-alive works.
//!
//! The wait before attempt n+1 is, by default, exponential backoff with jitter: 1 s,
//! 2 s, 4 s ... (at most 10 min), each drawn uniformly from its upper half, so many
//! transfers failing together do not come back together. `--retry-delay SECS` makes it
//! fixed, as in curl. A `Retry-After` header (seconds, or an HTTP date) on a retried
//! status replaces the computed wait. `--retry-max-time SECS` bounds it all: no retry
//! starts once that long has passed since the transfer started, and no wait reaches
//! past that point (so a `Retry-After: 3600` is cut short).
//!
//! The wait is a loop timer (`Ctx::timer_after`, key from `net::timer_key`); the
//! transfer keeps its place in the `--concurrency` window meanwhile, has no connection,
//! and drops what the failed attempt produced: a retried status's body is never read
//! (its connection is closed), and a partly written file is removed before the next
//! attempt writes a new one. A body already printed to stdout cannot be taken back, so
//! a transfer whose body started on stdout is not retried.

use std::time::{Duration, SystemTime};

use log::debug;

use super::fetcher::{Fetcher, Link};
use super::net::{timer_key, RETRY};
use super::output::Destination;
use super::report::secs;
use super::transfer::Phase;
use super::writer::Sink;
use crate::core::{CloseReason, Ctx, Token};
use crate::proto::http_response::Head;

/// The longest wait between two attempts (curl's backoff stops growing there too).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// `--retry`, `--retry-delay`, `--retry-max-time`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt at most (0: never retry).
    pub retries: u32,
    /// A fixed wait between attempts instead of exponential backoff.
    pub delay: Option<Duration>,
    /// No retry starts, and no wait reaches, past this long after the transfer started.
    pub max_time: Option<Duration>,
}

impl RetryPolicy {
    /// The wait before the next attempt, after `attempts` attempts made `elapsed` after
    /// the transfer started; None when no attempt is left. `retry_after` is the
    /// server's `Retry-After`, `random` any random number (for the jitter).
    pub fn next_wait(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        random: u64,
    ) -> Option<Duration> {
        if attempts > self.retries {
            return None;
        }
        let left = match self.max_time {
            Some(max) if elapsed >= max => return None,
            Some(max) => max - elapsed,
            None => MAX_WAIT,
        };
        let wait = retry_after
            .or(self.delay)
            .unwrap_or_else(|| backoff(attempts, random));
        Some(wait.min(MAX_WAIT).min(left))
    }
}

/// Exponential backoff with jitter: after attempt `n` (1-based), a wait drawn from
/// [d/2, d] where d = 1 s * 2^(n-1), at most `MAX_WAIT`.
pub fn backoff(n: u32, random: u64) -> Duration {
    let full = Duration::from_secs(1u64 << n.saturating_sub(1).min(10)).min(MAX_WAIT);
    let half = full.as_micros() as u64 / 2;
    Duration::from_micros(half + random % (half + 1))
}

/// A random number for the jitter (the OS's generator; a failure means no jitter).
fn random() -> u64 {
    getrandom::u64().unwrap_or(0)
}

/// The statuses retried (curl's list for `--retry`).
pub fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (a past date: now). None if
/// it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only; huge values saturate (the wait is capped anyway).
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP date (RFC 9110 §5.6.7): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, or the
/// obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime
/// `Sun Nov  6 08:49:37 1994` forms, which recipients must accept.
pub fn http_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let words: Vec<&str> = text.split_whitespace().collect();
    let month = |m: &str| MONTHS.iter().position(|&x| x == m).map(|i| i as u64 + 1);
    let (day, mon, year, time) = match words.as_slice() {
        // IMF-fixdate
        [_, day, mon, year, time, "GMT"] => {
            (day.parse().ok()?, month(mon)?, year.parse().ok()?, *time)
        }
        // RFC 850: 06-Nov-94 (a two-digit year: 70-99 is 19xx, else 20xx, as
        // strptime's %y reads it)
        [_, dmy, time, "GMT"] => {
            let mut parts = dmy.split('-');
            let day = parts.next()?.parse().ok()?;
            let mon = month(parts.next()?)?;
            let year: u64 = parts.next()?.parse().ok()?;
            let year = match year {
                0..=69 => 2000 + year,
                70..=99 => 1900 + year,
                _ => year,
            };
            (day, mon, year, *time)
        }
        // asctime
        [_, mon, day, time, year] => (day.parse().ok()?, month(mon)?, year.parse().ok()?, *time),
        _ => return None,
    };
    let mut hms = time.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_since_epoch(year, mon, day);
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; year >= 1970).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    // Count from March, so the leap day is the last day of the counted year.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era_days = y * 365 + y / 4 - y / 100 + y / 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    // 719_468: days from 0000-03-01 to 1970-01-01 in this count.
    era_days + day_of_year - 719_468
}

impl Fetcher {
    /// Transfer `id` failed in a way worth trying again (`error`): wait and retry if
    /// `--retry` allows, else end it with the error.
    pub(super) fn fail_transient(&mut self, ctx: &mut Ctx<Link>, id: usize, error: String) {
        let Some(t) = self.transfers.get(id) else {
            return;
        };
        // What went to stdout (a body, `--include` heads) cannot be taken back.
        let to_stdout = matches!(self.output.destination, Destination::Stdout { .. });
        let head_printed =
            t.keep_heads && (t.status.is_some() || t.redirects > 0 || t.redirect_to.is_some());
        let printed = to_stdout && (t.bytes > 0 || head_printed);
        let wait = self
            .plan
            .retry
            .next_wait(t.net.attempts, None, t.started.elapsed(), random());
        match wait {
            Some(wait) if !printed => self.retry_after_wait(ctx, id, wait, &error),
            _ => {
                let e = match t.net.attempts {
                    1 => error,
                    n => format!("{error} (after {n} attempts)"),
                };
                self.finish(ctx, id, Some(e));
            }
        }
    }

    /// A response head arrived on `token` for transfer `id`: if its status is one
    /// `--retry` retries and an attempt is left, drop the response (its connection is
    /// closed unread) and schedule the retry; true if so.
    pub(super) fn retry_status(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        id: usize,
        head: &Head,
    ) -> bool {
        let Some(t) = self.transfers.get(id) else {
            return false;
        };
        if !transient_status(head.status) || t.net.attempts > self.plan.retry.retries {
            return false;
        }
        let after = head
            .retry_after
            .as_deref()
            .and_then(|v| retry_after(v, SystemTime::now()));
        let wait = self
            .plan
            .retry
            .next_wait(t.net.attempts, after, t.started.elapsed(), random());
        let Some(wait) = wait else {
            return false;
        };
        let why = format!("status {}", head.status);
        if t.conn != Some(token) {
            return false;
        }
        self.retry_after_wait(ctx, id, wait, &why);
        true
    }

    /// Drop what attempt n of transfer `id` holds (connection, racing connects, a
    /// partial file) and start attempt n+1 after `wait`.
    fn retry_after_wait(&mut self, ctx: &mut Ctx<Link>, id: usize, wait: Duration, why: &str) {
        self.cancel_race(ctx, id);
        if let Some(token) = self.transfers[id].conn {
            self.unpause(ctx, id, token);
            if let Some(link) = ctx.state_mut(token) {
                link.transfer = None;
            }
            ctx.close(token, CloseReason::Done);
        }
        let t = &mut self.transfers[id];
        debug!(
            "{}: attempt {} failed ({why}), retrying in {}",
            t.url,
            t.net.attempts,
            secs(wait)
        );
        if t.sink == Sink::File {
            // The writer removes the partial file; the next attempt opens a new one.
            self.output.finish(t.key(id), t.sink, false);
        }
        t.conn = None;
        t.sink = Sink::None;
        t.status = None;
        t.bytes = 0;
        t.wire_bytes = 0;
        t.restart();
        // A new attempt gets the keep-alive rule's one resend again, and may take an
        // idle connection like any request (`restart` asks for a new one).
        t.retried = false;
        t.fresh_conn = false;
        t.net.attempts += 1;
        t.phase = Phase::Waiting;
        t.net.retry_timer = Some(ctx.timer_after(wait, timer_key(RETRY, id, t.serial)));
    }

    /// The `--retry` wait of transfer `id` is over: start its next attempt.
    pub(super) fn retry_due(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        if let Some(t) = self.transfers.get_mut(id) {
            t.net.retry_timer = None;
            self.dispatch(ctx, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_with_jitter_and_respect_the_caps() {
        let policy = RetryPolicy {
            retries: 3,
            delay: None,
            max_time: None,
        };
        for (n, lo, hi) in [(1, 500, 1000), (2, 1000, 2000), (3, 2000, 4000)] {
            for r in [0, 1, u64::MAX / 3, u64::MAX] {
                let w = policy.next_wait(n, None, Duration::ZERO, r).unwrap();
                let ms = w.as_millis() as u64;
                assert!((lo..=hi).contains(&ms), "attempt {n}: {ms} ms");
            }
        }
        assert_eq!(policy.next_wait(4, None, Duration::ZERO, 0), None);
        for r in [0, 7, u64::MAX] {
            let w = backoff(40, r);
            assert!(w <= MAX_WAIT && w >= MAX_WAIT / 2, "{w:?}");
        }

        let capped = RetryPolicy {
            retries: 5,
            delay: Some(Duration::from_secs(3)),
            max_time: Some(Duration::from_secs(10)),
        };
        let ra = Some(Duration::from_secs(3600));
        assert_eq!(
            capped.next_wait(1, ra, Duration::from_secs(4), 9),
            Some(Duration::from_secs(6)),
            "Retry-After cut at --retry-max-time"
        );
        assert_eq!(
            capped.next_wait(1, None, Duration::ZERO, 9),
            Some(Duration::from_secs(3))
        );
        assert_eq!(capped.next_wait(1, None, Duration::from_secs(10), 9), None);
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        for date in [
            "Sun, 06 Nov 1994 08:51:37 GMT",
            "Sunday, 06-Nov-94 08:51:37 GMT",
            "Sun Nov  6 08:51:37 1994",
        ] {
            assert_eq!(
                retry_after(date, now),
                Some(Duration::from_secs(120)),
                "{date}"
            );
        }
        assert_eq!(
            retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date: at once"
        );
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994 25:00:00 GMT"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            http_date("Mon, 29 Feb 2016 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_456_704_000))
        );
        // RFC 850 dates are in this century here.
        assert_eq!(
            http_date("Tuesday, 01-Mar-16 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_456_790_400))
        );
    }
}
