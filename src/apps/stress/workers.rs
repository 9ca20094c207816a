//! Worker processes: more connections than one process may open.
//!
//! The open-file limit here is 20,000 descriptors per process, so 60,000 connections
//! need at least four processes. The parent starts W copies of this program in worker
//! mode (`workers/spawn.rs`, with the command line the caller builds for each share),
//! gives each a share of the connections, and talks to each over two socket pairs (its
//! stdin and stdout), all on the parent's own loop:
//!
//! - a worker (`worker.rs`) prints JSON lines: `{"progress":…}` every 250 ms,
//!   `{"connected":…}` when its connect phase is over, and `{"report":…}` (with its
//!   latency histogram) at the end;
//! - when **every** worker is connected, the parent writes `go` to each, so that all
//!   holds — and all measurements — happen while all idle connections are open; half
//!   way through the hold (a loop timer) it reads the target's memory (`--server-pid`);
//! - on Ctrl-C or SIGTERM (which reach only the parent: workers have their own process
//!   group) the parent writes `stop SIGINT` to each; a worker then ends at once and
//!   sends its report, marked as interrupted, and the parent prints the merged report
//!   of what was measured so far (and exits non-zero). A second signal kills the
//!   workers without waiting for their reports.
//!
//! A worker's exit is an event for the parent, not a wait: SIGCHLD comes through the
//! loop and each worker is reaped with a non-blocking `waitpid`. A worker is done when it
//! is reaped and its stdout is closed, and the parent's loop ends when every worker is
//! done. A worker that closes its stdout without a report fails the run, and the others
//! are killed at once rather than left to finish a hold nobody will report; one that
//! reported but does not exit is killed after `STRAGGLER_PATIENCE` (a loop timer).
//! A worker stops when its stdin closes (the parent is gone), and the kernel sends it
//! SIGTERM if the parent dies (`PR_SET_PDEATHSIG`).

use std::io;
use std::time::{Duration, SystemTime};

use log::{debug, warn};
use mio::Token;
use serde_json::Value;

use crate::apps::stress::memory::{server_mem_per_conn, tree_mem_kb, Mem};
use crate::apps::stress::progress::Progress;
use crate::apps::stress::report::Report;
use crate::apps::stress::segment::Segment;
use crate::apps::stress::{ProgressLine, StressOptions};
use crate::core::signal_name;
use crate::core::{Closed, Ctx, EventLoop, Handler, LoopConfig, SignalAction};
use crate::workers::spawn::{add_to_loop, spawn_worker, WorkerCommand, WorkerProcess, WorkerStdin};

/// Parent's timer key: half way through the hold; read the target's memory.
const MEASURE_TIMER: u64 = 1;
/// Parent's timer key: a worker reported `STRAGGLER_PATIENCE` ago and has not exited.
const STRAGGLER_TIMER: u64 = 2;
/// Parent's timer key: `--start-at` has come; release the workers.
const START_TIMER: u64 = 3;
/// How long a worker that sent its report may take to exit before it is killed.
const STRAGGLER_PATIENCE: Duration = Duration::from_secs(10);

/// Worker `i` of `count`'s options: its share of the connections and of the rates. The
/// parent alone measures the target and prints, so a worker gets neither job.
fn worker_options(opts: &StressOptions, count: usize, i: usize) -> StressOptions {
    // The same exact split as `--segment` (shares that add up, differing by one at most).
    let part = Segment {
        k: i as u64,
        n: count.max(1) as u64,
    };
    let (idle, active) = (
        part.share(opts.idle as u64) as usize,
        part.share(opts.active as u64) as usize,
    );
    StressOptions {
        idle,
        active,
        rate: opts.rate.map(|r| r / count.max(1) as f64),
        rate_limit: opts
            .rate_limit
            .filter(|_| active > 0)
            .map(|r| r * active as f64 / opts.active.max(1) as f64),
        workers: None,
        json: false,
        server_pids: Vec::new(),
        // One recording is one loop: refused with workers (`run.rs`).
        record: None,
        // The parent's: it releases the workers at --start-at, writes the log (from
        // their intervals) and notes the segment.
        segment: None,
        start_at: None,
        hdr_log: None,
        plot: None,
        log_intervals: opts.log_intervals || opts.hdr_log.is_some(),
        ..opts.clone()
    }
}

/// One worker as the parent sees it.
struct WorkerRun {
    /// The process, until it is reaped.
    process: Option<WorkerProcess>,
    /// Its stdin on our loop (where `go` is written).
    stdin: Token,
    /// Its stdout on our loop, until EOF.
    stdout: Option<Token>,
    connected: bool,
    progress: Progress,
    report: Option<Report>,
}

/// The parent's handler: reads workers' lines, releases them together, collects reports.
/// A connection's state is the worker whose stdout it is (`None` for their stdins).
struct Parent {
    workers: Vec<WorkerRun>,
    progress: ProgressLine,
    released: bool,
    /// The signal that cut the run short (`stop` was sent to every worker).
    interrupted: Option<String>,
    server_pids: Vec<u32>,
    server_mem_before: Option<Mem>,
    /// The target's memory growth per connection: (RSS, anonymous RSS), bytes.
    server_mem_per_conn: Option<(f64, f64)>,
    hold: Duration,
    /// `--start-at`: release the workers then, not before.
    start_at: Option<SystemTime>,
    /// The `STRAGGLER_TIMER` is set (once is enough: it checks every worker).
    straggler_timer: bool,
    failure: Option<String>,
}

impl Parent {
    fn on_line(&mut self, ctx: &mut Ctx<Option<usize>>, i: usize, line: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            warn!(
                "worker {i}: unexpected output {:?}",
                String::from_utf8_lossy(line)
            );
            return;
        };
        if let Some(p) = v.get("progress") {
            self.workers[i].progress = Progress::from_json(p);
        }
        if v.get("connected").is_some() {
            self.workers[i].connected = true;
            self.release_when_all_connected(ctx);
        }
        if let Some(r) = v.get("report") {
            match Report::from_json(r) {
                Some(report) => self.workers[i].report = Some(report),
                None => self.fail(format!("worker {i} sent an unreadable report")),
            }
        }
    }

    /// Once every worker is connected (or gone), tell them all to hold.
    fn release_when_all_connected(&mut self, ctx: &mut Ctx<Option<usize>>) {
        if self.released || self.failure.is_some() || self.interrupted.is_some() {
            return;
        }
        if !self
            .workers
            .iter()
            .all(|w| w.connected || w.stdout.is_none())
        {
            return;
        }
        if let Some(at) = self.start_at {
            // --start-at: not before that wall-clock moment (checked again on the timer).
            if let Ok(wait) = at.duration_since(SystemTime::now()) {
                if !wait.is_zero() {
                    let ms = wait.as_micros().div_ceil(1000) as u64;
                    ctx.timer_after(Duration::from_millis(ms.max(1)), START_TIMER);
                    return;
                }
            }
        }
        self.released = true;
        if !self.server_pids.is_empty() {
            // By then the target has accepted every connection, and none has closed.
            ctx.timer_after(self.hold / 2, MEASURE_TIMER);
        }
        for w in &self.workers {
            ctx.send(w.stdin, b"go\n");
        }
    }

    /// The run has failed: keep the first reason, and kill every worker still running
    /// (their reports would not be printed).
    fn fail(&mut self, msg: String) {
        self.failure.get_or_insert(msg);
        for w in &self.workers {
            if let Some(process) = &w.process {
                process.signal(libc::SIGKILL);
            }
        }
    }

    /// Reap every worker that has exited.
    fn reap(&mut self) {
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(status) = w.process.as_mut().and_then(WorkerProcess::try_reap) {
                debug!("worker {i} exited: {status}");
                w.process = None;
            }
        }
    }

    /// End the loop once every worker is reaped and its stdout read to the end.
    fn stop_when_done(&self, ctx: &mut Ctx<Option<usize>>) {
        if self
            .workers
            .iter()
            .all(|w| w.process.is_none() && w.stdout.is_none())
        {
            ctx.stop();
        }
    }

    fn total_progress(&self) -> Progress {
        let mut total = Progress::default();
        for w in &self.workers {
            total.add(&w.progress);
        }
        total
    }
}

impl Handler for Parent {
    type State = Option<usize>;

    fn on_data(&mut self, ctx: &mut Ctx<Option<usize>>, token: Token, data: &mut [u8]) -> usize {
        let Some(i) = ctx.state(token).copied().flatten() else {
            return data.len();
        };
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = data[used..used + end].to_vec();
            used += end + 1;
            self.on_line(ctx, i, &line);
        }
        used
    }

    fn on_close(&mut self, ctx: &mut Ctx<Option<usize>>, _: Token, closed: Closed<Option<usize>>) {
        let Some(i) = closed.state else {
            return; // a worker's stdin: its stdout says what became of it
        };
        self.workers[i].stdout = None;
        if self.workers[i].report.is_none() {
            self.fail(format!("worker {i} exited without a report"));
        }
        self.reap();
        if self.workers[i].process.is_some() && !self.straggler_timer {
            self.straggler_timer = true;
            ctx.timer_after(STRAGGLER_PATIENCE, STRAGGLER_TIMER);
        }
        // A worker gone before connecting no longer holds the others back.
        self.release_when_all_connected(ctx);
        self.stop_when_done(ctx);
    }

    fn on_signal(&mut self, ctx: &mut Ctx<Option<usize>>, signal: i32) -> SignalAction {
        if signal == libc::SIGCHLD {
            self.reap();
        } else if self.interrupted.is_none() {
            // Ctrl-C or SIGTERM: every worker ends now and reports what it measured.
            let name = signal_name(signal);
            let line = format!("stop {name}\n");
            for w in &self.workers {
                ctx.send(w.stdin, line.as_bytes());
            }
            self.interrupted = Some(name);
        } else {
            self.fail(format!(
                "{} again: workers killed without waiting for their reports",
                signal_name(signal)
            ));
        }
        self.stop_when_done(ctx);
        SignalAction::Handled
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Option<usize>>, key: u64) {
        match key {
            START_TIMER => self.release_when_all_connected(ctx),
            MEASURE_TIMER => {
                let open = self.total_progress().open;
                self.server_mem_per_conn =
                    server_mem_per_conn(&self.server_pids, self.server_mem_before, open);
            }
            STRAGGLER_TIMER => {
                for (i, w) in self.workers.iter().enumerate() {
                    if let (Some(process), None) = (&w.process, w.stdout) {
                        warn!("worker {i} reported but did not exit: killing it");
                        process.signal(libc::SIGKILL);
                    }
                }
                self.straggler_timer = false;
                self.stop_when_done(ctx);
            }
            _ => {}
        }
    }

    fn on_turn(&mut self, _: &mut Ctx<Option<usize>>) {
        let total = self.total_progress();
        self.progress.update(total);
    }
}

/// Run the connections over `count` worker processes and merge their reports;
/// `worker_args` gives each worker's command line from its options.
pub fn run_workers(
    opts: &StressOptions,
    count: usize,
    worker_args: &dyn Fn(&StressOptions) -> Vec<String>,
) -> io::Result<Report> {
    let mut event_loop: EventLoop<Option<usize>> = EventLoop::new(LoopConfig::default())?;
    // Before any child exists, so no exit (and no Ctrl-C) can be missed.
    event_loop.handle_signals_from(&[libc::SIGCHLD, libc::SIGINT, libc::SIGTERM])?;
    let mut parent = Parent {
        workers: Vec::new(),
        progress: ProgressLine::new(),
        released: false,
        interrupted: None,
        server_pids: opts.server_pids.clone(),
        server_mem_before: tree_mem_kb(&opts.server_pids),
        server_mem_per_conn: None,
        hold: opts.hold,
        start_at: opts.start_at,
        straggler_timer: false,
        failure: None,
    };
    for i in 0..count {
        let args = worker_args(&worker_options(opts, count, i));
        let command = WorkerCommand::ours(args, WorkerStdin::Socket)?;
        // On an error below, the workers already started are killed as `parent` drops.
        let spawned = spawn_worker(&command, i)?;
        let stdin = spawned
            .stdin
            .ok_or_else(|| io::Error::other(format!("worker {i}: no stdin socket")))?;
        let ctx = event_loop.ctx();
        let stdin = add_to_loop(ctx, stdin, None)?;
        let stdout = add_to_loop(ctx, spawned.stdout, Some(i))?;
        parent.workers.push(WorkerRun {
            process: Some(spawned.process),
            stdin,
            stdout: Some(stdout),
            connected: false,
            progress: Progress::default(),
            report: None,
        });
    }
    let result = event_loop.run(&mut parent);
    parent.progress.finish();
    result?;
    if let Some(msg) = parent.failure {
        return Err(io::Error::other(msg));
    }
    let mut merged = Report::default();
    for w in &parent.workers {
        if let Some(r) = &w.report {
            merged.merge(r);
        }
    }
    merged.server_rss_bytes_per_conn = parent.server_mem_per_conn.map(|g| g.0);
    merged.server_anon_bytes_per_conn = parent.server_mem_per_conn.map(|g| g.1);
    if merged.interrupted.is_none() {
        merged.interrupted = parent.interrupted;
    }
    Ok(merged)
}
