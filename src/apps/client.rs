//! `netloop client`: the seeds' interactive client, on the loop.
//!
//! The seeds' clients loop over `input()`, `send`, `recv`. Here two streams share one
//! loop: standard input (copied by a helper thread into one end of a Unix socket pair,
//! because a terminal or a file cannot always be registered with epoll) and the server
//! connection. Lines typed go to the server as they come; replies are printed as they
//! come. When standard input ends, the client half-closes its side (TCP/Unix), then waits
//! until the server closes or no reply has come for `--wait` seconds.
//!
//! With `--udp`, each line (without its newline) is one datagram, and each reply datagram
//! is printed on its own line, like seed 000's UDP client.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use mio::Token;

use crate::core::listen::bind_udp;
use crate::core::{CloseReason, Closed, Handler};
use crate::core::{Ctx, EventLoop, LoopConfig, Target};
use crate::core::{Peer, Stream};

/// Options of `netloop client`.
#[derive(Clone, Debug, clap::Args)]
pub struct ClientArgs {
    /// Server address, HOST:PORT (not needed with --unix).
    #[arg(value_name = "ADDR", required_unless_present = "unix")]
    pub addr: Option<String>,
    /// Talk UDP: one datagram per line.
    #[arg(long)]
    pub udp: bool,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "udp"])]
    pub unix: Option<PathBuf>,
    /// After input ends, exit when no reply came for this many seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub wait: f64,
}

/// Resolve `HOST:PORT` to its first address, with a clear error.
pub fn resolve_addr(text: &str) -> io::Result<SocketAddr> {
    text.to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {text}: {e}")))?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{text}: no address")))
}

/// The client's handler: standard input on one token, the server on another.
struct Client {
    stdin: Token,
    server: Option<Token>,
    /// With `--udp`: our port number and the server's address.
    udp: Option<(usize, SocketAddr)>,
    /// An incomplete input line (UDP sends whole lines only).
    partial: Vec<u8>,
    input_done: bool,
    wait: Duration,
    target: String,
    failed: Option<String>,
}

impl Client {
    fn print(&mut self, bytes: &[u8], newline: bool) {
        let mut out = io::stdout().lock();
        let result = out
            .write_all(bytes)
            .and_then(|()| {
                if newline {
                    out.write_all(b"\n")
                } else {
                    Ok(())
                }
            })
            .and_then(|()| out.flush());
        if result.is_err() {
            // stdout closed (e.g. piped into `head`): nothing left to do.
            self.failed
                .get_or_insert_with(|| "standard output closed".into());
        }
    }

    fn send_line(&mut self, ctx: &mut Ctx<()>, line: &[u8]) {
        if let Some((port, to)) = self.udp {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            ctx.send_datagram(port, to, &[line]);
        }
    }
}

impl Handler for Client {
    type State = ();

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        if token == self.stdin {
            if let Some(server) = self.server {
                ctx.send(server, data);
            } else {
                self.partial.extend_from_slice(data);
                let mut lines: Vec<Vec<u8>> = Vec::new();
                while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
                    let rest = self.partial.split_off(i + 1);
                    let mut line = std::mem::replace(&mut self.partial, rest);
                    line.pop();
                    lines.push(line);
                }
                for line in lines {
                    self.send_line(ctx, &line);
                }
            }
        } else {
            self.print(data, false);
            if self.input_done {
                ctx.set_deadline(self.stdin, self.wait);
            }
        }
        data.len()
    }

    fn on_eof(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if token != self.stdin {
            ctx.close_when_flushed(token);
            return;
        }
        self.input_done = true;
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.send_line(ctx, &line);
        }
        if let Some(server) = self.server {
            // Tell the server we are done (it reads EOF), but keep reading its replies.
            ctx.shutdown_write_when_flushed(server);
        }
        // Keep the stdin slot open: its deadline is the "replies stopped" timer.
        ctx.set_deadline(self.stdin, self.wait);
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<()>, _token: Token) {
        ctx.stop();
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, token: Token, closed: Closed<()>) {
        let reason = &closed.reason;
        if Some(token) != self.server {
            return;
        }
        match reason {
            CloseReason::ConnectFailed(e) | CloseReason::Error(e) => {
                self.failed = Some(format!("{}: {e}", self.target));
            }
            _ => {}
        }
        ctx.stop();
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, _port: usize, _from: SocketAddr, data: &mut [u8]) {
        self.print(data, true);
        if self.input_done {
            ctx.set_deadline(self.stdin, self.wait);
        }
    }

    fn on_turn(&mut self, ctx: &mut Ctx<()>) {
        if self.failed.is_some() {
            ctx.stop();
        }
    }
}

/// Run the client until the server closes or replies stop after input ends.
pub fn client(args: &ClientArgs) -> io::Result<()> {
    let wait = Duration::try_from_secs_f64(args.wait)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "--wait must be >= 0"))?;
    let mut event_loop: EventLoop<()> = EventLoop::new(LoopConfig::default())?;

    // Standard input through a socket pair, so the loop can wait on it like any socket.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let mut theirs = theirs;
        // Ends (and closes the pair, which the loop reads as EOF) when stdin ends.
        let _ = io::copy(&mut io::stdin().lock(), &mut theirs);
    });
    let ctx = event_loop.ctx();
    let stdin = ctx.add_stream(
        Stream::Unix(mio::net::UnixStream::from_std(ours)),
        Peer::Local,
        (),
    )?;

    let mut handler = Client {
        stdin,
        server: None,
        udp: None,
        partial: Vec::new(),
        input_done: false,
        wait,
        target: String::new(),
        failed: None,
    };
    if let Some(path) = &args.unix {
        handler.target = path.display().to_string();
        handler.server = Some(event_loop.ctx().connect(&Target::Unix(path.clone()), ())?);
    } else {
        let text = args.addr.clone().unwrap_or_default();
        let addr = resolve_addr(&text)?;
        handler.target = text;
        if args.udp {
            let local: SocketAddr = if addr.is_ipv6() {
                "[::]:0".parse().map_err(|_| io::ErrorKind::InvalidInput)?
            } else {
                "0.0.0.0:0"
                    .parse()
                    .map_err(|_| io::ErrorKind::InvalidInput)?
            };
            let port = event_loop.add_udp(bind_udp(local)?)?;
            handler.udp = Some((port, addr));
        } else {
            handler.server = Some(event_loop.ctx().connect(&Target::Tcp(addr), ())?);
        }
    }
    event_loop.run(&mut handler)?;
    match handler.failed {
        Some(msg) => Err(io::Error::other(msg)),
        None => Ok(()),
    }
}
