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
//! request (`POOL_IDLE`, after which it is closed).

use std::time::Duration;

use log::debug;
use mio::Token;

use super::fetcher::{Fetcher, Link};
use super::pool::HostKey;
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
        t.write_request(&mut self.request, self.plan.keepalive);
        if let Some(route) = self.proxies.get(t.host).filter(|r| !r.tunnel) {
            // Through an http proxy: the request line names the whole URL (`proxy.rs`).
            route.absolute_form(&mut self.request, &t.url);
        }
        let Some(link) = ctx.state_mut(token) else {
            return self.finish(ctx, id, Some("connection vanished".into()));
        };
        link.transfer = Some(id);
        link.requests += 1;
        if let Some(tls) = link.tls.as_mut() {
            if let Err(e) = tls.write_plain(&self.request) {
                return self.finish(ctx, id, Some(e));
            }
            self.cipher.clear();
            tls.take_outgoing(&mut self.cipher);
            ctx.send(token, &self.cipher);
        } else {
            ctx.send(token, &self.request);
        }
        ctx.set_deadline(token, self.plan.idle_timeout);
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
                    // `--retry` on 408/429/5xx: this response is dropped (`retry.rs`).
                    if self.retry_status(ctx, token, id, &head) {
                        return;
                    }
                    let t = &mut self.transfers[id];
                    let action = t.on_head(&head, self.plan.max_redirects);
                    if let Ok(HeadAction::Final) = action {
                        t.sink = self.output.open(t.key(id), &t.first);
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
                        t.bytes += bytes.len() as u64;
                        self.reporter.add_bytes(bytes.len() as u64);
                        let sink = t.sink;
                        self.deliver(id, sink, bytes);
                    }
                }
                Step::Done => {
                    // Bytes after the response were never asked for: do not reuse.
                    let clean = at == data.len() && !ended;
                    return self.response_done(ctx, token, id, clean);
                }
            }
        }
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
            self.pool.host(host_id).idle.push(token);
            ctx.set_deadline(token, POOL_IDLE);
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
        let Some(id) = id else {
            // An idle keep-alive connection closed by the server: forget it.
            return ctx.close(token, CloseReason::PeerClosed);
        };
        let t = &mut self.transfers[id];
        match t.parser.eof() {
            Ok(()) => self.response_done(ctx, token, id, false),
            Err(_) if !t.parser.started() && reused && !t.retried => self.retry(ctx, token, id),
            // Closed before the response was complete: `--retry` may try again.
            Err(e) => self.fail_transient(ctx, id, e),
        }
    }

    /// A reused connection died before answering: the server closed it while idle, just
    /// as we sent. The request had no effect; send it again on a new connection.
    fn retry(&mut self, ctx: &mut Ctx<Link>, token: Token, id: usize) {
        debug!(
            "{}: kept-alive connection closed before answering, retrying",
            self.transfers[id].url
        );
        self.unpause(ctx, id, token);
        self.transfers[id].conn = None;
        self.transfers[id].restart();
        if let Some(link) = ctx.state_mut(token) {
            link.transfer = None;
        }
        ctx.close(token, CloseReason::Done);
        self.dispatch(ctx, id);
    }
}
