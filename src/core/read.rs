//! The read path: drain a readable socket, hand the bytes to the handler, keep the rest.
//!
//! Readiness rule relied on (mio is edge-triggered on Linux): a readable event will not
//! come again for bytes already waiting, so a socket is read until `WouldBlock` (or a
//! short read, which shows the kernel's queue is empty). Fairness: one connection gets
//! at most `READS_PER_TURN` reads per turn; if it had more, it is listed as still ready
//! and read again after the others, because no new edge will come for it.
//!
//! All connections read into one shared scratch buffer, so an idle connection holds no
//! read buffer at all; only input the handler did not consume (half a line) is copied
//! into the connection's own buffer, capped at `LoopConfig::max_read_buf`.

use std::io::Read;

use log::{debug, trace};
use mio::Token;

use super::close::CloseReason;
use super::ctx::Ctx;
use super::event_loop::{EventLoop, UDP_BASE};
use super::handler::Handler;
use super::io_util::{interrupted, would_block};
use super::record::record;
use super::slot::flags;

/// Size of the one read buffer all connections share.
pub const SCRATCH_SIZE: usize = 64 * 1024;
/// Reads per connection per turn before others get a go (1 MiB with the scratch size).
const READS_PER_TURN: usize = 16;
/// Datagrams per UDP port per turn before others get a go...
const DATAGRAMS_PER_TURN: usize = 256;
/// ...or this many bytes of them (four maximum-size datagrams: a flood of 64 KiB
/// datagrams must not hold the loop for 16 MiB of work per turn)...
const DATAGRAM_BYTES_PER_TURN: usize = 256 * 1024;
/// ...or this much time, checked every few datagrams (the handler's work per datagram
/// is not ours to know).
const DATAGRAM_TIME_PER_TURN: std::time::Duration = std::time::Duration::from_millis(1);

impl<S: Default> EventLoop<S> {
    /// Read until the socket is drained, handing each chunk to the handler.
    /// `to_the_end`: keep reading past a short read (an EOF or error is already here).
    pub(super) fn read_conn<H: Handler<State = S>>(
        &mut self,
        handler: &mut H,
        token: Token,
        to_the_end: bool,
    ) {
        let stop = flags::READ_PAUSED
            | flags::READ_DONE
            | flags::CLOSING
            | flags::CONNECTING
            | flags::HELD
            | flags::DEFERRED;
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.ctx.slab.get_mut(token.0) else {
                return;
            };
            if conn.has(stop) {
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    debug!("{}: EOF", self.ctx.peer_of(token));
                    record!(self.ctx, "eof", conn = token.0);
                    let Some(conn) = self.ctx.slab.get_mut(token.0) else {
                        return;
                    };
                    conn.flags |= flags::READ_DONE | flags::PEER_EOF;
                    if conn.has(flags::LINGERING) {
                        // The peer's EOF after our FIN: the graceful close is complete.
                        self.ctx.close(token, CloseReason::PeerClosed);
                    } else {
                        handler.on_eof(&mut self.ctx, token);
                    }
                    return;
                }
                Ok(n) if conn.has(flags::LINGERING) => {
                    trace!("token {}: discarded {n} bytes while closing", token.0);
                    record!(self.ctx, "discard", conn = token.0, bytes = n);
                    if n < self.scratch.len() && !to_the_end {
                        return;
                    }
                }
                Ok(n) => {
                    trace!("token {}: read {n} bytes", token.0);
                    record!(self.ctx, "read", conn = token.0, bytes = n);
                    self.ctx.stats.bytes_in += n as u64;
                    self.ctx.touch(token);
                    deliver(&mut self.ctx, handler, token, &mut self.scratch[..n]);
                    if n < self.scratch.len() && !to_the_end {
                        // A short read emptied the kernel's receive queue: anything that
                        // arrives later raises a new edge, so this is as good as
                        // WouldBlock and saves a system call per message.
                        self.burst_ended(handler, token);
                        return;
                    }
                }
                Err(e) if would_block(&e) => {
                    trace!("token {}: read WouldBlock", token.0);
                    record!(self.ctx, "would_block", conn = token.0, op = "read");
                    self.burst_ended(handler, token);
                    return;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    self.ctx.close(token, CloseReason::Error(e));
                    return;
                }
            }
        }
        // Fairness cap reached with data possibly left: come back after the others.
        self.ctx.mark_ready(token);
    }

    /// A connection whose handler deferred its input: offer what it left unconsumed,
    /// then read the socket as for any connection listed ready.
    pub(super) fn offer_deferred<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
        let Some(conn) = self.ctx.slab.get_mut(token.0) else {
            return;
        };
        conn.flags &= !flags::DEFERRED;
        if conn.has(flags::CLOSING | flags::LINGERING | flags::DETACHED | flags::HELD) {
            return;
        }
        let kept = conn
            .pending
            .as_ref()
            .is_some_and(|p| !p.read_buf.is_empty());
        if kept {
            deliver(&mut self.ctx, handler, token, &mut []);
        }
        self.read_conn(handler, token, true);
    }

    /// Tell the handler the socket is drained, if the connection is still reading.
    fn burst_ended<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
        let reading = self.ctx.slab.get(token.0).is_some_and(|c| {
            !c.has(flags::CLOSING | flags::LINGERING | flags::READ_DONE | flags::DETACHED)
        });
        if reading {
            handler.on_burst_end(&mut self.ctx, token);
        }
    }

    /// Receive datagrams until `WouldBlock` (or the fairness cap).
    pub(super) fn read_udp<H: Handler<State = S>>(&mut self, handler: &mut H, port: usize) {
        let started = std::time::Instant::now();
        let mut bytes = 0;
        for i in 0..DATAGRAMS_PER_TURN {
            if bytes >= DATAGRAM_BYTES_PER_TURN
                || (i % 16 == 15 && started.elapsed() >= DATAGRAM_TIME_PER_TURN)
            {
                break;
            }
            let Some(socket) = self.ctx.udp.get(port) else {
                return;
            };
            match socket.recv_from(&mut self.scratch) {
                Ok((n, from)) => {
                    trace!("udp port {port}: {n} bytes from {from}");
                    let peer = from.to_string();
                    record!(self.ctx, "datagram", port = port, bytes = n, peer = peer);
                    self.ctx.stats.datagrams_in += 1;
                    bytes += n.max(1);
                    handler.on_datagram(&mut self.ctx, port, from, &mut self.scratch[..n]);
                }
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // e.g. an ICMP error for an earlier reply; the socket itself is fine.
                    debug!("udp port {port}: {e}");
                }
            }
        }
        let token = Token(UDP_BASE - port);
        if !self.ctx.ready.contains(&token) {
            self.ctx.ready.push(token);
        }
    }
}

/// Hand freshly read bytes (after any kept input) to the handler; keep the rest.
fn deliver<S, H: Handler<State = S>>(
    ctx: &mut Ctx<S>,
    handler: &mut H,
    token: Token,
    fresh: &mut [u8],
) {
    let mut input = match ctx.slab.get_mut(token.0) {
        Some(conn) => match conn.pending.as_mut() {
            Some(p) if !p.read_buf.is_empty() => std::mem::take(&mut p.read_buf),
            _ => Vec::new(),
        },
        None => return,
    };
    ctx.input_held -= input.capacity();
    if input.is_empty() {
        // The common case: nothing kept, the handler reads straight from scratch, and
        // usually consumes it all: then there is nothing to keep.
        let consumed = handler.on_data(ctx, token, fresh).min(fresh.len());
        let rest = &fresh[consumed..];
        if rest.is_empty() {
            return;
        }
        input.extend_from_slice(rest);
    } else {
        input.extend_from_slice(fresh);
        let consumed = handler.on_data(ctx, token, &mut input).min(input.len());
        // Nothing consumed (a frame still arriving) moves nothing: a header sent one
        // byte at a time costs one append per byte, not a copy of all so far.
        input.drain(..consumed);
    }
    keep_unconsumed(ctx, token, input);
}

/// Store input the handler left for later (or free the buffers when there is none).
fn keep_unconsumed<S>(ctx: &mut Ctx<S>, token: Token, mut input: Vec<u8>) {
    let limit = ctx.config.max_read_buf;
    let Some(conn) = ctx.slab.get_mut(token.0) else {
        return;
    };
    if input.is_empty() {
        conn.release_empty_buffers();
    } else if input.len() > limit {
        debug!(
            "{}: more than {limit} bytes of unconsumed input",
            ctx.peer_of(token)
        );
        ctx.close(token, CloseReason::InputTooLarge);
    } else {
        if input.capacity() > 2 * input.len() + 4096 {
            // Most of a large buffer was consumed: do not hold on to the rest.
            input.shrink_to(input.len());
        }
        ctx.input_held += input.capacity();
        conn.pending_mut().read_buf = input;
        if ctx.input_held > ctx.config.max_input_total {
            enforce_input_budget(ctx);
        }
    }
}

/// All connections together hold more unconsumed input than the budget: close the
/// largest holders until the rest fits. The largest first, because that is where the
/// memory is, and a client legitimately halfway through a line holds little.
fn enforce_input_budget<S>(ctx: &mut Ctx<S>) {
    let budget = ctx.config.max_input_total;
    let mut holders: Vec<(usize, usize)> = ctx
        .slab
        .iter()
        .filter(|(_, c)| !c.has(flags::CLOSING))
        .filter_map(|(key, c)| c.pending.as_ref().map(|p| (p.read_buf.capacity(), key)))
        .filter(|&(held, _)| held > 0)
        .collect();
    holders.sort_unstable_by(|a, b| b.cmp(a));
    // Input of connections already closing is freed when they are reaped.
    let closing: usize = ctx
        .slab
        .iter()
        .filter(|(_, c)| c.has(flags::CLOSING))
        .filter_map(|(_, c)| c.pending.as_ref().map(|p| p.read_buf.capacity()))
        .sum();
    let mut held = ctx.input_held - closing;
    let mut closed = 0;
    for (size, key) in holders {
        if held <= budget {
            break;
        }
        held -= size;
        closed += 1;
        ctx.stats.closed_input_budget += 1;
        ctx.close(Token(key), CloseReason::InputTooLarge);
    }
    let now = ctx.clock.now();
    ctx.warnings.input_budget.warn(
        now,
        format_args!(
            "unconsumed input of all connections over {budget} bytes: closed the {closed} \
             largest holders"
        ),
    );
}
