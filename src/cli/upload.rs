//! `netloop upload`: its command line.
//!
//! (Transitional: the `clap` struct still lives in `netloop::apps::upload`.)

use std::io;

/// Options of `netloop upload`.
pub use netloop::apps::upload::UploadArgs as Args;

/// Run `netloop upload`.
pub fn run(args: &Args) -> io::Result<()> {
    netloop::apps::upload::upload(args)
}
