//! Mirrors seed 000 (`000_5c4e0256ea564372.txt`), the UDP client `udp_client.py`: it
//! sends `hello` to the server and prints the reply.
//!
//! Run: `cargo run --example udp_client [PORT]` (default 8096, on 127.0.0.1).
//! Try: start `cargo run --example udp_server` in another terminal first (or
//! `cargo run -- serve --udp 127.0.0.1:8096`, which echoes instead of saying bye).
//!
//! The seed's `recvfrom` waits forever when no reply comes, and with UDP that is normal:
//! no server, a lost datagram, nothing reports it. So this client gives up after a
//! deadline, and exits with an error.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use mio::Token;
use netloop::core::listen::bind_udp;
use netloop::{Ctx, EventLoop, Handler, LoopConfig};

/// How long to wait for the reply.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The key of our one loop timer: giving up.
const GIVE_UP: u64 = 1;

/// The application: wait for the server's reply, or for the deadline.
struct HelloClient {
    /// Where `hello` went; only a datagram from there is the reply.
    server: SocketAddr,
    /// Whether the reply came.
    answered: bool,
}

impl Handler for HelloClient {
    type State = ();

    /// Bytes on a stream connection: we have none (UDP only).
    fn on_data(&mut self, _: &mut Ctx<()>, _: Token, data: &mut [u8]) -> usize {
        data.len()
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, _: usize, from: SocketAddr, data: &mut [u8]) {
        // seed: `ret, addr = sk.recvfrom(1024)`. Anyone may send to our port: only the
        // server's datagram is the reply.
        if from != self.server {
            return;
        }
        println!("{}", String::from_utf8_lossy(data)); // seed: print(ret.decode('utf-8'))
        self.answered = true;
        ctx.stop(); // seed: `sk.close()`: the socket closes when the loop is dropped
    }

    fn on_timer(&mut self, ctx: &mut Ctx<()>, key: u64) {
        if key == GIVE_UP {
            ctx.stop(); // no reply in time; `main` reports it
        }
    }
}

fn main() -> ExitCode {
    env_logger::init(); // quiet unless RUST_LOG is set
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let port = port_arg(8096)?;
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    println!("udp_client: sending hello to {server}");
    println!("(the server: cargo run --example udp_server -- {port})");

    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // seed: `sk = socket.socket(type=socket.SOCK_DGRAM)`. Python binds a port on the first
    // `sendto`; we bind one now (port 0: the kernel picks it) so the loop can watch it.
    let udp = event_loop.add_udp(bind_udp(SocketAddr::from(([127, 0, 0, 1], 0)))?)?;

    // The timeout: a loop timer, tied to no connection (UDP has none). Where the seed's
    // `recvfrom` would block forever, the loop sleeps until the reply or this timer.
    let ctx = event_loop.ctx();
    ctx.timer_after(TIMEOUT, GIVE_UP);

    // seed: `sk.sendto(b'hello', ip_port)`.
    ctx.send_datagram(udp, server, &[b"hello"]);
    let mut client = HelloClient {
        server,
        answered: false,
    };
    event_loop.run(&mut client)?; // returns at the reply or at the deadline
    if client.answered {
        Ok(())
    } else {
        let why = format!(
            "no reply from {server} within {} s: is a server running there? \
             (cargo run --example udp_server -- {port})",
            TIMEOUT.as_secs()
        );
        Err(io::Error::new(io::ErrorKind::TimedOut, why))
    }
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
