//! The total `summary:` line of `serve --workers`: each worker's counters, added up.
//!
//! A single `netloop serve` logs one `summary:` line (`core::Stats`) when it stops. With
//! workers, each of them is a single server, and the parent serves nothing, so the
//! numbers a user wants — how many connections the *server* accepted, how many bytes it
//! moved — exist only as a sum. The workers already talk to the parent over their stdout
//! (a socket pair on the parent's loop; see `spawn.rs`), so that is where the counters go:
//!
//! - a worker (a `serve` started with the hidden `--reuse-port`) prints, as its last
//!   line, `netloop-worker-stats {JSON}` — one object, every counter by name — instead of
//!   logging its own `summary:` line;
//! - the supervisor (`supervisor.rs`) reads that line like the `listening on` ones, adds
//!   it to its total (`add`), logs each worker's at DEBUG, and logs **one** `summary:`
//!   line at the end, in the single server's format, followed by `(N workers, R
//!   restarts)`.
//!
//! Counters are sums over every worker process that ran, restarted ones included. Two
//! caveats, both said in the line's meaning rather than hidden: `peak_open` is the sum of
//! each worker's peak, an upper bound of the server's (the peaks need not coincide); and
//! a worker killed with SIGKILL prints nothing, so its counters are missing (the line
//! says how many workers reported).

use serde_json::{json, Map, Value};

use crate::core::Stats;

/// What starts a worker's counters line on its stdout.
pub const STATS_PREFIX: &str = "netloop-worker-stats ";

/// Every counter of `Stats`, by name, with a getter and a setter. Written without `..`
/// in `fields`: a counter added to `Stats` fails to compile here until it is listed.
fn fields(s: &mut Stats) -> [(&'static str, &mut u64); 17] {
    let Stats {
        accepted,
        connected,
        rejected_max_conns,
        peak_open: _,
        bytes_in,
        bytes_out,
        closed_by_peer,
        closed_by_timeout,
        closed_by_limit,
        closed_input_budget,
        closed_by_error,
        resets,
        closed_by_shutdown,
        accept_pauses,
        datagrams_in,
        datagrams_out,
        datagrams_dropped,
        turns,
        // Gauges and histograms of one loop's moment: not summed over workers.
        paused_now: _,
        queued_bytes: _,
        turn_events: _,
        turn_asleep_us: _,
    } = s;
    [
        ("accepted", accepted),
        ("connected", connected),
        ("rejected_max_conns", rejected_max_conns),
        ("bytes_in", bytes_in),
        ("bytes_out", bytes_out),
        ("closed_by_peer", closed_by_peer),
        ("closed_by_timeout", closed_by_timeout),
        ("closed_by_limit", closed_by_limit),
        ("closed_input_budget", closed_input_budget),
        ("closed_by_error", closed_by_error),
        ("resets", resets),
        ("closed_by_shutdown", closed_by_shutdown),
        ("accept_pauses", accept_pauses),
        ("datagrams_in", datagrams_in),
        ("datagrams_out", datagrams_out),
        ("datagrams_dropped", datagrams_dropped),
        ("turns", turns),
    ]
}

/// The line a worker prints for its parent (without the newline).
pub fn stats_line(stats: &Stats) -> String {
    let mut copy = stats.clone();
    let mut map = Map::new();
    for (name, value) in fields(&mut copy) {
        map.insert(name.to_string(), json!(*value));
    }
    map.insert("peak_open".to_string(), json!(stats.peak_open));
    format!("{STATS_PREFIX}{}", Value::Object(map))
}

/// Read a worker's counters line back (`None` if it is not one, or is damaged).
pub fn parse_stats_line(line: &str) -> Option<Stats> {
    let v: Value = serde_json::from_str(line.strip_prefix(STATS_PREFIX)?).ok()?;
    let mut stats = Stats {
        peak_open: v.get("peak_open")?.as_u64()? as usize,
        ..Stats::default()
    };
    for (name, value) in fields(&mut stats) {
        // A counter this parent does not know of is skipped; one it knows must be there.
        *value = v.get(name)?.as_u64()?;
    }
    Some(stats)
}

/// Add one worker's counters to the total.
pub fn add(total: &mut Stats, one: &Stats) {
    let mut one = one.clone();
    let peak = one.peak_open;
    let theirs: Vec<u64> = fields(&mut one).iter().map(|(_, v)| **v).collect();
    for ((_, value), add) in fields(total).into_iter().zip(theirs) {
        *value += add;
    }
    total.peak_open += peak;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_adds_up() {
        let one = Stats {
            accepted: 3,
            bytes_in: 100,
            peak_open: 2,
            resets: 1,
            ..Stats::default()
        };
        let line = stats_line(&one);
        assert!(line.starts_with(STATS_PREFIX));
        let back = parse_stats_line(&line).expect("parse");
        assert_eq!(back.to_string(), one.to_string());
        let mut total = Stats::default();
        add(&mut total, &back);
        add(&mut total, &one);
        assert_eq!(total.accepted, 6);
        assert_eq!(total.bytes_in, 200);
        assert_eq!(total.peak_open, 4);
        assert!(parse_stats_line("listening on tcp 127.0.0.1:1").is_none());
        assert!(parse_stats_line("netloop-worker-stats {\"accepted\":1}").is_none());
    }
}
