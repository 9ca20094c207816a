//! `Deadlines`: when each connection next needs attention from the clock.
//!
//! An ordered set of `(when, token)` pairs: the first entry is the next deadline, and the
//! loop's poll timeout is the time until it (Redis `ae.c` does the same with its timers).
//! Per-turn cost is O(log n) for each deadline that actually expires, never a scan of all
//! connections, so 100,000 idle connections cost nothing per turn.
//!
//! The trick that keeps per-message cost at a single store: a connection's idle deadline
//! moves later on every byte, but its entry here is *not* moved. The connection keeps
//! its true deadline in its slot; when the (older) entry here expires, the loop compares
//! it with the slot and simply re-files the entry at the true time if the connection was
//! active meanwhile. Each connection has at most one entry.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Milliseconds since the loop started: compact, cheap to compare, and monotonic.
pub type Millis = u64;

/// The loop's clock, read once per turn (one `clock_gettime` per turn, not per event).
#[derive(Debug)]
pub struct Clock {
    epoch: Instant,
    now: Millis,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            now: 0,
        }
    }

    /// Read the system clock; called once at the start of every turn.
    pub fn update(&mut self) -> Millis {
        self.now = self.epoch.elapsed().as_millis() as Millis;
        self.now
    }

    /// The time of the current turn.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The time `d` from the current turn (never 0, which slots use for "none").
    pub fn after(&self, d: Duration) -> Millis {
        (self.now + d.as_millis() as Millis).max(1)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The ordered set of filed deadlines.
#[derive(Debug, Default)]
pub struct Deadlines {
    entries: BTreeSet<(Millis, usize)>,
}

impl Deadlines {
    /// File an entry for connection `key` at `when`.
    pub fn insert(&mut self, when: Millis, key: usize) {
        self.entries.insert((when, key));
    }

    /// Remove the entry for `key` filed at `when` (when the connection closes).
    pub fn remove(&mut self, when: Millis, key: usize) {
        self.entries.remove(&(when, key));
    }

    /// The earliest filed time, if any.
    pub fn next(&self) -> Option<Millis> {
        self.entries.first().map(|&(when, _)| when)
    }

    /// Take the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, usize)> {
        match self.entries.first() {
            Some(&(when, _)) if when <= now => self.entries.pop_first(),
            _ => None,
        }
    }

    /// Number of filed entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_only_when_due() {
        let mut d = Deadlines::default();
        d.insert(30, 1);
        d.insert(10, 2);
        d.insert(20, 3);
        assert_eq!(d.next(), Some(10));
        assert_eq!(d.pop_due(5), None);
        assert_eq!(d.pop_due(25), Some((10, 2)));
        assert_eq!(d.pop_due(25), Some((20, 3)));
        assert_eq!(d.pop_due(25), None);
        d.remove(30, 1);
        assert!(d.is_empty());
    }
}
