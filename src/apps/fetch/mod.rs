//! `netloop fetch`: many HTTP/1.1 and HTTPS transfers at once, on the one loop.
//!
//! Seed 001's `Fetcher` shows the idea — a non-blocking socket, connect, send the request
//! when writable, read when readable, all driven by one selector — for one page over
//! plain HTTP with `Connection: close`. This is the real thing: every URL is a
//! `Transfer` (a state machine), all of them driven by one `Fetcher` handler on
//! netloop's single-threaded loop, with keep-alive reuse per host, chunked bodies,
//! redirects, timeouts, TLS, and a result for every URL. No thread per request: the only
//! helper threads are the DNS resolvers (`resolver.rs`), because `getaddrinfo` blocks.
//!
//! - `fetcher.rs`: the handler: admission, connections, timeouts, the loop's callbacks.
//! - `exchange.rs`: one request/response on a connection: send, receive, reuse or close.
//! - `transfer.rs`: one URL's state: its request, redirects, result.
//! - `response.rs`: the incremental response parser (httparse for the head).
//! - `pool.rs`: per host:port: addresses, idle keep-alive connections, waiting transfers.
//! - `resolver.rs`: DNS on helper threads, answered through a channel and the loop's waker.
//! - `tls.rs`: rustls on the loop's non-blocking sockets.
//! - `output.rs`: bodies to stdout, to files in a directory, or nowhere.
//! - `report.rs`: one result per URL (text or JSON lines), the progress bar.
//!
//! Readiness rule this module relies on: the loop reports a completed connect as
//! writable (then `on_open`), delivers every byte read in `on_data`, and calls
//! `on_deadline` when a connection's deadline passes; the fetcher never touches a socket.

pub mod exchange;
pub mod fetcher;
pub mod output;
pub mod pool;
pub mod report;
pub mod resolver;
pub mod tls;
pub mod transfer;

use std::io::{self, BufRead};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::{EventLoop, LoopConfig};
pub use fetcher::{Fetcher, Link};
pub use output::{Destination, Output};
pub use report::{FetchResult, Reporter, ResultFormat};

/// Options of `netloop fetch`.
#[derive(Clone, Debug, clap::Args)]
pub struct FetchArgs {
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
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// Seconds a whole transfer may take, redirects included (default: no limit).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Seconds the server may stay silent while a response is awaited.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub idle_timeout: f64,
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
    /// Print one JSON object per URL (JSON lines) instead of text: on stdout, or on
    /// stderr when stdout carries the body (one URL, no -o).
    #[arg(long)]
    pub json: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn seconds(name: &str, secs: f64) -> io::Result<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(invalid(format!(
            "{name} must be a positive number of seconds"
        ))),
    }
}

/// What a run does: every option that is not about output.
#[derive(Clone)]
pub struct Plan {
    /// The URLs, as given.
    pub urls: Vec<String>,
    /// Transfers in flight at most.
    pub concurrency: usize,
    /// Connections per host at most.
    pub per_host: usize,
    /// Reuse connections (false: `Connection: close`, one connection per request).
    pub keepalive: bool,
    /// Redirects followed per URL at most.
    pub max_redirects: u32,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// How long a whole transfer may take (redirects included).
    pub timeout: Option<Duration>,
    /// How long the server may stay silent while we wait for response bytes.
    pub idle_timeout: Duration,
    /// TLS settings for `https://` URLs.
    pub tls: Arc<rustls::ClientConfig>,
    /// Send HEAD instead of GET.
    pub head_only: bool,
}

/// The URLs on the command line, then those in `-i FILE`.
pub fn collect_urls(args: &FetchArgs) -> io::Result<Vec<String>> {
    let mut urls = args.urls.clone();
    if let Some(path) = &args.input {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            let file = std::fs::File::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("-i {}: {e}", path.display())))?;
            Box::new(io::BufReader::new(file))
        };
        for line in reader.lines() {
            let line = line.map_err(|e| io::Error::new(e.kind(), format!("-i: {e}")))?;
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                urls.push(line.to_string());
            }
        }
    }
    Ok(urls)
}

impl Plan {
    /// A plan for `urls` with the command's defaults (system trust roots only).
    pub fn with_defaults(urls: Vec<String>) -> io::Result<Plan> {
        Ok(Plan {
            urls,
            concurrency: 50,
            per_host: 6,
            keepalive: true,
            max_redirects: 5,
            connect_timeout: Duration::from_secs(10),
            timeout: None,
            idle_timeout: Duration::from_secs(30),
            tls: tls::client_config(None, false)?,
            head_only: false,
        })
    }
}

/// Run every transfer of `plan` on a new loop; returns the fetcher (its reporter has the
/// totals, and `results` the results if it was asked to keep them).
pub fn run(fetcher: Fetcher, event_loop: &mut EventLoop<Link>) -> io::Result<Fetcher> {
    let mut fetcher = fetcher;
    // The first turn admits the first URLs; after that, events drive everything.
    event_loop.ctx().timer_after(Duration::ZERO, 0);
    event_loop.run(&mut fetcher)?;
    fetcher.reporter.finish();
    Ok(fetcher)
}

/// `netloop fetch`: Ok only if every URL got a complete 2xx response.
pub fn fetch(args: &FetchArgs) -> io::Result<()> {
    let urls = collect_urls(args)?;
    if urls.is_empty() {
        return Err(invalid(
            "no URL given (as arguments or with -i FILE)".into(),
        ));
    }
    if args.concurrency == 0 || args.per_host == 0 {
        return Err(invalid(
            "--concurrency and --per-host must be at least 1".into(),
        ));
    }
    let destination = match (&args.output_dir, urls.len()) {
        (Some(dir), _) => Destination::Dir(dir.clone()),
        (None, 1) => Destination::Stdout {
            include: args.include,
        },
        (None, _) => Destination::Discard,
    };
    if args.include && !matches!(destination, Destination::Stdout { .. }) {
        return Err(invalid(
            "--include prints one response to stdout: give one URL and no -o".into(),
        ));
    }
    if args.insecure {
        eprintln!(
            "WARNING: --insecure: TLS certificates are NOT verified. Anyone between you and \
             the server can read and change these transfers."
        );
    }
    let plan = Plan {
        concurrency: args.concurrency,
        per_host: args.per_host,
        keepalive: !args.no_keepalive,
        max_redirects: args.max_redirects,
        connect_timeout: seconds("--connect-timeout", args.connect_timeout)?,
        timeout: args.timeout.map(|s| seconds("--timeout", s)).transpose()?,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        tls: tls::client_config(args.cacert.as_deref(), args.insecure)?,
        head_only: args.head,
        urls,
    };
    let total = plan.urls.len();
    let format = if args.json {
        ResultFormat::Json
    } else {
        ResultFormat::Human
    };
    // When stdout carries the body, results go to stderr.
    let to_stderr = matches!(destination, Destination::Stdout { .. });
    let reporter = Reporter::new(format, to_stderr, total);
    let started = Instant::now();
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    let fetcher = Fetcher::new(
        plan,
        Output::new(destination)?,
        reporter,
        event_loop.waker()?,
    );
    let fetcher = run(fetcher, &mut event_loop)?;
    let r = &fetcher.reporter;
    if total > 1 {
        eprintln!(
            "{total} URLs: {} ok, {} failed, {} body bytes in {:.2} s",
            r.done - r.failed,
            r.failed,
            r.bytes,
            started.elapsed().as_secs_f64()
        );
    }
    match r.failed {
        0 => Ok(()),
        n => Err(io::Error::other(format!(
            "{n} of {total} URLs failed (an error, or a status other than 2xx)"
        ))),
    }
}
