//! `netloop stress`: hold many idle connections, measure the active ones.
//!
//! The question every event-loop server must answer: does latency stay flat while
//! 20,000 or 100,000 clients sit idle? This command opens `--idle N` connections that
//! send nothing, `--active M` connections doing timed round trips, holds them for
//! `--hold` seconds, and reports (`--json`: one object on stdout).
//!
//! Everything that happens *at a time* — the next connect `--rate` allows, the end of
//! the hold and of the drain after it, the server measurement half way through, a
//! connect timeout, a keepalive, a `--rate-limit`ed send — is a loop timer (a key,
//! handled in `on_timer`) or a connection's deadline (`on_deadline`), never a check of
//! the clock in `on_turn`. The loop then sleeps exactly until the next thing due, a
//! turn costs nothing for 20,000 idle connections, and each decision has one place in
//! the code. `on_turn` only redraws the progress line. The loop's clock (`Ctx::now`)
//! times the phases; `Instant::now()` is read only to time round trips to the
//! microsecond (and to pace the progress line's redraws).
//!
//! A run, in the order things happen:
//!
//! - `run.rs`: one run from options to exit status; `plan.rs` checks the options.
//! - `segment.rs`: `--segment K/N`, this instance's exact share of a split test.
//! - `preflight.rs`: the machine's limits, read first; an ask that cannot fit is refused.
//! - `sources.rs`: source addresses, automatic for loopback targets.
//! - `workers.rs` (the parent) and `worker.rs` (a child): more connections than one
//!   process may open (20,000 here) are spread over processes of this same program,
//!   started by `workers/spawn.rs`.
//! - `probe.rs`: the handler on the loop: its state, phases and callbacks; then
//!   `connecting.rs` (starting connects) with `pacing.rs` (how many, how fast) and
//!   `netstat.rs` (the kernel's count of lost SYNs); `hold.rs` (the hold, `--start-at`);
//!   `rounds.rs` (the active connections' round trips, checked and timed).
//! - `report.rs`, `report_json.rs`, `report_text.rs`: the results, merged across
//!   processes; `hdrlog.rs`: `--hdr-log`; `merge.rs`: `stress merge FILE...`;
//!   `plot.rs`: `--plot`, the latency by percentile as an SVG chart; `output.rs`: those
//!   files, claimed before the run (an existing file is refused, never overwritten).
//! - `memory.rs` (RSS, `--server-pid` process trees), `progress.rs` (the live line).
//!
//! The command line is not here: `cli/stress.rs` parses it into `StressOptions`, and
//! turns a worker's share of them back into a command line when workers are started.

pub mod connecting;
pub mod hdrlog;
pub mod hold;
pub mod memory;
pub mod merge;
pub mod netstat;
pub mod output;
pub mod pacing;
pub mod plan;
pub mod plot;
pub mod preflight;
pub mod probe;
pub mod progress;
pub mod report;
pub mod report_json;
pub mod report_text;
pub mod rounds;
pub mod run;
pub mod segment;
pub mod sources;
pub mod worker;
pub mod workers;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use mio::Token;

use crate::core::{Closed, Ctx, EventLoop, Handler, LoopConfig, SignalAction};
use memory::rss_kb;
use pacing::Pacing;
use plan::ProbeKind;
pub use plan::{parse_source_ips, plan};
use probe::{ProbeState, Stress};
pub use progress::ProgressLine;
use report::Report;
pub use run::{stress, RESERVED_FDS};
use segment::Segment;

/// Options of a stress run: the command line's, or one worker's share of them.
#[derive(Clone, Debug)]
pub struct StressOptions {
    /// Target HOST:PORT (unless `unix`).
    pub addr: Option<String>,
    /// A Unix stream socket to connect to instead.
    pub unix: Option<PathBuf>,
    /// Idle connections to open and hold.
    pub idle: usize,
    /// Connections doing timed round trips the whole time.
    pub active: usize,
    /// Bytes per echo round trip.
    pub size: usize,
    /// What active connections send and expect.
    pub probe: ProbeKind,
    /// Path requested by `ProbeKind::Http`.
    pub path: String,
    /// How long to hold the connections (and measure) once they are open.
    pub hold: Duration,
    /// New connections per second (None: as fast as the target accepts).
    pub rate: Option<f64>,
    /// Most connects started but not yet completed at any time.
    pub max_inflight: usize,
    /// Whether the in-flight window and the connect rate adapt to the target.
    pub pacing: Pacing,
    /// This instance's share of a test split over N instances (`--segment K/N`).
    pub segment: Option<Segment>,
    /// Begin the hold at this wall-clock time (`--start-at`).
    pub start_at: Option<SystemTime>,
    /// Write the latency as an HdrHistogram interval log here (`--hdr-log`).
    pub hdr_log: Option<PathBuf>,
    /// Draw the latency by percentile as an SVG chart here (`--plot`).
    pub plot: Option<PathBuf>,
    /// Keep the latency per interval (set for the workers of a run with `hdr_log`).
    pub log_intervals: bool,
    /// How long a connect may take before it counts as a timeout.
    pub connect_timeout: Duration,
    /// Record this process's loop into this new file (`--record`; one process only).
    pub record: Option<PathBuf>,
    /// Most events `record` writes.
    pub record_limit: u64,
    /// Idle connections send `keepalive_data` this often.
    pub keepalive: Option<Duration>,
    /// What idle connections send with `keepalive`.
    pub keepalive_data: String,
    /// Source addresses, as given (`A-B` or `A,B,C`): kept as text so a worker's command
    /// line stays short however many addresses a range holds.
    pub source_ips: Option<String>,
    /// Plan as if one source address had this many ephemeral ports (None: the kernel's
    /// range). For tests of the automatic source addresses with small numbers.
    pub ports_per_source: Option<u64>,
    /// Worker processes (None: enough for the open-file limit).
    pub workers: Option<usize>,
    /// Total round trips per second over all active connections (None: back to back).
    pub rate_limit: Option<f64>,
    /// Print one JSON object on stdout (the human report goes to stderr).
    pub json: bool,
    /// The target's process ids (each standing for its process tree), to report its
    /// memory growth per connection.
    pub server_pids: Vec<u32>,
}

/// The stress handler plus a progress line, in this process.
struct Single {
    stress: Stress,
    progress: ProgressLine,
}

impl Handler for Single {
    type State = ProbeState;

    fn on_open(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.stress.on_open(ctx, token)
    }
    fn on_data(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, data: &mut [u8]) -> usize {
        self.stress.on_data(ctx, token, data)
    }
    fn on_deadline(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.stress.on_deadline(ctx, token)
    }
    fn on_close(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, closed: Closed<ProbeState>) {
        self.stress.on_close(ctx, token, closed)
    }
    fn on_timer(&mut self, ctx: &mut Ctx<ProbeState>, key: u64) {
        self.stress.on_timer(ctx, key)
    }
    fn on_signal(&mut self, ctx: &mut Ctx<ProbeState>, signal: i32) -> SignalAction {
        self.stress.on_signal(ctx, signal)
    }
    fn on_turn(&mut self, _: &mut Ctx<ProbeState>) {
        self.progress.update(self.stress.progress());
    }
}

/// Run every connection on this process's loop.
pub fn run_single(opts: &StressOptions) -> io::Result<Report> {
    let mut handler = Single {
        stress: Stress::new(plan(opts)?),
        progress: ProgressLine::new(),
    };
    let mut event_loop: EventLoop<ProbeState> = EventLoop::new(LoopConfig::default())?;
    // Ctrl-C and SIGTERM end the run early, with a report (`Stress::interrupt`).
    event_loop.handle_signals()?;
    if let Some(path) = &opts.record {
        event_loop.record_to(path, opts.record_limit)?;
    }
    handler.stress.start(event_loop.ctx());
    let ran = event_loop.run(&mut handler);
    let recorded = event_loop.finish_recording();
    ran?;
    recorded?;
    handler.progress.finish();
    let mut report = handler.stress.report;
    report.client_rss_kb = rss_kb("self").unwrap_or(0);
    Ok(report)
}
