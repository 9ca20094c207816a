//! The kernel's own count of lost SYNs, from `/proc/net/netstat`: the pacer's loss signal.
//!
//! A connect whose SYN was dropped is only retransmitted after a second, and a busy
//! machine delays completions by about as much on its own (the process waits for a
//! CPU), so timing connects cannot tell an overflowing target from a busy tester:
//! against `serve --workers auto` on this 2-core machine, connects that took a second
//! were all local delays — the kernel had retransmitted 3 SYNs in 60,000. The kernel
//! *knows*, though, and counts it, machine-wide:
//!
//! - `TcpExt: TCPSynRetrans`: SYNs this machine retransmitted (its connects' SYNs got no
//!   answer for a second): the signal for any target, a second late;
//! - `TcpExt: ListenOverflows`: SYNs (or final ACKs) a listener on this machine dropped
//!   because its accept queue was full: for a loopback target, the overflow itself, the
//!   moment it happens.
//!
//! The counters are the machine's, not this process's: other programs' connects count
//! too. In a load test the tester's dominate; a stray loss elsewhere costs at most one
//! needless slow-down, since one signal takes several losses (`pacing.rs`).

/// The counters that matter, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynCounters {
    /// `TCPSynRetrans`.
    pub syn_retrans: u64,
    /// `ListenOverflows`.
    pub listen_overflows: u64,
}

/// Read them (None where `/proc/net/netstat` is not there or lacks them).
pub fn read() -> Option<SynCounters> {
    parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// Parse the text of `/proc/net/netstat`: pairs of lines, names then values.
pub fn parse(text: &str) -> Option<SynCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let at = names.iter().position(|n| *n == name)?;
        values.get(at)?.parse().ok()
    };
    Some(SynCounters {
        syn_retrans: get("TCPSynRetrans")?,
        listen_overflows: get("ListenOverflows")?,
    })
}

impl SynCounters {
    /// SYNs lost since `before`: retransmitted ones, and, for a target on this machine,
    /// those its listeners dropped.
    pub fn losses_since(&self, before: &SynCounters, loopback: bool) -> u64 {
        let retrans = self.syn_retrans.saturating_sub(before.syn_retrans);
        let overflows = self
            .listen_overflows
            .saturating_sub(before.listen_overflows);
        retrans + if loopback { overflows } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_two_counters_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 1 20 20 7\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c,
            SynCounters {
                syn_retrans: 7,
                listen_overflows: 20
            }
        );
        let later = SynCounters {
            syn_retrans: 9,
            listen_overflows: 25,
        };
        assert_eq!(later.losses_since(&c, true), 7);
        assert_eq!(later.losses_since(&c, false), 2);
        assert!(parse("IpExt: a\nIpExt: 1\n").is_none());
        // This machine has them (Linux).
        assert!(read().is_some());
    }
}
