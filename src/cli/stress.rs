//! `netloop stress`: its command line.
//!
//! `Args` is the `clap` struct; `run` turns it into the library's `StressOptions` and
//! calls `netloop::apps::stress`. The command line also goes the other way: with
//! `--workers`, the library asks `worker_args` for the command line of each worker (this
//! same program, `stress --worker` with that worker's share of the options), since only
//! this file knows the options' names.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netloop::apps::stress::merge::{self, MergeOptions};
use netloop::apps::stress::pacing::Pacing;
use netloop::apps::stress::plan::ProbeKind;
use netloop::apps::stress::segment::Segment;
use netloop::apps::stress::{self, worker, StressOptions};

use super::args::secs;

/// Options of `netloop stress`.
#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// `netloop stress merge FILE...` instead of a run.
    #[command(subcommand)]
    pub command: Option<Command>,
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
    pub probe: Probe,
    /// Path requested by `--probe http`.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    /// Seconds to hold the connections (and measure) once they are open.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = secs)]
    pub hold: Duration,
    /// New connections per second (default: as fast as the target accepts).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Most connects started but not yet completed at any time (the cap of the adaptive
    /// window; with --pacing fixed, the window itself).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_inflight: usize,
    /// adaptive: find the target's pace (an in-flight window and a connect rate that grow
    /// while connects complete quickly and halve on stalls, timeouts, resets, refusals;
    /// --max-inflight and --rate cap them); fixed: exactly --max-inflight and --rate.
    #[arg(long, value_enum, default_value = "adaptive")]
    pub pacing: PacingArg,
    /// Seconds a connect may take before it counts as a timeout.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = secs)]
    pub connect_timeout: Duration,
    /// Idle connections send --keepalive-data every SECS.
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub keepalive: Option<Duration>,
    /// What idle connections send with --keepalive.
    #[arg(long, default_value = "\n", value_name = "STR")]
    pub keepalive_data: String,
    /// Source addresses to spread connections over, e.g. 10.0.0.2-10.0.0.40 or a
    /// comma-separated list (each address has its own ephemeral ports, about 13,000 of
    /// them usable at full speed). For a loopback target, chosen automatically (127.0.0.x)
    /// when one address will not do; for others, asked for up front when needed.
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
    /// The target's process id(s) on this machine, comma-separated or repeated; each
    /// counts with all its descendants (a supervisor's PID covers its workers): report
    /// the server's RSS growth per open connection, read half way through the hold.
    #[arg(long = "server-pid", value_name = "PID", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Record the loop's events as JSON lines into this new file, for `netloop
    /// timeline` (one process: not with worker processes).
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Most events --record writes.
    #[arg(long, default_value_t = 1_000_000, value_name = "N", value_parser = super::args::at_least_one)]
    pub record_limit: usize,
    /// Do exactly this instance's share K of N (0 <= K < N) of --idle, --active, --rate
    /// and --rate-limit, for a test split over N instances (or hosts); the N shares add
    /// up to the whole for any N. Merge their --hdr-log files with `stress merge`.
    #[arg(long, value_name = "K/N")]
    pub segment: Option<Segment>,
    /// Connect, then begin the measured hold at this wall-clock time (seconds since the
    /// Unix epoch, fractions allowed), so instances on many hosts measure the same window.
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    pub start_at: Option<SystemTime>,
    /// Write the active connections' latency as an HdrHistogram interval log (V2, one
    /// histogram per second, microseconds), with the report's counters as a comment,
    /// into this new file (an existing file is refused, never overwritten).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Draw the active connections' latency by percentile as an SVG chart into this new
    /// file (HdrHistogram's percentile distribution: 50%, 90%, 99%, 99.9%, ... on a log
    /// scale). An existing file is refused, never overwritten.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Internal: keep per-interval latency (workers of a run with --hdr-log).
    #[arg(long, hide = true)]
    pub log_intervals: bool,
    /// Internal (tests): plan as if one source address had N ephemeral ports.
    #[arg(long, hide = true, value_name = "N")]
    pub ports_per_source: Option<u64>,
    /// Internal: run as a worker of a parent `netloop stress`.
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// `netloop stress`'s subcommands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Add up the --hdr-log files of a split test (--segment K/N on each instance) and
    /// print the report of the whole: counters summed, histograms merged exactly. Files
    /// of several runs (each log, or the segments of one split) are reported run by run,
    /// and --plot draws them on one chart.
    Merge(MergeArgs),
}

/// Options of `netloop stress merge`.
#[derive(Clone, Debug, clap::Args)]
pub struct MergeArgs {
    /// The --hdr-log files: one per instance of a split test; the segments of one split
    /// (the same N and --start-at) are one run, any other log a run of its own.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print exactly one JSON object on stdout (the human report goes to stderr); with
    /// several runs, `{"runs": [{"label", "files", "report"}, ...]}`.
    #[arg(long)]
    pub json: bool,
    /// Also write the merged interval log into this new file (one run only).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Draw every run's latency by percentile on one SVG chart in this new file (one
    /// line and legend entry per run, e.g. 0 idle against 1,000,000 idle).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// The legend entry of each run, in the order of their first file (repeat the
    /// option; default: what the run held, e.g. "1,000,000 idle + 10 active").
    #[arg(long, value_name = "TEXT")]
    pub label: Vec<String>,
}

/// Seconds since the Unix epoch (fractions allowed), as a wall-clock time.
fn unix_time(text: &str) -> Result<SystemTime, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds since 1970 (e.g. `date +%s`)"))?;
    Duration::try_from_secs_f64(secs)
        .map(|d| UNIX_EPOCH + d)
        .map_err(|_| format!("`{text}` is not a time after 1970"))
}

/// `netloop stress merge`: the report of the whole split test (or of each run given).
fn merge(args: &MergeArgs) -> io::Result<()> {
    merge::run(&MergeOptions {
        files: args.files.clone(),
        json: args.json,
        hdr_log: args.hdr_log.clone(),
        plot: args.plot.clone(),
        labels: args.label.clone(),
    })
}

/// `--pacing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PacingArg {
    /// Adapt the window and the rate to the target.
    Adaptive,
    /// Exactly --max-inflight and --rate.
    Fixed,
}

impl PacingArg {
    fn pacing(self) -> Pacing {
        match self {
            PacingArg::Adaptive => Pacing::Adaptive,
            PacingArg::Fixed => Pacing::Fixed,
        }
    }

    fn name(pacing: Pacing) -> &'static str {
        match pacing {
            Pacing::Adaptive => "adaptive",
            Pacing::Fixed => "fixed",
        }
    }
}

/// What active connections send and expect (`--probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Probe {
    /// Send `--size` bytes, expect the same bytes back.
    Echo,
    /// Send an HTTP/1.1 GET (keep-alive), read one response.
    Http,
    /// Active connections send nothing (only hold).
    None,
}

impl Probe {
    fn kind(self) -> ProbeKind {
        match self {
            Probe::Echo => ProbeKind::Echo,
            Probe::Http => ProbeKind::Http,
            Probe::None => ProbeKind::None,
        }
    }

    /// The option value naming `kind`, for a worker's command line.
    fn name(kind: ProbeKind) -> &'static str {
        match kind {
            ProbeKind::Echo => "echo",
            ProbeKind::Http => "http",
            ProbeKind::None => "none",
        }
    }
}

/// Run `netloop stress` (or, with the hidden `--worker`, one of its workers).
pub fn run(args: &Args) -> io::Result<()> {
    if let Some(Command::Merge(m)) = &args.command {
        return merge(m);
    }
    let options = StressOptions {
        addr: args.addr.clone(),
        unix: args.unix.clone(),
        idle: args.idle,
        active: args.active,
        size: args.size,
        probe: args.probe.kind(),
        path: args.path.clone(),
        hold: args.hold,
        rate: args.rate,
        max_inflight: args.max_inflight,
        pacing: args.pacing.pacing(),
        segment: args.segment,
        start_at: args.start_at,
        hdr_log: args.hdr_log.clone(),
        plot: args.plot.clone(),
        log_intervals: args.log_intervals,
        connect_timeout: args.connect_timeout,
        keepalive: args.keepalive,
        keepalive_data: args.keepalive_data.clone(),
        source_ips: args.source_ips.clone(),
        ports_per_source: args.ports_per_source,
        workers: args.workers,
        rate_limit: args.rate_limit,
        json: args.json,
        server_pids: args.server_pid.clone(),
        record: args.record.clone(),
        record_limit: args.record_limit as u64,
    };
    if args.worker {
        worker::run_as_worker(&options)
    } else {
        stress::stress(&options, &worker_args)
    }
}

/// The command line of a worker with these options (its share). Options are passed as
/// `--name=value`, so a value starting with `-` stays a value.
fn worker_args(opts: &StressOptions) -> Vec<String> {
    // Destructured without `..`: a new option fails to compile here until someone
    // decides how workers get it.
    let StressOptions {
        addr,
        unix,
        idle,
        active,
        size,
        probe,
        path,
        hold,
        rate,
        max_inflight,
        pacing,
        // The parent's (`workers.rs` clears them for a worker), except this one.
        segment: _,
        start_at: _,
        hdr_log: _,
        plot: _,
        log_intervals,
        connect_timeout,
        keepalive,
        keepalive_data,
        source_ips,
        // The parent's business: how many workers, printing, measuring the target, the
        // source addresses (decided by then: `source_ips` holds them).
        ports_per_source: _,
        workers: _,
        json: _,
        server_pids: _,
        // The parent's loop only: refused with workers.
        record: _,
        record_limit: _,
        rate_limit,
    } = opts;
    let mut v: Vec<String> = vec!["stress".into(), "--worker".into()];
    let mut opt = |name: &str, value: String| v.push(format!("--{name}={value}"));
    if let Some(path) = unix {
        opt("unix", path.display().to_string());
    }
    opt("idle", idle.to_string());
    opt("active", active.to_string());
    opt("size", size.to_string());
    opt("probe", Probe::name(*probe).to_string());
    opt("path", path.clone());
    opt("hold", hold.as_secs_f64().to_string());
    opt("max-inflight", max_inflight.to_string());
    opt("pacing", PacingArg::name(*pacing).to_string());
    opt("connect-timeout", connect_timeout.as_secs_f64().to_string());
    opt("keepalive-data", keepalive_data.clone());
    if let Some(r) = rate {
        opt("rate", r.to_string());
    }
    if let Some(k) = keepalive {
        opt("keepalive", k.as_secs_f64().to_string());
    }
    if let Some(s) = source_ips {
        opt("source-ips", s.clone());
    }
    if let Some(r) = rate_limit {
        opt("rate-limit", r.to_string());
    }
    if *log_intervals {
        v.push("--log-intervals".into());
    }
    if let Some(addr) = addr {
        v.push("--".into());
        v.push(addr.clone());
    }
    v
}
