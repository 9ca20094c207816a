//! `serve --workers auto`: how many worker processes a server needs.
//!
//! A worker is one process, so it holds at most its open-file limit of connections
//! (`RLIMIT_NOFILE`, 20,000 on the machine this was written for), less what it keeps for
//! itself. The number of workers is therefore decided by how many connections the server
//! must be able to hold:
//!
//! - with `--max-conns N`, N is the whole server's limit (with `auto` it is split over
//!   the workers, each getting its share: with a count given, it is per worker);
//! - without it, half the machine's open files (`fs.file-max`): a server tested on its
//!   own machine shares the descriptors with the clients, one each per connection.
//!
//! Each worker is planned at 90 % of its limit, because `SO_REUSEPORT` spreads
//! connections by a hash, not evenly: with 20,000 a worker, the busiest worker of 50
//! gets about 400 (three standard deviations) more than the average. And there are at
//! least as many workers as cores, so that the server uses the whole machine.

/// Descriptors a worker keeps for itself (listener, epoll, signal pipe, stdio, ...).
const RESERVED_FDS: u64 = 64;
/// Part of a worker's open-file limit planned for connections (the hash is uneven).
const SHARE: f64 = 0.9;
/// Connections to plan for when nothing says how many (no `fs.file-max` readable).
const FALLBACK_CONNS: u64 = 1_000_000;

/// What `auto` decided, and why (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoWorkers {
    /// Worker processes to start.
    pub workers: usize,
    /// `--max-conns` for each worker (its share of the total), when one was given.
    pub max_conns_each: Option<usize>,
    /// The reasoning, in one line.
    pub why: String,
}

/// Size a server for `max_conns` connections in total (None: half of `file_max`), with
/// `nofile` descriptors per process and `cpus` cores.
pub fn auto_workers(
    nofile: u64,
    file_max: Option<u64>,
    cpus: usize,
    max_conns: Option<usize>,
) -> AutoWorkers {
    let per_worker = ((nofile.saturating_sub(RESERVED_FDS) as f64 * SHARE) as u64).max(1);
    let (conns, because) = match (max_conns, file_max) {
        (Some(n), _) => (n as u64, format!("--max-conns {n}")),
        (None, Some(f)) => (f / 2, format!("half of fs.file-max {f}")),
        (None, None) => (FALLBACK_CONNS, "fs.file-max unreadable".to_string()),
    };
    let for_files = conns.div_ceil(per_worker) as usize;
    let workers = for_files.max(cpus).max(1);
    AutoWorkers {
        workers,
        max_conns_each: max_conns.map(|n| n.div_ceil(workers)),
        why: format!(
            "{conns} connections ({because}) at {per_worker} per worker (90 % of the \
             open-file limit {nofile}) need {for_files}; {cpus} cores"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_workers_for_the_files_and_at_least_one_per_core() {
        // This machine: 20,000 files a process, 2,466,116 on the machine, 2 cores.
        let a = auto_workers(20_000, Some(2_466_116), 2, None);
        assert_eq!(a.workers, 69, "{a:?}");
        assert_eq!(a.max_conns_each, None);
        // A million connections asked for: 56 workers of 17,942, each a 56th of it.
        let m = auto_workers(20_000, Some(2_466_116), 2, Some(1_000_000));
        assert_eq!(m.workers, 56, "{m:?}");
        assert_eq!(m.max_conns_each, Some(17_858));
        assert!(m.workers * m.max_conns_each.unwrap() >= 1_000_000);
        // Few connections: one worker per core still.
        assert_eq!(auto_workers(20_000, None, 8, Some(100)).workers, 8);
        assert_eq!(
            auto_workers(20_000, None, 8, Some(100)).max_conns_each,
            Some(13)
        );
    }
}
