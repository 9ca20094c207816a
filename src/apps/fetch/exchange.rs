//! One request/response exchange on a connection: send, receive, then reuse or close.
//!
//! This is the part of the fetcher that seed 001 splits into `send_request` (registered
//! for EVENT_WRITE) and `read_data` (EVENT_READ). Here the request is sent as soon as the
//! connection is ready — in `on_open` for a new connection (the loop calls it when the
//! connect's writable event arrives and `SO_ERROR` is clear), at once for a reused one —
//! and every piece of the response goes through the transfer's parser as it arrives,
//! body bytes straight on to the output's writer thread (`delivery.rs`). When the
//! response is complete the connection goes back to its host's pool (keep-alive) or is
//! closed, and the transfer either follows its redirect or ends.
//!
//! Readiness rules relied on: `ctx.send` writes through and queues what the kernel
//! does not take (the writable edge flushes it), so sending never blocks; each read is
//! handed over once and consumed in full, so nothing stays in the loop's read buffer.
//! The connection's one deadline (`Ctx::set_deadline`) says what it is waiting for: the
//! server's answer (idle timeout, pushed back after every read that leaves the response
//! unfinished, unless the read paused it for output) or, back in the pool, its next
//! request (`POOL_IDLE`, after which it is closed). The response *head* is the
//! exception: the whole head must come within one `--idle-timeout` of the request, and
//! reads before it is complete do not push the deadline back — otherwise a head
//! trickled a byte every 0.2 s, or a `100 Continue` every 50 ms (each capped in number
//! by the parser too), would hold a transfer forever without `--timeout`.
//!
//! Reuse (`pump`: a host's idle connections and free slots to its waiting transfers) has
//! two rules (see `pool.rs` for the first):
//! - A connection is offered again only after the turn that ended its response, so a
//!   FIN that came with the last bytes is seen first, and the connection is dropped
//!   instead of being handed a request the server will never read.
//! - A server may still close an idle connection just as we write to it (its keep-alive
//!   timer ran out while our request was on the way). Then the request failed *before
//!   any response byte*, the server did not act on it, and an idempotent request (GET,
//!   HEAD) is sent again — on a **new** connection, never another idle one (which may be
//!   just as dead), and once per transfer: on a new connection the same failure is a real
//!   one. This is not a `--retry` attempt: the request never reached the server.

use std::time::Duration;

use log::debug;
use mio::Token;

use super::fetcher::{Fetcher, Link};
use super::pool::{Addrs, HostKey};
use super::transfer::{HeadAction, Phase};
use super::writer::Sink;
use crate::core::CloseReason;
use crate::core::Ctx;
use crate::proto::http_response::Step;

/// How long an unused keep-alive connection is kept (servers close theirs after 5-75 s).
const POOL_IDLE: Duration = Duration::from_secs(30);

impl Fetcher {
    /// Send the transfer's request on a connection (just opened, or idle and reused).
    pub(super) fn send_request(&mut self, ctx: &mut Ctx<Link>, id: usize, token: Token) {
        let t = &mut self.transfers[id];
        t.conn = Some(token);
        t.phase = Phase::Requesting;
        let cookie = self.cookies.header(&t.url);
        t.write_request(&mut self.request, self.plan.keepalive, cookie.as_deref());
        if let Some(route) = self.proxies.get(t.host).filter(|r| !r.tunnel) {
            // Through an http proxy: the request line names the whole URL (`proxy.rs`).
            route.absolute_form(&mut self.request, &t.url);
        }
        let Some(link) = ctx.state_mut(token) else {
            return self.finish(ctx, id, Some("connection vanished".into()));
        };
        link.transfer = Some(id);
        link.requests += 1;
        let request = std::mem::take(&mut self.request);
        let sent = self.send_plain(ctx, token, &request);
        self.request = request; // its buffer serves the next request
        if let Err(e) = sent {
            return self.finish(ctx, id, Some(e));
        }
        ctx.set_deadline(token, self.plan.idle_timeout);
        self.start_upload(ctx, id, token);
    }

    /// Decrypt what arrived on a TLS connection, send what the session wants sent, and
    /// pass the plaintext on.
    pub(super) fn tls_bytes(&mut self, ctx: &mut Ctx<Link>, token: Token, id: usize, data: &[u8]) {
        let Some(mut tls) = ctx.state_mut(token).and_then(|l| l.tls.take()) else {
            return;
        };
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let received = tls.receive(data, &mut plain);
        self.cipher.clear();
        tls.take_outgoing(&mut self.cipher);
        if let Some(link) = ctx.state_mut(token) {
            link.tls = Some(tls);
        }
        if !self.cipher.is_empty() {
            ctx.send(token, &self.cipher);
        }
        match received {
            Err(e) => self.finish(ctx, id, Some(e)),
            Ok(closed) => {
                if !plain.is_empty() {
                    self.response_bytes(ctx, token, id, &plain, closed);
                }
                if closed {
                    self.end_of_stream(ctx, token);
                }
            }
        }
        self.plain = plain;
    }

    /// Response bytes (decrypted, for TLS) for transfer `id` on `token`. `ended`: the
    /// server has finished the stream (TLS close_notify), so no reuse.
    pub(super) fn response_bytes(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        id: usize,
        data: &[u8],
        ended: bool,
    ) {
        if let Some(t) = self.transfers.get_mut(id) {
            t.net.marks.first_byte();
        }
        let mut at = 0;
        loop {
            let Some(t) = self.transfers.get_mut(id) else {
                return;
            };
            let (n, step) = match t.parser.advance(&data[at..]) {
                Ok(x) => x,
                Err(e) => return self.finish(ctx, id, Some(e)),
            };
            at += n;
            match step {
                Step::NeedMore => return self.after_read(ctx, token, id),
                Step::Head(head) => {
                    self.cookies.store(&head.set_cookies, &t.url);
                    // `--retry` on 408/429/5xx: this response is dropped (`retry.rs`).
                    if self.retry_status(ctx, token, id, &head) {
                        return;
                    }
                    let t = &mut self.transfers[id];
                    let mut action = t.on_head(&head, self.plan.max_redirects);
                    if let Some(e) = self.refused(&action, head.status) {
                        // `--fail`: nothing of this response is saved or printed.
                        return self.finish(ctx, id, Some(e));
                    }
                    let t = &mut self.transfers[id];
                    if let Ok(HeadAction::Final) = action {
                        match t.start_decoding(&head) {
                            Ok(()) => t.sink = self.output.open(t.key(id), &t.first),
                            Err(e) => action = Err(e),
                        }
                    }
                    if let Some(raw) = &head.raw {
                        // `--include`: every head of the chain, in order with the body.
                        self.deliver(id, Sink::Stdout, raw);
                    }
                    match action {
                        Ok(HeadAction::Redirect(next)) => {
                            self.transfers[id].redirect_to = Some(next)
                        }
                        Ok(HeadAction::Final) => {}
                        Err(e) => return self.finish(ctx, id, Some(e)),
                    }
                }
                Step::Body(bytes) => {
                    if t.redirect_to.is_none() {
                        self.body_piece(ctx, id, bytes);
                    }
                }
                Step::Done => {
                    // Bytes after the response were never asked for: do not reuse.
                    let clean = at == data.len() && !ended && self.request_sent(id);
                    if self.body_done(ctx, token, id) {
                        return;
                    }
                    return self.response_done(ctx, token, id, clean);
                }
            }
        }
    }

    /// `--fail`: the final response's status is an HTTP error; the transfer's error.
    fn refused(&self, action: &Result<HeadAction, String>, status: u16) -> Option<String> {
        let fatal = self.plan.fail && status >= 400 && matches!(action, Ok(HeadAction::Final));
        fatal.then(|| format!("HTTP status {status} (--fail: the body is not saved)"))
    }

    /// A response is complete: free (or close) the connection, then follow a redirect or
    /// report the result.
    pub(super) fn response_done(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        id: usize,
        clean: bool,
    ) {
        self.unpause(ctx, id, token);
        let t = &mut self.transfers[id];
        t.conn = None;
        let host_id = t.host;
        let reuse = clean && t.keep_alive && self.plan.keepalive;
        if let Some(link) = ctx.state_mut(token) {
            link.transfer = None;
        }
        if reuse {
            // Offered again later in this turn, once a FIN that came with the last
            // bytes has been read (`pool.rs`).
            self.pool.settle(host_id, token);
            ctx.set_deadline(token, POOL_IDLE);
            self.schedule_admit(ctx);
        } else {
            ctx.close(token, CloseReason::Done);
        }
        let t = &mut self.transfers[id];
        match t.redirect_to.take() {
            Some(next) => match HostKey::of(&next) {
                Some(key) => {
                    let next_host = self.pool.id(key);
                    self.transfers[id].follow(next, next_host);
                    self.dispatch(ctx, id);
                }
                None => self.finish(ctx, id, Some(format!("redirect to {next}: no host"))),
            },
            None => self.finish(ctx, id, None),
        }
        self.pump(ctx, host_id);
    }

    /// The server ended the stream (EOF, or TLS close_notify) on a connection.
    pub(super) fn end_of_stream(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        let Some(link) = ctx.state(token) else {
            return;
        };
        let (id, reused) = (link.transfer, link.requests > 1);
        let handshaking = link.tls.as_ref().is_some_and(|tls| tls.is_handshaking());
        let Some(id) = id else {
            // An idle keep-alive connection closed by the server: forget it.
            return ctx.close(token, CloseReason::PeerClosed);
        };
        let eof = match self.transfers[id].parser.eof() {
            Err(_) if handshaking => Err("TLS handshake failed: the server closed the \
                 connection (does it speak TLS on this port?)"
                .to_string()),
            other => other,
        };
        match eof {
            Ok(()) => {
                if !self.body_done(ctx, token, id) {
                    self.response_done(ctx, token, id, false)
                }
            }
            Err(_) if self.may_resend(id, reused) => {
                debug!(
                    "{}: reused connection closed before answering",
                    self.transfers[id].url
                );
                self.unpause(ctx, id, token);
                self.transfers[id].conn = None;
                if let Some(link) = ctx.state_mut(token) {
                    link.transfer = None;
                }
                ctx.close(token, CloseReason::Done);
                self.resend(ctx, id);
            }
            // Closed before the response was complete: `--retry` may try again.
            Err(e) => self.fail_transient(ctx, id, e),
        }
    }

    /// True if transfer `id`, whose connection just failed, may be sent again on a new
    /// one: the connection was `reused`, not a byte of the response came, the request is
    /// idempotent, and the transfer was not resent already (see the module docs).
    pub(super) fn may_resend(&self, id: usize, reused: bool) -> bool {
        self.transfers.get(id).is_some_and(|t| {
            reused && !t.parser.started() && !t.retried && idempotent(&t.sending.method)
        })
    }

    /// Send transfer `id` again on a new connection (its old one is already detached).
    pub(super) fn resend(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        self.transfers[id].restart();
        let host_id = self.transfers[id].host;
        if self.pool.can_open(host_id) {
            return self.dispatch(ctx, id);
        }
        // No free slot yet (the failed connection's own `on_close` frees one, and pumps
        // the queue): wait first in line. `pump` never hands it an idle connection.
        let t = &mut self.transfers[id];
        t.phase = Phase::Waiting;
        self.pool.host(host_id).waiting.push_front(id);
    }

    /// Hand idle connections and free connection slots of a host to its waiting queue.
    pub(super) fn pump(&mut self, ctx: &mut Ctx<Link>, host_id: usize) {
        loop {
            let can_open = self.pool.can_open(host_id);
            let host = self.pool.host(host_id);
            if !matches!(host.addrs, Addrs::Ready(_)) || host.waiting.is_empty() {
                return;
            }
            let first = host.waiting.front().copied();
            let fresh =
                first.is_some_and(|id| self.transfers.get(id).is_some_and(|t| t.fresh_conn));
            if fresh && !can_open {
                // It must have a new connection: close an idle one to free a slot (its
                // `on_close` pumps again), or wait for one to close.
                return self.make_room(ctx, host_id);
            }
            let host = self.pool.host(host_id);
            let idle = if fresh { None } else { host.idle.pop() };
            if let Some(token) = idle {
                if let Some(id) = host.waiting.pop_front() {
                    self.reuse(ctx, id, token);
                }
            } else if can_open {
                if let Some(id) = host.waiting.pop_front() {
                    self.connect(ctx, id);
                }
            } else {
                return;
            }
        }
    }

    /// A transfer that needs a new connection waits first in `host_id`'s queue: close
    /// an idle connection, if there is one, so a slot frees up.
    pub(super) fn make_room(&mut self, ctx: &mut Ctx<Link>, host_id: usize) {
        if let Some(token) = self.pool.oldest_idle(host_id) {
            self.pool.host(host_id).idle.retain(|&t| t != token);
            ctx.close(token, CloseReason::Done);
        }
    }

    /// The later-in-this-turn part of reuse: connections whose response ended in this
    /// turn and that are still open become idle, and go to their hosts' waiting
    /// transfers (called from the zero-delay `ADMIT` timer).
    pub(super) fn settle(&mut self, ctx: &mut Ctx<Link>) {
        for host_id in self.pool.settled() {
            self.pump(ctx, host_id);
        }
        self.idle_for_descriptors(ctx);
    }
}

/// Methods that may be sent twice with the effect of once (RFC 9110 §9.2.2).
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}
