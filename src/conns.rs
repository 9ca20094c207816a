//! `Conns`: the connection table, and everything a handler may do to a connection.
//!
//! The slab of `Conn` slots lives here, with the operations handlers call from their
//! callbacks: `send` (write-through, queue the rest), `close` (deferred to the end of the
//! callback), deadlines, and opening outbound connections. `event_loop.rs` drives it.
//!
//! Readiness rules relied on: a slot is registered once for readable and writable and
//! never re-registered; writing goes straight to the socket while nothing is queued (the
//! socket is almost always writable then), and a short write means "kernel full, wait for
//! the writable edge". Backpressure is a flag, not an interest change: past the high
//! watermark the loop simply stops reading that connection until its queue drains.

use std::io::{self, IoSlice, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use log::{debug, trace, warn};
use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::conn::{flags, Conn, Peer, Stream};
use crate::deadlines::{Clock, Deadlines, Millis};
use crate::event_loop::LoopConfig;
use crate::handler::{CloseReason, Handler};
use crate::io_util::{interrupted, peer_gone, would_block};
use crate::stats::Stats;

/// How long a gracefully closing connection waits for the peer's EOF after our FIN.
pub const LINGER: Duration = Duration::from_secs(2);

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
    pub(crate) registry: Registry,
    pub(crate) slab: Slab<Conn<S>>,
    pub(crate) udp: Vec<UdpSocket>,
    /// Connections (and UDP ports) that may still have unread input: no edge will come.
    pub(crate) ready: Vec<Token>,
    /// Connections to remove after the current callback.
    pub(crate) closing: Vec<(Token, CloseReason)>,
    pub(crate) deadlines: Deadlines,
    pub(crate) clock: Clock,
    pub(crate) config: LoopConfig,
    pub(crate) stats: Stats,
    /// Reused buffer for assembling datagrams.
    pub(crate) datagram: Vec<u8>,
    pub(crate) stopped: bool,
    /// A turn was asked for by this time (`wake_after`).
    pub(crate) wake_at: Option<Millis>,
    pub(crate) shutting_down: bool,
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
            // A message has a few parts at most (data, suffix): keep them on the stack.
            // Parts past the fourth simply go to the queue below.
            let mut slices = [IoSlice::new(&[]); 4];
            let mut count = 0;
            for part in parts.iter().filter(|p| !p.is_empty()).take(4) {
                slices[count] = IoSlice::new(part);
                count += 1;
            }
            let slices = &slices[..count];
            loop {
                let result = match slices {
                    [one] => conn.stream.write(one),
                    _ => conn.stream.write_vectored(slices),
                };
                match result {
                    Ok(n) => {
                        written = n;
                        break;
                    }
                    Err(e) if interrupted(&e) => continue,
                    Err(e) if would_block(&e) => {
                        trace!("token {}: write WouldBlock", token.0);
                        break;
                    }
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
            self.finish_flushed_close(token);
        }
    }

    /// Everything owed is written: close. If the peer may still be sending, close
    /// gracefully, because closing a socket that has unread input makes the kernel send
    /// a reset, and a reset can destroy replies still on their way to the peer. So: send
    /// our FIN, discard what the peer sends until its EOF (or `LINGER` passes), then
    /// close — what nginx calls a lingering close.
    pub(crate) fn finish_flushed_close(&mut self, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if conn.has(flags::PEER_EOF | flags::LINGERING) {
            let reason = self.flushed_close_reason(token);
            self.close(token, reason);
            return;
        }
        conn.flags |= flags::LINGERING;
        conn.flags &= !(flags::READ_DONE | flags::READ_PAUSED);
        trace!("token {}: lingering close", token.0);
        self.shutdown_write_now(token);
        let when = self.clock.after(LINGER);
        self.set_deadline_at(token.0, when);
        // Input may already be waiting, and its edge is gone: drain it now.
        self.mark_ready(token);
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

    /// True while the connection exists and no close is pending (a failed `send`
    /// closes it: a handler working through a large input can stop early).
    pub fn is_open(&self, token: Token) -> bool {
        self.slab
            .get(token.0)
            .is_some_and(|c| !c.has(flags::CLOSING))
    }

    /// The handler's state for a connection.
    pub fn state(&self, token: Token) -> Option<&S> {
        self.slab.get(token.0).map(|c| &c.state)
    }

    /// The handler's state for a connection, mutable.
    pub fn state_mut(&mut self, token: Token) -> Option<&mut S> {
        self.slab.get_mut(token.0).map(|c| &mut c.state)
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
        taken
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
        self.connect_from(target, None, state)
    }

    /// Like `connect`, from a chosen local address (TCP only). The port is still picked
    /// by the kernel, at connect time (`IP_BIND_ADDRESS_NO_PORT`), so each source address
    /// offers its own range of ephemeral ports per destination.
    pub fn connect_from(
        &mut self,
        target: &Target,
        source: Option<IpAddr>,
        state: S,
    ) -> io::Result<Token> {
        let (stream, peer) = match target {
            Target::Tcp(addr) => {
                let s = connect_tcp(*addr, source)
                    .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
                (Stream::Tcp(s), Peer::inet(*addr))
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

    /// Make sure the loop turns (and calls `on_turn`) by `after` from now, even if no
    /// event arrives: for pacing work such as a connection rate.
    pub fn wake_after(&mut self, after: Duration) {
        let when = self.clock.after(after);
        self.wake_at = Some(self.wake_at.map_or(when, |w| w.min(when)));
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

    pub(crate) fn set_deadline_at(&mut self, key: usize, when: Millis) {
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
    pub(crate) fn touch(&mut self, token: Token) {
        if let Some(idle) = self.config.idle_timeout {
            let when = self.clock.after(idle);
            self.set_deadline_at(token.0, when);
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

    pub(crate) fn flushed_close_reason(&self, token: Token) -> CloseReason {
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
                debug!("{}: shutdown(write): {e}", conn.peer);
            }
        }
    }

    /// Write queued bytes after a writable event (or when a connect completes).
    pub(crate) fn flush<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
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
                Err(e) if would_block(&e) => {
                    trace!("token {}: flush WouldBlock", token.0);
                    break;
                }
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
    pub(crate) fn after_drain<H: Handler<State = S>>(&mut self, handler: &mut H, token: Token) {
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        conn.release_empty_buffers();
        if conn.has(flags::CLOSE_WHEN_FLUSHED) {
            self.finish_flushed_close(token);
            return;
        }
        if conn.has(flags::SHUTDOWN_WHEN_FLUSHED) {
            self.shutdown_write_now(token);
        }
        handler.on_drained(self, token);
    }

    /// Hand freshly read bytes (after any kept input) to the handler; keep the rest.
    pub(crate) fn deliver<H: Handler<State = S>>(
        &mut self,
        handler: &mut H,
        token: Token,
        fresh: &mut [u8],
    ) {
        let mut input = match self.slab.get_mut(token.0) {
            Some(conn) => match conn.pending.as_mut() {
                Some(p) if !p.read_buf.is_empty() => std::mem::take(&mut p.read_buf),
                _ => Vec::new(),
            },
            None => return,
        };
        if input.is_empty() {
            // The common case: nothing kept, the handler reads straight from scratch.
            let consumed = handler.on_data(self, token, fresh).min(fresh.len());
            let rest = &fresh[consumed..];
            if !rest.is_empty() {
                input.extend_from_slice(rest);
            }
        } else {
            input.extend_from_slice(fresh);
            let consumed = handler.on_data(self, token, &mut input).min(input.len());
            // Nothing consumed (a frame still arriving) moves nothing: a header sent
            // one byte at a time costs one append per byte, not a copy of all so far.
            input.drain(..consumed);
        }
        self.keep_unconsumed(token, input);
    }

    /// Store input the handler left for later (or free the buffers when there is none).
    fn keep_unconsumed(&mut self, token: Token, input: Vec<u8>) {
        let limit = self.config.max_read_buf;
        let Some(conn) = self.slab.get_mut(token.0) else {
            return;
        };
        if input.is_empty() {
            conn.release_empty_buffers();
        } else if input.len() > limit {
            warn!("{}: more than {limit} bytes of unconsumed input", conn.peer);
            self.close(token, CloseReason::InputTooLarge);
        } else {
            conn.pending_mut().read_buf = input;
        }
    }
}

/// Start a non-blocking TCP connect, optionally from a given source address.
fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = source else {
        let s = TcpStream::connect(addr)?;
        let _ = s.set_nodelay(true);
        return Ok(s);
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    let _ = socket.set_nodelay(true);
    if ip.is_ipv4() {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on a descriptor we own, with a correctly sized int option.
        // Failure only means the port is chosen at bind time (fewer ports available).
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket
        .bind(&SocketAddr::new(ip, 0).into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind source {ip}: {e}")))?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
