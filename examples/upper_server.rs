//! Mirrors seed 002 (`002_076e4082bc744ad1.txt`), the TCP server that answers with
//! `data.upper()` (the `phone` program: `conn.send(data.upper())`).
//!
//! Run: `cargo run --example upper_server [PORT]` (default 8080, on 127.0.0.1; the seed
//! binds 127.0.0.8, another loopback address on Linux).
//! Try: `nc 127.0.0.1 8080` and type lines, or `cargo run -- client 127.0.0.1:8080`
//! (netloop's version of the seed's `input()` client).
//!
//! The seed serves one client at a time: its inner `while True` loop belongs to one `conn`,
//! and the next client waits in the backlog until that one leaves. On the loop every
//! client is served at once, by the same three callbacks.

use std::io;
use std::net::SocketAddr;

use mio::Token;
use netloop::core::listen::{bind_tcp, Listener, TcpOptions};
use netloop::{Closed, Ctx, EventLoop, Handler, LoopConfig};

/// The application: every byte back, ASCII letters upper-cased.
struct Upper;

impl Handler for Upper {
    /// Per-connection state: the peer's address as text, to name it in `on_close`.
    type State = String;

    fn on_open(&mut self, ctx: &mut Ctx<String>, token: Token) {
        // seed: `conn, addr = phone.accept()`, then it prints the connection and `addr`.
        let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
        println!("client {peer} connected");
        if let Some(state) = ctx.state_mut(token) {
            *state = peer;
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<String>, token: Token, data: &mut [u8]) -> usize {
        // seed: `data = conn.recv(1024)`, `print(...data.decode('utf-8'))`.
        let peer = ctx.state(token).map_or("?", String::as_str);
        println!("from {peer}: {}", String::from_utf8_lossy(data).trim_end());
        // seed: `conn.send(data.upper())`. Python's `bytes.upper()` changes only a-z, like
        // `make_ascii_uppercase`, which works in place: no copy of the data is made.
        data.make_ascii_uppercase();
        ctx.send(token, data);
        data.len() // all consumed
    }

    // `on_eof` is left to its default (seed: `if not data: break`): close the connection
    // once everything queued for it is written.

    fn on_close(&mut self, _: &mut Ctx<String>, _: Token, closed: Closed<String>) {
        let (peer, why) = (closed.state, &closed.reason);
        // seed: `conn.close()` after the inner loop; `except Exception: break` for errors.
        println!("client {peer} gone: {why}");
    }
}

fn main() -> io::Result<()> {
    env_logger::init(); // quiet unless RUST_LOG is set
    let port = port_arg(8080)?;
    let mut event_loop = EventLoop::new(LoopConfig::default())?;

    // seed: `setsockopt(SO_REUSEADDR)`, `bind`, `listen(5)`; `bind_tcp` sets SO_REUSEADDR too.
    let listener = bind_tcp(
        SocketAddr::from(([127, 0, 0, 1], port)),
        TcpOptions::default(),
    )?;
    if let Listener::Tcp(_, local) = &listener {
        println!("upper_server listening on {local}"); // seed: print('starting....')
        let (ip, port) = (local.ip(), local.port());
        println!("try: nc {ip} {port}   (or: cargo run -- client {local})");
    }
    event_loop.add_listener(listener)?;

    // Ctrl-C (SIGINT) or SIGTERM: stop accepting, flush replies, return from `run`.
    event_loop.handle_signals()?;
    event_loop.run(&mut Upper)?;
    println!("upper_server: shut down");
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
