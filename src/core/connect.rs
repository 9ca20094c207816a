//! `Target` and `connect_tcp`: starting outbound connections without blocking.
//!
//! A non-blocking `connect` returns at once (`EINPROGRESS`); the loop learns the outcome
//! when the socket becomes writable, from `SO_ERROR` (see `EventLoop::finish_connect`).
//! Choosing the source address matters to the stress tester: each local address has its
//! own range of ephemeral ports towards one destination. Here too: putting other
//! streams on the loop (a pipe end), and sending datagrams.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use log::{debug, trace};
use mio::net::{TcpStream, UnixStream};
use mio::Token;
use socket2::{Domain, Protocol, Socket, Type};

use super::ctx::Ctx;
use super::io_util::{interrupted, with_context, would_block};
use super::slot::{Peer, Stream};

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

/// Start a non-blocking TCP connect, optionally from a given source address.
pub(crate) fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
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
        .map_err(|e| with_context(e, format_args!("bind source {ip}")))?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl<S> Ctx<S> {
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
                    .map_err(|e| with_context(e, format_args!("connect {addr}")))?;
                (Stream::Tcp(s), Peer::inet(*addr))
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)
                    .map_err(|e| with_context(e, format_args!("connect {}", path.display())))?;
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
}
