//! `Pool`: per host:port, its addresses, its connections, and who waits for one.
//!
//! HTTP/1.1 keeps a connection open after a response unless told otherwise, and reusing
//! it saves a TCP handshake (and, for HTTPS, a TLS handshake) per page: that is what
//! makes many small pages fast. A `Host` entry therefore keeps the idle connections to
//! one scheme://host:port, counts how many are open (at most `--per-host`), and queues
//! the transfers waiting for one. It also caches the host's addresses, so 1,000 URLs on
//! one host cost one DNS lookup.
//!
//! The pool holds tokens, not sockets: the sockets stay in the loop's slab. An idle
//! connection is still registered with the loop, so a server closing it is seen at once
//! (EOF on an idle connection) and the entry is removed in `on_close`.
//!
//! A connection whose response just ended is not idle at once: it *settles* until later
//! in the same turn (`settling`, then `settled` from the fetcher's zero-delay timer). The
//! event that carried the response's last bytes may also carry the server's FIN
//! (`read_closed`): the loop hands the bytes over first and reads the EOF right after,
//! in the same turn. A request written in between would go to a server that has already
//! hung up, and fail. Waiting until the turn's events are all handled costs nothing —
//! the next request still leaves in this turn — and a connection that did close is gone
//! from the pool by then.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use mio::Token;
use url::Url;

/// What a pool entry is keyed on: connections are only shared within one of these.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostKey {
    /// `https` (a TLS session on the connection) or not.
    pub tls: bool,
    /// The host as written in the URL (a name, or an IP literal).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl HostKey {
    /// The key for a URL; None if it has no host or no known port.
    pub fn of(url: &Url) -> Option<HostKey> {
        Some(HostKey {
            tls: url.scheme() == "https",
            host: url.host_str()?.to_string(),
            port: url.port_or_known_default()?,
        })
    }
}

/// Where a host's addresses are.
#[derive(Clone, Debug)]
pub enum Addrs {
    /// Not looked up yet.
    Unknown,
    /// A resolver thread is on it; transfers wait in `waiting`.
    Resolving,
    /// Known, in order of preference.
    Ready(Vec<SocketAddr>),
    /// The lookup failed: every transfer to this host fails with this message.
    Failed(String),
}

impl Addrs {
    /// Where `host:port`'s addresses start: ready for an IP literal, which needs no
    /// lookup (`url` keeps IPv6 literals in brackets), to be looked up otherwise.
    pub fn for_host(host: &str, port: u16) -> Addrs {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<std::net::IpAddr>() {
            Ok(ip) => Addrs::Ready(vec![SocketAddr::new(ip, port)]),
            Err(_) => Addrs::Unknown,
        }
    }
}

/// One scheme://host:port.
#[derive(Debug)]
pub struct Host {
    /// Which host this is.
    pub key: HostKey,
    /// Its addresses.
    pub addrs: Addrs,
    /// Connections open or connecting (at most `--per-host`).
    pub open: usize,
    /// Open connections with no transfer, most recently used last.
    pub idle: Vec<Token>,
    /// Connections whose response ended in this turn, not yet offered (see the module
    /// docs): they count as open, but are handed to no transfer before `settled`.
    pub settling: Vec<Token>,
    /// Transfers waiting for an address or a connection, first come first served.
    pub waiting: VecDeque<usize>,
}

/// All hosts of a run.
#[derive(Debug)]
pub struct Pool {
    ids: HashMap<HostKey, usize>,
    hosts: Vec<Host>,
    /// Hosts with settling connections (each listed once).
    unsettled: Vec<usize>,
    /// `--per-host`: connections per host at most.
    pub per_host: usize,
}

impl Pool {
    /// An empty pool allowing `per_host` connections per host.
    pub fn new(per_host: usize) -> Pool {
        Pool {
            ids: HashMap::new(),
            hosts: Vec::new(),
            unsettled: Vec::new(),
            per_host: per_host.max(1),
        }
    }

    /// The number of the host entry for `key`, made on first use.
    pub fn id(&mut self, key: HostKey) -> usize {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.hosts.len();
        let addrs = Addrs::for_host(&key.host, key.port);
        self.hosts.push(Host {
            key: key.clone(),
            addrs,
            open: 0,
            idle: Vec::new(),
            settling: Vec::new(),
            waiting: VecDeque::new(),
        });
        self.ids.insert(key, id);
        id
    }

    /// The host entry `id`.
    pub fn host(&mut self, id: usize) -> &mut Host {
        &mut self.hosts[id]
    }

    /// An idle connection to `id`, if there is one (the most recently used: the least
    /// likely to have been closed by the server meanwhile).
    pub fn take_idle(&mut self, id: usize) -> Option<Token> {
        self.hosts[id].idle.pop()
    }

    /// True if another connection to `id` may be opened.
    pub fn can_open(&self, id: usize) -> bool {
        self.hosts[id].open < self.per_host
    }

    /// A connect to `addr` worked: try it first from now on (`localhost` may resolve to
    /// `::1` first while the server listens on 127.0.0.1 only; one refusal is enough).
    pub fn prefer(&mut self, id: usize, addr: Option<SocketAddr>) {
        if let Addrs::Ready(addrs) = &mut self.hosts[id].addrs {
            if let Some(i) = addrs
                .iter()
                .position(|a| Some(*a) == addr)
                .filter(|&i| i > 0)
            {
                let a = addrs.remove(i);
                addrs.insert(0, a);
            }
        }
    }

    /// A connection to `id` closed: forget it.
    pub fn closed(&mut self, id: usize, token: Token) {
        let host = &mut self.hosts[id];
        host.open = host.open.saturating_sub(1);
        host.idle.retain(|&t| t != token);
        host.settling.retain(|&t| t != token);
    }

    /// A connection to `id` finished its response and may be reused: it settles until
    /// `settled` (call it later in the turn: the fetcher's zero-delay timer).
    pub fn settle(&mut self, id: usize, token: Token) {
        let host = &mut self.hosts[id];
        if host.settling.is_empty() {
            self.unsettled.push(id);
        }
        host.settling.push(token);
    }

    /// The turn's events are handled: settling connections still open are idle now.
    /// Returns the hosts that got some (to hand them to their waiting transfers).
    pub fn settled(&mut self) -> Vec<usize> {
        let hosts = std::mem::take(&mut self.unsettled);
        for &id in &hosts {
            let host = &mut self.hosts[id];
            host.idle.append(&mut host.settling);
        }
        hosts
    }

    /// Some idle connection, to any host (the least recently used of the first host
    /// that has one): closed when a descriptor is needed (`descriptors.rs`).
    pub fn any_idle(&self) -> Option<(usize, Token)> {
        self.hosts
            .iter()
            .enumerate()
            .find_map(|(id, h)| h.idle.first().map(|&t| (id, t)))
    }

    /// The least recently used idle connection to `id`, to close so that a transfer
    /// that must have a new connection gets the slot.
    pub fn oldest_idle(&self, id: usize) -> Option<Token> {
        self.hosts[id].idle.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_hosts_need_no_lookup() {
        let mut pool = Pool::new(6);
        for (url, ready) in [
            ("http://127.0.0.1:8080/", true),
            ("http://[::1]:8080/", true),
            ("https://example.com/", false),
        ] {
            let key = HostKey::of(&Url::parse(url).unwrap()).unwrap();
            let id = pool.id(key);
            assert_eq!(
                matches!(pool.host(id).addrs, Addrs::Ready(_)),
                ready,
                "{url}"
            );
        }
        let a = pool.id(HostKey::of(&Url::parse("http://127.0.0.1:8080/x").unwrap()).unwrap());
        assert_eq!(a, 0, "same host:port, same entry");
        let key = HostKey::of(&Url::parse("https://example.com/").unwrap()).unwrap();
        assert_eq!(key.port, 443);
    }
}
