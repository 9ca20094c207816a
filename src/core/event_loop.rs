//! The event loop: one thread, one `mio::Poll`, every socket netloop touches.
//!
//! This is seed 001's `select()` server grown up. Where the seed keeps `inputs`,
//! `outputs` and `message_queue[conn]`, the loop keeps:
//!
//! - a `Slab` of connection slots (`slot.rs`) keyed by `Token`, each registered **once**
//!   for readable *and* writable — so interest is never changed per message (no
//!   `epoll_ctl` per write, unlike the seed's `outputs.append`/`outputs.remove`);
//! - per connection, an outbound queue that exists only while bytes are waiting;
//! - `Timers` (`timers.rs`): loop timers, handler deadlines and idle timeouts in one
//!   ordered set, whose earliest entry is the poll timeout.
//!
//! One turn (`turn`) is: wait for events, handle each, handle connections that were left
//! readable, fire what is due, call the handler's `on_turn`. `run` repeats turns until
//! the handler stops the loop or a shutdown completes — the shape of Redis's
//! `aeMain`/`aeProcessEvents`. Reading is in `read.rs`, writing in `write.rs`,
//! accepting in `accept.rs`.
//!
//! Readiness rules (mio is edge-triggered on Linux): an event is a hint that something
//! changed, never a promise. So: accept, read and write until `WouldBlock`; retry
//! `Interrupted`; ignore events for tokens that are gone (slab keys are reused); and when
//! the loop stops reading a socket early (fairness cap, backpressure), it must remember
//! that socket as still readable, because no new edge will come for bytes already there.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, trace};
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use super::close::CloseReason;
use super::config::LoopConfig;
use super::ctx::{Ctx, WAKER_TOKEN};
use super::handler::Handler;
use super::listen::Listener;
use super::read::SCRATCH_SIZE;
use super::record::{record, Recorder};
use super::slot::flags;
use super::stats::Stats;
use super::timers::Millis;
use super::write::flush;

/// Tokens at the top of the range belong to sources other than connections, whose
/// tokens are slab keys counting up from 0.
const SIGNAL_TOKEN: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 2;
pub(super) const UDP_BASE: usize = LISTENER_BASE - 4096;

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

/// The loop itself: the poller, the shared read buffer, the listeners and the context.
pub struct EventLoop<S> {
    poll: Poll,
    /// Taken out during a turn so handlers can borrow the loop (an `Option`, so taking
    /// it costs nothing).
    events: Option<Events>,
    /// The one read buffer every connection reads into.
    pub(super) scratch: Vec<u8>,
    pub(super) listeners: Vec<Listener>,
    pub(super) signals: Option<Signals>,
    /// While descriptors are exhausted: when to try `accept` again.
    pub(super) accept_paused_until: Option<Millis>,
    /// The pause was logged; log again only after accepting fully resumed.
    pub(super) accept_pause_logged: bool,
    /// During graceful shutdown: when to give up flushing.
    pub(super) shutdown_deadline: Option<Millis>,
    /// When to log the next line of aggregated counts (`LoopConfig::report_every`).
    pub(super) report_at: Option<Millis>,
    /// The counts as of the last such line.
    pub(super) reported: Stats,
    pub(super) ctx: Ctx<S>,
}

impl<S: Default> EventLoop<S> {
    /// A loop with the given limits.
    pub fn new(mut config: LoopConfig) -> io::Result<EventLoop<S>> {
        config.max_queue_hard = config.max_queue_hard.max(config.max_queue);
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok(EventLoop {
            poll,
            events: Some(Events::with_capacity(1024)),
            scratch: vec![0; SCRATCH_SIZE],
            listeners: Vec::new(),
            signals: None,
            accept_paused_until: None,
            accept_pause_logged: false,
            shutdown_deadline: None,
            report_at: None,
            reported: Stats::default(),
            ctx: Ctx::new(registry, config),
        })
    }

    /// Serve connections from this listener.
    pub fn add_listener(&mut self, mut listener: Listener) -> io::Result<()> {
        if self.listeners.len() >= usize::from(super::slot::NO_LISTENER) {
            return Err(io::Error::other("at most 254 listeners per loop"));
        }
        let token = Token(LISTENER_BASE - self.listeners.len());
        let registry = self.poll.registry();
        match &mut listener {
            Listener::Tcp(l, _) => registry.register(l, token, Interest::READABLE)?,
            Listener::Unix(l, _) => registry.register(l, token, Interest::READABLE)?,
        }
        self.listeners.push(listener);
        Ok(())
    }

    /// Serve datagrams on this UDP socket; returns its port number for `send_datagram`.
    pub fn add_udp(&mut self, mut socket: UdpSocket) -> io::Result<usize> {
        let port = self.ctx.udp.len();
        self.poll
            .registry()
            .register(&mut socket, Token(UDP_BASE - port), Interest::READABLE)?;
        self.ctx.udp.push(socket);
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

    /// Record the loop's events as JSON lines into `path` (a new file), at most `limit`
    /// of them (see `record.rs`).
    pub fn record_to(&mut self, path: &std::path::Path, limit: u64) -> io::Result<()> {
        self.ctx.recorder = Some(Box::new(Recorder::create(path, limit)?));
        Ok(())
    }

    /// Stop recording: write what is buffered and close the file.
    pub fn finish_recording(&mut self) -> io::Result<()> {
        // Connections still open (a fetcher's idle keep-alive ones) close with the loop.
        let open: Vec<usize> = self.ctx.slab.iter().map(|(key, _)| key).collect();
        for key in open {
            record!(self.ctx, "closed", conn = key, reason = "the loop ended");
        }
        match self.ctx.recorder.take() {
            Some(mut recorder) => recorder.finish(),
            None => Ok(()),
        }
    }

    /// A handle other threads use to wake the loop (see `Ctx::waker`).
    pub fn waker(&mut self) -> io::Result<Arc<Waker>> {
        self.ctx.waker()
    }

    /// The listeners, for printing where we listen.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The handler's context (to open connections or set timers before `run`).
    pub fn ctx(&mut self) -> &mut Ctx<S> {
        &mut self.ctx
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.ctx.stats
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
        self.ctx.stopped || (self.ctx.shutting_down && self.ctx.slab.is_empty())
    }

    /// One turn: wait for readiness (at most until the next timer), then handle it.
    pub fn turn<H: Handler<State = S>>(&mut self, handler: &mut H) -> io::Result<()> {
        self.ctx.clock.new_turn();
        let timeout = self.poll_timeout();
        trace!("polling, timeout {timeout:?}");
        let measure = self.ctx.config.measure_turns;
        let sleep_started = measure.then(std::time::Instant::now);
        let asleep = self.ctx.recorder.is_some().then(|| {
            let why = self.sleep_reason(timeout);
            let timeout_us = timeout.map(|t| t.as_micros() as u64);
            record!(self.ctx, "poll", timeout_us = timeout_us, why = why);
            std::time::Instant::now()
        });
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(1024));
        let polled = self.poll.poll(&mut events, timeout);
        // The sleep moved time on: whoever asks next in this turn reads the clock anew.
        self.ctx.clock.new_turn();
        self.ctx.stats.turns += 1;
        if let Some(started) = sleep_started {
            let stats = &mut self.ctx.stats;
            stats
                .turn_asleep_us
                .observe(started.elapsed().as_micros() as u64);
            stats.turn_events.observe(events.iter().count() as u64);
        }
        if let Some(asleep) = asleep {
            let slept = asleep.elapsed().as_micros() as u64;
            record!(
                self.ctx,
                "wake",
                events = events.iter().count(),
                slept_us = slept
            );
        }
        if let Err(e) = polled {
            self.events = Some(events);
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        trace!("woke with {} events", events.iter().count());
        for event in events.iter() {
            self.dispatch(handler, event);
            self.reap(handler);
        }
        self.events = Some(events);

        // Connections whose handler deferred input to this turn: offer it again first
        // (their edge may be long gone), then read on as for any ready connection.
        if !self.ctx.deferred.is_empty() {
            for token in std::mem::take(&mut self.ctx.deferred) {
                self.offer_deferred(handler, token);
                self.reap(handler);
            }
        }

        // Connections left readable by the fairness cap or by resumed reading.
        if !self.ctx.ready.is_empty() {
            let ready = std::mem::take(&mut self.ctx.ready);
            for token in ready {
                if let Some(conn) = self.ctx.slab.get_mut(token.0) {
                    conn.flags &= !flags::READY_LISTED;
                }
                match classify(token) {
                    Source::Udp(port) => self.read_udp(handler, port),
                    _ => self.read_conn(handler, token, true),
                }
                self.reap(handler);
            }
        }

        // Only a loop with something scheduled reads the clock here.
        if self.ctx.timers.next().is_some() {
            self.fire_due(handler, self.ctx.clock.now());
        }
        if let Some(t) = self.accept_paused_until {
            if self.ctx.clock.now() >= t {
                self.accept_all(handler);
            }
        }
        if let Some(t) = self.shutdown_deadline {
            if self.ctx.clock.now() >= t {
                self.abandon_unflushed();
            }
        }
        if let Some(every) = self.ctx.config.report_every {
            // Cheap test first: see `report` for why this is not a timer.
            if self.ctx.stats.turns.is_multiple_of(256) || self.ctx.clock.now_if_read().is_some() {
                self.report(every);
            }
        }
        handler.on_turn(&mut self.ctx);
        self.reap(handler);
        Ok(())
    }

    /// Why the loop sleeps as long as it does, for the record.
    fn sleep_reason(&self, timeout: Option<Duration>) -> &'static str {
        match timeout {
            None => "nothing scheduled",
            Some(t) if t.is_zero() => "work left over",
            Some(_) if self.ctx.timers.next().is_some() => "next timer",
            Some(_) => "accept retry or shutdown",
        }
    }

    /// How long `poll` may sleep: until the earliest timer, or not at all if work is
    /// left over, or forever if nothing is scheduled.
    fn poll_timeout(&self) -> Option<Duration> {
        let ctx = &self.ctx;
        if !ctx.ready.is_empty() || !ctx.closing.is_empty() || !ctx.deferred.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.ctx.timers.next();
        for t in [self.accept_paused_until, self.shutdown_deadline]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        let next = next?;
        Some(Duration::from_millis(
            next.saturating_sub(self.ctx.clock.now()),
        ))
    }

    fn dispatch<H: Handler<State = S>>(&mut self, handler: &mut H, event: &Event) {
        match classify(event.token()) {
            Source::Signal => self.on_signal(handler),
            Source::Waker => {
                trace!("woken by another thread");
                handler.on_wake(&mut self.ctx);
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
                let Some(conn) = self.ctx.slab.get(key) else {
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
                record!(
                    self.ctx,
                    "event",
                    conn = key,
                    readable = event.is_readable(),
                    writable = event.is_writable(),
                    read_closed = event.is_read_closed(),
                    error = event.is_error(),
                );
                if conn.has(flags::CLOSING) {
                    return;
                }
                let mut queued = conn.queued() > 0;
                if conn.has(flags::CONNECTING) {
                    if !self.finish_connect(handler, token) {
                        return;
                    }
                    queued = self.ctx.queued(token) > 0;
                }
                // epoll reports "writable" with nearly every event; it only matters when
                // something is queued (or the event carries an error to surface).
                if (queued && (event.is_writable() || event.is_write_closed())) || event.is_error()
                {
                    flush(&mut self.ctx, handler, token);
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
        let Some(conn) = self.ctx.slab.get_mut(token.0) else {
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
            self.ctx.close(token, CloseReason::ConnectFailed(e));
            return false;
        }
        conn.flags &= !flags::CONNECTING;
        let peer = self.ctx.peer_of(token);
        debug!("token {}: connected to {peer}", token.0);
        record!(
            self.ctx,
            "connected",
            conn = token.0,
            peer = peer.to_string()
        );
        self.ctx.stats.connected += 1;
        handler.on_open(&mut self.ctx, token);
        flush(&mut self.ctx, handler, token);
        true
    }
}
