//! `netloop exec`: the client of `serve exec`, seed 004's command client on the loop.
//!
//! Seed 004's client loops over `input('>>>:')`, `send`, `recv(4)`, `struct.unpack`,
//! `recv(dict_size)`, then `recv(1024)` until `file_size` bytes came, and prints them.
//! This client speaks the same wire format (`services::exec::reply`), in two modes:
//!
//! - **one command**: `netloop exec ADDR -- PROGRAM ARGS...` sends the words, each
//!   quoted for the server's shell-style splitting (so `a;b` or `$(id)` arrive as text),
//!   prints the command's stdout on stdout and its stderr on stderr, and exits with its
//!   exit status (124 if it timed out, 126 if refused, 128+N if signal N killed it);
//! - **interactive**: without a command, each line of standard input is one command, as
//!   in the seed; replies are printed in order; the exit status is the last command's.
//!
//! With `--secret-file` it first answers the server's HMAC challenge (`proto::hmac_auth`)
//! and holds commands back until it has. Standard input reaches the loop through a
//! socket pair fed by a helper thread (a terminal cannot always be registered with
//! epoll), as in `netloop client`.
//!
//! The reply is never held whole: body bytes are written out as they arrive, split into
//! stdout and stderr by the header's `stdout_size`.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use mio::Token;

use crate::core::{CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Peer, Stream, Target};
use crate::proto::frames::{self, FrameError};
use crate::proto::hmac_auth::{Secret, CHALLENGE_LEN};
use crate::services::exec::reply::{ReplyHeader, MAX_HEADER};

/// What `netloop exec` was asked to do.
#[derive(Clone, Debug)]
pub struct ExecClientOptions {
    /// Where the server is.
    pub target: Target,
    /// The address as the user wrote it, for messages.
    pub target_name: String,
    /// One command (program and arguments); `None`: lines from standard input.
    pub command: Option<Vec<String>>,
    /// The secret for the server's challenge.
    pub secret: Option<Secret>,
    /// Give up when the server sends nothing for this long while a reply is awaited.
    pub timeout: Duration,
}

/// A reply being received.
struct Incoming {
    header: ReplyHeader,
    /// Body bytes still to come: stdout first, then stderr.
    stdout_left: u64,
    stderr_left: u64,
}

/// The client's handler.
struct ExecClient {
    server: Token,
    stdin: Option<Token>,
    secret: Option<Secret>,
    /// The server's challenge has not been answered yet.
    challenge_pending: bool,
    /// Command lines held back until the challenge is answered.
    held: VecDeque<Vec<u8>>,
    /// An unfinished line of standard input.
    partial: Vec<u8>,
    /// Commands sent whose replies have not all arrived.
    outstanding: usize,
    incoming: Option<Incoming>,
    /// The exit status to end with: the last reply's.
    status: u8,
    input_done: bool,
    one_shot: bool,
    /// Standard input is a terminal: show a prompt, as the seed's `input('>>>:')`.
    prompt: bool,
    timeout: Duration,
    target_name: String,
    failure: Option<String>,
}

impl ExecClient {
    fn fail(&mut self, ctx: &mut Ctx<()>, message: String) {
        self.failure.get_or_insert(message);
        ctx.close(self.server, CloseReason::Done);
        ctx.stop();
    }

    /// Send a command line now, or hold it until the challenge is answered.
    fn submit(&mut self, ctx: &mut Ctx<()>, mut line: Vec<u8>) {
        line.push(b'\n');
        self.outstanding += 1;
        if self.challenge_pending {
            self.held.push_back(line);
        } else {
            ctx.send(self.server, &line);
        }
        ctx.set_deadline(self.server, self.timeout);
    }

    fn show_prompt(&self) {
        if self.prompt && !self.input_done && self.outstanding == 0 {
            eprint!("exec> ");
        }
    }

    /// Replies in `data`; returns the bytes used.
    fn replies(&mut self, ctx: &mut Ctx<()>, data: &[u8]) -> usize {
        let mut used = 0;
        loop {
            if let Some(incoming) = self.incoming.as_mut() {
                let rest = &data[used..];
                let to_out = rest.len().min(incoming.stdout_left as usize);
                let to_err = (rest.len() - to_out).min(incoming.stderr_left as usize);
                incoming.stdout_left -= to_out as u64;
                incoming.stderr_left -= to_err as u64;
                let done = incoming.stdout_left == 0 && incoming.stderr_left == 0;
                let written = write_all(&mut io::stdout().lock(), &rest[..to_out]).and_then(|()| {
                    write_all(&mut io::stderr().lock(), &rest[to_out..to_out + to_err])
                });
                if let Err(e) = written {
                    self.fail(ctx, format!("writing the output: {e}"));
                    return data.len();
                }
                used += to_out + to_err;
                if !done {
                    return used;
                }
                if let Some(incoming) = self.incoming.take() {
                    self.reply_done(ctx, &incoming.header);
                }
                if ctx.is_open(self.server) {
                    continue;
                }
                return data.len();
            }
            if used == data.len() {
                return used;
            }
            match frames::decode_object(&data[used..], MAX_HEADER) {
                Err(FrameError::Incomplete) => return used,
                Err(FrameError::Invalid(e)) => {
                    let hint = if self.secret.is_none() {
                        " (if the server requires authentication, pass --secret-file)"
                    } else {
                        ""
                    };
                    self.fail(ctx, format!("{}: bad reply: {e}{hint}", self.target_name));
                    return data.len();
                }
                Ok((obj, n)) => {
                    used += n;
                    match ReplyHeader::from_object(&obj) {
                        Ok(header) => {
                            self.incoming = Some(Incoming {
                                stdout_left: header.stdout_size,
                                stderr_left: header.stderr_size,
                                header,
                            });
                        }
                        Err(e) => {
                            self.fail(ctx, format!("{}: bad reply: {e}", self.target_name));
                            return data.len();
                        }
                    }
                }
            }
        }
    }

    /// A whole reply arrived.
    fn reply_done(&mut self, ctx: &mut Ctx<()>, header: &ReplyHeader) {
        let _ = io::stdout().flush();
        self.outstanding = self.outstanding.saturating_sub(1);
        self.status = header.shell_status();
        if header.timed_out {
            eprintln!("netloop exec: the command ran past the server's --timeout and was killed");
        }
        if header.truncated {
            eprintln!(
                "netloop exec: output truncated at {} bytes (the server's --max-output); the \
                 command was killed",
                header.file_size
            );
        }
        if self.outstanding == 0 {
            ctx.clear_deadline(self.server);
            if self.one_shot || self.input_done {
                ctx.close(self.server, CloseReason::Done);
                ctx.stop();
                return;
            }
        }
        self.show_prompt();
    }

    /// Lines of standard input, each a command (empty lines are skipped, as the seed's
    /// `if len(msg) == 0: continue`).
    fn input(&mut self, ctx: &mut Ctx<()>, data: &[u8]) {
        self.partial.extend_from_slice(data);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                self.show_prompt();
                continue;
            }
            self.submit(ctx, line);
        }
    }
}

fn write_all(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    out.write_all(bytes)
}

impl Handler for ExecClient {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if token == self.server && self.challenge_pending {
            // A server without authentication never sends one: do not wait forever.
            ctx.set_deadline(token, self.timeout);
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        if Some(token) == self.stdin {
            self.input(ctx, data);
            return data.len();
        }
        let mut used = 0;
        if self.challenge_pending {
            let Some(challenge) = data.get(..CHALLENGE_LEN) else {
                return 0;
            };
            let Some(secret) = &self.secret else {
                return data.len();
            };
            let answer = secret.answer(challenge);
            ctx.send(token, &answer);
            self.challenge_pending = false;
            for line in std::mem::take(&mut self.held) {
                ctx.send(token, &line);
            }
            if self.outstanding == 0 {
                ctx.clear_deadline(token);
            }
            used = CHALLENGE_LEN;
        } else if self.outstanding > 0 {
            ctx.set_deadline(token, self.timeout); // progress: the time starts anew
        }
        used + self.replies(ctx, &data[used..])
    }

    fn on_eof(&mut self, ctx: &mut Ctx<()>, token: Token) {
        if Some(token) == self.stdin {
            self.input_done = true;
            // A last line without its newline is a line all the same.
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.submit(ctx, line);
            }
            if self.outstanding == 0 {
                ctx.close(self.server, CloseReason::Done);
                ctx.stop();
            }
            return;
        }
        if self.outstanding > 0 || self.incoming.is_some() {
            let what = if self.challenge_pending {
                "before its challenge was answered (wrong --secret-file?)"
            } else {
                "before the reply was complete"
            };
            self.fail(
                ctx,
                format!(
                    "{}: the server closed the connection {what}",
                    self.target_name
                ),
            );
        } else {
            ctx.stop();
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<()>, _token: Token) {
        let what = if self.challenge_pending {
            "no authentication challenge came (is authentication off on the server? then \
             leave out --secret-file)"
        } else {
            "no reply came"
        };
        let secs = self.timeout.as_secs_f64();
        self.fail(ctx, format!("{}: {what} within {secs} s", self.target_name));
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, token: Token, closed: Closed<()>) {
        if token != self.server {
            return;
        }
        match closed.reason {
            CloseReason::ConnectFailed(e) | CloseReason::Error(e) => {
                self.failure
                    .get_or_insert_with(|| format!("{}: {e}", self.target_name));
            }
            _ => {}
        }
        ctx.stop();
    }
}

/// Run the client; returns the exit status to end with (the last command's).
pub fn run(opts: &ExecClientOptions) -> io::Result<u8> {
    let mut line = None;
    if let Some(argv) = &opts.command {
        if argv.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no command given",
            ));
        }
        if let Some(word) = argv.iter().find(|w| w.chars().any(char::is_control)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{word:?} contains a control character, which a command line cannot carry"),
            ));
        }
        // Every word quoted as needed, so the server's splitting gives them back as is.
        line = Some(shell_words::join(argv).into_bytes());
    }
    let mut event_loop: EventLoop<()> = EventLoop::new(LoopConfig::default())?;
    let server = event_loop.ctx().connect(&opts.target, ())?;
    let mut stdin = None;
    if opts.command.is_none() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        std::thread::spawn(move || {
            let mut theirs = theirs;
            // Ends (and closes the pair: EOF on the loop) when standard input ends.
            let _ = io::copy(&mut io::stdin().lock(), &mut theirs);
        });
        let stream = Stream::Unix(mio::net::UnixStream::from_std(ours));
        stdin = Some(event_loop.ctx().add_stream(stream, Peer::Local, ())?);
    }
    let mut client = ExecClient {
        server,
        stdin,
        secret: opts.secret.clone(),
        challenge_pending: opts.secret.is_some(),
        held: VecDeque::new(),
        partial: Vec::new(),
        outstanding: 0,
        incoming: None,
        status: 0,
        input_done: false,
        one_shot: line.is_some(),
        prompt: opts.command.is_none() && io::stdin().is_terminal(),
        timeout: opts.timeout,
        target_name: opts.target_name.clone(),
        failure: None,
    };
    if let Some(line) = line {
        client.submit(event_loop.ctx(), line);
    }
    client.show_prompt();
    event_loop.run(&mut client)?;
    match client.failure {
        Some(message) => Err(io::Error::other(message)),
        None => Ok(client.status),
    }
}
