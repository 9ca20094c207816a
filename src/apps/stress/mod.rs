//! `netloop stress`: hold many idle connections, measure the active ones.
//!
//! The question every event-loop server must answer: does latency stay flat while
//! 20,000 or 100,000 clients sit idle? This command opens `--idle N` connections that
//! send nothing, `--active M` connections doing timed round trips, holds them for
//! `--hold` seconds, and reports (`--json`: one object on stdout).
//!
//! - `probe.rs`: the handler on the loop (connect, hold, measure).
//! - `http.rs`: reading one HTTP response per round trip for `--probe http`.
//! - `report.rs`: the results, as JSON and for people, merged across processes.
//! - `workers.rs`: more connections than one process may open (the open-file limit here
//!   is 20,000) are spread over worker processes of this same program.

pub mod probe;
pub mod report;
pub mod workers;

use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::apps::client::resolve_addr;
use crate::core::Handler;
use crate::core::{Ctx, EventLoop, LoopConfig, Target};
use probe::{Plan, ProbeKind, ProbeState, Stress};
use report::{rss_kb, Report};

/// Options of `netloop stress`.
#[derive(Clone, Debug, clap::Args)]
pub struct StressArgs {
    /// Target HOST:PORT (not needed with --unix).
    #[arg(value_name = "ADDR", required_unless_present = "unix")]
    pub addr: Option<String>,
    /// Connect to a Unix stream socket instead.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    pub unix: Option<PathBuf>,
    /// Idle connections to open and hold (give --idle, --active or both).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle: usize,
    /// Connections doing timed round trips the whole time.
    #[arg(long, default_value_t = 0, value_name = "M")]
    pub active: usize,
    /// Bytes per echo round trip (--probe echo only).
    #[arg(long, default_value_t = 64, value_name = "S")]
    pub size: usize,
    /// What active connections send and expect.
    #[arg(long, value_enum, default_value = "echo")]
    pub probe: ProbeKind,
    /// Path requested by `--probe http`.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    /// Seconds to hold the connections (and measure) once they are open.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub hold: f64,
    /// New connections per second (default: as fast as the target accepts).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Most connects started but not yet completed at any time.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_inflight: usize,
    /// Seconds a connect may take before it counts as a timeout.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// Idle connections send --keepalive-data every SECS.
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<f64>,
    /// What idle connections send with --keepalive.
    #[arg(long, default_value = "\n", value_name = "STR")]
    pub keepalive_data: String,
    /// Source addresses to spread connections over, e.g. 127.0.0.2-127.0.0.40 or a
    /// comma-separated list (each address has its own ~28,000 ephemeral ports).
    #[arg(long, value_name = "RANGE")]
    pub source_ips: Option<String>,
    /// Worker processes (default: enough for the open-file limit).
    #[arg(long, value_name = "W")]
    pub workers: Option<usize>,
    /// Fixed total round trips per second for the active connections (wrk2-style:
    /// latency counted from the intended send time).
    #[arg(long, value_name = "RPS")]
    pub rate_limit: Option<f64>,
    /// Print exactly one JSON object on stdout (the human report goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// The target's process id (same machine): report its RSS growth per open
    /// connection, read half way through the hold.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Internal: run as a worker of a parent `netloop stress`.
    #[arg(long, hide = true)]
    pub worker: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn seconds(name: &str, secs: f64) -> io::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| invalid(format!("{name} must be a non-negative number of seconds")))
}

/// Parse `127.0.0.2-127.0.0.40` or `127.0.0.2,127.0.0.3` into addresses.
pub fn parse_source_ips(text: &str) -> io::Result<Vec<IpAddr>> {
    let bad = || invalid(format!("--source-ips {text:?}: expected A-B or A,B,C"));
    if let Some((a, b)) = text.split_once('-') {
        let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 65_536 {
            return Err(bad());
        }
        return Ok((a..=b).map(|n| IpAddr::V4(n.into())).collect());
    }
    text.split(',')
        .map(|s| s.trim().parse().map_err(|_| bad()))
        .collect()
}

/// Turn the options into a plan for `idle` + `active` connections.
pub fn plan(args: &StressArgs, idle: usize, active: usize) -> io::Result<Plan> {
    let (target, host) = match (&args.unix, &args.addr) {
        (Some(path), _) => (Target::Unix(path.clone()), "localhost".to_string()),
        (None, Some(text)) => (Target::Tcp(resolve_addr(text)?), text.clone()),
        (None, None) => return Err(invalid("give ADDR or --unix PATH".into())),
    };
    if args.probe == ProbeKind::Echo && args.active > 0 && args.size == 0 {
        return Err(invalid("--size must be at least 1 for --probe echo".into()));
    }
    if matches!(args.rate, Some(r) if r <= 0.0) || matches!(args.rate_limit, Some(r) if r <= 0.0) {
        return Err(invalid("--rate and --rate-limit must be positive".into()));
    }
    let http_request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netloop-stress\r\n\r\n",
        args.path
    )
    .into_bytes();
    Ok(Plan {
        target,
        idle,
        active,
        size: args.size,
        probe: args.probe,
        http_request,
        hold: seconds("--hold", args.hold)?,
        rate: args.rate,
        max_inflight: args.max_inflight.max(1),
        connect_timeout: seconds("--connect-timeout", args.connect_timeout)?,
        keepalive: args
            .keepalive
            .map(|s| seconds("--keepalive", s))
            .transpose()?,
        keepalive_data: args.keepalive_data.clone().into_bytes(),
        sources: match &args.source_ips {
            Some(text) => parse_source_ips(text)?,
            None => Vec::new(),
        },
        rate_limit: args.rate_limit,
    })
}

/// Descriptors a process keeps for itself (stdio, epoll, pipes, ...).
const RESERVED_FDS: u64 = 64;

/// Run `netloop stress`; the report is printed; Err means the run failed.
pub fn stress(args: &StressArgs) -> io::Result<()> {
    let total = (args.idle + args.active) as u64;
    if total == 0 {
        return Err(invalid(
            "nothing to do: give --idle N and/or --active M".into(),
        ));
    }
    let limit = crate::core::io_util::raise_nofile_limit();
    let per_process = limit.saturating_sub(RESERVED_FDS).max(1);
    if args.worker {
        return workers::run_as_worker(args);
    }
    let workers = args
        .workers
        .unwrap_or_else(|| total.div_ceil(per_process) as usize)
        .max(1);
    if total.div_ceil(workers as u64) > per_process {
        return Err(invalid(format!(
            "{total} connections over {workers} process(es) exceeds the open-file limit of \
             {limit} per process; use --workers {}",
            total.div_ceil(per_process)
        )));
    }
    let report = if workers == 1 {
        run_single(args)?
    } else {
        workers::run_workers(args, workers)?
    };
    print_report(args, &report)?;
    verdict(&report)
}

/// Exit status: did the run hold what was asked?
fn verdict(report: &Report) -> io::Result<()> {
    if report.conns_open == 0 && report.conns_requested > 0 {
        let why = report
            .first_error
            .clone()
            .unwrap_or_else(|| "no connection opened".into());
        return Err(io::Error::other(format!("target unreachable: {why}")));
    }
    if report.conns_open < report.conns_requested || report.still_open_at_end < report.conns_open {
        return Err(io::Error::other(format!(
            "could not hold what was asked: {} of {} connections opened, {} still open at the end",
            report.conns_open, report.conns_requested, report.still_open_at_end
        )));
    }
    Ok(())
}

fn print_report(args: &StressArgs, report: &Report) -> io::Result<()> {
    if args.json {
        eprint!("{}", report.human());
        let mut out = io::stdout().lock();
        writeln!(out, "{}", report.to_json(false))?;
        out.flush()
    } else {
        print!("{}", report.human());
        io::stdout().flush()
    }
}

/// Live progress on a terminal; nothing otherwise.
pub struct ProgressLine {
    bar: Option<indicatif::ProgressBar>,
    last: Instant,
    last_round_trips: u64,
}

impl ProgressLine {
    /// A progress line on stderr when it is a terminal.
    pub fn new() -> ProgressLine {
        let bar = io::stderr()
            .is_terminal()
            .then(indicatif::ProgressBar::new_spinner);
        ProgressLine {
            bar,
            last: Instant::now(),
            last_round_trips: 0,
        }
    }

    /// Redraw (at most five times a second).
    pub fn update(&mut self, p: probe::Progress) {
        let Some(bar) = &self.bar else {
            return;
        };
        let elapsed = self.last.elapsed();
        if elapsed < Duration::from_millis(200) {
            return;
        }
        let rate =
            (p.round_trips.saturating_sub(self.last_round_trips)) as f64 / elapsed.as_secs_f64();
        self.last = Instant::now();
        self.last_round_trips = p.round_trips;
        bar.set_message(format!(
            "open {}/{}  connect errors {}  round trips/s {:.0}  p99 {} us",
            p.open, p.requested, p.connect_errors, rate, p.p99_us
        ));
        bar.tick();
    }

    /// Remove the line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for ProgressLine {
    fn default() -> Self {
        ProgressLine::new()
    }
}

/// The stress handler plus a progress line, in this process.
struct Single {
    stress: Stress,
    progress: ProgressLine,
    server_pid: Option<u32>,
    server_rss_before: Option<u64>,
    server_measured: Option<Option<f64>>,
}

impl Handler for Single {
    type State = ProbeState;

    fn on_open(&mut self, ctx: &mut Ctx<ProbeState>, token: mio::Token) {
        self.stress.on_open(ctx, token)
    }
    fn on_data(&mut self, ctx: &mut Ctx<ProbeState>, token: mio::Token, data: &mut [u8]) -> usize {
        self.stress.on_data(ctx, token, data)
    }
    fn on_deadline(&mut self, ctx: &mut Ctx<ProbeState>, token: mio::Token) {
        self.stress.on_deadline(ctx, token)
    }
    fn on_close(
        &mut self,
        ctx: &mut Ctx<ProbeState>,
        token: mio::Token,
        closed: crate::core::Closed<ProbeState>,
    ) {
        self.stress.on_close(ctx, token, closed)
    }
    fn on_turn(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.stress.on_turn(ctx);
        // Measure the server half way through the hold: by then it has accepted every
        // connection, and none has been closed yet.
        if let (Some(half), None) = (self.stress.mid_hold(), self.server_measured) {
            if Instant::now() >= half {
                let open = self.stress.progress().open;
                self.server_measured = Some(server_rss_per_conn(
                    self.server_pid,
                    self.server_rss_before,
                    open,
                ));
            }
        }
        self.progress.update(self.stress.progress());
    }
}

/// The target's RSS growth per connection, from /proc.
pub fn server_rss_per_conn(pid: Option<u32>, before_kb: Option<u64>, ctx: u64) -> Option<f64> {
    let after = rss_kb(&pid?.to_string())?;
    let before = before_kb?;
    (ctx > 0).then(|| (after as f64 - before as f64) * 1024.0 / ctx as f64)
}

/// Run every connection on this process's loop.
pub fn run_single(args: &StressArgs) -> io::Result<Report> {
    let plan = plan(args, args.idle, args.active)?;
    let mut handler = Single {
        stress: Stress::new(plan),
        progress: ProgressLine::new(),
        server_pid: args.server_pid,
        server_rss_before: args.server_pid.and_then(|p| rss_kb(&p.to_string())),
        server_measured: None,
    };
    let mut event_loop: EventLoop<ProbeState> = EventLoop::new(LoopConfig::default())?;
    event_loop.ctx().timer_after(Duration::ZERO, 0); // the first turn starts connecting
    event_loop.run(&mut handler)?;
    handler.progress.finish();
    let mut report = handler.stress.report;
    report.client_rss_kb = rss_kb("self").unwrap_or(0);
    report.server_rss_bytes_per_conn = handler.server_measured.flatten();
    Ok(report)
}
