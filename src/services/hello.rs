//! Hello: `Welcome!` on connect, `Hello, <msg>!` for each message, `exit` closes.
//!
//! Seed 003's server greets, then answers each `recv` with `Hello, %s!` until it reads
//! `exit`. Its classic client sends `b'Michael'` with no newline and waits for the reply,
//! while a person at `nc` types lines. Both work here: a message ends at `\n` (a `\r`
//! before it is dropped), and bytes left without a `\n` at the end of a read are a
//! message too. Replies keep the caller's style: a line gets a line back (`...!\n`), a
//! bare message gets a bare reply. The greeting is `Welcome!\n`.

use std::net::SocketAddr;

use mio::Token;

use crate::event_loop::Conns;
use crate::handler::Handler;

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
}

impl Hello {
    /// Answer every message in `data` into `self.reply`.
    fn answer(&mut self, data: &[u8]) -> After {
        self.reply.clear();
        let mut rest = data;
        while !rest.is_empty() {
            let (message, newline, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            let message = message.strip_suffix(b"\r").unwrap_or(message);
            if message == b"exit" {
                return After::Close;
            }
            self.reply.extend_from_slice(b"Hello, ");
            self.reply.extend_from_slice(message);
            self.reply.extend_from_slice(b"!");
            if newline {
                self.reply.push(b'\n');
            }
            rest = next;
        }
        After::KeepOpen
    }
}

impl Handler for Hello {
    type State = ();

    fn on_open(&mut self, conns: &mut Conns<()>, token: Token) {
        conns.send(token, b"Welcome!\n");
    }

    fn on_data(&mut self, conns: &mut Conns<()>, token: Token, data: &mut [u8]) -> usize {
        let after = self.answer(data);
        conns.send(token, &self.reply);
        if after == After::Close {
            conns.close_when_flushed(token);
        }
        data.len()
    }

    fn on_datagram(
        &mut self,
        conns: &mut Conns<()>,
        port: usize,
        from: SocketAddr,
        data: &mut [u8],
    ) {
        // Over UDP there is no connection to close, so `exit` gets no reply.
        if self.answer(data) == After::KeepOpen {
            conns.send_datagram(port, from, &[&self.reply]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(data: &[u8]) -> (Vec<u8>, After) {
        let mut h = Hello::default();
        let after = h.answer(data);
        (h.reply, after)
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
    fn exit_stops_after_earlier_replies() {
        assert_eq!(
            reply(b"a\nexit\nb\n"),
            (b"Hello, a!\n".to_vec(), After::Close)
        );
        assert_eq!(reply(b"exit").1, After::Close);
    }
}
