//! `Slot`: one connection's slot in the loop's slab.
//!
//! A slot is what the loop remembers about a socket between events. It is kept small on
//! purpose, because an idle server holds up to a million of them (40 bytes each, plus the
//! handler's state): the socket, the peer address (for log lines, since a reset socket can
//! no longer tell it), a few flags, the deadline bookkeeping, the handler's own
//! per-connection state, and **one pointer** for buffers. An idle connection has no buffers at all: reads land in the loop's shared
//! scratch buffer, and a `Pending` box exists only while bytes are waiting, either
//! unconsumed input (`ReadBuf`) or unwritten output (`OutboundQueue`).
//!
//! Readiness rules relied on (mio is edge-triggered): a connection is registered once for
//! both readable and writable and never re-registered, so an event only says "something
//! changed"; the loop must read until the kernel says `WouldBlock` (or a short read shows
//! it drained the socket), and write until the queue is empty or the kernel is full.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::unix::pipe;
use mio::{Interest, Registry, Token};

use super::outbound::OutboundQueue;
use super::timers::{Millis, Stamp};

/// What a connection reads and writes: a TCP or Unix stream socket, or one end of a pipe.
///
/// Pipes are here so that descriptors which are not sockets — a child process's stdout
/// and stderr, its stdin — are waited on by the same loop and drained the same way
/// (read until `WouldBlock`; EOF when the writer closes). A pipe end goes one way only:
/// reading a `PipeOut` or writing a `PipeIn` is an error, and nobody asks to.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection (also used for in-process pipes such as stdin).
    Unix(UnixStream),
    /// The read end of a pipe (e.g. a child's stdout).
    PipeIn(pipe::Receiver),
    /// The write end of a pipe (e.g. a child's stdin).
    PipeOut(pipe::Sender),
}

impl Stream {
    /// A pipe end: no lingering close (no reset to fear), and one direction only.
    pub fn is_pipe(&self) -> bool {
        matches!(self, Stream::PipeIn(_) | Stream::PipeOut(_))
    }
}

fn one_way(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("a pipe's {what} end"))
}

impl Stream {
    /// Half-close: tell the peer we will send no more (it reads EOF).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            // A pipe has no half-close: its writer's EOF is closing it.
            Stream::PipeIn(_) | Stream::PipeOut(_) => Ok(()),
        }
    }

    /// The pending socket error, if any (how a non-blocking connect reports failure).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            Stream::PipeIn(_) | Stream::PipeOut(_) => Ok(None),
        }
    }

    /// Whether a non-blocking connect has completed: `NotConnected` means "not yet".
    pub fn is_connected(&self) -> io::Result<bool> {
        let result = match self {
            Stream::Tcp(s) => s.peer_addr().map(|_| ()),
            Stream::Unix(s) => s.peer_addr().map(|_| ()),
            Stream::PipeIn(_) | Stream::PipeOut(_) => Ok(()),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::PipeIn(p) => p.read(buf),
            Stream::PipeOut(_) => Err(one_way("write")),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::PipeOut(p) => p.write(buf),
            Stream::PipeIn(_) => Err(one_way("read")),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::PipeOut(p) => p.write_vectored(bufs),
            Stream::PipeIn(_) => Err(one_way("read")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
            Stream::PipeIn(p) => p.register(r, t, i),
            Stream::PipeOut(p) => p.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
            Stream::PipeIn(p) => p.reregister(r, t, i),
            Stream::PipeOut(p) => p.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
            Stream::PipeIn(p) => p.deregister(r),
            Stream::PipeOut(p) => p.deregister(r),
        }
    }
}

/// Who is on the other end, for log lines.
///
/// Compact (20 bytes rather than `SocketAddr`'s 32): IPv6 flow and scope ids are not
/// needed to name a peer in a log line. A slot keeps it smaller still (`StoredPeer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer over IPv4: address and port.
    V4([u8; 4], u16),
    /// A TCP peer over IPv6: address and port.
    V6([u8; 16], u16),
    /// A peer on a Unix socket (accepted peers are unnamed).
    Unix,
    /// An in-process pipe, such as the client's stdin.
    Local,
    /// A pipe to or from a child process, by its process id.
    Process(u32),
}

impl Peer {
    /// The compact form of a TCP peer address.
    pub fn inet(addr: SocketAddr) -> Peer {
        match addr {
            SocketAddr::V4(a) => Peer::V4(a.ip().octets(), a.port()),
            SocketAddr::V6(a) => Peer::V6(a.ip().octets(), a.port()),
        }
    }

    /// The TCP address, if this is a TCP peer.
    pub fn addr(&self) -> Option<SocketAddr> {
        match *self {
            Peer::V4(ip, port) => Some(SocketAddr::from((ip, port))),
            Peer::V6(ip, port) => Some(SocketAddr::from((ip, port))),
            Peer::Unix | Peer::Local | Peer::Process(_) => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.addr()) {
            (_, Some(addr)) => write!(f, "{addr}"),
            (Peer::Unix, _) => write!(f, "unix peer"),
            (Peer::Process(pid), _) => write!(f, "child process {pid}"),
            _ => write!(f, "local pipe"),
        }
    }
}

/// Bytes a connection is holding between events; boxed so idle connections pay 8 bytes.
#[derive(Debug, Default)]
pub struct Pending {
    /// Input the handler did not consume yet (an incomplete frame or line): `ReadBuf`.
    pub read_buf: Vec<u8>,
    /// Output the kernel did not take yet.
    pub outbound: OutboundQueue,
}

/// Which kind of peer a `StoredPeer` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerKind {
    V4,
    V6,
    Unix,
    Local,
    Process,
}

/// The peer as a slot keeps it: 7 bytes, where `Peer` takes 20.
///
/// Why: every idle connection carries its peer (a reset socket can no longer tell it,
/// and `on_close` and log lines name it), and `Peer` is as large as its largest case,
/// an IPv6 address. So the slot keeps the common cases inline — an IPv4 address and
/// port, a process id, or nothing — and an IPv6 peer only as its kind: its address
/// lives in the loop's side table (`Ctx::v6_peers`), so only IPv6 connections pay for
/// IPv6 addresses. Bytes rather than `u32`/`u16` fields keep the alignment at 1, so
/// the slot can pack the 7 bytes beside its other small fields with no padding.
#[derive(Clone, Copy, Debug)]
pub struct StoredPeer {
    kind: PeerKind,
    /// IPv4 address (`V4`), or process id (`Process`, native byte order).
    word: [u8; 4],
    /// Port (`V4`), native byte order.
    port: [u8; 2],
}

impl StoredPeer {
    /// The stored form of `peer`. For an IPv6 peer the caller keeps `peer` itself in
    /// its side table (see `is_v6`).
    pub fn new(peer: Peer) -> StoredPeer {
        let (kind, word, port) = match peer {
            Peer::V4(ip, port) => (PeerKind::V4, ip, port),
            Peer::V6(..) => (PeerKind::V6, [0; 4], 0),
            Peer::Unix => (PeerKind::Unix, [0; 4], 0),
            Peer::Local => (PeerKind::Local, [0; 4], 0),
            Peer::Process(pid) => (PeerKind::Process, pid.to_ne_bytes(), 0),
        };
        StoredPeer {
            kind,
            word,
            port: port.to_ne_bytes(),
        }
    }

    /// An IPv6 peer, whose address is kept outside the slot.
    pub fn is_v6(&self) -> bool {
        self.kind == PeerKind::V6
    }

    /// The peer again; `v6` looks up the address kept outside the slot, and is called
    /// only for an IPv6 peer (so the others cost no side-table lookup).
    pub fn get<'a>(&self, v6: impl FnOnce() -> Option<&'a Peer>) -> Peer {
        match self.kind {
            PeerKind::V4 => Peer::V4(self.word, u16::from_ne_bytes(self.port)),
            PeerKind::V6 => v6().copied().unwrap_or(Peer::V6([0; 16], 0)),
            PeerKind::Unix => Peer::Unix,
            PeerKind::Local => Peer::Local,
            PeerKind::Process => Peer::Process(u32::from_ne_bytes(self.word)),
        }
    }
}

/// Flag bits describing where a connection is in its life.
pub mod flags {
    /// A non-blocking connect is in progress: wait for writable, then check `SO_ERROR`.
    pub const CONNECTING: u16 = 1 << 0;
    /// The outbound queue passed the high watermark: do not read until it drains.
    pub const READ_PAUSED: u16 = 1 << 1;
    /// The peer sent EOF (or we decided to stop reading): never read again.
    pub const READ_DONE: u16 = 1 << 2;
    /// Close as soon as the outbound queue is empty.
    pub const CLOSE_WHEN_FLUSHED: u16 = 1 << 3;
    /// Half-close (shutdown write) as soon as the outbound queue is empty.
    pub const SHUTDOWN_WHEN_FLUSHED: u16 = 1 << 4;
    /// Already sent our FIN.
    pub const WRITE_SHUT: u16 = 1 << 5;
    /// Closing: a close is pending, ignore further events.
    pub const CLOSING: u16 = 1 << 6;
    /// Listed in the loop's "still readable" list (avoids listing twice).
    pub const READY_LISTED: u16 = 1 << 7;
    /// The peer sent EOF (as opposed to us deciding to stop reading).
    pub const PEER_EOF: u16 = 1 << 8;
    /// Closing gracefully: our FIN is sent; discard input until the peer's EOF.
    pub const LINGERING: u16 = 1 << 9;
    /// The handler got `on_close` (its state was taken): the loop alone finishes it.
    pub const DETACHED: u16 = 1 << 10;
    /// The handler asked not to be given input for now (`Ctx::pause_reading`).
    pub const HELD: u16 = 1 << 11;
    /// The handler deferred the rest of its input to the next turn (`Ctx::defer`).
    pub const DEFERRED: u16 = 1 << 12;
    /// `Slot::idle_at` holds a time (a `Stamp` has no spare value to mean "none").
    pub const IDLE_SET: u16 = 1 << 13;
    /// `Slot::idle_filed` holds a time: the connection has an idle entry in `Timers`.
    pub const IDLE_FILED: u16 = 1 << 14;
}

/// One connection's slot: 40 bytes plus the handler's state (`slot_stays_small`).
///
/// The layout, field by field (the compiler orders fields to avoid padding):
/// `stream` 8 (a descriptor and which kind of stream it is), `pending` 8 (one pointer,
/// null while idle), `idle_at` and `idle_filed` 4 each (`Stamp`s: 32-bit times),
/// `peer` 7 (`StoredPeer`), `flags` 2, `listener` 1: 34 bytes, rounded up to 40 by the
/// pointer's alignment, which leaves 6 bytes for a small handler state at no cost. The
/// slab adds nothing: its vacant entries borrow a value `Stream` never uses as their tag.
#[derive(Debug)]
pub struct Slot<S> {
    /// The socket.
    pub stream: Stream,
    /// Buffers, present only while bytes are pending.
    pub pending: Option<Box<Pending>>,
    /// When the loop next wants to look at this connection: its idle timeout, or the
    /// end of a lingering close (only with `flags::IDLE_SET`; see `idle_at()`).
    idle_at: Stamp,
    /// The time of this connection's idle entry in `Timers` (only with
    /// `flags::IDLE_FILED`; see `idle_filed()`).
    idle_filed: Stamp,
    /// The peer, for log lines (`Ctx::peer` adds an IPv6 peer's address).
    pub peer: StoredPeer,
    /// `flags::*` bits.
    pub flags: u16,
    /// The listener that accepted it (`NO_LISTENER` for outbound connections and pipes):
    /// how one loop tells a metrics client from a service client.
    pub listener: u8,
    /// The handler's per-connection state.
    pub state: S,
}

/// `Slot::listener` of a connection no listener accepted.
pub const NO_LISTENER: u8 = u8::MAX;

impl<S> Slot<S> {
    /// A new slot around a socket.
    pub fn new(stream: Stream, peer: Peer, state: S) -> Slot<S> {
        Slot {
            stream,
            pending: None,
            idle_at: Stamp::default(),
            idle_filed: Stamp::default(),
            peer: StoredPeer::new(peer),
            flags: 0,
            listener: NO_LISTENER,
            state,
        }
    }

    /// Test a flag bit.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// A time kept in a `Stamp` under `flag`, read back around `now`.
    fn stamp(&self, flag: u16, stamp: Stamp, now: Millis) -> Option<Millis> {
        self.has(flag).then(|| stamp.widen(now))
    }

    /// The connection's loop deadline (idle timeout or lingering end), if any; `now` is
    /// the loop's time (a `Stamp` is read back relative to it).
    pub fn idle_at(&self, now: Millis) -> Option<Millis> {
        self.stamp(flags::IDLE_SET, self.idle_at, now)
    }

    /// Set or clear the loop deadline (within `STAMP_RANGE` of now).
    pub fn set_idle_at(&mut self, when: Option<Millis>) {
        self.set_stamp(flags::IDLE_SET, when, |slot, s| slot.idle_at = s);
    }

    /// The time of the connection's idle entry in `Timers`, if it has one.
    pub fn idle_filed(&self, now: Millis) -> Option<Millis> {
        self.stamp(flags::IDLE_FILED, self.idle_filed, now)
    }

    /// Record that the idle entry is filed at `when` (or that there is none).
    pub fn set_idle_filed(&mut self, when: Option<Millis>) {
        self.set_stamp(flags::IDLE_FILED, when, |slot, s| slot.idle_filed = s);
    }

    fn set_stamp(&mut self, flag: u16, when: Option<Millis>, store: fn(&mut Self, Stamp)) {
        match when {
            Some(t) => {
                store(self, Stamp::of(t));
                self.flags |= flag;
            }
            None => self.flags &= !flag,
        }
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.outbound.len())
    }

    /// The buffers, created on first use.
    pub fn pending_mut(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Box::default)
    }

    /// Free the buffers once nothing is pending, so an idle connection holds none.
    pub fn release_empty_buffers(&mut self) {
        if let Some(p) = &self.pending {
            if p.read_buf.is_empty() && p.outbound.is_empty() {
                self.pending = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// The slab's entry, as `slab` declares it (its own type is private): a slot or the
    /// next free key.
    #[allow(dead_code)]
    enum Entry<T> {
        Vacant(usize),
        Occupied(T),
    }

    /// Idle memory per connection is this slot in the slab: keep it from growing back.
    /// (A layout fact of the compiler, checked here so a new field cannot sneak in.)
    #[test]
    fn slot_stays_small() {
        assert_eq!(size_of::<Stream>(), 8);
        assert_eq!(size_of::<StoredPeer>(), 7);
        assert_eq!(size_of::<Slot<()>>(), 40);
        assert_eq!(
            size_of::<Entry<Slot<()>>>(),
            40,
            "the slab's tag costs nothing"
        );
        // A handler state of up to 6 bytes fits in the padding; a pointer adds 8.
        assert_eq!(size_of::<Entry<Slot<[u8; 6]>>>(), 40);
        assert_eq!(size_of::<Entry<Slot<Option<Box<u64>>>>>(), 48);
    }

    #[test]
    fn every_peer_comes_back_from_its_stored_form() {
        let v6 = Peer::V6([7; 16], 443);
        for peer in [
            Peer::V4([127, 0, 0, 1], 8080),
            Peer::Unix,
            Peer::Local,
            Peer::Process(4_000_000),
        ] {
            let stored = StoredPeer::new(peer);
            assert!(!stored.is_v6());
            assert_eq!(stored.get(|| None), peer);
        }
        let stored = StoredPeer::new(v6);
        assert!(stored.is_v6());
        assert_eq!(stored.get(|| Some(&v6)), v6);
    }

    #[test]
    fn idle_times_come_back_across_the_32_bit_wrap() {
        let (sock, _other) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        sock.set_nonblocking(true).expect("nonblocking");
        let mut slot = Slot::new(Stream::Unix(UnixStream::from_std(sock)), Peer::Unix, ());
        assert_eq!(slot.idle_at(5), None);
        // Past 2^32 ms (49.7 days) the low bits wrap; a time near now still comes back.
        let now = (1u64 << 32) + 1_000;
        for when in [now - 2_000, now, now + 60_000, (1 << 32) - 5, 3 << 32] {
            let now = if when == 3 << 32 { when - 7 } else { now };
            slot.set_idle_at(Some(when));
            slot.set_idle_filed(Some(when));
            assert_eq!(slot.idle_at(now), Some(when));
            assert_eq!(slot.idle_filed(now), Some(when));
        }
        slot.set_idle_at(None);
        assert_eq!(slot.idle_at(now), None);
        assert!(slot.idle_filed(now).is_some());
    }
}
