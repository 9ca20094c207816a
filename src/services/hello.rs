//! Hello: `Welcome!` on connect, `Hello, <msg>!` for each message, `exit` closes.
//!
//! Seed 003's server greets, then answers each `recv` with `Hello, %s!` until it reads
//! `exit`. Its classic client sends `b'Michael'` with no newline and waits for the reply,
//! while a person at `nc` types lines. Both work here, by one rule:
//!
//! - a message ends at `\n` (a `\r` before it is dropped);
//! - bytes without a `\n` are a message too once the socket has run dry (the end of a
//!   read burst, `on_burst_end`) **and nothing more arrived for `BARE_GRACE`** (50 ms).
//!
//! The grace is what keeps a long line whole: a client's 900 KB `sendall` reaches us in
//! many reads, and the socket runs dry between some of them, but the next piece is never
//! 50 ms behind, so the line stays one message (up to the loop's 1 MiB input limit).
//! The price is that a bare `Michael` is answered 50 ms after it arrives. The grace is a
//! per-connection handler deadline (`ctx.set_deadline`), moved on at every burst end.
//! Replies keep the caller's style: a line gets a line back (`...!\n`), a bare message
//! gets a bare reply. The greeting is `Welcome!\n`.

use std::net::SocketAddr;
use std::time::Duration;

use mio::Token;

use crate::core::Ctx;
use crate::core::Handler;

/// Lines answered per connection per pass of the loop: a client that pipelines 100,000
/// lines in one write gets them answered in slices, with everyone else served between
/// (fairness counts work, not bytes; see `Ctx::defer`).
pub const LINES_PER_TURN: usize = 1024;

/// How long bytes without a newline wait for more before they count as a message.
pub const BARE_GRACE: Duration = Duration::from_millis(50);

/// The hello service.
#[derive(Debug, Default)]
pub struct Hello {
    /// Replies for one read, assembled here and sent with one write.
    reply: Vec<u8>,
}

/// What to do after answering a read.
#[derive(Debug, PartialEq, Eq)]
enum After {
    KeepOpen,
    Close,
    /// `LINES_PER_TURN` answered: the rest waits for the next pass (fairness).
    Later,
}

impl Hello {
    /// Answer the messages in `data` into `self.reply`: every complete line, and with
    /// `final_message` also bytes after the last newline. Returns what to do next and
    /// how many bytes were answered.
    fn answer(&mut self, data: &[u8], final_message: bool) -> (After, usize) {
        self.reply.clear();
        let mut used = 0;
        let mut answered = 0;
        while used < data.len() {
            if answered == LINES_PER_TURN {
                return (After::Later, used);
            }
            answered += 1;
            let rest = &data[used..];
            let (message, newline, len) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true, i + 1),
                None if final_message => (rest, false, rest.len()),
                None => break, // an unfinished line: wait for the rest of it
            };
            used += len;
            let message = message.strip_suffix(b"\r").unwrap_or(message);
            if message == b"exit" {
                return (After::Close, data.len());
            }
            self.reply.extend_from_slice(b"Hello, ");
            self.reply.extend_from_slice(message);
            self.reply.extend_from_slice(b"!");
            if newline {
                self.reply.push(b'\n');
            }
        }
        (After::KeepOpen, used)
    }

    /// Answer kept input as one bare message (the peer stopped sending for now).
    fn answer_unfinished(&mut self, ctx: &mut Ctx<()>, token: Token) -> After {
        let rest = ctx.take_unconsumed(token);
        let mut at = 0;
        while at < rest.len() {
            let (after, used) = self.answer(&rest[at..], true);
            ctx.send(token, &self.reply);
            at += used;
            if after == After::Close {
                ctx.close_when_flushed(token);
                return after;
            }
        }
        After::KeepOpen
    }
}

impl Handler for Hello {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, token: Token) {
        ctx.send(token, b"Welcome!\n");
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        let (after, used) = self.answer(data, false);
        ctx.send(token, &self.reply);
        match after {
            After::Close => ctx.close_when_flushed(token),
            After::Later => ctx.defer(token),
            After::KeepOpen => {}
        }
        used
    }

    fn on_burst_end(&mut self, ctx: &mut Ctx<()>, token: Token) {
        let kept = ctx.unconsumed(token);
        // Whole lines left over were deferred (fairness), not unfinished: no grace.
        if kept.is_empty() || kept.contains(&b'\n') {
            ctx.clear_deadline(token);
        } else {
            // Part of a line, and the socket is dry: a message if nothing follows soon.
            ctx.set_deadline(token, BARE_GRACE);
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.answer_unfinished(ctx, token);
    }

    fn on_eof(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.answer_unfinished(ctx, token);
        ctx.close_when_flushed(token);
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, port: usize, from: SocketAddr, data: &mut [u8]) {
        // Over UDP there is no connection to close, so `exit` gets no reply; a datagram
        // gets at most `LINES_PER_TURN` lines answered.
        if self.answer(data, true).0 != After::Close {
            ctx.send_datagram(port, from, &[&self.reply]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(data: &[u8]) -> (Vec<u8>, After) {
        let mut h = Hello::default();
        let (after, _) = h.answer(data, true);
        (h.reply, after)
    }

    #[test]
    fn unfinished_line_waits_unless_final() {
        let mut h = Hello::default();
        assert_eq!(h.answer(b"a\nbc", false), (After::KeepOpen, 2));
        assert_eq!(h.reply, b"Hello, a!\n");
    }

    #[test]
    fn bare_message_gets_bare_reply() {
        assert_eq!(
            reply(b"Michael"),
            (b"Hello, Michael!".to_vec(), After::KeepOpen)
        );
    }

    #[test]
    fn lines_get_lines() {
        assert_eq!(
            reply(b"a\r\nb\nc"),
            (b"Hello, a!\nHello, b!\nHello, c!".to_vec(), After::KeepOpen)
        );
    }

    #[test]
    fn a_pass_answers_at_most_lines_per_turn() {
        let mut h = Hello::default();
        let many = b"x\n".repeat(LINES_PER_TURN + 5);
        let (after, used) = h.answer(&many, false);
        assert_eq!((after, used), (After::Later, 2 * LINES_PER_TURN));
    }

    #[test]
    fn exit_stops_after_earlier_replies() {
        assert_eq!(
            reply(b"a\nexit\nb\n"),
            (b"Hello, a!\n".to_vec(), After::Close)
        );
        assert_eq!(reply(b"exit").1, After::Close);
    }
}
