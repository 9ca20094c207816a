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

use super::args::secs;

use netloop::core::listen::{bind_tcp, bind_udp, bind_unix, Listener, TcpOptions};
use netloop::core::{EventLoop, Handler, LoopConfig};
use netloop::services::{Echo, Hello, ServiceKind, Upload, Upper};

/// Options of `netloop serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum, default_value = "echo")]
    pub service: ServiceKind,
    /// TCP address to listen on, IPv4 or IPv6 (repeatable; default 127.0.0.1:8888 when no
    /// transport is given; port 0 picks a free port).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// UDP address to answer datagrams on (repeatable).
    #[arg(long = "udp", value_name = "ADDR")]
    pub udp: Vec<SocketAddr>,
    /// Unix stream socket path to listen on (repeatable; removed at shutdown).
    #[arg(long = "unix", value_name = "PATH")]
    pub unix: Vec<PathBuf>,
    /// listen() backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub backlog: i32,
    /// Outbound bytes queued for one connection before the server stops reading from it
    /// (backpressure); reading resumes once the queue is below a quarter of this.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_queue: usize,
    /// Most open connections; extra ones are accepted and closed at once (with
    /// --workers: per worker process).
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Close connections with no traffic for this many seconds (default: never, except
    /// 60 for the upload service, so stalled uploads are dropped).
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
    pub upload: super::serve_upload::Args,
    /// Run N worker processes, each its own loop, sharing the TCP port(s) with
    /// SO_REUSEPORT (the nginx model: more cores, and more than one process's open files).
    /// 1 (the default) serves in this process. TCP only: --udp and --unix are refused.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
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
    if args.workers > 1 {
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
    }
}

fn run<H: Handler>(args: &ServeArgs, mut handler: H) -> io::Result<()> {
    let mut config = LoopConfig {
        max_queue: args.max_queue.max(1),
        idle_timeout: match args.idle_timeout {
            Some(d) => Some(d),
            // A stalled upload would hold its connection and temporary file forever.
            None if args.service == ServiceKind::Upload => {
                Some(netloop::services::upload::DEFAULT_IDLE_TIMEOUT)
            }
            None => None,
        },
        max_conns: args.max_conns,
        shutdown_grace: args.grace,
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
    info!("summary: {}", event_loop.stats());
    Ok(())
}
