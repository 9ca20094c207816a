//! A chat room on the loop: every line a client sends goes to every other client.
//!
//! Run: `cargo run --release --example chat -- 127.0.0.1:7000` (port 0 picks a free
//! port; the first line printed says which), then `nc 127.0.0.1 7000` in two or three
//! terminals. You are `guest1`, `guest2`, ...; type a line and the others see
//! `<guest1> your line`. `/nick NAME` renames you, `/who` lists who is here, `/quit`
//! leaves. Options, to watch things happen sooner (and for the tests):
//! `--kick-after SECS` (30), `--tick SECS` (5), `--max-queue BYTES` (1 MiB),
//! `--slow-grace SECS` (10). `RUST_LOG=info` logs joins and leaves on stderr.
//!
//! This is the chat service of the project's design. No seed program mirrors it
//! exactly; the closest is seed 001's `select()` server, whose `message_queue[conn]`
//! holds what each client has not been sent yet (here that queue belongs to the loop).
//! What it shows about the loop:
//!
//! - **Timers are first-class**, and none of them is a thread or a sleep. A loop timer
//!   (`ctx.timer_every`) sends the tick line. The loop's idle timeout
//!   (`LoopConfig::idle_timeout`, counting only what a client *sends*) calls `on_idle`,
//!   where the client is told why, then closed once that notice is written. A
//!   per-connection deadline (`ctx.set_deadline`) gives a client that fell behind
//!   time to catch up.
//! - **Fan-out with honest memory.** One line in becomes a line out to everyone. A
//!   client that stops reading would make the server hold everyone's chatter for it,
//!   without end. So the answer of `send` is looked at: past the watermark
//!   (`SendStatus::OverWatermark`) the client is skipped, told how many lines it missed
//!   when its queue drains (`on_drained`), and dropped if that has not happened within
//!   the grace period (`on_deadline`). Its queue never holds much more than the
//!   watermark, and the loop's hard cap (`max_queue_hard`, `CloseReason::QueueOverflow`)
//!   would hold even if this handler forgot to look.
//! - **Close callbacks see the connection.** `on_close` comes once per connection with
//!   its reason and final state (the nickname), as soon as the connection is done for
//!   us, not after the lingering close the loop finishes on its own: "alice left
//!   (idle)" is announced at once.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use log::info;
use netloop::core::listen::{bind_tcp, TcpOptions};
use netloop::core::IdleCounts;
use netloop::{
    CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, SendStatus, SignalAction, Token,
};

/// The key of the tick timer, the only loop timer here.
const TICK: u64 = 1;
/// The longest line a client may send; a longer one closes it (`InputTooLarge`).
const MAX_LINE: usize = 4096;
/// The longest nickname.
const MAX_NICK: usize = 20;

/// One client of the room, kept by the loop in the connection's slot.
#[derive(Default)]
struct Member {
    /// What the others see before its lines: `guestN` until `/nick`.
    nick: String,
    /// Whether lines are sent to it, skipped, or no longer wanted.
    standing: Standing,
}

/// How a member stands with what the room sends it.
#[derive(Clone, Copy, Default, PartialEq)]
enum Standing {
    /// Reading what it is sent.
    #[default]
    KeepingUp,
    /// Its queue went over the watermark: lines are skipped (and counted) until it drains.
    Behind { skipped: u64 },
    /// Said goodbye to (kicked, or `/quit`): closing once that is written.
    Leaving,
}

/// The room: the handler. Everything about each member lives in its `Member`.
struct Chat {
    /// The command line: the grace periods and the kick delay told to clients.
    opts: Options,
    /// Guests are named guest1, guest2, ...: the last number given.
    last_guest: u64,
    /// Set on SIGINT/SIGTERM: everyone is closing, nobody is announced as leaving.
    shutting_down: bool,
}

impl Chat {
    /// Send `line` to every member but `except`.
    fn broadcast(&self, ctx: &mut Ctx<Member>, except: Option<Token>, line: &[u8]) {
        // Collected first, because sending needs `ctx` mutably.
        let everyone: Vec<Token> = ctx.tokens().filter(|&t| Some(t) != except).collect();
        for token in everyone {
            self.deliver(ctx, token, line);
        }
    }

    /// Send a `* ...` notice line to one member.
    fn tell(&self, ctx: &mut Ctx<Member>, token: Token, text: &str) {
        self.deliver(ctx, token, format!("* {text}\n").as_bytes());
    }

    /// Send one line to one member, unless it is behind (then the line is skipped).
    fn deliver(&self, ctx: &mut Ctx<Member>, token: Token, line: &[u8]) {
        let Some(member) = ctx.state_mut(token) else {
            return;
        };
        match &mut member.standing {
            Standing::KeepingUp => {}
            Standing::Behind { skipped } => {
                *skipped += 1;
                return;
            }
            Standing::Leaving => return,
        }
        if ctx.send(token, line) == SendStatus::OverWatermark {
            // This member reads slower than the room talks. Stop sending to it, so its
            // queue stays near the watermark, and give it time to catch up
            // (`on_drained`) before it is dropped (`on_deadline`).
            if let Some(member) = ctx.state_mut(token) {
                member.standing = Standing::Behind { skipped: 0 };
            }
            ctx.set_deadline(token, self.opts.slow_grace);
        }
    }

    /// One complete line from a member (without its newline).
    fn on_line(&mut self, ctx: &mut Ctx<Member>, token: Token, line: &[u8]) {
        let Some(member) = ctx.state(token) else {
            return;
        };
        if line.is_empty() || member.standing == Standing::Leaving {
            return;
        }
        let nick = member.nick.clone();
        let Some(command) = line.strip_prefix(b"/") else {
            let said = [b"<", nick.as_bytes(), b"> ", line, b"\n"].concat();
            self.broadcast(ctx, Some(token), &said);
            return;
        };
        let command = String::from_utf8_lossy(command);
        let (name, arg) = command.split_once(' ').unwrap_or((&command, ""));
        match name {
            "nick" => self.rename(ctx, token, &nick, arg.trim()),
            "who" => {
                let here: Vec<&str> = ctx.iter().map(|(_, m)| m.nick.as_str()).collect();
                let here = here.join(", ");
                self.tell(ctx, token, &format!("here: {here}"));
            }
            "quit" => self.say_goodbye(ctx, token, "bye", CloseReason::Done),
            _ => self.tell(ctx, token, "commands: /nick NAME, /who, /quit"),
        }
    }

    /// `/nick NAME`: a new, unique nickname, announced to everyone.
    fn rename(&self, ctx: &mut Ctx<Member>, token: Token, old: &str, new: &str) {
        let valid = !new.is_empty()
            && new.len() <= MAX_NICK
            && new
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            let rule = format!("a nickname is 1 to {MAX_NICK} letters, digits, _ or -");
            return self.tell(ctx, token, &rule);
        }
        if nick_taken(ctx, new) {
            return self.tell(ctx, token, &format!("{new} is taken"));
        }
        if let Some(member) = ctx.state_mut(token) {
            member.nick = new.to_string();
        }
        self.broadcast(ctx, None, format!("* {old} is now {new}\n").as_bytes());
    }

    /// Tell a member why it goes, then close it once that line is written.
    fn say_goodbye(&self, ctx: &mut Ctx<Member>, token: Token, text: &str, why: CloseReason) {
        self.tell(ctx, token, text);
        if let Some(member) = ctx.state_mut(token) {
            member.standing = Standing::Leaving;
        }
        ctx.close_after_flush(token, why);
        // A client that does not read would keep that line unsent, and itself open,
        // forever: it gets the same grace as one that fell behind.
        ctx.set_deadline(token, self.opts.slow_grace);
    }
}

impl Handler for Chat {
    type State = Member;

    fn on_open(&mut self, ctx: &mut Ctx<Member>, token: Token) {
        let nick = loop {
            self.last_guest += 1;
            let nick = format!("guest{}", self.last_guest);
            if !nick_taken(ctx, &nick) {
                break nick; // not taken by someone's `/nick` already
            }
        };
        if let Some(peer) = ctx.peer(token) {
            info!("{nick} joined from {peer}");
        }
        if let Some(member) = ctx.state_mut(token) {
            member.nick = nick.clone();
        }
        let kick = self.opts.kick_after.as_secs_f64();
        let welcome = format!(
            "welcome, you are {nick}. Lines you type go to everyone; /nick NAME renames \
             you, /who lists who is here, /quit leaves. Silent for {kick} s and you are out."
        );
        self.tell(ctx, token, &welcome);
        self.broadcast(ctx, Some(token), format!("* {nick} joined\n").as_bytes());
    }

    fn on_data(&mut self, ctx: &mut Ctx<Member>, token: Token, data: &mut [u8]) -> usize {
        // Every complete line; an unfinished one stays with the loop (up to MAX_LINE)
        // and comes back, with what follows it, in the next call.
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + end];
            used += end + 1;
            self.on_line(ctx, token, line.strip_suffix(b"\r").unwrap_or(line));
        }
        used
    }

    fn on_idle(&mut self, ctx: &mut Ctx<Member>, token: Token) {
        // Only input counts as activity (`IdleCounts::Input`): the ticks we send a
        // client do not keep it here.
        let kick = self.opts.kick_after.as_secs_f64();
        let notice = format!("you said nothing for {kick} s: bye");
        self.say_goodbye(ctx, token, &notice, CloseReason::IdleTimeout);
    }

    fn on_drained(&mut self, ctx: &mut Ctx<Member>, token: Token) {
        // Everything queued for it is written: a member that was behind has caught up.
        let Some(Standing::Behind { skipped }) = ctx.state(token).map(|m| m.standing) else {
            return;
        };
        if let Some(member) = ctx.state_mut(token) {
            member.standing = Standing::KeepingUp;
        }
        ctx.clear_deadline(token);
        self.tell(
            ctx,
            token,
            &format!("you missed {skipped} lines (reading too slowly)"),
        );
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<Member>, token: Token) {
        // Set only while a member is behind or leaving: it did not read in time.
        ctx.close(token, CloseReason::QueueOverflow);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Member>, key: u64) {
        if key == TICK {
            let line = format!("* tick: {} here, up {} s\n", ctx.len(), ctx.now() / 1000);
            self.broadcast(ctx, None, line.as_bytes());
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<Member>, _: Token, closed: Closed<Member>) {
        info!(
            "{} ({}) left: {}",
            closed.state.nick, closed.peer, closed.reason
        );
        let why = match closed.reason {
            CloseReason::PeerClosed => "disconnected",
            CloseReason::Done => "quit",
            CloseReason::IdleTimeout => "idle",
            CloseReason::QueueOverflow => "too slow",
            CloseReason::InputTooLarge => "line too long",
            CloseReason::Error(_) => "connection error",
            _ => "closed",
        };
        if !self.shutting_down {
            let line = format!("* {} left ({why})\n", closed.state.nick);
            self.broadcast(ctx, None, line.as_bytes());
        }
    }

    fn on_signal(&mut self, ctx: &mut Ctx<Member>, _signal: i32) -> SignalAction {
        // Only SIGINT and SIGTERM are registered (`handle_signals`): shut down.
        if !self.shutting_down {
            self.shutting_down = true;
            self.broadcast(ctx, None, b"* the server is shutting down\n");
        }
        SignalAction::Shutdown
    }
}

/// Whether a member (still open) goes by this nickname.
fn nick_taken(ctx: &Ctx<Member>, nick: &str) -> bool {
    ctx.iter().any(|(_, member)| member.nick == nick)
}

/// What the command line asks for.
struct Options {
    /// Where to listen.
    addr: SocketAddr,
    /// Silence after which a client is kicked (the loop's idle timeout).
    kick_after: Duration,
    /// Period of the tick line.
    tick: Duration,
    /// The watermark: a member with more queued than this is skipped.
    max_queue: usize,
    /// How long a member that fell behind (or is leaving) has to read what it owes.
    slow_grace: Duration,
}

const USAGE: &str = "usage: chat [ADDR] [--kick-after SECS] [--tick SECS] \
                     [--max-queue BYTES] [--slow-grace SECS]";

impl Options {
    /// Parse `std::env::args` (plain, to keep the example free of a parser crate).
    fn parse() -> Result<Options, String> {
        let mut opts = Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            kick_after: Duration::from_secs(30),
            tick: Duration::from_secs(5),
            max_queue: 1024 * 1024,
            slow_grace: Duration::from_secs(10),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--kick-after" => opts.kick_after = secs(&arg, &value()?)?,
                "--tick" => opts.tick = secs(&arg, &value()?)?,
                "--slow-grace" => opts.slow_grace = secs(&arg, &value()?)?,
                "--max-queue" => {
                    let text = value()?;
                    opts.max_queue = match text.parse() {
                        Ok(n) if n > 0 => n,
                        _ => return Err(format!("--max-queue: not a byte count > 0: {text}")),
                    };
                }
                _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
                _ => {
                    opts.addr = arg
                        .parse()
                        .map_err(|_| format!("not an address like 127.0.0.1:7000: {arg}"))?;
                }
            }
        }
        Ok(opts)
    }
}

/// Seconds (fractions allowed) as a `Duration`, for option `name`.
fn secs(name: &str, text: &str) -> Result<Duration, String> {
    match text.parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(d)) if !d.is_zero() => Ok(d),
        _ => Err(format!("{name}: not a number of seconds > 0: {text}")),
    }
}

fn main() -> ExitCode {
    env_logger::init(); // quiet unless RUST_LOG is set
    let opts = match Options::parse() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("chat: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(opts: Options) -> io::Result<()> {
    let config = LoopConfig {
        idle_timeout: Some(opts.kick_after),
        idle_counts: IdleCounts::Input, // what a client sends counts, not what it is sent
        max_queue: opts.max_queue,
        // Never reached while `deliver` skips members over the watermark; it is what
        // bounds a member's queue if a handler does not look at `send`'s answer.
        max_queue_hard: 4 * opts.max_queue,
        max_read_buf: MAX_LINE,
        ..LoopConfig::default()
    };
    let mut event_loop = EventLoop::new(config)?;
    // Before announcing readiness, so a SIGTERM right after it is already graceful.
    event_loop.handle_signals()?;
    let listener = bind_tcp(opts.addr, TcpOptions::default())?;
    if let Some(local) = listener.local_addr() {
        let mut out = io::stdout().lock();
        let (ip, port) = (local.ip(), local.port());
        writeln!(out, "listening on tcp {local}  (try: nc {ip} {port})")?;
        out.flush()?;
    }
    event_loop.add_listener(listener)?;
    event_loop.ctx().timer_every(opts.tick, TICK);
    event_loop.run(&mut Chat {
        opts,
        last_guest: 0,
        shutting_down: false,
    })
}
