//! Exec: seed 004's remote command service, made safe, with child processes on the loop.
//!
//! Seed 004's server reads a command, runs it with `subprocess.Popen(cmd, shell=True)`,
//! blocks in `stdout.read()` and `stderr.read()` until it ends, and sends a 4-byte
//! length, a JSON header with `file_size`, and the output (`reply.rs`). It serves one
//! client at a time, runs anything, through a shell, for anyone who connects. Here:
//!
//! - **no shell**: a line is split into words as a shell would split them, and shell
//!   syntax is refused rather than interpreted (`command.rs`);
//! - **an allowlist** of absolute paths decides what may run (`allowlist.rs`);
//! - **authentication**: seed 000's HMAC challenge (`proto::hmac_auth`) before any
//!   command, unless the server was started with `--no-auth` (loopback and Unix only);
//! - **limits**: a time limit (`--timeout`: SIGTERM to the process group, SIGKILL after
//!   a grace), an output limit (`--max-output`: the child is killed, the reply is marked
//!   `truncated`), at most `--max-children` at once (further requests wait in arrival
//!   order); the child gets no stdin, a clean environment and `--dir` (`child.rs`);
//! - **no process left behind**: a client that goes away kills its command, SIGTERM to
//!   the server kills and reaps every child, and none is ever left a zombie.
//!
//! All of it on the one loop, nothing blocking it: a child's stdout and stderr are pipe
//! ends registered with the loop's `Poll` (`Stream::PipeIn`) and drained like sockets,
//! its exit arrives as SIGCHLD through the loop's signal pipe and is reaped with
//! `waitpid(WNOHANG)`, its time limits are loop timers. A slow command, a command that
//! prints gigabytes or a client that does not read its reply never holds the thread.
//!
//! The files:
//!
//! - [`command`]: a line into words; what is refused and why.
//! - [`allowlist`]: `--allow FILE`, and which entry a request matches.
//! - [`child`]: starting a child safely, signalling its group, reaping it.
//! - [`reply`]: the reply header (a pure codec, shared with the `netloop exec` client).
//! - [`job`]: one request's bookkeeping, from `Waiting` to its reply.
//! - `requests.rs`: a client's input: the challenge, lines, refusals.
//! - `running.rs`: children on the loop: starting, reading pipes, SIGCHLD, time limits.
//! - `replies.rs`: replies in order, paced by what the client reads.
//! - `handler.rs`: the `Handler` callbacks, each handing over to the three above.

pub mod allowlist;
pub mod child;
pub mod command;
mod handler;
pub mod job;
mod replies;
pub mod reply;
mod requests;
mod running;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use log::info;
use mio::Token;

use crate::core::log_limit::RateLimit;
use crate::core::{Millis, TimerId};
use crate::proto::hmac_auth::{Secret, CHALLENGE_LEN};
pub use allowlist::Allowlist;
use job::{Job, JobId};

/// Default `--timeout`: a command is killed after this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--max-output`: 16 MiB per reply.
pub const DEFAULT_MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// Default `--max-children`.
pub const DEFAULT_MAX_CHILDREN: usize = 16;
/// Between SIGTERM and SIGKILL to a command's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(1);
/// After a command exited, how long its pipes may stay open before they are closed.
const PIPE_DRAIN: Duration = Duration::from_secs(1);
/// `PATH` for children when the server has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What `serve exec` was asked to do (the command line builds it).
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// The programs that may run.
    pub allow: Allowlist,
    /// The shared secret clients must prove they know; `None` is `--no-auth`.
    pub secret: Option<Secret>,
    /// How long a client has to answer the challenge.
    pub auth_timeout: Duration,
    /// How long a command may run; also how long a client may read nothing of a reply.
    pub timeout: Duration,
    /// Most bytes of output (stdout and stderr together) in one reply.
    pub max_output: usize,
    /// Most children at once.
    pub max_children: usize,
    /// Names of variables passed through to children (besides `PATH`).
    pub env: Vec<String>,
    /// The children's working directory.
    pub dir: PathBuf,
}

/// A slot's state: a client connection, or one of a child's pipes.
#[derive(Debug)]
pub enum Slot {
    /// A client.
    Client(Client),
    /// A pipe of job `job`'s child.
    Pipe(JobId, job::Pipe),
}

impl Default for Slot {
    /// Accepted connections are clients.
    fn default() -> Slot {
        Slot::Client(Client::default())
    }
}

/// A client connection.
#[derive(Debug, Default)]
pub struct Client {
    /// The challenge sent, while its answer is awaited (boxed: idle slots stay small).
    challenge: Option<Box<[u8; CHALLENGE_LEN]>>,
    /// When the answer is due.
    auth_due: Millis,
    /// Its requests not yet answered in full, in order: at most one waiting or running,
    /// and at most two in all (one reply going out while the next command runs).
    jobs: VecDeque<JobId>,
    /// Bytes of a line over `command::MAX_LINE` skipped so far, until its end.
    skipping: Option<usize>,
    /// It sent EOF: no more requests; close once the last reply is out.
    ended: bool,
}

/// Counts for the summary lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    ran: u64,
    refused: u64,
    timed_out: u64,
    truncated: u64,
    abandoned: u64,
    auth_failed: u64,
}

/// The exec service.
#[derive(Debug)]
pub struct Exec {
    opts: ExecOptions,
    /// The children's whole environment.
    env: Vec<(String, String)>,
    /// Every unfinished job, by number (ordered: logs and reaping go oldest first).
    jobs: BTreeMap<JobId, Job>,
    next_job: JobId,
    /// Jobs waiting for a slot, oldest first (finished ones are skipped).
    waiting: VecDeque<JobId>,
    /// Slots taken (by a child, or by a reply not yet handed to the loop).
    slots: usize,
    /// Clients whose replies may move on: worked through by `settle`.
    dirty: Vec<Token>,
    /// SIGINT/SIGTERM came: no new commands.
    stopping: bool,
    /// Children running when the stop began (for the last log line).
    running_at_stop: usize,
    counts: Counts,
    reported: Counts,
    report_timer: Option<TimerId>,
    auth_warnings: RateLimit,
    /// Failures to start a child (a program or `--dir` gone since start-up).
    spawn_warnings: RateLimit,
}

impl Exec {
    /// The service (checks `--dir`, builds the children's environment).
    pub fn new(opts: ExecOptions) -> io::Result<Exec> {
        let dir = &opts.dir;
        let meta = std::fs::metadata(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("--dir {}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--dir {} is not a directory", dir.display()),
            ));
        }
        let mut env = vec![(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()),
        )];
        for name in &opts.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--env {name:?} is not a variable name"),
                ));
            }
            if let Ok(value) = std::env::var(name) {
                env.retain(|(k, _)| k != name);
                env.push((name.clone(), value));
            }
        }
        Ok(Exec {
            opts,
            env,
            jobs: BTreeMap::new(),
            next_job: 1,
            waiting: VecDeque::new(),
            slots: 0,
            dirty: Vec::new(),
            stopping: false,
            running_at_stop: 0,
            counts: Counts::default(),
            reported: Counts::default(),
            report_timer: None,
            auth_warnings: RateLimit::default(),
            spawn_warnings: RateLimit::default(),
        })
    }

    /// The environment every child gets.
    pub fn child_env(&self) -> &[(String, String)] {
        &self.env
    }

    fn summary(&self, since: &Counts) -> String {
        let c = &self.counts;
        format!(
            "ran={} refused={} timed_out={} truncated={} killed_on_disconnect={} \
             auth_failed={}",
            c.ran - since.ran,
            c.refused - since.refused,
            c.timed_out - since.timed_out,
            c.truncated - since.truncated,
            c.abandoned - since.abandoned,
            c.auth_failed - since.auth_failed,
        )
    }
}

impl Drop for Exec {
    /// The loop has ended (shutdown, or an error): kill and reap every child still
    /// there, so none outlives the server and none is left a zombie. SIGTERM went to
    /// them when the shutdown began; what is left now gets SIGKILL.
    fn drop(&mut self) {
        let mut left = 0;
        let mut stuck = 0;
        for job in self.jobs.values_mut() {
            if let Some(process) = job.process.as_mut() {
                if process.status().is_none() {
                    left += 1;
                    if !process.kill_and_reap(Duration::from_secs(2)) {
                        stuck += 1;
                    }
                }
            }
        }
        if self.stopping || left > 0 {
            info!(
                "exec: stopped: {} children were running; {} reaped on the loop, {} killed \
                 and reaped after it, {stuck} could not be reaped",
                self.running_at_stop.max(left),
                self.running_at_stop.saturating_sub(left),
                left - stuck,
            );
        }
    }
}
