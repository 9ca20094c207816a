//! `Plan`: the work one stress process does, checked and resolved from `StressOptions`.
//!
//! The command line (or a parent, for a worker's share) gives `StressOptions` in the
//! user's terms: an address as text, a range of source addresses as text, rates as
//! numbers. `plan` checks them once and turns them into what the handler needs at run
//! time: a resolved `Target`, the list of source addresses, the HTTP request bytes. A
//! bad option is refused here, before any connection (or worker) is started.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::apps::client::resolve_addr;
use crate::apps::stress::pacing::Pacing;
use crate::apps::stress::StressOptions;
use crate::core::Target;

/// What an active connection checks in each reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Send `--size` bytes, expect the same bytes back.
    Echo,
    /// Send an HTTP/1.1 GET (keep-alive), read one response.
    Http,
    /// Active connections send nothing (only hold).
    None,
}

/// The work one stress process does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where to connect.
    pub target: Target,
    /// Idle connections to open.
    pub idle: usize,
    /// Active (probing) connections to open.
    pub active: usize,
    /// Bytes per echo round trip.
    pub size: usize,
    /// What active connections do.
    pub probe: ProbeKind,
    /// The HTTP request sent by `--probe http`.
    pub http_request: Vec<u8>,
    /// How long to hold the connections (and measure).
    pub hold: Duration,
    /// Connects per second (None: as fast as the target accepts).
    pub rate: Option<f64>,
    /// Connects in flight at most (the adaptive window's cap).
    pub max_inflight: usize,
    /// Whether the window and the rate adapt to the target (`pacing.rs`).
    pub pacing: Pacing,
    /// Begin the hold at this wall-clock time (`--start-at`; None: once connected).
    pub start_at: Option<SystemTime>,
    /// Keep the hold's latency per interval too (`--hdr-log`).
    pub log_intervals: bool,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// Idle connections send `keepalive_data` this often.
    pub keepalive: Option<Duration>,
    /// What idle connections send.
    pub keepalive_data: Vec<u8>,
    /// Source addresses to spread connections over (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Total round trips per second over all active connections (None: back to back).
    pub rate_limit: Option<f64>,
    /// The target's processes (each with its descendants), read half way through the
    /// hold (none in workers: the parent measures the target, over all of them).
    pub server_pids: Vec<u32>,
}

/// An `InvalidInput` error with this message.
pub(crate) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Parse `127.0.0.2-127.0.0.40` or `127.0.0.2,127.0.0.3` into addresses.
pub fn parse_source_ips(text: &str) -> io::Result<Vec<IpAddr>> {
    let bad = || invalid(format!("--source-ips {text:?}: expected A-B or A,B,C"));
    if let Some((a, b)) = text.split_once('-') {
        let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 65_536 {
            return Err(bad());
        }
        return Ok((a..=b).map(|n| IpAddr::V4(n.into())).collect());
    }
    text.split(',')
        .map(|s| s.trim().parse().map_err(|_| bad()))
        .collect()
}

/// Check the options and turn them into the plan of one process.
pub fn plan(opts: &StressOptions) -> io::Result<Plan> {
    let (target, host) = match (&opts.unix, &opts.addr) {
        (Some(path), _) => (Target::Unix(path.clone()), "localhost".to_string()),
        (None, Some(text)) => (Target::Tcp(resolve_addr(text)?), text.clone()),
        (None, None) => return Err(invalid("give ADDR or --unix PATH".into())),
    };
    if opts.probe == ProbeKind::Echo && opts.active > 0 && opts.size == 0 {
        return Err(invalid("--size must be at least 1 for --probe echo".into()));
    }
    if matches!(opts.rate, Some(r) if r <= 0.0) || matches!(opts.rate_limit, Some(r) if r <= 0.0) {
        return Err(invalid("--rate and --rate-limit must be positive".into()));
    }
    let http_request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netloop-stress\r\n\r\n",
        opts.path
    )
    .into_bytes();
    Ok(Plan {
        target,
        idle: opts.idle,
        active: opts.active,
        size: opts.size,
        probe: opts.probe,
        http_request,
        hold: opts.hold,
        rate: opts.rate,
        max_inflight: opts.max_inflight.max(1),
        pacing: opts.pacing,
        start_at: opts.start_at,
        log_intervals: opts.log_intervals || opts.hdr_log.is_some(),
        connect_timeout: opts.connect_timeout,
        keepalive: opts.keepalive,
        keepalive_data: opts.keepalive_data.clone().into_bytes(),
        sources: match &opts.source_ips {
            Some(text) => parse_source_ips(text)?,
            None => Vec::new(),
        },
        rate_limit: opts.rate_limit,
        server_pids: opts.server_pids.clone(),
    })
}
