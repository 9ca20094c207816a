//! `netloop fetch`: its command line.
//!
//! `Args` is the `clap` struct; `run` reads the URLs (arguments, then `-i FILE`, where
//! `-` is standard input), turns the rest into the library's plain
//! `netloop::apps::fetch::FetchOptions` and calls `fetch`. Every SECS option goes
//! through the shared `args::secs` parser; the library refuses zero timeouts itself.
//! `--record FILE` records the loop's events as JSON lines, as `serve --record` does.
//! The proxy settings are read here from `-x`/`--noproxy` and the environment
//! (`http_proxy`, `https_proxy`, `no_proxy`... as curl reads them), so the library
//! itself never looks at the environment.

use std::io::{self, BufRead};
use std::path::PathBuf;
use std::time::Duration;

use netloop::apps::fetch::interrupt::interrupted;
use netloop::apps::fetch::{fetch, Data, FetchOptions, ProxyConfig, RequestOptions, RetryPolicy};

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
    /// Add a request header, as curl: 'Name: value' (repeatable); it replaces a default
    /// of the same name (User-Agent, Accept, ...); 'Name:' removes one; 'Name;' sends it
    /// empty. Authorization and Cookie given here are not sent to other hosts on redirects.
    #[arg(short = 'H', long = "header", value_name = "LINE")]
    pub headers: Vec<String>,
    /// The User-Agent header (default netloop/VERSION).
    #[arg(short = 'A', long = "user-agent", value_name = "NAME")]
    pub user_agent: Option<String>,
    /// The request method (default GET; POST with -d). Redirects 301/302 turn POST into
    /// GET and 303 turns anything but HEAD into GET; 307/308 keep it, body included.
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// Send DATA as the body (implies POST, Content-Type
    /// application/x-www-form-urlencoded); repeated: joined with '&' (every -d before any
    /// --data-binary); '@FILE': the file's contents without CR/LF (read whole).
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Vec<String>,
    /// Send DATA as the body byte for byte; '@FILE' streams the file (Content-Length from
    /// its size, never read whole), and then nothing else may be given with -d.
    #[arg(long = "data-binary", value_name = "DATA")]
    pub data_binary: Vec<String>,
    /// Basic authentication 'user:password' (credentials in the URL work too); sent only
    /// to the host they were given for, never to another host on a redirect.
    #[arg(short = 'u', long = "user", value_name = "USER:PASSWORD")]
    pub user: Option<String>,
    /// The Referer header; 'URL;auto' (or ';auto') also sends the previous URL as Referer
    /// on each redirect.
    #[arg(short = 'e', long = "referer", value_name = "URL")]
    pub referer: Option<String>,
    /// Ask for compressed bodies (Accept-Encoding: gzip, deflate, br, zstd) and decode
    /// them as they stream. Default: on with -o DIR or several URLs, off for one body on
    /// stdout (as curl).
    #[arg(long, conflicts_with = "no_compressed")]
    pub compressed: bool,
    /// Never ask for compressed bodies (bodies arrive and are saved as sent).
    #[arg(long)]
    pub no_compressed: bool,
    /// Start with cookies: a Netscape cookie file (as curl -c writes it), or
    /// 'name=value; ...' to send as a Cookie header.
    #[arg(short = 'b', long = "cookie", value_name = "FILE|NAME=VALUE")]
    pub cookie: Option<String>,
    /// Write the run's cookies to FILE at the end (Netscape format, as curl).
    #[arg(short = 'c', long = "cookie-jar", value_name = "FILE")]
    pub cookie_jar: Option<PathBuf>,
    /// Do not keep cookies within the run (by default Set-Cookie is honoured for later
    /// requests to the same site, with the usual domain/path/secure/expiry rules).
    #[arg(long, conflicts_with_all = ["cookie", "cookie_jar"])]
    pub no_cookies: bool,
    /// Retry a transient failure up to N times: a failed or timed-out connect, a
    /// connection reset or closed before the response was complete, no data for
    /// --idle-timeout, or status 408, 429, 500, 502, 503, 504. Waits 1 s, 2 s, 4 s ...
    /// (with jitter, at most 10 min), or what the server's Retry-After says.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retry: u32,
    /// Wait SECS between retries instead of the growing backoff (a Retry-After still wins).
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub retry_delay: Option<Duration>,
    /// Start no retry, and wait for none (Retry-After included), past SECS after the
    /// transfer started.
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub retry_max_time: Option<Duration>,
    /// Use these addresses for HOST:PORT instead of asking DNS (curl's syntax; HOST may
    /// be `*`; IPv6 in brackets; repeatable). Several addresses race (happy eyeballs).
    #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR...]")]
    pub resolve: Vec<String>,
    /// Use this proxy for every URL: `http://[user:pw@]host[:port]` (absolute-form
    /// requests for http://, a CONNECT tunnel for https://) or `socks5h://...` (SOCKS5,
    /// the proxy resolves names); port 1080 by default. Without it: http_proxy,
    /// https_proxy/HTTPS_PROXY, all_proxy/ALL_PROXY (not HTTP_PROXY), as curl reads them.
    #[arg(short = 'x', long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Hosts that never go through a proxy: comma-separated names (matching their
    /// subdomains too), IP addresses, or `*` (default: no_proxy/NO_PROXY).
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,
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
        request: request_options(args),
        compressed: match (args.compressed, args.no_compressed) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        cookies: !args.no_cookies,
        // `-b name=value` is a header; anything else names a file (curl's rule).
        cookie_file: args
            .cookie
            .as_ref()
            .filter(|c| !c.contains('='))
            .map(PathBuf::from),
        cookie_jar: args.cookie_jar.clone(),
        retry: RetryPolicy {
            retries: args.retry,
            delay: args.retry_delay,
            max_time: args.retry_max_time,
        },
        resolve: args.resolve.clone(),
        proxy: ProxyConfig::new(args.proxy.as_deref(), args.noproxy.as_deref(), |name| {
            std::env::var(name).ok()
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
    };
    let fetched = fetch(&opts);
    if let Some(stop) = fetched.as_ref().err().and_then(interrupted) {
        // Like a process the signal ended: 130 for SIGINT, 143 for SIGTERM.
        eprintln!("netloop fetch: {stop}");
        std::process::exit(stop.exit_code());
    }
    fetched
}

/// `-X`, `-H`, `-A`, `-e`, `-d`, `--data-binary`, `-u`, `-b name=value`.
fn request_options(args: &Args) -> RequestOptions {
    let mut headers = args.headers.clone();
    if let Some(cookie) = args.cookie.as_ref().filter(|c| c.contains('=')) {
        headers.push(format!("Cookie: {cookie}"));
    }
    let data = args.data.iter().cloned().map(Data::Ascii);
    let binary = args.data_binary.iter().cloned().map(Data::Binary);
    RequestOptions {
        method: args.method.clone(),
        headers,
        user_agent: args.user_agent.clone(),
        referer: args.referer.clone(),
        data: data.chain(binary).collect(),
        user: args.user.clone(),
        compressed: false, // decided by `fetch` from `FetchOptions::compressed`
    }
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
