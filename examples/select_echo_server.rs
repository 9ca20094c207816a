//! Mirrors seed 001 (`001_ee7d6b97d093d40c.txt`), the `select.select()` echo server (the
//! 服务端 after `import select`): it answers every message with the message + `我收到了`.
//!
//! Run: `cargo run --example select_echo_server [PORT]` (default 8888, on 127.0.0.1).
//! Try: `cargo run --example echo_client` (seed 001's client), or `nc 127.0.0.1 8888` and
//! type lines. `RUST_LOG=netloop=trace` narrates every readable/writable event.
//!
//! The seed keeps three structures by hand; the loop keeps their equivalents for us:
//! - `inputs` (sockets to watch for reading) is the loop's registration: the listener is
//!   registered once for readable, each accepted socket once for readable *and* writable.
//! - `outputs` (sockets with something to send) has no equivalent. `select()` is
//!   level-triggered: it reports a writable socket on *every* call, so the seed must drop
//!   it from `outputs` once its queue is empty, or spin. mio is edge-triggered: it reports
//!   writability when it *changes* (a full kernel buffer drained), so each socket stays
//!   registered for writable all its life, at no cost.
//! - `message_queue[conn]` is the connection's outbound queue, which exists only while the
//!   kernel refuses bytes; the loop writes it on the next writable event.
//!
//! The seed's `select()` call is `EventLoop::run`: one wait (epoll) per turn of the loop.

use std::io;
use std::net::SocketAddr;

use mio::Token;
use netloop::core::listen::{bind_tcp, Listener, TcpOptions};
use netloop::{Closed, Ctx, EventLoop, Handler, LoopConfig};

/// What the seed appends to each reply ("I received it").
const SUFFIX: &[u8] = "我收到了".as_bytes();

/// The application: only what the bytes mean. Reading, writing and queueing are the loop's.
struct SelectEcho;

impl Handler for SelectEcho {
    /// Per-connection state, made with `Default` for each accepted connection. We keep the
    /// peer's address as text, to name the peer in `on_close`, after its slot is gone.
    type State = String;

    fn on_open(&mut self, ctx: &mut Ctx<String>, token: Token) {
        // seed: `s is server` -> `conn, addr = s.accept()`, `inputs.append(conn)` and
        // `message_queue[conn] = queue.Queue()`. The loop has accepted the connection and
        // registered it; no queue is made until some bytes have to wait.
        let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
        println!("connection from {peer}");
        if let Some(state) = ctx.state_mut(token) {
            *state = peer;
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<String>, token: Token, data: &mut [u8]) -> usize {
        // seed: `data = s.recv(1024)`. The loop read what the socket had (up to 64 KiB
        // per read, until the socket is drained) and hands each read over; one message
        // may come in pieces, or two as one.
        let peer = ctx.state(token).map_or("?", String::as_str);
        println!("from {peer}: {}", String::from_utf8_lossy(data).trim_end());
        // seed: `message_queue[s].put(data)` and `outputs.append(s)`, then, on a later
        // `select()`, `s.send(next_msg + "我收到了")`. `send_parts` writes at once when
        // nothing is queued (the socket is almost always writable) and queues whatever the
        // kernel does not take. The seed's `s.send` would silently lose that part.
        ctx.send_parts(token, &[data, SUFFIX]);
        let queued = ctx.queued(token);
        if queued > 0 {
            println!("  {queued} bytes wait in the outbound queue for a writable event");
        }
        data.len() // everything consumed: nothing to keep for the next read
    }

    fn on_drained(&mut self, ctx: &mut Ctx<String>, token: Token) {
        // seed: `queue.Empty` -> `outputs.remove(s)`. Only called after bytes had to wait.
        let peer = ctx.state(token).map_or("?", String::as_str);
        println!("  queue for {peer} is empty again");
    }

    fn on_eof(&mut self, ctx: &mut Ctx<String>, token: Token) {
        // seed: `if not data` (an empty recv: the client closed its side). Unlike the seed
        // we do not drop what is still queued for it: close once the queue is flushed.
        // (That is also what the default `on_eof` does.)
        ctx.close_when_flushed(token);
    }

    fn on_close(&mut self, _: &mut Ctx<String>, _: Token, closed: Closed<String>) {
        let (peer, why) = (closed.state, &closed.reason);
        // seed: `inputs.remove(s)`, `s.close()`, `del message_queue[s]` (and the
        // `exceptional` list: a socket error arrives here as `CloseReason::Error`). The
        // loop has closed the socket, which also removes it from epoll, and freed its queue.
        println!("connection from {peer} closed: {why}");
    }
}

fn main() -> io::Result<()> {
    env_logger::init(); // quiet unless RUST_LOG is set
    let port = port_arg(8888)?;
    let mut event_loop = EventLoop::new(LoopConfig::default())?;

    // seed: `server.bind(...)`, `server.listen(5)`, `inputs = [server]`.
    let listener = bind_tcp(
        SocketAddr::from(([127, 0, 0, 1], port)),
        TcpOptions::default(),
    )?;
    if let Listener::Tcp(_, local) = &listener {
        println!("select_echo_server listening on {local}");
        let (ip, port) = (local.ip(), local.port());
        println!("try: cargo run --example echo_client -- {port}   (or: nc {ip} {port})");
    }
    event_loop.add_listener(listener)?;

    // seed: `while inputs: select.select(...)`. Ctrl-C (SIGINT) or SIGTERM makes `run`
    // stop accepting, flush what is queued, and return.
    event_loop.handle_signals()?;
    event_loop.run(&mut SelectEcho)?;
    println!("select_echo_server: shut down");
    Ok(())
}

/// The port from the first argument, or `default` (the seed's port).
fn port_arg(default: u16) -> io::Result<u16> {
    match std::env::args().nth(1) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("not a port: {text}"))
        }),
    }
}
