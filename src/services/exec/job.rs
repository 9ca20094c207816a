//! One request, from the line a client sent to the last byte of its reply.
//!
//! A job goes `Waiting` (for one of `--max-children` slots, in arrival order) →
//! `Running` (a child, its two pipes on the loop, its time limit) → `Done` (the reply is
//! built: header, stdout, stderr), and is dropped once the reply is all in the loop's
//! hands. A refused request is born `Done`, with its error as the reply.
//!
//! Why the output is held until the command ends: the seed's header carries `file_size`
//! *before* the output, and stdout comes before stderr, so nothing can be sent until
//! both pipes reached EOF. What is held is bounded by `--max-output` per job, and a job
//! keeps its child slot until its reply has left (see `handler.rs`), so all of it
//! together is bounded by `--max-children` × `--max-output`, whatever clients do.
//!
//! This file is bookkeeping only: it does not touch the loop.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use mio::Token;

use super::allowlist::Allowed;
use super::child::ChildProcess;
use super::reply::{refusal_body, ReplyHeader};
use crate::core::{Millis, Peer, TimerId};

/// A job's number: never reused, so a late timer or pipe event for a finished job finds
/// nothing rather than someone else's.
pub type JobId = u64;

/// Where a job is.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for a child slot, with what it will run.
    Waiting(Allowed),
    /// Its child runs (or has exited and its pipes are still being drained).
    Running,
    /// The reply is ready, and being sent.
    Done(Feed),
}

/// Which of a child's two output pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    /// Standard output.
    Stdout = 0,
    /// Standard error.
    Stderr = 1,
}

/// One request.
#[derive(Debug)]
pub struct Job {
    /// The connection the reply goes to.
    pub client: Token,
    /// Who sent it, for log lines (also after the connection is gone).
    pub peer: Peer,
    /// The command as the client sent it (words re-quoted), for log lines.
    pub line: String,
    /// Where it is.
    pub phase: Phase,
    /// The child, once started; kept after reaping for its status.
    pub process: Option<ChildProcess>,
    /// The loop's tokens of its stdout and stderr, while open.
    pub pipes: [Option<Token>; 2],
    /// What it printed so far: stdout, stderr.
    pub output: [Vec<u8>; 2],
    /// Reading its pipes is paused (the client's queue is over the watermark).
    pub paused: bool,
    /// Its output reached `--max-output`; it was killed.
    pub truncated: bool,
    /// It ran past `--timeout`; it was killed.
    pub timed_out: bool,
    /// The client went away while it waited or ran; it was killed.
    pub abandoned: bool,
    /// It holds one of the `--max-children` slots.
    pub holds_slot: bool,
    /// When it started, for the log line at its end.
    pub started_at: Millis,
    /// Its timers: time limit, SIGKILL after SIGTERM, pipes drained after exit, client
    /// stalled while reading the reply.
    pub timers: Timers,
}

/// A job's pending loop timers (cancelled when they no longer apply).
#[derive(Debug, Default)]
pub struct Timers {
    /// `--timeout` from the start.
    pub timeout: Option<TimerId>,
    /// The grace between SIGTERM and SIGKILL.
    pub kill: Option<TimerId>,
    /// After the exit: how long its pipes may stay open (a leftover that escaped the
    /// process group could hold them forever).
    pub drain: Option<TimerId>,
    /// While sending the reply: how long the client may read nothing.
    pub stall: Option<TimerId>,
}

impl Timers {
    /// Every pending timer, taken.
    pub fn take_all(&mut self) -> Vec<TimerId> {
        [
            self.timeout.take(),
            self.kill.take(),
            self.drain.take(),
            self.stall.take(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A reply being sent: the header frame, then both outputs, from a position.
#[derive(Debug)]
pub struct Feed {
    /// The header frame.
    pub header: Vec<u8>,
    /// What it says (for the log line).
    pub summary: ReplyHeader,
    /// Bytes of header + stdout + stderr already handed to the loop.
    pub sent: usize,
}

impl Job {
    /// A request that will run `allowed`.
    pub fn new(client: Token, peer: Peer, line: String, allowed: Allowed, now: Millis) -> Job {
        Job {
            client,
            peer,
            line,
            phase: Phase::Waiting(allowed),
            process: None,
            pipes: [None, None],
            output: [Vec::new(), Vec::new()],
            paused: false,
            truncated: false,
            timed_out: false,
            abandoned: false,
            holds_slot: false,
            started_at: now,
            timers: Timers::default(),
        }
    }

    /// A refused request: its reply is the error.
    pub fn refused(client: Token, peer: Peer, line: String, error: &str, now: Millis) -> Job {
        let mut job = Job::new(client, peer, line, Allowed::default(), now);
        let summary = ReplyHeader::refusal(error);
        job.output[Pipe::Stderr as usize] = refusal_body(error);
        job.phase = Phase::Done(Feed {
            header: summary.encode(),
            summary,
            sent: 0,
        });
        job
    }

    /// Running, reaped, and both pipes read to the end (or closed): the reply can be
    /// built.
    pub fn finished_running(&self) -> bool {
        matches!(self.phase, Phase::Running)
            && self.pipes.iter().all(Option::is_none)
            && self.process.as_ref().is_none_or(|p| p.status().is_some())
    }

    /// Build the reply from what the child printed and how it ended.
    pub fn build_reply(&mut self) {
        let status = self.process.as_ref().and_then(ChildProcess::status);
        let summary = ReplyHeader {
            file_size: (self.output[0].len() + self.output[1].len()) as u64,
            stdout_size: self.output[0].len() as u64,
            stderr_size: self.output[1].len() as u64,
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s: ExitStatus| s.signal()),
            truncated: self.truncated,
            timed_out: self.timed_out,
            error: None,
        };
        self.phase = Phase::Done(Feed {
            header: summary.encode(),
            summary,
            sent: 0,
        });
    }

    /// The next at most `max` bytes of the reply (in up to three pieces), or nothing
    /// when it is all sent.
    pub fn next_chunk(&self, max: usize) -> Vec<&[u8]> {
        let Phase::Done(feed) = &self.phase else {
            return Vec::new();
        };
        let mut skip = feed.sent;
        let mut left = max;
        let mut parts = Vec::with_capacity(3);
        for part in [&feed.header[..], &self.output[0], &self.output[1]] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let take = (part.len() - skip).min(left);
            parts.push(&part[skip..skip + take]);
            skip = 0;
            left -= take;
            if left == 0 {
                break;
            }
        }
        parts
    }

    /// `n` more bytes of the reply were handed to the loop.
    pub fn advance(&mut self, n: usize) {
        if let Phase::Done(feed) = &mut self.phase {
            feed.sent += n;
        }
    }

    /// Bytes held for this job's reply.
    pub fn held(&self) -> usize {
        self.output[0].capacity() + self.output[1].capacity()
    }
}

/// Append `data` to `buf`, growing it by at most half again its size at a time and
/// never past `cap`, so a 16 MiB output does not sit in a 32 MiB buffer.
pub fn append_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let want = need
            .max(buf.len() + buf.len() / 2)
            .max(4096)
            .min(cap.max(need));
        buf.reserve_exact(want - buf.len());
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_fed_in_pieces_across_parts() {
        let mut job = Job::refused(Token(1), Peer::Local, "x".into(), "no", 0);
        let header_len = match &job.phase {
            Phase::Done(feed) => feed.header.len(),
            _ => panic!("not done"),
        };
        let total = header_len + 3; // "no\n"
        let mut got = Vec::new();
        loop {
            let parts = job.next_chunk(5);
            if parts.is_empty() {
                break;
            }
            let n: usize = parts.iter().map(|p| p.len()).sum();
            assert!(n <= 5 && n > 0);
            for p in parts {
                got.extend_from_slice(p);
            }
            job.advance(n);
        }
        assert_eq!(got.len(), total);
        assert!(got.ends_with(b"no\n"));
    }

    #[test]
    fn buffers_grow_gently_and_stop_at_the_cap() {
        let mut buf = Vec::new();
        for _ in 0..100 {
            append_capped(&mut buf, &[0; 10_000], 1_000_000);
        }
        assert_eq!(buf.len(), 1_000_000);
        assert!(buf.capacity() <= 1_000_000, "{}", buf.capacity());
    }
}
