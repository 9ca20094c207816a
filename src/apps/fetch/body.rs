//! The final response's body on its way out: counted as it arrived (`wire_bytes`),
//! decoded if it is compressed (`decode.rs`), counted again as decoded (`bytes`), and
//! handed to the output (`delivery.rs`).
//!
//! Decoding happens on the loop thread, a piece per read, into a 32 KiB buffer whose
//! contents go straight to the writer. What bounds memory is the output's own bound
//! (`output::PER_TRANSFER`, `output::TOTAL`): once a transfer has that much unwritten,
//! the decoder is told to stop and keeps the compressed rest of the read in its stash;
//! the connection is paused the usual way (`after_read`), and `drain_decoders` (called
//! from `on_wake`, after the writer's answers) continues once the writer has caught up
//! to half the bound. A body that ends while its decoder still holds a stash is
//! completed from there: its connection (whose response is complete) is closed, and the
//! transfer ends when the stash is drained. Discarded bodies are never held at all.
//!
//! The response was complete only if the compressed stream was (`Decoder::finish`): a
//! gzip body cut short, or one with a bad CRC, fails the URL with a one-line error, and
//! its partial file is removed like any failed transfer's.

use mio::Token;

use super::fetcher::{Fetcher, Link};
use super::output::{PER_TRANSFER, TOTAL};
use crate::core::{CloseReason, Ctx};

impl Fetcher {
    /// Body bytes of transfer `id`'s final response, as they arrived.
    pub(super) fn body_piece(&mut self, ctx: &mut Ctx<Link>, id: usize, bytes: &[u8]) {
        let Some(t) = self.transfers.get_mut(id) else {
            return;
        };
        t.wire_bytes += bytes.len() as u64;
        let (key, sink) = (t.key(id), t.sink);
        let Some(mut decoder) = t.decoder.take() else {
            t.bytes += bytes.len() as u64;
            self.reporter.add_bytes(bytes.len() as u64);
            return self.deliver(id, sink, bytes);
        };
        let (output, reporter) = (&mut self.output, &mut self.reporter);
        let fed = decoder.feed(bytes, &mut |piece| {
            t.bytes += piece.len() as u64;
            reporter.add_bytes(piece.len() as u64);
            t.unwritten += output.write(key, sink, piece);
            t.unwritten <= PER_TRANSFER && output.unwritten() <= TOTAL
        });
        if decoder.pending() && !decoder.listed {
            decoder.listed = true;
            self.stalled.push((id, t.serial));
        }
        t.decoder = Some(decoder);
        if let Err(e) = fed {
            self.finish(ctx, id, Some(e));
        }
    }

    /// Transfer `id`'s response on `token` is complete (or ended with the connection):
    /// check its compressed stream. True if that settled the transfer — it failed, or
    /// it waits for its decoder's stash (`drain_decoders` ends it) — and the caller must
    /// not go on to `response_done`.
    pub(super) fn body_done(&mut self, ctx: &mut Ctx<Link>, token: Token, id: usize) -> bool {
        let Some(t) = self.transfers.get_mut(id) else {
            return true;
        };
        let Some(decoder) = t.decoder.as_mut().filter(|_| t.redirect_to.is_none()) else {
            return false;
        };
        if decoder.pending() {
            decoder.done_pending = true;
            // The response is complete: the connection is not needed any more.
            self.unpause(ctx, id, token);
            self.transfers[id].conn = None;
            if let Some(link) = ctx.state_mut(token) {
                link.transfer = None;
            }
            ctx.close(token, CloseReason::Done);
            return true;
        }
        match decoder.finish() {
            Ok(()) => false,
            Err(e) => {
                self.finish(ctx, id, Some(e));
                true
            }
        }
    }

    /// The writer has made progress (`on_wake`): continue decoders that stopped for it,
    /// and end the transfers whose response was complete meanwhile.
    pub(super) fn drain_decoders(&mut self, ctx: &mut Ctx<Link>) {
        if self.output.unwritten() > TOTAL / 2 {
            return;
        }
        // Only the decoders that stopped are looked at (a transfer that ended since has
        // another serial under its id, or none).
        for (id, serial) in std::mem::take(&mut self.stalled) {
            let Some(t) = self.transfers.get_mut(id).filter(|t| t.serial == serial) else {
                continue;
            };
            let Some(d) = t.decoder.as_mut() else {
                continue;
            };
            if t.unwritten > PER_TRANSFER / 2 {
                self.stalled.push((id, serial)); // not yet: keep it listed
                continue;
            }
            d.listed = false;
            self.body_piece(ctx, id, &[]);
            let Some(t) = self.transfers.get(id) else {
                continue; // failed
            };
            let conn = t.conn;
            let Some(d) = t.decoder.as_ref() else {
                continue;
            };
            match (d.pending(), d.done_pending, conn) {
                // Still behind: keep (or put) its connection paused.
                (true, _, Some(token)) => self.after_read(ctx, token, id),
                (true, _, None) => {}
                (false, true, _) => {
                    let result = d.finish().err();
                    self.finish(ctx, id, result);
                }
                (false, false, _) => {}
            }
        }
    }

    /// Whether transfer `id`'s request was sent whole (a file body may still be going
    /// out when the server answers early: then its connection cannot be reused).
    pub(super) fn request_sent(&self, id: usize) -> bool {
        self.transfers
            .get(id)
            .is_none_or(|t| t.upload.as_ref().is_none_or(|u| u.done()))
    }
}
