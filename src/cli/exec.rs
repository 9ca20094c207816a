//! `netloop exec`: run a command on a `netloop serve exec` server and pass on its output
//! and exit status (or, without a command, one command per line of standard input).
//!
//! The exit status is the command's own; this program's failures (no connection, a bad
//! reply, no reply within `--timeout`) exit 255, as `ssh` does, so they cannot be taken
//! for a command's status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use netloop::apps::exec::{run as run_client, ExecClientOptions};
use netloop::core::Target;
use netloop::proto::hmac_auth::Secret;

use super::args::{host_port, secs};

/// What `netloop exec` exits with when it, not the command, failed.
const CLIENT_FAILURE: u8 = 255;

/// Options of `netloop exec`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Server address, HOST:PORT (not needed with --unix).
    #[arg(value_name = "ADDR", required_unless_present = "unix", value_parser = host_port)]
    pub addr: Option<std::net::SocketAddr>,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    pub unix: Option<PathBuf>,
    /// Answer the server's HMAC challenge with the secret in this file (its bytes, one
    /// trailing newline removed, as the server reads it).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Give up when the server sends nothing for this many seconds while a reply is due.
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = secs)]
    pub timeout: Duration,
    /// The command, after `--`: PROGRAM ARGS... (each word is sent quoted, so it arrives
    /// as typed). Without it, each line of standard input is a command.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Run `netloop exec`; the exit status is the command's (see the module docs).
pub fn run(args: &Args) -> ExitCode {
    match options(args).and_then(|opts| run_client(&opts)) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("netloop exec: {e}");
            ExitCode::from(CLIENT_FAILURE)
        }
    }
}

fn options(args: &Args) -> std::io::Result<ExecClientOptions> {
    let (target, target_name) = match (&args.unix, args.addr) {
        (Some(path), _) => (Target::Unix(path.clone()), path.display().to_string()),
        (None, Some(addr)) => (Target::Tcp(addr), addr.to_string()),
        (None, None) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "give the server's ADDR or --unix PATH",
            ))
        }
    };
    let secret = args
        .secret_file
        .as_deref()
        .map(Secret::from_file)
        .transpose()?;
    Ok(ExecClientOptions {
        target,
        target_name,
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        secret,
        timeout: args.timeout,
    })
}
