//! Mirrors seed 000's demo 4 (`000_5c4e0256ea564372.txt`, 验证客户端的合法性): the server
//! sends `os.urandom(32)`, the client answers `hmac.new(secret_key, msg).digest()`, the
//! server compares with `hmac.compare_digest` and says whether the client is legitimate.
//! One addition: the server also sends its verdict (`ok` or `refused`, one line), so a
//! refused client exits with an error instead of 0.
//!
//! Run: `cargo run --example hmac_auth -- server [PORT] [SECRET]` (default 8066, secret
//! `egg`, as in the seed), then `cargo run --example hmac_auth -- client [PORT] [SECRET]`;
//! give the client another secret to see a refusal.
//! The seed's Python client works too once its digest is SHA-256:
//! `hmac.new(secret_key, msg, 'sha256')` (see tests/fixtures/seed000_hmac_client.py).
//!
//! The seed's `check_conn` blocks in `conn.recv(1024)` — forever, if the client says
//! nothing — and assumes the 32-byte answer arrives in one piece. On the loop, `on_data`
//! leaves bytes unconsumed until all 32 are there, and a deadline (`set_deadline`, then
//! `on_deadline`) drops a client that stays silent. The deadline is the handler's own,
//! separate from any idle timeout of the loop. `netloop serve upload --secret-file`
//! uses the same check (`src/proto/hmac_auth.rs`) before accepting uploads.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::Token;
use netloop::core::listen::{bind_tcp, Listener, TcpOptions};
use netloop::proto::hmac_auth::{challenge, Secret, CHALLENGE_LEN};
use netloop::{CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Target};

/// How long a client has to answer (the seed waits forever).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

struct Checker {
    secret: Secret,
}

impl Handler for Checker {
    /// Per connection: the challenge sent to it.
    type State = [u8; CHALLENGE_LEN];

    fn on_open(&mut self, ctx: &mut Ctx<[u8; CHALLENGE_LEN]>, token: Token) {
        // seed: `msg = os.urandom(32)`, `conn.send(msg)`.
        match challenge() {
            Ok(msg) => {
                if let Some(state) = ctx.state_mut(token) {
                    *state = msg;
                }
                ctx.send(token, &msg);
                ctx.set_deadline(token, ANSWER_WITHIN);
            }
            Err(e) => ctx.close(token, CloseReason::Error(e)),
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<[u8; 32]>, token: Token, data: &mut [u8]) -> usize {
        let Some(answer) = data.get(..CHALLENGE_LEN) else {
            return 0; // not all 32 bytes yet: the loop keeps them
        };
        let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
        let msg = ctx.state(token).copied().unwrap_or_default();
        // seed: `hmac.compare_digest(digest, client_digest)` — constant time here too.
        if self.secret.verify(&msg, answer) {
            println!("{peer}: legitimate client (合法的客户端)");
            ctx.send(token, VERDICT_OK);
        } else {
            println!("{peer}: illegitimate client (不合法的客户端)");
            ctx.send(token, VERDICT_REFUSED);
        }
        ctx.close_when_flushed(token); // seed: `conn.close()`
        data.len()
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<[u8; 32]>, token: Token) {
        let peer = ctx.peer(token).map(|p| p.to_string()).unwrap_or_default();
        println!("{peer}: no answer within {ANSWER_WITHIN:?}, dropped");
        ctx.close(token, CloseReason::Timeout);
    }
}

/// The server's verdict, one line after the answer. (The seed's server only prints it;
/// without it a refused client could not know, and would exit 0.)
const VERDICT_OK: &[u8] = b"ok\n";
const VERDICT_REFUSED: &[u8] = b"refused\n";

/// seed's client: `msg = sk.recv(1024)`, `sk.send(hmac.new(secret_key, msg).digest())`;
/// then it reads the verdict.
struct Answerer {
    secret: Secret,
    answered: bool,
    /// `Some(true)`: accepted; `Some(false)`: refused; `None`: no verdict came.
    verdict: Option<bool>,
}

impl Handler for Answerer {
    type State = ();

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        if !self.answered {
            let Some(msg) = data.get(..CHALLENGE_LEN) else {
                return 0;
            };
            ctx.send(token, &self.secret.answer(msg));
            println!("answered the challenge");
            self.answered = true;
            return CHALLENGE_LEN;
        }
        let Some(end) = data.iter().position(|&b| b == b'\n') else {
            return 0; // the verdict line is not whole yet
        };
        self.verdict = Some(&data[..=end] == VERDICT_OK);
        ctx.close_when_flushed(token); // seed: `sk.close()`
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
        None => 8066,
    };
    let secret = Secret::new(
        args.get(2)
            .map_or("egg", String::as_str)
            .as_bytes()
            .to_vec(),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match args.first().map(String::as_str) {
        Some("server") => {
            let mut event_loop = EventLoop::new(LoopConfig::default())?;
            let listener = bind_tcp(addr, TcpOptions::default())?;
            if let Listener::Tcp(_, local) = &listener {
                println!("hmac_auth server listening on {local}");
                println!(
                    "try: cargo run --example hmac_auth -- client {}",
                    local.port()
                );
            }
            event_loop.add_listener(listener)?;
            event_loop.handle_signals()?;
            event_loop.run(&mut Checker { secret })
        }
        Some("client") => {
            let mut event_loop = EventLoop::new(LoopConfig::default())?;
            event_loop.ctx().connect(&Target::Tcp(addr), ())?;
            let mut client = Answerer {
                secret,
                answered: false,
                verdict: None,
            };
            event_loop.run(&mut client)?;
            match client.verdict {
                Some(true) => {
                    println!("the server accepted the answer");
                    Ok(())
                }
                Some(false) => Err(io::Error::other(
                    "the server refused the answer: is the secret the same on both sides?",
                )),
                None => Err(io::Error::other(format!(
                    "no verdict from {addr}: is `hmac_auth server` running there?"
                ))),
            }
        }
        _ => Err(io::Error::other(
            "usage: hmac_auth server|client [PORT] [SECRET]",
        )),
    }
}
