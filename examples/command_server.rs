//! Mirrors seed 004's command server (`004_c643266c8558d57a.txt`, 粘包问题解决最终版, the
//! 服务器端 with `subprocess.Popen`): read a command, run it, send a 4-byte `struct`
//! length, a JSON header with `file_size`, then the command's stdout and stderr.
//!
//! Run: `cargo run --example command_server [PORT]` (default 8080, on 127.0.0.1).
//! Try: `cargo run --example command_client -- 8080 ls "echo hi"`, `cargo run -- exec
//! 127.0.0.1:8080 -- ls -l`, or the seed's own Python client, unchanged.
//!
//! The seed runs `Popen(cmd, shell=True)` — a remote shell for anyone who connects — and
//! then blocks in `obj.stdout.read()` while every other client waits. Here:
//! - no shell: the line is split into words and only the programs in `ALLOWED` run
//!   (`netloop::services::exec::{command, allowlist}` decide);
//! - the child's stdout and stderr are pipes on the loop, read like sockets (`on_data`
//!   for a pipe's token), and its exit is an event: SIGCHLD, then a non-blocking reap;
//! - a reply is sent once both pipes reached EOF *and* the child was reaped, the two
//!   events coming in either order; meanwhile every other client is served.
//!
//! Deliberately smaller than `netloop serve exec` (`src/services/exec/`), which adds
//! authentication, time limits, a bound on children, replies paced to slow readers and
//! requests that end at a newline or a pause: here, as in the seed, one `recv` is one
//! command.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

use mio::Token;
use netloop::core::listen::{bind_tcp, Listener, TcpOptions};
use netloop::core::{Peer, Stream};
use netloop::services::exec::child::{self, ChildProcess, Spec};
use netloop::services::exec::reply::{refusal_body, ReplyHeader};
use netloop::services::exec::{command, Allowlist};
use netloop::{Closed, Ctx, EventLoop, Handler, LoopConfig, SignalAction};

/// What may run: harmless programs only.
const ALLOWED: &str = "/bin/ls\n/bin/echo\n/bin/date\n/bin/pwd\n/bin/uname\n/usr/bin/whoami\n";
/// Most output kept per command; the rest is dropped (`netloop serve exec` kills).
const MAX_OUTPUT: usize = 1024 * 1024;

/// A slot is a client, or a pipe of the child running a client's command.
#[derive(Default)]
enum Slot {
    #[default]
    Client,
    Pipe {
        job: u32,
        stderr: bool,
    },
}

/// A command running for a client.
struct Job {
    client: Option<Token>,
    process: ChildProcess,
    open_pipes: u8,
    output: [Vec<u8>; 2],
}

struct CommandServer {
    allow: Allowlist,
    env: Vec<(String, String)>,
    jobs: HashMap<u32, Job>,
    next: u32,
}

impl CommandServer {
    /// seed: `cmd = conn.recv(1024)`, `subprocess.Popen(cmd, shell=True, ...)`.
    fn start(&mut self, ctx: &mut Ctx<Slot>, client: Token, line: &[u8]) {
        let allowed = command::parse(line).and_then(|argv| self.allow.resolve(&argv));
        let spec = match &allowed {
            Ok(a) => Spec {
                program: &a.program,
                args: &a.args,
                dir: Path::new("."),
                env: &self.env,
            },
            Err(why) => return refuse(ctx, client, why),
        };
        let started = match child::spawn(&spec) {
            Ok(started) => started,
            Err(e) => return refuse(ctx, client, &e.to_string()),
        };
        let (id, pid) = (self.next, started.process.pid());
        self.next += 1;
        println!(
            "client {client:?}: running {:?} as pid {pid}",
            String::from_utf8_lossy(line)
        );
        let mut job = Job {
            client: Some(client),
            process: started.process,
            open_pipes: 0,
            output: Default::default(),
        };
        for (end, stderr) in [(started.stdout, false), (started.stderr, true)] {
            let pipe = Slot::Pipe { job: id, stderr };
            if ctx
                .add_stream(Stream::PipeIn(end), Peer::Process(pid), pipe)
                .is_ok()
            {
                job.open_pipes += 1;
            }
        }
        self.jobs.insert(id, job);
    }

    /// Reply once the child is reaped and both pipes are at EOF (either may come last).
    fn reply_if_done(&mut self, ctx: &mut Ctx<Slot>, id: u32) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(status) = job.process.try_reap() else {
            return;
        };
        if job.open_pipes > 0 {
            return;
        }
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let Some(client) = job.client else { return }; // the client left meanwhile
        let [out, err] = &job.output;
        // seed: `d = {'file_size': len(res), ...}`, `struct.pack('i', len(json_d))`.
        let header = ReplyHeader {
            file_size: (out.len() + err.len()) as u64,
            stdout_size: out.len() as u64,
            stderr_size: err.len() as u64,
            exit_code: status.code(),
            ..ReplyHeader::default()
        };
        println!("client {client:?}: {status}, {} bytes", header.file_size);
        // seed: `conn.send(header)`, `conn.send(json_d...)`, `conn.send(res)`: one writev.
        ctx.send_parts(client, &[&header.encode(), out, err]);
    }
}

/// An error reply, in the same framing (the seed would have run anything).
fn refuse(ctx: &mut Ctx<Slot>, client: Token, why: &str) {
    println!("client {client:?}: refused: {why}");
    ctx.send_parts(
        client,
        &[&ReplyHeader::refusal(why).encode(), &refusal_body(why)],
    );
}

impl Handler for CommandServer {
    type State = Slot;

    fn on_data(&mut self, ctx: &mut Ctx<Slot>, token: Token, data: &mut [u8]) -> usize {
        match ctx.state(token) {
            Some(Slot::Pipe { job, stderr }) => {
                let (id, which) = (*job, usize::from(*stderr));
                if let Some(job) = self.jobs.get_mut(&id) {
                    let room = MAX_OUTPUT.saturating_sub(job.output[0].len() + job.output[1].len());
                    job.output[which].extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Slot::Client) => {
                if self.jobs.values().any(|j| j.client == Some(token)) {
                    return 0; // one command at a time: the next waits, unconsumed
                }
                let line = data.strip_suffix(b"\n").unwrap_or(data);
                self.start(ctx, token, line.strip_suffix(b"\r").unwrap_or(line));
            }
            None => {}
        }
        data.len()
    }

    fn on_close(&mut self, ctx: &mut Ctx<Slot>, token: Token, closed: Closed<Slot>) {
        match closed.state {
            Slot::Pipe { job, .. } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.open_pipes -= 1;
                }
                self.reply_if_done(ctx, job);
            }
            Slot::Client => {
                // seed: `except ConnectionResetError: break`; here the command dies too.
                for job in self.jobs.values_mut().filter(|j| j.client == Some(token)) {
                    job.client = None;
                    job.process.signal_group(libc::SIGTERM);
                }
            }
        }
    }

    fn on_signal(&mut self, ctx: &mut Ctx<Slot>, signal: i32) -> SignalAction {
        if signal != libc::SIGCHLD {
            return SignalAction::Shutdown; // SIGINT, SIGTERM: children die with `jobs`
        }
        // One SIGCHLD may stand for several exits: ask every child, none blocks.
        let ids: Vec<u32> = self.jobs.keys().copied().collect();
        for id in ids {
            self.reply_if_done(ctx, id);
        }
        SignalAction::Handled
    }
}

fn main() -> io::Result<()> {
    env_logger::init();
    let port = match std::env::args().nth(1) {
        None => 8080,
        Some(text) => text.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("not a port: {text}"))
        })?,
    };
    let allow = Allowlist::parse(ALLOWED, "the example's list").map_err(io::Error::other)?;
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    let mut server = CommandServer {
        allow,
        env: vec![("PATH".into(), path)],
        jobs: HashMap::new(),
        next: 0,
    };
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // seed: `server.bind(('127.0.0.1', 8080))`, `server.listen(5)`.
    let listener = bind_tcp(
        SocketAddr::from(([127, 0, 0, 1], port)),
        TcpOptions::default(),
    )?;
    if let Listener::Tcp(_, local) = &listener {
        println!("command_server listening on {local}");
        println!(
            "try: cargo run --example command_client -- {} ls",
            local.port()
        );
    }
    event_loop.add_listener(listener)?;
    // Children's exits come as SIGCHLD, through the same loop as the sockets.
    event_loop.handle_signals_from(&[libc::SIGINT, libc::SIGTERM, libc::SIGCHLD])?;
    event_loop.run(&mut server)?;
    println!("command_server: shut down");
    Ok(()) // dropping `server` kills and reaps any child still running
}
