//! `netloop client`: its command line.
//!
//! `Args` is the `clap` struct (the address, or `--unix PATH`; `--udp`; `--wait SECS`
//! through the shared `args::secs` parser); `run` turns it into the library's plain
//! `netloop::apps::client::ClientOptions` and runs the client.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use netloop::apps::client::{client, ClientOptions, ClientTarget};

use super::args::secs;

/// Options of `netloop client`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Server address, HOST:PORT (not needed with --unix).
    #[arg(value_name = "ADDR", required_unless_present = "unix")]
    pub addr: Option<String>,
    /// Talk UDP: one datagram per line.
    #[arg(long)]
    pub udp: bool,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "udp"])]
    pub unix: Option<PathBuf>,
    /// After input ends, exit when no reply came for this many seconds.
    #[arg(long, default_value = "2", value_name = "SECS", value_parser = secs)]
    pub wait: Duration,
}

/// Run `netloop client`.
pub fn run(args: &Args) -> io::Result<()> {
    let target = match (&args.unix, &args.addr) {
        (Some(path), _) => ClientTarget::Unix(path.clone()),
        (None, Some(addr)) if args.udp => ClientTarget::Udp(addr.clone()),
        (None, Some(addr)) => ClientTarget::Tcp(addr.clone()),
        // clap requires ADDR unless --unix is given; say so if that ever changes.
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "give the server's ADDR (HOST:PORT) or --unix PATH",
            ))
        }
    };
    client(&ClientOptions {
        target,
        wait: args.wait,
    })
}
