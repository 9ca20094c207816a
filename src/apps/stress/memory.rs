//! Memory of processes, from `/proc`: ours, and the target's (`--server-pid`).
//!
//! The stress tester reports how much resident memory each open connection costs, on
//! its own side and, with `--server-pid`, on the target's. The figure is a difference:
//! memory before connecting, memory half way through the hold (every connection open,
//! none closed yet), divided by the connections open. It is given twice:
//!
//! - **RSS** (`VmRSS`): every resident page, including the program's own code as it is
//!   first run. Those pages are read from the executable once and shared by every
//!   process running it, yet each process counts them again, so RSS growth per
//!   connection overstates when one run spreads over 51 tester and 69 server processes
//!   (about 500 KiB of code per tester process: 27 bytes per connection at 19,600
//!   connections each, in the million-connection run).
//! - **anonymous RSS** (`RssAnon`): only the process's own memory (heap and anonymous
//!   mappings), where a connection's state lives: the loop's slot and the handler's.
//!   This is the memory per connection proper.
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

/// Resident memory of a process (or of several, summed), KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mem {
    /// Every resident page (`VmRSS`), the program's shared code included.
    pub rss_kb: u64,
    /// The process's own memory only (`RssAnon`): heap and anonymous mappings.
    pub anon_kb: u64,
}

impl Mem {
    /// Growth per connection since `before`, bytes: (RSS, anonymous RSS).
    pub fn growth_per_conn(self, before: Mem, conns: u64) -> Option<(f64, f64)> {
        let per = |after: u64, before: u64| (after as f64 - before as f64) * 1024.0 / conns as f64;
        (conns > 0).then(|| {
            (
                per(self.rss_kb, before.rss_kb),
                per(self.anon_kb, before.anon_kb),
            )
        })
    }
}

/// Resident memory of a process (`self` for this one).
pub fn mem_kb(pid: &str) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Mem {
        rss_kb: field("VmRSS:")?,
        anon_kb: field("RssAnon:")?,
    })
}

/// Resident set size of a process (`self` for this one), KiB.
pub fn rss_kb(pid: &str) -> Option<u64> {
    mem_kb(pid).map(|m| m.rss_kb)
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

/// Total memory of the process trees of `roots` (`None` without roots, or when none
/// of the processes could be read).
pub fn tree_mem_kb(roots: &[u32]) -> Option<Mem> {
    if roots.is_empty() {
        return None;
    }
    let sizes: Vec<Mem> = process_trees(roots)
        .iter()
        .filter_map(|pid| mem_kb(&pid.to_string()))
        .collect();
    (!sizes.is_empty()).then(|| Mem {
        rss_kb: sizes.iter().map(|m| m.rss_kb).sum(),
        anon_kb: sizes.iter().map(|m| m.anon_kb).sum(),
    })
}

/// The target's memory growth per connection since `before` (`--server-pid`), bytes:
/// (RSS, anonymous RSS).
pub fn server_mem_per_conn(roots: &[u32], before: Option<Mem>, conns: u64) -> Option<(f64, f64)> {
    tree_mem_kb(roots)?.growth_per_conn(before?, conns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_tree_holds_us_and_a_missing_pid_is_refused() {
        let me = std::process::id();
        assert!(process_trees(&[me]).contains(&me));
        let mem = tree_mem_kb(&[me]).expect("our memory");
        assert!(mem.rss_kb > 0 && mem.anon_kb > 0 && mem.anon_kb <= mem.rss_kb);
        assert!(check_pids(&[me]).is_ok());
        let err = check_pids(&[me, 999_999_999]).unwrap_err();
        assert!(err
            .to_string()
            .contains("--server-pid 999999999: no such process"));
        assert!(tree_mem_kb(&[]).is_none());
        let before = Mem {
            rss_kb: 100,
            anon_kb: 50,
        };
        let after = Mem {
            rss_kb: 200,
            anon_kb: 100,
        };
        assert_eq!(after.growth_per_conn(before, 1024), Some((100.0, 50.0)));
        assert_eq!(after.growth_per_conn(before, 0), None);
    }
}
