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
    let (version, packed, private, loopback): (u8, Vec<u8>, bool, bool) = match ip {
        IpAddr::V4(v4) => (4, v4.octets().to_vec(), v4.is_private(), v4.is_loopback()),
        IpAddr::V6(v6) => {
            // Unique local addresses (fc00::/7) are IPv6's private range.
            let ula = (v6.segments()[0] & 0xfe00) == 0xfc00;
            (6, v6.octets().to_vec(), ula, v6.is_loopback())
        }
    };
    let hex: String = packed.iter().map(|b| format!("{b:02x}")).collect();
    let integer: u128 = packed.iter().fold(0, |acc, &b| (acc << 8) | u128::from(b));
    format!(
        "address: {ip}\nversion: {version}\nprivate: {private}\nloopback: {loopback}\n\
         packed: {hex}\ninteger: {integer}\n"
    )
}

/// The port of a service name, from the services database (`/etc/services`).
pub fn service_port(name: &str) -> Option<u16> {
    if let Ok(port) = name.parse::<u16>() {
        return Some(port);
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
                io::Error::new(io::ErrorKind::NotFound, format!("unknown service {name:?}"))
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
    fn loopback_and_private_flags() {
        assert!(describe_ip("127.0.0.1".parse().unwrap()).contains("loopback: true"));
        assert!(describe_ip("10.1.2.3".parse().unwrap()).contains("private: true"));
        assert!(describe_ip("::1".parse().unwrap()).contains("version: 6"));
    }
}
