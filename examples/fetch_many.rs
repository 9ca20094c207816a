//! Many pages at once on one loop: what seed 001's `Fetcher` (`001_ee7d6b97d093d40c.txt`)
//! was heading for — "a non-blocking socket per page, one selector for all" — with a
//! result line per page as each one completes.
//!
//! Run: `cargo run --example fetch_many URL...` (or URLs on stdin, one per line).
//! Try: `python3 -m http.server 8000 --bind 127.0.0.1` in one terminal, then
//! `cargo run --example fetch_many http://127.0.0.1:8000/ http://127.0.0.1:8000/nope`.
//!
//! Unlike the seed (one connection per page, `Connection: close`), transfers to the same
//! host share a few keep-alive connections (`per_host`), and at most `concurrency` are in
//! flight; bodies are read and dropped (`netloop fetch -o DIR` saves them). The results
//! print in completion order, not input order: that is concurrency showing.

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::time::Instant;

use netloop::apps::fetch::{run, Destination, Fetcher, Output, Plan, Reporter, ResultFormat};
use netloop::{EventLoop, LoopConfig};

fn main() -> ExitCode {
    let mut urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        urls = io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
    }
    if urls.is_empty() {
        eprintln!("fetch_many: give URLs as arguments or on stdin");
        return ExitCode::FAILURE;
    }
    match fetch_many(urls) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("fetch_many: {failed} failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fetch_many: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fetch every URL, printing a line per result; returns how many failed.
fn fetch_many(urls: Vec<String>) -> io::Result<u64> {
    let total = urls.len();
    let mut plan = Plan::with_defaults(urls)?;
    plan.concurrency = 20;
    plan.per_host = 4;
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    let waker = event_loop.waker()?;
    let output = Output::new(Destination::Discard, waker.clone())?;
    let reporter = Reporter::new(ResultFormat::Human, false, total);
    let fetcher = Fetcher::new(plan, output, reporter, waker);
    let started = Instant::now();
    let fetcher = run(fetcher, &mut event_loop)?;
    let r = &fetcher.reporter;
    println!(
        "{total} pages, {} failed, {} body bytes in {:.3} s",
        r.failed,
        r.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(r.failed)
}
