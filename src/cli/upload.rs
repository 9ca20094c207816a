//! `netloop upload`: its command line, turned into the client's `ClientOptions`.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use netloop::apps::client::resolve_addr;
use netloop::apps::upload::{upload, ClientOptions};
use netloop::core::Target;

use super::args::secs;

/// Options of `netloop upload`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Files to send, in order, on one connection.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Server address, HOST:PORT (required unless --unix is given).
    #[arg(long, value_name = "ADDR", required_unless_present = "unix")]
    pub to: Option<String>,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with = "to")]
    pub unix: Option<PathBuf>,
    /// Answer the server's HMAC challenge with the secret in this file (its bytes, one
    /// trailing newline removed, as the server reads it).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Give up when nothing was sent or received for this many seconds.
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = secs)]
    pub timeout: Duration,
    /// Bytes read from disk and sent at a time (about four of these are in memory).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub chunk: usize,
}

/// Run `netloop upload`.
pub fn run(args: &Args) -> io::Result<()> {
    let (target, target_name) = match (&args.unix, &args.to) {
        (Some(path), _) => (Target::Unix(path.clone()), path.display().to_string()),
        (None, Some(text)) => (Target::Tcp(resolve_addr(text)?), text.clone()),
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--to ADDR or --unix PATH",
            ))
        }
    };
    upload(&ClientOptions {
        files: args.files.clone(),
        target,
        target_name,
        secret_file: args.secret_file.clone(),
        timeout: args.timeout,
        chunk: args.chunk,
    })
}
