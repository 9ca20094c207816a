//! Echo: every chunk read goes back unchanged, optionally followed by a suffix.
//!
//! Seed 001's blocking server answers `data + " 我收到了"` for each `recv`; `--suffix`
//! reproduces that. The suffix is sent with the chunk in one `writev`, so a suffix costs
//! no extra system call. Note that it is appended per *chunk read*, not per message the
//! client sent: TCP is a byte stream, so two quick sends may come back as one chunk with
//! one suffix (the "sticky packet" effect the upload framing fixes).

use std::net::SocketAddr;

use mio::Token;

use crate::core::Ctx;
use crate::core::Handler;

/// The echo service.
#[derive(Debug, Default)]
pub struct Echo {
    /// Bytes appended after every chunk (empty: plain echo).
    pub suffix: Vec<u8>,
}

impl Handler for Echo {
    type State = ();

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        if self.suffix.is_empty() {
            ctx.send(token, data);
        } else {
            ctx.send_parts(token, &[data, &self.suffix]);
        }
        data.len()
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, port: usize, from: SocketAddr, data: &mut [u8]) {
        ctx.send_datagram(port, from, &[data, &self.suffix]);
    }
}
