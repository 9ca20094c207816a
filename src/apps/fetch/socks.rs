//! SOCKS5 (RFC 1928) with the host name resolved by the proxy (`socks5h://`), and its
//! username/password method (RFC 1929): the messages, as pure functions over bytes.
//!
//! The exchange is three short round trips before the tunnel is open, each a few bytes:
//!
//! ```text
//! client: 05 01 00            (version 5, one method: no authentication)
//!     or  05 02 00 02         (... or username/password, when the proxy URL has them)
//! proxy:  05 MM               (the method chosen; FF: none acceptable)
//! [client: 01 ULEN USER PLEN PASS   proxy: 01 00 (00: accepted)]
//! client: 05 01 00 03 LEN NAME PORT   (CONNECT to a domain name: the proxy resolves it)
//! proxy:  05 00 00 ATYP ADDR PORT     (00: succeeded; ADDR: 4, 16 or 1+LEN bytes)
//! ```
//!
//! After that the connection is a byte pipe to the target: plain HTTP goes in origin
//! form, as directly, and https starts its TLS session. `proxy.rs` drives the steps from
//! `on_data`; this file only builds and reads the messages.

/// The greeting: the methods offered (username/password too when there are credentials).
pub fn greeting(with_auth: bool) -> Vec<u8> {
    if with_auth {
        vec![5, 2, 0, 2]
    } else {
        vec![5, 1, 0]
    }
}

/// The proxy's method choice, once 2 bytes are there: Ok(Some(method)); Ok(None) for
/// more bytes.
pub fn method(buf: &[u8]) -> Result<Option<u8>, String> {
    match buf {
        [] | [_] => Ok(None),
        [5, 0xFF, ..] => Err("SOCKS proxy accepts none of our authentication methods".into()),
        [5, m, ..] => Ok(Some(*m)),
        _ => Err("SOCKS proxy: not a SOCKS5 answer".into()),
    }
}

/// The username/password request (each at most 255 bytes).
pub fn auth_request(user: &str, password: &str) -> Result<Vec<u8>, String> {
    let (u, p) = (user.as_bytes(), password.as_bytes());
    if u.len() > 255 || p.len() > 255 {
        return Err("SOCKS proxy: user name or password over 255 bytes".into());
    }
    let mut out = vec![1, u.len() as u8];
    out.extend_from_slice(u);
    out.push(p.len() as u8);
    out.extend_from_slice(p);
    Ok(out)
}

/// The answer to the username/password request: Ok(true) accepted, Ok(false) more bytes.
pub fn auth_reply(buf: &[u8]) -> Result<bool, String> {
    match buf {
        [] | [_] => Ok(false),
        [_, 0, ..] => Ok(true),
        _ => Err("SOCKS proxy refused the user name and password".into()),
    }
}

/// CONNECT to `host:port` by name (the proxy resolves it; an IP literal is sent as one).
pub fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut out = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Err(_) if host.len() <= 255 => {
            out.push(3);
            out.push(host.len() as u8);
            out.extend_from_slice(host.as_bytes());
        }
        Err(_) => return Err("SOCKS: host name over 255 bytes".into()),
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// The answer to CONNECT: Ok(Some(n)) when complete (n bytes long), Ok(None) for more.
pub fn connect_reply(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 5 {
        return Err("SOCKS proxy: not a SOCKS5 answer".into());
    }
    if buf[1] != 0 {
        return Err(format!(
            "SOCKS proxy refused the connection: {}",
            reply_text(buf[1])
        ));
    }
    let len = match buf[3] {
        1 => 4 + 4 + 2,
        4 => 4 + 16 + 2,
        3 => 4 + 1 + usize::from(buf[4]) + 2,
        _ => return Err("SOCKS proxy: malformed answer".into()),
    };
    Ok((buf.len() >= len).then_some(len))
}

/// RFC 1928's reply codes in words.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_both_ways() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(method(&[5]), Ok(None));
        assert_eq!(method(&[5, 2]), Ok(Some(2)));
        assert!(method(&[5, 0xFF]).is_err());
        assert_eq!(
            auth_request("u", "pw").unwrap(),
            [1, 1, b'u', 2, b'p', b'w']
        );
        assert_eq!(auth_reply(&[1, 0]), Ok(true));
        assert!(auth_reply(&[1, 1]).is_err());
        assert_eq!(
            connect_request("ab.c", 443).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'b', b'.', b'c', 1, 187]
        );
        assert_eq!(
            connect_request("10.0.0.1", 80).unwrap()[3..8],
            [1, 10, 0, 0, 1]
        );
        assert_eq!(connect_request("[::1]", 80).unwrap()[3], 4);
        let reply = [5, 0, 0, 1, 127, 0, 0, 1, 0, 80];
        assert_eq!(connect_reply(&reply[..7]), Ok(None));
        assert_eq!(connect_reply(&reply), Ok(Some(10)));
        let e = connect_reply(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(e.contains("connection refused"), "{e}");
    }
}
