//! Progress while a run goes: the numbers (`Progress`), and the live line on a terminal.
//!
//! A worker process sends its `Progress` to the parent as a JSON line every 250 ms
//! (`workers.rs`); the parent adds them up and draws one line. The line is redrawn from
//! `on_turn` — the one thing `on_turn` is for — at most five times a second, and only
//! when stderr is a terminal: a run whose output goes to a file or a pipe prints the
//! report and nothing else.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Progress, for the live line and for the parent of worker processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Connections open now.
    pub open: u64,
    /// Connections asked for.
    pub requested: u64,
    /// Failed connects so far.
    pub connect_errors: u64,
    /// Round trips so far.
    pub round_trips: u64,
    /// Current p99 latency, microseconds.
    pub p99_us: u64,
}

impl Progress {
    /// Add another process's numbers (p99: the largest).
    pub fn add(&mut self, other: &Progress) {
        self.open += other.open;
        self.requested += other.requested;
        self.connect_errors += other.connect_errors;
        self.round_trips += other.round_trips;
        self.p99_us = self.p99_us.max(other.p99_us);
    }

    /// As a worker sends it.
    pub fn to_json(&self) -> Value {
        json!({
            "open": self.open, "requested": self.requested,
            "connect_errors": self.connect_errors, "round_trips": self.round_trips,
            "p99_us": self.p99_us,
        })
    }

    /// As the parent reads it (missing numbers are 0).
    pub fn from_json(p: &Value) -> Progress {
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        Progress {
            open: n("open"),
            requested: n("requested"),
            connect_errors: n("connect_errors"),
            round_trips: n("round_trips"),
            p99_us: n("p99_us"),
        }
    }
}

/// Live progress on a terminal; nothing otherwise. Updated from `on_turn`, the one
/// thing `on_turn` is for; it redraws at most five times a second, whatever the turns.
pub struct ProgressLine {
    bar: Option<indicatif::ProgressBar>,
    last: Instant,
    last_round_trips: u64,
}

impl ProgressLine {
    /// A progress line on stderr when it is a terminal.
    pub fn new() -> ProgressLine {
        let bar = io::stderr()
            .is_terminal()
            .then(indicatif::ProgressBar::new_spinner);
        ProgressLine {
            bar,
            last: Instant::now(),
            last_round_trips: 0,
        }
    }

    /// Redraw (at most five times a second).
    pub fn update(&mut self, p: Progress) {
        let Some(bar) = &self.bar else {
            return;
        };
        let elapsed = self.last.elapsed();
        if elapsed < Duration::from_millis(200) {
            return;
        }
        let rate =
            (p.round_trips.saturating_sub(self.last_round_trips)) as f64 / elapsed.as_secs_f64();
        self.last = Instant::now();
        self.last_round_trips = p.round_trips;
        bar.set_message(format!(
            "open {}/{}  connect errors {}  round trips/s {:.0}  p99 {} us",
            p.open, p.requested, p.connect_errors, rate, p.p99_us
        ));
        bar.tick();
    }

    /// Remove the line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for ProgressLine {
    fn default() -> Self {
        ProgressLine::new()
    }
}
