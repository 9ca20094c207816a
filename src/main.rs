//! The `netloop` command: parses arguments and calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use netloop::client::{client, ClientArgs};
use netloop::fetch::{fetch, FetchArgs};
use netloop::resolve::{resolve_report, ResolveArgs};
use netloop::serve::{serve, ServeArgs};
use netloop::stress::{stress, StressArgs};
use netloop::upload::{upload, UploadArgs};

/// Readiness-based network I/O on one event loop.
#[derive(Parser, Debug)]
#[command(name = "netloop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a service (echo, upper, hello over TCP, UDP and Unix; upload over TCP and Unix).
    Serve(ServeArgs),
    /// Send standard input to a server and print its replies (the seeds' client).
    Client(ClientArgs),
    /// Hold many idle connections to a server and measure active ones.
    Stress(StressArgs),
    /// Look up an address, a host name or a service name (seed 001's lookups).
    Resolve(ResolveArgs),
    /// Fetch URLs over HTTP/1.1 and HTTPS, many at once (seed 001's `Fetcher`, complete).
    Fetch(FetchArgs),
    /// Upload files to `netloop serve upload` (seeds 000/004's framing), checking replies.
    Upload(UploadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("netloop=info"))
        .format_timestamp_millis()
        .init();
    let (name, result) = match &cli.command {
        Command::Serve(args) => ("serve", serve(args)),
        Command::Client(args) => ("client", client(args)),
        Command::Stress(args) => ("stress", stress(args)),
        Command::Fetch(args) => ("fetch", fetch(args)),
        Command::Upload(args) => ("upload", upload(args)),
        Command::Resolve(args) => (
            "resolve",
            resolve_report(&args.host, args.service.as_deref()).map(|r| print!("{r}")),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netloop {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
