//! Starting a worker process of ours: the one place in the crate that does it.
//!
//! Two commands run copies of the `netloop` executable as workers: `serve --workers N`
//! (each worker serves a share of the connections; see `supervisor.rs`) and
//! `stress --workers W` (each worker opens a share of the connections; see
//! `apps/stress/workers.rs`). Both start them the same way, here:
//!
//! - **stdout is one end of a Unix socket pair** whose other end the parent puts on its
//!   loop, non-blocking, as a connection like any other: the worker's lines are
//!   `on_data`, its death is an EOF. A socket rather than a pipe because the loop's
//!   connections are sockets; to the worker a socket is as good a stdout as a pipe.
//! - **stdin** is either `/dev/null` (`WorkerStdin::Null`: a server worker takes no
//!   orders) or another socket pair (`WorkerStdin::Socket`: the stress parent writes
//!   `go` on it; the worker takes its end with [`stdin_from_parent`]).
//! - **stderr is inherited**, so a worker's log lines look like a single process's.
//! - **its own process group**, so a Ctrl-C in a terminal reaches only the parent, which
//!   decides what the workers get (the serve parent forwards exactly one SIGTERM; a second
//!   signal would mean "close everything now" to a worker).
//! - **`PR_SET_PDEATHSIG`**: the kernel sends the worker SIGTERM when the parent dies, so
//!   a parent killed with SIGKILL leaves no orphans holding ports or connections. (The
//!   kernel ties this to the parent *thread* that forked; both parents fork from their
//!   loop thread, which lives as long as they do.)
//!
//! A worker's exit is an event too, never a blocking wait: the parent registers SIGCHLD
//! with its loop (`EventLoop::handle_signals_from`) and, on each one, asks every
//! `WorkerProcess` with [`WorkerProcess::try_reap`] (one non-blocking `waitpid` each:
//! signals coalesce, so one SIGCHLD may stand for several exits).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use log::warn;
use mio::Token;

use crate::core::{Ctx, Peer, Stream};

/// What a worker's standard input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerStdin {
    /// `/dev/null`: the parent has nothing to tell the worker (it uses signals).
    Null,
    /// A socket pair: the parent writes to the worker, and closing it tells the worker
    /// that the parent is gone.
    Socket,
}

/// How to start one worker: our own program, the arguments the command line chose, and
/// what its stdin is.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    /// The program (our own executable).
    pub exe: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// What its standard input is.
    pub stdin: WorkerStdin,
}

impl WorkerCommand {
    /// Our own executable with `args`.
    pub fn ours(args: Vec<String>, stdin: WorkerStdin) -> io::Result<WorkerCommand> {
        let exe = std::env::current_exe()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot find our own program: {e}")))?;
        Ok(WorkerCommand { exe, args, stdin })
    }
}

/// A worker just started, with the parent's ends of its stdout and stdin.
pub struct Spawned {
    /// The process.
    pub process: WorkerProcess,
    /// Our end of its stdout (non-blocking): put it on the loop with [`add_to_loop`].
    pub stdout: UnixStream,
    /// Our end of its stdin (non-blocking), with `WorkerStdin::Socket`.
    pub stdin: Option<UnixStream>,
}

/// Start the worker for `slot` (the number only names it in messages).
pub fn spawn_worker(command: &WorkerCommand, slot: usize) -> io::Result<Spawned> {
    let (stdout, their_stdout) = UnixStream::pair()?;
    stdout.set_nonblocking(true)?;
    let (stdin, their_stdin) = match command.stdin {
        WorkerStdin::Null => (None, Stdio::null()),
        WorkerStdin::Socket => {
            let (ours, theirs) = UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            (Some(ours), Stdio::from(OwnedFd::from(theirs)))
        }
    };
    let mut cmd = Command::new(&command.exe);
    cmd.args(&command.args)
        .stdin(their_stdin)
        .stdout(Stdio::from(OwnedFd::from(their_stdout)))
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
            format!("start worker {slot} ({}): {e}", command.exe.display()),
        )
    })?;
    // `cmd` goes now, and with it our copies of the worker's ends: the worker's exit is
    // then what closes the sockets, and we read EOF.
    Ok(Spawned {
        process: WorkerProcess { child, slot },
        stdout,
        stdin,
    })
}

/// Put our end of a worker's stdout or stdin on the loop, as a connection with `state`.
pub fn add_to_loop<S>(ctx: &mut Ctx<S>, stream: UnixStream, state: S) -> io::Result<Token> {
    let stream = Stream::Unix(mio::net::UnixStream::from_std(stream));
    ctx.add_stream(stream, Peer::Local, state)
}

/// The worker's side of `WorkerStdin::Socket`: its stdin as a non-blocking socket, for
/// its loop. Fails, naming the reason, when stdin is not a socket (a person ran the
/// hidden worker mode by hand).
pub fn stdin_from_parent() -> io::Result<UnixStream> {
    // SAFETY: dup(0) returns a new descriptor that we own (or -1, checked).
    let fd = unsafe { libc::dup(0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stdin = UnixStream::from(owned);
    stdin
        .set_nonblocking(true)
        .map_err(|e| io::Error::new(e.kind(), format!("worker stdin must be a socket: {e}")))?;
    Ok(stdin)
}

/// A worker process until it is reaped. Drop it once `try_reap` has said how it exited;
/// dropping it before kills it (only unexpected paths do that: a panic, a failed poll).
pub struct WorkerProcess {
    child: Child,
    /// Its slot, for messages.
    slot: usize,
}

impl WorkerProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (a failure is logged: the worker may have just exited).
    pub fn signal(&self, signal: i32) {
        // A child not yet reaped keeps its pid (a zombie at worst), and this value is
        // dropped once reaped, so this can never hit an unrelated process that reused it.
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(self.pid() as libc::pid_t, signal) } == -1 {
            let e = io::Error::last_os_error();
            warn!("worker {} (pid {}): kill: {e}", self.slot, self.pid());
        }
    }

    /// How it exited, if it has (one non-blocking `waitpid`).
    pub fn try_reap(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(e) => {
                // Nothing to wait for (ECHILD) means it is gone all the same.
                warn!("worker {} (pid {}): waitpid: {e}", self.slot, self.pid());
                Some(ExitStatus::from_raw(libc::EXIT_FAILURE << 8))
            }
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Do not leave a process running (or a zombie) behind; a no-op once reaped.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
