//! The write path: `send`, flushing the outbound queue, and closing after a flush.
//!
//! Readiness rules relied on: a slot is registered once for readable and writable and
//! never re-registered; writing goes straight to the socket while nothing is queued (the
//! socket is almost always writable then), and a short write means "kernel full, wait
//! for the writable edge". Backpressure is a flag, not an interest change: past the high
//! watermark the loop stops reading that connection until its queue drains to a quarter
//! of it. Past the hard cap the connection is closed, whatever the handler does.

use std::io::{self, IoSlice, Write};
use std::time::Duration;

use log::{debug, trace};
use mio::Token;

use super::close::CloseReason;
use super::ctx::{Closing, Ctx};
use super::handler::Handler;
use super::io_util::{interrupted, peer_gone, would_block};
use super::record::record;
use super::slot::{flags, Stream};

/// How long a gracefully closing connection waits for the peer's EOF after our FIN.
pub const LINGER: Duration = Duration::from_secs(2);

/// What became of a `send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Written, or queued under the high watermark.
    Sent,
    /// Queued, and the queue is over the high watermark: this peer reads slower than we
    /// send. A fan-out handler should skip it (or drop it) until `on_drained`.
    OverWatermark,
    /// Not sent: the connection is closed or closing (now perhaps because this send
    /// would have taken its queue past `max_queue_hard`).
    Closed,
}

impl<S> Ctx<S> {
    /// Queue `data` for the connection, writing at once when nothing is queued before it.
    pub fn send(&mut self, token: Token, data: &[u8]) -> SendStatus {
        self.send_parts(token, &[data])
    }

    /// Like `send`, for a message in several pieces (written with one `writev`).
    pub fn send_parts(&mut self, token: Token, parts: &[&[u8]]) -> SendStatus {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return SendStatus::Closed;
        };
        // After `close_when_flushed` nothing more is taken: otherwise a handler that keeps
        // sending (a chat's broadcast) could put the close off for ever.
        let done = flags::CLOSING | flags::WRITE_SHUT | flags::DETACHED | flags::CLOSE_WHEN_FLUSHED;
        if conn.has(done) {
            return SendStatus::Closed;
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return SendStatus::Sent;
        }
        let mut written = 0;
        // Write-through: with an empty queue the socket is very likely writable, so try
        // now and save the round trip through the queue (and a writable event).
        if conn.queued() == 0 && !conn.has(flags::CONNECTING) {
            match write_through(&mut conn.stream, parts) {
                Ok(n) => written = n,
                Err(e) if would_block(&e) => {
                    trace!("token {}: write WouldBlock", token.0);
                    record!(self, "would_block", conn = token.0, op = "write");
                }
                Err(e) => {
                    self.close(token, CloseReason::Error(e));
                    return SendStatus::Closed;
                }
            }
            self.stats.bytes_out += written as u64;
        }
        if written < total && conn.queued() + (total - written) > self.config.max_queue_hard {
            // The hard cap holds whatever the handler does: a peer that does not read
            // cannot make us hold more than this for it.
            debug!(
                "{}: outbound queue would pass {} bytes, closing",
                self.peer_of(token),
                self.config.max_queue_hard
            );
            self.close(token, CloseReason::QueueOverflow);
            return SendStatus::Closed;
        }
        // A short write means the kernel's send buffer is full: the rest waits for the
        // next writable edge.
        let mut skip = written;
        if skip < total {
            self.stats.queued_bytes += (total - skip) as u64;
            let queue = &mut conn.pending_mut().outbound;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                queue.push(&part[skip..]);
                skip = 0;
            }
        }
        let queued = conn.queued();
        trace!(
            "token {}: wrote {written} of {total} bytes, queue depth {queued}",
            token.0
        );
        if self.recorder.is_some() {
            let pausing = queued > self.config.max_queue && !conn.has(flags::READ_PAUSED);
            record!(
                self,
                "write",
                conn = token.0,
                wrote = written,
                of = total,
                queued = queued
            );
            if pausing {
                record!(self, "paused", conn = token.0, queued = queued);
            }
        }
        let Some(conn) = self.slab.get_mut(token.0) else {
            return SendStatus::Closed;
        };
        let mut status = SendStatus::Sent;
        if queued > self.config.max_queue {
            status = SendStatus::OverWatermark;
            if !conn.has(flags::READ_PAUSED) {
                self.stats.paused_now += 1;
                // Backpressure: this peer is not reading what we send it; stop reading
                // what it sends us, so that an echo's queue (and our memory) stop growing.
                conn.flags |= flags::READ_PAUSED;
                debug!(
                    "{}: queue {queued} bytes over watermark, reading paused",
                    self.peer_of(token)
                );
            }
        }
        if written > 0 {
            self.touch_output(token);
        }
        status
    }

    /// Close the connection once its queued bytes are written; the reason will be
    /// `PeerClosed` if the peer had sent EOF, else `Done`.
    pub fn close_when_flushed(&mut self, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::CLOSING | flags::LINGERING) {
            return;
        }
        conn.flags |= flags::CLOSE_WHEN_FLUSHED | flags::READ_DONE;
        if conn.queued() == 0 {
            self.finish_flushed_close(token);
        } else {
            // A peer that never reads would keep the connection for ever: the flush
            // gets `flush_timeout`, then the connection is closed with what is left.
            let when = self.clock.after(self.config.flush_timeout);
            self.set_idle_at(token.0, when);
        }
    }

    /// Close the connection with this reason once its queued bytes are written (e.g.
    /// send a notice, then close as `IdleTimeout`).
    pub fn close_after_flush(&mut self, token: Token, reason: CloseReason) {
        if self.is_open(token) {
            self.flush_reasons.insert(token.0, reason);
            self.close_when_flushed(token);
        }
    }

    /// Half-close (send FIN) after the queued bytes are written; keep reading.
    pub fn shutdown_write_when_flushed(&mut self, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        conn.flags |= flags::SHUTDOWN_WHEN_FLUSHED;
        if conn.queued() == 0 {
            self.shutdown_write_now(token);
        }
    }

    /// Everything owed is written: close. If the peer may still be sending, close
    /// gracefully, because closing a socket that has unread input makes the kernel send
    /// a reset, and a reset can destroy replies still on their way to the peer. So: send
    /// our FIN, discard what the peer sends until its EOF (or `LINGER` passes), then
    /// close — what nginx calls a lingering close. The handler hears `on_close` as the
    /// lingering starts; the loop finishes the rest on its own.
    pub(crate) fn finish_flushed_close(&mut self, token: Token) {
        let reason = self.flushed_close_reason(token);
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::PEER_EOF | flags::LINGERING) || conn.stream.is_pipe() {
            // The peer is done too, or it is a pipe (closing it is its reader's EOF, and a
            // pipe has no reset that could destroy what was written).
            self.close(token, reason);
            return;
        }
        conn.flags |= flags::LINGERING;
        if conn.has(flags::READ_PAUSED) {
            self.stats.paused_now = self.stats.paused_now.saturating_sub(1);
        }
        conn.flags &= !(flags::READ_DONE | flags::READ_PAUSED | flags::HELD);
        trace!("token {}: lingering close", token.0);
        self.shutdown_write_now(token);
        let when = self.clock.after(LINGER);
        self.set_idle_at(token.0, when);
        self.closing.push(Closing {
            token,
            reason,
            linger: true,
        });
        // Input may already be waiting, and its edge is gone: drain it now.
        self.mark_ready(token);
    }

    /// Why a connection closed whose queue was flushed: what the handler asked for, or
    /// what the situation says.
    pub(crate) fn flushed_close_reason(&mut self, token: Token) -> CloseReason {
        if let Some(reason) = self.flush_reasons.remove(&token.0) {
            return reason;
        }
        match self.slab.get(token.0) {
            _ if self.shutting_down => CloseReason::Shutdown,
            Some(c) if c.has(flags::PEER_EOF) => CloseReason::PeerClosed,
            _ => CloseReason::Done,
        }
    }

    pub(crate) fn shutdown_write_now(&mut self, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::WRITE_SHUT) {
            return;
        }
        conn.flags |= flags::WRITE_SHUT;
        if let Err(e) = conn.stream.shutdown_write() {
            if !peer_gone(&e) {
                debug!("{}: shutdown(write): {e}", self.peer_of(token));
            }
        }
    }
}

/// One `write` (or `writev` for several parts), retried if a signal interrupts it.
fn write_through(stream: &mut Stream, parts: &[&[u8]]) -> io::Result<usize> {
    if let [one] = parts {
        return loop {
            match stream.write(one) {
                Err(e) if interrupted(&e) => continue,
                other => break other,
            }
        };
    }
    // A message has a few parts at most (data, suffix): keep them on the stack. Parts
    // past the fourth simply go to the queue.
    let mut slices = [IoSlice::new(&[]); 4];
    let mut count = 0;
    for part in parts.iter().filter(|p| !p.is_empty()).take(4) {
        slices[count] = IoSlice::new(part);
        count += 1;
    }
    loop {
        match stream.write_vectored(&slices[..count]) {
            Err(e) if interrupted(&e) => continue,
            other => return other,
        }
    }
}

/// Write queued bytes after a writable event (or when a connect completes).
pub(crate) fn flush<S, H: Handler<State = S>>(ctx: &mut Ctx<S>, handler: &mut H, token: Token) {
    let Some(conn) = ctx.slab.get_mut(token.0) else {
        return;
    };
    let mut wrote = 0;
    while let Some(pending) = conn.pending.as_mut() {
        let queue = &mut pending.outbound;
        if queue.is_empty() {
            break;
        }
        match conn.stream.write(queue.as_slice()) {
            Ok(n) => {
                wrote += n;
                ctx.stats.queued_bytes = ctx.stats.queued_bytes.saturating_sub(n as u64);
                queue.consume(n);
                if !queue.is_empty() {
                    break; // short write: the kernel buffer is full
                }
            }
            Err(e) if interrupted(&e) => continue,
            Err(e) if would_block(&e) => {
                trace!("token {}: flush WouldBlock", token.0);
                break;
            }
            Err(e) => {
                ctx.close(token, CloseReason::Error(e));
                return;
            }
        }
    }
    let queued = conn.queued();
    let resume = conn.has(flags::READ_PAUSED) && queued <= ctx.config.max_queue / 4;
    if resume {
        conn.flags &= !flags::READ_PAUSED;
        ctx.stats.paused_now = ctx.stats.paused_now.saturating_sub(1);
        debug!(
            "{}: queue drained to {queued} bytes, reading resumed",
            ctx.peer_of(token)
        );
    }
    if wrote > 0 {
        record!(ctx, "flush", conn = token.0, wrote = wrote, queued = queued);
    }
    if resume {
        record!(ctx, "resumed", conn = token.0, queued = queued);
        // Low watermark reached: read again. The handler may have left input unconsumed
        // while its queue was full, and the socket may hold bytes that arrived while
        // paused, whose edge is long gone: offer the one, then read the other.
        ctx.defer(token);
    }
    if wrote == 0 {
        return;
    }
    trace!(
        "token {}: flushed {wrote} bytes, queue depth {queued}",
        token.0
    );
    ctx.stats.bytes_out += wrote as u64;
    ctx.touch_output(token);
    if queued == 0 {
        after_drain(ctx, handler, token);
    }
}

/// The queue just became empty: free buffers, do what was waiting for the flush.
fn after_drain<S, H: Handler<State = S>>(ctx: &mut Ctx<S>, handler: &mut H, token: Token) {
    let Some(conn) = ctx.slab.get_mut(token.0) else {
        return;
    };
    conn.release_empty_buffers();
    if conn.has(flags::CLOSE_WHEN_FLUSHED) {
        ctx.finish_flushed_close(token);
        return;
    }
    if conn.has(flags::SHUTDOWN_WHEN_FLUSHED) {
        ctx.shutdown_write_now(token);
    }
    if !conn_detached(ctx, token) {
        handler.on_drained(ctx, token);
    }
}

fn conn_detached<S>(ctx: &Ctx<S>, token: Token) -> bool {
    ctx.slab
        .get(token.0)
        .is_none_or(|c| c.has(flags::DETACHED | flags::CLOSING))
}
