//! `Ctx`: what a handler may do, from inside any callback.
//!
//! The slab of connection slots lives here, with the operations handlers call: look at
//! a connection (state, peer, queue depth, unconsumed input), iterate over them, close
//! them (deferred to the end of the callback), pause reading, set timers and deadlines,
//! open outbound connections and send datagrams. Sending is in `write.rs`.
//!
//! Closing is deferred: `close` marks the slot and the loop removes it (and calls
//! `on_close`) after the current callback returns, so a token stays valid, and is not
//! reused by a new connection, while a callback still holds it.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token, Waker};
use slab::Slab;

use super::close::CloseReason;
use super::config::{IdleCounts, LoopConfig};
use super::log_limit::RateLimit;
use super::record::Recorder;
use super::slot::{flags, Peer, Slot, Stream, NO_LISTENER};
use super::stats::Stats;
use super::timers::{Clock, Millis, TimerId, Timers, STAMP_RANGE};

/// The waker's token (the loop's other reserved tokens are in `event_loop.rs`).
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX - 1);

/// A connection the loop is about to finish: removed, or (with `linger`) handed back
/// to the loop after `on_close`, for a lingering close.
#[derive(Debug)]
pub(crate) struct Closing {
    pub token: Token,
    pub reason: CloseReason,
    pub linger: bool,
}

/// The loop's rate-limited warnings, one per kind.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    pub input_budget: RateLimit,
    pub conn_error: RateLimit,
    pub accept: RateLimit,
}

/// The handler's view of the loop: the connection table and the timers.
pub struct Ctx<S> {
    pub(crate) registry: Registry,
    pub(crate) slab: Slab<Slot<S>>,
    /// The address of each IPv6 peer, by slab key: a slot keeps only that its peer is
    /// one (`StoredPeer`), so that IPv4 connections do not pay for IPv6 addresses.
    pub(crate) v6_peers: HashMap<usize, Peer>,
    pub(crate) udp: Vec<UdpSocket>,
    /// Connections (and UDP ports) that may still have unread input: no edge will come.
    pub(crate) ready: Vec<Token>,
    /// Connections to finish after the current callback.
    pub(crate) closing: Vec<Closing>,
    /// Reasons given to `close_after_flush`, until the flush completes.
    pub(crate) flush_reasons: HashMap<usize, CloseReason>,
    pub(crate) timers: Timers,
    pub(crate) clock: Clock,
    pub(crate) config: LoopConfig,
    pub(crate) stats: Stats,
    /// Reused buffer for assembling datagrams.
    pub(crate) datagram: Vec<u8>,
    pub(crate) stopped: bool,
    pub(crate) shutting_down: bool,
    /// Slots the handler has finished with that the loop is still closing (lingering).
    pub(crate) detached: usize,
    /// Connections whose handler deferred its input to the next turn.
    pub(crate) deferred: Vec<Token>,
    /// Bytes of unconsumed input held by all connections (capacity of their buffers).
    pub(crate) input_held: usize,
    /// Warnings that could repeat at a peer's will, each logged at most now and then.
    pub(crate) warnings: Warnings,
    pub(crate) waker: Option<Arc<Waker>>,
    /// The loop's account of itself, when `--record` asked for one (see `record.rs`).
    pub(crate) recorder: Option<Box<Recorder>>,
}

impl<S> Ctx<S> {
    pub(crate) fn new(registry: Registry, config: LoopConfig) -> Ctx<S> {
        let clock = Clock::new();
        let mut stats = Stats::default();
        if config.measure_turns {
            stats.turn_events = super::stats::Histogram::new(super::stats::EVENTS_BOUNDS);
            stats.turn_asleep_us = super::stats::Histogram::new(super::stats::ASLEEP_US_BOUNDS);
        }
        Ctx {
            registry,
            slab: Slab::with_capacity(slab_capacity(&config)),
            v6_peers: HashMap::new(),
            udp: Vec::new(),
            ready: Vec::new(),
            closing: Vec::new(),
            flush_reasons: HashMap::new(),
            timers: Timers::default(),
            clock,
            config,
            stats,
            datagram: Vec::new(),
            stopped: false,
            shutting_down: false,
            detached: 0,
            deferred: Vec::new(),
            input_held: 0,
            warnings: Warnings::default(),
            waker: None,
            recorder: None,
        }
    }

    // ----- closing -------------------------------------------------------------------

    /// Close the connection now (unsent bytes are dropped); `on_close` follows when the
    /// current callback returns.
    pub fn close(&mut self, token: Token, reason: CloseReason) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::CLOSING) {
            return;
        }
        conn.flags |= flags::CLOSING;
        self.closing.push(Closing {
            token,
            reason,
            linger: false,
        });
    }

    /// True while the connection exists and the handler has not closed it (a failed
    /// `send` closes it: a handler working through a large input can stop early).
    pub fn is_open(&self, token: Token) -> bool {
        self.slab
            .get(token.0)
            .is_some_and(|c| !c.has(flags::CLOSING | flags::LINGERING | flags::DETACHED))
    }

    // ----- looking at connections ------------------------------------------------------

    /// The handler's state for a connection.
    pub fn state(&self, token: Token) -> Option<&S> {
        self.slab.get(token.0).map(|c| &c.state)
    }

    /// The handler's state for a connection, mutable.
    pub fn state_mut(&mut self, token: Token) -> Option<&mut S> {
        self.slab.get_mut(token.0).map(|c| &mut c.state)
    }

    /// The open connections (not closing), in slab order. To send to each while
    /// iterating, collect the tokens first: `let all: Vec<Token> = ctx.tokens().collect();`
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.iter().map(|(token, _)| token)
    }

    /// The open connections with their states.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &S)> + '_ {
        self.slab
            .iter()
            .filter(|(_, c)| !c.has(flags::CLOSING | flags::LINGERING | flags::DETACHED))
            .map(|(key, c)| (Token(key), &c.state))
    }

    /// Input the handler has not consumed yet (an unfinished line or frame): in `on_eof`,
    /// the last line of a peer that did not end it with a newline.
    pub fn unconsumed(&self, token: Token) -> &[u8] {
        match self.slab.get(token.0).and_then(|c| c.pending.as_deref()) {
            Some(pending) => &pending.read_buf,
            None => &[],
        }
    }

    /// Take the input the handler has not consumed yet (it is then consumed).
    pub fn take_unconsumed(&mut self, token: Token) -> Vec<u8> {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return Vec::new();
        };
        let taken = conn
            .pending
            .as_mut()
            .map(|p| std::mem::take(&mut p.read_buf))
            .unwrap_or_default();
        conn.release_empty_buffers();
        self.input_held -= taken.capacity();
        taken
    }

    /// Which listener (by the order they were added, from 0) accepted the connection;
    /// `None` for outbound connections and pipes.
    pub fn listener_of(&self, token: Token) -> Option<usize> {
        self.slab
            .get(token.0)
            .map(|c| c.listener)
            .filter(|&l| l != NO_LISTENER)
            .map(usize::from)
    }

    /// The connection's peer, for messages.
    pub fn peer(&self, token: Token) -> Option<Peer> {
        let conn = self.slab.get(token.0)?;
        Some(conn.peer.get(|| self.v6_peers.get(&token.0)))
    }

    /// The peer of a connection, for the loop's own log lines (`Local` if it is gone).
    pub(crate) fn peer_of(&self, token: Token) -> Peer {
        self.peer(token).unwrap_or(Peer::Local)
    }

    /// Bytes waiting in the connection's outbound queue.
    pub fn queued(&self, token: Token) -> usize {
        self.slab.get(token.0).map_or(0, |c| c.queued())
    }

    /// Number of open connections (not counting those the loop is still lingering on).
    pub fn len(&self) -> usize {
        self.slab.len() - self.detached
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The loop's limits.
    pub fn config(&self) -> &LoopConfig {
        &self.config
    }

    /// The loop's clock: milliseconds since the loop started, read once per turn.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The time of this turn as an `Instant` (for elapsed times in reports).
    pub fn instant(&self) -> Instant {
        self.clock.instant()
    }

    /// Ask the loop to return from `run` at the end of this turn.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    // ----- reading -------------------------------------------------------------------

    /// Stop handing this connection's input to the handler (the bytes wait in the
    /// kernel, and TCP flow control slows the peer down), e.g. while a job for it runs
    /// on an offload pool. Independent of the loop's own backpressure.
    pub fn pause_reading(&mut self, token: Token) {
        if let Some(conn) = self.slab.get_mut(token.0) {
            conn.flags |= flags::HELD;
        }
    }

    /// Undo `pause_reading`. Input the handler left unconsumed is offered again first,
    /// without waiting for the peer to send more; then the socket is read, since bytes
    /// that arrived meanwhile raised no new edge.
    pub fn resume_reading(&mut self, token: Token) {
        if let Some(conn) = self.slab.get_mut(token.0) {
            if conn.has(flags::HELD) {
                conn.flags &= !flags::HELD;
                self.defer(token);
            }
        }
    }

    /// Fairness by work, not bytes: the handler has done enough for this connection in
    /// this turn (say, 64 frames). Input it leaves unconsumed is offered again, with no
    /// need for new bytes, in the next pass of the loop, after the others had their go.
    /// (The loop uses the same path when reading resumes after a pause.)
    pub fn defer(&mut self, token: Token) {
        if let Some(conn) = self.slab.get_mut(token.0) {
            if !conn.has(flags::DEFERRED) {
                conn.flags |= flags::DEFERRED;
                self.deferred.push(token);
            }
        }
    }

    /// Bytes of unconsumed input all connections hold together (see
    /// `LoopConfig::max_input_total`).
    pub fn input_held(&self) -> usize {
        self.input_held
    }

    // ----- time ------------------------------------------------------------------------

    /// Call `on_timer(key)` once, `after` from now. The key is the handler's: it says
    /// which of its timers this is.
    pub fn timer_after(&mut self, after: Duration, key: u64) -> TimerId {
        let when = self.clock.after(after);
        self.timers.add_timer(when, key, None)
    }

    /// Call `on_timer(key)` every `period` (the first time one period from now), until
    /// cancelled.
    pub fn timer_every(&mut self, period: Duration, key: u64) -> TimerId {
        let when = self.clock.after(period);
        let every = self.clock.after(period) - self.clock.now();
        self.timers.add_timer(when, key, Some(every))
    }

    /// Cancel a loop timer: it will not fire (again). Returns whether it was pending.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.timers.cancel_timer(id)
    }

    /// Call `on_deadline` for this connection `after` from now, replacing its earlier
    /// deadline. Separate from the idle timeout, which the loop keeps by itself.
    pub fn set_deadline(&mut self, token: Token, after: Duration) {
        if self.slab.contains(token.0) {
            let when = self.clock.after(after);
            self.timers.set_deadline(token.0, when);
        }
    }

    /// Forget the connection's deadline.
    pub fn clear_deadline(&mut self, token: Token) {
        self.timers.clear_deadline(token.0);
    }

    /// A handle other threads use to wake the loop, which then calls `on_wake`: how an
    /// offload pool or a resolver thread hands results back.
    pub fn waker(&mut self) -> io::Result<Arc<Waker>> {
        if let Some(waker) = &self.waker {
            return Ok(Arc::clone(waker));
        }
        let waker = Arc::new(Waker::new(&self.registry, WAKER_TOKEN)?);
        self.waker = Some(Arc::clone(&waker));
        Ok(waker)
    }

    // ----- the loop's own bookkeeping ----------------------------------------------------

    pub(crate) fn insert(
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
            .map_err(|e| super::io_util::with_context(e, format_args!("register {peer}")))?;
        let write_only = matches!(stream, Stream::PipeOut(_));
        let mut conn = Slot::new(stream, peer, state);
        if connecting {
            conn.flags |= flags::CONNECTING;
        }
        if write_only {
            conn.flags |= flags::READ_DONE; // nothing to read from a pipe's write end
        }
        if conn.peer.is_v6() {
            self.v6_peers.insert(token.0, peer);
        }
        entry.insert(conn);
        self.stats.peak_open = self.stats.peak_open.max(self.slab.len());
        self.touch(token);
        Ok(token)
    }

    /// Move the connection's loop deadline (idle or linger end) to `when`.
    pub(crate) fn set_idle_at(&mut self, key: usize, when: Millis) {
        let now = self.clock.now();
        // A slot keeps its times as 32-bit `Stamp`s, exact within `STAMP_RANGE` (24.8
        // days) of now: an idle timeout longer than that acts as that long.
        let when = when.min(now + STAMP_RANGE);
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        conn.set_idle_at(Some(when));
        // Only an earlier time needs a new entry; a later one is found lazily when the
        // filed entry comes up (see `timers.rs`).
        let filed = conn.idle_filed(now);
        if filed.is_none_or(|filed| when < filed) {
            if let Some(filed) = filed {
                self.timers.unfile_idle(key, filed);
            }
            self.timers.file_idle(key, when);
            conn.set_idle_filed(Some(when));
        }
    }

    /// The peer sent something: push the idle deadline back (one store, usually).
    pub(crate) fn touch(&mut self, token: Token) {
        if let Some(idle) = self.config.idle_timeout {
            if self
                .slab
                .get(token.0)
                .is_some_and(|c| !c.has(flags::LINGERING))
            {
                let when = self.clock.after(idle);
                self.set_idle_at(token.0, when);
            }
        }
    }

    /// We wrote something: activity only if the idle timeout counts both directions.
    pub(crate) fn touch_output(&mut self, token: Token) {
        if self.config.idle_counts == IdleCounts::Both {
            self.touch(token);
        }
    }

    pub(crate) fn mark_ready(&mut self, token: Token) {
        if let Some(conn) = self.slab.get_mut(token.0) {
            if !conn.has(flags::READY_LISTED) {
                conn.flags |= flags::READY_LISTED;
                self.ready.push(token);
            }
        }
    }
}

/// How many slots the slab reserves at the start: as many connections as this process
/// can ever hold (one descriptor each: the open-file limit, or `max_conns` if lower).
///
/// Why: a `Vec` (the slab's storage) that grows by doubling copies itself each time, and
/// an old copy the allocator keeps in its heap still counts in the process's memory.
/// Reserved at once, the storage is address space only: the kernel gives it memory page
/// by page as slots are first written, so a loop with ten connections still uses a few
/// pages, and one with 20,000 uses 20,000 slots' worth.
fn slab_capacity(config: &LoopConfig) -> usize {
    /// A cap for unlimited or huge limits (a million slots: 40 MB of address space).
    const MOST: usize = 1 << 20;
    let files = super::io_util::open_file_limit().unwrap_or(1024);
    files.min(config.max_conns.unwrap_or(MOST)).min(MOST)
}
