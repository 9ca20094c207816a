//! Value parsers shared by every command, so an option means the same thing everywhere.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A non-negative number of seconds, fractions allowed (`2`, `0.5`): the one parser for
/// every `SECS` option (`#[arg(value_parser = args::secs)]`).
pub fn secs(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (e.g. 2 or 0.5)"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{text}` is not a non-negative, finite number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_non_negative_and_finite() {
        assert_eq!(secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(secs("0.5"), Ok(Duration::from_millis(500)));
        assert!(secs("-1").is_err());
        assert!(secs("inf").is_err());
        assert!(secs("soon").is_err());
    }
}

/// A whole number of at least 1 (`--max-queue`, `--workers`, `--max-conns`): 0 would
/// mean "nothing ever", which is never what was meant.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A listening address: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT` (looked up; the first
/// address), or just `PORT` / `:PORT`, meaning 127.0.0.1 (loopback, the safe default).
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port = port(port_only)?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    host_port(text)
}

/// A `HOST:PORT` to connect to or listen on, where HOST may be a name.
pub fn host_port(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let no_port =
        || format!("`{text}` has no port: write HOST:PORT, e.g. 127.0.0.1:8888 or [::1]:8888");
    let (host, port_text) = match text.rsplit_once(':') {
        // `::1` or `[::1]` alone: the colons belong to the address.
        Some((host, _)) if host.contains(':') && !host.ends_with(']') => return Err(no_port()),
        Some((host, p)) => (host, p),
        None => return Err(no_port()),
    };
    let port = port(port_text)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(no_port());
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` has no addresses"))
}

fn port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("port `{text}` is not a number from 0 to 65535"))
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn addresses_people_type() {
        let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(listen_addr("8899"), Ok(lo(8899)));
        assert_eq!(listen_addr(":8899"), Ok(lo(8899)));
        assert_eq!(listen_addr("127.0.0.1:8899"), Ok(lo(8899)));
        assert_eq!(
            listen_addr("[::1]:8899"),
            "[::1]:8899".parse().map_err(|_| String::new())
        );
        assert!(listen_addr("localhost:8899").is_ok_and(|a| a.ip().is_loopback()));
        assert!(listen_addr("127.0.0.1")
            .unwrap_err()
            .contains("has no port"));
        assert!(listen_addr("[::1]").unwrap_err().contains("has no port"));
        assert!(listen_addr("::1").unwrap_err().contains("has no port"));
        assert!(listen_addr(":99999").unwrap_err().contains("0 to 65535"));
        assert!(at_least_one("0").is_err());
    }
}

/// A server to connect to, as written and as resolved (see `host_port`): the text is
/// kept for messages, `localhost:8888 (127.0.0.1:8888)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedAddr {
    /// What the user wrote.
    pub text: String,
    /// Its first address.
    pub addr: SocketAddr,
}

/// `host_port`, keeping the text (`#[arg(value_parser = args::named_host_port)]`).
pub fn named_host_port(text: &str) -> Result<NamedAddr, String> {
    Ok(NamedAddr {
        text: text.trim().to_string(),
        addr: host_port(text.trim())?,
    })
}

/// A positive number of seconds: `secs`, with 0 refused (a timeout of 0 would give up
/// before anything could happen).
pub fn positive_secs(text: &str) -> Result<Duration, String> {
    match secs(text)? {
        d if d.is_zero() => Err("must be more than 0 seconds".to_string()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod named_tests {
    use super::*;

    #[test]
    fn names_are_kept_and_ports_required() {
        let named = named_host_port("localhost:8888").expect("localhost resolves");
        assert_eq!(named.text, "localhost:8888");
        assert!(named.addr.ip().is_loopback());
        assert_eq!(named.addr.port(), 8888);
        assert!(named_host_port("127.0.0.1")
            .unwrap_err()
            .contains("has no port"));
        assert!(named_host_port("[::1]")
            .unwrap_err()
            .contains("has no port"));
        assert!(positive_secs("0").is_err());
        assert_eq!(positive_secs("0.5"), Ok(Duration::from_millis(500)));
    }
}
