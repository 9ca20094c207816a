//! Listening sockets: TCP (IPv4 and IPv6), Unix stream sockets, and UDP ports.
//!
//! Sockets are made with `socket2` so the options the seeds set (`SO_REUSEADDR`) and the
//! ones a serious server needs (`--backlog`, `IPV6_V6ONLY`, `SO_REUSEPORT` for workers)
//! are applied before `bind`/`listen`; then they are handed to mio, non-blocking.
//!
//! Readiness rule relied on: a listening socket is readable while its accept queue is
//! not empty, but mio reports only the edge, so the loop accepts until `WouldBlock`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mio::net::{TcpListener, UdpSocket, UnixListener};
use socket2::{Domain, Protocol, Socket, Type};

use super::slot::{Peer, Stream};

/// A listening stream socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP, on its bound address.
    Tcp(TcpListener, SocketAddr),
    /// A Unix socket, with the file it created (removed when the listener is dropped,
    /// if it is still that file).
    Unix(UnixListener, SocketFile),
}

/// The socket file a Unix listener created: its path, and its identity (device and
/// inode) at the time, so that only this file is ever removed. The path may have been
/// taken over since by another server's socket, or by any other file: not ours.
#[derive(Debug)]
pub struct SocketFile {
    /// Where the file is.
    pub path: PathBuf,
    /// Its device and inode when we created it.
    id: Option<(u64, u64)>,
}

impl SocketFile {
    fn created(path: &Path) -> SocketFile {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        SocketFile {
            path: path.to_path_buf(),
            id,
        }
    }

    /// Remove the file if it is still the socket we created.
    fn remove_if_ours(&self) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(meta) = std::fs::symlink_metadata(&self.path) else {
            return; // already gone
        };
        let ours = meta.file_type().is_socket() && self.id == Some((meta.dev(), meta.ino()));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        } else {
            log::warn!(
                "{}: not removed at shutdown: it is no longer the socket this server created",
                self.path.display()
            );
        }
    }
}

impl Listener {
    /// Accept one connection (non-blocking), with TCP_NODELAY set on TCP ones: our replies
    /// are small and must not wait for Nagle's algorithm.
    pub fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l, _) => {
                let (stream, peer) = l.accept()?;
                // A failure here only costs latency; the connection is still good.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Peer::inet(peer)))
            }
            Listener::Unix(l, _) => {
                let (stream, _) = l.accept()?;
                Ok((Stream::Unix(stream), Peer::Unix))
            }
        }
    }

    /// The bound TCP address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(_, addr) => Some(*addr),
            Listener::Unix(..) => None,
        }
    }

    /// A human description, such as `tcp 127.0.0.1:8888`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(_, addr) => format!("tcp {addr}"),
            Listener::Unix(_, file) => format!("unix {}", file.path.display()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, file) = self {
            // Our own socket file: remove it so the next start finds no stale file; but
            // only if it still is ours (never delete what this process did not create).
            file.remove_if_ours();
        }
    }
}

/// Options for TCP listeners.
#[derive(Clone, Copy, Debug)]
pub struct TcpOptions {
    /// `listen()` backlog: connections the kernel completes before we accept them.
    pub backlog: i32,
    /// Set `SO_REUSEPORT`, so several worker processes can share the port.
    pub reuse_port: bool,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            backlog: 1024,
            reuse_port: false,
        }
    }
}

/// A socket bound to `addr` with the options every netloop socket gets: `SO_REUSEADDR`
/// (as the seeds do: restart at once on a port whose old connections are in TIME_WAIT),
/// optionally `SO_REUSEPORT` (workers sharing a port must all set it), and for IPv6
/// `IPV6_V6ONLY` (so `[::]` and `0.0.0.0` can be bound side by side). Errors name the
/// address and `what` it was for.
pub fn bound_socket(
    addr: SocketAddr,
    kind: Type,
    reuse_port: bool,
    what: &str,
) -> io::Result<Socket> {
    bound_socket_with(addr, kind, true, reuse_port, what)
}

fn bound_socket_with(
    addr: SocketAddr,
    kind: Type,
    reuse_addr: bool,
    reuse_port: bool,
    what: &str,
) -> io::Result<Socket> {
    let context =
        |e: io::Error, step: &str| io::Error::new(e.kind(), format!("{step} {what}{addr}: {e}"));
    let protocol = if kind == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))
        .map_err(|e| context(e, "socket for"))?;
    if reuse_addr {
        socket
            .set_reuse_address(true)
            .map_err(|e| context(e, "SO_REUSEADDR on"))?;
    }
    if reuse_port {
        socket
            .set_reuse_port(true)
            .map_err(|e| context(e, "SO_REUSEPORT on"))?;
    }
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| context(e, "IPV6_V6ONLY on"))?;
    }
    socket.bind(&addr.into()).map_err(|e| context(e, "bind"))?;
    Ok(socket)
}

/// Bind and listen on a TCP address (port 0 picks a free port).
pub fn bind_tcp(addr: SocketAddr, opts: TcpOptions) -> io::Result<Listener> {
    let context =
        |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {addr}: {e}"));
    let socket = bound_socket(addr, Type::STREAM, opts.reuse_port, "")?;
    socket
        .listen(opts.backlog)
        .map_err(|e| context(e, "listen on"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, "non-blocking mode on"))?;
    let std_listener: std::net::TcpListener = socket.into();
    let local = std_listener.local_addr()?;
    Ok(Listener::Tcp(TcpListener::from_std(std_listener), local))
}

/// Bind and listen on a Unix socket path. An existing socket file is replaced only when
/// nothing listens on it (a stale file from a crashed run); anything else is an error.
pub fn bind_unix(path: &Path, backlog: i32) -> io::Result<Listener> {
    let shown = path.display();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{shown} exists and is not a socket; not replacing it"),
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{shown}: another server is listening on this socket"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::info!("removing stale socket file {shown}");
                std::fs::remove_file(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("remove stale {shown}: {e}")))?;
            }
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("probe {shown}: {e}")));
            }
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let addr = socket2::SockAddr::unix(path)?;
    socket
        .bind(&addr)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {shown}: {e}")))?;
    // Right after bind: the file at `path` is the one bind created.
    let file = SocketFile::created(path);
    let ready = socket
        .listen(backlog)
        .and_then(|()| socket.set_nonblocking(true));
    if let Err(e) = ready {
        file.remove_if_ours();
        return Err(io::Error::new(e.kind(), format!("listen on {shown}: {e}")));
    }
    let std_listener = std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket));
    Ok(Listener::Unix(UnixListener::from_std(std_listener), file))
}

/// Bind a UDP port. Unlike TCP, *without* `SO_REUSEADDR`: for UDP on Linux that option
/// lets a second process bind the very same port and silently take some of its datagrams
/// (there is no TIME_WAIT for it to help with), so a port in use is an error instead.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = bound_socket_with(addr, Type::DGRAM, false, false, "udp ")?;
    socket
        .set_nonblocking(true)
        .map_err(|e| io::Error::new(e.kind(), format!("non-blocking mode on udp {addr}: {e}")))?;
    Ok(UdpSocket::from_std(socket.into()))
}
