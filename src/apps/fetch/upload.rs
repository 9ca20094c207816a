//! Sending a request body from a file (`--data-binary @FILE`), a piece at a time.
//!
//! The head goes out first (`exchange.rs`), with the `Content-Length` taken from the
//! file's size when the run started; then the file is read from its start in pieces of
//! `PIECE` bytes, each handed to `ctx.send` (through the TLS session for https), for as
//! long as the connection's outbound queue stays under the loop's watermark. Once
//! `send` answers `OverWatermark`, sending stops, and the loop's `on_drained` (the queue
//! is empty again) resumes it. Through TLS the pieces are 16 KiB (one record) and wait
//! for the handshake: until it is done rustls would only buffer them (and refuse past
//! 64 KiB); the server's last handshake message resumes the upload (`resume_upload`). So what an upload holds is one piece here and at most a
//! watermark's worth in the loop's queue, whatever the file's size.
//!
//! Why the file is read on the loop thread, not on a helper: a regular file is always
//! "ready" to epoll (it cannot be registered at all), a read of 64 KiB from the page
//! cache costs microseconds, and the read happens only when the socket has room. A body
//! on a slow network file system would stall the loop while a piece is read; that is
//! the trade made for simplicity, and the place to add an offload pool if it matters.
//!
//! Every request reads the file again from the start: a 307/308 redirect and a retry on
//! a fresh connection resend the body whole. A file that became shorter than its
//! `Content-Length` fails that URL (the server would wait for bytes that never come).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use mio::Token;

use super::fetcher::{Fetcher, Link};
use super::request::Body;
use crate::core::{Ctx, SendStatus};

/// Bytes read from the file and sent at a time.
const PIECE: usize = 64 * 1024;
/// The same through TLS: one record's worth, so rustls's outgoing buffer (64 KiB by
/// default, emptied after each piece) always takes the whole piece.
const TLS_PIECE: usize = 16 * 1024;

/// A file body being sent on a transfer's connection.
#[derive(Debug)]
pub struct Upload {
    /// The file, open for reading, positioned after what was sent.
    file: File,
    /// Its name, for messages.
    path: PathBuf,
    /// Bytes still to send.
    left: u64,
    /// Bytes the request promised.
    len: u64,
}

impl Upload {
    /// True once every byte of the body was handed to the loop.
    pub fn done(&self) -> bool {
        self.left == 0
    }
}

impl Fetcher {
    /// The head of transfer `id`'s request was sent on `token`: send its file body, if
    /// it has one (an in-memory body went out with the head).
    pub(super) fn start_upload(&mut self, ctx: &mut Ctx<Link>, id: usize, token: Token) {
        let Some(t) = self.transfers.get_mut(id) else {
            return;
        };
        t.upload = None;
        let Some(Body::File { path, len }) = self.plan.request.body.as_ref() else {
            return;
        };
        if !t.sending.with_body {
            return;
        }
        match File::open(path) {
            Ok(file) => {
                t.upload = Some(Upload {
                    file,
                    path: path.clone(),
                    left: *len,
                    len: *len,
                });
                self.send_upload(ctx, id, token);
            }
            Err(e) => {
                let e = format!("--data-binary @{}: {e}", path.display());
                self.finish(ctx, id, Some(e));
            }
        }
    }

    /// Send pieces of transfer `id`'s file body until it is all sent or the connection's
    /// queue is over its watermark (then `on_drained` calls this again).
    pub(super) fn send_upload(&mut self, ctx: &mut Ctx<Link>, id: usize, token: Token) {
        let mut piece = std::mem::take(&mut self.piece);
        while let Some(up) = self.transfers.get_mut(id).and_then(|t| t.upload.as_mut()) {
            if up.done() {
                break;
            }
            // Through TLS, nothing goes before the handshake is done (rustls would only
            // buffer it): `resume_upload` starts again when its answer has arrived.
            let piece_max = match ctx.state(token).and_then(|l| l.tls.as_ref()) {
                Some(tls) if tls.is_handshaking() => break,
                Some(_) => TLS_PIECE,
                None => PIECE,
            };
            let want = up.left.min(piece_max as u64) as usize;
            piece.resize(want, 0);
            let n = match up.file.read(&mut piece) {
                Ok(0) => {
                    let e = format!(
                        "--data-binary @{}: the file shrank while it was sent ({} of {} bytes)",
                        up.path.display(),
                        up.len - up.left,
                        up.len
                    );
                    self.finish(ctx, id, Some(e));
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let e = format!("--data-binary @{}: {e}", up.path.display());
                    self.finish(ctx, id, Some(e));
                    break;
                }
            };
            up.left -= n as u64;
            match self.send_plain(ctx, token, &piece[..n]) {
                Ok(SendStatus::Sent) => continue,
                Ok(SendStatus::OverWatermark) | Ok(SendStatus::Closed) => break,
                Err(e) => {
                    self.finish(ctx, id, Some(e));
                    break;
                }
            }
        }
        self.piece = piece;
    }

    /// Bytes arrived on TLS connection `token` (the handshake may just have finished):
    /// continue its transfer's file body if it was waiting for that, not for the queue.
    pub(super) fn resume_upload(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        let Some(id) = ctx.state(token).and_then(|l| l.transfer) else {
            return;
        };
        let waiting = self
            .transfers
            .get(id)
            .and_then(|t| t.upload.as_ref())
            .is_some_and(|u| !u.done());
        if waiting && ctx.queued(token) == 0 {
            self.send_upload(ctx, id, token);
        }
    }

    /// Send request bytes on `token`, through its TLS session if it has one.
    pub(super) fn send_plain(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        bytes: &[u8],
    ) -> Result<SendStatus, String> {
        match ctx.state_mut(token).and_then(|l| l.tls.as_mut()) {
            Some(tls) => {
                tls.write_plain(bytes)?;
                self.cipher.clear();
                tls.take_outgoing(&mut self.cipher);
                Ok(ctx.send(token, &self.cipher))
            }
            None => Ok(ctx.send(token, bytes)),
        }
    }
}
