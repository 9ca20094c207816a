//! Record a fetch for `netloop timeline`: many URLs over a few keep-alive connections,
//! with the loop's events written to a file as JSON lines (`netloop fetch` itself has no
//! `--record` yet; this is the library call it would make).
//!
//! Run: `cargo run --release --example fetch_record -- RECORD.jsonl URL...`
//! Then: `netloop timeline RECORD.jsonl -o fetch.html`.
//! NOTES.md ("Watching the loop") fetches 20 files from a local Python HTTP/1.1 server
//! over 6 connections this way.
//!
//! The only difference from `examples/fetch_many.rs` is `EventLoop::record_to` before the
//! run and `finish_recording` after it: recording is a property of the loop, so any
//! handler on it can be watched without changing the handler.

use std::path::PathBuf;
use std::process::ExitCode;

use netloop::apps::fetch::{run, Destination, Fetcher, Output, Plan, Reporter, ResultFormat};
use netloop::{EventLoop, LoopConfig};

/// Connections to the one host at most: the keep-alive pool the picture shows.
const PER_HOST: usize = 6;
/// Events recorded at most.
const RECORD_LIMIT: u64 = 1_000_000;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(record), urls) = (args.next().map(PathBuf::from), args.collect::<Vec<_>>()) else {
        eprintln!("usage: fetch_record RECORD.jsonl URL...");
        return ExitCode::FAILURE;
    };
    if urls.is_empty() {
        eprintln!("usage: fetch_record RECORD.jsonl URL...");
        return ExitCode::FAILURE;
    }
    match fetch_recorded(&record, urls) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("fetch_record: {failed} failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fetch_record: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fetch every URL (bodies dropped), recording the loop; returns how many failed.
fn fetch_recorded(record: &std::path::Path, urls: Vec<String>) -> std::io::Result<u64> {
    let total = urls.len();
    let mut plan = Plan::with_defaults(urls)?;
    plan.per_host = PER_HOST;
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    let waker = event_loop.waker()?;
    let output = Output::new(Destination::Discard, waker.clone())?;
    let reporter = Reporter::new(ResultFormat::Human, false, total);
    let fetcher = Fetcher::new(plan, output, reporter, waker);
    event_loop.record_to(record, RECORD_LIMIT)?;
    let fetcher = run(fetcher, &mut event_loop)?;
    event_loop.finish_recording()?;
    let r = &fetcher.reporter;
    println!(
        "{total} URLs, {} failed, {} body bytes; events in {}",
        r.failed,
        r.bytes,
        record.display()
    );
    Ok(r.failed)
}
