//! The event loop: one thread, one `mio::Poll`, every socket netloop touches.
//!
//! This is seed 001's `select()` server grown up. Where the seed keeps `inputs`,
//! `outputs` and `message_queue[conn]`, the loop keeps:
//!
//! - a `Slab` of connection slots (`conn.rs`) keyed by `Token`, each registered **once**
//!   for readable *and* writable — so interest is never changed per message (no
//!   `epoll_ctl` per write, unlike the seed's `outputs.append`/`outputs.remove`);
//! - per connection, an outbound queue that exists only while bytes are waiting;
//! - `Deadlines` for idle timeouts, whose earliest entry is the poll timeout.
//!
//! One turn (`turn`) is: wait for events, handle each, handle connections that were left
//! readable, expire deadlines, call the handler's `on_turn`. `run` repeats turns until
//! the handler stops the loop or a shutdown completes — the shape of Redis's
//! `aeMain`/`aeProcessEvents`.
//!
//! Readiness rules (mio is edge-triggered on Linux): an event is a hint that something
//! changed, never a promise. So: accept, read and write until `WouldBlock`; retry
//! `Interrupted`; ignore events for tokens that are gone (slab keys are reused); and when
//! the loop stops reading a socket early (fairness cap, backpressure), it must remember
//! that socket as still readable, because no new edge will come for bytes already there.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::{debug, info, trace, warn};
use mio::event::Event;
use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::conn::{flags, Conn, Peer, Stream};
use crate::deadlines::{Clock, Deadlines, Millis};
use crate::handler::{CloseReason, Handler};
use crate::io_util::{interrupted, out_of_descriptors, peer_gone, would_block};
use crate::listen::Listener;
use crate::stats::Stats;

/// Size of the one read buffer all connections share.
pub const SCRATCH_SIZE: usize = 64 * 1024;
/// Reads per connection per turn before others get a go (1 MiB with the scratch size).
const READS_PER_TURN: usize = 16;
/// Datagrams per UDP port per turn before others get a go.
const DATAGRAMS_PER_TURN: usize = 256;
/// How long to wait before retrying `accept` after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(200);

/// Tokens at the top of the range belong to sources other than connections, whose
/// tokens are slab keys counting up from 0.
const SIGNAL_TOKEN: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1;
const UDP_BASE: usize = usize::MAX - 1 - 4096;

/// What a token refers to.
enum Source {
    Signal,
    Listener(usize),
    Udp(usize),
    Conn(usize),
}

fn classify(token: Token) -> Source {
    match token.0 {
        t if t == SIGNAL_TOKEN.0 => Source::Signal,
        t if t > UDP_BASE => Source::Listener(LISTENER_BASE - t),
        t if t > UDP_BASE - 4096 => Source::Udp(UDP_BASE - t),
        t => Source::Conn(t),
    }
}

/// Tunable limits of a loop.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// High watermark: stop reading from a connection whose outbound queue is larger.
    /// Reading resumes below a quarter of it (the low watermark).
    pub max_queue: usize,
    /// Largest unconsumed input a connection may hold (an incomplete line or frame).
    pub max_read_buf: usize,
    /// Close connections with no traffic for this long.
    pub idle_timeout: Option<Duration>,
    /// Accept at most this many open connections; extra ones are closed at once.
    pub max_conns: Option<usize>,
    /// How long shutdown waits for queued bytes to be flushed.
    pub shutdown_grace: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            max_queue: 1024 * 1024,
            max_read_buf: 1024 * 1024,
            idle_timeout: None,
            max_conns: None,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Where an outbound connection goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The connection table, and everything a handler may do to it.
///
/// Handlers receive `&mut Conns` in every callback. Closing is deferred: `close` marks
/// the slot and the loop removes it after the current callback returns, so a token stays
/// valid (and is not reused by a new connection) while a callback still holds it.
pub struct Conns<S> {
    registry: Registry,
    slab: Slab<Conn<S>>,
    udp: Vec<UdpSocket>,
    /// Connections (and UDP ports) that may still have unread input: no edge will come.
    ready: Vec<Token>,
    /// Connections to remove after the current callback.
    closing: Vec<(Token, CloseReason)>,
    deadlines: Deadlines,
    clock: Clock,
    config: LoopConfig,
    stats: Stats,
    /// Reused buffer for assembling datagrams.
    datagram: Vec<u8>,
    stopped: bool,
    shutting_down: bool,
}

impl<S> Conns<S> {
    /// Queue `data` for the connection, writing at once when nothing is queued before it.
    pub fn send(&mut self, token: Token, data: &[u8]) {
        self.send_parts(token, &[data]);
    }

    /// Like `send`, for a message in several pieces (written with one `writev`).
    pub fn send_parts(&mut self, token: Token, parts: &[&[u8]]) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::CLOSING | flags::WRITE_SHUT) {
            return;
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return;
        }
        let mut written = 0;
        // Write-through: with an empty queue the socket is very likely writable, so try
        // now and save the round trip through the queue (and a writable event).
        if conn.queued() == 0 && !conn.has(flags::CONNECTING) {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            loop {
                match conn.stream.write_vectored(&slices) {
                    Ok(n) => {
                        written = n;
                        break;
                    }
                    Err(e) if interrupted(&e) => continue,
                    Err(e) if would_block(&e) => break,
                    Err(e) => {
                        self.close(token, CloseReason::Error(e));
                        return;
                    }
                }
            }
            self.stats.bytes_out += written as u64;
        }
        // A short write means the kernel's send buffer is full: the rest waits for the
        // next writable edge.
        let mut skip = written;
        if skip < total {
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
        if queued > self.config.max_queue && !conn.has(flags::READ_PAUSED) {
            // Backpressure: this peer is not reading what we send it; stop reading what
            // it sends us, so its queue (and our memory) stop growing.
            conn.flags |= flags::READ_PAUSED;
            debug!(
                "{}: queue {queued} bytes over watermark, reading paused",
                conn.peer
            );
        }
        if written > 0 {
            self.touch(token);
        }
    }

    /// Close the connection after its queued bytes are written.
    pub fn close_when_flushed(&mut self, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        conn.flags |= flags::CLOSE_WHEN_FLUSHED | flags::READ_DONE;
        if conn.queued() == 0 {
            let reason = self.flushed_close_reason(token);
            self.close(token, reason);
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

    /// Close the connection now (unsent bytes are dropped).
    pub fn close(&mut self, token: Token, reason: CloseReason) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::CLOSING) {
            return;
        }
        conn.flags |= flags::CLOSING;
        self.closing.push((token, reason));
    }

    /// The handler's state for a connection.
    pub fn state(&self, token: Token) -> Option<&S> {
        self.slab.get(token.0).map(|c| &c.state)
    }

    /// The handler's state for a connection, mutable.
    pub fn state_mut(&mut self, token: Token) -> Option<&mut S> {
        self.slab.get_mut(token.0).map(|c| &mut c.state)
    }

    /// The connection's peer, for messages.
    pub fn peer(&self, token: Token) -> Option<Peer> {
        self.slab.get(token.0).map(|c| c.peer)
    }

    /// Bytes waiting in the connection's outbound queue.
    pub fn queued(&self, token: Token) -> usize {
        self.slab.get(token.0).map_or(0, |c| c.queued())
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The loop's clock (read once per turn).
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Ask the loop to return from `run` at the end of this turn.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Call `on_deadline` for this connection `after` from now (replacing any earlier
    /// request, and any idle deadline: traffic pushes it back only with `--idle-timeout`).
    pub fn set_deadline(&mut self, token: Token, after: Duration) {
        let when = self.clock.after(after);
        self.set_deadline_at(token.0, when);
    }

    /// Forget the connection's deadline.
    pub fn clear_deadline(&mut self, token: Token) {
        if let Some(conn) = self.slab.get_mut(token.0) {
            // The filed entry stays; when it comes up, it finds no deadline and is dropped.
            conn.deadline = 0;
        }
    }

    /// Start a non-blocking connect; `on_open` follows when it completes, or `on_close`
    /// with `ConnectFailed`.
    pub fn connect(&mut self, target: &Target, state: S) -> io::Result<Token> {
        let (stream, peer) = match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(*addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
                let _ = s.set_nodelay(true);
                (Stream::Tcp(s), Peer::Inet(*addr))
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("connect {}: {e}", path.display()))
                })?;
                (Stream::Unix(s), Peer::Unix)
            }
        };
        self.insert(stream, peer, state, true)
    }

    /// Put an already connected stream on the loop (for example one end of a pipe).
    pub fn add_stream(&mut self, stream: Stream, peer: Peer, state: S) -> io::Result<Token> {
        self.insert(stream, peer, state, false)
    }

    /// Send one datagram from UDP port number `port` (dropped if the socket is full:
    /// UDP promises no delivery, and queueing would let a flood grow our memory).
    pub fn send_datagram(&mut self, port: usize, to: SocketAddr, parts: &[&[u8]]) {
        let Some(socket) = self.udp.get(port) else {
            return;
        };
        self.datagram.clear();
        for part in parts {
            self.datagram.extend_from_slice(part);
        }
        loop {
            match socket.send_to(&self.datagram, to) {
                Ok(_) => {
                    self.stats.datagrams_out += 1;
                    trace!(
                        "udp port {port}: sent {} bytes to {to}",
                        self.datagram.len()
                    );
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) if would_block(&e) => self.stats.datagrams_dropped += 1,
                Err(e) => debug!("udp send to {to}: {e}"),
            }
            return;
        }
    }

    /// The local address of UDP port number `port`.
    pub fn udp_local_addr(&self, port: usize) -> Option<SocketAddr> {
        self.udp.get(port).and_then(|s| s.local_addr().ok())
    }

    fn insert(
        &mut self,
        mut stream: Stream,
        peer: Peer,
        state: S,
        connecting: bool,
    ) -> io::Result<Token> {
        let entry = self.slab.vacant_entry();
        let token = Token(entry.key());
        // Registered once, for both directions, for the connection's whole life.
        self.registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| io::Error::new(e.kind(), format!("register {peer}: {e}")))?;
        let mut conn = Conn::new(stream, peer, state);
        if connecting {
            conn.flags |= flags::CONNECTING;
        }
        entry.insert(conn);
        self.stats.peak_open = self.stats.peak_open.max(self.slab.len());
        self.touch(token);
        Ok(token)
    }

    fn set_deadline_at(&mut self, key: usize, when: Millis) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        conn.deadline = when;
        // Only an earlier deadline needs a new entry; a later one is found lazily when
        // the filed entry comes up (see `deadlines.rs`).
        if conn.filed_deadline == 0 || when < conn.filed_deadline {
            if conn.filed_deadline != 0 {
                self.deadlines.remove(conn.filed_deadline, key);
            }
            self.deadlines.insert(when, key);
            conn.filed_deadline = when;
        }
    }

    /// Traffic happened: push the idle deadline back (a single store in the common case).
    fn touch(&mut self, token: Token) {
        if let Some(idle) = self.config.idle_timeout {
            let when = self.clock.after(idle);
            self.set_deadline_at(token.0, when);
        }
    }

    fn mark_ready(&mut self, token: Token) {
        if let Some(conn) = self.slab.get_mut(token.0) {
            if !conn.has(flags::READY_LISTED) {
                conn.flags |= flags::READY_LISTED;
                self.ready.push(token);
            }
        }
    }

    fn flushed_close_reason(&self, token: Token) -> CloseReason {
        match self.slab.get(token.0) {
            _ if self.shutting_down => CloseReason::Shutdown,
            Some(c) if c.has(flags::PEER_EOF) => CloseReason::PeerClosed,
            _ => CloseReason::Done,
        }
    }

    fn shutdown_write_now(&mut self, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::WRITE_SHUT) {
            return;
        }
        conn.flags |= flags::WRITE_SHUT;
        if let Err(e) = conn.stream.shutdown_write() {
            if !peer_gone(&e) {
                debug!("{}: shutdown(write): {e}", conn.peer);
            }
        }
    }

    /// Write queued bytes after a writable event (or when a connect completes).
    fn flush<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
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
                    queue.consume(n);
                    if !queue.is_empty() {
                        break; // short write: the kernel buffer is full
                    }
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    self.close(token, CloseReason::Error(e));
                    return;
                }
            }
        }
        let queued = conn.queued();
        if wrote > 0 {
            trace!(
                "token {}: flushed {wrote} bytes, queue depth {queued}",
                token.0
            );
        }
        self.stats.bytes_out += wrote as u64;
        if wrote > 0 {
            self.touch(token);
        }
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::READ_PAUSED) && queued <= self.config.max_queue / 4 {
            // Low watermark reached: read again. The socket may hold bytes that arrived
            // while paused, and their edge is long gone, so list it as ready.
            conn.flags &= !flags::READ_PAUSED;
            debug!(
                "{}: queue drained to {queued} bytes, reading resumed",
                conn.peer
            );
            self.mark_ready(token);
        }
        if queued == 0 && wrote > 0 {
            self.after_drain(handler, token);
        }
    }

    /// The queue just became empty: free buffers, do what was waiting for the flush.
    fn after_drain<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        conn.release_empty_buffers();
        if conn.has(flags::CLOSE_WHEN_FLUSHED) {
            let reason = self.flushed_close_reason(token);
            self.close(token, reason);
            return;
        }
        if conn.has(flags::SHUTDOWN_WHEN_FLUSHED) {
            self.shutdown_write_now(token);
        }
        handler.on_drained(self, token);
    }

    /// Hand freshly read bytes (after any kept input) to the handler; keep the rest.
    fn deliver<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token, fresh: &mut [u8]) {
        let kept = match self.slab.get_mut(token.0) {
            Some(conn) => match conn.pending.as_mut() {
                Some(p) if !p.read_buf.is_empty() => std::mem::take(&mut p.read_buf),
                _ => Vec::new(),
            },
            None => return,
        };
        let mut input = kept;
        let consumed;
        let rest: &[u8] = if input.is_empty() {
            consumed = handler.on_data(self, token, fresh).min(fresh.len());
            &fresh[consumed..]
        } else {
            input.extend_from_slice(fresh);
            consumed = handler.on_data(self, token, &mut input).min(input.len());
            &input[consumed..]
        };
        let limit = self.config.max_read_buf;
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if rest.is_empty() {
            conn.release_empty_buffers();
        } else if rest.len() > limit {
            warn!("{}: more than {limit} bytes of unconsumed input", conn.peer);
            self.close(token, CloseReason::InputTooLarge);
        } else {
            let buf = &mut conn.pending_mut().read_buf;
            buf.clear();
            buf.extend_from_slice(rest);
        }
    }
}

/// The loop itself: the poller, the shared read buffer, the listeners and the table.
pub struct EventLoop<S> {
    poll: Poll,
    events: Events,
    /// The one read buffer every connection reads into.
    scratch: Vec<u8>,
    listeners: Vec<Listener>,
    signals: Option<Signals>,
    /// While descriptors are exhausted: when to try `accept` again.
    accept_paused_until: Option<Millis>,
    /// During graceful shutdown: when to give up flushing.
    shutdown_deadline: Option<Millis>,
    conns: Conns<S>,
}

impl<S: Default> EventLoop<S> {
    /// A loop with the given limits.
    pub fn new(config: LoopConfig) -> io::Result<EventLoop<S>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let mut clock = Clock::new();
        clock.update();
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            scratch: vec![0; SCRATCH_SIZE],
            listeners: Vec::new(),
            signals: None,
            accept_paused_until: None,
            shutdown_deadline: None,
            conns: Conns {
                registry,
                slab: Slab::new(),
                udp: Vec::new(),
                ready: Vec::new(),
                closing: Vec::new(),
                deadlines: Deadlines::default(),
                clock,
                config,
                stats: Stats::default(),
                datagram: Vec::new(),
                stopped: false,
                shutting_down: false,
            },
        })
    }

    /// Serve connections from this listener.
    pub fn add_listener(&mut self, mut listener: Listener) -> io::Result<()> {
        let token = Token(LISTENER_BASE - self.listeners.len());
        match &mut listener {
            Listener::Tcp(l, _) => self
                .poll
                .registry()
                .register(l, token, Interest::READABLE)?,
            Listener::Unix(l, _) => self
                .poll
                .registry()
                .register(l, token, Interest::READABLE)?,
        }
        self.listeners.push(listener);
        Ok(())
    }

    /// Serve datagrams on this UDP socket; returns its port number for `send_datagram`.
    pub fn add_udp(&mut self, mut socket: UdpSocket) -> io::Result<usize> {
        let port = self.conns.udp.len();
        self.poll
            .registry()
            .register(&mut socket, Token(UDP_BASE - port), Interest::READABLE)?;
        self.conns.udp.push(socket);
        Ok(port)
    }

    /// Shut down gracefully on SIGINT or SIGTERM.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([libc::SIGINT, libc::SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The listeners, for printing where we listen.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The connection table (to open client connections before `run`).
    pub fn conns(&mut self) -> &mut Conns<S> {
        &mut self.conns
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.conns.stats
    }

    /// Run turns until the handler stops the loop or a shutdown completes.
    pub fn run<H: Handler<State = S>>(&mut self, handler: &mut H) -> io::Result<()> {
        while !self.finished() {
            self.turn(handler)?;
        }
        Ok(())
    }

    /// True once `run` should return.
    pub fn finished(&self) -> bool {
        self.conns.stopped || (self.conns.shutting_down && self.conns.slab.is_empty())
    }

    /// One turn: wait for readiness (at most until the next deadline), then handle it.
    pub fn turn<H: Handler<State = S>>(&mut self, handler: &mut H) -> io::Result<()> {
        let timeout = self.poll_timeout();
        trace!("polling, timeout {timeout:?}");
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if interrupted(&e) {
                return Ok(());
            }
            return Err(e);
        }
        let now = self.conns.clock.update();

        // Take the events out so handlers can borrow the loop; put them back after.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            self.dispatch(handler, event);
            self.reap(handler);
        }
        self.events = events;

        // Connections left readable by the fairness cap or by resumed reading.
        let ready = std::mem::take(&mut self.conns.ready);
        for token in ready {
            if let Some(conn) = self.conns.slab.get_mut(token.0) {
                conn.flags &= !flags::READY_LISTED;
            }
            match classify(token) {
                Source::Udp(port) => self.read_udp(handler, port),
                _ => self.read_conn(handler, token, true),
            }
            self.reap(handler);
        }

        self.expire_deadlines(handler, now);
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_all(handler);
        }
        if self.shutdown_deadline.is_some_and(|t| now >= t) {
            self.abandon_unflushed();
        }
        handler.on_turn(&mut self.conns);
        self.reap(handler);
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.conns.ready.is_empty() || !self.conns.closing.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.conns.clock.now();
        [
            self.conns.deadlines.next(),
            self.accept_paused_until,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| Duration::from_millis(t.saturating_sub(now)))
    }

    fn dispatch<H: Handler<State = S>>(&mut self, handler: &mut H, event: &Event) {
        match classify(event.token()) {
            Source::Signal => self.on_signal(handler),
            Source::Listener(i) => {
                trace!("listener {i} readable");
                if self.accept_paused_until.is_none() {
                    self.accept(handler, i);
                }
            }
            Source::Udp(port) => self.read_udp(handler, port),
            Source::Conn(key) => {
                let token = event.token();
                let Some(conn) = self.conns.slab.get(key) else {
                    // Sporadic events happen, and slab keys are reused: ignore.
                    trace!("token {key}: event for a closed connection, ignored");
                    return;
                };
                trace!(
                    "token {key}: readable={} writable={} read_closed={} error={}",
                    event.is_readable(),
                    event.is_writable(),
                    event.is_read_closed(),
                    event.is_error()
                );
                if conn.has(flags::CLOSING) {
                    return;
                }
                if conn.has(flags::CONNECTING) && !self.finish_connect(handler, token) {
                    return;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    self.conns.flush(handler, token);
                }
                if event.is_read_closed() || event.is_error() {
                    // The EOF (or error) is already here and will not raise another
                    // edge: read until the kernel reports it, even past a short read.
                    self.read_conn(handler, token, true);
                } else if event.is_readable() {
                    self.read_conn(handler, token, false);
                }
            }
        }
    }

    /// A non-blocking connect reports completion as writability; `SO_ERROR` says how it
    /// went. Returns true when the connection is established.
    fn finish_connect<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) -> bool {
        let Some(conn) = self.conns.slab.get_mut(token.0) else {
            return false;
        };
        let failure = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match conn.stream.is_connected() {
                Ok(true) => None,
                Ok(false) => return false, // not yet: wait for the next event
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failure {
            self.conns.close(token, CloseReason::ConnectFailed(e));
            return false;
        }
        conn.flags &= !flags::CONNECTING;
        debug!("token {}: connected to {}", token.0, conn.peer);
        self.conns.stats.connected += 1;
        handler.on_open(&mut self.conns, token);
        self.conns.flush(handler, token);
        true
    }

    /// Read until the socket is drained, handing each chunk to the handler.
    fn read_conn<H: Handler<State = S>>(
        &mut self,
        handler: &mut H,
        token: Token,
        to_the_end: bool,
    ) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.slab.get_mut(token.0) else {
                return;
            };
            let stop = flags::READ_PAUSED | flags::READ_DONE | flags::CLOSING | flags::CONNECTING;
            if conn.has(stop) {
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    debug!("{}: EOF", conn.peer);
                    conn.flags |= flags::READ_DONE | flags::PEER_EOF;
                    handler.on_eof(&mut self.conns, token);
                    return;
                }
                Ok(n) => {
                    trace!("token {}: read {n} bytes", token.0);
                    self.conns.stats.bytes_in += n as u64;
                    self.conns.touch(token);
                    self.conns.deliver(handler, token, &mut self.scratch[..n]);
                    if n < self.scratch.len() && !to_the_end {
                        // A short read emptied the kernel's receive queue: anything that
                        // arrives later raises a new edge, so this is as good as
                        // WouldBlock and saves a system call per message.
                        return;
                    }
                }
                Err(e) if would_block(&e) => {
                    trace!("token {}: read WouldBlock", token.0);
                    return;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    self.conns.close(token, CloseReason::Error(e));
                    return;
                }
            }
        }
        // Fairness cap reached with data possibly left: come back after the others.
        self.conns.mark_ready(token);
    }

    fn read_udp<H: Handler<State = S>>(&mut self, handler: &mut H, port: usize) {
        for _ in 0..DATAGRAMS_PER_TURN {
            let Some(socket) = self.conns.udp.get(port) else {
                return;
            };
            match socket.recv_from(&mut self.scratch) {
                Ok((n, from)) => {
                    trace!("udp port {port}: {n} bytes from {from}");
                    self.conns.stats.datagrams_in += 1;
                    handler.on_datagram(&mut self.conns, port, from, &mut self.scratch[..n]);
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
        if !self.conns.ready.contains(&token) {
            self.conns.ready.push(token);
        }
    }

    /// Accept until `WouldBlock` (edge-triggered: the backlog may hold many).
    fn accept<H: Handler<State = S>>(&mut self, handler: &mut H, index: usize) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) if out_of_descriptors(&e) => {
                    // The pending connection stays in the backlog and the listener stays
                    // readable: retrying now would spin. Pause; closes and a timer resume.
                    warn!(
                        "accept on {}: {e}; pausing accepts until descriptors free up",
                        listener.describe()
                    );
                    self.conns.stats.accept_pauses += 1;
                    self.accept_paused_until = Some(self.conns.clock.after(ACCEPT_RETRY));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that client gave up; others may wait.
                    debug!("accept on {}: {e}", listener.describe());
                    continue;
                }
            };
            self.conns.stats.accepted += 1;
            if let Some(max) = self.conns.config.max_conns {
                if self.conns.slab.len() >= max {
                    debug!("{peer}: over --max-conns {max}, closed at once");
                    self.conns.stats.rejected_max_conns += 1;
                    self.conns.stats.closed_by_limit += 1;
                    drop(stream);
                    continue;
                }
            }
            match self.conns.insert(stream, peer, S::default(), false) {
                Ok(token) => {
                    debug!("token {}: accepted {peer}", token.0);
                    handler.on_open(&mut self.conns, token);
                    self.reap(handler);
                }
                Err(e) => warn!("{e}"),
            }
        }
    }

    /// Retry accepting on every listener (after a pause for lack of descriptors).
    fn accept_all<H: Handler<State = S>>(&mut self, handler: &mut H) {
        self.accept_paused_until = None;
        for i in 0..self.listeners.len() {
            self.accept(handler, i);
            if self.accept_paused_until.is_some() {
                return;
            }
        }
    }

    /// Remove the connections closed during the last callback.
    fn reap<H: Handler<State = S>>(&mut self, handler: &mut H) {
        let mut freed = false;
        while let Some((token, reason)) = self.conns.closing.pop() {
            let Some(conn) = self.conns.slab.try_remove(token.0) else {
                continue;
            };
            if conn.filed_deadline != 0 {
                self.conns.deadlines.remove(conn.filed_deadline, token.0);
            }
            let stats = &mut self.conns.stats;
            match &reason {
                CloseReason::PeerClosed | CloseReason::Done => stats.closed_by_peer += 1,
                CloseReason::IdleTimeout => stats.closed_by_timeout += 1,
                CloseReason::Shutdown => stats.closed_by_shutdown += 1,
                CloseReason::InputTooLarge => stats.closed_by_limit += 1,
                CloseReason::Error(_) | CloseReason::ConnectFailed(_) => stats.closed_by_error += 1,
            }
            match &reason {
                CloseReason::Error(e) if peer_gone(e) => info!("{}: {reason}", conn.peer),
                CloseReason::Error(_) => warn!("{}: {reason}", conn.peer),
                _ => debug!("token {}: {} {reason}", token.0, conn.peer),
            }
            // Dropping the stream closes the descriptor, which also removes it from the
            // epoll set (we never duplicate descriptors), so no deregister call is needed.
            let Conn { stream, state, .. } = conn;
            drop(stream);
            freed = true;
            handler.on_close(&mut self.conns, token, state, &reason);
        }
        if freed && self.accept_paused_until.is_some() && !self.conns.shutting_down {
            // A descriptor came back: try the waiting backlog now.
            self.accept_all(handler);
        }
    }

    fn expire_deadlines<H: Handler<State = S>>(&mut self, handler: &mut H, now: Millis) {
        while let Some((when, key)) = self.conns.deadlines.pop_due(now) {
            let Some(conn) = self.conns.slab.get_mut(key) else {
                continue;
            };
            if conn.filed_deadline != when {
                continue;
            }
            conn.filed_deadline = 0;
            match conn.deadline {
                0 => {}
                later if later > now => {
                    // Active since this entry was filed: file it again at the true time.
                    self.conns.deadlines.insert(later, key);
                    conn.filed_deadline = later;
                }
                _ => {
                    conn.deadline = 0;
                    trace!("token {key}: deadline passed");
                    handler.on_deadline(&mut self.conns, Token(key));
                    self.reap(handler);
                }
            }
        }
    }

    fn on_signal<H: Handler<State = S>>(&mut self, handler: &mut H) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let received: Vec<i32> = signals.pending().collect();
        if received.is_empty() {
            return;
        }
        if self.conns.shutting_down {
            info!(
                "second signal: closing {} connections now",
                self.conns.len()
            );
            self.abandon_unflushed();
            return;
        }
        info!(
            "signal {}: shutting down ({} connections open)",
            received[0],
            self.conns.len()
        );
        self.begin_shutdown(handler);
    }

    /// Stop accepting, stop reading, close every connection once its queue is flushed.
    pub fn begin_shutdown<H: Handler<State = S>>(&mut self, handler: &mut H) {
        self.conns.shutting_down = true;
        self.listeners.clear(); // closes them (and removes Unix socket files)
        self.conns.udp.clear();
        self.accept_paused_until = None;
        self.shutdown_deadline = Some(self.conns.clock.after(self.conns.config.shutdown_grace));
        let keys: Vec<usize> = self.conns.slab.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.conns.close_when_flushed(Token(key));
        }
        self.reap(handler);
    }

    /// Grace period over (or a second signal): close whatever is left.
    fn abandon_unflushed(&mut self) {
        self.shutdown_deadline = None;
        let keys: Vec<usize> = self.conns.slab.iter().map(|(k, _)| k).collect();
        if !keys.is_empty() {
            warn!("closing {} connections with unsent data", keys.len());
        }
        for key in keys {
            self.conns.close(Token(key), CloseReason::Shutdown);
        }
    }
}
