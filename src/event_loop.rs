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

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, trace, warn};
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::conn::{flags, Conn};
pub use crate::conns::{Conns, Target};
use crate::deadlines::{Clock, Deadlines, Millis};
use crate::handler::{CloseReason, Handler, SignalAction};
use crate::io_util::{interrupted, out_of_descriptors, peer_gone, would_block};
use crate::listen::Listener;
use crate::stats::Stats;

/// Size of the one read buffer all connections share.
pub const SCRATCH_SIZE: usize = 64 * 1024;
/// Reads per connection per turn before others get a go (1 MiB with the scratch size).
const READS_PER_TURN: usize = 16;
/// Datagrams per UDP port per turn before others get a go.
const DATAGRAMS_PER_TURN: usize = 256;
/// Accept errors in a row (other than `WouldBlock`) before backing off.
const MAX_ACCEPT_FAILURES: usize = 64;
/// How long to wait before retrying `accept` after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(200);

/// Tokens at the top of the range belong to sources other than connections, whose
/// tokens are slab keys counting up from 0.
const SIGNAL_TOKEN: Token = Token(usize::MAX);
const WAKER_TOKEN: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 2;
const UDP_BASE: usize = LISTENER_BASE - 4096;

/// What a token refers to.
enum Source {
    Signal,
    Waker,
    Listener(usize),
    Udp(usize),
    Conn(usize),
}

fn classify(token: Token) -> Source {
    match token.0 {
        t if t == SIGNAL_TOKEN.0 => Source::Signal,
        t if t == WAKER_TOKEN.0 => Source::Waker,
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

/// The loop itself: the poller, the shared read buffer, the listeners and the table.
pub struct EventLoop<S> {
    poll: Poll,
    events: Events,
    /// The one read buffer every connection reads into.
    scratch: Vec<u8>,
    listeners: Vec<Listener>,
    signals: Option<Signals>,
    /// Created on first use by `waker()`.
    waker: Option<Arc<Waker>>,
    /// While descriptors are exhausted: when to try `accept` again.
    accept_paused_until: Option<Millis>,
    /// The pause was logged; log again only after accepting fully resumed.
    accept_pause_logged: bool,
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
            waker: None,
            accept_paused_until: None,
            accept_pause_logged: false,
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
                wake_at: None,
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
        self.handle_signals_from(&[libc::SIGINT, libc::SIGTERM])
    }

    /// Deliver these signals to the handler's `on_signal` as loop events. The signal
    /// handler itself only writes to a pipe (signal-hook), so nothing unsafe runs at
    /// signal time; the real work happens here, between events, like any other I/O.
    pub fn handle_signals_from(&mut self, which: &[i32]) -> io::Result<()> {
        let mut signals = Signals::new(which)?;
        self.poll
            .registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// A handle other threads use to wake the loop (it then calls `Handler::on_wake`),
    /// e.g. a resolver thread handing back addresses through a channel. The loop itself
    /// never blocks on anything but `poll`.
    pub fn waker(&mut self) -> io::Result<Arc<Waker>> {
        if let Some(waker) = &self.waker {
            return Ok(Arc::clone(waker));
        }
        let waker = Arc::new(Waker::new(self.poll.registry(), WAKER_TOKEN)?);
        self.waker = Some(Arc::clone(&waker));
        Ok(waker)
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
        if self.conns.wake_at.is_some_and(|t| t <= now) {
            self.conns.wake_at = None;
        }
        trace!("woke with {} events", self.events.iter().count());

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
            self.conns.wake_at,
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
            Source::Waker => {
                trace!("woken by another thread");
                handler.on_wake(&mut self.conns);
            }
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
                // epoll reports "writable" with nearly every event; it only matters when
                // something is queued (or the event carries an error to surface).
                let queued = self.conns.queued(token) > 0;
                if (queued && (event.is_writable() || event.is_write_closed())) || event.is_error()
                {
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
                    let lingering = conn.has(flags::LINGERING);
                    conn.flags |= flags::READ_DONE | flags::PEER_EOF;
                    if lingering {
                        let reason = self.conns.flushed_close_reason(token);
                        self.conns.close(token, reason);
                    } else {
                        handler.on_eof(&mut self.conns, token);
                    }
                    return;
                }
                Ok(n) if conn.has(flags::LINGERING) => {
                    trace!("token {}: discarded {n} bytes while closing", token.0);
                    if n < self.scratch.len() && !to_the_end {
                        return;
                    }
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
                        self.burst_ended(handler, token);
                        return;
                    }
                }
                Err(e) if would_block(&e) => {
                    trace!("token {}: read WouldBlock", token.0);
                    self.burst_ended(handler, token);
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

    /// Tell the handler the socket is drained, if the connection is still reading.
    fn burst_ended<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
        let reading = self
            .conns
            .slab
            .get(token.0)
            .is_some_and(|c| !c.has(flags::CLOSING | flags::LINGERING | flags::READ_DONE));
        if reading {
            handler.on_burst_end(&mut self.conns, token);
        }
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
        let mut failures = 0;
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if would_block(&e) => {
                    trace!("listener {index}: accept WouldBlock");
                    if self.accept_pause_logged {
                        info!("backlog drained: accepting normally again");
                        self.accept_pause_logged = false;
                    }
                    return;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) if out_of_descriptors(&e) => {
                    // The pending connection stays in the backlog and the listener stays
                    // readable: retrying now would spin. Pause; closes and a timer resume.
                    if !self.accept_pause_logged {
                        warn!(
                            "accept on {}: {e}; pausing accepts until descriptors free up",
                            listener.describe()
                        );
                        self.accept_pause_logged = true;
                        self.conns.stats.accept_pauses += 1;
                    }
                    self.accept_paused_until = Some(self.conns.clock.after(ACCEPT_RETRY));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that client gave up; others may wait. An
                    // error that repeats is not about one client: back off as for EMFILE
                    // rather than spin on it.
                    debug!("accept on {}: {e}", listener.describe());
                    failures += 1;
                    if failures >= MAX_ACCEPT_FAILURES {
                        warn!(
                            "accept on {}: {e} (repeated); retrying later",
                            listener.describe()
                        );
                        self.accept_paused_until = Some(self.conns.clock.after(ACCEPT_RETRY));
                        return;
                    }
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
        if self.conns.closing.is_empty() {
            return;
        }
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
            // epoll set (the kernel drops an epoll entry when the last descriptor of the
            // socket closes, and the loop never duplicates a connection's descriptor), so
            // no deregister call is needed.
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
                _ if conn.has(flags::LINGERING) => {
                    conn.deadline = 0;
                    let reason = self.conns.flushed_close_reason(Token(key));
                    self.conns.close(Token(key), reason);
                    self.reap(handler);
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
        for signal in received {
            if handler.on_signal(&mut self.conns, signal) != SignalAction::Shutdown {
                continue;
            }
            if self.conns.shutting_down {
                info!(
                    "signal {signal} again: closing {} connections now",
                    self.conns.len()
                );
                self.abandon_unflushed();
            } else {
                info!(
                    "signal {signal}: shutting down ({} connections open)",
                    self.conns.len()
                );
                self.begin_shutdown(handler);
            }
        }
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
