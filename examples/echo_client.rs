//! Mirrors seed 001 (`001_ee7d6b97d093d40c.txt`), the client of the `select.select()` echo
//! server (the 客户端 after it): it sends `number 1`, `number 2`, `number 3`, one a second,
//! and prints each reply.
//!
//! Run: `cargo run --example echo_client [PORT]` (default 8888, on 127.0.0.1).
//! Try: start `cargo run --example select_echo_server` in another terminal first (or
//! `cargo run -- serve echo`, or the seed's own Python server).
//!
//! The seed blocks three times per round: in `connect`, in `recv` and in `time.sleep(1)`.
//! On the loop nothing blocks, so each of them becomes an event:
//! - `connect` starts a non-blocking connect; `on_open` says it completed;
//! - `recv` becomes `on_data`, called when reply bytes arrive;
//! - `time.sleep(1)` becomes a deadline: `on_deadline` is called a second later.
//!
//! A second deadline, which the seed lacks, gives up when a reply does not come.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::Token;
use netloop::{CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Target};

/// How many messages to send (the seed's `range(1, 4)`).
const ROUNDS: u32 = 3;
/// The seed's `time.sleep(1)` between rounds.
const PAUSE: Duration = Duration::from_secs(1);
/// How long to wait for a reply before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's progress; one connection, so it lives in the handler, not in `State`.
#[derive(Default)]
struct EchoClient {
    /// Messages sent so far; the last one sent is `number {sent}`.
    sent: u32,
    /// Replies received so far.
    replies: u32,
    /// What went wrong, for `main` to report.
    error: Option<String>,
}

impl EchoClient {
    /// One round of the seed's loop, up to its `recv`: send the next message.
    fn send_next(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.sent += 1;
        println!("round {}", self.sent); // seed: print(f"第{i}次循环")
        ctx.send(token, format!("number {}", self.sent).as_bytes());
        ctx.set_deadline(token, REPLY_TIMEOUT);
    }
}

impl Handler for EchoClient {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, token: Token) {
        println!("connected"); // seed: `client.connect(...)` returned
        self.send_next(ctx, token);
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        // seed: `data = client.recv(1024)` and print it. Like the seed, we take whatever
        // one read returns as the reply: replies this small arrive in one piece in
        // practice, though TCP, a byte stream, does not promise it.
        println!("{}", String::from_utf8_lossy(data));
        if self.replies < self.sent {
            self.replies += 1;
            if self.replies == ROUNDS {
                ctx.close_when_flushed(token); // all done: close, as the seed exits
            } else {
                ctx.set_deadline(token, PAUSE); // replaces the reply timeout
            }
        }
        data.len()
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if self.replies == self.sent {
            self.send_next(ctx, token); // the pause is over: next round
        } else {
            let why = format!("no reply to number {} within {REPLY_TIMEOUT:?}", self.sent);
            self.error = Some(why);
            ctx.close(token, CloseReason::IdleTimeout);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, _: Token, closed: Closed<()>) {
        let why = &closed.reason;
        // Whatever closed the connection (us, the server, a failed connect), we are done.
        if self.replies < ROUNDS && self.error.is_none() {
            let n = self.replies;
            self.error = Some(format!(
                "connection closed after {n} of {ROUNDS} replies: {why}"
            ));
        }
        ctx.stop();
    }
}

fn main() -> io::Result<()> {
    env_logger::init(); // quiet unless RUST_LOG is set
    let port = port_arg(8888)?;
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    println!("echo_client: connecting to {server}");
    println!("(the server: cargo run --example select_echo_server -- {port})");

    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // Only starts the connect; `run` finishes it and then calls `on_open`.
    event_loop.ctx().connect(&Target::Tcp(server), ())?;
    let mut client = EchoClient::default();
    event_loop.run(&mut client)?; // returns when a handler calls `ctx.stop()`
    match client.error {
        None => Ok(()),
        Some(why) => Err(io::Error::other(why)),
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
