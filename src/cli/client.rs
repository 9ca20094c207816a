//! `netloop client`: its command line.
//!
//! `Args` is the `clap` struct: the address (`HOST:PORT`, checked and resolved by the
//! shared `args::named_host_port`, so a missing port is named as such), or `--unix
//! PATH`; `--udp`; the nc-style options `-w`, `-q`, `-N`, `-v`; `--record`. `run` turns
//! it into the library's plain `netloop::apps::client::ClientOptions` and runs the
//! client. Every SECS option goes through `args::secs` (or `positive_secs`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use netloop::apps::client::{client, AfterInput, ClientOptions, ClientTarget};

use super::args::{at_least_one, named_host_port, positive_secs, secs, NamedAddr};

/// What `netloop client --help` ends with.
const AFTER_HELP: &str = "\
When input ends, the client half-closes the connection (the server reads EOF; nc's -N, \
the default here; --no-shutdown keeps it open, like plain nc), then waits for the input to \
be sent and for replies: until the server closes, or no reply came for --wait SECS, or \
with -q SECS that long passed.

Exit status: 0 when the client connected, sent all of its input, got a reply to it (when \
there was input) and printed every reply; 1 when the connect failed or timed out (-w), \
the connection broke, input could not be sent, input was sent but no reply came, or \
standard output failed: the message says which, naming the address; 2 for a command line \
that cannot be used (an address without a port, a host name that does not resolve...).";

/// Options of `netloop client`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Server address, HOST:PORT, where HOST may be a name (not needed with --unix).
    #[arg(value_name = "ADDR", required_unless_present = "unix",
          value_parser = named_host_port)]
    pub addr: Option<NamedAddr>,
    /// Talk UDP: one datagram per line.
    #[arg(long)]
    pub udp: bool,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "udp"])]
    pub unix: Option<PathBuf>,
    /// Like nc -w: give up a connect after SECS, and end a session in which nothing
    /// was sent or received for SECS (sets --connect-timeout and --idle-timeout).
    #[arg(short = 'w', value_name = "SECS", value_parser = positive_secs,
          conflicts_with_all = ["connect_timeout", "idle_timeout"])]
    pub timeout: Option<Duration>,
    /// Give up a connect that has not completed after SECS [default: 10].
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub connect_timeout: Option<Duration>,
    /// End the session when nothing was sent or received for SECS (0: never)
    /// [default: never].
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub idle_timeout: Option<Duration>,
    /// After input ends, exit when no reply came for this many seconds; and give up
    /// when input waits for a server that has read none of it for this long.
    #[arg(long, default_value = "2", value_name = "SECS", value_parser = positive_secs)]
    pub wait: Duration,
    /// Like nc -q: after input ends (and is sent), quit after SECS, replies or not
    /// (instead of waiting for replies to stop for --wait).
    #[arg(short = 'q', value_name = "SECS", value_parser = secs)]
    pub quit_after: Option<Duration>,
    /// Half-close the connection when input ends, so the server reads EOF (nc's -N;
    /// the default, accepted for nc's scripts).
    #[arg(short = 'N', long = "shutdown")]
    pub shutdown: bool,
    /// Keep the connection open for writing when input ends (plain nc): the server
    /// never reads EOF from us.
    #[arg(long, conflicts_with = "shutdown")]
    pub no_shutdown: bool,
    /// Say on standard error when the connection opens and closes, and why (nc's -v).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Record the loop's events (each turn, connect, read, write, close...) as JSON
    /// lines into this new file, for `netloop timeline` (see NOTES.md).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Most events --record writes.
    #[arg(long, default_value_t = 1_000_000, value_name = "N", value_parser = at_least_one)]
    pub record_limit: usize,
}

/// Run `netloop client`.
pub fn run(args: &Args) -> io::Result<()> {
    let (target, name) = match (&args.unix, &args.addr) {
        (Some(path), _) => (ClientTarget::Unix(path.clone()), None),
        (None, Some(named)) if args.udp => (ClientTarget::Udp(named.addr), Some(&named.text)),
        (None, Some(named)) => (ClientTarget::Tcp(named.addr), Some(&named.text)),
        // clap requires ADDR unless --unix is given; say so if that ever changes.
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "give the server's ADDR (HOST:PORT) or --unix PATH",
            ))
        }
    };
    let mut opts = ClientOptions::new(target);
    opts.name = name.cloned();
    if let Some(d) = args.timeout.or(args.connect_timeout) {
        opts.connect_timeout = d;
    }
    opts.idle_timeout = args.timeout.or(args.idle_timeout.filter(|d| !d.is_zero()));
    opts.after_input = match args.quit_after {
        Some(d) => AfterInput::Quit(d),
        None => AfterInput::Quiet(args.wait),
    };
    opts.stall_timeout = args.wait;
    opts.shutdown = !args.no_shutdown;
    opts.verbose = args.verbose;
    opts.record = args.record.clone();
    opts.record_limit = args.record_limit as u64;
    client(&opts)
}
