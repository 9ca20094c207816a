//! `WorkerSlot`: one worker slot of `serve --workers`, and its restart back-off.
//!
//! A slot holds at most one process at a time. When its process dies young the slot
//! waits before starting the next one, so a worker that crashes at once costs a log line
//! per interval rather than a spinning CPU: the next start is at least `backoff` after
//! the previous *start* (1 s, doubling up to 32 s while the worker keeps dying young,
//! back to 1 s once one lives 10 s).
//!
//! The slot only does the arithmetic, on the loop's clock (`Ctx::now`, milliseconds): it
//! says how long to wait, and the supervisor turns that into a loop timer. Keeping the
//! numbers pure is what lets the unit tests below check the back-off without waiting.

use std::process::ExitStatus;
use std::time::Duration;

use mio::Token;

use crate::core::{Millis, TimerId};
use crate::workers::spawn::WorkerProcess;

/// Shortest time between two starts of the same worker slot.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest, reached by doubling while a worker keeps dying young.
const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// A worker that lived this long was healthy: its next restart is quick again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// One worker slot: the process in it now (if any), what the parent knows of it, and the
/// slot's restart bookkeeping.
pub(crate) struct WorkerSlot {
    /// The process, until it is reaped.
    process: Option<WorkerProcess>,
    /// Its pid, for log lines (kept after the reaping).
    pub(crate) pid: u32,
    /// Its stdout on the loop, until EOF.
    pub(crate) stdout: Option<Token>,
    /// How it exited, once reaped; reported by `finished` when `stdout` has closed too.
    exited: Option<ExitStatus>,
    /// The `listening on` lines of the current process.
    pub(crate) listening: Vec<String>,
    /// When the current process started, on the loop's clock.
    started: Millis,
    /// Delay from one start of this slot to the next, when the worker dies young.
    backoff: Duration,
    /// The timer that starts the slot's next process (the slot is empty until then).
    pub(crate) restart: Option<TimerId>,
    /// Processes started in this slot after the first.
    pub(crate) restarts: u64,
}

impl WorkerSlot {
    /// An empty slot.
    pub(crate) fn new() -> WorkerSlot {
        WorkerSlot {
            process: None,
            pid: 0,
            stdout: None,
            exited: None,
            listening: Vec::new(),
            started: 0,
            backoff: MIN_BACKOFF,
            restart: None,
            restarts: 0,
        }
    }

    /// A new process is in the slot since `now`, its stdout on the loop as `stdout`.
    pub(crate) fn started(&mut self, process: WorkerProcess, stdout: Token, now: Millis) {
        self.pid = process.pid();
        self.process = Some(process);
        self.stdout = Some(stdout);
        self.listening.clear();
        self.started = now;
        self.restart = None;
    }

    /// The process is there and not yet reaped.
    pub(crate) fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Nothing in the slot, and nothing to come.
    pub(crate) fn is_empty(&self) -> bool {
        self.process.is_none() && self.exited.is_none() && self.restart.is_none()
    }

    /// Send `signal` to the process, if it is not reaped yet.
    pub(crate) fn signal(&self, signal: i32) {
        if let Some(process) = &self.process {
            process.signal(signal);
        }
    }

    /// Reap the process if it has exited (a non-blocking `waitpid`); its exit status once
    /// its stdout has closed too — until then, the last lines it printed may be unread.
    pub(crate) fn finished(&mut self) -> Option<ExitStatus> {
        if let Some(process) = &mut self.process {
            if let Some(status) = process.try_reap() {
                self.process = None;
                self.exited = Some(status);
            }
        }
        match self.stdout {
            Some(_) => None,
            None => self.exited.take(),
        }
    }

    /// The process died at `now`: how long until the next one may start (`backoff` after
    /// this one started, or now), doubling the back-off unless this one lived long
    /// enough to count as healthy.
    pub(crate) fn restart_delay(&mut self, now: Millis) -> Duration {
        if now.saturating_sub(self.started) >= ms(STABLE_AFTER) {
            self.backoff = MIN_BACKOFF;
        }
        let at = (self.started + ms(self.backoff)).max(now);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Duration::from_millis(at - now)
    }

    /// Starting a process failed: how long until the next try (the back-off, doubled for
    /// the time after).
    pub(crate) fn retry_delay(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = (delay * 2).min(MAX_BACKOFF);
        delay
    }
}

/// A duration on the loop's clock.
fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot whose process started at `at` (the process itself does not matter here).
    fn started_at(slot: &mut WorkerSlot, at: Millis) {
        slot.started = at;
        slot.restart = None;
    }

    #[test]
    fn back_off_doubles_while_dying_young_and_resets_after_a_healthy_life() {
        let mut slot = WorkerSlot::new();
        started_at(&mut slot, 1_000);
        // Dies 100 ms after starting: the next start is 1 s after this one's start.
        assert_eq!(slot.restart_delay(1_100), Duration::from_millis(900));
        started_at(&mut slot, 2_000);
        // Young again: 2 s after the start, then 4 s, ... up to 32 s.
        assert_eq!(slot.restart_delay(2_000), Duration::from_secs(2));
        started_at(&mut slot, 4_000);
        assert_eq!(slot.restart_delay(4_500), Duration::from_millis(3_500));
        for _ in 0..6 {
            slot.restart_delay(4_500);
        }
        assert_eq!(slot.backoff, MAX_BACKOFF);
        // A worker that lived past `STABLE_AFTER` is restarted at once.
        started_at(&mut slot, 10_000);
        assert_eq!(slot.restart_delay(25_000), Duration::ZERO);
        assert_eq!(slot.backoff, MIN_BACKOFF * 2);
    }

    #[test]
    fn failed_starts_retry_after_a_growing_delay() {
        let mut slot = WorkerSlot::new();
        let delays: Vec<u64> = (0..7).map(|_| slot.retry_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 32]);
        assert!(slot.is_empty());
    }
}
