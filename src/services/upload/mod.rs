//! Upload: seeds 000/004's framed file upload, served to many clients at once.
//!
//! Wire format (see `proto/frames.rs`): a 4-byte little-endian length, a JSON header with
//! `file_name`/`file_size` (or `filename`/`filesize`), then exactly `file_size` raw bytes;
//! any number of uploads per connection, back to back, without waiting for replies. After
//! each one the server sends a reply frame, `{"ok":true,"file_name":…,"bytes":N,
//! "sha256":…}`, in the order the uploads came; anything wrong gets
//! `{"ok":false,"error":…}` and the connection is closed (gracefully: FIN, then the rest
//! of the peer's bytes are discarded, so the reply is not destroyed by a reset).
//!
//! With a secret (`--secret-file`) every connection first gets a 32-byte challenge
//! (`proto/hmac_auth.rs`) and must answer it within the auth timeout: a handler deadline
//! (`Ctx::set_deadline`), separate from the loop's idle timeout, which keeps counting
//! the peer's input on its own. The same deadline then bounds each frame header: it
//! must be whole `--header-timeout` after its first byte (a trickle that keeps the idle
//! timeout away cannot extend it). At shutdown (`Handler::on_shutdown`) uploads still
//! arriving get `{"ok":false,"error":"server shutting down"}` and lose their temporary
//! file. Logging is per minute, not per upload (`report.rs`).
//!
//! **Where the loop thread stops and the pool starts.** On the loop: decoding frames,
//! checking names, copying body bytes into the upload's pending batch, replies, timers,
//! and the memory budget below. On the offload pool (`writer.rs`): creating the
//! temporary file, writing and hashing each batch, finishing (`fsync` the file, `link`
//! it into place under a free name, `fsync` the directory) and removing abandoned
//! temporary files. The line is drawn at the first system call on a file, because a
//! regular file is always "ready": one slow `fsync` on the loop thread would stall every
//! connection, while on a helper thread it only delays the one reply that waits for it.
//!
//! Readiness rules relied on: `on_data` may be called with any split of the stream, and
//! whatever it does not consume comes back with more bytes; input the handler holds back
//! with `Ctx::pause_reading` stays in the kernel, where TCP flow control slows the peer.
//! So a header is taken only when its whole frame is there, body bytes are consumed as
//! they arrive, and reading pauses when:
//!
//! - an upload is being **finished**: later pipelined frames wait, so replies stay in
//!   order (bytes already read past the upload are kept in `carry` and decoded when the
//!   reply is out, because a resumed connection is only offered *new* input);
//! - the connection's pending batch reaches `CONN_PENDING_MAX` while a job is writing
//!   the previous one (a disk slower than the network);
//! - all uploads together hold `TOTAL_MAX` bytes not yet written; such connections wait
//!   in `waiting` and resume, oldest first, as jobs complete.
//!
//! So memory is bounded per connection (two batches) and in total, whatever the disk.

mod input;
mod jobs;
mod names;
mod report;
pub mod store;
pub mod writer;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use log::{debug, info, warn};
use mio::Token;

use crate::core::timers::Millis;
use crate::core::{CloseReason, Closed, Ctx, Handler, Peer, Pool};
use crate::proto::frames::{Limits, Reply, UploadDecoder};
use crate::proto::frames::{DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_HEADER};
use crate::proto::hmac_auth::{self, Secret, CHALLENGE_LEN};
use jobs::owner_of;
use report::{Report, Warn, REPORT_TIMER};
use store::Store;
use writer::{Done, Writer};

/// `--idle-timeout` of the upload service when none is given: a client that sends nothing
/// for this long, mid-header or mid-file, is dropped and its temporary file removed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client has to answer the challenge unless told otherwise.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to deliver a whole frame header (length prefix and JSON),
/// counted from its first byte, unless told otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Helper threads for disk work. More than the cores: most of their time is spent
/// waiting for the disk (`fsync`), and 100 uploads finishing at once should not wait in
/// one line; hashing, the CPU part, is spread over them too.
const POOL_THREADS: usize = 4;
/// A pending batch this large is handed to the pool without waiting for the read burst
/// to end (if no job of the upload is in flight).
const BATCH: usize = 256 * 1024;
/// Reading of a connection pauses while its pending batch is this large (a job is
/// writing the previous one): per connection at most about two of these are held.
const CONN_PENDING_MAX: usize = 1024 * 1024;
/// Body bytes held in memory by all uploads together (pending or in jobs) before
/// connections that add more are paused. The pool works on `POOL_THREADS` batches at a
/// time, so this is a queue of several batches per thread, not a cache.
const TOTAL_MAX: usize = 32 * 1024 * 1024;
/// Batch buffers kept for reuse (each about 1 MiB): enough for the pool's threads and
/// the batches filling meanwhile; more would only hold memory while the server idles.
const SPARES: usize = 2 * POOL_THREADS;
/// What one resumed connection may read before it is checked again (a read is at most
/// the loop's 64 KiB scratch buffer, plus a kept partial header): resuming stops when the
/// budget has no room for another one.
const RESUME_ALLOWANCE: usize = 128 * 1024;

/// Why a connection's reading is paused (bits of `UploadConn::hold`).
mod hold {
    /// An upload is being finished; later frames wait so replies stay in order.
    pub const FINISHING: u8 = 1;
    /// The pending batch is at `CONN_PENDING_MAX`.
    pub const FULL: u8 = 2;
    /// All uploads together are at `TOTAL_MAX`.
    pub const BUDGET: u8 = 4;
}

/// Options of the upload service (the command line's are in the binary's `cli`).
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Directory to store files in (created if missing).
    pub dir: PathBuf,
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Largest JSON header accepted, in bytes.
    pub max_header: usize,
    /// Require HMAC-SHA256 challenge/response with the secret in this file.
    pub secret_file: Option<PathBuf>,
    /// How long a client has to answer the challenge.
    pub auth_timeout: Duration,
    /// How long a client has to deliver a whole frame header, from its first byte: a
    /// byte now and then keeps the idle timeout away, but cannot extend this.
    pub header_timeout: Duration,
}

impl UploadOptions {
    /// Defaults for everything but the directory.
    pub fn new(dir: PathBuf) -> UploadOptions {
        UploadOptions {
            dir,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_header: DEFAULT_MAX_HEADER,
            secret_file: None,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Where one connection is.
#[derive(Debug, Default)]
pub struct UploadConn {
    /// Serial number (from 1; 0 is a slot already closed): job results name it, since
    /// a token may belong to another connection by the time a result comes back.
    id: u64,
    /// The challenge sent, while its answer is awaited (boxed: most servers run
    /// without authentication, and idle slots should stay small).
    challenge: Option<Box<[u8; CHALLENGE_LEN]>>,
    /// Header/body position in the stream.
    decoder: UploadDecoder,
    /// The upload being received or finished.
    current: Option<Box<Writer>>,
    /// Input read past an upload being finished, decoded once its reply is out.
    carry: Vec<u8>,
    /// Why reading is paused (`hold` bits); 0: reading.
    hold: u8,
    /// The idle timeout came while we held reading (not the peer's fault): it was put
    /// off with a handler deadline, which new input cancels.
    idle_deferred: bool,
    /// When the first byte of a header still incomplete arrived (loop clock): the
    /// header deadline counts from here, whatever trickles in after it.
    header_since: Option<Millis>,
    /// An error reply was sent: discard everything else.
    refused: bool,
    /// The peer, for the log line when a partial upload is discarded in `on_close`
    /// (by then the slot, and with it `Ctx::peer`, is gone).
    peer: Option<Peer>,
}

/// The upload service.
pub struct Upload {
    store: Store,
    limits: Limits,
    secret: Option<Secret>,
    auth_timeout: Duration,
    header_timeout: Duration,
    /// Helper threads for the disk, started with the first job (they need the loop's
    /// waker, which exists only once the loop runs).
    pool: Option<Pool<Done>>,
    /// Last serial number given to a connection or an upload.
    serial: u64,
    /// Body bytes in memory: pending batches plus batches in jobs.
    buffered: usize,
    /// Connections paused for the total budget, oldest first (token, serial).
    waiting: VecDeque<(Token, u64)>,
    /// Emptied batch buffers back from jobs, for new batches (at most `SPARES`).
    spares: Vec<Vec<u8>>,
    /// Files stored, refusals, bytes stored: logged at shutdown.
    stored: u64,
    refusals: u64,
    bytes: u64,
    /// Uploads cut off by shutdown (counted apart from refusals).
    shutdown_cuts: u64,
    /// The same counts since the last per-minute INFO line, and the refusal warnings'
    /// rate limit.
    report: Report,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("dir", &self.store.dir())
            .field(
                "jobs_in_flight",
                &self.pool.as_ref().map_or(0, Pool::in_flight),
            )
            .field("buffered", &self.buffered)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// The service for these options (opens the directory, reads the secret).
    pub fn new(opts: &UploadOptions) -> io::Result<Upload> {
        let secret = opts
            .secret_file
            .as_deref()
            .map(Secret::from_file)
            .transpose()?;
        Ok(Upload {
            store: Store::open(&opts.dir)?,
            limits: Limits {
                max_header: opts.max_header,
                max_file_size: opts.max_file_size,
            },
            secret,
            auth_timeout: opts.auth_timeout,
            header_timeout: opts.header_timeout,
            pool: None,
            serial: 0,
            buffered: 0,
            waiting: VecDeque::new(),
            spares: Vec::new(),
            stored: 0,
            refusals: 0,
            bytes: 0,
            report: Report::default(),
            shutdown_cuts: 0,
        })
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Send an error reply, drop any partial file, and close after the reply is out.
    fn refuse(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, error: String) {
        self.refusals += 1;
        self.report.refused();
        self.cut_off(ctx, token, error);
    }

    /// `refuse` without counting a refusal (shutdown is not the client's fault).
    fn cut_off(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, error: String) {
        let Some(state) = ctx.state_mut(token) else {
            return;
        };
        state.refused = true;
        state.challenge = None;
        state.carry = Vec::new();
        state.hold = 0; // the close that follows ends any pause
        let owner = owner_of(state, token);
        if let Some(writer) = state.current.take() {
            self.abandon(ctx, *writer, owner);
        }
        ctx.send(token, &Reply::Refused { error }.encode());
        ctx.close_when_flushed(token);
    }
}

fn peer_name(ctx: &Ctx<UploadConn>, token: Token) -> String {
    ctx.peer(token).map(|p| p.to_string()).unwrap_or_default()
}

impl Handler for Upload {
    type State = UploadConn;

    fn on_open(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        self.report.start(ctx);
        let id = self.next_serial();
        let peer = ctx.peer(token);
        if let Some(state) = ctx.state_mut(token) {
            state.id = id;
            state.peer = peer;
        }
        if self.secret.is_none() {
            return;
        }
        match hmac_auth::challenge() {
            Ok(challenge) => {
                if let Some(state) = ctx.state_mut(token) {
                    state.challenge = Some(Box::new(challenge));
                }
                ctx.send(token, &challenge);
                // Only the answer's deadline: the idle timeout runs beside it, alone.
                ctx.set_deadline(token, self.auth_timeout);
            }
            Err(e) => {
                warn!("{}: {e}", peer_name(ctx, token));
                ctx.close(token, CloseReason::Error(e));
            }
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, data: &mut [u8]) -> usize {
        self.input(ctx, token, data)
    }

    fn on_burst_end(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        // The peer paused: what arrived goes to disk now, however little.
        self.submit(ctx, token);
    }

    fn on_eof(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        self.eof(ctx, token);
    }

    fn on_idle(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let Some(state) = ctx.state_mut(token) else {
            return;
        };
        if state.hold != 0 && !state.refused {
            // We hold the peer back (finishing, or a slow disk): its silence is ours.
            // Look again one idle period later, unless it sends something first.
            state.idle_deferred = true;
            let idle = ctx.config().idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
            ctx.set_deadline(token, idle);
        } else {
            ctx.close(token, CloseReason::IdleTimeout);
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let Some(state) = ctx.state(token) else {
            return;
        };
        if state.challenge.is_some() && !state.refused {
            let peer = peer_name(ctx, token);
            let message = format_args!(
                "{peer}: no authentication answer within {:?}; dropped",
                self.auth_timeout
            );
            self.report.warn(ctx, Warn::AuthTimeout, message);
            self.refuse(ctx, token, "authentication timed out".into());
        } else if state.idle_deferred {
            self.on_idle(ctx, token);
        } else if let Some(since) = state.header_since.filter(|_| !state.refused) {
            let limit = self.header_timeout;
            let late = ctx.now().saturating_sub(since);
            let message = format_args!(
                "{}: frame header not complete {late} ms after its first byte; dropped",
                peer_name(ctx, token)
            );
            self.report.warn(ctx, Warn::HeaderTimeout, message);
            let error = format!("frame header not complete within {limit:?}");
            self.refuse(ctx, token, error);
        } else {
            ctx.close(token, CloseReason::Timeout);
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<UploadConn>, key: u64) {
        let _ = ctx;
        if key == REPORT_TIMER {
            self.report.tick();
        }
    }

    fn on_wake(&mut self, ctx: &mut Ctx<UploadConn>) {
        while let Some(done) = self.pool.as_mut().and_then(Pool::try_recv) {
            self.job_done(ctx, done);
        }
        self.release_budget(ctx);
    }

    fn on_close(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, closed: Closed<UploadConn>) {
        let (mut state, reason) = (closed.state, &closed.reason);
        let owner = owner_of(&state, token);
        if let Some(writer) = state.current.take() {
            let peer = state.peer.map(|p| p.to_string()).unwrap_or_default();
            if writer.is_last() {
                // Every byte is here and the finishing job runs on: the file is stored
                // whole (or not at all), only its reply has nobody to go to.
                debug!(
                    "{peer}: connection closed while {:?} was being stored: {reason}",
                    writer.name
                );
            } else {
                debug!(
                    "{peer}: partial upload {:?} discarded ({} of {} bytes): {reason}",
                    writer.name, writer.received, writer.size
                );
            }
            self.abandon(ctx, *writer, owner);
            self.release_budget(ctx);
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<UploadConn>) {
        // Uploads still arriving (a partial header or body) will not be finished: say so,
        // and drop their temporary files (on the pool, which is joined before the process
        // exits). An upload whose last byte is here is finished as usual (stored whole),
        // but its reply is lost if the connection's queue empties, and it closes, first.
        let tokens: Vec<Token> = ctx.tokens().collect();
        for token in tokens {
            let partial_header = !ctx.unconsumed(token).is_empty();
            let Some(state) = ctx.state(token) else {
                continue;
            };
            let receiving = state.current.as_ref().is_some_and(|w| !w.is_last());
            let header = partial_header || (state.current.is_none() && !state.carry.is_empty());
            if state.refused || !(receiving || header) {
                continue;
            }
            debug!("{}: upload cut off by shutdown", peer_name(ctx, token));
            self.shutdown_cuts += 1;
            self.cut_off(ctx, token, "server shutting down".into());
        }
        info!(
            "upload summary: stored={} bytes={} refused={} cut off by shutdown={} dir={}",
            self.stored,
            self.bytes,
            self.refusals,
            self.shutdown_cuts,
            self.store.dir().display()
        );
    }
}
