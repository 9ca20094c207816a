//! `netloop serve --workers N`: the command-line half of the worker model.
//!
//! `workers/mod.rs` explains the model (reserve the ports, spawn copies of ourselves
//! with `SO_REUSEPORT`, supervise them); this file turns `serve`'s options into the
//! workers' command line and starts the supervisor on a loop.

use std::io;
use std::net::SocketAddr;

use clap::ValueEnum;
use log::{debug, info};

use netloop::core::{EventLoop, LoopConfig};
use netloop::workers::ports::reserve_port;
use netloop::workers::sizing::auto_workers;
use netloop::workers::spawn::{WorkerCommand, WorkerStdin};
use netloop::workers::supervisor::Supervisor;

use super::serve::ServeArgs;

/// `--workers`: a count, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerCount {
    /// This many worker processes (1: serve in this process).
    N(usize),
    /// As many as the open-file limit calls for (`workers/sizing.rs`).
    Auto,
}

/// Parse `--workers`: a whole number of at least 1, or `auto`.
pub fn worker_count(text: &str) -> Result<WorkerCount, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(WorkerCount::Auto);
    }
    super::args::at_least_one(text)
        .map(WorkerCount::N)
        .map_err(|e| format!("{e} (or `auto`)"))
}

/// How many workers, and each one's `--max-conns` (a total with `auto`, split).
fn resolve(args: &ServeArgs) -> (usize, Option<usize>) {
    match args.workers {
        WorkerCount::N(n) => (n, args.max_conns),
        WorkerCount::Auto => {
            let nofile = netloop::core::io_util::raise_nofile_limit();
            let file_max = std::fs::read_to_string("/proc/sys/fs/file-max")
                .ok()
                .and_then(|t| t.trim().parse().ok());
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let auto = auto_workers(nofile, file_max, cpus, args.max_conns);
            info!("--workers auto: {} workers: {}", auto.workers, auto.why);
            (auto.workers, auto.max_conns_each)
        }
    }
}

/// Run the worker processes and supervise them until they are all done.
pub fn serve_workers(args: &ServeArgs) -> io::Result<()> {
    if !args.udp.is_empty() || !args.unix.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--workers shares TCP ports only (--listen): a Unix socket path has a single \
             listener and UDP ports are not opened with SO_REUSEPORT; serve --udp and \
             --unix from a separate `netloop serve` without --workers",
        ));
    }
    let grace = args.grace;
    let mut listen = args.listen.clone();
    if listen.is_empty() {
        // The same default as a single server.
        listen.push(SocketAddr::from(([127, 0, 0, 1], 8888)));
    }
    // Never read: owning these is what keeps the ports ours (and only ours).
    let mut reservations = Vec::with_capacity(listen.len());
    let mut addrs = Vec::with_capacity(listen.len());
    for addr in listen {
        let reservation = reserve_port(addr)?;
        debug!("reserved {} for the workers", reservation.local);
        addrs.push(reservation.local);
        reservations.push(reservation);
    }
    let (count, max_conns_each) = resolve(args);
    // A server worker takes no orders on stdin: signals tell it to stop.
    let command = WorkerCommand::ours(
        worker_args(args, &addrs, max_conns_each)?,
        WorkerStdin::Null,
    )?;

    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    // Before any child exists, so no SIGCHLD and no SIGTERM can be missed.
    event_loop.handle_signals_from(&[libc::SIGINT, libc::SIGTERM, libc::SIGCHLD])?;
    info!(
        "starting {count} workers: {} {}",
        command.exe.display(),
        command.args.join(" ")
    );
    // One `listening on` line per `--listen`, and so per reserved address.
    let mut supervisor = Supervisor::new(command, count, addrs.len(), grace);
    supervisor.start_all(event_loop.ctx());
    event_loop.run(&mut supervisor)?;
    // Only now, with every worker gone, may the ports go.
    drop(reservations);
    supervisor.outcome()
}

/// The command line of one worker: `serve` with our options, one worker, shared ports,
/// and its `--max-conns`.
fn worker_args(
    args: &ServeArgs,
    addrs: &[SocketAddr],
    max_conns: Option<usize>,
) -> io::Result<Vec<String>> {
    // Destructured without `..`: a new `serve` option fails to compile here until someone
    // decides how workers get it.
    let ServeArgs {
        service,
        listen: _,
        udp: _,
        unix: _,
        backlog,
        max_queue,
        max_input_total,
        // Given separately: with `auto` it is the worker's share of the total.
        max_conns: _,
        idle_timeout,
        grace,
        suffix,
        upload,
        exec: _, // refused with --workers (serve_exec::check)
        workers: _,
        reuse_port: _,
        // Refused with --workers (see `serve`): one recording is one loop.
        record: _,
        record_limit: _,
        // Refused with --workers too: each worker would count only its own share.
        metrics: _,
    } = args;
    let service = service
        .to_possible_value()
        .ok_or_else(|| io::Error::other(format!("service {service:?} has no name")))?;
    let mut out = vec!["serve".to_string(), service.get_name().to_string()];
    for addr in addrs {
        out.push(format!("--listen={addr}"));
    }
    // `--opt=value` forms, so a value starting with `-` (a suffix) cannot pass for an option.
    out.push(format!("--backlog={backlog}"));
    out.push(format!("--max-queue={max_queue}"));
    out.push(format!("--max-input-total={max_input_total}"));
    if let Some(n) = max_conns {
        out.push(format!("--max-conns={n}"));
    }
    if let Some(secs) = idle_timeout {
        out.push(format!("--idle-timeout={}", secs.as_secs_f64()));
    }
    out.push(format!("--grace={}", grace.as_secs_f64()));
    if let Some(text) = suffix {
        out.push(format!("--suffix={text}"));
    }
    if upload.any_given() {
        out.extend(upload.to_args());
    }
    out.push("--workers=1".to_string());
    out.push("--reuse-port".to_string());
    Ok(out)
}
