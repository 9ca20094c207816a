//! `Session`: the client's handler — standard input on one token, the server on another
//! (or a UDP port) — and the rules that end a session, with the message that says how.
//!
//! Replies are printed off the loop (`printer.rs`). When the printer is behind, the
//! session stops reading the server (and standard input); flow control does the rest:
//! the server's replies wait in the kernel, the server stops reading us, and our queue
//! to it grows — so standard input is paused too while more than `MAX_INPUT_QUEUED`
//! bytes wait for the server (until `on_drained`). That limit is kept under the loop's
//! watermark (`LoopConfig::max_queue`) on purpose: past the watermark the loop stops
//! reading the *server* — right for an echo service, whose reading is what makes its
//! output, but a hazard for a client, whose reading of the replies is what lets the
//! server send them and so go on reading our input. Memory stays flat however much
//! flows through, and nothing is lost: the client stops only once every reply it
//! received is written.
//!
//! Every deadline is a loop timer, keyed: `CONNECT` (the connect must complete), `IDLE`
//! (checks the time of the last activity, so traffic costs no timer operations), and one
//! more at a time: `STALLED` while input waits in our queue and no more is coming for
//! now (input ended, or standard input is paused for the server) — the server must read
//! some of it every `stall_timeout`, or the client would wait for ever — and, once all
//! input is sent after it ended, `QUIET` (re-armed by every reply) or `QUIT` (nc's `-q`,
//! armed once). While the printer is behind we do not read, so the server's silence
//! says nothing: no `QUIET` or `STALLED` timer then.

use std::net::SocketAddr;
use std::time::Duration;

use mio::Token;

use super::printer::Printer;
use super::tally::{secs, Tally};
use super::{AfterInput, ClientOptions, MAX_INPUT_QUEUED};
use crate::core::{CloseReason, Closed, Ctx, Handler, Millis, TimerId};

/// Loop timer keys.
const CONNECT: u64 = 1;
const IDLE: u64 = 2;
const QUIET: u64 = 3;
const QUIT: u64 = 4;
const STALLED: u64 = 5;

/// The client's handler.
pub(super) struct Session {
    /// Standard input's end of the socket pair.
    stdin: Token,
    /// The server connection (TCP or Unix).
    pub server: Option<Token>,
    /// With UDP: our port number and the server's address.
    pub udp: Option<(usize, SocketAddr)>,
    /// What messages call the server, and the counts of what went each way.
    tally: Tally,
    /// The timeouts and switches the client was given.
    opts: ClientOptions,
    /// The connect completed (always true for UDP, which has none).
    connected: bool,
    /// An incomplete input line (UDP sends whole lines only).
    partial: Vec<u8>,
    input_done: bool,
    /// The one timer after input ended, and its key.
    after: Option<(TimerId, u64)>,
    /// The `QUIT` timer was armed (it is never re-armed).
    quit_armed: bool,
    /// Bytes queued for the server when the `STALLED` timer was armed.
    stall_queued: usize,
    connect_timer: Option<TimerId>,
    idle_timer: Option<TimerId>,
    /// Loop time of the last byte read, sent or printed (for the idle timeout).
    last_activity: Millis,
    /// Why the run failed, once it has.
    pub failed: Option<String>,
    /// Replies and `-v` lines, written off the loop.
    printer: Printer,
    /// Standard input paused because the server's queue is over `MAX_INPUT_QUEUED`.
    server_behind: bool,
    /// The session is over: stop as soon as everything received is printed.
    ending: bool,
}

impl Session {
    pub fn new(opts: &ClientOptions, name: String, stdin: Token, printer: Printer) -> Session {
        Session {
            stdin,
            server: None,
            udp: None,
            tally: Tally {
                name,
                ..Tally::default()
            },
            opts: opts.clone(),
            connected: false,
            partial: Vec::new(),
            input_done: false,
            after: None,
            quit_armed: false,
            stall_queued: 0,
            connect_timer: None,
            idle_timer: None,
            last_activity: 0,
            failed: None,
            printer,
            server_behind: false,
            ending: false,
        }
    }

    /// Arm the connect and idle timers (the server or UDP port is set up by now).
    pub fn start(&mut self, ctx: &mut Ctx<()>) {
        match self.server {
            Some(_) => {
                self.connect_timer = Some(ctx.timer_after(self.opts.connect_timeout, CONNECT))
            }
            None => {
                self.connected = true;
                self.tally.datagrams = true;
                if self.opts.verbose {
                    self.printer
                        .say(format!("sending datagrams to {}", self.tally.name));
                }
            }
        }
        self.last_activity = ctx.now();
        if let Some(idle) = self.opts.idle_timeout {
            self.idle_timer = Some(ctx.timer_after(idle, IDLE));
        }
    }

    /// Hand reply bytes to the printer; pause reading if it is too far behind.
    fn print(&mut self, ctx: &mut Ctx<()>, bytes: &[u8], newline: bool) {
        if self.printer.reply(bytes, newline) {
            self.update_reading(ctx);
        }
        self.schedule_end(ctx);
    }

    /// Pause or resume the server and standard input to match who is behind.
    fn update_reading(&mut self, ctx: &mut Ctx<()>) {
        log::debug!(
            "printer behind: {} ({} bytes unprinted), server behind: {} ({} bytes queued)",
            self.printer.behind(),
            self.printer.unprinted(),
            self.server_behind,
            self.server.map_or(0, |s| ctx.queued(s))
        );
        if let Some(server) = self.server {
            match self.printer.behind() {
                true => ctx.pause_reading(server),
                false => ctx.resume_reading(server),
            }
        }
        match self.printer.behind() || self.server_behind {
            true => ctx.pause_reading(self.stdin),
            false => ctx.resume_reading(self.stdin),
        }
        self.schedule_end(ctx);
    }

    fn cancel_after(&mut self, ctx: &mut Ctx<()>) {
        if let Some((id, _)) = self.after.take() {
            ctx.cancel_timer(id);
        }
    }

    /// Arm the timer that ends the session for the phase it is in (see the module
    /// docs). Called whenever that phase may have changed.
    fn schedule_end(&mut self, ctx: &mut Ctx<()>) {
        if self.ending || self.quit_armed || !self.connected {
            return; // before the connect completes, the `CONNECT` timer rules
        }
        if self.printer.behind() {
            return self.cancel_after(ctx);
        }
        let queued = self.server.map_or(0, |s| ctx.queued(s));
        // Input waits for the server and no more is coming for now: it must be read.
        if queued > 0 && (self.input_done || self.server_behind) {
            if !matches!(self.after, Some((_, STALLED))) {
                self.cancel_after(ctx);
                self.stall_queued = queued;
                self.after = Some((ctx.timer_after(self.opts.stall_timeout, STALLED), STALLED));
            }
            return;
        }
        self.cancel_after(ctx);
        if !self.input_done {
            return;
        }
        self.after = Some(match self.opts.after_input {
            AfterInput::Quiet(d) => (ctx.timer_after(d, QUIET), QUIET),
            AfterInput::Quit(d) => {
                self.quit_armed = true;
                (ctx.timer_after(d, QUIT), QUIT)
            }
        });
    }

    /// The session is over (`how` says why, for `-v` and errors; `unsent` bytes of input
    /// never left): decide whether it did what was asked, and stop once every reply
    /// received is printed.
    fn end(&mut self, ctx: &mut Ctx<()>, how: &str, unsent: usize) {
        if self.ending {
            return;
        }
        self.cancel_after(ctx);
        self.ending = true;
        for id in [self.connect_timer.take(), self.idle_timer.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_timer(id);
        }
        if self.opts.verbose {
            let line = self.tally.summary(how, unsent);
            self.printer.say(line);
        }
        if self.failed.is_none() {
            self.failed = self.tally.failure(how, unsent);
        }
        if self.printer.done() {
            ctx.stop();
        }
    }

    fn send_line(&mut self, ctx: &mut Ctx<()>, line: &[u8]) {
        if let Some((port, to)) = self.udp {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            ctx.send_datagram(port, to, &[line]);
            self.tally.sent += 1;
        }
    }

    /// The `IDLE` timer: end the session if nothing happened for the idle timeout, else
    /// look again when it would have passed.
    fn check_idle(&mut self, ctx: &mut Ctx<()>) {
        self.idle_timer = None;
        let Some(idle) = self.opts.idle_timeout else {
            return;
        };
        let quiet_for = Duration::from_millis(ctx.now().saturating_sub(self.last_activity));
        // While the printer is behind, we are the slow side: that is not idleness.
        let left = match self.printer.behind() {
            true => idle,
            false => idle.saturating_sub(quiet_for),
        };
        if left.is_zero() {
            let unsent = self.server.map_or(0, |s| ctx.queued(s));
            let how = format!("nothing sent or received for {} (idle timeout)", secs(idle));
            return self.end(ctx, &how, unsent);
        }
        self.idle_timer = Some(ctx.timer_after(left, IDLE));
    }
}

impl Handler for Session {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if Some(token) != self.server {
            return;
        }
        self.connected = true;
        if let Some(id) = self.connect_timer.take() {
            ctx.cancel_timer(id);
        }
        if self.opts.verbose {
            self.printer
                .say(format!("connected to {}", self.tally.name));
        }
        self.schedule_end(ctx);
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        self.last_activity = ctx.now();
        if token != self.stdin {
            self.tally.received += data.len() as u64;
            self.print(ctx, data, false);
            return data.len();
        }
        if let Some(server) = self.server {
            ctx.send(server, data);
            self.tally.sent += data.len() as u64;
            if ctx.queued(server) > MAX_INPUT_QUEUED && !self.server_behind {
                // The server does not keep up: stop reading more input for it.
                self.server_behind = true;
                self.update_reading(ctx);
            }
            return data.len();
        }
        self.partial.extend_from_slice(data);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(i + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            lines.push(line);
        }
        for line in lines {
            self.send_line(ctx, &line);
        }
        data.len()
    }

    fn on_drained(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if Some(token) != self.server {
            return;
        }
        if self.server_behind {
            self.server_behind = false;
            self.update_reading(ctx);
        }
        // All input is out: no more STALLED; after input ended, wait for replies.
        self.schedule_end(ctx);
    }

    fn on_eof(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if token != self.stdin {
            // The server is done: send what is still queued, then close.
            ctx.close_when_flushed(token);
            return;
        }
        self.input_done = true;
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.send_line(ctx, &line);
        }
        if let (Some(server), true) = (self.server, self.opts.shutdown) {
            // Tell the server we are done (it reads EOF), but keep reading its replies.
            ctx.shutdown_write_when_flushed(server);
        }
        self.schedule_end(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<()>, key: u64) {
        match key {
            CONNECT => {
                self.connect_timer = None;
                let Some(server) = self.server.filter(|_| !self.connected) else {
                    return;
                };
                self.failed = Some(format!(
                    "no connection to {} within {} (the server does not answer: it may be \
                     down, too busy to accept — its backlog full — or filtered; -w SECS \
                     waits longer)",
                    self.tally.name,
                    secs(self.opts.connect_timeout)
                ));
                ctx.close(server, CloseReason::Timeout);
            }
            IDLE => self.check_idle(ctx),
            QUIET | QUIT => {
                self.after = None;
                let how = match self.opts.after_input {
                    AfterInput::Quiet(d) if self.tally.received == 0 => {
                        format!("none for {} after input ended (--wait)", secs(d))
                    }
                    AfterInput::Quiet(d) => format!("no more replies for {} (--wait)", secs(d)),
                    AfterInput::Quit(d) => format!("quit {} after input ended (-q)", secs(d)),
                };
                self.end(ctx, &how, 0);
            }
            STALLED => {
                self.after = None;
                let queued = self.server.map_or(0, |s| ctx.queued(s));
                if queued > 0 && queued < self.stall_queued {
                    // It is reading, slowly: keep waiting.
                    self.stall_queued = queued;
                    let id = ctx.timer_after(self.opts.stall_timeout, STALLED);
                    self.after = Some((id, STALLED));
                    return;
                }
                if queued == 0 {
                    return self.schedule_end(ctx);
                }
                let how = format!(
                    "the server read none of it for {}",
                    secs(self.opts.stall_timeout)
                );
                self.end(ctx, &how, queued);
            }
            _ => {}
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, token: Token, closed: Closed<()>) {
        if Some(token) != self.server {
            return;
        }
        let how = match &closed.reason {
            CloseReason::ConnectFailed(e) => {
                self.failed
                    .get_or_insert_with(|| format!("cannot connect to {}: {e}", self.tally.name));
                "connect failed".to_string()
            }
            CloseReason::Error(e) => {
                self.failed.get_or_insert_with(|| {
                    format!("connection to {} failed: {e}", self.tally.name)
                });
                format!("connection failed: {e}")
            }
            CloseReason::Timeout if !self.connected => "connect timed out".to_string(),
            CloseReason::PeerClosed => "closed by the server".to_string(),
            other => format!("closed ({other})"),
        };
        self.end(ctx, &how, closed.unsent);
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, _port: usize, _from: SocketAddr, data: &mut [u8]) {
        self.last_activity = ctx.now();
        self.tally.received += 1;
        self.print(ctx, data, true);
    }

    /// The printer wrote something (or could not).
    fn on_wake(&mut self, ctx: &mut Ctx<()>) {
        let progress = match self.printer.collect() {
            Ok(progress) => progress,
            Err(e) => {
                // stdout closed (e.g. piped into `head`): nothing left to do.
                self.failed.get_or_insert(e);
                return ctx.stop();
            }
        };
        if progress.wrote {
            self.last_activity = ctx.now();
        }
        if progress.caught_up {
            self.update_reading(ctx);
        }
        if self.ending && self.printer.done() {
            ctx.stop();
        }
    }
}
