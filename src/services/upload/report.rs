//! The upload service's log volume: one INFO line per minute, not one per upload.
//!
//! A client can store thousands of small files a second, and refused requests cost it
//! even less: a log line for each would let it fill the disk with log instead of uploads
//! (issue 9). So each stored file is a DEBUG line, refusals are warnings that go through
//! a [`RateLimit`] per kind (at most one per 10 s, with a count of those suppressed), and a loop
//! timer (`Ctx::timer_every`, the loop's `report_every` or one minute) logs what happened
//! since the last line: files stored, bytes, refusals. Nothing happened: no line.

use std::fmt;
use std::time::Duration;

use log::info;

use super::UploadConn;
use crate::core::log_limit::RateLimit;
use crate::core::timers::TimerId;
use crate::core::Ctx;

/// The `on_timer` key of the report timer (the service's only loop timer).
pub const REPORT_TIMER: u64 = 1;
/// How often the aggregate line is due when the loop's `report_every` is not set.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Counts since the last report line, and the rate limits for warnings.
#[derive(Debug, Default)]
pub struct Report {
    /// The report timer, once started (with the first connection: timers need the loop).
    timer: Option<TimerId>,
    stored: u64,
    bytes: u64,
    refused: u64,
    /// One rate limit per kind of warning (`Warn`), so a flood of one kind does not
    /// hide the first of another.
    limits: [RateLimit; 5],
}

/// Kinds of per-connection warnings, each rate-limited on its own.
#[derive(Clone, Copy, Debug)]
pub enum Warn {
    /// A bad frame or name.
    Refused,
    /// A wrong answer to the challenge.
    AuthFailed,
    /// No answer to the challenge in time.
    AuthTimeout,
    /// A header not complete in time.
    HeaderTimeout,
    /// A disk error storing a file.
    Store,
}

impl Report {
    /// Start the report timer if it is not running yet.
    pub fn start(&mut self, ctx: &mut Ctx<UploadConn>) {
        if self.timer.is_none() {
            let every = ctx.config().report_every.unwrap_or(REPORT_EVERY);
            self.timer = Some(ctx.timer_every(every, REPORT_TIMER));
        }
    }

    /// A file was stored.
    pub fn stored(&mut self, bytes: u64) {
        self.stored += 1;
        self.bytes += bytes;
    }

    /// A request was refused (`Upload::refuse`).
    pub fn refused(&mut self) {
        self.refused += 1;
    }

    /// A warning about one connection (a refusal, a failed store): logged unless one was
    /// logged recently, else counted.
    pub fn warn(&mut self, ctx: &Ctx<UploadConn>, kind: Warn, message: fmt::Arguments<'_>) {
        self.limits[kind as usize].warn(ctx.now(), message);
    }

    /// The timer came: log the counts since the last line, if any, and start again.
    pub fn tick(&mut self) {
        if let Some(line) = self.take_line() {
            info!("{line}");
        }
    }

    /// The report line for the counts since the last one (`None`: nothing happened),
    /// and the counts start again from zero.
    fn take_line(&mut self) -> Option<String> {
        if self.stored == 0 && self.refused == 0 {
            return None;
        }
        let line = format!(
            "uploads since the last report: stored={} bytes={} refused={}",
            self.stored, self.bytes, self.refused
        );
        self.stored = 0;
        self.bytes = 0;
        self.refused = 0;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_none_when_idle() {
        let mut report = Report::default();
        assert_eq!(report.take_line(), None);
        for _ in 0..1000 {
            report.stored(10);
        }
        report.refused();
        assert_eq!(
            report.take_line().as_deref(),
            Some("uploads since the last report: stored=1000 bytes=10000 refused=1")
        );
        assert_eq!(report.take_line(), None, "counts start again");
    }
}
