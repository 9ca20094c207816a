//! `netloop fetch`: its command line.
//!
//! `Args` is the `clap` struct; `run` reads the URLs (arguments, then `-i FILE`, where
//! `-` is standard input), turns the rest into the library's plain
//! `netloop::apps::fetch::FetchOptions` and calls `fetch`. Every SECS option goes
//! through the shared `args::secs` parser; the library refuses zero timeouts itself.
//! `--record FILE` records the loop's events as JSON lines, as `serve --record` does.

use std::io::{self, BufRead};
use std::path::PathBuf;
use std::time::Duration;

use netloop::apps::fetch::interrupt::interrupted;
use netloop::apps::fetch::{fetch, FetchOptions};

use super::args::{at_least_one, secs};

/// Options of `netloop fetch`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// URLs to fetch (http:// or https://); at least one is required unless -i gives them.
    #[arg(value_name = "URL", required_unless_present = "input")]
    pub urls: Vec<String>,
    /// Also read URLs from FILE, one per line (`-`: standard input; blank lines and
    /// lines starting with # are skipped).
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Save each body to its own file in DIR, named from the URL path (without -o, one
    /// URL's body goes to stdout; with several URLs bodies are read and dropped).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Transfers in flight at most.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub concurrency: usize,
    /// Connections per host:port at most (reused with HTTP/1.1 keep-alive).
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub per_host: usize,
    /// Send `Connection: close` and use one connection per request (like the seed).
    #[arg(long)]
    pub no_keepalive: bool,
    /// Redirects (301, 302, 303, 307, 308) followed per URL at most.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_redirects: u32,
    /// Seconds a connect may take, per address tried (a host with several addresses may
    /// take this long for each before the next is tried).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = secs)]
    pub connect_timeout: Duration,
    /// Seconds a whole transfer may take, redirects included (default: no limit).
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub timeout: Option<Duration>,
    /// Seconds the server may stay silent while a response is awaited.
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = secs)]
    pub idle_timeout: Duration,
    /// Also trust the CA certificate(s) in this PEM file for https.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify TLS certificates (prints a warning: anyone can impersonate the server).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// With one URL printed to stdout: print the status line and headers too.
    #[arg(long)]
    pub include: bool,
    /// Send HEAD requests instead of GET (no bodies).
    #[arg(short = 'I', long)]
    pub head: bool,
    /// Fail on HTTP errors (curl's --fail): a final status of 400 or more is that URL's
    /// error, and its body is neither saved nor printed.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// Print one JSON object per URL (JSON lines) instead of text: on stdout, or on
    /// stderr when stdout carries the body (one URL, no -o).
    #[arg(long)]
    pub json: bool,
    /// Record the loop's events (each turn, connect, read, write, close...) as JSON
    /// lines into this new file, for `netloop timeline` (see NOTES.md).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Most events --record writes.
    #[arg(long, default_value_t = 1_000_000, value_name = "N", value_parser = at_least_one)]
    pub record_limit: usize,
}

/// Run `netloop fetch`.
pub fn run(args: &Args) -> io::Result<()> {
    let opts = FetchOptions {
        urls: collect_urls(args)?,
        output_dir: args.output_dir.clone(),
        concurrency: args.concurrency,
        per_host: args.per_host,
        keepalive: !args.no_keepalive,
        max_redirects: args.max_redirects,
        connect_timeout: args.connect_timeout,
        timeout: args.timeout,
        idle_timeout: args.idle_timeout,
        cacert: args.cacert.clone(),
        insecure: args.insecure,
        include: args.include,
        head: args.head,
        fail: args.fail,
        json: args.json,
        record: args.record.clone(),
        record_limit: args.record_limit as u64,
    };
    let fetched = fetch(&opts);
    if let Some(stop) = fetched.as_ref().err().and_then(interrupted) {
        // Like a process the signal ended: 130 for SIGINT, 143 for SIGTERM.
        eprintln!("netloop fetch: {stop}");
        std::process::exit(stop.exit_code());
    }
    fetched
}

/// The URLs on the command line, then those in `-i FILE`.
fn collect_urls(args: &Args) -> io::Result<Vec<String>> {
    let mut urls = args.urls.clone();
    let Some(path) = &args.input else {
        return Ok(urls);
    };
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("-i {}: {e}", path.display())))?;
        Box::new(io::BufReader::new(file))
    };
    for line in reader.lines() {
        let line =
            line.map_err(|e| io::Error::new(e.kind(), format!("-i {}: {e}", path.display())))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            urls.push(line.to_string());
        }
    }
    Ok(urls)
}
