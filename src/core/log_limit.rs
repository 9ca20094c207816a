//! Logging that an attacker cannot turn into a disk filler.
//!
//! A server that logs one line per connection event writes as fast as a client can open
//! and reset connections: churn of a few thousand connections per second is gigabytes
//! of log per hour. So per-connection events are logged at DEBUG, the loop logs one
//! INFO line of aggregated counts per interval (`LoopConfig::report_every`, see
//! `Stats::since`), and a warning that can repeat goes through a `RateLimit`: logged at
//! most once per interval, with the count of those suppressed in between.

use std::fmt;

use super::timers::Millis;

/// How often a rate-limited warning may be logged.
pub const WARN_INTERVAL_MS: Millis = 10_000;

/// One kind of warning, logged at most once per `WARN_INTERVAL_MS`.
#[derive(Debug, Default)]
pub struct RateLimit {
    last: Option<Millis>,
    suppressed: u64,
}

impl RateLimit {
    /// Log `message` as a warning now, or count it if one was logged recently.
    pub fn warn(&mut self, now: Millis, message: fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| now < t + WARN_INTERVAL_MS) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!(
                "{message} ({} more like this suppressed in the last {} s)",
                self.suppressed,
                WARN_INTERVAL_MS / 1000
            );
        } else {
            log::warn!("{message}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }

    /// Warnings counted but not logged since the last one logged.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_interval_are_counted_not_logged() {
        let mut limit = RateLimit::default();
        limit.warn(0, format_args!("first"));
        limit.warn(5, format_args!("again"));
        limit.warn(9_999, format_args!("again"));
        assert_eq!(limit.suppressed(), 2);
        limit.warn(10_000, format_args!("later"));
        assert_eq!(limit.suppressed(), 0);
    }
}
