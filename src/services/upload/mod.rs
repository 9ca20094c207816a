//! Upload: seeds 000/004's framed file upload, served to many clients at once.
//!
//! Wire format (see `framing.rs`): a 4-byte little-endian length, a JSON header with
//! `file_name`/`file_size` (or `filename`/`filesize`), then exactly `file_size` raw bytes;
//! any number of uploads per connection, back to back, without waiting for replies. After
//! each one the server sends a reply frame, `{"ok":true,"file_name":…,"bytes":N,
//! "sha256":…}`; anything wrong gets `{"ok":false,"error":…}` and the connection is closed
//! (gracefully: FIN, then the rest of the peer's bytes are discarded, so the reply is not
//! destroyed by a reset).
//!
//! With `--secret-file` every connection first gets a 32-byte challenge (`auth.rs`) and
//! must answer it within `--auth-timeout`.
//!
//! Readiness rule relied on: `on_data` may be called with any split of the stream, and
//! whatever it does not consume comes back with more bytes. So a header is taken only
//! when its whole frame is there (a partial one is left unconsumed, bounded by
//! `--max-header`), while body bytes are consumed — written to the temporary file — as
//! soon as they arrive. Memory per upload is one write buffer, whatever the file size.

pub mod store;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use log::{debug, info, warn};
use mio::Token;

use crate::core::Ctx;
use crate::core::Millis;
use crate::core::Peer;
use crate::core::{CloseReason, Closed, Handler, SignalAction};
use crate::proto::frames::{FrameError, Item, Limits, Reply, UploadDecoder, DEFAULT_MAX_FILE_SIZE};
use crate::proto::hmac_auth::{self, Secret, CHALLENGE_LEN};
use store::{check_file_name, Partial, Store};

/// `--idle-timeout` of the upload service when none is given: a client that sends nothing
/// for this long, mid-header or mid-file, is dropped and its temporary file removed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `netloop serve upload` (flattened into `ServeArgs`).
#[derive(Clone, Debug, clap::Args)]
pub struct UploadOptions {
    /// upload: directory to store files in (created if missing); required for the upload
    /// service. An existing file is never overwritten: a taken name is stored as
    /// `name (1).ext`, `name (2).ext`, ...
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// upload: largest file accepted, in bytes (default 10 GiB).
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, value_name = "BYTES")]
    pub max_file_size: u64,
    /// upload: largest JSON header accepted, in bytes.
    #[arg(long, default_value_t = crate::proto::frames::DEFAULT_MAX_HEADER, value_name = "BYTES")]
    pub max_header: usize,
    /// upload: require HMAC-SHA256 challenge/response with the secret in this file (its
    /// bytes, one trailing newline removed).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// upload: seconds a client has to answer the challenge.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub auth_timeout: f64,
}

impl UploadOptions {
    /// True when any upload option was given (they make no sense for other services).
    pub fn any_given(&self) -> bool {
        self.dir.is_some()
            || self.secret_file.is_some()
            || self.max_file_size != DEFAULT_MAX_FILE_SIZE
            || self.max_header != crate::proto::frames::DEFAULT_MAX_HEADER
            || self.auth_timeout != 5.0
    }

    /// The same options as command-line arguments, for `serve --workers` children.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dir) = &self.dir {
            out.push(format!("--dir={}", dir.display()));
        }
        out.push(format!("--max-file-size={}", self.max_file_size));
        out.push(format!("--max-header={}", self.max_header));
        if let Some(path) = &self.secret_file {
            out.push(format!("--secret-file={}", path.display()));
        }
        out.push(format!("--auth-timeout={}", self.auth_timeout));
        out
    }
}

/// Where one connection is.
#[derive(Debug, Default)]
pub struct UploadConn {
    /// The challenge sent, while its answer is awaited (boxed: most servers run
    /// without authentication, and idle slots should stay small).
    challenge: Option<Box<[u8; CHALLENGE_LEN]>>,
    /// When the answer is due (the loop's idle timeout may move the deadline; this not).
    auth_due: Millis,
    /// Header/body position in the stream.
    decoder: UploadDecoder,
    /// The file being received.
    current: Option<Box<Partial>>,
    /// An error reply was sent: discard everything else.
    refused: bool,
    /// The peer, for the log line when a partial upload is discarded in `on_close`
    /// (by then the slot, and with it `Ctx::peer`, is gone).
    peer: Option<Peer>,
}

/// The upload service.
#[derive(Debug)]
pub struct Upload {
    store: Store,
    limits: Limits,
    secret: Option<Secret>,
    auth_timeout: Duration,
    /// Files stored, refusals, bytes stored: logged at shutdown.
    stored: u64,
    refusals: u64,
    bytes: u64,
}

impl Upload {
    /// The service for these options (opens the directory, reads the secret).
    pub fn new(opts: &UploadOptions) -> io::Result<Upload> {
        let dir = opts.dir.as_ref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "serve upload needs --dir DIR")
        })?;
        let auth_timeout = Duration::try_from_secs_f64(opts.auth_timeout).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "--auth-timeout must be >= 0")
        })?;
        let secret = opts
            .secret_file
            .as_deref()
            .map(Secret::from_file)
            .transpose()?;
        Ok(Upload {
            store: Store::open(dir)?,
            limits: Limits {
                max_header: opts.max_header,
                max_file_size: opts.max_file_size,
            },
            secret,
            auth_timeout,
            stored: 0,
            refusals: 0,
            bytes: 0,
        })
    }

    /// Send an error reply, drop any partial file, and close after the reply is out.
    fn refuse(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, error: String) {
        self.refusals += 1;
        if let Some(state) = ctx.state_mut(token) {
            state.refused = true;
            state.challenge = None;
            state.current = None; // dropping the Partial removes its temporary file
        }
        ctx.send(token, &Reply::Refused { error }.encode());
        ctx.close_when_flushed(token);
    }

    /// Check the 32-byte answer at the start of `data`; returns bytes used (0: wait).
    fn authenticate(
        &mut self,
        ctx: &mut Ctx<UploadConn>,
        token: Token,
        data: &[u8],
    ) -> Option<usize> {
        let peer = ctx.peer(token)?;
        let now = ctx.now();
        let state = ctx.state_mut(token)?;
        let challenge = state.challenge.as_deref().copied()?;
        let Some(answer) = data.get(..CHALLENGE_LEN) else {
            // Incomplete. Traffic may have pushed the deadline to the idle timeout;
            // put it back to the time the answer is due.
            let left = Duration::from_millis(state.auth_due.saturating_sub(now));
            ctx.set_deadline(token, left);
            return Some(0);
        };
        let secret = self.secret.as_ref()?;
        if secret.verify(&challenge, answer) {
            state.challenge = None;
            // The auth deadline is over; the idle timeout (if any) counts from this read.
            ctx.clear_deadline(token);
            ctx.touch(token);
            info!("{peer}: authenticated");
            Some(CHALLENGE_LEN)
        } else {
            warn!("{peer}: authentication failed (wrong answer)");
            self.refuse(ctx, token, "authentication failed".into());
            None
        }
    }

    /// Act on one decoded item. Returns false when the connection was refused.
    fn handle(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, item: Item<'_>) -> bool {
        let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
        let Some(state) = ctx.state_mut(token) else {
            return false;
        };
        let error = match item {
            Item::Header(header) => {
                if let Err(why) = check_file_name(&header.file_name) {
                    warn!("{peer}: refused: {why}");
                    self.refuse(ctx, token, why);
                    return false;
                }
                match self.store.begin(&header.file_name, header.file_size) {
                    Ok(partial) => {
                        debug!(
                            "{peer}: receiving {:?}, {} bytes",
                            partial.name, partial.size
                        );
                        state.current = Some(Box::new(partial));
                        return true;
                    }
                    Err(e) => (header.file_name, e),
                }
            }
            Item::Body { bytes, last } => {
                let Some(partial) = state.current.as_mut() else {
                    return true; // cannot happen: the decoder yields a header first
                };
                if let Err(e) = partial.write(bytes) {
                    (partial.name.clone(), e)
                } else if !last {
                    return true;
                } else {
                    let Some(partial) = state.current.take() else {
                        return true;
                    };
                    let name = partial.name.clone();
                    match self.store.finish(*partial) {
                        Ok(stored) => {
                            info!(
                                "{peer}: stored {:?} ({} bytes, sha256 {})",
                                stored.name, stored.bytes, stored.sha256
                            );
                            self.stored += 1;
                            self.bytes += stored.bytes;
                            let reply = Reply::Stored {
                                file_name: stored.name,
                                bytes: stored.bytes,
                                sha256: stored.sha256,
                            };
                            ctx.send(token, &reply.encode());
                            return true;
                        }
                        Err(e) => (name, e),
                    }
                }
            }
        };
        // A disk error: the log gets the paths, the client the file name and the cause.
        let (name, e) = error;
        warn!("{peer}: cannot store {name:?}: {e}");
        let cause = io::Error::from(e.kind());
        self.refuse(ctx, token, format!("cannot store {name:?}: {cause}"));
        false
    }
}

impl Handler for Upload {
    type State = UploadConn;

    fn on_open(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let peer = ctx.peer(token);
        if let Some(state) = ctx.state_mut(token) {
            state.peer = peer;
        }
        if self.secret.is_none() {
            return;
        }
        match hmac_auth::challenge() {
            Ok(challenge) => {
                let due = ctx.now() + self.auth_timeout.as_millis() as Millis;
                if let Some(state) = ctx.state_mut(token) {
                    state.challenge = Some(Box::new(challenge));
                    state.auth_due = due;
                }
                ctx.send(token, &challenge);
                ctx.set_deadline(token, self.auth_timeout);
            }
            Err(e) => {
                warn!(
                    "{}: {e}",
                    ctx.peer(token).map(|p| p.to_string()).unwrap_or_default()
                );
                ctx.close(token, CloseReason::Error(e));
            }
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, data: &mut [u8]) -> usize {
        let mut used = 0;
        loop {
            let Some(state) = ctx.state_mut(token) else {
                return data.len();
            };
            if state.refused {
                return data.len();
            }
            if state.challenge.is_some() {
                match self.authenticate(ctx, token, &data[used..]) {
                    Some(0) => return used,
                    Some(n) => {
                        used += n;
                        continue;
                    }
                    None => return data.len(),
                }
            }
            match state.decoder.decode(&data[used..], &self.limits) {
                Err(FrameError::Incomplete) => return used,
                Err(FrameError::Invalid(e)) => {
                    let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
                    warn!("{peer}: refused: {e}");
                    self.refuse(ctx, token, e.to_string());
                    return data.len();
                }
                Ok((item, n)) => {
                    used += n;
                    if !self.handle(ctx, token, item) {
                        return data.len();
                    }
                }
            }
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
        let unconsumed = ctx.unconsumed(token).len();
        let Some(state) = ctx.state_mut(token) else {
            return;
        };
        let why = if state.refused {
            None
        } else if let Some(p) = &state.current {
            Some(format!(
                "connection ended after {} of {} bytes of {:?}",
                p.written, p.size, p.name
            ))
        } else if state.challenge.is_some() {
            Some("connection ended before the authentication answer".to_string())
        } else if unconsumed > 0 {
            Some(format!(
                "connection ended inside a header ({unconsumed} bytes)"
            ))
        } else {
            None
        };
        match why {
            Some(why) => {
                // The peer only half-closed: it can still read why nothing was stored.
                info!("{peer}: {why}; discarded");
                self.refuse(ctx, token, why);
            }
            None => ctx.close_when_flushed(token),
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let waiting = ctx
            .state(token)
            .is_some_and(|s| s.challenge.is_some() && !s.refused);
        if waiting {
            let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
            warn!(
                "{peer}: no authentication answer within {:?}; dropped",
                self.auth_timeout
            );
            self.refuse(ctx, token, "authentication timed out".into());
        } else {
            ctx.close(token, CloseReason::IdleTimeout);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, closed: Closed<UploadConn>) {
        let (state, reason) = (closed.state, &closed.reason);
        let _ = (ctx, token);
        if let Some(p) = state.current {
            // Dropping `p` (end of this block) removes the temporary file.
            let peer = state.peer.map(|p| p.to_string()).unwrap_or_default();
            info!(
                "{peer}: partial upload {:?} discarded ({} of {} bytes): {reason}",
                p.name, p.written, p.size
            );
        }
    }

    fn on_signal(&mut self, ctx: &mut Ctx<UploadConn>, signal: i32) -> SignalAction {
        let _ = ctx;
        if signal == libc::SIGINT || signal == libc::SIGTERM {
            info!(
                "upload summary: stored={} bytes={} refused={} dir={}",
                self.stored,
                self.bytes,
                self.refusals,
                self.store.dir().display()
            );
            SignalAction::Shutdown
        } else {
            SignalAction::Handled
        }
    }
}
