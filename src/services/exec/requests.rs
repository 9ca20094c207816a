//! A client's input: the HMAC answer first (unless `--no-auth`), then command lines.
//!
//! A message ends at `\n` (a `\r` before it is dropped) or, as for `hello`, at the end
//! of a read burst when nothing more follows within `hello::BARE_GRACE`: seed 004's
//! client sends `ls` with no newline and waits. The grace is the connection's handler
//! deadline, which the challenge uses before it (the two never overlap).
//!
//! One command of a connection runs at a time. While one waits or runs, or while two
//! replies are owed, the connection's input is **left unconsumed**: the loop keeps it
//! (and offers it again when `replies.rs` calls `Ctx::defer`), so the next line is read
//! only when it can be acted on. The socket itself is still read, so an EOF (the client
//! went away) is seen at once and its command killed; a client that piles up more than
//! the loop's read limit (1 MiB) of commands without waiting is closed by the loop.
//!
//! A line longer than `command::MAX_LINE` is skipped as it arrives (never held whole)
//! and answered with an error once it ends.

use log::{debug, info};
use mio::Token;

use super::command::{self, MAX_LINE};
use super::job::{Job, Phase};
use super::reply::{refusal_body, ReplyHeader};
use super::{Client, Exec, Slot};
use crate::core::{CloseReason, Ctx, Millis, Peer};
use crate::proto::hmac_auth::{self, CHALLENGE_LEN};
use crate::services::hello::BARE_GRACE;

impl Exec {
    /// A new client: send the challenge, if authentication is on.
    pub(super) fn client_opened(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        if self.opts.secret.is_none() {
            return;
        }
        match hmac_auth::challenge() {
            Ok(challenge) => {
                let due = ctx.now() + self.opts.auth_timeout.as_millis() as Millis;
                if let Some(Slot::Client(client)) = ctx.state_mut(token) {
                    client.challenge = Some(Box::new(challenge));
                    client.auth_due = due;
                }
                ctx.send(token, &challenge);
                ctx.set_deadline(token, self.opts.auth_timeout);
            }
            Err(e) => ctx.close(token, CloseReason::Error(e)),
        }
    }

    /// Bytes from a client; returns how many were used (the rest is offered again).
    pub(super) fn client_data(&mut self, ctx: &mut Ctx<Slot>, token: Token, data: &[u8]) -> usize {
        let mut used = 0;
        loop {
            let Some(Slot::Client(client)) = ctx.state_mut(token) else {
                return data.len();
            };
            if client.challenge.is_some() {
                match self.authenticate(ctx, token, &data[used..]) {
                    Some(n) if n > 0 => {
                        used += n;
                        continue;
                    }
                    Some(_) => return used,
                    None => return data.len(),
                }
            }
            if self.stopping || client.ended {
                return data.len();
            }
            if !self.can_accept(client) {
                return used;
            }
            let rest = &data[used..];
            let newline = rest.iter().position(|&b| b == b'\n');
            if let Some(skipped) = client.skipping {
                // The rest of an overlong line: drop it, answer once it ends.
                let Some(end) = newline else {
                    client.skipping = Some(skipped + rest.len());
                    return data.len();
                };
                client.skipping = None;
                used += end + 1;
                self.too_long(ctx, token, skipped + end);
                continue;
            }
            match newline {
                Some(end) => {
                    let line = &rest[..end];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    self.request(ctx, token, line);
                    used += end + 1;
                }
                None if rest.len() > MAX_LINE => {
                    client.skipping = Some(rest.len());
                    return data.len();
                }
                None => return used, // the rest of the line, or the burst's end, follows
            }
        }
    }

    /// The client's socket ran dry: a bare message waits `BARE_GRACE` for more.
    pub(super) fn client_burst_end(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        let pending = !ctx.unconsumed(token).is_empty();
        let Some(Slot::Client(client)) = ctx.state(token) else {
            return;
        };
        if client.challenge.is_some() || !self.can_accept(client) {
            return; // the auth deadline stays; a busy connection's input waits its turn
        }
        if pending || client.skipping.is_some() {
            ctx.set_deadline(token, BARE_GRACE);
        } else {
            ctx.clear_deadline(token);
        }
    }

    /// The client's deadline: the challenge was not answered, or a bare message is
    /// complete.
    pub(super) fn client_deadline(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        let Some(Slot::Client(client)) = ctx.state_mut(token) else {
            return;
        };
        if client.challenge.is_some() {
            client.challenge = None;
            self.refuse_auth(ctx, token, "authentication timed out");
            return;
        }
        if self.stopping || client.ended || !self.can_accept(client) {
            return;
        }
        if let Some(skipped) = client.skipping.take() {
            self.too_long(ctx, token, skipped);
        } else {
            let line = ctx.take_unconsumed(token);
            if !line.is_empty() {
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                self.request(ctx, token, line);
            }
        }
        self.settle(ctx);
    }

    /// Whether the connection's next line can be acted on now.
    pub(super) fn can_accept(&self, client: &Client) -> bool {
        client.jobs.len() < 2
            && client
                .jobs
                .iter()
                .all(|id| matches!(self.jobs.get(id).map(|j| &j.phase), Some(Phase::Done(_))))
    }

    /// One command line: a job that will run, or a refusal; either waits its turn.
    fn request(&mut self, ctx: &mut Ctx<Slot>, token: Token, line: &[u8]) {
        let peer = ctx.peer(token).unwrap_or(Peer::Local);
        let now = ctx.now();
        let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        let job = match command::parse(line).and_then(|argv| {
            let allowed = self.opts.allow.resolve(&argv)?;
            Ok((shell_words::join(&argv), allowed))
        }) {
            Ok((line, allowed)) => {
                debug!("{peer}: queued {line}");
                Job::new(token, peer, line, allowed, now)
            }
            Err(why) => {
                debug!("{peer}: refused {shown:?}: {why}");
                self.counts.refused += 1;
                Job::refused(token, peer, shown, &why, now)
            }
        };
        let id = self.next_job;
        self.next_job += 1;
        if matches!(job.phase, Phase::Waiting(_)) {
            self.waiting.push_back(id);
        }
        self.jobs.insert(id, job);
        if let Some(Slot::Client(client)) = ctx.state_mut(token) {
            client.jobs.push_back(id);
        }
        self.dirty.push(token);
        self.settle(ctx);
    }

    fn too_long(&mut self, ctx: &mut Ctx<Slot>, token: Token, len: usize) {
        let why = format!("the command line is {len} bytes, over the limit of {MAX_LINE}");
        let id = self.next_job;
        self.next_job += 1;
        let peer = ctx.peer(token).unwrap_or(Peer::Local);
        self.counts.refused += 1;
        let job = Job::refused(token, peer, "(too long)".into(), &why, ctx.now());
        self.jobs.insert(id, job);
        if let Some(Slot::Client(client)) = ctx.state_mut(token) {
            client.jobs.push_back(id);
        }
        self.dirty.push(token);
        self.settle(ctx);
    }

    /// Check the 32-byte answer at the start of `data`: `Some(n)` bytes used (0: wait
    /// for more), `None` when the client was refused.
    fn authenticate(&mut self, ctx: &mut Ctx<Slot>, token: Token, data: &[u8]) -> Option<usize> {
        let now = ctx.now();
        let Some(Slot::Client(client)) = ctx.state_mut(token) else {
            return None;
        };
        let challenge = client.challenge.as_deref().copied()?;
        let Some(answer) = data.get(..CHALLENGE_LEN) else {
            // Traffic may have moved the deadline (a bare-message grace never does
            // here, but be exact): the answer is due when it was due.
            let left = client.auth_due.saturating_sub(now);
            ctx.set_deadline(token, std::time::Duration::from_millis(left));
            return Some(0);
        };
        let secret = self.opts.secret.as_ref()?;
        if secret.verify(&challenge, answer) {
            client.challenge = None;
            ctx.clear_deadline(token);
            debug!("{}: authenticated", ctx.peer(token).unwrap_or(Peer::Local));
            Some(CHALLENGE_LEN)
        } else {
            client.challenge = None;
            self.refuse_auth(ctx, token, "authentication failed");
            None
        }
    }

    /// Tell the client why it is refused (a reply like any other), then close.
    fn refuse_auth(&mut self, ctx: &mut Ctx<Slot>, token: Token, why: &str) {
        self.counts.auth_failed += 1;
        let peer = ctx.peer(token).unwrap_or(Peer::Local);
        let now = ctx.now();
        self.auth_warnings
            .warn(now, format_args!("exec: {peer}: {why}"));
        let header = ReplyHeader::refusal(why).encode();
        ctx.send_parts(token, &[&header, &refusal_body(why)]);
        ctx.close_when_flushed(token);
    }

    /// The client sent EOF: it wants nothing more. Its waiting or running command is
    /// killed (seed 004's client, like `netloop exec`, never half-closes before its
    /// reply, so an EOF means it is gone); replies already built are still sent.
    pub(super) fn client_ended(&mut self, ctx: &mut Ctx<Slot>, token: Token) {
        let Some(Slot::Client(client)) = ctx.state_mut(token) else {
            return;
        };
        client.ended = true;
        client.skipping = None;
        let ids: Vec<_> = client.jobs.iter().copied().collect();
        let mut kept = std::collections::VecDeque::new();
        for id in ids {
            if matches!(self.jobs.get(&id).map(|j| &j.phase), Some(Phase::Done(_))) {
                kept.push_back(id);
            } else {
                self.abandon(ctx, id);
            }
        }
        if let Some(Slot::Client(client)) = ctx.state_mut(token) {
            client.jobs = kept;
        }
        self.dirty.push(token);
        self.settle(ctx);
    }

    /// The connection is gone: every job of it is abandoned.
    pub(super) fn client_closed(&mut self, ctx: &mut Ctx<Slot>, client: Client) {
        for id in client.jobs {
            self.abandon(ctx, id);
        }
        self.settle(ctx);
    }

    /// Log the counts since the last line, if anything happened (the per-minute line).
    pub(super) fn report(&mut self) {
        if self.counts != self.reported {
            info!("exec: last 60 s: {}", self.summary(&self.reported.clone()));
            self.reported = self.counts;
        }
    }
}
