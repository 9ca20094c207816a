//! `Fetcher`: the handler that runs every transfer on the one loop.
//!
//! The loop owns the sockets, reads until `WouldBlock`, writes through or queues, and
//! keeps the deadlines; the fetcher only routes. This file admits URLs into the
//! `--concurrency` window (`on_turn`), finds each a connection (an idle keep-alive one,
//! a new one within `--per-host`, or a place in its host's queue), answers the loop's
//! callbacks, and reports each transfer's end. What happens on a connection once it is
//! ready — the request, the response, reuse — is in `exchange.rs`.
//!
//! Readiness rules relied on:
//! - A non-blocking connect completes as a *writable* event; the loop then checks
//!   `SO_ERROR` (`take_error`) and calls `on_open` (or `on_close` with `ConnectFailed`).
//!   `on_open` is therefore the seed's EVENT_WRITE callback: send the request there.
//! - Bytes arrive in `on_data` in arbitrary pieces; everything is consumed (the parser
//!   keeps its own small partial lines), so the loop keeps no read buffer for us.
//! - Timeouts are the loop's per-connection deadlines (`set_deadline`: connect, then idle
//!   read, re-armed on every read), plus `--timeout` per transfer, kept here and checked
//!   after each turn, with `wake_after` so the loop wakes for it.
//! - Closing is deferred to the end of a callback, and a closed connection's token may
//!   be reused by the very next `connect`: a transfer forgets its token before anything
//!   else happens to it.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use mio::{Token, Waker};
use slab::Slab;
use url::Url;

use crate::apps::fetch::output::Output;
use crate::apps::fetch::pool::{Addrs, HostKey, Pool};
use crate::apps::fetch::report::{close_text, io_text, secs, FetchResult, Reporter};
use crate::apps::fetch::resolver::Resolver;
use crate::apps::fetch::tls::TlsSession;
use crate::apps::fetch::transfer::{Phase, Transfer};
use crate::apps::fetch::Plan;
use crate::core::{CloseReason, Closed, Handler};
use crate::core::{Ctx, Target};

/// Per-connection state in the loop's slab.
#[derive(Default)]
pub struct Link {
    /// Its host's pool entry.
    pub(super) host: usize,
    /// The transfer using it; None while idle in the pool.
    pub(super) transfer: Option<usize>,
    /// The TLS session for `https`, boxed: plain connections pay a pointer.
    pub(super) tls: Option<Box<TlsSession>>,
    /// The connect completed.
    pub(super) connected: bool,
    /// Requests sent on it (more than one: it was reused).
    pub(super) requests: u32,
    /// Where it connects to, for messages.
    pub(super) addr: Option<SocketAddr>,
}

/// The handler.
pub struct Fetcher {
    /// What to fetch and how (limits, timeouts, TLS settings).
    pub(super) plan: Plan,
    /// Where bodies go, and the file names handed out so far.
    pub(super) output: Output,
    /// Results as they come, and the progress bar.
    pub reporter: Reporter,
    /// Per host:port: addresses, connection count, idle connections, waiting transfers.
    pub(super) pool: Pool,
    /// DNS lookups on helper threads, answered in `on_wake`.
    pub(super) resolver: Resolver,
    /// The transfers admitted and not finished; their keys are the ids used everywhere.
    pub(super) transfers: Slab<Transfer>,
    /// The next URL of `plan.urls` to admit.
    pub(super) next_url: usize,
    /// `--timeout` of each transfer that has one: (when, transfer).
    pub(super) deadlines: BTreeSet<(Instant, usize)>,
    /// Every result, in completion order, when asked to keep them.
    pub results: Vec<FetchResult>,
    /// Whether to fill `results` (the command prints results and needs only totals).
    pub(super) keep_results: bool,
    /// Reused buffers: the request being sent, decrypted input, encrypted output.
    pub(super) request: Vec<u8>,
    pub(super) plain: Vec<u8>,
    pub(super) cipher: Vec<u8>,
}

impl Fetcher {
    /// A fetcher for `plan`; `waker` is the loop's, for the resolver threads.
    pub fn new(plan: Plan, output: Output, reporter: Reporter, waker: Arc<Waker>) -> Fetcher {
        Fetcher {
            pool: Pool::new(plan.per_host),
            plan,
            output,
            reporter,
            resolver: Resolver::new(waker),
            transfers: Slab::new(),
            next_url: 0,
            deadlines: BTreeSet::new(),
            results: Vec::new(),
            keep_results: false,
            request: Vec::new(),
            plain: Vec::new(),
            cipher: Vec::new(),
        }
    }

    /// Keep every result in `results` (for callers that want them after the run).
    pub fn keep_results(mut self) -> Fetcher {
        self.keep_results = true;
        self
    }

    /// Admit URLs while the concurrency window has room.
    fn admit(&mut self, ctx: &mut Ctx<Link>) {
        while self.transfers.len() < self.plan.concurrency.max(1)
            && self.next_url < self.plan.urls.len()
        {
            let requested = self.plan.urls[self.next_url].clone();
            self.next_url += 1;
            self.start(ctx, requested);
        }
    }

    fn start(&mut self, ctx: &mut Ctx<Link>, requested: String) {
        let url = match Url::parse(&requested) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                let e = format!(
                    "unsupported scheme {:?} (http and https only)",
                    url.scheme()
                );
                return self.report_unstarted(requested, e);
            }
            Err(e) => return self.report_unstarted(requested, format!("invalid URL: {e}")),
        };
        let Some(key) = HostKey::of(&url) else {
            return self.report_unstarted(requested, "invalid URL: no host".into());
        };
        let host = self.pool.id(key);
        let keep_heads = self.output.include_heads();
        let mut t = Transfer::new(requested, url, host, self.plan.head_only, keep_heads);
        t.deadline = self.plan.timeout.map(|d| t.started + d);
        let deadline = t.deadline;
        let id = self.transfers.insert(t);
        if let Some(when) = deadline {
            self.deadlines.insert((when, id));
        }
        self.dispatch(ctx, id);
    }

    /// Find the transfer a connection: resolve, reuse, open, or queue.
    pub(super) fn dispatch(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        let t = &mut self.transfers[id];
        let (host_id, fresh) = (t.host, t.fresh_conn);
        let host = self.pool.host(host_id);
        match &host.addrs {
            Addrs::Ready(_) => {}
            Addrs::Failed(e) => {
                let e = e.clone();
                return self.finish(ctx, id, Some(e));
            }
            Addrs::Unknown => {
                host.addrs = Addrs::Resolving;
                let (name, port) = (host.key.host.clone(), host.key.port);
                self.resolver.lookup(host_id, &name, port);
                return self.wait(id, Phase::Resolving);
            }
            Addrs::Resolving => return self.wait(id, Phase::Resolving),
        }
        if !fresh {
            if let Some(token) = self.pool.take_idle(host_id) {
                return self.send_request(ctx, id, token);
            }
        }
        if self.pool.can_open(host_id) {
            return self.connect(ctx, id);
        }
        if let Some(token) = self.pool.take_idle(host_id) {
            return self.send_request(ctx, id, token);
        }
        self.wait(id, Phase::Waiting);
    }

    fn wait(&mut self, id: usize, phase: Phase) {
        let t = &mut self.transfers[id];
        t.phase = phase;
        self.pool.host(t.host).waiting.push_back(id);
    }

    /// Hand idle connections and free connection slots of a host to its waiting queue.
    pub(super) fn pump(&mut self, ctx: &mut Ctx<Link>, host_id: usize) {
        loop {
            let can_open = self.pool.can_open(host_id);
            let host = self.pool.host(host_id);
            if !matches!(host.addrs, Addrs::Ready(_)) || host.waiting.is_empty() {
                return;
            }
            if let Some(token) = host.idle.pop() {
                if let Some(id) = host.waiting.pop_front() {
                    self.send_request(ctx, id, token);
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

    /// Open a new connection for the transfer, to its host's next address.
    fn connect(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        let t = &mut self.transfers[id];
        let host_id = t.host;
        let Addrs::Ready(addrs) = &self.pool.host(host_id).addrs else {
            return self.finish(ctx, id, Some("no address to connect to".into()));
        };
        let Some(&addr) = addrs.get(t.next_addr) else {
            return self.finish(ctx, id, Some("no address left to try".into()));
        };
        t.next_addr += 1;
        let link = Link {
            host: host_id,
            transfer: Some(id),
            addr: Some(addr),
            ..Link::default()
        };
        match ctx.connect(&Target::Tcp(addr), link) {
            Ok(token) => {
                self.pool.host(host_id).open += 1;
                t.conn = Some(token);
                t.phase = Phase::Connecting;
                ctx.set_deadline(token, self.plan.connect_timeout);
            }
            Err(e) => self.connect_failed(ctx, id, addr, &e),
        }
    }

    /// A connect failed: try the host's next address, or give up with this error.
    fn connect_failed(&mut self, ctx: &mut Ctx<Link>, id: usize, addr: SocketAddr, e: &io::Error) {
        let more = match &self.pool.host(self.transfers[id].host).addrs {
            Addrs::Ready(addrs) => self.transfers[id].next_addr < addrs.len(),
            _ => false,
        };
        debug!("connect to {addr}: {e}");
        if more {
            self.connect(ctx, id);
        } else {
            self.finish(ctx, id, Some(format!("connect to {addr}: {}", io_text(e))));
        }
    }

    /// The transfer is over: report it, and drop its connection if it still has one
    /// (mid-response, so it cannot be reused).
    pub(super) fn finish(&mut self, ctx: &mut Ctx<Link>, id: usize, error: Option<String>) {
        let Some(t) = self.transfers.try_remove(id) else {
            return;
        };
        if let Some(when) = t.deadline {
            self.deadlines.remove(&(when, id));
        }
        if let Some(token) = t.conn {
            if let Some(link) = ctx.state_mut(token) {
                link.transfer = None;
            }
            ctx.close(token, CloseReason::Done);
        }
        if matches!(t.phase, Phase::Resolving | Phase::Waiting) {
            self.pool.host(t.host).waiting.retain(|&w| w != id);
        }
        let result = t.into_result(error);
        self.record(result);
    }

    /// A URL that failed before it could start (not a URL, wrong scheme).
    fn report_unstarted(&mut self, url: String, error: String) {
        self.record(FetchResult {
            url,
            status: None,
            bytes: 0,
            elapsed: Duration::ZERO,
            redirects: 0,
            file: None,
            error: Some(error),
        });
    }

    fn record(&mut self, result: FetchResult) {
        self.reporter.report(&result);
        if self.keep_results {
            self.results.push(result);
        }
    }

    /// Fail transfers whose `--timeout` passed; ask the loop to wake for the next one.
    fn expire(&mut self, ctx: &mut Ctx<Link>) {
        let Some(limit) = self.plan.timeout else {
            return;
        };
        let now = Instant::now();
        while let Some(&(when, id)) = self.deadlines.first() {
            if when > now {
                ctx.timer_after(when - now, 0);
                return;
            }
            self.deadlines.pop_first();
            let e = format!(
                "timeout: transfer not done after {} (--timeout)",
                secs(limit)
            );
            self.finish(ctx, id, Some(e));
        }
    }
}

impl Handler for Fetcher {
    type State = Link;

    /// The connect completed (the seed's EVENT_WRITE): start TLS if needed, send.
    fn on_open(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        let Some(link) = ctx.state_mut(token) else {
            return;
        };
        link.connected = true;
        let (host_id, id, addr) = (link.host, link.transfer, link.addr);
        self.pool.prefer(host_id, addr);
        let Some(id) = id else {
            return ctx.close(token, CloseReason::Done);
        };
        let key = &self.pool.host(host_id).key;
        if key.tls {
            // The name to check the certificate against: an IPv6 literal without brackets.
            let name = key.host.trim_start_matches('[').trim_end_matches(']');
            match TlsSession::new(&self.plan.tls, name) {
                Ok(session) => {
                    if let Some(link) = ctx.state_mut(token) {
                        link.tls = Some(Box::new(session));
                    }
                }
                Err(e) => return self.finish(ctx, id, Some(e)),
            }
        }
        self.send_request(ctx, id, token);
    }

    fn on_data(&mut self, ctx: &mut Ctx<Link>, token: Token, data: &mut [u8]) -> usize {
        let Some(link) = ctx.state(token) else {
            return data.len();
        };
        match (link.transfer, link.tls.is_some()) {
            // Bytes on an idle connection were never asked for: drop the connection.
            (None, _) => ctx.close(token, CloseReason::Done),
            (Some(id), true) => self.tls_bytes(ctx, token, id, data),
            (Some(id), false) => self.response_bytes(ctx, token, id, data, false),
        }
        data.len()
    }

    fn on_eof(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        self.end_of_stream(ctx, token);
        // Whatever happened above, nothing more can come on this connection.
        ctx.close(token, CloseReason::PeerClosed);
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        let Some(link) = ctx.state(token) else {
            return;
        };
        match (link.transfer, link.connected) {
            (None, _) => ctx.close(token, CloseReason::IdleTimeout),
            (Some(_), false) => {
                // Treated like any failed connect: on_close tries the next address.
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timeout: no connection after {}",
                        secs(self.plan.connect_timeout)
                    ),
                );
                ctx.close(token, CloseReason::ConnectFailed(e));
            }
            (Some(id), true) => {
                let e = format!(
                    "timeout: no data from the server for {}",
                    secs(self.plan.idle_timeout)
                );
                self.finish(ctx, id, Some(e));
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<Link>, token: Token, closed: Closed<Link>) {
        let (link, reason) = (closed.state, &closed.reason);
        self.pool.closed(link.host, token);
        // Still attached means the connection failed under the transfer.
        let attached = link.transfer.filter(|&id| {
            self.transfers
                .get(id)
                .is_some_and(|t| t.conn == Some(token))
        });
        if let Some(id) = attached {
            // First of all: the token is free and may be reused by the next connect.
            self.transfers[id].conn = None;
            let t = &self.transfers[id];
            match reason {
                CloseReason::ConnectFailed(e) => {
                    let addr = link
                        .addr
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    self.connect_failed(ctx, id, addr, e);
                }
                _ if !t.parser.started() && link.requests > 1 && !t.retried => {
                    debug!("{}: reused connection failed ({reason}), retrying", t.url);
                    self.transfers[id].restart();
                    self.dispatch(ctx, id);
                }
                _ => {
                    let e = close_text(reason, t.parser.started(), t.bytes);
                    self.finish(ctx, id, Some(e));
                }
            }
        }
        self.pump(ctx, link.host);
    }

    fn on_wake(&mut self, ctx: &mut Ctx<Link>) {
        for answer in self.resolver.answers() {
            let host = self.pool.host(answer.key);
            host.addrs = match answer.result {
                Ok(addrs) => Addrs::Ready(addrs),
                Err(e) => Addrs::Failed(e),
            };
            let waiting: Vec<usize> = host.waiting.drain(..).collect();
            for id in waiting {
                if self.transfers.contains(id) {
                    self.dispatch(ctx, id);
                }
            }
        }
    }

    fn on_turn(&mut self, ctx: &mut Ctx<Link>) {
        self.expire(ctx);
        self.admit(ctx);
        self.reporter.tick();
        if self.next_url >= self.plan.urls.len() && self.transfers.is_empty() {
            ctx.stop();
        }
    }
}
