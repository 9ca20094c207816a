//! Mirrors seed 004's command client (`004_c643266c8558d57a.txt`, 粘包问题解决最终版, the
//! 客户端): send a command, read the 4-byte `struct` length, the JSON header, then
//! `file_size` bytes of output, and print them.
//!
//! Run: `cargo run --example command_client -- [PORT] [COMMAND...]` (default 8080 on
//! 127.0.0.1, and the command `ls`); each COMMAND is one line, as typed at the seed's
//! `input('>>>:')`, e.g. `command_client 8080 "ls -l" "echo hi"`.
//! Try: against `cargo run --example command_server`, or `cargo run -- serve exec
//! --allow FILE --no-auth --listen 8080`.
//!
//! The seed blocks in `recv(4)`, in `recv(dict_size)` (trusting one `recv` to bring the
//! whole header) and in a `recv(1024)` loop. Here the bytes arrive in whatever pieces
//! `on_data` gets; `frames::decode_object` says "incomplete" until the whole header is
//! there (the loop keeps what was not consumed), and body bytes are taken as they come,
//! counted against `file_size`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::Token;
use netloop::proto::frames::{self, FrameError};
use netloop::services::exec::reply::{ReplyHeader, MAX_HEADER};
use netloop::{CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Target};

/// Give up when a reply does not come (the seed would wait forever).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

struct CommandClient {
    commands: VecDeque<String>,
    /// The reply being read: its header and the body bytes still to come.
    body_left: Option<(ReplyHeader, u64)>,
    error: Option<String>,
}

impl CommandClient {
    /// seed: `msg = input('>>>:')`, `client.send(msg)`: no newline, no framing.
    fn send_next(&mut self, ctx: &mut Ctx<()>, token: Token) {
        match self.commands.pop_front() {
            Some(command) => {
                println!(">>>: {command}");
                ctx.send(token, command.as_bytes());
                ctx.set_deadline(token, REPLY_TIMEOUT);
            }
            None => ctx.close(token, CloseReason::Done),
        }
    }
}

impl Handler for CommandClient {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.send_next(ctx, token);
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        let mut used = 0;
        loop {
            if let Some((header, left)) = self.body_left.as_mut() {
                // seed: `while recv_size < file_size: data = client.recv(1024)`.
                let take = (data.len() - used).min(*left as usize);
                let _ = io::stdout().write_all(&data[used..used + take]);
                used += take;
                *left -= take as u64;
                if *left > 0 {
                    return used;
                }
                println!("(exit status {})", header.shell_status());
                self.body_left = None;
                self.send_next(ctx, token);
                continue;
            }
            if used == data.len() {
                return used;
            }
            // seed: `struct.unpack('i', client.recv(4))`, `json.loads(client.recv(n))`.
            let header = match frames::decode_object(&data[used..], MAX_HEADER) {
                Err(FrameError::Incomplete) => return used,
                Err(FrameError::Invalid(e)) => Err(e.to_string()),
                Ok((obj, n)) => {
                    used += n;
                    println!("{}", serde_json::Value::Object(obj.clone())); // seed: print(dict)
                    ReplyHeader::from_object(&obj)
                }
            };
            match header {
                Ok(header) => self.body_left = Some((header.clone(), header.file_size)),
                Err(e) => {
                    self.error = Some(format!("bad reply: {e}"));
                    ctx.close(token, CloseReason::Done);
                    return data.len();
                }
            }
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.error = Some("no reply".into());
        ctx.close(token, CloseReason::Timeout);
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, _: Token, closed: Closed<()>) {
        if let CloseReason::ConnectFailed(e) | CloseReason::Error(e) = closed.reason {
            self.error = Some(e.to_string());
        } else if !self.commands.is_empty() || self.body_left.is_some() {
            self.error
                .get_or_insert_with(|| "the server closed the connection".into());
        }
        ctx.stop();
    }
}

fn main() -> io::Result<()> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        None => 8080,
        Some(text) => text.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("not a port: {text}"))
        })?,
    };
    let mut commands: VecDeque<String> = args.collect();
    if commands.is_empty() {
        commands.push_back("ls".into()); // the seed's first example command
    }
    let mut client = CommandClient {
        commands,
        body_left: None,
        error: None,
    };
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    event_loop.ctx().connect(&Target::Tcp(server), ())?;
    event_loop.run(&mut client)?;
    match client.error {
        Some(e) => Err(io::Error::other(format!("{server}: {e}"))),
        None => Ok(()),
    }
}
