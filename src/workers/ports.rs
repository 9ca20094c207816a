//! Sharing a port between `serve` workers: `SO_REUSEPORT`, and the parent's reservation.
//!
//! Every worker binds *its own* listening socket to the same address, with
//! `SO_REUSEPORT` set (the hidden `--reuse-port` option of `serve`). Linux then keeps the
//! listeners in one group and hands each incoming connection to one of them, chosen by a
//! hash of the connection's 4-tuple (source and destination address and port). So there
//! is no thundering herd (only the chosen worker's listener becomes readable) and no
//! accept lock; the kernel balances, statistically. The costs of that choice: the hash
//! ignores load (a busy worker still gets its share), and when a worker dies, the
//! connections waiting in *its* accept queue are reset (Linux 5.14's
//! `net.ipv4.tcp_migrate_req` can move them). The kernel only groups sockets of the same
//! user, so another user cannot join the group and steal connections (another program of
//! *ours* that sets `SO_REUSEPORT` on the same port can: that is the option's contract).
//!
//! Only TCP is shared. A Unix socket path has exactly one listener, and UDP would need
//! `SO_REUSEPORT` on each worker's UDP socket, which `serve` does not set; so `--unix`
//! and `--udp` are refused with `--workers`.
//!
//! The parent **reserves** each `--listen` address before starting any worker: a socket
//! with `SO_REUSEPORT`, *bound but never listening*. For port 0 this is how the concrete
//! port is chosen. Holding it for the parent's whole life is what makes port 0
//! race-free: while any socket of ours is bound there, no other program can bind the
//! port (it would need `SO_REUSEPORT` *and* our user), not between the parent's choice
//! and the workers' binds, and not while every worker happens to be dead and restarting.
//! Not listening is what makes it harmless: only listening sockets join the group the
//! kernel balances over, so the reservation never receives a connection it would strand
//! in an accept queue nobody accepts from. (Listening on it and closing it "once the
//! workers are up" would drop the connections the kernel had already queued on it.) For
//! a fixed port the reservation also turns "port already in use" into one clear error
//! before any worker starts.
//!
//! **Never joining someone else's group.** `SO_REUSEPORT` would let a second `serve
//! --workers` on the same port silently *join* the first one's group (same user, same
//! option) and take half of its connections. So `SO_REUSEPORT` is only ever shared
//! between one supervisor's own workers, and `reserve_port` refuses a port another
//! server uses, in two steps:
//!
//! 1. **a probe bind without `SO_REUSEPORT`** (with `SO_REUSEADDR`, like any listener, so
//!    a port whose old connections sit in TIME_WAIT is still free): it fails with
//!    `EADDRINUSE` when anything listens there — a plain server, or a reuseport group of
//!    any program — which is exactly "in use";
//! 2. **a claim** on the address, held for the supervisor's life: an abstract Unix
//!    socket named after it (`@netloop-serve-workers/127.0.0.1:8888`), which only one
//!    process can bind. It covers the two cases the probe cannot see: another supervisor
//!    whose workers are all dead at this moment (its reservation is bound but does not
//!    listen), and two supervisors started at the same instant (both probes pass before
//!    either reserves; only one claim can win).
//!
//! Port 0 needs neither check for the port's sake: a bind to port 0 gets a port nobody
//! has bound (the kernel never hands an automatic port to a reuseport group); the claim
//! is still taken, after the bind, so the code path is the same.
//!
//! Abstract socket names live in the network namespace, not on a file system, so they
//! vanish with the process however it dies: no stale lock file to clean up.

use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};

use socket2::{Domain, Protocol, Socket, Type};

use crate::core::listen::bound_socket;

/// What keeps a `--listen` address ours while the supervisor lives: the reservation
/// socket (bound, never listening) and the claim on the address. Never read: dropping
/// it is what gives the port back.
pub struct Reservation {
    /// Bound with the workers' options, so they can join it and nobody else can.
    _socket: Socket,
    /// The abstract socket naming the address (see the module docs).
    _claim: UnixDatagram,
    /// The concrete address (port 0 resolved).
    pub local: SocketAddr,
}

/// The error for an address another server holds, naming it.
fn in_use(addr: SocketAddr, by: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "{addr}: address already in use ({by}); `serve --workers` shares a port only \
             between its own workers"
        ),
    )
}

/// Step 1: bind `addr` without `SO_REUSEPORT`; `EADDRINUSE` means someone listens there.
fn probe_free(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| io::Error::new(e.kind(), format!("socket for {addr}: {e}")))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| io::Error::new(e.kind(), format!("SO_REUSEADDR on {addr}: {e}")))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| io::Error::new(e.kind(), format!("IPV6_V6ONLY on {addr}: {e}")))?;
    }
    match socket.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(in_use(addr, "another server listens there"))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("bind {addr}: {e}"))),
    }
    // The probe socket closes here; it never listened, so it leaves no TIME_WAIT.
}

/// The abstract socket name that claims `addr` for one supervisor.
pub fn claim_name(addr: SocketAddr) -> String {
    format!("netloop-serve-workers/{addr}")
}

/// Step 2: claim `addr` (exclusive: only one process can bind an abstract name).
fn claim(addr: SocketAddr) -> io::Result<UnixDatagram> {
    let name = claim_name(addr);
    let unix = UnixAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("claim name for {addr}: {e}")))?;
    UnixDatagram::bind_addr(&unix).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            in_use(addr, "another `netloop serve --workers` serves it")
        } else {
            io::Error::new(
                e.kind(),
                format!("claim {addr} (abstract socket @{name}): {e}"),
            )
        }
    })
}

/// Reserve `addr` for this supervisor's workers: refuse it if another server holds it,
/// then bind (never listen on) it with the options a worker's listener will have, and
/// claim it, for as long as the `Reservation` lives.
pub fn reserve_port(addr: SocketAddr) -> io::Result<Reservation> {
    if addr.port() != 0 {
        // Claim first: of two supervisors started together, the loser stops here.
        let claimed = claim(addr)?;
        probe_free(addr)?;
        let (socket, local) = bind_reservation(addr)?;
        return Ok(Reservation {
            _socket: socket,
            _claim: claimed,
            local,
        });
    }
    let (socket, local) = bind_reservation(addr)?;
    let claimed = claim(local)?;
    Ok(Reservation {
        _socket: socket,
        _claim: claimed,
        local,
    })
}

/// The reservation socket proper, with its concrete address.
fn bind_reservation(addr: SocketAddr) -> io::Result<(Socket, SocketAddr)> {
    // The same options as a worker's listener (`listen::bind_tcp` with `reuse_port`):
    // the kernel lets sockets share a port only if all of them agree.
    let socket = bound_socket(addr, Type::STREAM, true, "(for the workers) ")?;
    let local = socket
        .local_addr()
        .map_err(|e| io::Error::new(e.kind(), format!("address of {addr}: {e}")))?
        .as_socket()
        .ok_or_else(|| io::Error::other(format!("bound {addr} but got no IP address back")))?;
    Ok((socket, local))
}
