//! Worker processes: more cores and more descriptors than one process has.
//!
//! One netloop process is one thread on one `Poll`, so it uses one core, and every
//! connection costs it a file descriptor, so it holds at most `RLIMIT_NOFILE` of them
//! (20,000 on the machine this was written for, and that is the *hard* limit: no amount
//! of `ulimit -n` raises it). Both limits are per process, so the way past them is more
//! processes, each still the simple single-threaded loop — nothing in it is shared,
//! locked or even aware of the others. Two commands do this:
//!
//! - `serve --workers N` (the nginx model): N workers share the listening port with
//!   `SO_REUSEPORT`. The parent serves nothing: it **reserves** the ports (`ports.rs`),
//!   **spawns** N copies of itself (`serve ... --workers 1 --reuse-port --listen
//!   <concrete address>`), reads each worker's stdout until its `listening on` lines
//!   have come and **announces** them once (plus `(N workers)`, so scripts that wait for
//!   `listening on` work unchanged), then **supervises** (`supervisor.rs`): restarts a
//!   worker that dies, with a back-off (`slot.rs`); on SIGINT/SIGTERM sends SIGTERM to
//!   each, SIGKILL to any still there after `--grace` plus a margin, and exits 0 only if
//!   every worker stopped cleanly, logging one `summary:` line with the workers'
//!   counters added up (`summary.rs`). Options such as `--max-conns` apply to each
//!   worker. A port another server uses is refused, never shared (`ports.rs`).
//! - `stress --workers W` (`apps/stress/workers.rs`): W workers each open a share of the
//!   connections and report back; the parent releases them together and merges reports.
//!
//! Both parents are handlers on the crate's one `EventLoop`, for which signals (SIGCHLD
//! included), the workers' output and the parent's own deadlines (loop timers) are
//! events like any other.
//!
//! - [`spawn`]: starting a worker (the one place that does it), its stdin and stdout as
//!   sockets on the loop, reaping it.
//! - [`ports`]: reserving a port for `serve` workers to share, and only them.
//! - [`sizing`]: how many workers `serve --workers auto` starts.
//! - [`slot`]: one `serve` worker slot and its restart back-off.
//! - [`supervisor`]: the `serve` parent, a handler on the loop.
//! - [`summary`]: a worker's counters on its stdout, added up into one `summary:` line.

pub mod ports;
pub mod sizing;
mod slot;
pub mod spawn;
pub mod summary;
pub mod supervisor;
