//! `netloop upload FILE... --to ADDR`: the upload client, on the loop.
//!
//! Seed 004's clients open the file and `send` it in 1 KiB pieces in a blocking loop,
//! then (sometimes) `recv` a reply. Here one connection on the loop does the same with
//! bounded memory: a chunk is read from disk and sent only while the connection's
//! outbound queue is empty, so at most one chunk is ever waiting in user space. When the
//! kernel's send buffer fills, the rest of a chunk is queued and the loop's writable edge
//! flushes it; the queue draining calls `on_drained`, which reads the next chunk. Files
//! are sent back to back without waiting for replies (as the seeds do); replies are read
//! as they come and each is checked against what was sent: the byte count and the
//! SHA-256 computed while reading the file.
//!
//! Readiness rules relied on: `on_drained` fires only after a queued write completes, so
//! whenever the pump stops with an empty queue (its per-call budget, which keeps replies
//! and the progress bar moving) it asks for another turn with `wake_after` and resumes
//! in `on_turn`. Reply frames may arrive in any split; unconsumed bytes come back.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mio::Token;
use sha2::{Digest, Sha256};

use crate::apps::client::resolve_addr;
use crate::core::{CloseReason, Closed, Handler};
use crate::core::{Ctx, EventLoop, LoopConfig, Target};
use crate::proto::frames::{self, FrameError, Reply, UploadHeader};
use crate::proto::hmac_auth::{Secret, CHALLENGE_LEN};
use crate::services::upload::store::hex;

/// Options of `netloop upload`.
#[derive(Clone, Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to send, in order, on one connection.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Server address, HOST:PORT (required unless --unix is given).
    #[arg(long, value_name = "ADDR", required_unless_present = "unix")]
    pub to: Option<String>,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with = "to")]
    pub unix: Option<PathBuf>,
    /// Answer the server's HMAC challenge with the secret in this file (its bytes, one
    /// trailing newline removed, as the server reads it).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Give up when nothing was sent or received for this many seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Bytes read from disk and sent at a time.
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub chunk: usize,
}

/// Bytes sent per callback before giving other work (replies, progress) a turn.
const BUDGET: usize = 8 * 1024 * 1024;

/// The file being sent.
struct Outgoing {
    path: PathBuf,
    file: File,
    size: u64,
    left: u64,
    hasher: Sha256,
}

/// A file fully sent, waiting for its reply.
struct Sent {
    path: PathBuf,
    size: u64,
    sha256: String,
}

/// The client's handler: one connection, so its state lives here.
struct Sender {
    target: String,
    files: VecDeque<PathBuf>,
    current: Option<Outgoing>,
    awaiting: VecDeque<Sent>,
    secret: Option<Secret>,
    /// The server's challenge is still to come.
    challenge_pending: bool,
    /// The connection was established (`on_open`).
    connected: bool,
    /// Replies received so far (to hint at a missing `--secret-file` on the first one).
    replies: usize,
    token: Option<Token>,
    chunk: Vec<u8>,
    /// The pump stopped on its budget with nothing queued: resume in `on_turn`.
    resume: bool,
    all_sent: bool,
    bar: ProgressBar,
    failure: Option<String>,
    stored: Vec<String>,
}

impl Sender {
    fn fail(&mut self, ctx: &mut Ctx<()>, msg: String) {
        self.failure.get_or_insert(msg);
        if let Some(token) = self.token {
            // Close at once: an unfinished upload is then discarded by the server.
            ctx.close(token, CloseReason::Done);
        }
        ctx.stop();
    }

    /// Send file bytes while the outbound queue is empty, up to the budget.
    fn pump(&mut self, ctx: &mut Ctx<()>) {
        self.resume = false;
        let Some(token) = self.token else { return };
        if self.challenge_pending || self.failure.is_some() {
            return;
        }
        let mut budget = BUDGET;
        while ctx.queued(token) == 0 {
            if budget == 0 {
                self.resume = true;
                ctx.timer_after(Duration::ZERO, 0);
                return;
            }
            let Some(out) = self.current.as_mut() else {
                let Some(path) = self.files.pop_front() else {
                    if !self.all_sent {
                        self.all_sent = true;
                        // Like seed 000's client closing after its last byte, but only
                        // our half: the replies still come back.
                        ctx.shutdown_write_when_flushed(token);
                    }
                    return;
                };
                match start_file(&path) {
                    Ok((out, header)) => {
                        ctx.send(token, &header);
                        self.current = Some(out);
                    }
                    Err(e) => return self.fail(ctx, e.to_string()),
                }
                continue;
            };
            let want = usize::try_from(out.left)
                .unwrap_or(usize::MAX)
                .min(self.chunk.len());
            let n = match out.file.read(&mut self.chunk[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let msg = format!("reading {}: {e}", out.path.display());
                    return self.fail(ctx, msg);
                }
            };
            if n == 0 && want > 0 {
                let msg = format!(
                    "{} shrank while being sent: {} of {} bytes were there",
                    out.path.display(),
                    out.size - out.left,
                    out.size
                );
                return self.fail(ctx, msg);
            }
            out.hasher.update(&self.chunk[..n]);
            out.left -= n as u64;
            ctx.send(token, &self.chunk[..n]);
            self.bar.inc(n as u64);
            budget = budget.saturating_sub(n.max(1));
            if out.left == 0 {
                if let Some(done) = self.current.take() {
                    self.awaiting.push_back(Sent {
                        path: done.path,
                        size: done.size,
                        sha256: hex(&done.hasher.finalize()),
                    });
                }
            }
        }
    }

    /// Check one reply against the oldest file awaiting one.
    fn on_reply(&mut self, ctx: &mut Ctx<()>, reply: Reply) {
        self.replies += 1;
        let Some(sent) = self.awaiting.pop_front() else {
            let msg = match reply {
                Reply::Refused { error } => format!("server refused: {error}"),
                Reply::Stored { .. } => "server sent a reply for a file not sent".into(),
            };
            return self.fail(ctx, msg);
        };
        match reply {
            Reply::Refused { error } => {
                let msg = format!("server refused {}: {error}", sent.path.display());
                self.fail(ctx, msg);
            }
            Reply::Stored {
                file_name,
                bytes,
                sha256,
            } => {
                if bytes != sent.size || sha256 != sent.sha256 {
                    let msg = format!(
                        "{}: server stored {bytes} bytes with sha256 {sha256}, \
                         but {} bytes with sha256 {} were sent",
                        sent.path.display(),
                        sent.size,
                        sent.sha256
                    );
                    return self.fail(ctx, msg);
                }
                let line = format!(
                    "{} -> {file_name}: {bytes} bytes, sha256 {sha256}",
                    sent.path.display()
                );
                // On stdout (scripts read it), without tearing the bar on stderr.
                self.bar.suspend(|| println!("{line}"));
                self.stored.push(line);
                if self.all_sent && self.awaiting.is_empty() && self.current.is_none() {
                    if let Some(token) = self.token {
                        ctx.close(token, CloseReason::Done);
                    }
                    ctx.stop();
                }
            }
        }
    }
}

/// Open a file, and make its header frame (the name is the path's last component).
fn start_file(path: &Path) -> io::Result<(Outgoing, Vec<u8>)> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(context)?;
    let size = file.metadata().map_err(context)?.len();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: the file name is not UTF-8", path.display()),
            )
        })?
        .to_string();
    let header = UploadHeader {
        file_name: name,
        file_size: size,
    };
    let out = Outgoing {
        path: path.to_path_buf(),
        file,
        size,
        left: size,
        hasher: Sha256::new(),
    };
    Ok((out, header.encode()))
}

impl Handler for Sender {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, _token: Token) {
        self.connected = true;
        self.pump(ctx);
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, _token: Token, data: &mut [u8]) -> usize {
        let mut used = 0;
        if self.challenge_pending {
            let (Some(challenge), Some(secret)) = (data.get(..CHALLENGE_LEN), &self.secret) else {
                return 0; // wait for all 32 bytes
            };
            let answer = secret.answer(challenge);
            self.challenge_pending = false;
            if let Some(token) = self.token {
                ctx.send(token, &answer);
            }
            used = CHALLENGE_LEN;
            self.pump(ctx);
        }
        while self.failure.is_none() {
            match frames::decode_object(&data[used..], frames::DEFAULT_MAX_HEADER) {
                Err(FrameError::Incomplete) => break,
                Err(FrameError::Invalid(e)) => {
                    let hint = if self.replies == 0 && self.secret.is_none() {
                        " (does the server want --secret-file?)"
                    } else {
                        ""
                    };
                    let msg = format!("{}: not a reply frame: {e}{hint}", self.target);
                    self.fail(ctx, msg);
                }
                Ok((obj, n)) => {
                    used += n;
                    match Reply::from_object(&obj) {
                        Ok(reply) => self.on_reply(ctx, reply),
                        Err(e) => self.fail(ctx, format!("{}: {e}", self.target)),
                    }
                }
            }
        }
        if self.failure.is_some() {
            data.len()
        } else {
            used
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<()>, token: Token) {
        let outstanding =
            self.awaiting.len() + self.files.len() + usize::from(self.current.is_some());
        if outstanding > 0 {
            let msg = format!(
                "{} closed the connection with {outstanding} file(s) unconfirmed",
                self.target
            );
            self.fail(ctx, msg);
        } else {
            ctx.close_when_flushed(token);
        }
    }

    fn on_drained(&mut self, ctx: &mut Ctx<()>, _token: Token) {
        self.pump(ctx);
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, _token: Token, closed: Closed<()>) {
        let reason = &closed.reason;
        self.token = None;
        let msg = match reason {
            CloseReason::ConnectFailed(e) => format!("connect {}: {e}", self.target),
            CloseReason::Error(e) => format!("{}: {e}", self.target),
            CloseReason::IdleTimeout if self.connected && self.challenge_pending => format!(
                "no challenge received from {} — does the server run with --secret-file?",
                self.target
            ),
            CloseReason::IdleTimeout => format!("{}: no progress, gave up", self.target),
            _ if !self.awaiting.is_empty() || !self.all_sent => {
                format!(
                    "{}: connection closed before every file was confirmed",
                    self.target
                )
            }
            _ => String::new(),
        };
        if !msg.is_empty() {
            self.failure.get_or_insert(msg);
        }
        ctx.stop();
    }

    fn on_turn(&mut self, ctx: &mut Ctx<()>) {
        if self.resume {
            self.pump(ctx);
        }
    }
}

/// Send the files, check every reply; `Err` on any failure, refusal or mismatch.
pub fn upload(args: &UploadArgs) -> io::Result<()> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "--timeout must be >= 0"))?;
    let secret = args
        .secret_file
        .as_deref()
        .map(Secret::from_file)
        .transpose()?;
    // Check every file before connecting, and learn the total for the progress bar.
    let mut total = 0u64;
    for path in &args.files {
        let meta = std::fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        total += meta.len();
    }
    let (target, name) = match (&args.unix, &args.to) {
        (Some(path), _) => (Target::Unix(path.clone()), path.display().to_string()),
        (None, Some(text)) => (Target::Tcp(resolve_addr(text)?), text.clone()),
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--to ADDR or --unix PATH",
            ))
        }
    };
    let bar = if io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .map_err(|e| io::Error::other(format!("progress bar template: {e}")))?;
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    let config = LoopConfig {
        idle_timeout: Some(timeout),
        ..LoopConfig::default()
    };
    let mut event_loop: EventLoop<()> = EventLoop::new(config)?;
    let mut sender = Sender {
        target: name,
        files: args.files.iter().cloned().collect(),
        current: None,
        awaiting: VecDeque::new(),
        challenge_pending: secret.is_some(),
        connected: false,
        secret,
        replies: 0,
        token: None,
        chunk: vec![0; args.chunk.max(1)],
        resume: false,
        all_sent: false,
        bar,
        failure: None,
        stored: Vec::new(),
    };
    let started = Instant::now();
    sender.token = Some(event_loop.ctx().connect(&target, ())?);
    event_loop.run(&mut sender)?;
    sender.bar.finish_and_clear();
    if let Some(msg) = sender.failure {
        return Err(io::Error::other(msg));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "uploaded {} file(s), {total} bytes in {secs:.2} s ({:.1} MB/s)",
        sender.stored.len(),
        total as f64 / secs.max(1e-9) / 1e6
    );
    Ok(())
}
