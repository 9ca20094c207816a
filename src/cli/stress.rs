//! `netloop stress`: its command line.
//!
//! (Transitional: the `clap` struct still lives in `netloop::apps::stress`.)

use std::io;

/// Options of `netloop stress`.
pub use netloop::apps::stress::StressArgs as Args;

/// Run `netloop stress`.
pub fn run(args: &Args) -> io::Result<()> {
    netloop::apps::stress::stress(args)
}
