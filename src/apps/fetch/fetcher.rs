//! `Fetcher`: the handler that runs every transfer on the one loop.
//!
//! The loop owns the sockets, reads until `WouldBlock`, writes through or queues, and
//! keeps the time; the fetcher only routes. This file admits URLs into the
//! `--concurrency` window, finds each a connection (an idle keep-alive one, a new one
//! within `--per-host`, or a place in its host's queue) and answers the loop's
//! callbacks. What happens on a connection once it is ready — the request, the
//! response, reuse — is in `exchange.rs`; where the bytes go, and how a transfer ends
//! and is reported, is in `delivery.rs`.
//!
//! Time is the loop's; the fetcher keeps no schedule of its own:
//! - per connection, one handler deadline (`Ctx::set_deadline`, then `on_deadline`):
//!   the connect timeout while connecting, the idle timeout while a response is
//!   awaited (pushed back on every read), the pool idle time while it sits unused;
//! - per transfer, `--timeout` is a loop timer (`Ctx::timer_after` with key
//!   `TIMEOUT_BASE + transfer id`, then `on_timer`), cancelled when the transfer ends,
//!   so a reused slab key never meets its predecessor's timer;
//! - `--retry` waits and happy eyeballs' attempt delays are loop timers too, keyed by
//!   transfer id and serial (`net.rs`), handled in `retry.rs` and `eyeballs.rs`;
//! - admission is a zero-delay loop timer (key `ADMIT`). A transfer ends deep inside
//!   other callbacks (a close, a parse error, a failed connect); starting the next URLs
//!   right there would re-enter the code that is ending this one. The timer runs
//!   admission once, later in this same turn, after the current callback has returned.
//!
//! Readiness rules relied on:
//! - A non-blocking connect completes as a *writable* event; the loop then checks
//!   `SO_ERROR` (`take_error`) and calls `on_open` (or `on_close` with `ConnectFailed`).
//!   `on_open` is therefore the seed's EVENT_WRITE callback: send the request there.
//! - Bytes arrive in `on_data` in arbitrary pieces; everything is consumed (the parser
//!   keeps its own small partial lines), so the loop keeps no read buffer for us.
//! - Closing is deferred to the end of a callback, and a closed connection's token may
//!   be reused by the very next `connect`: a transfer forgets its token before anything
//!   else happens to it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use mio::{Token, Waker};
use slab::Slab;
use url::Url;

use crate::apps::fetch::cookies::Jar;
use crate::apps::fetch::descriptors::DescriptorQueue;
use crate::apps::fetch::interrupt::Interrupted;
use crate::apps::fetch::net::{same_serial, split_key, RETRY};
use crate::apps::fetch::output::{Output, LINES_BACKLOG};
use crate::apps::fetch::pool::{Addrs, HostKey, Pool};
use crate::apps::fetch::proxy::Proxies;
use crate::apps::fetch::report::{close_text, secs, FetchResult, Reporter};
use crate::apps::fetch::resolver::Resolver;
use crate::apps::fetch::tls::TlsSession;
use crate::apps::fetch::transfer::{Phase, Transfer};
use crate::apps::fetch::tunnel::Handshake;
use crate::apps::fetch::Plan;
use crate::core::Ctx;
use crate::core::{CloseReason, Closed, Handler, SignalAction};

/// Loop timer key: admit URLs into the window (and stop once everything is done).
pub(super) const ADMIT: u64 = 0;
/// Loop timer key of transfer `id`'s `--timeout`: `TIMEOUT_BASE + id`.
pub(super) const TIMEOUT_BASE: u64 = 1;

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
    /// Through a proxy's tunnel (CONNECT, SOCKS), not yet open: the handshake so far.
    pub(super) tunnel: Option<Box<Handshake>>,
}

/// The handler.
pub struct Fetcher {
    /// What to fetch and how (limits, timeouts, TLS settings).
    pub(super) plan: Plan,
    /// Where bodies and result lines go: the writer thread, and what it has not written.
    pub(super) output: Output,
    /// Results as they come, and the progress bar.
    pub reporter: Reporter,
    /// Per host:port: addresses, connection count, idle connections, waiting transfers.
    pub(super) pool: Pool,
    /// DNS lookups on helper threads, answered in `on_wake`.
    pub(super) resolver: Resolver,
    /// Which hosts go through a proxy, and how (`proxy.rs`).
    pub(super) proxies: Proxies,
    /// The transfers admitted and not finished; their keys are the ids used everywhere.
    pub(super) transfers: Slab<Transfer>,
    /// The next URL of `plan.urls` to admit.
    pub(super) next_url: usize,
    /// An `ADMIT` timer is pending.
    admit_armed: bool,
    /// Finished transfers whose output the writer has not finished with: their results
    /// (and start times), by serial, until `Written::Finished` completes them.
    pub(super) finishing: HashMap<u64, (FetchResult, Instant)>,
    /// How many transfers have their connection paused for output (`delivery.rs`).
    pub(super) paused: usize,
    /// Every result, in completion order, when asked to keep them.
    pub results: Vec<FetchResult>,
    /// Whether to fill `results` (the command prints results and needs only totals).
    pub(super) keep_results: bool,
    /// A signal cut the run short (`interrupt.rs`).
    pub interrupted: Option<Interrupted>,
    /// Transfers waiting for a file descriptor (`descriptors.rs`).
    pub(super) descriptors: DescriptorQueue,
    /// Reused buffers: the request being sent, decrypted input, encrypted output.
    pub(super) request: Vec<u8>,
    pub(super) plain: Vec<u8>,
    pub(super) cipher: Vec<u8>,
    /// A piece of a file body being sent (`upload.rs`), reused.
    pub(super) piece: Vec<u8>,
    /// The run's cookies (`cookies.rs`): Set-Cookie in, Cookie out.
    pub cookies: Jar,
    /// Transfers (id, serial) whose decoder stopped for the output (`body.rs`).
    pub(super) stalled: Vec<(usize, u64)>,
}

impl Fetcher {
    /// A fetcher for `plan`; `waker` is the loop's, for the resolver threads. Run it
    /// with `fetch::run`.
    pub fn new(plan: Plan, output: Output, reporter: Reporter, waker: Arc<Waker>) -> Fetcher {
        Fetcher {
            pool: Pool::new(plan.per_host),
            resolver: Resolver::new(waker, plan.resolve.clone()),
            proxies: Proxies::new(plan.proxy.clone()),
            plan,
            output,
            reporter,
            transfers: Slab::new(),
            next_url: 0,
            admit_armed: false,
            finishing: HashMap::new(),
            paused: 0,
            results: Vec::new(),
            keep_results: false,
            interrupted: None,
            descriptors: DescriptorQueue::default(),
            request: Vec::new(),
            plain: Vec::new(),
            cipher: Vec::new(),
            piece: Vec::new(),
            cookies: Jar::default(),
            stalled: Vec::new(),
        }
    }

    /// Use `jar` for the run's cookies (the default jar keeps none).
    pub fn with_cookies(mut self, jar: Jar) -> Fetcher {
        self.cookies = jar;
        self
    }

    /// Keep every result in `results` (for callers that want them after the run).
    pub fn keep_results(mut self) -> Fetcher {
        self.keep_results = true;
        self
    }

    /// Run `admit` later in this turn, from the loop's timers (see the module docs).
    pub(super) fn schedule_admit(&mut self, ctx: &mut Ctx<Link>) {
        if !self.admit_armed {
            self.admit_armed = true;
            ctx.timer_after(Duration::ZERO, ADMIT);
        }
    }

    /// Admit URLs while the concurrency window has room, and while the result lines
    /// not yet printed are few (a stdout nobody reads holds them up: admission resumes
    /// when the writer's answer comes back, `delivery.rs`).
    fn admit(&mut self, ctx: &mut Ctx<Link>) {
        while self.transfers.len() < self.plan.concurrency.max(1)
            && self.next_url < self.plan.urls.len()
            && self.output.lines_backlog() <= LINES_BACKLOG
        {
            let serial = self.next_url as u64;
            let requested = self.plan.urls[self.next_url].clone();
            self.next_url += 1;
            self.start(ctx, serial, requested);
        }
    }

    /// Stop the loop once every URL was admitted, every transfer is over and every
    /// result is written out.
    pub(super) fn stop_if_done(&mut self, ctx: &mut Ctx<Link>) {
        if self.next_url >= self.plan.urls.len()
            && self.transfers.is_empty()
            && self.finishing.is_empty()
            && !self.output.busy()
        {
            ctx.stop();
        }
    }

    fn start(&mut self, ctx: &mut Ctx<Link>, serial: u64, requested: String) {
        let url = match Url::parse(&requested) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                let e = format!(
                    "unsupported scheme {:?} (http and https only)",
                    url.scheme()
                );
                return self.report_unstarted(ctx, requested, e);
            }
            Err(e) => return self.report_unstarted(ctx, requested, format!("invalid URL: {e}")),
        };
        let Some(key) = HostKey::of(&url) else {
            return self.report_unstarted(ctx, requested, "invalid URL: no host".into());
        };
        let host = self.pool.id(key);
        let keep_heads = self.output.include_heads();
        let head_only = self.plan.head_only;
        let request = Arc::clone(&self.plan.request);
        let mut t = Transfer::new(serial, requested, url, host, head_only, keep_heads, request);
        let entry = self.transfers.vacant_entry();
        let id = entry.key();
        if let Some(limit) = self.plan.timeout {
            t.timeout = Some(ctx.timer_after(limit, TIMEOUT_BASE + id as u64));
        }
        entry.insert(t);
        self.dispatch(ctx, id);
    }

    /// Find the transfer a connection: resolve, reuse, open, or queue.
    pub(super) fn dispatch(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        let t = &mut self.transfers[id];
        let (host_id, fresh) = (t.host, t.fresh_conn);
        self.route(host_id);
        let host = self.pool.host(host_id);
        match &host.addrs {
            Addrs::Ready(_) => self.transfers[id].net.marks.dns_done(),
            Addrs::Failed(e) => {
                let e = e.clone();
                return self.finish(ctx, id, Some(e));
            }
            Addrs::Unknown => {
                host.addrs = Addrs::Resolving;
                // Through a proxy, the proxy's name is looked up, not the target's.
                let (name, port) = match self.proxies.get(host_id) {
                    Some(route) => (route.host.clone(), route.port),
                    None => (host.key.host.clone(), host.key.port),
                };
                self.resolver.lookup(host_id, &name, port);
                return self.wait(id, Phase::Resolving);
            }
            Addrs::Resolving => return self.wait(id, Phase::Resolving),
        }
        if !fresh {
            if let Some(token) = self.pool.take_idle(host_id) {
                return self.reuse(ctx, id, token);
            }
        }
        if self.pool.can_open(host_id) {
            return self.connect(ctx, id);
        }
        if fresh {
            // A new connection or none (`exchange.rs`): wait first in line for a slot.
            self.wait(id, Phase::Waiting);
            return self.make_room(ctx, host_id);
        }
        if let Some(token) = self.pool.take_idle(host_id) {
            return self.reuse(ctx, id, token);
        }
        self.wait(id, Phase::Waiting);
    }

    /// Send transfer `id`'s request on an idle keep-alive connection.
    pub(super) fn reuse(&mut self, ctx: &mut Ctx<Link>, id: usize, token: Token) {
        let tls = self.pool.host(self.transfers[id].host).key.tls;
        self.transfers[id].net.marks.reused(tls);
        self.send_request(ctx, id, token);
    }

    fn wait(&mut self, id: usize, phase: Phase) {
        let t = &mut self.transfers[id];
        t.phase = phase;
        self.pool.host(t.host).waiting.push_back(id);
    }
}

impl Fetcher {
    /// A connection to the host (direct, or a tunnel through its proxy) is ready for
    /// transfer `id`: start TLS if needed, and send the request.
    pub(super) fn start_exchange(&mut self, ctx: &mut Ctx<Link>, token: Token, id: usize) {
        let Some(host_id) = ctx.state(token).map(|l| l.host) else {
            return;
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
        // Happy eyeballs: the first connect to complete wins (`eyeballs.rs`).
        let Some(id) = id.filter(|&id| self.race_won(ctx, id, token)) else {
            return ctx.close(token, CloseReason::Done);
        };
        self.pool.prefer(host_id, addr);
        self.transfers[id].net.marks.connected();
        if self.open_tunnel(ctx, token, host_id) {
            return; // through a proxy: the exchange starts once the tunnel is open
        }
        self.start_exchange(ctx, token, id);
    }

    fn on_data(&mut self, ctx: &mut Ctx<Link>, token: Token, data: &mut [u8]) -> usize {
        let Some(link) = ctx.state(token) else {
            return data.len();
        };
        match (link.transfer, link.tls.is_some()) {
            // Bytes on an idle connection were never asked for: drop the connection.
            (None, _) => ctx.close(token, CloseReason::Done),
            (Some(id), _) if link.tunnel.is_some() => self.tunnel_bytes(ctx, token, id, data),
            (Some(id), true) => {
                self.tls_bytes(ctx, token, id, data);
                let done = ctx
                    .state(token)
                    .and_then(|l| l.tls.as_ref())
                    .is_some_and(|tls| !tls.is_handshaking());
                match self.transfers.get_mut(id).filter(|_| done) {
                    Some(t) if t.conn == Some(token) => t.net.marks.tls_done(),
                    _ => {}
                }
                self.resume_upload(ctx, token);
            }
            (Some(id), false) => self.response_bytes(ctx, token, id, data, false),
        }
        data.len()
    }

    /// A connection's queue drained: continue sending its file body (`upload.rs`).
    fn on_drained(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        if let Some(id) = ctx.state(token).and_then(|l| l.transfer) {
            self.send_upload(ctx, id, token);
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<Link>, token: Token) {
        self.end_of_stream(ctx, token);
        // Whatever happened above, nothing more can come on this connection.
        ctx.close(token, CloseReason::PeerClosed);
    }

    /// The connection's deadline: connect timeout, idle timeout, or pool idle time,
    /// depending on what it is doing.
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
                let idle = secs(self.plan.idle_timeout);
                let e = match self.transfers.get(id).map(|t| t.parser.head_complete()) {
                    Some(false) => format!(
                        "timeout: no complete response head within {idle} of the request \
                         (--idle-timeout)"
                    ),
                    _ => format!("timeout: no data from the server for {idle}"),
                };
                self.fail_transient(ctx, id, e);
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<Link>, token: Token, closed: Closed<Link>) {
        let (link, reason) = (closed.state, &closed.reason);
        self.pool.closed(link.host, token);
        // Its descriptor is closed already: a transfer waiting for one may go.
        self.descriptor_freed(ctx);
        // A connect racing for its transfer failed: the next address (`eyeballs.rs`).
        if self.race_lost(ctx, token, &link, reason) {
            return self.pump(ctx, link.host);
        }
        // Still attached means the connection failed under the transfer.
        let attached = link.transfer.filter(|&id| {
            self.transfers
                .get(id)
                .is_some_and(|t| t.conn == Some(token))
        });
        if let Some(id) = attached {
            // First of all: the token is free and may be reused by the next connect.
            self.transfers[id].conn = None;
            self.unpause(ctx, id, token);
            let t = &self.transfers[id];
            match reason {
                _ if self.may_resend(id, link.requests > 1) => {
                    debug!("{}: reused connection failed ({reason}), resending", t.url);
                    self.resend(ctx, id);
                }
                _ => {
                    let e = close_text(reason, t.parser.started(), t.bytes);
                    self.fail_transient(ctx, id, e);
                }
            }
        }
        self.pump(ctx, link.host);
    }

    /// SIGINT, SIGTERM: cancel the run in order, or (again) exit at once.
    fn on_signal(&mut self, ctx: &mut Ctx<Link>, signal: i32) -> SignalAction {
        self.interrupt(ctx, signal)
    }

    /// `ADMIT`, a transfer's `--timeout`, `--retry` wait or happy eyeballs delay.
    fn on_timer(&mut self, ctx: &mut Ctx<Link>, key: u64) {
        if key == ADMIT {
            self.admit_armed = false;
            // First the connections that finished a response in this turn (`pool.rs`).
            self.settle(ctx);
            self.admit(ctx);
            return self.stop_if_done(ctx);
        }
        if let Some((flag, id, serial)) = split_key(key) {
            // Only if the transfer under that id is still the one that set it.
            if !self
                .transfers
                .get(id)
                .is_some_and(|t| same_serial(serial, t.serial))
            {
                return;
            }
            return match flag {
                RETRY => self.retry_due(ctx, id),
                _ => self.race_due(ctx, id),
            };
        }
        // Cancelled when its transfer ends, so the transfer under this id is its own.
        let id = (key - TIMEOUT_BASE) as usize;
        if let Some(t) = self.transfers.get_mut(id) {
            t.timeout = None;
            let limit = self.plan.timeout.unwrap_or_default();
            let e = format!(
                "timeout: transfer not done after {} (--timeout)",
                secs(limit)
            );
            self.finish(ctx, id, Some(e));
        }
    }

    /// A resolver thread has addresses, or the output's writer thread has answers.
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
        self.output_answers(ctx);
        self.drain_decoders(ctx);
    }

    /// Output only, like Redis's `beforesleep`: hand the waiting result lines to the
    /// writer in one job, and redraw the progress bar.
    fn on_turn(&mut self, ctx: &mut Ctx<Link>) {
        self.output.flush_lines();
        self.reporter.tick(ctx.instant());
    }
}
