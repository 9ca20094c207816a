//! `netloop resolve`: seed 001's address lookups (`ipaddress`, `gethostbyname`,
//! `getaddrinfo`, `getservbyname`), as one command.
//!
//! For an IP literal it prints the version, whether the address is private or loopback,
//! and its packed (hex) and integer forms; for a name, every address `getaddrinfo`
//! returns; for a service name, its port from the system's services database. This is a
//! blocking lookup by design: it runs before and outside any loop (the fetcher resolves
//! names on a helper thread so a slow DNS server never stalls other transfers).

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};

/// The facts seed 001 prints about an IP literal, one `key: value` per line.
pub fn describe_ip(ip: IpAddr) -> String {
    let (version, packed) = match ip {
        IpAddr::V4(v4) => (4, v4.octets().to_vec()),
        IpAddr::V6(v6) => (6, v6.octets().to_vec()),
    };
    let private = is_private(ip);
    let loopback = ip.is_loopback();
    let hex: String = packed.iter().map(|b| format!("{b:02x}")).collect();
    let integer: u128 = packed.iter().fold(0, |acc, &b| (acc << 8) | u128::from(b));
    format!(
        "address: {ip}\nversion: {version}\nprivate: {private}\nloopback: {loopback}\n\
         packed: {hex}\ninteger: {integer}\n"
    )
}

/// Python's `ipaddress` `is_private` (3.13's tables), which seed 001 prints: true for
/// the ranges IANA marks as not globally reachable — RFC 1918, but also loopback,
/// link-local, documentation and benchmarking ranges — so `127.0.0.1` and `::1` are
/// "private". Rust's own `is_private` covers RFC 1918 only.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            const NETS: &[([u8; 4], u32)] = &[
                ([0, 0, 0, 0], 8),
                ([10, 0, 0, 0], 8),
                ([127, 0, 0, 0], 8),
                ([169, 254, 0, 0], 16),
                ([172, 16, 0, 0], 12),
                ([192, 0, 0, 0], 29),
                ([192, 0, 0, 170], 31),
                ([192, 0, 2, 0], 24),
                ([192, 168, 0, 0], 16),
                ([198, 18, 0, 0], 15),
                ([198, 51, 100, 0], 24),
                ([203, 0, 113, 0], 24),
                ([240, 0, 0, 0], 4),
                ([255, 255, 255, 255], 32),
            ];
            const EXCEPT: &[([u8; 4], u32)] = &[([192, 0, 0, 9], 32), ([192, 0, 0, 10], 32)];
            let bits = u32::from(v4);
            let within = |&(net, len): &([u8; 4], u32)| {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                bits & mask == u32::from_be_bytes(net) & mask
            };
            NETS.iter().any(within) && !EXCEPT.iter().any(within)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            const NETS: &[(u128, u32)] = &[
                (0x0000_0000_0000_0000_0000_0000_0000_0001, 128),
                (0, 128),
                (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96),
                (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48),
                (0x0100_0000_0000_0000_0000_0000_0000_0000, 64),
                (0x2001_0000_0000_0000_0000_0000_0000_0000, 23),
                (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32),
                (0x2002_0000_0000_0000_0000_0000_0000_0000, 16),
                (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20),
                (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),
                (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10),
            ];
            const EXCEPT: &[(u128, u32)] = &[
                (0x2001_0001_0000_0000_0000_0000_0000_0001, 128),
                (0x2001_0001_0000_0000_0000_0000_0000_0002, 128),
                (0x2001_0003_0000_0000_0000_0000_0000_0000, 32),
                (0x2001_0004_0112_0000_0000_0000_0000_0000, 48),
                (0x2001_0020_0000_0000_0000_0000_0000_0000, 28),
                (0x2001_0030_0000_0000_0000_0000_0000_0000, 28),
            ];
            let bits = u128::from(v6);
            let within = |&(net, len): &(u128, u32)| {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                bits & mask == net & mask
            };
            NETS.iter().any(within) && !EXCEPT.iter().any(within)
        }
    }
}

/// The port of a service name, from the services database (`/etc/services`).
pub fn service_port(name: &str) -> Option<u16> {
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse::<u16>().ok();
    }
    let c_name = CString::new(name).ok()?;
    let proto = CString::new("tcp").ok()?;
    // SAFETY: both arguments are valid NUL-terminated strings; the result, when not null,
    // points to a static entry we only read before the next call.
    let entry = unsafe { libc::getservbyname(c_name.as_ptr(), proto.as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: non-null result of getservbyname; s_port is in network byte order.
    let port = unsafe { (*entry).s_port };
    Some(u16::from_be(port as u16))
}

/// Everything `netloop resolve HOST [SERVICE]` prints.
pub fn resolve_report(host: &str, service: Option<&str>) -> io::Result<String> {
    let mut report = String::new();
    let port = match service {
        Some(name) => {
            let port = service_port(name).ok_or_else(|| {
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("port {name} is out of range (0 to 65535)"),
                    )
                } else {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("unknown service {name:?} (not in /etc/services; or give a port number)"),
                    )
                }
            })?;
            report.push_str(&format!("service: {name} -> port {port}\n"));
            port
        }
        None => 0,
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        report.push_str(&describe_ip(ip));
        return Ok(report);
    }
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?;
    let mut seen = Vec::new();
    for addr in addrs {
        if !seen.contains(&addr.ip()) {
            seen.push(addr.ip());
            let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
            report.push_str(&format!("{host}: {} ({family})\n", addr.ip()));
        }
    }
    if seen.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}: no addresses"),
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example_packed_and_integer() {
        let text = describe_ip("61.135.169.125".parse().unwrap());
        assert!(text.contains("packed: 3d87a97d"), "{text}");
        assert!(text.contains("integer: 1032300925"), "{text}");
        assert!(text.contains("version: 4"));
        assert!(text.contains("private: false"));
    }

    #[test]
    fn private_means_what_python_ipaddress_says() {
        for (ip, private) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("10.1.2.3", true),
            ("169.254.1.1", true),
            ("100.64.0.1", false),
            ("8.8.8.8", false),
            ("192.0.0.9", false),
            ("fe80::1", true),
            ("2001:db8::1", true),
            ("2001:4860::8888", false),
            ("::ffff:10.0.0.1", true),
        ] {
            assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
        }
    }

    #[test]
    fn loopback_and_private_flags() {
        assert!(describe_ip("127.0.0.1".parse().unwrap()).contains("loopback: true"));
        assert!(describe_ip("10.1.2.3".parse().unwrap()).contains("private: true"));
        assert!(describe_ip("::1".parse().unwrap()).contains("version: 6"));
    }
}
