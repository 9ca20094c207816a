//! Worker processes: more connections than one process may open.
//!
//! The open-file limit here is 20,000 descriptors per process, so 60,000 connections
//! need at least four processes. The parent starts W copies of this program in worker
//! mode, gives each a share of the connections, and talks to each over two socket pairs
//! (its stdin and stdout), all on the parent's own loop:
//!
//! - a worker prints JSON lines: `{"progress":…}` now and then, `{"connected":…}` when its
//!   connect phase is over, and `{"report":…}` (with its latency histogram) at the end;
//! - when **every** worker is connected, the parent writes `go` to each, so that all
//!   holds — and all measurements — happen while all idle connections are open.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log::warn;
use mio::Token;
use serde_json::{json, Value};

use crate::apps::stress::probe::{Phase, ProbeState, Progress, Stress};
use crate::apps::stress::report::{rss_kb, Report};
use crate::apps::stress::{plan, server_rss_per_conn, ProgressLine, StressArgs};
use crate::core::{Closed, Handler};
use crate::core::{Ctx, EventLoop, LoopConfig};
use crate::core::{Peer, Stream};

/// Split `n` into `parts` shares that differ by at most one.
fn share(n: usize, parts: usize, i: usize) -> usize {
    n / parts + usize::from(i < n % parts)
}

/// The command line of a worker with `idle` + `active` of the `count` workers' share.
/// Options are passed as `--name=value`, so a value starting with `-` stays a value.
fn worker_args(args: &StressArgs, count: usize, idle: usize, active: usize) -> Vec<String> {
    let mut v: Vec<String> = vec!["stress".into(), "--worker".into()];
    let mut opt = |name: &str, value: String| v.push(format!("--{name}={value}"));
    if let Some(path) = &args.unix {
        opt("unix", path.display().to_string());
    }
    opt("idle", idle.to_string());
    opt("active", active.to_string());
    opt("size", args.size.to_string());
    opt("path", args.path.clone());
    opt("hold", args.hold.to_string());
    opt("max-inflight", args.max_inflight.to_string());
    opt("connect-timeout", args.connect_timeout.to_string());
    opt("keepalive-data", args.keepalive_data.clone());
    opt("probe", format!("{:?}", args.probe).to_ascii_lowercase());
    if let Some(r) = args.rate {
        opt("rate", (r / count.max(1) as f64).to_string());
    }
    if let Some(k) = args.keepalive {
        opt("keepalive", k.to_string());
    }
    if let Some(s) = &args.source_ips {
        opt("source-ips", s.clone());
    }
    if let (Some(r), true) = (args.rate_limit, active > 0) {
        opt(
            "rate-limit",
            (r * active as f64 / args.active.max(1) as f64).to_string(),
        );
    }
    if let Some(addr) = &args.addr {
        v.push("--".into());
        v.push(addr.clone());
    }
    v
}

/// One worker as the parent sees it.
struct WorkerSlot {
    child: Child,
    stdin: Token,
    stdout: Token,
    connected: bool,
    progress: Progress,
    report: Option<Report>,
    gone: bool,
}

/// The parent's handler: reads workers' lines, releases them together, collects reports.
struct Parent {
    workers: Vec<WorkerSlot>,
    progress: ProgressLine,
    released: bool,
    server_pid: Option<u32>,
    server_rss_before: Option<u64>,
    server_rss_per_conn: Option<f64>,
    /// When to read the server's RSS (mid-hold).
    measure_at: Option<Instant>,
    hold: Duration,
    failure: Option<String>,
}

impl Parent {
    fn slot_of(&self, token: Token) -> Option<usize> {
        self.workers.iter().position(|w| w.stdout == token)
    }

    fn on_line(&mut self, ctx: &mut Ctx<ProbeState>, i: usize, line: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            warn!(
                "worker {i}: unexpected output {:?}",
                String::from_utf8_lossy(line)
            );
            return;
        };
        if let Some(p) = v.get("progress") {
            self.workers[i].progress = progress_from_json(p);
        }
        if v.get("connected").is_some() {
            self.workers[i].connected = true;
        }
        if let Some(r) = v.get("report") {
            match Report::from_json(r) {
                Some(report) => self.workers[i].report = Some(report),
                None => self.failure = Some(format!("worker {i} sent an unreadable report")),
            }
        }
        if !self.released && self.workers.iter().all(|w| w.connected || w.gone) {
            self.released = true;
            // Measure the server half way through the hold: by then it has accepted
            // every connection, and none has been closed yet.
            self.measure_at = Some(Instant::now() + self.hold / 2);
            ctx.timer_after(self.hold / 2, 0);
            for w in &self.workers {
                ctx.send(w.stdin, b"go\n");
            }
        }
    }
}

fn progress_from_json(p: &Value) -> Progress {
    let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
    Progress {
        open: n("open"),
        requested: n("requested"),
        connect_errors: n("connect_errors"),
        round_trips: n("round_trips"),
        p99_us: n("p99_us"),
    }
}

fn progress_to_json(p: &Progress) -> Value {
    json!({
        "open": p.open, "requested": p.requested, "connect_errors": p.connect_errors,
        "round_trips": p.round_trips, "p99_us": p.p99_us,
    })
}

impl Handler for Parent {
    type State = ProbeState;

    fn on_data(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, data: &mut [u8]) -> usize {
        let Some(i) = self.slot_of(token) else {
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

    fn on_close(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, _: Closed<ProbeState>) {
        if let Some(i) = self.slot_of(token) {
            self.workers[i].gone = true;
            if self.workers[i].report.is_none() {
                self.failure = Some(format!("worker {i} exited without a report"));
            }
            if self.workers.iter().all(|w| w.gone) {
                ctx.stop();
            }
        }
    }

    fn on_turn(&mut self, ctx: &mut Ctx<ProbeState>) {
        let mut total = Progress::default();
        for w in &self.workers {
            total.open += w.progress.open;
            total.requested += w.progress.requested;
            total.connect_errors += w.progress.connect_errors;
            total.round_trips += w.progress.round_trips;
            total.p99_us = total.p99_us.max(w.progress.p99_us);
        }
        self.progress.update(total);
        if self.measure_at.is_some_and(|t| Instant::now() >= t) {
            self.measure_at = None;
            self.server_rss_per_conn =
                server_rss_per_conn(self.server_pid, self.server_rss_before, total.open);
        }
        if self.failure.is_some() {
            ctx.stop();
        }
    }
}

/// Run the connections over `count` worker processes and merge their reports.
pub fn run_workers(args: &StressArgs, count: usize) -> io::Result<Report> {
    let exe = std::env::current_exe()?;
    let mut event_loop: EventLoop<ProbeState> = EventLoop::new(LoopConfig::default())?;
    let mut parent = Parent {
        workers: Vec::new(),
        progress: ProgressLine::new(),
        released: false,
        server_pid: args.server_pid,
        server_rss_before: args.server_pid.and_then(|p| rss_kb(&p.to_string())),
        server_rss_per_conn: None,
        measure_at: None,
        hold: Duration::try_from_secs_f64(args.hold).unwrap_or_default(),
        failure: None,
    };
    for i in 0..count {
        let (idle, active) = (share(args.idle, count, i), share(args.active, count, i));
        let (in_ours, in_theirs) = std::os::unix::net::UnixStream::pair()?;
        let (out_ours, out_theirs) = std::os::unix::net::UnixStream::pair()?;
        let child = Command::new(&exe)
            .args(worker_args(args, count, idle, active))
            .stdin(Stdio::from(OwnedFd::from(in_theirs)))
            .stdout(Stdio::from(OwnedFd::from(out_theirs)))
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start worker {i}: {e}")))?;
        in_ours.set_nonblocking(true)?;
        out_ours.set_nonblocking(true)?;
        let ctx = event_loop.ctx();
        let stdin = ctx.add_stream(
            Stream::Unix(mio::net::UnixStream::from_std(in_ours)),
            Peer::Local,
            ProbeState::default(),
        )?;
        let stdout = ctx.add_stream(
            Stream::Unix(mio::net::UnixStream::from_std(out_ours)),
            Peer::Local,
            ProbeState::default(),
        )?;
        parent.workers.push(WorkerSlot {
            child,
            stdin,
            stdout,
            connected: false,
            progress: Progress::default(),
            report: None,
            gone: false,
        });
    }
    let result = event_loop.run(&mut parent);
    parent.progress.finish();
    // Reap the workers (they exit after their report); never wait forever, and after a
    // failure do not wait for the others' holds to end.
    let patience = if parent.failure.is_some() { 0 } else { 10 };
    let deadline = Instant::now() + Duration::from_secs(patience);
    for w in &mut parent.workers {
        loop {
            match w.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
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
    merged.server_rss_bytes_per_conn = parent.server_rss_per_conn;
    Ok(merged)
}

/// The worker side: the stress handler, plus the parent's `go` on stdin.
struct Worker {
    stress: Stress,
    stdin: Token,
    last_progress: Instant,
    said_connected: bool,
}

fn emit(v: Value) {
    let mut out = io::stdout().lock();
    // If the parent is gone there is no one to tell; the stdin EOF ends the run.
    let _ = writeln!(out, "{v}").and_then(|()| out.flush());
}

impl Handler for Worker {
    type State = ProbeState;

    fn on_open(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.stress.on_open(ctx, token)
    }

    fn on_data(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, data: &mut [u8]) -> usize {
        if token != self.stdin {
            return self.stress.on_data(ctx, token, data);
        }
        if data.windows(2).any(|w| w == b"go") && self.stress.phase() == Phase::Connected {
            self.stress.start_hold(ctx);
        }
        data.len()
    }

    fn on_eof(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        if token == self.stdin {
            // The parent went away: stop now.
            self.stress.finish(ctx);
            ctx.stop();
        } else {
            ctx.close_when_flushed(token);
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.stress.on_deadline(ctx, token)
    }

    fn on_close(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, closed: Closed<ProbeState>) {
        if token != self.stdin {
            self.stress.on_close(ctx, token, closed);
        }
    }

    fn on_turn(&mut self, ctx: &mut Ctx<ProbeState>) {
        self.stress.on_turn(ctx);
        if self.stress.phase() == Phase::Connected && !self.said_connected {
            self.said_connected = true;
            emit(json!({"connected": true, "progress": progress_to_json(&self.stress.progress())}));
        }
        if self.last_progress.elapsed() >= Duration::from_millis(250) {
            self.last_progress = Instant::now();
            emit(json!({"progress": progress_to_json(&self.stress.progress())}));
        }
    }
}

/// Run as a worker: stdin and stdout are socket pairs to the parent.
pub fn run_as_worker(args: &StressArgs) -> io::Result<()> {
    let plan = plan(args, args.idle, args.active)?;
    let mut stress = Stress::new(plan);
    stress.auto_hold = false;
    let mut event_loop: EventLoop<ProbeState> = EventLoop::new(LoopConfig::default())?;
    // SAFETY: dup(0) returns a new descriptor that we own (or -1, checked).
    let fd = unsafe { libc::dup(0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stdin = std::os::unix::net::UnixStream::from(owned);
    stdin
        .set_nonblocking(true)
        .map_err(|e| io::Error::new(e.kind(), format!("worker stdin must be a socket: {e}")))?;
    let token = event_loop.ctx().add_stream(
        Stream::Unix(mio::net::UnixStream::from_std(stdin)),
        Peer::Local,
        ProbeState::default(),
    )?;
    let mut worker = Worker {
        stress,
        stdin: token,
        last_progress: Instant::now(),
        said_connected: false,
    };
    event_loop.ctx().timer_after(Duration::ZERO, 0);
    event_loop.run(&mut worker)?;
    let mut report = worker.stress.report;
    report.client_rss_kb = rss_kb("self").unwrap_or(0);
    emit(json!({"report": report.to_json(true)}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        for (n, parts) in [(10, 3), (0, 4), (60_010, 4), (1, 2)] {
            let sum: usize = (0..parts).map(|i| share(n, parts, i)).sum();
            assert_eq!(sum, n);
        }
    }
}
