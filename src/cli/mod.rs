//! The command line of `netloop`: every `clap` struct, argument checking, and the
//! wiring of library parts into commands. Part of the binary, not the library: nothing
//! in `netloop::` imports it.
//!
//! One file per command, each with its `Args` (the `clap` struct) and `run(&Args)`,
//! which checks the arguments, turns them into the library's options and calls it:
//!
//! - [`serve`]: `netloop serve` (one loop, every transport asked for);
//!   [`serve_workers`]: its `--workers N` form; [`serve_upload`]: the upload
//!   service's options.
//! - [`client`], [`upload`], [`fetch`], [`stress`], [`resolve`], [`timeline`]: the other
//!   commands; [`exec`]: `netloop exec` ([`serve_exec`]: the options of `serve exec`).
//! - [`args`]: value parsers every command shares (seconds, ...).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod args;
pub mod client;
pub mod exec;
pub mod fetch;
pub mod resolve;
pub mod serve;
pub mod serve_exec;
pub mod serve_upload;
pub mod serve_workers;
pub mod stress;
pub mod timeline;
pub mod upload;

/// Readiness-based network I/O on one event loop.
#[derive(Parser, Debug)]
#[command(name = "netloop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a service (echo, upper, hello over TCP, UDP and Unix; upload, exec over TCP and
    /// Unix).
    Serve(serve::ServeArgs),
    /// Send standard input to a server and print its replies (the seeds' client).
    Client(client::Args),
    /// Hold many idle connections to a server and measure active ones.
    #[command(
        after_help = "Exit status: 0 when every connection asked for was opened and held to \
                      the end; 1 otherwise (the message says how many), e.g. when the target \
                      is unreachable."
    )]
    Stress(stress::Args),
    /// Look up an address, a host name or a service name (seed 001's lookups).
    Resolve(resolve::Args),
    /// Fetch URLs over HTTP/1.1 and HTTPS, many at once (seed 001's `Fetcher`, complete).
    #[command(
        after_help = "Output: with one URL and no -o, the body goes to stdout and the result \
                      line (or --json object) to stderr; otherwise bodies go to -o DIR (or are \
                      dropped) and one result per URL, text or JSON lines, goes to stdout. With \
                      several URLs a summary line goes to stderr.\n\n\
                      Exit status: 0 when every URL got a complete 2xx response; 1 otherwise \
                      (an error, a status other than 2xx, or output that could not be written); \
                      130 after SIGINT (Ctrl-C), 143 after SIGTERM: running transfers are \
                      cancelled, finished results and the summary printed (a second signal \
                      exits at once)."
    )]
    Fetch(fetch::Args),
    /// Upload files to `netloop serve upload` (seeds 000/004's framing), checking replies.
    #[command(
        after_help = "Exit status: 0 when every file was stored and its reply matched the bytes \
                      and SHA-256 sent; 1 on a refusal, a mismatch, an early close, a connect \
                      failure or --timeout without progress (the message says which)."
    )]
    Upload(upload::Args),
    /// Run a command on `netloop serve exec` (seed 004's command client): its output, its
    /// exit status.
    #[command(
        after_help = "Exit status: the command's own; 124 if it ran past the server's \
                      --timeout, 126 if the server refused it (not allowed, shell syntax), \
                      128+N if signal N killed it; 255 if netloop exec itself failed (no \
                      connection, authentication, a bad reply, no reply within --timeout)."
    )]
    Exec(exec::Args),
    /// Draw a `--record` file: an HTML page to explore (-o FILE.html) or an SVG picture.
    Timeline(timeline::Args),
}

/// Parse the command line and run the command; the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("netloop=info"))
        .format_timestamp_millis()
        .init();
    let (name, result) = match &cli.command {
        Command::Serve(args) => ("serve", serve::serve(args)),
        Command::Client(args) => ("client", client::run(args)),
        Command::Stress(args) => ("stress", stress::run(args)),
        Command::Fetch(args) => ("fetch", fetch::run(args)),
        Command::Upload(args) => ("upload", upload::run(args)),
        Command::Resolve(args) => ("resolve", resolve::run(args)),
        // The command's exit status is passed on, so this one reports its own errors.
        Command::Exec(args) => return exec::run(args),
        Command::Timeline(args) => ("timeline", timeline::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netloop {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
