//! `netloop fetch`: many HTTP/1.1 and HTTPS transfers at once, on the one loop.
//!
//! Seed 001's `Fetcher` shows the idea — a non-blocking socket, connect, send the request
//! when writable, read when readable, all driven by one selector — for one page over
//! plain HTTP with `Connection: close`. This is the real thing: every URL is a
//! `Transfer` (a state machine), all of them driven by one `Fetcher` handler on
//! netloop's single-threaded loop, with keep-alive reuse per host, chunked bodies,
//! redirects, timeouts, TLS, and a result for every URL. No thread per request: the only
//! helper threads are the DNS resolvers (`resolver.rs`), because `getaddrinfo` blocks,
//! and one output writer (`writer.rs`), because a pipe or a disk can block too.
//!
//! - `fetcher.rs`: the handler: admission, connections, timers, the loop's callbacks.
//! - `exchange.rs`: one request/response on a connection: send, receive, reuse or close.
//! - `delivery.rs`: body bytes to the writer, pausing for it, reporting a transfer's end.
//! - `transfer.rs`: one URL's state: its request, redirects, result.
//! - `request.rs`: what is sent (`-X`, `-H`, `-A`, `-e`, `-d`, `-u`); `sending.rs`: how
//!   redirects change it, and the request head; `upload.rs`: a file body streamed, paced
//!   by `on_drained`.
//! - `body.rs`: the final body counted, decoded (`decode.rs`: gzip, deflate, br, zstd in
//!   bounded memory) and delivered; `cookies.rs`: the run's cookie jar and its files.
//! - `pool.rs`: per host:port: addresses, idle keep-alive connections, waiting transfers.
//! - `resolver.rs`: DNS on helper threads, answered through a channel and the loop's waker.
//! - `tls.rs`: rustls on the loop's non-blocking sockets; `trust.rs`: which certificates
//!   are trusted (a self-signed one given with `--cacert` too), TLS errors in words.
//! - `descriptors.rs`: out of file descriptors, transfers wait for one.
//! - `interrupt.rs`: SIGINT/SIGTERM end a run in order (a second one at once).
//! - `output.rs`: where bodies go (stdout, files in a directory, nowhere), and the bound
//!   on what waits for the writer; `writer.rs`: the writer thread's side; `naming.rs`:
//!   file names, unique in O(1), written under a temporary name until complete.
//! - `report.rs`: one result per URL (text or JSON lines), the progress bar.
//! - `eyeballs.rs`: happy eyeballs: connects to a host's addresses racing, 250 ms apart.
//! - `retry.rs`: `--retry`: what is transient, backoff with jitter, `Retry-After`.
//! - `proxy.rs`: `-x`, `http_proxy`/`https_proxy`/`no_proxy`: absolute-form, CONNECT;
//!   `tunnel.rs`: the CONNECT or SOCKS5 handshake on the loop; `socks.rs`: the SOCKS5
//!   messages for `socks5h://` proxies.
//! - `timing.rs`: per-phase timings (`dns_us` ... `total_us`); `net.rs`: the per
//!   transfer state these three keep, and their timer keys.
//!
//! The command line (`src/cli/fetch.rs`, in the binary) turns its arguments into a
//! `FetchOptions` and calls `fetch`; a library caller can do the same, or put together
//! a `Plan`, an `Output` and a `Reporter` itself and call `run` (see
//! `examples/fetch_page.rs`).
//!
//! Readiness rule this module relies on: the loop reports a completed connect as
//! writable (then `on_open`), delivers every byte read in `on_data`, calls
//! `on_deadline` when a connection's deadline passes and `on_timer` for a loop timer,
//! and calls `on_wake` when a helper thread has answers; the fetcher never touches a
//! socket, and the loop thread never writes a file or stdout.

pub mod body;
pub mod cookies;
pub mod decode;
pub mod delivery;
pub mod descriptors;
pub mod exchange;
pub mod eyeballs;
pub mod fetcher;
pub mod interrupt;
pub mod naming;
pub mod net;
pub mod output;
pub mod pool;
pub mod proxy;
pub mod report;
pub mod request;
pub mod resolver;
pub mod retry;
pub mod sending;
pub mod socks;
pub mod timing;
pub mod tls;
pub mod transfer;
pub mod trust;
pub mod tunnel;
pub mod upload;
pub mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apps::fetch::cookies::Jar;
use crate::core::{EventLoop, LoopConfig};
pub use fetcher::{Fetcher, Link};
pub use output::{Destination, Output};
pub use proxy::ProxyConfig;
pub use report::{FetchResult, Reporter, ResultFormat};
pub use request::{Data, Request, RequestOptions};
pub use retry::RetryPolicy;

/// Everything `netloop fetch` is told, as plain values (the command line's `Args`
/// becomes one of these).
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// URLs to fetch (http:// or https://), in order.
    pub urls: Vec<String>,
    /// Save each body to its own file in this directory (without it, one URL's body
    /// goes to stdout; with several URLs, bodies are read and dropped).
    pub output_dir: Option<PathBuf>,
    /// Transfers in flight at most.
    pub concurrency: usize,
    /// Connections per host:port at most.
    pub per_host: usize,
    /// Reuse connections (false: `Connection: close`, one connection per request).
    pub keepalive: bool,
    /// Redirects followed per URL at most.
    pub max_redirects: u32,
    /// How long a connect may take, per address tried.
    pub connect_timeout: Duration,
    /// How long a whole transfer may take, redirects included.
    pub timeout: Option<Duration>,
    /// How long the server may stay silent while a response is awaited.
    pub idle_timeout: Duration,
    /// Also trust the CA certificate(s) in this PEM file.
    pub cacert: Option<PathBuf>,
    /// Do not verify TLS certificates.
    pub insecure: bool,
    /// With one URL printed to stdout: print the status line and headers too.
    pub include: bool,
    /// Send HEAD requests instead of GET.
    pub head: bool,
    /// `--fail`: a final status of 400 or more is an error, and no body is saved.
    pub fail: bool,
    /// Results as JSON lines instead of text.
    pub json: bool,
    /// Record the loop's events as JSON lines into this new file (`EventLoop::record_to`).
    pub record: Option<PathBuf>,
    /// Most events recorded.
    pub record_limit: u64,
    /// Method, headers, body, credentials (`-X`, `-H`, `-A`, `-e`, `-d`, `-u`).
    pub request: RequestOptions,
    /// `--compressed` (Some(true)) or `--no-compressed` (Some(false)); None: on when
    /// bodies are saved (`-o`) or dropped, off when one body goes to stdout (as curl).
    pub compressed: Option<bool>,
    /// Keep cookies within the run (`--no-cookies`: false).
    pub cookies: bool,
    /// `-b FILE`: start with the cookies of this Netscape cookie file.
    pub cookie_file: Option<PathBuf>,
    /// `-c FILE`: write the run's cookies to this file at the end.
    pub cookie_jar: Option<PathBuf>,
    /// `--retry`, `--retry-delay`, `--retry-max-time`.
    pub retry: RetryPolicy,
    /// `--resolve HOST:PORT:ADDR[,ADDR...]` entries, as given.
    pub resolve: Vec<String>,
    /// Which proxy each URL takes (`-x`, `--noproxy`, the environment).
    pub proxy: ProxyConfig,
}

impl FetchOptions {
    /// Options for `urls` with the command's defaults.
    pub fn new(urls: Vec<String>) -> FetchOptions {
        FetchOptions {
            urls,
            output_dir: None,
            concurrency: 50,
            per_host: 6,
            keepalive: true,
            max_redirects: 5,
            connect_timeout: Duration::from_secs(10),
            timeout: None,
            idle_timeout: Duration::from_secs(30),
            cacert: None,
            insecure: false,
            include: false,
            head: false,
            fail: false,
            json: false,
            record: None,
            record_limit: 1_000_000,
            request: RequestOptions::default(),
            compressed: None,
            cookies: true,
            cookie_file: None,
            cookie_jar: None,
            retry: RetryPolicy::default(),
            resolve: Vec::new(),
            proxy: ProxyConfig::default(),
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A zero timeout would fail every transfer at once: refuse it, naming the option.
fn positive(name: &str, d: Duration) -> io::Result<Duration> {
    match d.is_zero() {
        true => Err(invalid(format!("{name} must be more than 0 seconds"))),
        false => Ok(d),
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
    /// Method, headers, body and credentials of every request (`request.rs`).
    pub request: Arc<Request>,
    /// `--retry` and its limits.
    pub retry: RetryPolicy,
    /// `--resolve`: addresses given for host:port pairs.
    pub resolve: resolver::Overrides,
    /// Which proxy each URL takes.
    pub proxy: ProxyConfig,
    /// A final status of 400 or more fails the transfer before any of its body is
    /// saved or printed (curl's `--fail`).
    pub fail: bool,
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
            request: Arc::new(Request::from_options(&RequestOptions::default())?),
            retry: RetryPolicy::default(),
            resolve: resolver::Overrides::new(),
            proxy: ProxyConfig::default(),
            fail: false,
        })
    }
}

/// Run every transfer of `fetcher`'s plan on `event_loop`, until each has a result and
/// every result is written out; returns the fetcher (its reporter has the totals, and
/// `results` the results if it was asked to keep them).
pub fn run(fetcher: Fetcher, event_loop: &mut EventLoop<Link>) -> io::Result<Fetcher> {
    let mut fetcher = fetcher;
    // The first turn admits the first URLs (the `ADMIT` timer); events drive the rest.
    fetcher.schedule_admit(event_loop.ctx());
    event_loop.run(&mut fetcher)?;
    fetcher.reporter.finish();
    Ok(fetcher)
}

/// `netloop fetch`: Ok only if every URL got a complete 2xx response, written out.
pub fn fetch(opts: &FetchOptions) -> io::Result<()> {
    let urls = opts.urls.clone();
    if urls.is_empty() {
        return Err(invalid(
            "no URL given (as arguments or with -i FILE)".into(),
        ));
    }
    if opts.concurrency == 0 || opts.per_host == 0 {
        return Err(invalid(
            "--concurrency and --per-host must be at least 1".into(),
        ));
    }
    let destination = match (&opts.output_dir, urls.len()) {
        (Some(dir), _) => Destination::Dir(dir.clone()),
        (None, 1) => Destination::Stdout {
            include: opts.include,
        },
        (None, _) => Destination::Discard,
    };
    if opts.include && !matches!(destination, Destination::Stdout { .. }) {
        return Err(invalid(
            "--include prints one response to stdout: give one URL and no -o".into(),
        ));
    }
    if opts.head && !opts.request.data.is_empty() {
        return Err(invalid(
            "-I (HEAD) sends no body: leave out -d/--data-binary".into(),
        ));
    }
    // Compressed transfers by default where nobody reads the body as it comes (saved or
    // dropped, as a browser would); one body on stdout stays as curl prints it.
    let compressed = opts
        .compressed
        .unwrap_or(!matches!(destination, Destination::Stdout { .. }));
    let request = Request::from_options(&RequestOptions {
        compressed,
        ..opts.request.clone()
    })?;
    let mut jar = Jar::new(opts.cookies || opts.cookie_file.is_some());
    if let Some(path) = &opts.cookie_file {
        jar.load(path)?;
    }
    if opts.insecure {
        eprintln!(
            "WARNING: --insecure: TLS certificates are NOT verified. Anyone between you and \
             the server can read and change these transfers."
        );
    }
    let plan = Plan {
        concurrency: opts.concurrency,
        per_host: opts.per_host,
        keepalive: opts.keepalive,
        max_redirects: opts.max_redirects,
        connect_timeout: positive("--connect-timeout", opts.connect_timeout)?,
        timeout: opts.timeout.map(|d| positive("--timeout", d)).transpose()?,
        idle_timeout: positive("--idle-timeout", opts.idle_timeout)?,
        tls: tls::client_config(opts.cacert.as_deref(), opts.insecure)?,
        head_only: opts.head,
        request: Arc::new(request),
        retry: opts.retry,
        resolve: resolve_overrides(&opts.resolve)?,
        proxy: opts.proxy.clone(),
        fail: opts.fail,
        urls,
    };
    let total = plan.urls.len();
    let format = if opts.json {
        ResultFormat::Json
    } else {
        ResultFormat::Human
    };
    // When stdout carries the body, results go to stderr.
    let to_stderr = matches!(destination, Destination::Stdout { .. });
    let reporter = Reporter::new(format, to_stderr, total);
    let started = Instant::now();
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // SIGINT and SIGTERM become loop events: the run ends in order (`interrupt.rs`).
    event_loop.handle_signals()?;
    if let Some(path) = &opts.record {
        event_loop.record_to(path, opts.record_limit)?;
    }
    let waker = event_loop.waker()?;
    let fetched = Output::new(destination, Arc::clone(&waker)).and_then(|output| {
        let fetcher = Fetcher::new(plan, output, reporter, waker).with_cookies(jar);
        run(fetcher, &mut event_loop)
    });
    // The record is finished however the run went (a failed run is worth a look).
    let recorded = event_loop.finish_recording();
    let fetcher = fetched?;
    recorded?;
    if let Some(path) = &opts.cookie_jar {
        fetcher.cookies.save(path)?;
    }
    let r = &fetcher.reporter;
    if let Some(stop) = fetcher.interrupted {
        eprintln!(
            "{total} URLs: {} ok, {} failed, {} not started, {} body bytes in {:.2} s \
             ({stop})",
            r.done - r.failed,
            r.failed,
            stop.not_started,
            r.bytes,
            started.elapsed().as_secs_f64()
        );
        return Err(io::Error::new(io::ErrorKind::Interrupted, stop));
    }
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
            "{n} of {total} URLs failed (an error, a status other than 2xx, or output \
             that could not be written)"
        ))),
    }
}

/// The `--resolve` entries as the resolver's table (a later entry for the same
/// host:port wins, as in curl).
fn resolve_overrides(entries: &[String]) -> io::Result<resolver::Overrides> {
    let mut table = resolver::Overrides::new();
    for entry in entries {
        let (key, addrs) = resolver::parse_resolve(entry).map_err(invalid)?;
        table.insert(key, addrs);
    }
    Ok(table)
}
