//! `netloop client`: its command line.
//!
//! (Transitional: the `clap` struct still lives in `netloop::apps::client`.)

use std::io;

/// Options of `netloop client`.
pub use netloop::apps::client::ClientArgs as Args;

/// Run `netloop client`.
pub fn run(args: &Args) -> io::Result<()> {
    netloop::apps::client::client(args)
}
