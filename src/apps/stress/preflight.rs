//! Preflight: the machine's limits that decide whether a run can succeed, read before
//! the first connect, and one clear refusal when it cannot.
//!
//! A run that cannot fit fails minutes in, in a confusing way: connects fail with
//! `EMFILE` or `EADDRNOTAVAIL` after half a million succeeded, or the machine starts
//! reclaiming memory. The limits are all readable up front, so the tester reads them
//! and refuses an impossible ask at once, naming the limit and what to do about it:
//!
//! - **open files, machine-wide** (`fs.file-max`, and `fs.file-nr` for what is in use):
//!   every connection is a descriptor here, and on a loopback target one more in the
//!   server;
//! - **open files per process** (`RLIMIT_NOFILE`, capped by `fs.nr_open`): not a
//!   refusal, since the connections are spread over worker processes (`workers.rs`), but
//!   it decides how many;
//! - **ephemeral ports** (`net.ipv4.ip_local_port_range`): one source address has that
//!   many ports towards one target (`sources.rs` uses this figure);
//! - **memory** (`MemAvailable`) against the kernel's cost per connection: about 4.9 KiB
//!   per TCP socket (measured on this machine: 15,000 idle loopback connections, 30,000
//!   sockets, grew `Slab` by 146,580 KiB, 4.9 KiB a socket: the `TCP` socket object of
//!   2,368 bytes, its inode (832), file (192), dentry (192), epoll entry (128) and
//!   smaller pieces; a million connections, `bench/million.sh`, gave 4.8 KiB); two
//!   sockets per connection on loopback; plus user space, about 100 bytes a connection
//!   on each side;
//! - **connection tracking** (`net.netfilter.nf_conntrack_max`), only when the firewall
//!   is tracking connections (`nf_conntrack_count` above 0): a full table drops packets.

use std::io;

/// Kernel memory per TCP socket (see the module docs for the measurement).
pub const KERNEL_BYTES_PER_SOCKET: u64 = 5_000;
/// User-space memory per connection, on each side (the stress tester's is ~100 B, the
/// netloop server's ~64 B; a margin for others).
pub const USER_BYTES_PER_CONN: u64 = 128;
/// Part of `MemAvailable` a run may plan to use: the rest is for everything else.
const MEMORY_SHARE: f64 = 0.9;

/// The limits read from `/proc` and `getrlimit` (None: not readable here).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// `fs.file-max`: open files on the whole machine.
    pub file_max: Option<u64>,
    /// `fs.file-nr`'s first field: open files now.
    pub files_open: Option<u64>,
    /// `fs.nr_open`: the most `RLIMIT_NOFILE` may be.
    pub nr_open: Option<u64>,
    /// `RLIMIT_NOFILE` of this process, after raising the soft limit to the hard one.
    pub nofile: u64,
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: Option<(u32, u32)>,
    /// `MemAvailable`, bytes.
    pub mem_available: Option<u64>,
    /// `nf_conntrack_count` and `nf_conntrack_max`, when the module is loaded.
    pub conntrack: Option<(u64, u64)>,
}

fn read_numbers(path: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().map(|w| w.parse().ok()).collect()
}

fn read_one(path: &str) -> Option<u64> {
    read_numbers(path)?.first().copied()
}

impl Limits {
    /// Read them (raising this process's soft open-file limit to its hard one).
    pub fn read() -> Limits {
        let mem_available = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemAvailable:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024);
        let port_range = read_numbers("/proc/sys/net/ipv4/ip_local_port_range")
            .filter(|v| v.len() == 2)
            .map(|v| (v[0] as u32, v[1] as u32));
        let conntrack = read_one("/proc/sys/net/netfilter/nf_conntrack_count")
            .zip(read_one("/proc/sys/net/netfilter/nf_conntrack_max"));
        Limits {
            file_max: read_one("/proc/sys/fs/file-max"),
            files_open: read_one("/proc/sys/fs/file-nr"),
            nr_open: read_one("/proc/sys/fs/nr_open"),
            nofile: crate::core::io_util::raise_nofile_limit(),
            port_range,
            mem_available,
            conntrack,
        }
    }

    /// Ephemeral ports one source address has towards one target (the kernel's
    /// default range, 28,232, when the range cannot be read).
    pub fn ports_per_source(&self) -> u64 {
        match self.port_range {
            Some((lo, hi)) if hi >= lo => u64::from(hi - lo + 1),
            _ => 28_232,
        }
    }

    /// The port range as written in its sysctl, for messages.
    pub fn port_range_text(&self) -> String {
        match self.port_range {
            Some((lo, hi)) => format!("net.ipv4.ip_local_port_range {lo}-{hi}"),
            None => "the default ephemeral port range".to_string(),
        }
    }
}

/// What a run asks of this machine.
#[derive(Clone, Copy, Debug)]
pub struct Ask {
    /// Connections this process (and its workers) will open.
    pub conns: u64,
    /// The target is on this machine (loopback): its side of each connection costs here
    /// too.
    pub loopback: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Refuse an ask that cannot fit, with one message naming the limit; else Ok.
pub fn check(ask: Ask, limits: &Limits) -> io::Result<()> {
    let sides: u64 = if ask.loopback { 2 } else { 1 };
    let where_ = if ask.loopback {
        " (one for the tester and one for the server: the target is on this machine)"
    } else {
        ""
    };
    if let Some(file_max) = limits.file_max {
        let in_use = limits.files_open.unwrap_or(0);
        let need = ask.conns * sides;
        if in_use + need > file_max {
            return Err(invalid(format!(
                "{} connections need {} open files{where_}, but fs.file-max is {file_max} \
                 with {in_use} in use: at most {} connections fit; raise it (sysctl -w \
                 fs.file-max={}) or ask for fewer",
                ask.conns,
                need,
                file_max.saturating_sub(in_use) / sides,
                (in_use + need) * 11 / 10
            )));
        }
    }
    if let Some(available) = limits.mem_available {
        let per_conn = sides * (KERNEL_BYTES_PER_SOCKET + USER_BYTES_PER_CONN);
        let need = ask.conns * per_conn;
        let budget = (available as f64 * MEMORY_SHARE) as u64;
        if need > budget {
            return Err(invalid(format!(
                "{} connections need about {:.1} GiB of memory ({per_conn} bytes each{where_}: \
                 the kernel's ~{KERNEL_BYTES_PER_SOCKET} per socket and ~{USER_BYTES_PER_CONN} \
                 in user space), but MemAvailable is {:.1} GiB: at most about {} connections \
                 fit",
                ask.conns,
                gib(need),
                gib(available),
                budget / per_conn
            )));
        }
    }
    if let Some((count, max)) = limits.conntrack {
        // A count of 0 means no rule asks for tracking: the table is not in the way.
        if count > 0 && count + ask.conns > max {
            return Err(invalid(format!(
                "{} connections would overflow the firewall's connection tracking table \
                 (net.netfilter.nf_conntrack_max {max}, {count} tracked now), which drops \
                 packets when full: raise it or ask for fewer",
                ask.conns
            )));
        }
    }
    if limits.nofile <= super::RESERVED_FDS {
        let nr_open = limits
            .nr_open
            .map_or(String::new(), |n| format!(" (fs.nr_open allows up to {n})"));
        return Err(invalid(format!(
            "the open-file limit is {} per process, too low to open connections: raise it \
             with `ulimit -n`{nr_open}",
            limits.nofile
        )));
    }
    Ok(())
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Limits {
        Limits {
            file_max: Some(2_466_116),
            files_open: Some(10_000),
            nr_open: Some(1_048_576),
            nofile: 20_000,
            port_range: Some((32_768, 60_999)),
            mem_available: Some(22 << 30),
            conntrack: Some((0, 262_144)),
        }
    }

    #[test]
    fn a_million_fits_this_machine_and_two_million_do_not() {
        let mut m = machine();
        assert!(check(
            Ask {
                conns: 1_000_010,
                loopback: true
            },
            &m
        )
        .is_ok());
        let e = check(
            Ask {
                conns: 2_000_000,
                loopback: true,
            },
            &m,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("fs.file-max is 2466116"), "{text}");
        assert!(text.contains("at most 1228058 connections fit"), "{text}");
        // Against a remote target only our side counts: the files fit; with less memory,
        // memory is what refuses.
        assert!(check(
            Ask {
                conns: 2_000_000,
                loopback: false
            },
            &m
        )
        .is_ok());
        m.mem_available = Some(4 << 30);
        let e = check(
            Ask {
                conns: 2_000_000,
                loopback: false,
            },
            &m,
        )
        .unwrap_err();
        assert!(e.to_string().contains("MemAvailable is 4.0 GiB"), "{e}");
        assert_eq!(m.ports_per_source(), 28_232);
    }

    #[test]
    fn tracking_and_the_per_process_limit_are_checked() {
        let mut m = machine();
        m.conntrack = Some((5, 1_000));
        let e = check(
            Ask {
                conns: 2_000,
                loopback: false,
            },
            &m,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nf_conntrack_max 1000"), "{e}");
        m.conntrack = None;
        m.nofile = 50;
        let e = check(
            Ask {
                conns: 10,
                loopback: false,
            },
            &m,
        )
        .unwrap_err();
        assert!(e.to_string().contains("open-file limit is 50"), "{e}");
    }
}
