//! `netloop upload FILE... --to ADDR`: the upload client, on the loop.
//!
//! Seed 004's clients open the file and `send` it in 1 KiB pieces in a blocking loop,
//! then (sometimes) `recv` a reply. Here one connection on the loop does the same with
//! bounded memory, and without ever blocking the loop thread on the disk:
//!
//! **Where the loop thread stops and the pool starts.** Opening a file, reading it and
//! hashing it (SHA-256, to check the server's reply) are jobs on a one-thread offload
//! pool; the loop thread only sends what comes back. Reading a file blocks whenever the
//! page cache misses, and hashing is the most CPU an upload costs, so both leave the loop
//! free to keep the socket full while the next chunk is read: the two run side by side.
//! A job carries the file being read (and its running hash) and returns it with the
//! chunk, so there is one read in flight and chunks come back in order. At most
//! `READ_AHEAD` chunks wait to be sent, and a chunk is sent only while the connection's
//! outbound queue is empty: when the kernel's send buffer fills, the rest of a chunk is
//! queued, the loop's writable edge flushes it, and `on_drained` sends the next.
//!
//! Files are sent back to back without waiting for replies (as the seeds do); replies
//! are read as they come and each is checked against what was sent: the byte count and
//! the SHA-256 computed while reading the file.
//!
//! `--timeout` is the loop's idle timeout with `IdleCounts::Both`: an upload mostly
//! *sends*, and the reply only comes after the last byte, so counting input alone would
//! give up on every upload that takes longer than the timeout. Progress either way
//! (the server taking bytes, or replying) keeps the connection alive. One stretch stays
//! invisible: after the last write, the kernel's send buffer (up to 4 MiB with Linux's
//! defaults) drains with no event the loop can see, so over a link slower than about
//! that size per `--timeout` the client gives up while its last bytes are still on their
//! way. The loop offers no view of a socket's unsent bytes (`SIOCOUTQ`) to do better.
//!
//! Readiness rules relied on: `on_drained` fires only after a queued write completes; a
//! `send` that wrote everything at once gets no `on_drained`, so the sending loop goes
//! on by itself while the queue stays empty. Reply frames may arrive in any split;
//! unconsumed bytes come back.

use std::collections::VecDeque;
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mio::Token;

mod read;

use crate::core::{CloseReason, Closed, Handler, IdleCounts, Pool};
use crate::core::{Ctx, EventLoop, LoopConfig, Target};
use crate::proto::frames::{self, FrameError, Reply};
use crate::proto::hmac_auth::{Secret, CHALLENGE_LEN};
use read::{open, read_chunk, Piece, Sent, Source};

/// Options of the upload client (the command line's are in the binary's `cli`).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Files to send, in order, on one connection.
    pub files: Vec<PathBuf>,
    /// The server.
    pub target: Target,
    /// The server as the user named it, for messages.
    pub target_name: String,
    /// Answer the server's HMAC challenge with the secret in this file.
    pub secret_file: Option<PathBuf>,
    /// Give up when nothing was sent or received for this long.
    pub timeout: Duration,
    /// Bytes read from disk and sent at a time.
    pub chunk: usize,
}

/// Chunks read ahead of the socket (besides the one being read).
const READ_AHEAD: usize = 2;
/// The progress bar's redraw period while nothing moves (its speed and ETA decay).
const TICK: Duration = Duration::from_millis(500);
/// `on_timer` key of the progress bar's tick.
const TICK_KEY: u64 = 1;

/// The client's handler: one connection, so its state lives here.
struct Sender {
    target: String,
    token: Option<Token>,
    /// Files not opened yet.
    files: VecDeque<PathBuf>,
    /// The file being read, while it is here (between jobs).
    source: Option<Box<Source>>,
    /// The reading thread, and whether a job is in flight there.
    reader: Pool<Piece>,
    reading: bool,
    /// Every file has been read to its end.
    all_read: bool,
    /// Header frames and chunks read, in order, waiting for the socket.
    ready: VecDeque<Vec<u8>>,
    /// Buffers sent, to read the next chunks into.
    spare: Vec<Vec<u8>>,
    chunk: usize,
    /// Files whose bytes are all read, waiting for their replies, in order.
    awaiting: VecDeque<Sent>,
    secret: Option<Secret>,
    /// The server's challenge is still to come.
    challenge_pending: bool,
    /// The connection was established (`on_open`).
    connected: bool,
    /// Our half of the connection is shut (every byte sent).
    all_sent: bool,
    /// Replies received so far (to hint at a missing `--secret-file` on the first one).
    replies: usize,
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

    /// Start the next reading job, if there is room and something to read.
    fn read_more(&mut self) {
        if self.reading || self.all_read || self.ready.len() >= READ_AHEAD {
            return;
        }
        if let Some(source) = self.source.take() {
            let buf = self.spare.pop().unwrap_or_default();
            let chunk = self.chunk;
            self.reader.submit(move || read_chunk(source, buf, chunk));
        } else if let Some(path) = self.files.pop_front() {
            self.reader
                .submit(move || open(path).unwrap_or_else(|e| Piece::Failed(e.to_string())));
        } else {
            self.all_read = true;
            return;
        }
        self.reading = true;
    }

    /// Send what is ready while the outbound queue is empty; read more behind it.
    fn pump(&mut self, ctx: &mut Ctx<()>) {
        let Some(token) = self.token else { return };
        if !self.connected || self.challenge_pending || self.failure.is_some() {
            return;
        }
        if !ctx.is_open(token) {
            return;
        }
        while ctx.queued(token) == 0 {
            let Some(bytes) = self.ready.pop_front() else {
                break;
            };
            ctx.send(token, &bytes);
            self.bar.inc(bytes.len() as u64);
            // `send` wrote or copied the bytes: the buffer can take the next chunk (its
            // length is kept, so it is not zeroed again before the read).
            if bytes.capacity() > 0 && self.spare.len() <= READ_AHEAD {
                self.spare.push(bytes);
            }
            self.read_more();
        }
        self.read_more();
        if self.all_read && !self.reading && self.ready.is_empty() && !self.all_sent {
            self.all_sent = true;
            // Like seed 000's client closing after its last byte, but only our half:
            // the replies still come back.
            ctx.shutdown_write_when_flushed(token);
        }
    }

    /// A reading job's result.
    fn on_piece(&mut self, ctx: &mut Ctx<()>, piece: Piece) {
        self.reading = false;
        match piece {
            Piece::Opened(source, header) => {
                self.source = Some(source);
                self.ready.push_back(header);
            }
            Piece::Chunk(source, bytes) => {
                self.source = Some(source);
                self.ready.push_back(bytes);
            }
            Piece::Last(sent, bytes) => {
                self.awaiting.push_back(sent);
                self.ready.push_back(bytes);
            }
            Piece::Failed(msg) => return self.fail(ctx, msg),
        }
        self.read_more();
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
        let (file_name, bytes, sha256) = match reply {
            Reply::Refused { error } => {
                let msg = format!("server refused {}: {error}", sent.path.display());
                return self.fail(ctx, msg);
            }
            Reply::Stored {
                file_name,
                bytes,
                sha256,
            } => (file_name, bytes, sha256),
        };
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
        if self.all_sent && self.awaiting.is_empty() {
            if let Some(token) = self.token {
                ctx.close(token, CloseReason::Done);
            }
            ctx.stop();
        }
    }

    /// Files not yet confirmed by a reply.
    fn outstanding(&self) -> usize {
        let reading = usize::from(self.source.is_some() || self.reading);
        self.awaiting.len() + self.files.len() + reading
    }
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
                        Err(e) => {
                            // Our own header coming back means an echo server, not an
                            // upload service: say so rather than only what is missing.
                            let ours =
                                obj.contains_key("file_size") || obj.contains_key("filesize");
                            let what = if ours {
                                "the server sent our own header back: it looks like an echo \
                                 server, not `netloop serve upload`"
                            } else {
                                "is this `netloop serve upload` (or a seed's upload server)?"
                            };
                            self.fail(ctx, format!("{}: {e}; {what}", self.target));
                        }
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
        let outstanding = self.outstanding();
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

    fn on_wake(&mut self, ctx: &mut Ctx<()>) {
        while let Some(piece) = self.reader.try_recv() {
            self.on_piece(ctx, piece);
        }
        self.pump(ctx);
    }

    fn on_timer(&mut self, _ctx: &mut Ctx<()>, key: u64) {
        if key == TICK_KEY {
            self.bar.tick();
        }
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
            CloseReason::IdleTimeout if !self.connected => format!(
                "{}: no connection within --timeout (the server does not answer: down, \
                 its backlog full, or filtered)",
                self.target
            ),
            CloseReason::IdleTimeout => format!(
                "{}: no progress for --timeout (nothing sent or received), gave up",
                self.target
            ),
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
}

/// Send the files, check every reply; `Err` on any failure, refusal or mismatch.
pub fn upload(opts: &ClientOptions) -> io::Result<()> {
    let secret = opts
        .secret_file
        .as_deref()
        .map(Secret::from_file)
        .transpose()?;
    // Check every file before connecting, and learn the total for the progress bar.
    let mut total = 0u64;
    for path in &opts.files {
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
        idle_timeout: Some(opts.timeout),
        // Sending is progress too: see the module docs.
        idle_counts: IdleCounts::Both,
        ..LoopConfig::default()
    };
    let mut event_loop: EventLoop<()> = EventLoop::new(config)?;
    let reader = Pool::new("upload-read", 1, event_loop.waker()?)?;
    if !bar.is_hidden() {
        event_loop.ctx().timer_every(TICK, TICK_KEY);
    }
    let mut sender = Sender {
        target: opts.target_name.clone(),
        token: None,
        files: opts.files.iter().cloned().collect(),
        source: None,
        reader,
        reading: false,
        all_read: false,
        ready: VecDeque::new(),
        spare: Vec::new(),
        chunk: opts.chunk.max(1),
        awaiting: VecDeque::new(),
        challenge_pending: secret.is_some(),
        connected: false,
        secret,
        all_sent: false,
        replies: 0,
        bar,
        failure: None,
        stored: Vec::new(),
    };
    let started = Instant::now();
    // Open and read the first file while connecting.
    sender.read_more();
    sender.token = Some(event_loop.ctx().connect(&opts.target, ())?);
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
