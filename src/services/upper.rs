//! Upper: every byte back ASCII-upper-cased, like Python's `bytes.upper()`.
//!
//! Seeds 002 and 004 answer `conn.send(data.upper())`. `bytes.upper()` changes only the
//! ASCII letters a-z, leaving every other byte (UTF-8 included) as it is, which is
//! exactly `make_ascii_uppercase`. The transform is done in place in the loop's read
//! buffer, so upper costs no copy.

use std::net::SocketAddr;

use mio::Token;

use crate::core::Ctx;
use crate::core::Handler;

/// The upper-case service.
#[derive(Debug, Default)]
pub struct Upper;

impl Handler for Upper {
    type State = ();

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        data.make_ascii_uppercase();
        ctx.send(token, data);
        data.len()
    }

    fn on_datagram(&mut self, ctx: &mut Ctx<()>, port: usize, from: SocketAddr, data: &mut [u8]) {
        data.make_ascii_uppercase();
        ctx.send_datagram(port, from, &[data]);
    }
}
