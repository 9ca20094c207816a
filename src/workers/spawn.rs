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
//!    --listen <concrete address>`), stderr inherited (so their log lines and `summary:`
//!    lines appear as they would for one server), and for stdout one end of a Unix socket
//!    pair whose other end the parent reads;
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
//! Steps 1 and 2 are this file, with `Worker`, a slot holding one worker process (signals
//! to it, reaping it, the restart back-off). Steps 3 and 4 are `supervisor.rs`: not a
//! loop of its own but a `Handler` on the crate's one `EventLoop`, for which signals,
//! the workers' output and the supervisor's deadlines are events like any other.
//!
//! Two process details matter. Workers run in their own process group, so a Ctrl-C in a
//! terminal reaches only the parent, which forwards exactly one SIGTERM — otherwise each
//! worker would get SIGINT from the terminal *and* SIGTERM from the parent, and a second
//! signal means "close everything now" to a worker. And workers ask the kernel for
//! SIGTERM when the parent dies (`PR_SET_PDEATHSIG`), so a parent killed with SIGKILL
//! does not leave orphans holding the port.
//!
//! Options such as `--max-conns` apply to each worker, not to the total.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use log::warn;
use mio::Token;
use socket2::{Socket, Type};

use crate::core::listen::bound_socket;

/// Bind (never listen on) `addr` with the options a worker's listener will have, so the
/// port is ours for as long as the socket lives; returns it with its concrete address.
pub fn reserve_port(addr: SocketAddr) -> io::Result<(Socket, SocketAddr)> {
    // The same options as a worker's listener (`listen::bind_tcp` with `reuse_port`):
    // the kernel lets sockets share a port only if all of them agree.
    let socket = bound_socket(addr, Type::STREAM, true, "(for the workers) ")?;
    let local = socket
        .local_addr()
        .map_err(|e| io::Error::new(e.kind(), format!("address of {addr}: {e}")))?
        .as_socket()
        .ok_or_else(|| io::Error::other(format!("bound {addr} but got no IP address back")))?;
    Ok((socket, local))
}

/// How to start one worker: our own program, with the arguments the command line chose.
pub struct WorkerCommand {
    /// The program (our own executable).
    pub exe: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// Start the worker for `slot`; returns it with our end of its stdout (non-blocking).
    pub(crate) fn spawn(&self, slot: usize) -> io::Result<(Child, UnixStream)> {
        // A socket pair rather than a pipe: the loop's connections are sockets, and to
        // the worker a socket is as good a stdout as a pipe.
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(theirs)))
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
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("start worker {slot} ({}): {e}", self.exe.display()),
            )
        })?;
        // `cmd` goes now, and with it our copy of the worker's end: the worker's exit is
        // then what closes the socket, and we read EOF.
        Ok((child, ours))
    }
}

/// Shortest time between two starts of the same worker slot.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest, reached by doubling while a worker keeps dying young.
const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// A worker that lived this long was healthy: its next restart is quick again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// One worker slot: the process in it now (if any), what the parent knows of it, and the
/// slot's restart bookkeeping.
pub(crate) struct Worker {
    /// The process, until it is reaped.
    child: Option<Child>,
    /// Its pid, for log lines (kept after the reaping).
    pub(crate) pid: u32,
    /// Its stdout on the loop, until EOF.
    pub(crate) stdout: Option<Token>,
    /// How it exited, once reaped; reported by `finished` when `stdout` has closed too.
    exited: Option<ExitStatus>,
    /// The `listening on` lines of the current process.
    pub(crate) listening: Vec<String>,
    started: Instant,
    /// Delay from one start of this slot to the next, when the worker dies young.
    backoff: Duration,
    /// When the slot's next process is due (the slot is empty until then).
    pub(crate) restart_at: Option<Instant>,
    /// Processes started in this slot after the first.
    pub(crate) restarts: u64,
}

impl Worker {
    /// An empty slot.
    pub(crate) fn new() -> Worker {
        Worker {
            child: None,
            pid: 0,
            stdout: None,
            exited: None,
            listening: Vec::new(),
            started: Instant::now(),
            backoff: MIN_BACKOFF,
            restart_at: None,
            restarts: 0,
        }
    }

    /// A new process is in the slot, its stdout on the loop as `stdout`.
    pub(crate) fn started(&mut self, child: Child, stdout: Token) {
        self.pid = child.id();
        self.child = Some(child);
        self.stdout = Some(stdout);
        self.listening.clear();
        self.started = Instant::now();
        self.restart_at = None;
    }

    /// The process is there and not yet reaped.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Nothing in the slot, and nothing to come.
    pub(crate) fn is_empty(&self) -> bool {
        self.child.is_none() && self.exited.is_none() && self.restart_at.is_none()
    }

    /// Send `signal` to the process, if it is not reaped yet.
    pub(crate) fn signal(&self, slot: usize, signal: i32) {
        if self.child.is_none() {
            return;
        }
        // A child not yet reaped keeps its pid (a zombie at worst), so this can never hit
        // an unrelated process that reused the number.
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(self.pid as libc::pid_t, signal) } == -1 {
            let e = io::Error::last_os_error();
            warn!("worker {slot} (pid {}): kill: {e}", self.pid);
        }
    }

    /// Reap the process if it has exited (a non-blocking `waitpid`); its exit status once
    /// its stdout has closed too — until then, the last lines it printed may be unread.
    pub(crate) fn finished(&mut self, slot: usize) -> Option<ExitStatus> {
        if let Some(child) = &mut self.child {
            let status = match child.try_wait() {
                Ok(status) => status,
                Err(e) => {
                    // Nothing to wait for (ECHILD) means it is gone all the same.
                    warn!("worker {slot} (pid {}): waitpid: {e}", self.pid);
                    Some(ExitStatus::from_raw(libc::EXIT_FAILURE << 8))
                }
            };
            if status.is_some() {
                self.child = None;
                self.exited = status;
            }
        }
        match self.stdout {
            Some(_) => None,
            None => self.exited.take(),
        }
    }

    /// The process died: start the next one `backoff` after this one started (or now),
    /// and double the back-off unless this one lived long enough to count as healthy.
    pub(crate) fn plan_restart(&mut self, now: Instant) -> Duration {
        if now.duration_since(self.started) >= STABLE_AFTER {
            self.backoff = MIN_BACKOFF;
        }
        let at = (self.started + self.backoff).max(now);
        self.restart_at = Some(at);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        at.duration_since(now)
    }

    /// Starting a process failed: try again after the back-off, doubled for next time.
    pub(crate) fn retry_later(&mut self, now: Instant) -> Duration {
        let delay = self.backoff;
        self.restart_at = Some(now + delay);
        self.backoff = (delay * 2).min(MAX_BACKOFF);
        delay
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Only reached with a process left on an unexpected path (a panic, a failed
        // poll): do not leave it running. On every normal path it is reaped by now.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
