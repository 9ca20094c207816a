//! One `netloop stress` run, from options to exit status.
//!
//! In order: check the options (`plan.rs`) and `--server-pid`; take this instance's
//! share with `--segment` (`segment.rs`); read the machine's limits and refuse what
//! cannot fit (`preflight.rs`); choose the source addresses (`sources.rs`); decide how
//! many processes the open-file limit calls for; run them (`run_single` here, or the
//! workers, `workers.rs`); then write the `--hdr-log`, print the report and judge it
//! (`verdict`: exit 0 only if everything asked for was opened and held, and nothing
//! interrupted the run).

use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use crate::apps::stress::output::Claimed;
use crate::apps::stress::plan::invalid;
use crate::apps::stress::preflight::{self, Ask, Limits};
use crate::apps::stress::report::Report;
use crate::apps::stress::{
    hdrlog, memory, plan, plot, run_single, sources, workers, StressOptions,
};
use crate::core::Target;

/// Descriptors a process keeps for itself (stdio, epoll, pipes, ...).
pub const RESERVED_FDS: u64 = 64;

/// Run `netloop stress` and print the report; Err means the run failed. With worker
/// processes, `worker_args` gives the command line (after the program) of a worker with
/// the given share of the options: the command line is the caller's business.
pub fn stress(
    opts: &StressOptions,
    worker_args: &dyn Fn(&StressOptions) -> Vec<String>,
) -> io::Result<()> {
    if opts.idle + opts.active == 0 {
        return Err(invalid(
            "nothing to do: give --idle N and/or --active M".into(),
        ));
    }
    if opts.plot.is_some() && opts.active == 0 {
        return Err(invalid(
            "--plot draws the active connections' latency: give --active M too".into(),
        ));
    }
    // The output files, created now: an existing one is refused before any connect.
    let mut outputs = Outputs::claim(opts)?;
    // This instance's share of a split test (all of it without --segment).
    let opts = &segment_share(opts);
    let total = (opts.idle + opts.active) as u64;
    if total == 0 {
        // A segment with nothing to do (more instances than connections): an empty,
        // successful report, so that the merge sees every segment.
        let report = Report {
            segments: opts.segment.iter().map(|s| s.to_string()).collect(),
            ..Report::default()
        };
        return finish(opts, report, &mut outputs);
    }
    // Check every option here, before any worker starts (each worker checks its share).
    let checked = plan(opts)?;
    memory::check_pids(&opts.server_pids)?;
    // Preflight: the machine's limits, read once, and a refusal now rather than later.
    let mut limits = Limits::read();
    if let Some(ports) = opts.ports_per_source {
        limits.port_range = Some((1, ports.max(1) as u32));
    }
    let loopback = match &checked.target {
        Target::Tcp(addr) => addr.ip().is_loopback(),
        Target::Unix(_) => true,
    };
    preflight::check(
        Ask {
            conns: total,
            loopback,
        },
        &limits,
    )?;
    let sources = sources::choose(
        &checked.target,
        opts.source_ips.as_deref(),
        total,
        opts.segment,
        &limits,
    )?;
    if sources.automatic {
        if let Some(text) = &sources.text {
            log::info!(
                "source addresses {text}: one address has {} ports towards one target",
                limits.ports_per_source()
            );
        }
    }
    let opts = &StressOptions {
        source_ips: sources.text.clone(),
        ..opts.clone()
    };
    let limit = limits.nofile;
    let per_process = limit.saturating_sub(RESERVED_FDS).max(1);
    let workers = opts
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
    if workers > 1 && opts.record.is_some() {
        return Err(invalid(format!(
            "--record records one loop, and {workers} worker processes would run: record a \
             run of at most {per_process} connections (or with --workers 1)"
        )));
    }
    let mut report = if workers == 1 {
        run_single(opts)?
    } else {
        workers::run_workers(opts, workers, worker_args)?
    };
    report.source_ips = sources.text;
    report.source_ips_automatic = sources.automatic;
    finish(opts, report, &mut outputs)
}

/// The split of the options for `--segment K/N` (`segment.rs`): this instance's exact
/// share of the connections, and the rates in proportion.
fn segment_share(opts: &StressOptions) -> StressOptions {
    let Some(seg) = opts.segment else {
        return opts.clone();
    };
    let (idle, active) = (seg.share(opts.idle as u64), seg.share(opts.active as u64));
    let conns = (opts.idle + opts.active) as f64;
    StressOptions {
        idle: idle as usize,
        active: active as usize,
        rate: opts
            .rate
            .filter(|_| idle + active > 0)
            .map(|r| r * (idle + active) as f64 / conns),
        rate_limit: seg.rate_share(opts.rate_limit, opts.active as u64),
        ..opts.clone()
    }
}

/// The files a run writes, created before it begins (`output.rs`).
struct Outputs {
    hdr_log: Option<Claimed>,
    plot: Option<Claimed>,
}

impl Outputs {
    fn claim(opts: &StressOptions) -> io::Result<Outputs> {
        Ok(Outputs {
            hdr_log: Claimed::maybe(opts.hdr_log.as_deref(), "--hdr-log")?,
            plot: Claimed::maybe(opts.plot.as_deref(), "--plot")?,
        })
    }
}

/// The chart of one run (`--plot`): its latency, labelled with what it held.
pub fn plot_run(report: &Report) -> io::Result<String> {
    let label = plot::label(report);
    let title = match report.segments.as_slice() {
        [] => "netloop stress: latency of the active connections".to_string(),
        segments => format!(
            "netloop stress: latency of the active connections (segments {})",
            segments.join(" ")
        ),
    };
    plot::svg(
        &title,
        &[plot::Series {
            label,
            latency: &report.latency,
        }],
    )
}

/// The end of every run: note the segment and start time, write the log and the plot,
/// print, judge.
fn finish(opts: &StressOptions, mut report: Report, outputs: &mut Outputs) -> io::Result<()> {
    report.segments = opts.segment.iter().map(|s| s.to_string()).collect();
    report.start_at = opts
        .start_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    if let Some(log) = &mut outputs.hdr_log {
        hdrlog::write_log(log, &report)?;
    }
    if let Some(plot) = &mut outputs.plot {
        plot.write(plot_run(&report)?.as_bytes())?;
    }
    print_report(opts, &report)?;
    verdict(&report)
}

/// Exit status: did the run hold what was asked?
pub fn verdict(report: &Report) -> io::Result<()> {
    if let Some(signal) = &report.interrupted {
        return Err(io::Error::other(format!(
            "interrupted by {signal}; the report above covers what was measured until then"
        )));
    }
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

/// The report on stdout (`--json`: JSON on stdout, the text on stderr).
pub fn print_report(opts: &StressOptions, report: &Report) -> io::Result<()> {
    print_report_as(opts.json, report)
}

/// The report on stdout, as JSON (the text then on stderr) or as text.
pub fn print_report_as(json: bool, report: &Report) -> io::Result<()> {
    if json {
        eprint!("{}", report.human());
        let mut out = io::stdout().lock();
        writeln!(out, "{}", report.to_json(false))?;
        out.flush()
    } else {
        print!("{}", report.human());
        io::stdout().flush()
    }
}
