//! `Clock` and `Timers`: the loop's one clock, and everything that is due at a time.
//!
//! Redis's `ae.c` keeps time events beside file events, and the time to the earliest
//! one is how long `aeProcessEvents` may sleep. netloop does the same with one ordered
//! set of `(when, what)` pairs. Three kinds of things are due:
//!
//! - `Due::Timer`: a loop timer a handler asked for (`Ctx::timer_after`, `timer_every`),
//!   not tied to any connection: a tick, a restart back-off, the end of a test;
//! - `Due::Deadline`: a connection's handler deadline (`Ctx::set_deadline`): a connect
//!   timeout, an authentication timeout;
//! - `Due::Idle`: a connection's *loop* deadline: its idle timeout, or the end of a
//!   lingering close. The handler never sees this one directly (it gets `on_idle`).
//!
//! The first entry is the next thing due, so the poll timeout is the time until it, and
//! a turn only pays O(log n) for entries that actually expire: 10,000 idle timers cost a
//! turn nothing.
//!
//! The trick that keeps the per-message cost of idle timeouts at a single store: an idle
//! deadline moves later on every read, but its entry here is *not* moved. The slot keeps
//! its true deadline; when the older entry comes up, the loop compares it with the slot
//! and files it again at the true time if the connection was active meanwhile.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Milliseconds since the loop started: compact, cheap to compare, and monotonic.
pub type Millis = u64;

/// A `Millis` kept in 32 bits: the form of the two times every connection's slot holds.
///
/// Why: a million idle connections with two 8-byte times each spend 16 MB on them, and
/// 4 bytes each halve that. A 32-bit count of milliseconds wraps every 49.7 days, and a
/// loop may well run longer, so a `Stamp` keeps only the *low* 32 bits of the time and
/// is read back relative to now (`widen`): as the time within 2^31 ms (24.8 days) of now
/// that has those low bits. That is how TCP compares its 32-bit sequence numbers (serial
/// number arithmetic, RFC 1982). It is exact for every time a slot stores, since none is
/// ever further from now than that: `Ctx::set_idle_at` keeps them within `STAMP_RANGE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp(u32);

/// How far from now a `Stamp` may be and still be read back exactly (24.8 days).
pub const STAMP_RANGE: Millis = (1 << 31) - 1;

impl Stamp {
    /// The stamp of time `t` (its low 32 bits).
    pub fn of(t: Millis) -> Stamp {
        Stamp(t as u32)
    }

    /// The full time again: the one within `STAMP_RANGE` of `now` with these low bits.
    pub fn widen(self, now: Millis) -> Millis {
        // The signed distance from now to the stamp, in 32-bit wrapping arithmetic.
        let ahead = self.0.wrapping_sub(now as u32) as i32;
        now.saturating_add_signed(i64::from(ahead))
    }
}

/// The loop's clock: read at most once per turn, and only if someone asks.
///
/// Everything that schedules work in the crate uses this clock. The system clock is read
/// lazily, the first time in a turn that a timer, a deadline or a handler needs the time:
/// a turn that only echoes bytes on a server without timeouts never reads it (the turn
/// pays only for what happened). Code that *measures* (a round-trip latency in
/// microseconds) reads `Instant::now()` itself: a per-turn clock is exact enough to
/// schedule, not to time a 50 µs round trip.
#[derive(Debug)]
pub struct Clock {
    epoch: Instant,
    /// This turn's time, once read.
    turn: Cell<Option<(Instant, Millis)>>,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            turn: Cell::new(None),
        }
    }

    /// A new turn began: the next question about the time reads the system clock.
    pub fn new_turn(&mut self) {
        self.turn.set(None);
    }

    fn read(&self) -> (Instant, Millis) {
        if let Some(both) = self.turn.get() {
            return both;
        }
        let instant = Instant::now();
        let millis = instant.duration_since(self.epoch).as_millis() as Millis;
        self.turn.set(Some((instant, millis)));
        (instant, millis)
    }

    /// The time of the current turn if something already read it (no clock read).
    pub fn now_if_read(&self) -> Option<Millis> {
        self.turn.get().map(|(_, millis)| millis)
    }

    /// The time of the current turn, in milliseconds since the loop started.
    pub fn now(&self) -> Millis {
        self.read().1
    }

    /// The time of the current turn as an `Instant` (for elapsed times in reports).
    pub fn instant(&self) -> Instant {
        self.read().0
    }

    /// The time `d` from the current turn (never 0, which slots use for "none").
    pub fn after(&self, d: Duration) -> Millis {
        let ms = d.as_millis().min(u64::MAX as u128 / 2) as Millis;
        (self.now() + ms).max(1)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A loop timer's handle, for `Ctx::cancel_timer`. Never reused: cancelling a timer that
/// already fired (or was cancelled) does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

/// What is due at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    /// A loop timer.
    Timer(TimerId),
    /// Connection `key`'s handler deadline.
    Deadline(usize),
    /// Connection `key`'s idle timeout or lingering-close end (filed lazily).
    Idle(usize),
}

/// A loop timer's details: the handler's key, and its period if it repeats.
#[derive(Debug)]
struct LoopTimer {
    when: Millis,
    key: u64,
    every: Option<Millis>,
}

/// Everything due at a time, in one ordered set.
#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeSet<(Millis, Due)>,
    loop_timers: HashMap<TimerId, LoopTimer>,
    /// Handler deadlines, by connection key (only connections that set one pay).
    deadlines: HashMap<usize, Millis>,
    next_id: u64,
}

impl Timers {
    /// The earliest filed time, if any.
    pub fn next(&self) -> Option<Millis> {
        self.queue.first().map(|&(when, _)| when)
    }

    /// Number of filed entries (all kinds).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Take the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, Due)> {
        match self.queue.first() {
            Some(&(when, _)) if when <= now => self.queue.pop_first(),
            _ => None,
        }
    }

    /// A new loop timer at `when`, repeating every `every` ms if given.
    pub(crate) fn add_timer(&mut self, when: Millis, key: u64, every: Option<Millis>) -> TimerId {
        self.next_id += 1;
        let id = TimerId(self.next_id);
        self.loop_timers.insert(id, LoopTimer { when, key, every });
        self.queue.insert((when, Due::Timer(id)));
        id
    }

    /// Forget a loop timer; returns whether it was still pending.
    pub(crate) fn cancel_timer(&mut self, id: TimerId) -> bool {
        match self.loop_timers.remove(&id) {
            Some(t) => {
                self.queue.remove(&(t.when, Due::Timer(id)));
                true
            }
            None => false,
        }
    }

    /// A timer came up: its key, after filing its next run (periodic) or forgetting it.
    pub(crate) fn fire_timer(&mut self, id: TimerId, now: Millis) -> Option<u64> {
        let timer = self.loop_timers.get_mut(&id)?;
        let key = timer.key;
        match timer.every {
            Some(every) => {
                // Keep the cadence, but never run a backlog of missed ticks in a burst.
                let mut next = timer.when + every.max(1);
                if next <= now {
                    next = now + every.max(1);
                }
                timer.when = next;
                self.queue.insert((next, Due::Timer(id)));
            }
            None => {
                self.loop_timers.remove(&id);
            }
        }
        Some(key)
    }

    /// Set connection `key`'s handler deadline (replacing any earlier one).
    pub(crate) fn set_deadline(&mut self, key: usize, when: Millis) {
        if let Some(old) = self.deadlines.insert(key, when) {
            self.queue.remove(&(old, Due::Deadline(key)));
        }
        self.queue.insert((when, Due::Deadline(key)));
    }

    /// Forget connection `key`'s handler deadline.
    pub(crate) fn clear_deadline(&mut self, key: usize) {
        if let Some(old) = self.deadlines.remove(&key) {
            self.queue.remove(&(old, Due::Deadline(key)));
        }
    }

    /// A deadline entry came up: true if it is still the connection's deadline.
    pub(crate) fn take_deadline(&mut self, key: usize, when: Millis) -> bool {
        if self.deadlines.get(&key) == Some(&when) {
            self.deadlines.remove(&key);
            true
        } else {
            false
        }
    }

    /// File connection `key`'s idle entry at `when`.
    pub(crate) fn file_idle(&mut self, key: usize, when: Millis) {
        self.queue.insert((when, Due::Idle(key)));
    }

    /// Remove connection `key`'s idle entry filed at `when`.
    pub(crate) fn unfile_idle(&mut self, key: usize, when: Millis) {
        self.queue.remove(&(when, Due::Idle(key)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_only_when_due() {
        let mut t = Timers::default();
        t.file_idle(1, 30);
        t.set_deadline(2, 10);
        let id = t.add_timer(20, 7, None);
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(5), None);
        assert_eq!(t.pop_due(25), Some((10, Due::Deadline(2))));
        assert!(t.take_deadline(2, 10));
        assert_eq!(t.pop_due(25), Some((20, Due::Timer(id))));
        assert_eq!(t.fire_timer(id, 25), Some(7));
        assert_eq!(t.pop_due(25), None);
        t.unfile_idle(1, 30);
        assert!(t.is_empty());
    }

    #[test]
    fn cancelled_timer_never_fires_and_periodic_keeps_cadence() {
        let mut t = Timers::default();
        let once = t.add_timer(10, 1, None);
        let every = t.add_timer(10, 2, Some(10));
        assert!(t.cancel_timer(once));
        assert!(!t.cancel_timer(once));
        let (when, due) = t.pop_due(10).expect("periodic timer due");
        assert_eq!((when, due), (10, Due::Timer(every)));
        assert_eq!(t.fire_timer(every, 10), Some(2));
        assert_eq!(t.next(), Some(20));
        // Far behind: the next run is one period from now, not a burst of missed ticks.
        t.pop_due(100);
        t.fire_timer(every, 100);
        assert_eq!(t.next(), Some(110));
        assert!(t.pop_due(100).is_none());
    }

    #[test]
    fn a_new_deadline_replaces_the_old() {
        let mut t = Timers::default();
        t.set_deadline(3, 50);
        t.set_deadline(3, 20);
        assert_eq!(t.len(), 1);
        t.clear_deadline(3);
        assert!(t.is_empty());
    }
}
