//! Where response bodies and result lines go, as the loop sees it: standard output, one
//! file per URL, or nowhere — all written by the writer thread (`writer.rs`).
//!
//! Bodies are handed over **as they arrive**, one piece per read, and never collected
//! into whole bodies. What the loop thread does with a piece is cheap and never blocks:
//! copy it into a job for the writer thread and count it as *unwritten* until the
//! thread's answer comes back through the waker. The count is what bounds memory when
//! the writer falls behind (a pipe nobody reads, a slow disk): `delivery.rs` pauses the
//! connections feeding the writer while a transfer has more than `PER_TRANSFER` bytes
//! unwritten, or all of them together more than `TOTAL`, and resumes them once the
//! writer has caught up to half of that. TCP flow control then slows the servers down:
//! a fetch whose stdout is not read holds about a megabyte, not the whole body.
//!
//! With `-o DIR`, each body gets its own file named from the last segment of the URL
//! path as requested (`/a/b/page.html` → `page.html`), made unique (`page-1.html`, ...)
//! in constant time, never overwriting what is already in DIR; it is written under a
//! hidden temporary name and renamed once complete, and a transfer that fails has its
//! temporary file removed, so a file in DIR under its final name is always a complete
//! body (`naming.rs`). Naming, creating, writing, renaming and removing all happen on
//! the writer thread.
//!
//! Result lines go through the writer too (they are output like any other), in
//! batches, one batch in flight at a time; past `LINES_BACKLOG` bytes of lines not yet
//! printed, no new URL is admitted, so a stdout nobody reads bounds them as well.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indicatif::ProgressBar;
use mio::Waker;
use url::Url;

use super::writer::{Desk, Job, Key, Sink, Written};
use crate::core::Pool;

/// Unwritten bytes one transfer may have before its connection stops being read.
pub const PER_TRANSFER: usize = 1024 * 1024;
/// Unwritten bytes all transfers together may have before their connections stop
/// being read.
pub const TOTAL: usize = 8 * 1024 * 1024;
/// Result-line bytes not yet printed past which no new URL is admitted.
pub const LINES_BACKLOG: usize = 1024 * 1024;

/// Where bodies go for the whole run.
#[derive(Clone, Debug)]
pub enum Destination {
    /// One URL, body to stdout (like curl); `include` adds status line and headers.
    Stdout {
        /// Print each response's header section before its body.
        include: bool,
    },
    /// Each body to its own file in this directory.
    Dir(PathBuf),
    /// Bodies are read and dropped (several URLs without `-o`).
    Discard,
}

/// The run's output: hands sinks out to transfers, and jobs to the writer thread.
pub struct Output {
    /// Where bodies go.
    pub destination: Destination,
    /// The writer thread: one, so that jobs run in the order given.
    writer: Pool<Written>,
    /// The writer thread's state, travelling with each job (see `writer.rs`).
    desk: Arc<Mutex<Desk>>,
    /// The temporary files of bodies being written, for `remove_temp_files`.
    temps: Arc<Mutex<HashSet<PathBuf>>>,
    /// Bytes handed to the writer and not written yet, all transfers together.
    unwritten: usize,
    /// Result lines not yet handed to the writer.
    lines: Option<Lines>,
    /// Bytes of result lines handed to the writer and not yet answered (one batch at
    /// most).
    lines_in_flight: usize,
}

/// A batch of result lines (they all go to the same stream in a run).
struct Lines {
    text: String,
    to_stderr: bool,
    bar: Option<ProgressBar>,
    succeeded: usize,
}

impl Output {
    /// Output to `destination` (the directory is made if needed); the writer thread
    /// wakes the loop through `waker` after each job.
    pub fn new(destination: Destination, waker: Arc<Waker>) -> io::Result<Output> {
        let dir = match &destination {
            Destination::Dir(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| io::Error::new(e.kind(), format!("-o {}: {e}", dir.display())))?;
                Some(dir.clone())
            }
            _ => None,
        };
        let desk = Desk::new(dir);
        Ok(Output {
            destination,
            writer: Pool::new("fetch-output", 1, waker)?,
            temps: desk.temps(),
            desk: Arc::new(Mutex::new(desk)),
            unwritten: 0,
            lines: None,
            lines_in_flight: 0,
        })
    }

    /// Remove every body's temporary file from the loop thread, at once: the process
    /// is about to exit without waiting for the writer thread (a second signal), which
    /// may be blocked. Partial bodies never had a final name; now they leave nothing.
    /// Keep the returned guard until the process is gone: while it is held, the writer
    /// cannot create another temporary file (`naming.rs` creates them under this lock).
    pub fn remove_temp_files(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        let temps = self.temps.lock().unwrap_or_else(PoisonError::into_inner);
        for path in temps.iter() {
            super::naming::remove_quietly(path);
        }
        temps
    }

    /// True when response heads are printed before bodies (`--include`).
    pub fn include_heads(&self) -> bool {
        matches!(self.destination, Destination::Stdout { include: true })
    }

    /// The sink for a transfer's final response; with `-o DIR`, the writer thread is
    /// asked to create its file, named after the URL as requested.
    pub fn open(&mut self, key: Key, requested: &Url) -> Sink {
        match &self.destination {
            Destination::Stdout { .. } => Sink::Stdout,
            Destination::Discard => Sink::None,
            Destination::Dir(_) => {
                let url = requested.clone();
                self.submit(Job::Open { key, url });
                Sink::File
            }
        }
    }

    /// Hand `bytes` for `sink` to the writer; returns how many were handed over (0 if
    /// the sink drops them), for the transfer's own unwritten count.
    pub fn write(&mut self, key: Key, sink: Sink, bytes: &[u8]) -> usize {
        if sink == Sink::None || bytes.is_empty() {
            return 0;
        }
        self.unwritten += bytes.len();
        let bytes = bytes.to_vec();
        let n = bytes.len();
        self.submit(Job::Write { key, sink, bytes });
        n
    }

    /// The transfer is over: after its last bytes, the writer closes its file (or
    /// removes it, if `ok` is false) and answers `Written::Finished`.
    pub fn finish(&mut self, key: Key, sink: Sink, ok: bool) {
        self.submit(Job::Finish { key, sink, ok });
    }

    /// Add a result line (a newline is added) to the batch; `flush_lines` hands the
    /// batch to the writer, after everything handed over before it.
    pub fn print(&mut self, line: &str, to_stderr: bool, bar: Option<ProgressBar>, ok: bool) {
        let batch = self.lines.get_or_insert_with(|| Lines {
            text: String::new(),
            to_stderr,
            bar,
            succeeded: 0,
        });
        batch.text.push_str(line);
        batch.text.push('\n');
        batch.succeeded += usize::from(ok);
    }

    /// Hand the waiting result lines to the writer as one job, unless it still has the
    /// previous batch (called at the end of every turn). One batch in flight at a time
    /// batches by itself: lines gather while the writer prints, so a run of small pages
    /// pays one thread hand-off per batch, not per line, without any timer.
    pub fn flush_lines(&mut self) {
        if self.lines_in_flight > 0 {
            return;
        }
        if let Some(Lines {
            text,
            to_stderr,
            bar,
            succeeded,
        }) = self.lines.take()
        {
            self.lines_in_flight = text.len().max(1);
            self.submit(Job::Lines {
                text,
                to_stderr,
                bar,
                succeeded,
            });
        }
    }

    /// The writer's answers so far (call from `on_wake`); the unwritten count drops by
    /// what they report.
    pub fn answers(&mut self) -> Vec<Written> {
        let mut answers = Vec::new();
        while let Some(answer) = self.writer.try_recv() {
            match &answer {
                Written::Body { bytes, .. } => self.unwritten -= bytes,
                Written::Lines { .. } => self.lines_in_flight = 0,
                Written::Finished { .. } => {}
            }
            answers.push(answer);
        }
        answers
    }

    /// Bytes handed to the writer and not written yet, all transfers together.
    pub fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Bytes of result lines not printed yet: when a stdout nobody reads holds them up,
    /// the fetcher stops admitting new URLs (whose results would pile up behind them).
    pub fn lines_backlog(&self) -> usize {
        self.lines.as_ref().map_or(0, |l| l.text.len()) + self.lines_in_flight
    }

    /// True while result lines wait for `flush_lines`, or the writer has jobs whose
    /// answers have not been collected.
    pub fn busy(&self) -> bool {
        self.lines.is_some() || self.writer.in_flight() > 0
    }

    fn submit(&mut self, job: Job) {
        let desk = Arc::clone(&self.desk);
        self.writer.submit(move || {
            // Only this thread locks it; a panic in an earlier job leaves it usable.
            let mut desk = desk.lock().unwrap_or_else(PoisonError::into_inner);
            desk.run(job)
        });
    }
}
