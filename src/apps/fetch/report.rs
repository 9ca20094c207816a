//! Results: one per URL, as a line for people or a JSON object, and a progress bar.
//!
//! Every URL given gets exactly one `FetchResult`, printed the moment its transfer is
//! over — its body written out, not only received (so a long run shows results as it
//! goes): a status, the body bytes, the elapsed time and the redirects followed, or a
//! one-line error saying what went wrong (refused, DNS, timeout, TLS, malformed
//! response, short body, reset, output). A non-2xx status is a result, not an error, but
//! it does not count as a success for the exit status.
//!
//! The `Reporter` counts and formats; the lines themselves are printed by the output's
//! writer thread (`writer.rs`), like bodies, so a slow reader of our stdout or stderr
//! never stalls the loop. The progress bar is drawn from the loop (`tick`, in `on_turn`).

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::timing::Timings;
use crate::core::CloseReason;

/// What happened to one URL.
#[derive(Clone, Debug)]
pub struct FetchResult {
    /// The URL as given.
    pub url: String,
    /// The final status (after redirects), if a response head arrived.
    pub status: Option<u16>,
    /// Body bytes of the final response (decoded, when it came compressed).
    pub bytes: u64,
    /// Body bytes of the final response as they arrived (before decoding).
    pub wire_bytes: u64,
    /// From the start of the transfer to its end.
    pub elapsed: Duration,
    /// Redirects followed.
    pub redirects: u32,
    /// The file the body was saved to (`-o DIR`).
    pub file: Option<PathBuf>,
    /// Why it failed, in one line; None if a complete response arrived.
    pub error: Option<String>,
    /// Attempts made (`--retry`: more than 1 when it was retried).
    pub attempts: u32,
    /// When each phase ended (None: the transfer never started, e.g. a bad URL).
    pub timings: Option<Timings>,
}

impl FetchResult {
    /// A complete response with a 2xx status.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The result as one JSON object (one line), keys in a fixed order. `elapsed_ms`
    /// has microsecond precision (a loopback transfer takes well under 1 ms); the
    /// `*_us` phase figures are those of `Timings` (null for a URL that never started).
    pub fn to_json(&self) -> String {
        let file = self.file.as_ref().map(|p| p.display().to_string());
        let timings = self.timings.map_or_else(
            || "\"dns_us\":null,\"connect_us\":null,\"tls_us\":null,\"ttfb_us\":null,\"total_us\":null".into(),
            |t| t.json_fields(),
        );
        format!(
            "{{\"url\":{},\"status\":{},\"bytes\":{},\"wire_bytes\":{},\"elapsed_ms\":{:.3},\"redirects\":{},\"file\":{},\"error\":{},\"attempts\":{},{timings}}}",
            json!(self.url),
            json!(self.status),
            self.bytes,
            self.wire_bytes,
            self.elapsed.as_secs_f64() * 1000.0,
            self.redirects,
            json!(file),
            json!(self.error),
            self.attempts,
        )
    }

    /// The result as one line for people.
    pub fn human(&self) -> String {
        let ms = self.elapsed.as_secs_f64() * 1000.0;
        let mut redirects = match self.redirects {
            0 => String::new(),
            1 => ", 1 redirect".into(),
            n => format!(", {n} redirects"),
        };
        if self.attempts > 1 && self.error.is_none() {
            redirects.push_str(&format!(", {} attempts", self.attempts));
        }
        match (&self.error, self.status) {
            (Some(e), _) => format!("FAIL {}: {e} ({ms:.0} ms{redirects})", self.url),
            (None, status) => {
                let file = match &self.file {
                    Some(p) => format!(" -> {}", p.display()),
                    None => String::new(),
                };
                format!(
                    "{} {} {} bytes in {ms:.0} ms{redirects}{file}",
                    status.unwrap_or(0),
                    self.url,
                    self.bytes
                )
            }
        }
    }
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultFormat {
    /// One line per URL for people.
    Human,
    /// One JSON object per URL (JSON lines).
    Json,
    /// Nothing printed (a library caller reads `Fetcher::results`).
    Silent,
}

/// Prints results as they come and keeps the totals.
pub struct Reporter {
    format: ResultFormat,
    /// Results go to stderr when stdout carries the body.
    to_stderr: bool,
    bar: Option<ProgressBar>,
    /// Result lines go to the terminal the bar is on: clear the bar around each one.
    share_terminal: bool,
    last_draw: Instant,
    /// URLs finished so far.
    pub done: u64,
    /// Of those, not a complete 2xx response.
    pub failed: u64,
    /// Body bytes received so far (all transfers).
    pub bytes: u64,
}

impl Reporter {
    /// A reporter for `total` URLs; a progress bar when stderr is a terminal and there
    /// is more than one URL.
    pub fn new(format: ResultFormat, to_stderr: bool, total: usize) -> Reporter {
        let bar = (total > 1 && format != ResultFormat::Silent && io::stderr().is_terminal()).then(
            || {
                let bar = ProgressBar::new(total as u64);
                if let Ok(style) = ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} URLs  {msg}  {elapsed_precise}",
                ) {
                    bar.set_style(style);
                }
                bar
            },
        );
        let share_terminal = bar.is_some() && (to_stderr || io::stdout().is_terminal());
        Reporter {
            format,
            to_stderr,
            bar,
            share_terminal,
            last_draw: Instant::now(),
            done: 0,
            failed: 0,
            bytes: 0,
        }
    }

    /// Body bytes arrived (for the progress bar).
    pub fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }

    /// Count one finished URL's result; returns its line (without newline) when
    /// results are printed. The fetcher has the writer thread print it, after the
    /// output handed over before it (`Output::print`): a result line is output like a
    /// body, and a stdout nobody reads must not stall the loop for it either.
    /// (Lines are handed over in batches: one thread hand-off per line would cost more
    /// than the printing on a busy run of small pages.)
    pub fn record(&mut self, result: &FetchResult) -> Option<String> {
        self.done += 1;
        if !result.succeeded() {
            self.failed += 1;
        }
        if let Some(bar) = &self.bar {
            // The count moves with every result; `tick` only throttles the message.
            bar.set_position(self.done);
        }
        match self.format {
            ResultFormat::Human => Some(result.human()),
            ResultFormat::Json => Some(result.to_json()),
            ResultFormat::Silent => None,
        }
    }

    /// Result lines go to stderr (stdout carries the body).
    pub fn to_stderr(&self) -> bool {
        self.to_stderr
    }

    /// The progress bar, when result lines go to the terminal it is drawn on: the
    /// writer clears it around each line (`ProgressBar::suspend`).
    pub fn bar_to_clear(&self) -> Option<ProgressBar> {
        self.bar.clone().filter(|_| self.share_terminal)
    }

    /// Result lines could not be printed (`error`), `succeeded` of them successes. A
    /// result nobody can read is not a success: the exit status must say so.
    pub fn print_failed(&mut self, succeeded: usize, error: &str) {
        log::warn!("{error}");
        self.failed += succeeded as u64;
    }

    /// Redraw the bar, at most ten times a second; `now` is the loop's time.
    pub fn tick(&mut self, now: Instant) {
        let Some(bar) = &self.bar else {
            return;
        };
        if now.saturating_duration_since(self.last_draw) < Duration::from_millis(100) {
            return;
        }
        self.last_draw = now;
        bar.set_position(self.done);
        bar.set_message(format!(
            "{:.1} MB  {} failed",
            self.bytes as f64 / 1e6,
            self.failed
        ));
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// "2 s", "0.5 s".
pub fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// An I/O error in a few words ("connection refused"), without "(os error 111)".
pub fn io_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::TimedOut => e
            .get_ref()
            .map_or_else(|| "timeout".into(), |inner| inner.to_string()),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

/// Why a connection under a transfer closed, in one line.
pub fn close_text(reason: &CloseReason, started: bool, body_bytes: u64) -> String {
    let when = if started {
        format!("after {body_bytes} body bytes")
    } else {
        "before any response".into()
    };
    match reason {
        CloseReason::Error(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            format!("connection reset by the server {when}")
        }
        CloseReason::Error(e) => format!("connection error {when}: {}", io_text(e)),
        other => format!("connection closed {when}: {other}"),
    }
}
