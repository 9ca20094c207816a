//! `Target` and `connect_tcp`: starting outbound connections without blocking.
//!
//! A non-blocking `connect` returns at once (`EINPROGRESS`); the loop learns the outcome
//! when the socket becomes writable, from `SO_ERROR` (see `EventLoop::finish_connect`).
//! Choosing the source address matters to the stress tester: each local address has its
//! own range of ephemeral ports towards one destination.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

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
        .map_err(|e| io::Error::new(e.kind(), format!("bind source {ip}: {e}")))?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
