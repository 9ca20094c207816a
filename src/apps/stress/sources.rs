//! Source addresses: enough ephemeral ports for the connections asked for.
//!
//! A TCP connection is named by its four-tuple, so towards one target (address and
//! port) one source address offers only the ephemeral port range: 28,232 ports with the
//! default `net.ipv4.ip_local_port_range` of 32768-60999. Past that, connects fail with
//! `EADDRNOTAVAIL`. The way past is more source addresses (each connect is bound to one
//! with `IP_BIND_ADDRESS_NO_PORT`, so the kernel still picks the port at connect time,
//! per destination; see `Ctx::connect_from`). tcpkali does the same with every local
//! address alias.
//!
//! Only **half** of each address's range is planned for. Linux looks for a free port for
//! a connect in two passes: first the ports of one parity (even, with the default range;
//! `bind` uses the other first), then the rest. While the first half has room, a connect
//! finds a port in a step or two; once it is full, *every* connect walks all of it
//! (14,000 ports, each checked against the connection table) before it tries the second
//! half. Measured with a million connections over 38 addresses (26,800 each planned):
//! 540,000 opened in 45 s (12,000 a second), then 130 a second, the processes spending
//! 98 % of the CPU in the kernel's `__inet_hash_connect` — the cliff came at 38 × 14,116,
//! exactly when every address's first half was used up. With twice the addresses, no
//! address ever leaves its first half.
//!
//! - **Loopback targets** (127.0.0.0/8): every 127.x.y.z address is already ours on Linux,
//!   with no setup, so the tester picks them itself when one address will not do:
//!   `127.0.0.2` upwards, as many as the count needs (half of each range, less 5 % kept
//!   free for sockets still in TIME_WAIT and other programs), and the report says which.
//! - **Other targets**: the addresses must exist on an interface of this machine, which
//!   only its owner can arrange. So a run that needs more than one, given none, is
//!   refused before it starts, saying how many are needed and how to pass them
//!   (`--source-ips A-B`), instead of failing minutes later with `EADDRNOTAVAIL`. A
//!   `--source-ips` list too short for the count is refused the same way.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use crate::apps::stress::plan::parse_source_ips;
use crate::apps::stress::preflight::Limits;
use crate::apps::stress::segment::Segment;
use crate::core::Target;

/// Share of one address's port range a run plans to use.
const PORT_SHARE: f64 = 0.95;
/// The first automatic source address (127.0.0.1 is left to everything else).
const FIRST_AUTO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The source addresses a run will use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources {
    /// As `--source-ips` text for the workers (None: the kernel's choice).
    pub text: Option<String>,
    /// Chosen by the tester (loopback), not given.
    pub automatic: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Connections one source address can open towards one target without leaving the
/// first half of its port range (see the module docs).
pub fn conns_per_source(limits: &Limits) -> u64 {
    ((limits.ports_per_source() as f64 / 2.0 * PORT_SHARE) as u64).max(1)
}

/// Decide the source addresses for `conns` connections to `target`, given `--source-ips`
/// (`given`), or refuse, saying how many addresses are needed.
pub fn choose(
    target: &Target,
    given: Option<&str>,
    conns: u64,
    segment: Option<Segment>,
    limits: &Limits,
) -> io::Result<Sources> {
    let Target::Tcp(addr) = target else {
        // A Unix socket has no ports to run out of.
        return Ok(Sources {
            text: given.map(String::from),
            automatic: false,
        });
    };
    let per = conns_per_source(limits);
    let needed = conns.div_ceil(per);
    let why = format!(
        "one source address has {} ephemeral ports towards one target ({}), of which \
         {per} are planned for (past the first half, every connect costs a scan of it)",
        limits.ports_per_source(),
        limits.port_range_text()
    );
    if let Some(text) = given {
        let have = parse_source_ips(text)?.len() as u64;
        if have < needed {
            return Err(invalid(format!(
                "--source-ips {text} gives {have} address(es), room for about {} connections \
                 to {addr}; {conns} need at least {needed}: {why}",
                have * per
            )));
        }
        return Ok(Sources {
            text: Some(text.to_string()),
            automatic: false,
        });
    }
    if needed <= 1 {
        return Ok(Sources {
            text: None,
            automatic: false,
        });
    }
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            // Segment K of a test split on this one machine takes the addresses after
            // those of segments 0..K (each needs about as many), so they do not share.
            let skip = segment.map_or(0, |s| s.k) * needed;
            let first = u32::from(FIRST_AUTO) + skip as u32;
            let last = first + (needed as u32 - 1);
            if last > u32::from(Ipv4Addr::new(127, 255, 255, 254)) {
                return Err(invalid(format!(
                    "{conns} connections to {addr} need {needed} source addresses past \
                     127.0.0.2 for this segment: more than 127/8 holds; {why}"
                )));
            }
            Ok(Sources {
                text: Some(format!(
                    "{}-{}",
                    Ipv4Addr::from(first),
                    Ipv4Addr::from(last)
                )),
                automatic: true,
            })
        }
        _ => Err(invalid(format!(
            "{conns} connections to {addr} need at least {needed} source addresses: {why}. \
             Add addresses to an interface of this machine and pass them with --source-ips \
             (a range A-B or a list A,B,C), or ask for at most {per} connections"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            port_range: Some((32_768, 60_999)),
            ..Limits::default()
        }
    }

    #[test]
    fn loopback_gets_enough_addresses_and_others_are_told_how_many() {
        let m = limits();
        let lo = Target::Tcp("127.0.0.1:8888".parse().unwrap());
        assert_eq!(conns_per_source(&m), 13_410);
        let few = choose(&lo, None, 13_000, None, &m).unwrap();
        assert_eq!(few.text, None);
        let million = choose(&lo, None, 1_000_010, None, &m).unwrap();
        assert_eq!(million.text.as_deref(), Some("127.0.0.2-127.0.0.76"));
        assert!(million.automatic);
        // 75 addresses hold the million.
        assert!(75 * conns_per_source(&m) >= 1_000_010);
        // Segment 2 of a split on this machine takes the addresses after 0's and 1's.
        let seg = Some(Segment { k: 2, n: 4 });
        let third = choose(&lo, None, 250_003, seg, &m).unwrap();
        assert_eq!(third.text.as_deref(), Some("127.0.0.40-127.0.0.58"));

        let far = Target::Tcp("10.1.2.3:80".parse().unwrap());
        assert_eq!(choose(&far, None, 13_000, None, &m).unwrap().text, None);
        let e = choose(&far, None, 100_000, None, &m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("need at least 8 source addresses"), "{e}");
        assert!(e.contains("--source-ips"), "{e}");
        assert!(e.contains("ip_local_port_range 32768-60999"), "{e}");
        let e = choose(&far, Some("10.0.0.1,10.0.0.2"), 100_000, None, &m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gives 2 address(es)"), "{e}");
        let ok = choose(&far, Some("10.0.0.1-10.0.0.8"), 100_000, None, &m).unwrap();
        assert_eq!(ok.text.as_deref(), Some("10.0.0.1-10.0.0.8"));
    }
}
