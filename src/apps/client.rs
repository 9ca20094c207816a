//! `netloop client`: the seeds' interactive client, on the loop.
//!
//! The seeds' clients loop over `input()`, `send`, `recv`. Here two streams share one
//! loop: standard input (copied by a helper thread into one end of a Unix socket pair,
//! because a terminal or a file cannot always be registered with epoll) and the server
//! connection. Lines typed go to the server as they come; replies are printed as they
//! come. When standard input ends, the client half-closes its side (TCP/Unix), then waits
//! until the server closes or no reply has come for `wait` (a loop timer, key `QUIET`,
//! re-armed by every reply).
//!
//! Replies are printed by a helper thread (an `offload::Pool` with one thread, so they
//! stay in order), never on the loop thread: a reader of our stdout that stops reading
//! (`netloop client ADDR | (sleep 5; cat)`) must not stall the loop. What waits for that
//! thread is bounded: past `MAX_UNPRINTED` bytes the client stops reading the server
//! (and standard input), and resumes once the printer is down to half of it. Flow
//! control does the rest: the server's replies wait in the kernel, the server stops
//! reading us, and our queue to it grows — so standard input is paused too while more
//! than `MAX_INPUT_QUEUED` bytes wait for the server (until `on_drained`). That limit is
//! kept under the loop's watermark (`LoopConfig::max_queue`) on purpose: past the
//! watermark the loop stops reading the *server* — right for an echo service, whose
//! reading is what makes its output, but a hazard for a client, whose reading of the
//! replies is what lets the server send them and so go on reading our input. (Without
//! any such limit, the queue reaches the loop's hard cap and the connection is closed
//! with replies lost.) Memory stays flat however much flows through, and nothing is
//! lost: the client stops only once every reply it received is written.
//!
//! With `ClientTarget::Udp`, each line (without its newline) is one datagram, and each
//! reply datagram is printed on its own line, like seed 000's UDP client.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use mio::Token;

use crate::core::listen::bind_udp;
use crate::core::{CloseReason, Closed, Handler, Pool, TimerId};
use crate::core::{Ctx, EventLoop, LoopConfig, Target};
use crate::core::{Peer, Stream};

/// Where the client connects.
#[derive(Clone, Debug)]
pub enum ClientTarget {
    /// A TCP server, `HOST:PORT`.
    Tcp(String),
    /// A UDP server, `HOST:PORT`: one datagram per line.
    Udp(String),
    /// A Unix stream socket.
    Unix(PathBuf),
}

/// Options of `netloop client`.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The server.
    pub target: ClientTarget,
    /// After input ends, exit when no reply came for this long.
    pub wait: Duration,
}

/// Reply bytes the printer thread may have waiting before the client stops reading.
pub const MAX_UNPRINTED: usize = 1024 * 1024;
/// Input bytes queued for the server before standard input is paused (a quarter of the
/// loop's default watermark, which must never be reached: see the module docs).
pub const MAX_INPUT_QUEUED: usize = 256 * 1024;

/// Loop timer key: no reply came for `wait` after input ended.
const QUIET: u64 = 1;

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
    /// With UDP: our port number and the server's address.
    udp: Option<(usize, SocketAddr)>,
    /// An incomplete input line (UDP sends whole lines only).
    partial: Vec<u8>,
    input_done: bool,
    wait: Duration,
    /// The `QUIET` timer, while armed.
    quiet: Option<TimerId>,
    target: String,
    failed: Option<String>,
    /// The printer: one thread, so replies are written in order; answers bytes written.
    printer: Pool<Result<usize, String>>,
    /// Bytes handed to the printer and not written yet.
    unprinted: usize,
    /// Reading paused because `unprinted` passed `MAX_UNPRINTED`.
    printer_behind: bool,
    /// Standard input paused because the server's queue is over the watermark.
    server_behind: bool,
    /// The session is over: stop as soon as everything received is printed.
    ending: bool,
}

impl Client {
    /// Hand reply bytes to the printer; pause reading if it is too far behind.
    fn print(&mut self, ctx: &mut Ctx<()>, bytes: &[u8], newline: bool) {
        let mut text = Vec::with_capacity(bytes.len() + 1);
        text.extend_from_slice(bytes);
        if newline {
            text.push(b'\n');
        }
        self.unprinted += text.len();
        self.printer.submit(move || {
            let mut out = io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map(|()| text.len())
                .map_err(|e| format!("writing to standard output: {e}"))
        });
        if self.unprinted > MAX_UNPRINTED && !self.printer_behind {
            self.printer_behind = true;
            self.update_reading(ctx);
        }
        self.rearm_quiet(ctx);
    }

    /// Pause or resume the server and standard input to match who is behind.
    fn update_reading(&mut self, ctx: &mut Ctx<()>) {
        log::debug!(
            "printer behind: {} ({} bytes unprinted), server behind: {} ({} bytes queued)",
            self.printer_behind,
            self.unprinted,
            self.server_behind,
            self.server.map_or(0, |s| ctx.queued(s))
        );
        if let Some(server) = self.server {
            match self.printer_behind {
                true => ctx.pause_reading(server),
                false => ctx.resume_reading(server),
            }
        }
        match self.printer_behind || self.server_behind {
            true => ctx.pause_reading(self.stdin),
            false => ctx.resume_reading(self.stdin),
        }
        // While we do not read, the server's silence says nothing: no `QUIET` timer.
        self.rearm_quiet(ctx);
    }

    /// After input ended: (re)start the wait for the next reply, unless reading is
    /// paused for the printer.
    fn rearm_quiet(&mut self, ctx: &mut Ctx<()>) {
        if let Some(id) = self.quiet.take() {
            ctx.cancel_timer(id);
        }
        if self.input_done && !self.printer_behind && !self.ending {
            self.quiet = Some(ctx.timer_after(self.wait, QUIET));
        }
    }

    /// The session is over: stop once every reply received is printed.
    fn end(&mut self, ctx: &mut Ctx<()>) {
        self.ending = true;
        if let Some(id) = self.quiet.take() {
            ctx.cancel_timer(id);
        }
        if self.printer.in_flight() == 0 {
            ctx.stop();
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
                if ctx.queued(server) > MAX_INPUT_QUEUED && !self.server_behind {
                    // The server does not keep up: stop reading more input for it.
                    self.server_behind = true;
                    self.update_reading(ctx);
                }
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
            self.print(ctx, data, false);
        }
        data.len()
    }

    fn on_drained(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if Some(token) == self.server && self.server_behind {
            self.server_behind = false;
            self.update_reading(ctx);
        }
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
        self.rearm_quiet(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<()>, key: u64) {
        if key == QUIET {
            self.quiet = None;
            self.end(ctx);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, token: Token, closed: Closed<()>) {
        if Some(token) != self.server {
            return;
        }
        match &closed.reason {
            CloseReason::ConnectFailed(e) | CloseReason::Error(e) => {
                self.failed = Some(format!("{}: {e}", self.target));
            }
            _ => {}
        }
        self.end(ctx);
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, _port: usize, _from: SocketAddr, data: &mut [u8]) {
        self.print(ctx, data, true);
    }

    /// The printer wrote something (or could not).
    fn on_wake(&mut self, ctx: &mut Ctx<()>) {
        while let Some(answer) = self.printer.try_recv() {
            match answer {
                Ok(n) => self.unprinted -= n,
                Err(e) => {
                    // stdout closed (e.g. piped into `head`): nothing left to do.
                    self.failed.get_or_insert(e);
                    return ctx.stop();
                }
            }
        }
        if self.printer_behind && self.unprinted <= MAX_UNPRINTED / 2 {
            self.printer_behind = false;
            self.update_reading(ctx);
        }
        if self.ending && self.printer.in_flight() == 0 {
            ctx.stop();
        }
    }
}

/// Run the client until the server closes or replies stop after input ends, and every
/// reply is printed.
pub fn client(opts: &ClientOptions) -> io::Result<()> {
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
    let printer = Pool::new("client-stdout", 1, event_loop.waker()?)?;

    let mut handler = Client {
        stdin,
        server: None,
        udp: None,
        partial: Vec::new(),
        input_done: false,
        wait: opts.wait,
        quiet: None,
        target: String::new(),
        failed: None,
        printer,
        unprinted: 0,
        printer_behind: false,
        server_behind: false,
        ending: false,
    };
    match &opts.target {
        ClientTarget::Unix(path) => {
            handler.target = path.display().to_string();
            handler.server = Some(event_loop.ctx().connect(&Target::Unix(path.clone()), ())?);
        }
        ClientTarget::Tcp(text) => {
            let addr = resolve_addr(text)?;
            handler.target = text.clone();
            handler.server = Some(event_loop.ctx().connect(&Target::Tcp(addr), ())?);
        }
        ClientTarget::Udp(text) => {
            let addr = resolve_addr(text)?;
            handler.target = text.clone();
            let local: SocketAddr = if addr.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let port = event_loop.add_udp(bind_udp(local)?)?;
            handler.udp = Some((port, addr));
        }
    }
    event_loop.run(&mut handler)?;
    match handler.failed {
        Some(msg) => Err(io::Error::other(msg)),
        None => Ok(()),
    }
}
