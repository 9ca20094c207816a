//! Mirrors seed 001 (`001_ee7d6b97d093d40c.txt`), the `selectors` non-blocking HTTP
//! `Fetcher` (`fetcher = Fetcher("www.baidu.com")`, `fetcher.get_url()`,
//! `loop_forever()`): one page, fetched on the loop, printed whole — status line,
//! headers and body — as the seed prints the response it read.
//!
//! Run: `cargo run --example fetch_page URL` (default `http://127.0.0.1:8000/`).
//! Try: `python3 -m http.server 8000 --bind 127.0.0.1` in another terminal, then
//! `cargo run --example fetch_page http://127.0.0.1:8000/`. There is no network here
//! beyond loopback; elsewhere any http:// or https:// URL works.
//! `RUST_LOG=netloop=trace` shows the connect's writable event, then the reads.
//!
//! The seed's callbacks and where they went:
//! - `DefaultSelector()` + `loop_forever()` is `EventLoop::new` + `run`: one epoll, one
//!   thread, the loop calling back into the fetcher (`key.data(key)` is `Handler::on_*`).
//! - `get_url` (`connect` raising `BlockingIOError`, then `register(EVENT_WRITE,
//!   send_request)`) is the transfer's connect; the loop registers the socket once for
//!   readable *and* writable, never again.
//! - `send_request` on EVENT_WRITE is `on_open`: a non-blocking connect completes as a
//!   writable event, and the loop checks `SO_ERROR` before calling it (the seed never
//!   checks, so a refused connect surfaces as a confusing send error).
//! - `read_data` on EVENT_READ is `on_data`. The seed's version sets `data = b""` on
//!   every call and prints only when `recv` returns nothing — by then `data` holds
//!   nothing: each chunk is dropped as soon as the next call starts. Here every chunk
//!   goes through the response parser and on to stdout as it arrives — written by the
//!   output's helper thread, so a slow reader of our stdout never stalls the loop.
//! - The seed's request says `Connection: close`, so the page ends when the server
//!   closes; `plan.keepalive = false` sends the same header here. (`netloop fetch` keeps
//!   connections open and reads Content-Length or chunked bodies instead.)

use std::io;
use std::process::ExitCode;

use netloop::apps::fetch::{run, Destination, Fetcher, Output, Plan, Reporter, ResultFormat};
use netloop::{EventLoop, LoopConfig};

fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8000/".to_string());
    match fetch_page(url) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fetch_page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fetch one page and print it; true if it came back complete with a 2xx status.
fn fetch_page(url: String) -> io::Result<bool> {
    eprintln!("fetching {url} (Connection: close, like the seed)");
    // seed: selector = DefaultSelector()
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // seed: Fetcher(host): the request, with the seed's `Connection: close`.
    let mut plan = Plan::with_defaults(vec![url])?;
    plan.keepalive = false;
    // seed: print(str(data, ...)): the whole response, headers included.
    // The output is written by a helper thread, which wakes the loop after each write.
    let waker = event_loop.waker()?;
    let output = Output::new(Destination::Stdout { include: true }, waker.clone())?;
    let reporter = Reporter::new(ResultFormat::Silent, true, 1);
    let fetcher = Fetcher::new(plan, output, reporter, waker).keep_results();
    // seed: fetcher.get_url(); loop_forever() — but the loop ends when the page is done.
    let fetcher = run(fetcher, &mut event_loop)?;
    let Some(result) = fetcher.results.first() else {
        return Err(io::Error::other("no result"));
    };
    eprintln!("{}", result.human());
    Ok(result.succeeded())
}
