//! Tunnels through a proxy, on the loop: the CONNECT (HTTP proxy) or SOCKS5 handshake on
//! a new connection to the proxy, before the exchange starts inside it.
//!
//! `on_open` of a connection whose host goes through a tunnel (`proxy.rs`: https:// via an
//! HTTP proxy, anything via `socks5h://`) sends the first message and keeps a `Handshake`
//! in the connection's `Link`; every answer from the proxy arrives in `on_data` like any
//! bytes and moves it on (`Tunnel::Send` the next SOCKS message, or `Open`), and once it
//! is open the fetcher starts the exchange on the same socket — TLS first for https, so
//! the certificate checked is the origin's: the proxy only copies bytes. No byte of the
//! target protocol is sent before the tunnel is open, so an answer followed by more bytes
//! is an error. The idle timeout covers the handshake (it is set when the first message
//! goes out); the connect timeout covers only the TCP connect to the proxy.
//!
//! Which hosts go through a proxy is worked out once per host (`route`): such a host's
//! pool entry gets the proxy's addresses instead of its own.

use mio::Token;

use super::fetcher::{Fetcher, Link};
use super::pool::{Addrs, HostKey};
use super::proxy::Route;
use super::socks;
use crate::core::Ctx;

/// Longest proxy answer to CONNECT accepted (its whole header section).
const MAX_CONNECT_HEAD: usize = 16 * 1024;

impl Route {
    /// Start a tunnel to `key`: the handshake's state, and the first bytes to send.
    pub fn open_tunnel(&self, key: &HostKey) -> (Box<Handshake>, Vec<u8>) {
        let (stage, first) = if self.socks {
            (
                Stage::SocksMethod,
                socks::greeting(self.credentials.is_some()),
            )
        } else {
            (Stage::HttpConnect, self.connect_request(key))
        };
        let handshake = Handshake {
            buf: Vec::new(),
            stage,
        };
        (Box::new(handshake), first)
    }
}

/// What the proxy's answers say so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// The answer is not complete yet.
    Pending,
    /// Send these bytes, then wait for the next answer (SOCKS's next step).
    Send(Vec<u8>),
    /// The tunnel is open.
    Open,
    /// Refused or malformed: the error, in one line.
    Refused(String),
}

/// Where a tunnel's setup is.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the HTTP proxy's answer to CONNECT.
    HttpConnect,
    /// SOCKS: waiting for the method chosen.
    SocksMethod,
    /// SOCKS: waiting for the answer to username/password.
    SocksAuth,
    /// SOCKS: waiting for the answer to CONNECT.
    SocksConnect,
}

/// A tunnel being set up on a connection to the proxy (kept in its `Link`).
#[derive(Debug)]
pub struct Handshake {
    /// The current answer so far.
    buf: Vec<u8>,
    stage: Stage,
}

impl Handshake {
    /// Bytes from the proxy: what to do next.
    pub fn advance(&mut self, route: &Route, key: &HostKey, data: &[u8]) -> Tunnel {
        match self.step(route, key, data) {
            Ok(tunnel) => tunnel,
            Err(e) => Tunnel::Refused(e),
        }
    }

    fn step(&mut self, route: &Route, key: &HostKey, data: &[u8]) -> Result<Tunnel, String> {
        if self.stage == Stage::HttpConnect {
            return Ok(connect_answer(&mut self.buf, data));
        }
        self.buf.extend_from_slice(data);
        let (used, next) = match self.stage {
            Stage::SocksMethod => match socks::method(&self.buf)? {
                None => return Ok(Tunnel::Pending),
                Some(0) => (2, Stage::SocksConnect),
                Some(2) => (2, Stage::SocksAuth),
                Some(m) => return Err(format!("SOCKS proxy chose an unknown method {m}")),
            },
            Stage::SocksAuth => match socks::auth_reply(&self.buf)? {
                false => return Ok(Tunnel::Pending),
                true => (2, Stage::SocksConnect),
            },
            _ => match socks::connect_reply(&self.buf)? {
                None => return Ok(Tunnel::Pending),
                Some(n) if n == self.buf.len() => return Ok(Tunnel::Open),
                Some(_) => return Err("SOCKS proxy: bytes after its answer".into()),
            },
        };
        if used != self.buf.len() {
            return Err("SOCKS proxy: bytes after its answer".into());
        }
        self.buf.clear();
        let send = match (&next, &route.credentials) {
            (Stage::SocksAuth, Some((user, pw))) => socks::auth_request(user, pw)?,
            (Stage::SocksAuth, None) => {
                return Err("SOCKS proxy wants a user name and password".into())
            }
            _ => socks::connect_request(&key.host, key.port)?,
        };
        self.stage = next;
        Ok(Tunnel::Send(send))
    }
}

/// Add `data` to the CONNECT answer read so far (`head`) and see what it says.
fn connect_answer(head: &mut Vec<u8>, data: &[u8]) -> Tunnel {
    head.extend_from_slice(data);
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        if head.len() > MAX_CONNECT_HEAD {
            return Tunnel::Refused("proxy: answer to CONNECT over 16 KiB".into());
        }
        return Tunnel::Pending;
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head[..end + 4]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Tunnel::Refused("proxy: malformed answer to CONNECT".into()),
    }
    let status = response.code.unwrap_or(0);
    if !(200..300).contains(&status) {
        let reason = response.reason.unwrap_or("");
        return Tunnel::Refused(format!("proxy refused the tunnel: {status} {reason}"));
    }
    if end + 4 != head.len() {
        // The server speaks first in no protocol we tunnel (TLS: the client does).
        return Tunnel::Refused("proxy: bytes after its answer to CONNECT".into());
    }
    Tunnel::Open
}

impl Fetcher {
    /// Work out whether host `host_id` goes through a proxy (once per host): if so,
    /// its addresses are the proxy's, not those of the name in the URL.
    pub(super) fn route(&mut self, host_id: usize) {
        let key = self.pool.host(host_id).key.clone();
        let (route, first) = self.proxies.route(host_id, &key);
        let Some(route) = route.filter(|_| first) else {
            return;
        };
        self.pool.host(host_id).addrs = Addrs::for_host(&route.host, route.port);
    }

    /// A new connection to host `host_id`'s proxy is up: if the host goes through a
    /// tunnel, start its handshake and return true.
    pub(super) fn open_tunnel(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        host_id: usize,
    ) -> bool {
        let Some(route) = self.proxies.get(host_id).filter(|r| r.tunnel) else {
            return false;
        };
        let (handshake, first) = route.open_tunnel(&self.pool.host(host_id).key);
        if let Some(link) = ctx.state_mut(token) {
            link.tunnel = Some(handshake);
        }
        ctx.send(token, &first);
        ctx.set_deadline(token, self.plan.idle_timeout);
        true
    }

    /// The proxy's answers on `token` while its tunnel is set up: once it is open, the
    /// exchange starts inside it.
    pub(super) fn tunnel_bytes(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        id: usize,
        data: &[u8],
    ) {
        let Some(link) = ctx.state_mut(token) else {
            return;
        };
        let host_id = link.host;
        let (Some(handshake), Some(route)) = (link.tunnel.as_mut(), self.proxies.get(host_id))
        else {
            return;
        };
        match handshake.advance(route, &self.pool.host(host_id).key, data) {
            Tunnel::Pending => {}
            Tunnel::Send(bytes) => {
                ctx.send(token, &bytes);
            }
            Tunnel::Open => {
                if let Some(link) = ctx.state_mut(token) {
                    link.tunnel = None;
                }
                self.start_exchange(ctx, token, id);
            }
            Tunnel::Refused(e) => self.finish(ctx, id, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn key(url: &str) -> HostKey {
        HostKey::of(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn connect_answers() {
        let mut head = Vec::new();
        assert_eq!(
            connect_answer(&mut head, b"HTTP/1.1 200 Connection"),
            Tunnel::Pending
        );
        assert_eq!(
            connect_answer(&mut head, b" established\r\n\r\n"),
            Tunnel::Open
        );
        let mut head = Vec::new();
        assert_eq!(
            connect_answer(&mut head, b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Tunnel::Refused("proxy refused the tunnel: 403 Forbidden".into())
        );
    }

    #[test]
    fn socks_handshake_steps() {
        let k = key("https://a.b/");
        let route = Route::new(&k, &Url::parse("socks5h://u:p@proxy").unwrap());
        let (mut hs, first) = route.open_tunnel(&k);
        assert_eq!(first, [5, 2, 0, 2]);
        assert_eq!(hs.advance(&route, &k, &[5]), Tunnel::Pending);
        assert_eq!(
            hs.advance(&route, &k, &[2]),
            Tunnel::Send(vec![1, 1, b'u', 1, b'p'])
        );
        let Tunnel::Send(connect) = hs.advance(&route, &k, &[1, 0]) else {
            panic!("no CONNECT");
        };
        assert_eq!(connect[..5], [5, 1, 0, 3, 3]);
        assert_eq!(
            hs.advance(&route, &k, &[5, 0, 0, 1, 1, 2, 3, 4, 0]),
            Tunnel::Pending
        );
        assert_eq!(hs.advance(&route, &k, &[80]), Tunnel::Open);
    }
}
