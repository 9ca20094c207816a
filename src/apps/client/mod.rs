//! `netloop client`: the seeds' interactive client, on the loop.
//!
//! The seeds' clients loop over `input()`, `send`, `recv`. Here two streams share one
//! loop: standard input (copied by a helper thread into one end of a Unix socket pair,
//! because a terminal or a file cannot always be registered with epoll) and the server
//! connection. Lines typed go to the server as they come; replies are printed as they
//! come, by a helper thread (`printer.rs`). `session.rs` has the handler, and says how
//! its memory stays bounded.
//!
//! What the client promises, like `nc`, and how it says it did not happen:
//!
//! - **Connecting** takes at most `connect_timeout` (`-w`/`--connect-timeout`, 10 s by
//!   default). A server whose backlog is full drops our SYN and the connect would stay
//!   in SYN-SENT for minutes: past the timeout the client gives up, naming the address.
//! - **When input ends**, the client half-closes its side by default (`shutdown(SHUT_WR)`,
//!   what `nc -N` does; `shutdown: false` keeps it open, like plain `nc`), then waits
//!   for the input to be sent and for replies: until the server closes, or no reply came
//!   for `AfterInput::Quiet` (`--wait`), or `AfterInput::Quit` passed (nc's `-q`).
//! - **An idle timeout** (`--idle-timeout`, or `-w` alone, as in nc) ends a session in
//!   which nothing was sent or received for that long.
//! - **Success means it happened**: `client` returns an error when the connect failed or
//!   timed out, the connection broke, input could not be sent, input was sent but no
//!   reply ever came (whatever ended the session), or the replies could not be written.
//!   Asked to send nothing, a connect that succeeds is success.
//!
//! With `ClientTarget::Udp`, each line (without its newline) is one datagram, and each
//! reply datagram is printed on its own line, like seed 000's UDP client; with nothing
//! to connect, only the rules after input ends apply (a reply must come).

mod printer;
mod session;
mod tally;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::core::listen::bind_udp;
use crate::core::{EventLoop, LoopConfig, Peer, Stream, Target};

use printer::Printer;
use session::Session;

/// Where the client connects.
#[derive(Clone, Debug)]
pub enum ClientTarget {
    /// A TCP server.
    Tcp(SocketAddr),
    /// A UDP server: one datagram per line.
    Udp(SocketAddr),
    /// A Unix stream socket.
    Unix(PathBuf),
}

/// What ends the session once standard input has ended and all of it was sent (unless
/// the server closes first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterInput {
    /// No reply came for this long (every reply starts the wait again): `--wait`.
    Quiet(Duration),
    /// This long passed, replies or not: nc's `-q SECS`.
    Quit(Duration),
}

/// Options of `netloop client`.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The server.
    pub target: ClientTarget,
    /// The server as the user wrote it (`localhost:8888`), for messages; without it,
    /// the address.
    pub name: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// End the session when nothing was sent or received for this long.
    pub idle_timeout: Option<Duration>,
    /// What ends the session after input ended.
    pub after_input: AfterInput,
    /// While input is still being sent after it ended, the longest the server may go
    /// without reading any of it.
    pub stall_timeout: Duration,
    /// Half-close (send FIN) when input ends, so the server reads EOF.
    pub shutdown: bool,
    /// Say on standard error when the connection opens and closes, and why.
    pub verbose: bool,
    /// Record the loop's events as JSON lines into this new file.
    pub record: Option<PathBuf>,
    /// Most events recorded.
    pub record_limit: u64,
}

impl ClientOptions {
    /// Options for `target` with the command's defaults.
    pub fn new(target: ClientTarget) -> ClientOptions {
        ClientOptions {
            target,
            name: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: None,
            after_input: AfterInput::Quiet(Duration::from_secs(2)),
            stall_timeout: Duration::from_secs(2),
            shutdown: true,
            verbose: false,
            record: None,
            record_limit: 1_000_000,
        }
    }

    /// What messages call the server.
    fn display_name(&self) -> String {
        let addr = match &self.target {
            ClientTarget::Tcp(a) | ClientTarget::Udp(a) => a.to_string(),
            ClientTarget::Unix(p) => p.display().to_string(),
        };
        match &self.name {
            Some(name) if *name != addr => format!("{name} ({addr})"),
            _ => addr,
        }
    }
}

/// Reply bytes the printer thread may have waiting before the client stops reading.
pub const MAX_UNPRINTED: usize = 1024 * 1024;
/// Input bytes queued for the server before standard input is paused (a quarter of the
/// loop's default watermark, which must never be reached: see `session.rs`).
pub const MAX_INPUT_QUEUED: usize = 256 * 1024;

/// Resolve `HOST:PORT` to its first address, with a clear error (a missing port is
/// named as such, not as an "invalid socket address").
pub fn resolve_addr(text: &str) -> io::Result<SocketAddr> {
    let has_port = match text.rsplit_once(':') {
        // `::1` or `[::1]` alone: the colons belong to the address.
        Some((host, _)) => !host.contains(':') || host.ends_with(']'),
        None => false,
    };
    if !has_port {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{text}` has no port: write HOST:PORT, e.g. 127.0.0.1:8888 or [::1]:8888"),
        ));
    }
    text.to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {text}: {e}")))?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{text}: no address")))
}

/// Run the client until the session ends (see the module docs) and every reply is
/// printed. With `record`, the loop's events are recorded, and the file is finished
/// however the run ends.
pub fn client(opts: &ClientOptions) -> io::Result<()> {
    let mut event_loop: EventLoop<()> = EventLoop::new(LoopConfig::default())?;
    if let Some(path) = &opts.record {
        event_loop.record_to(path, opts.record_limit)?;
    }
    let result = run(&mut event_loop, opts);
    let recorded = event_loop.finish_recording();
    result.and(recorded)
}

/// Set up standard input, the printer and the server, then run the loop.
fn run(event_loop: &mut EventLoop<()>, opts: &ClientOptions) -> io::Result<()> {
    // Standard input through a socket pair, so the loop can wait on it like any socket.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let mut theirs = theirs;
        // Ends (and closes the pair, which the loop reads as EOF) when stdin ends.
        let _ = io::copy(&mut io::stdin().lock(), &mut theirs);
        let _ = theirs.flush();
    });
    let stdin = event_loop.ctx().add_stream(
        Stream::Unix(mio::net::UnixStream::from_std(ours)),
        Peer::Local,
        (),
    )?;
    let printer = Printer::new(event_loop.waker()?)?;
    let mut session = Session::new(opts, opts.display_name(), stdin, printer);
    let ctx = event_loop.ctx();
    match &opts.target {
        ClientTarget::Unix(path) => {
            session.server = Some(ctx.connect(&Target::Unix(path.clone()), ())?);
        }
        ClientTarget::Tcp(addr) => {
            session.server = Some(ctx.connect(&Target::Tcp(*addr), ())?);
        }
        ClientTarget::Udp(addr) => {
            let local: SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let port = event_loop.add_udp(bind_udp(local)?)?;
            session.udp = Some((port, *addr));
        }
    }
    session.start(event_loop.ctx());
    event_loop.run(&mut session)?;
    match session.failed {
        Some(msg) => Err(io::Error::other(msg)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_port_is_named() {
        for text in ["127.0.0.1", "[::1]", "::1", "localhost"] {
            let e = resolve_addr(text).expect_err(text);
            assert!(e.to_string().contains("has no port"), "{text}: {e}");
        }
        assert_eq!(
            resolve_addr("[::1]:8888").ok(),
            "[::1]:8888".parse::<SocketAddr>().ok()
        );
        assert!(resolve_addr("localhost:8888").is_ok_and(|a| a.ip().is_loopback()));
    }
}
