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
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mio::Token;
use netloop::core::listen::bind_udp;
use netloop::core::{Peer, Stream};
use netloop::{Ctx, EventLoop, Handler, LoopConfig};

/// How long to wait for the reply.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The application: wait for the server's reply, or for the deadline.
struct HelloClient {
    /// Where `hello` went; only a datagram from there is the reply.
    server: SocketAddr,
    /// Whether the reply came.
    answered: bool,
}

impl Handler for HelloClient {
    type State = ();

    /// Bytes on a stream connection: our only one is the timer below, which never has any.
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

    fn on_deadline(&mut self, ctx: &mut Ctx<()>, _: Token) {
        ctx.stop(); // no reply in time; `main` reports it
    }
}

fn main() -> io::Result<()> {
    env_logger::init(); // quiet unless RUST_LOG is set
    let port = port_arg(8096)?;
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    println!("udp_client: sending hello to {server}");
    println!("(the server: cargo run --example udp_server -- {port})");

    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // seed: `sk = socket.socket(type=socket.SOCK_DGRAM)`. Python binds a port on the first
    // `sendto`; we bind one now (port 0: the kernel picks it) so the loop can watch it.
    let udp = event_loop.add_udp(bind_udp(SocketAddr::from(([127, 0, 0, 1], 0)))?)?;

    // The timeout. The loop's deadlines belong to connections and UDP has none, so we
    // lend it one: our end of a socket pair that never carries a byte. `_other_end` stays
    // open until `main` returns, so our end never reads EOF.
    let (timer, _other_end) = UnixStream::pair()?;
    timer.set_nonblocking(true)?;
    let ctx = event_loop.ctx();
    let timer = mio::net::UnixStream::from_std(timer);
    let timer = ctx.add_stream(Stream::Unix(timer), Peer::Local, ())?;
    ctx.set_deadline(timer, TIMEOUT);

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
        let why = format!("no reply from {server} within {TIMEOUT:?}");
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
