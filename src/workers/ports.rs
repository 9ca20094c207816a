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

use std::io;
use std::net::SocketAddr;

use socket2::{Socket, Type};

use crate::core::listen::bound_socket;

/// Bind (never listen on) `addr` with the options a worker's listener will have, so the
/// port is ours for as long as the socket lives; returns it with its concrete address.
pub fn reserve_port(addr: SocketAddr) -> io::Result<(Socket, SocketAddr)> {
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
