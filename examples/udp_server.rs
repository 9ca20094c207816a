//! Mirrors seed 000 (`000_5c4e0256ea564372.txt`), the UDP server `udp_server.py`: it
//! prints each datagram it receives and answers it with `bye`.
//!
//! Run: `cargo run --example udp_server [PORT]` (default 8096, on 127.0.0.1).
//! Try: `cargo run --example udp_client` (the seed's `udp_client.py`), or
//! `nc -u 127.0.0.1 8096` and type lines (each line is one datagram).
//!
//! The seed answers one datagram and exits; this server answers every datagram until
//! Ctrl-C. UDP has no connections: no `listen`, no `accept`, no per-peer state. The loop
//! watches the one socket, reads every waiting datagram (`recvfrom`, until `WouldBlock`)
//! and calls `on_datagram` with each one and its sender's address.

use std::io;
use std::net::SocketAddr;

use mio::Token;
use netloop::core::listen::bind_udp;
use netloop::{Ctx, EventLoop, Handler, LoopConfig};

/// The application: answer every datagram with `bye`.
struct Bye;

impl Handler for Bye {
    /// No connections, so no per-connection state.
    type State = ();

    /// Bytes on a *stream* connection. This program has none, but the trait requires it.
    fn on_data(&mut self, _: &mut Ctx<()>, _: Token, data: &mut [u8]) -> usize {
        data.len()
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, port: usize, from: SocketAddr, data: &mut [u8]) {
        // seed: `msg, addr = sk.recvfrom(1024)` and `print(msg.decode('utf-8'))`.
        println!("from {from}: {}", String::from_utf8_lossy(data).trim_end());
        // seed: `sk.sendto(b'bye', addr)`. `port` says which of the loop's UDP sockets the
        // datagram came in on, so the reply leaves from the address the client wrote to.
        // A datagram the kernel cannot take right now is dropped, not queued: UDP promises
        // no delivery anyway.
        ctx.send_datagram(port, from, &[b"bye"]);
    }
}

fn main() -> io::Result<()> {
    env_logger::init(); // quiet unless RUST_LOG is set
    let port = port_arg(8096)?;
    let mut event_loop = EventLoop::new(LoopConfig::default())?;

    // seed: `sk = socket.socket(type=socket.SOCK_DGRAM)`, `sk.bind(("127.0.0.1", 8096))`.
    let socket = bind_udp(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let local = socket.local_addr()?; // the real port, if 0 was asked for
    event_loop.add_udp(socket)?;
    println!("udp_server listening on {local}");
    let (ip, port) = (local.ip(), local.port());
    println!("try: cargo run --example udp_client -- {port}   (or: nc -u {ip} {port})");

    // Ctrl-C (SIGINT) or SIGTERM ends `run`.
    event_loop.handle_signals()?;
    event_loop.run(&mut Bye)?;
    println!("udp_server: shut down");
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
