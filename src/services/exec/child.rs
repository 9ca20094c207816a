//! One command's process: started safely, watched without blocking, never left behind.
//!
//! **Starting** (`spawn`): `execve` of the listed path with the request's arguments, no
//! shell; stdin is `/dev/null` (nothing a client sends reaches the command); stdout and
//! stderr are pipes whose read ends we make non-blocking and put on the loop
//! (`Stream::PipeIn`), drained like sockets; the environment is emptied but for `PATH`
//! and the variables `--env` passes through; the working directory is `--dir`. The
//! child leads a **process group** of its own, so a signal to the group reaches
//! whatever it started too, and `PR_SET_PDEATHSIG` asks the kernel to SIGKILL it should
//! the server die without cleaning up (even by SIGKILL). `fork` + `exec` is a short
//! system call, not a wait: the loop goes on at once.
//!
//! **Exit** is an event: the loop delivers SIGCHLD, and `try_reap` asks with
//! `waitid(WNOHANG | WNOWAIT)` whether the child exited, without reaping it yet. While
//! the exited child is a zombie its pid, and so its process-group id, cannot be reused
//! by anyone: that is the one moment a SIGKILL to the group is sure to hit only what the
//! command left running (a background process holding our pipes open). Then
//! `waitpid(WNOHANG)` reaps it. After that the group is never signalled again.
//!
//! **Dropping** a `ChildProcess` that was not reaped kills its group and waits for it:
//! the server's last act at shutdown, so that no child outlives it or stays a zombie.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::unix::pipe;

/// What to run, and how.
#[derive(Debug)]
pub struct Spec<'a> {
    /// The listed path.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// The working directory.
    pub dir: &'a Path,
    /// The whole environment of the child.
    pub env: &'a [(String, String)],
}

/// A started child, with the read ends of its stdout and stderr (non-blocking).
#[derive(Debug)]
pub struct Started {
    /// The process.
    pub process: ChildProcess,
    /// Our end of its stdout.
    pub stdout: pipe::Receiver,
    /// Our end of its stderr.
    pub stderr: pipe::Receiver,
}

/// Start the program (see the module docs). The error names it.
pub fn spawn(spec: &Spec<'_>) -> io::Result<Started> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The server may have died before prctl: then no signal would ever come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        // The error may be the program's or the directory's (chdir fails the same way).
        io::Error::new(
            e.kind(),
            format!(
                "cannot run {} in {}: {e}",
                spec.program.display(),
                spec.dir.display()
            ),
        )
    })?;
    let mut process = ChildProcess {
        pid: child.id(),
        status: None,
        child: None,
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        process.child = Some(child);
        return Err(io::Error::other("the child's pipes are missing"));
    };
    process.child = Some(child);
    // If either fails, `process` is dropped, which kills and reaps the child.
    let stdout = pipe::Receiver::from(stdout);
    stdout.set_nonblocking(true)?;
    let stderr = pipe::Receiver::from(stderr);
    stderr.set_nonblocking(true)?;
    Ok(Started {
        process,
        stdout,
        stderr,
    })
}

/// A child process until it is reaped (and its status after).
#[derive(Debug)]
pub struct ChildProcess {
    pid: u32,
    /// How it exited, once reaped.
    status: Option<ExitStatus>,
    /// The std handle, kept for `try_wait`/`wait` (`None` only while being built).
    child: Option<Child>,
}

impl ChildProcess {
    /// Its process id (also its process-group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How it exited, if it has been reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Send `signal` to its process group, unless it was reaped (its group id may then
    /// belong to someone else). Failures are logged: the group may have just emptied.
    pub fn signal_group(&self, signal: i32) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the
        // process group, which is ours while its leader is unreaped.
        if unsafe { libc::kill(-(self.pid as libc::pid_t), signal) } == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                warn!("process group {}: kill: {e}", self.pid);
            }
        }
    }

    /// If it exited: kill what it left running in its group, reap it, and return its
    /// status. Never blocks. Call on every SIGCHLD (signals coalesce: one may stand for
    /// several exits).
    pub fn try_reap(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        if !self.exited() {
            return None;
        }
        // A zombie still: its group id is reserved, so this reaches only its leftovers.
        self.signal_group(libc::SIGKILL);
        let status = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => status,
            Some(Ok(None)) => return None, // cannot happen: it exited, and only we reap
            Some(Err(e)) => {
                // Nothing to wait for (ECHILD) means it is gone all the same.
                warn!("child {}: waitpid: {e}", self.pid);
                ExitStatus::from_raw(libc::EXIT_FAILURE << 8)
            }
            None => ExitStatus::from_raw(libc::EXIT_FAILURE << 8),
        };
        self.status = Some(status);
        Some(status)
    }

    /// Whether it exited (a zombie now), without reaping it.
    fn exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid value for waitid to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: `info` is a valid siginfo_t we own; P_PID with our child's pid.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if r == 0 {
                // With WNOHANG, si_pid stays 0 when the child has not exited.
                // SAFETY: waitid filled `info` in (or left it zeroed).
                return unsafe { info.si_pid() } != 0;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // ECHILD: already reaped by someone; let try_wait find out.
            debug!("child {}: waitid: {e}", self.pid);
            return true;
        }
    }

    /// Kill its group and wait for it, at most `limit`: for the server's own exit, after
    /// the loop has stopped. Returns whether it was reaped.
    pub fn kill_and_reap(&mut self, limit: Duration) -> bool {
        if self.status.is_some() {
            return true;
        }
        self.signal_group(libc::SIGKILL);
        let deadline = Instant::now() + limit;
        loop {
            if self.try_reap().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                warn!("child {} did not die of SIGKILL in {limit:?}", self.pid);
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Only unexpected paths get here with a live child (a panic, a failed poll):
        // never leave it running, nor a zombie.
        if self.status.is_none() {
            self.kill_and_reap(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/bin:/bin".into())]
    }

    #[test]
    fn a_child_is_reaped_and_its_group_is_its_own() {
        let args = vec!["-c".to_string(), "exit 3".to_string()];
        let env = env();
        let spec = Spec {
            program: Path::new("/bin/sh"),
            args: &args,
            dir: Path::new("/"),
            env: &env,
        };
        let mut started = spawn(&spec).expect("spawn");
        let pid = started.process.pid();
        // SAFETY: getpgid has no memory-safety preconditions.
        let group = unsafe { libc::getpgid(pid as libc::pid_t) };
        assert!(group == pid as i32 || group == -1, "group {group}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = started.process.try_reap() {
                break status;
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(started.process.status(), Some(status));
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let env = env();
        let spec = Spec {
            program: Path::new("/nonexistent/prog"),
            args: &[],
            dir: Path::new("/"),
            env: &env,
        };
        let e = spawn(&spec).unwrap_err().to_string();
        assert!(e.contains("cannot run /nonexistent/prog"), "{e}");
    }

    #[test]
    fn dropping_kills_and_reaps() {
        let args = vec!["60".to_string()];
        let env = env();
        let spec = Spec {
            program: Path::new("/bin/sleep"),
            args: &args,
            dir: Path::new("/"),
            env: &env,
        };
        let started = spawn(&spec).expect("spawn");
        let pid = started.process.pid();
        drop(started);
        // Reaped: the pid is no longer ours to wait for.
        // SAFETY: waitpid with WNOHANG on a pid; no memory is passed.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "child {pid} still waitable");
    }
}
