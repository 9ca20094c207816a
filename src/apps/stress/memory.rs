//! Memory of processes, from `/proc`: ours, and the target's (`--server-pid`).
//!
//! The stress tester reports how much resident memory each open connection costs, on
//! its own side and, with `--server-pid`, on the target's. The figure is a difference:
//! RSS before connecting, RSS half way through the hold (every connection open, none
//! closed yet), divided by the connections open.
//!
//! A server is not always one process. `netloop serve --workers N`, nginx and many
//! others are a parent and its workers, and the memory per connection is in the
//! workers. So `--server-pid` takes several PIDs (`--server-pid 12,34` or the option
//! repeated), and each PID stands for **its whole process tree**: the process and all
//! its descendants, found from the parent PIDs in `/proc/*/stat`, each counted once.
//! The tree is listed again at each reading, so a worker restarted in between is
//! counted as it is then. A PID that does not exist is refused before anything
//! starts: silently reporting nothing would look like a server that costs nothing.

use std::collections::{BTreeSet, HashMap};
use std::io;

/// Resident set size of a process (`self` for this one), KiB.
pub fn rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Check that every PID names a running process (`--server-pid`).
pub fn check_pids(pids: &[u32]) -> io::Result<()> {
    for &pid in pids {
        if pid == 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--server-pid {pid}: no such process (give the server's PID, e.g. from \
                     `pgrep -o -f 'netloop serve'`; a supervisor's PID counts its workers)"
                ),
            ));
        }
    }
    Ok(())
}

/// The parent PID of every process, from `/proc/*/stat`.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so the
        // fields are counted from the last `)`.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // gone meanwhile
        };
        let ppid = stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        if let Some(ppid) = ppid {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The processes `roots` stand for: each one and all its descendants, once each.
pub fn process_trees(roots: &[u32]) -> BTreeSet<u32> {
    let parents = parents();
    let mut all: BTreeSet<u32> = roots.iter().copied().collect();
    // Grow the set until no process outside it has a parent inside it.
    loop {
        let before = all.len();
        for (&pid, ppid) in &parents {
            if all.contains(ppid) {
                all.insert(pid);
            }
        }
        if all.len() == before {
            return all;
        }
    }
}

/// Total RSS of the process trees of `roots`, KiB (`None` without roots, or when none
/// of the processes could be read).
pub fn tree_rss_kb(roots: &[u32]) -> Option<u64> {
    if roots.is_empty() {
        return None;
    }
    let sizes: Vec<u64> = process_trees(roots)
        .iter()
        .filter_map(|pid| rss_kb(&pid.to_string()))
        .collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum())
}

/// The target's RSS growth per connection since `before_kb` (`--server-pid`).
pub fn server_rss_per_conn(roots: &[u32], before_kb: Option<u64>, conns: u64) -> Option<f64> {
    let after = tree_rss_kb(roots)?;
    let before = before_kb?;
    (conns > 0).then(|| (after as f64 - before as f64) * 1024.0 / conns as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_tree_holds_us_and_a_missing_pid_is_refused() {
        let me = std::process::id();
        assert!(process_trees(&[me]).contains(&me));
        assert!(tree_rss_kb(&[me]).is_some_and(|kb| kb > 0));
        assert!(check_pids(&[me]).is_ok());
        let err = check_pids(&[me, 999_999_999]).unwrap_err();
        assert!(err
            .to_string()
            .contains("--server-pid 999999999: no such process"));
        assert!(tree_rss_kb(&[]).is_none());
    }
}
