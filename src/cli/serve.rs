//! `netloop serve`: put a service on one loop, on every transport asked for.
//!
//! TCP listeners (IPv4 and IPv6), Unix stream listeners and UDP ports all sit on the same
//! `Poll` with the same handler: a server with several transports is still one thread and
//! one loop. This file only turns options into listeners and a `LoopConfig`; all the
//! readiness work lives in `event_loop.rs`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::info;

use super::args::{at_least_one, listen_addr, secs};
use super::serve_workers::{worker_count, WorkerCount};

use netloop::core::listen::{bind_tcp, bind_udp, bind_unix, Listener, TcpOptions};
use netloop::core::{EventLoop, Handler, LoopConfig};
use netloop::services::{Echo, Hello, Upload, Upper, WithMetrics};

/// The services `netloop serve` knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceKind {
    /// Bytes back unchanged (seed 001's echo; `--suffix` appends text, as the seed does).
    Echo,
    /// Bytes back ASCII-upper-cased (seeds 002 and 004).
    Upper,
    /// `Welcome!` on connect, `Hello, <msg>!` per message, `exit` closes (seed 003).
    Hello,
    /// Framed file upload into `--dir` (seeds 000 and 004; TCP and Unix only).
    Upload,
    /// Run allowed programs, reply with their output (seed 004; TCP and Unix only).
    Exec,
}

/// Options of `netloop serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum, default_value = "echo")]
    pub service: ServiceKind,
    /// TCP address to listen on: IP:PORT, [IPv6]:PORT, HOST:PORT, or PORT / :PORT for
    /// 127.0.0.1 (repeatable; default 127.0.0.1:8888 when no transport is given; port 0
    /// picks a free port).
    #[arg(long = "listen", value_name = "ADDR", value_parser = listen_addr)]
    pub listen: Vec<SocketAddr>,
    /// UDP address to answer datagrams on, written as for --listen (repeatable).
    #[arg(long = "udp", value_name = "ADDR", value_parser = listen_addr)]
    pub udp: Vec<SocketAddr>,
    /// Unix stream socket path to listen on (repeatable; removed at shutdown).
    #[arg(long = "unix", value_name = "PATH")]
    pub unix: Vec<PathBuf>,
    /// listen() backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub backlog: i32,
    /// Outbound bytes queued for one connection before the server stops reading from it
    /// (backpressure); reading resumes once the queue is below a quarter of this.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES", value_parser = at_least_one)]
    pub max_queue: usize,
    /// Unconsumed input (unfinished lines, frame headers) all connections together may
    /// hold; past it the largest holders are closed and counted.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub max_input_total: usize,
    /// Most open connections; extra ones are accepted and closed at once (with
    /// --workers: per worker process).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_conns: Option<usize>,
    /// Close connections that sent nothing for this many seconds; 0 means never
    /// (default: never, except 60 for the upload service, so stalled uploads are dropped).
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub idle_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, how many seconds to keep flushing queued bytes.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = secs)]
    pub grace: Duration,
    /// echo: text appended after every chunk (seed 001 uses " 我收到了").
    #[arg(long, value_name = "TEXT")]
    pub suffix: Option<String>,
    /// Options of the upload service (exec uses --dir, --secret-file, --auth-timeout).
    #[command(flatten)]
    pub upload: super::serve_upload::Args,
    /// Options of the exec service.
    #[command(flatten)]
    pub exec: super::serve_exec::ExecArgs,
    /// Run N worker processes, each its own loop, sharing the TCP port(s) with
    /// SO_REUSEPORT (the nginx model: more cores, and more than one process's open files).
    /// 1 (the default) serves in this process; `auto`: enough for the open-file limit
    /// (for --max-conns, then the server's total, or half of fs.file-max), at least one
    /// per core. TCP only: --udp and --unix are refused.
    #[arg(long, default_value = "1", value_name = "N|auto", value_parser = worker_count)]
    pub workers: WorkerCount,
    /// Record the loop's events (each turn, each read, write, WouldBlock, pause, close...)
    /// as JSON lines into this new file, for `netloop timeline` (see NOTES.md).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Most events --record writes (then it stops, so a busy server cannot fill a disk).
    #[arg(long, default_value_t = 1_000_000, value_name = "N", value_parser = at_least_one)]
    pub record_limit: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics on the same loop as the service
    /// (ADDR written as for --listen). Not with --workers: each worker is a loop of its
    /// own, and one worker's counts are not the server's.
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub metrics: Option<SocketAddr>,
    /// Bind TCP listeners with SO_REUSEPORT (set by `--workers` for its children).
    #[arg(long, hide = true)]
    pub reuse_port: bool,
}

/// Run the server until SIGINT/SIGTERM; returns after the summary line is logged.
pub fn serve(args: &ServeArgs) -> io::Result<()> {
    // Every connection is a descriptor: allow as many as the hard limit does.
    netloop::core::io_util::raise_nofile_limit();
    if args.suffix.is_some() && args.service != ServiceKind::Echo {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--suffix only applies to the echo service",
        ));
    }
    super::serve_exec::check(args)?;
    if args.upload.any_given() && !matches!(args.service, ServiceKind::Upload | ServiceKind::Exec) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--dir, --max-file-size, --max-header, --secret-file and --auth-timeout only \
             apply to the upload service (--dir, --secret-file, --auth-timeout also to exec)",
        ));
    }
    if args.service == ServiceKind::Upload && !args.udp.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the upload service runs over TCP and Unix sockets, not UDP",
        ));
    }
    if args.workers != WorkerCount::N(1) && args.record.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--record records one loop; --workers runs several: record without --workers",
        ));
    }
    if args.workers != WorkerCount::N(1) && args.metrics.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--metrics reports one loop; --workers runs several, each with its own counts: \
             use --metrics without --workers",
        ));
    }
    if args.workers != WorkerCount::N(1) {
        return super::serve_workers::serve_workers(args);
    }
    match args.service {
        ServiceKind::Echo => {
            let suffix = args.suffix.clone().unwrap_or_default().into_bytes();
            run(args, Echo { suffix })
        }
        ServiceKind::Upper => run(args, Upper),
        ServiceKind::Hello => run(args, Hello::default()),
        ServiceKind::Upload => run(args, Upload::new(&args.upload.options()?)?),
        ServiceKind::Exec => run(args, super::serve_exec::handler(args)?),
    }
}

fn run<H: Handler>(args: &ServeArgs, mut handler: H) -> io::Result<()> {
    let mut config = LoopConfig {
        max_queue: args.max_queue.max(1),
        max_queue_hard: args.max_queue.max(1).saturating_mul(4),
        idle_timeout: match args.idle_timeout {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            // A stalled upload would hold its connection and temporary file forever.
            None if args.service == ServiceKind::Upload => {
                Some(netloop::services::upload::DEFAULT_IDLE_TIMEOUT)
            }
            None => None,
        },
        max_conns: args.max_conns,
        shutdown_grace: args.grace,
        max_input_total: args.max_input_total,
        // One INFO line per minute of aggregated counts; per-connection events are DEBUG.
        report_every: Some(Duration::from_secs(60)),
        // The metrics' histograms of events and sleep per turn: two clock reads a turn.
        measure_turns: args.metrics.is_some(),
        ..LoopConfig::default()
    };
    // upload: a partial frame header waits in the read buffer, so it must fit there.
    let header_frame = args
        .upload
        .max_header
        .saturating_add(netloop::proto::frames::PREFIX_LEN);
    config.max_read_buf = config.max_read_buf.max(header_frame);
    let mut event_loop: EventLoop<H::State> = EventLoop::new(config)?;

    // Before announcing readiness, so a SIGTERM right after it is already graceful.
    if args.service == ServiceKind::Exec {
        // A child's exit is an event too: SIGCHLD through the same signal pipe.
        event_loop.handle_signals_from(&[libc::SIGINT, libc::SIGTERM, libc::SIGCHLD])?;
    } else {
        event_loop.handle_signals()?;
    }
    let mut listen = args.listen.clone();
    if listen.is_empty() && args.udp.is_empty() && args.unix.is_empty() {
        listen.push(SocketAddr::from(([127, 0, 0, 1], 8888)));
    }
    let opts = TcpOptions {
        backlog: args.backlog,
        reuse_port: args.reuse_port,
    };
    let mut out = io::stdout().lock();
    for addr in listen {
        let listener = bind_tcp(addr, opts)?;
        if let Listener::Tcp(_, local) = &listener {
            // Framed services are not for typing into nc: name their own client.
            let hint = match args.service {
                ServiceKind::Upload => format!("netloop upload FILE --to {local}"),
                ServiceKind::Exec => format!("netloop exec {local} -- PROGRAM"),
                _ => format!("nc {} {}", local.ip(), local.port()),
            };
            writeln!(out, "listening on tcp {local}  (try: {hint})")?;
        }
        event_loop.add_listener(listener)?;
    }
    for path in &args.unix {
        event_loop.add_listener(bind_unix(path, args.backlog)?)?;
        writeln!(
            out,
            "listening on unix {}  (try: nc -U {})",
            path.display(),
            path.display()
        )?;
    }
    for addr in &args.udp {
        let socket = bind_udp(*addr)?;
        let local = socket.local_addr()?;
        event_loop.add_udp(socket)?;
        writeln!(
            out,
            "listening on udp {local}  (try: nc -u {} {})",
            local.ip(),
            local.port()
        )?;
    }
    // Last, so the service's listeners keep their numbers; its number routes its
    // connections to the metrics handler.
    let metrics = match args.metrics {
        Some(addr) => {
            let index = event_loop.listeners().len();
            let listener = bind_tcp(addr, opts)?;
            if let Listener::Tcp(_, local) = &listener {
                writeln!(
                    out,
                    "metrics on http://{local}/metrics  (try: curl http://{local}/metrics)"
                )?;
            }
            event_loop.add_listener(listener)?;
            Some(index)
        }
        None => None,
    };
    out.flush()?;
    drop(out);

    if let Some(path) = &args.record {
        event_loop.record_to(path, args.record_limit as u64)?;
    }
    match metrics {
        Some(listener) => event_loop.run(&mut WithMetrics::new(handler, listener))?,
        None => event_loop.run(&mut handler)?,
    }
    event_loop.finish_recording()?;
    if args.reuse_port {
        // A worker of `serve --workers`: the parent adds the counters up (summary.rs).
        let mut out = io::stdout().lock();
        writeln!(
            out,
            "{}",
            netloop::workers::summary::stats_line(event_loop.stats())
        )?;
        out.flush()?;
    } else {
        info!("summary: {}", event_loop.stats());
    }
    Ok(())
}
