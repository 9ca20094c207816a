//! `netloop fetch`: its command line.
//!
//! (Transitional: the `clap` struct still lives in `netloop::apps::fetch`.)

use std::io;

/// Options of `netloop fetch`.
pub use netloop::apps::fetch::FetchArgs as Args;

/// Run `netloop fetch`.
pub fn run(args: &Args) -> io::Result<()> {
    netloop::apps::fetch::fetch(args)
}
