//! `netloop serve --workers N`: N processes, each its own loop, sharing the port.
//!
//! This is the nginx worker model. One `netloop serve` is one thread on one `Poll`, so it
//! uses one core, and every connection costs it a file descriptor, so it holds at most
//! `RLIMIT_NOFILE` of them (20,000 on the machine this was written for, and that is the
//! *hard* limit: no amount of `ulimit -n` raises it). Both limits are per process, so the
//! way past them is more processes: N workers use N cores and hold N times as many
//! connections, and each one is still the simple single-threaded loop of `event_loop.rs`
//! — nothing in it is shared, locked or even aware of the others.
//!
//! # How N processes share one port: `SO_REUSEPORT`
//!
//! Every worker binds *its own* listening socket to the same address, with
//! `SO_REUSEPORT` set (the hidden `--reuse-port` option of `serve`). Linux then keeps the
//! listeners in one group and hands each incoming connection to one of them, chosen by a
//! hash of the connection's 4-tuple (source and destination address and port). So there
//! is no thundering herd (only the chosen worker's listener becomes readable) and no
//! accept lock; the kernel balances, statistically. The costs of that choice: the hash
//! ignores load (a busy worker still gets its share), and when a worker dies, the
//! connections waiting in *its* accept queue are reset (Linux 5.14's
//! `net.ipv4.tcp_migrate_req` can move them). The kernel only groups sockets of the same
//! user, so another user cannot join the group and steal connections (another program of
//! *ours* that sets `SO_REUSEPORT` on the same port can: that is the option's contract).
//!
//! Only TCP is shared. A Unix socket path has exactly one listener, and UDP would need
//! `SO_REUSEPORT` on each worker's UDP socket, which `serve` does not set; so `--unix`
//! and `--udp` are refused with `--workers` (run them in a separate `netloop serve`).
//!
//! # The parent: reserve, spawn, announce, supervise
//!
//! The parent serves nothing. It
//!
//! 1. **reserves** each `--listen` address: a socket with `SO_REUSEPORT`, *bound but never
//!    listening*. For port 0 this is how the concrete port is chosen. Holding it for the
//!    parent's whole life is what makes port 0 race-free: while any socket of ours is
//!    bound there, no other program can bind the port (it would need `SO_REUSEPORT` *and*
//!    our user), not between the parent's choice and the workers' binds, and not while
//!    every worker happens to be dead and restarting. Not listening is what makes it
//!    harmless: only listening sockets join the group the kernel balances over, so the
//!    reservation never receives a connection it would strand in an accept queue
//!    nobody accepts from. (Listening on it and closing it "once the workers are up"
//!    would drop the connections the kernel had already queued on it.) For a fixed port
//!    the reservation also turns "port already in use" into one clear error before any
//!    worker starts.
//! 2. **spawns** N copies of itself (`current_exe() serve ... --workers 1 --reuse-port
//!    --listen <concrete address>`), stdout piped, stderr inherited (so their log lines
//!    and `summary:` lines appear as they would for one server);
//! 3. reads each worker's stdout until its `listening on` lines have come, then
//!    **announces** them once, in the same format plus `(N workers)`, so scripts and tests
//!    that wait for `listening on` work unchanged;
//! 4. **supervises**: a worker that dies (a crash, a signal) is logged with its exit status
//!    and restarted, at most once per back-off interval per slot (1 s, doubling up to
//!    32 s while it keeps dying young), so a crash loop costs a log line per interval
//!    rather than a spinning CPU. A worker that exits 0 by itself was stopped on purpose
//!    and is not restarted; when none is left, the parent exits 0. On SIGINT/SIGTERM the
//!    parent sends SIGTERM to every worker (each one then drains as a single server does,
//!    for `--grace` seconds), waits, sends SIGKILL to any still there after `--grace`
//!    plus a margin, and exits 0 only if every worker stopped cleanly.
//!
//! The parent is itself a small readiness loop: one `Poll` with the signals (SIGINT,
//! SIGTERM, and SIGCHLD — "some child changed state") and the workers' stdout pipes, and
//! a poll timeout that is the nearest deadline (startup, a restart, the SIGKILL).
//!
//! Two process details matter. Workers run in their own process group, so a Ctrl-C in a
//! terminal reaches only the parent, which forwards exactly one SIGTERM — otherwise each
//! worker would get SIGINT from the terminal *and* SIGTERM from the parent, and a second
//! signal means "close everything now" to a worker. And workers ask the kernel for
//! SIGTERM when the parent dies (`PR_SET_PDEATHSIG`), so a parent killed with SIGKILL
//! does not leave orphans holding the port.
//!
//! Options such as `--max-conns` apply to each worker, not to the total.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use log::{debug, error, info, warn};
use mio::unix::pipe::Receiver;
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use crate::io_util::{interrupted, would_block};
use crate::serve::ServeArgs;

/// Worker stdout pipes use their slot number as token; the signals take the top one.
const SIGNAL_TOKEN: Token = Token(usize::MAX);
/// How long all workers together may take to report that they listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest time between two starts of the same worker slot.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest, reached by doubling while a worker keeps dying young.
const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// A worker that lived this long was healthy: its next restart is quick again.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Time beyond `--grace` that stopping workers get before SIGKILL (to log, to exit).
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// A worker's stdout line longer than this is passed on in pieces.
const MAX_LINE: usize = 64 * 1024;
/// What a worker prints once per listener when it is ready.
const LISTENING: &str = "listening on ";

/// Run `args.workers` worker processes and supervise them until they are all done.
pub fn serve_workers(args: &ServeArgs) -> io::Result<()> {
    if !args.udp.is_empty() || !args.unix.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--workers shares TCP ports only (--listen): a Unix socket path has a single \
             listener and UDP ports are not opened with SO_REUSEPORT; serve --udp and \
             --unix from a separate `netloop serve` without --workers",
        ));
    }
    let grace = Duration::try_from_secs_f64(args.grace).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--grace must be a non-negative number of seconds, not {}",
                args.grace
            ),
        )
    })?;
    let mut listen = args.listen.clone();
    if listen.is_empty() {
        // The same default as a single server.
        listen.push(SocketAddr::from(([127, 0, 0, 1], 8888)));
    }
    let mut reservations = Vec::with_capacity(listen.len());
    let mut addrs = Vec::with_capacity(listen.len());
    for addr in listen {
        let (socket, local) = reserve_port(addr)?;
        debug!("reserved {local} for the workers");
        reservations.push(socket);
        addrs.push(local);
    }
    let exe = std::env::current_exe()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot find our own program: {e}")))?;
    let worker_args = worker_args(args, &addrs)?;
    let mut supervisor = Supervisor::new(exe, worker_args, args.workers, reservations, grace)?;
    let result = supervisor.run();
    if result.is_err() {
        supervisor.stop_now();
    }
    result
}

/// Bind (never listen on) `addr` with the options a worker's listener will have, so the
/// port is ours for as long as the socket lives; returns it with its concrete address.
fn reserve_port(addr: SocketAddr) -> io::Result<(Socket, SocketAddr)> {
    let context = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("{what} {addr} for the workers: {e}"))
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| context(e, "socket for"))?;
    // The same options as `listen::bind_tcp` with `reuse_port`: the kernel lets sockets
    // share a port only if all of them agree.
    socket
        .set_reuse_address(true)
        .map_err(|e| context(e, "SO_REUSEADDR on"))?;
    socket
        .set_reuse_port(true)
        .map_err(|e| context(e, "SO_REUSEPORT on"))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| context(e, "IPV6_V6ONLY on"))?;
    }
    socket.bind(&addr.into()).map_err(|e| context(e, "bind"))?;
    let local = socket
        .local_addr()
        .map_err(|e| context(e, "address of"))?
        .as_socket()
        .ok_or_else(|| io::Error::other(format!("bound {addr} but got no IP address back")))?;
    Ok((socket, local))
}

/// The command line of one worker: `serve` with our options, one worker, shared ports.
fn worker_args(args: &ServeArgs, addrs: &[SocketAddr]) -> io::Result<Vec<String>> {
    // Destructured without `..`: a new `serve` option fails to compile here until someone
    // decides how workers get it.
    let ServeArgs {
        service,
        listen: _,
        udp: _,
        unix: _,
        backlog,
        max_queue,
        max_conns,
        idle_timeout,
        grace,
        suffix,
        workers: _,
        reuse_port: _,
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
    if let Some(n) = max_conns {
        out.push(format!("--max-conns={n}"));
    }
    if let Some(secs) = idle_timeout {
        out.push(format!("--idle-timeout={secs}"));
    }
    out.push(format!("--grace={grace}"));
    if let Some(text) = suffix {
        out.push(format!("--suffix={text}"));
    }
    out.push("--workers=1".to_string());
    out.push("--reuse-port".to_string());
    Ok(out)
}

/// One worker slot: the process in it now (if any) and its restart bookkeeping.
struct Worker {
    child: Option<Child>,
    /// The child's stdout, registered with token = slot number, until EOF.
    stdout: Option<Receiver>,
    /// Bytes of an unfinished stdout line.
    partial: Vec<u8>,
    /// The `listening on` lines of the current process.
    listening: Vec<String>,
    started: Instant,
    /// Delay from one start of this slot to the next, when the worker dies young.
    backoff: Duration,
    /// When the slot's next process is due (the slot is empty until then).
    restart_at: Option<Instant>,
    restarts: u64,
}

enum Phase {
    /// Waiting for every worker's `listening on` lines.
    Starting { deadline: Instant },
    /// Announced; restarting workers that die.
    Running,
    /// SIGTERM sent; SIGKILL for the rest at `kill_at` (once).
    Stopping { kill_at: Instant, killed: bool },
}

struct Supervisor {
    exe: PathBuf,
    worker_args: Vec<String>,
    /// How many `listening on` lines a ready worker prints (one per `--listen`).
    expected_lines: usize,
    grace: Duration,
    poll: Poll,
    events: Events,
    signals: Signals,
    workers: Vec<Worker>,
    phase: Phase,
    /// Workers that did not stop cleanly when told to.
    unclean: Vec<String>,
    /// Held, never read: owning these sockets is what keeps the ports ours.
    _reservations: Vec<Socket>,
}

impl Supervisor {
    fn new(
        exe: PathBuf,
        worker_args: Vec<String>,
        count: usize,
        reservations: Vec<Socket>,
        grace: Duration,
    ) -> io::Result<Supervisor> {
        let poll = Poll::new()?;
        // Registered before any child exists, so no SIGCHLD and no SIGTERM can be missed.
        let mut signals = Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGCHLD])?;
        poll.registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        let now = Instant::now();
        let workers = (0..count)
            .map(|_| Worker {
                child: None,
                stdout: None,
                partial: Vec::new(),
                listening: Vec::new(),
                started: now,
                backoff: MIN_BACKOFF,
                restart_at: None,
                restarts: 0,
            })
            .collect();
        Ok(Supervisor {
            exe,
            worker_args,
            // One `listening on` line per `--listen`, and so per reserved address.
            expected_lines: reservations.len(),
            grace,
            poll,
            events: Events::with_capacity(64),
            signals,
            workers,
            phase: Phase::Starting {
                deadline: now + STARTUP_TIMEOUT,
            },
            unclean: Vec::new(),
            _reservations: reservations,
        })
    }

    /// Start every worker, then react to signals, output and deadlines until all are done.
    fn run(&mut self) -> io::Result<()> {
        info!(
            "starting {} workers: {} {}",
            self.workers.len(),
            self.exe.display(),
            self.worker_args.join(" ")
        );
        for slot in 0..self.workers.len() {
            self.start(slot)?;
        }
        while !self.finished() {
            let timeout = self
                .next_deadline()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if !interrupted(&e) {
                    return Err(e);
                }
            }
            let mut signalled = false;
            let mut readable = Vec::new();
            for event in self.events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => signalled = true,
                    Token(slot) => readable.push(slot),
                }
            }
            for slot in readable {
                self.read_stdout(slot)?;
            }
            if signalled {
                self.on_signals();
            }
            // SIGCHLD says "at least one child changed state" (signals coalesce), so
            // every child is asked; asking costs one non-blocking waitpid each.
            self.reap()?;
            self.on_deadlines()?;
        }
        let restarts: u64 = self.workers.iter().map(|w| w.restarts).sum();
        if self.unclean.is_empty() {
            info!(
                "all {} workers exited cleanly ({restarts} restarts)",
                self.workers.len()
            );
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} of {} workers did not stop cleanly: {}",
                self.unclean.len(),
                self.workers.len(),
                self.unclean.join("; ")
            )))
        }
    }

    /// Done when no slot holds a process or awaits one.
    fn finished(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.child.is_none() && w.restart_at.is_none())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Starting { deadline } => Some(deadline),
            Phase::Running => None,
            Phase::Stopping { kill_at, killed } => (!killed).then_some(kill_at),
        };
        self.workers
            .iter()
            .filter_map(|w| w.restart_at)
            .chain(phase)
            .min()
    }

    /// Put a new worker process in `slot`, its stdout on our poll.
    fn start(&mut self, slot: usize) -> io::Result<()> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.worker_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Terminal signals (Ctrl-C) go to the parent only; see the module comment.
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, getppid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl: then no signal will ever come.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("start worker {slot} ({}): {e}", self.exe.display()),
            )
        })?;
        let pipe = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("worker started without a stdout pipe"))
            .and_then(|stdout| {
                let mut pipe = Receiver::from(stdout);
                pipe.set_nonblocking(true)?;
                self.poll
                    .registry()
                    .register(&mut pipe, Token(slot), Interest::READABLE)?;
                Ok(pipe)
            });
        let pipe = match pipe {
            Ok(pipe) => pipe,
            Err(e) => {
                // It is not listening yet: nothing to drain, so no need to be gentle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        info!("worker {slot}: started, pid {}", child.id());
        let w = &mut self.workers[slot];
        w.child = Some(child);
        w.stdout = Some(pipe);
        w.partial.clear();
        w.listening.clear();
        w.started = Instant::now();
        w.restart_at = None;
        Ok(())
    }

    /// Read a worker's stdout until `WouldBlock` (edge-triggered) or EOF.
    fn read_stdout(&mut self, slot: usize) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let Some(pipe) = self.workers.get_mut(slot).and_then(|w| w.stdout.as_mut()) else {
                // An event for a pipe already closed: ignore it.
                return Ok(());
            };
            match pipe.read(&mut buf) {
                Ok(0) => {
                    let w = &mut self.workers[slot];
                    // Closing the descriptor also takes it out of the poll.
                    w.stdout = None;
                    let rest = std::mem::take(&mut w.partial);
                    if !rest.is_empty() {
                        self.on_line(slot, &rest)?;
                    }
                    return Ok(());
                }
                Ok(n) => {
                    self.workers[slot].partial.extend_from_slice(&buf[..n]);
                    self.split_lines(slot)?;
                }
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    warn!("worker {slot}: reading its output: {e}");
                    self.workers[slot].stdout = None;
                    return Ok(());
                }
            }
        }
    }

    fn split_lines(&mut self, slot: usize) -> io::Result<()> {
        loop {
            let partial = &mut self.workers[slot].partial;
            let line: Vec<u8> = match partial.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let line = partial[..end].to_vec();
                    partial.drain(..=end);
                    line
                }
                None if partial.len() > MAX_LINE => std::mem::take(partial),
                None => return Ok(()),
            };
            self.on_line(slot, &line)?;
        }
    }

    /// A line of a worker's stdout: collect `listening on` lines, pass anything else on.
    fn on_line(&mut self, slot: usize, line: &[u8]) -> io::Result<()> {
        let line = String::from_utf8_lossy(line);
        let expected = self.expected_lines;
        let w = &mut self.workers[slot];
        if !line.starts_with(LISTENING) || w.listening.len() >= expected {
            // Nothing else is printed today; whatever comes is the user's, not ours.
            let mut out = io::stdout().lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                debug!("worker {slot}: passing its output on: {e}");
            }
            return Ok(());
        }
        w.listening.push(line.into_owned());
        if w.listening.len() < expected {
            return Ok(());
        }
        let pid = w.child.as_ref().map_or(0, |c| c.id());
        match self.phase {
            Phase::Starting { .. } => {
                debug!("worker {slot} (pid {pid}) is listening");
                if self.workers.iter().all(|w| w.listening.len() == expected) {
                    self.announce()?;
                }
            }
            Phase::Running => info!("worker {slot} (pid {pid}) is listening again"),
            Phase::Stopping { .. } => {}
        }
        Ok(())
    }

    /// Print the listening lines once for all workers (they are the same in each).
    fn announce(&mut self) -> io::Result<()> {
        let n = self.workers.len();
        let mut out = io::stdout().lock();
        for line in &self.workers[0].listening {
            writeln!(out, "{line}  ({n} workers)")?;
        }
        out.flush()?;
        let pids: Vec<String> = self
            .workers
            .iter()
            .filter_map(|w| w.child.as_ref().map(|c| c.id().to_string()))
            .collect();
        info!("{n} workers listening, pids {}", pids.join(" "));
        self.phase = Phase::Running;
        Ok(())
    }

    fn on_signals(&mut self) {
        let received: Vec<i32> = self.signals.pending().collect();
        for signal in received {
            if signal == libc::SIGCHLD {
                continue; // `reap` runs after every wake-up anyway
            }
            if let Phase::Stopping { .. } = self.phase {
                // As for a single server, a second signal means "now": each worker closes
                // its remaining connections when it gets its second SIGTERM.
                info!("signal {signal} again: telling workers to close connections now");
                self.signal_all(libc::SIGTERM);
            } else {
                let running = self.workers.iter().filter(|w| w.child.is_some()).count();
                info!("signal {signal}: stopping {running} workers");
                self.phase = Phase::Stopping {
                    kill_at: Instant::now() + self.grace + KILL_MARGIN,
                    killed: false,
                };
                for w in &mut self.workers {
                    w.restart_at = None;
                }
                self.signal_all(libc::SIGTERM);
            }
        }
    }

    fn signal_all(&self, signal: i32) {
        for (slot, w) in self.workers.iter().enumerate() {
            if let Some(child) = &w.child {
                // A child not yet reaped keeps its pid (a zombie at worst), so this can
                // never hit an unrelated process that reused the number.
                // SAFETY: kill(2) has no memory-safety preconditions.
                if unsafe { libc::kill(child.id() as libc::pid_t, signal) } == -1 {
                    let e = io::Error::last_os_error();
                    warn!("worker {slot} (pid {}): kill: {e}", child.id());
                }
            }
        }
    }

    /// Collect every worker that exited, and decide what its exit means.
    fn reap(&mut self) -> io::Result<()> {
        for slot in 0..self.workers.len() {
            let Some(child) = self.workers[slot].child.as_mut() else {
                continue;
            };
            let pid = child.id();
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(e) => {
                    // Nothing to wait for (ECHILD) means it is gone all the same.
                    warn!("worker {slot} (pid {pid}): waitpid: {e}");
                    ExitStatus::from_raw(libc::EXIT_FAILURE << 8)
                }
            };
            // Whatever it printed before dying is still in the pipe.
            self.read_stdout(slot)?;
            let w = &mut self.workers[slot];
            w.child = None;
            w.stdout = None;
            w.partial.clear();
            self.exited(slot, pid, status)?;
        }
        Ok(())
    }

    fn exited(&mut self, slot: usize, pid: u32, status: ExitStatus) -> io::Result<()> {
        let w = &mut self.workers[slot];
        match self.phase {
            Phase::Starting { .. } => {
                // Before the first announcement a death is almost always configuration
                // (a bad option, a port taken): restarting would only repeat it.
                let what = if w.listening.len() < self.expected_lines {
                    "before listening"
                } else {
                    "while the others were starting"
                };
                error!("worker {slot} (pid {pid}) exited {what}: {status}");
                Err(io::Error::other(format!(
                    "worker {slot} exited {what} ({status}); its error, if any, is above"
                )))
            }
            Phase::Stopping { .. } => {
                // Killed by our own SIGTERM counts as clean: that happens when it came
                // before the worker had set up its signal handling.
                if status.success() || status.signal() == Some(libc::SIGTERM) {
                    info!("worker {slot} (pid {pid}) stopped: {status}");
                } else {
                    warn!("worker {slot} (pid {pid}) did not stop cleanly: {status}");
                    self.unclean.push(format!("worker {slot}: {status}"));
                }
                Ok(())
            }
            Phase::Running if status.success() => {
                // Exit 0 is a worker told to stop (someone sent *it* SIGTERM): respect it.
                info!("worker {slot} (pid {pid}) exited 0 on its own: not restarting it");
                Ok(())
            }
            Phase::Running => {
                let now = Instant::now();
                if now.duration_since(w.started) >= STABLE_AFTER {
                    w.backoff = MIN_BACKOFF;
                }
                let at = (w.started + w.backoff).max(now);
                w.restart_at = Some(at);
                w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
                warn!(
                    "worker {slot} (pid {pid}) died: {status}; restarting it in {:.1}s",
                    at.duration_since(now).as_secs_f64()
                );
                Ok(())
            }
        }
    }

    fn on_deadlines(&mut self) -> io::Result<()> {
        let now = Instant::now();
        match self.phase {
            Phase::Starting { deadline } if now >= deadline => {
                let waiting: Vec<String> = self
                    .workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.listening.len() < self.expected_lines)
                    .map(|(slot, _)| slot.to_string())
                    .collect();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "workers {} did not report listening within {STARTUP_TIMEOUT:?}",
                        waiting.join(", ")
                    ),
                ))
            }
            Phase::Starting { .. } => Ok(()),
            Phase::Running => {
                for slot in 0..self.workers.len() {
                    if !self.workers[slot].restart_at.is_some_and(|t| t <= now) {
                        continue;
                    }
                    self.workers[slot].restarts += 1;
                    if let Err(e) = self.start(slot) {
                        let w = &mut self.workers[slot];
                        let delay = w.backoff;
                        w.restart_at = Some(now + delay);
                        w.backoff = (delay * 2).min(MAX_BACKOFF);
                        warn!("worker {slot}: {e}; trying again in {delay:?}");
                    }
                }
                Ok(())
            }
            Phase::Stopping { kill_at, killed } if !killed && now >= kill_at => {
                let left = self.workers.iter().filter(|w| w.child.is_some()).count();
                warn!("{left} workers still running after the grace period: SIGKILL");
                self.signal_all(libc::SIGKILL);
                self.phase = Phase::Stopping {
                    kill_at,
                    killed: true,
                };
                Ok(())
            }
            Phase::Stopping { .. } => Ok(()),
        }
    }

    /// After an error: stop the workers (SIGTERM, a bounded wait, SIGKILL) and reap them.
    fn stop_now(&mut self) {
        self.signal_all(libc::SIGTERM);
        let kill_at = Instant::now() + self.grace + KILL_MARGIN;
        while Instant::now() < kill_at && self.workers.iter().any(|w| w.child.is_some()) {
            for w in &mut self.workers {
                if let Some(child) = &mut w.child {
                    if !matches!(child.try_wait(), Ok(None)) {
                        w.child = None;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for w in &mut self.workers {
            if let Some(mut child) = w.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Only reached with workers left on an unexpected path (a panic): do not leave
        // them running. On every normal path they are all reaped by now.
        for w in &mut self.workers {
            if let Some(mut child) = w.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
