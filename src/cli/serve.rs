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
use netloop::services::{Echo, Hello, Upload, UploadOptions, Upper};

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
    /// Options of the upload service.
    #[command(flatten)]
    pub upload: UploadOptions,
    /// Run N worker processes, each its own loop, sharing the TCP port(s) with
    /// SO_REUSEPORT (the nginx model: more cores, and more than one process's open files).
    /// 1 (the default) serves in this process; `auto`: enough for the open-file limit
    /// (for --max-conns, then the server's total, or half of fs.file-max), at least one
    /// per core. TCP only: --udp and --unix are refused.
    #[arg(long, default_value = "1", value_name = "N|auto", value_parser = worker_count)]
    pub workers: WorkerCount,
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
    if args.upload.any_given() && args.service != ServiceKind::Upload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--dir, --max-file-size, --max-header, --secret-file and --auth-timeout only \
             apply to the upload service",
        ));
    }
    if args.service == ServiceKind::Upload && !args.udp.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the upload service runs over TCP and Unix sockets, not UDP",
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
        ServiceKind::Upload => run(args, Upload::new(&args.upload)?),
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
    event_loop.handle_signals()?;
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
            writeln!(
                out,
                "listening on tcp {local}  (try: nc {} {})",
                local.ip(),
                local.port()
            )?;
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
    out.flush()?;
    drop(out);

    event_loop.run(&mut handler)?;
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
