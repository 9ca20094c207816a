//! `Printer`: the client's output, written by a helper thread, never by the loop.
//!
//! Replies go to standard output, `-v` lines to standard error, both through one
//! `offload::Pool` thread, so they stay in order. A reader of our stdout that stops
//! reading (`netloop client ADDR | (sleep 5; cat)`) must not stall the loop; what waits
//! for the thread is counted (`unprinted`), and past `MAX_UNPRINTED` bytes the printer
//! is *behind*: the session stops reading the server (and standard input) until the
//! thread is down to half of it (see `session.rs` for how flow control does the rest).

use std::io::{self, Write};
use std::sync::Arc;

use mio::Waker;

use super::MAX_UNPRINTED;
use crate::core::Pool;

/// What the printer thread did since the last look (`Printer::collect`).
pub(super) struct Progress {
    /// Reply bytes were written.
    pub wrote: bool,
    /// The printer was behind and is now down to half of `MAX_UNPRINTED`.
    pub caught_up: bool,
}

/// Output off the loop, with a bound on what waits for it.
pub(super) struct Printer {
    /// One thread, so output is written in order; each job answers bytes written.
    pool: Pool<Result<usize, String>>,
    /// Reply bytes handed to the thread and not written yet.
    unprinted: usize,
    /// `unprinted` passed `MAX_UNPRINTED` and has not come down to half of it yet.
    behind: bool,
}

impl Printer {
    /// A printer whose thread wakes the loop through `waker` after each job.
    pub fn new(waker: Arc<Waker>) -> io::Result<Printer> {
        Ok(Printer {
            pool: Pool::new("client-stdout", 1, waker)?,
            unprinted: 0,
            behind: false,
        })
    }

    /// Hand reply bytes (and a newline, for a datagram) to the thread. Returns true if
    /// this made the printer fall behind: time to stop reading.
    pub fn reply(&mut self, bytes: &[u8], newline: bool) -> bool {
        let mut text = Vec::with_capacity(bytes.len() + 1);
        text.extend_from_slice(bytes);
        if newline {
            text.push(b'\n');
        }
        self.unprinted += text.len();
        self.pool.submit(move || {
            let mut out = io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map(|()| text.len())
                .map_err(|e| format!("writing to standard output: {e}"))
        });
        let fell_behind = self.unprinted > MAX_UNPRINTED && !self.behind;
        self.behind |= fell_behind;
        fell_behind
    }

    /// A `-v` line for standard error (a stderr that fails is not worth failing for).
    pub fn say(&mut self, line: String) {
        self.pool.submit(move || {
            let _ = writeln!(io::stderr().lock(), "{line}");
            Ok(0)
        });
    }

    /// Collect the thread's answers (call in `on_wake`); an error means standard
    /// output cannot be written (e.g. piped into `head`, which exited).
    pub fn collect(&mut self) -> Result<Progress, String> {
        let mut wrote = false;
        while let Some(answer) = self.pool.try_recv() {
            let n = answer?;
            self.unprinted -= n;
            wrote |= n > 0;
        }
        let caught_up = self.behind && self.unprinted <= MAX_UNPRINTED / 2;
        self.behind &= !caught_up;
        Ok(Progress { wrote, caught_up })
    }

    /// Too much waits for the thread: the session is not reading.
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// Reply bytes waiting for the thread.
    pub fn unprinted(&self) -> usize {
        self.unprinted
    }

    /// Everything handed over is written.
    pub fn done(&self) -> bool {
        self.pool.in_flight() == 0
    }
}
