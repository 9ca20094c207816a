//! Mirrors seed 000's demo 2 (`000_5c4e0256ea564372.txt`, 使用struct模块解决黏包问题): the
//! remote-command pair fixed with `struct.pack('i', len)`. The server sends a command;
//! the client runs it and answers with a 4-byte length, then stdout and stderr.
//!
//! Run: `cargo run --example length_prefix -- server [PORT] [COMMAND...]` (default 8090;
//! commands default to `echo hello`, `ls /`, `echo oops >&2`), then in another terminal
//! `cargo run --example length_prefix -- client [PORT]` (or the seed's own client).
//!
//! Why the prefix: demo 1's client does `sk.send(stdout)`, `sk.send(stderr)` and the
//! server `conn.recv(500)`. TCP is a byte stream, so the two sends may arrive glued
//! together, and an output over 500 bytes is cut, its tail read as the *next* command's
//! output ("sticky packets", 黏包). With the length first, the receiver knows where each
//! message ends. On the loop the receiving side must also cope with the opposite split:
//! the prefix and the output may arrive in any number of pieces, so `on_data` returns 0
//! ("not consumed") until `frames::check` sees a whole frame; the loop keeps the bytes.

use std::io;
use std::net::SocketAddr;
use std::process::Command;

use mio::Token;
use netloop::core::listen::{bind_tcp, Listener, TcpOptions};
use netloop::proto::frames::{self, FrameError};
use netloop::{CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Target};

/// Largest output accepted (the prefix is checked before anything is buffered).
const MAX_OUTPUT: usize = 1024 * 1024;

/// The seed's server: `conn.send(cmd)`, then `struct.unpack('i', conn.recv(4))` and
/// `conn.recv(num)` — here as a decoder over whatever bytes have arrived.
struct CommandServer {
    commands: Vec<String>,
}

impl CommandServer {
    fn next(&self, ctx: &mut Ctx<usize>, token: Token) {
        let i = ctx.state(token).copied().unwrap_or(0);
        match self.commands.get(i) {
            Some(cmd) => {
                println!(">>> {cmd}");
                ctx.send(token, cmd.as_bytes());
            }
            None => {
                ctx.send(token, b"q"); // seed: `if cmd == "q": conn.send(b"q")`
                ctx.close_when_flushed(token);
            }
        }
    }
}

impl Handler for CommandServer {
    /// Per connection: how many commands were answered.
    type State = usize;

    fn on_open(&mut self, ctx: &mut Ctx<usize>, token: Token) {
        self.next(ctx, token);
    }

    fn on_data(&mut self, ctx: &mut Ctx<usize>, token: Token, data: &mut [u8]) -> usize {
        match frames::check(data, MAX_OUTPUT) {
            Err(FrameError::Incomplete) => 0, // keep it all; more is on the way
            Err(FrameError::Invalid(e)) => {
                println!("bad frame: {e}");
                ctx.close(token, CloseReason::Done);
                data.len()
            }
            Ok(total) => {
                let output = &data[frames::PREFIX_LEN..total];
                println!("{}", String::from_utf8_lossy(output).trim_end());
                if let Some(i) = ctx.state_mut(token) {
                    *i += 1;
                }
                self.next(ctx, token);
                total // a following frame, if any, is offered again
            }
        }
    }
}

/// The seed's client: receive a command, run it, send the length and both outputs.
struct CommandClient;

impl Handler for CommandClient {
    type State = ();

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        let cmd = String::from_utf8_lossy(data).into_owned();
        if cmd == "q" {
            ctx.stop();
            return data.len();
        }
        // Blocking, like the seed's subprocess.Popen(...).stdout.read(): fine for a demo
        // with one connection, never for a server.
        let (stdout, stderr) = match Command::new("sh").arg("-c").arg(&cmd).output() {
            Ok(out) => (out.stdout, out.stderr),
            Err(e) => (Vec::new(), format!("{e}\n").into_bytes()),
        };
        let len = (stdout.len() + stderr.len()) as i32; // seed: struct.pack('i', len_num)
        ctx.send_parts(token, &[&len.to_le_bytes(), &stdout, &stderr]);
        data.len()
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, _: Token, _: Closed<()>) {
        ctx.stop();
    }
}

fn main() -> io::Result<()> {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = match args.get(1) {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::other(format!("not a port: {p}")))?,
        None => 8090,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match args.first().map(String::as_str) {
        Some("server") => {
            let mut commands: Vec<String> = args.iter().skip(2).cloned().collect();
            if commands.is_empty() {
                commands = ["echo hello", "ls /", "echo oops >&2"]
                    .map(String::from)
                    .to_vec();
            }
            let mut event_loop = EventLoop::new(LoopConfig::default())?;
            let listener = bind_tcp(addr, TcpOptions::default())?;
            if let Listener::Tcp(_, local) = &listener {
                println!("length_prefix server listening on {local}");
                println!(
                    "try: cargo run --example length_prefix -- client {}",
                    local.port()
                );
            }
            event_loop.add_listener(listener)?;
            event_loop.handle_signals()?;
            event_loop.run(&mut CommandServer { commands })
        }
        Some("client") => {
            let mut event_loop = EventLoop::new(LoopConfig::default())?;
            event_loop.ctx().connect(&Target::Tcp(addr), ())?;
            event_loop.run(&mut CommandClient)
        }
        _ => Err(io::Error::other(
            "usage: length_prefix server|client [PORT] [COMMAND...]",
        )),
    }
}
