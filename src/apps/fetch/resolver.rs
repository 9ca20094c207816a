//! `Resolver`: host names to addresses without stalling the loop.
//!
//! The system resolver (`getaddrinfo`, what `ToSocketAddrs` calls) only blocks: one slow
//! DNS server would freeze every transfer on the loop for seconds. So lookups run on a
//! few helper threads (at most `MAX_THREADS`, started as lookups queue up, not one per
//! request). A thread takes a request from a channel, blocks in `getaddrinfo`, sends the
//! answer back on another channel and calls the loop's `Waker`: the loop wakes from
//! `poll` with the waker's token and calls `Handler::on_wake`, where the fetcher takes
//! the answers with `answers()`, never blocking. The loop thread itself only ever waits
//! in `poll`.
//!
//! IP literals (`127.0.0.1`, `[::1]`) never come here; names are looked up once per
//! host:port per run (the fetcher keeps the answer with its pool entry).
//!
//! `--resolve HOST:PORT:ADDR[,ADDR...]` (curl's syntax) answers a name without asking
//! anyone: such a lookup is answered at once, through the same channel and waker as a
//! real one (so the fetcher has one path for answers). `HOST` may be `*` for any host
//! on that port. Every answer is put in happy eyeballs order (`eyeballs::order`: IPv6
//! and IPv4 interleaved, IPv6 first).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use log::{debug, warn};
use mio::Waker;

use super::eyeballs;

/// Helper threads at most: enough for a few slow names to not hold up the others.
const MAX_THREADS: usize = 4;

/// One lookup to do.
struct Request {
    /// The caller's key (the fetcher's host number), returned with the answer.
    key: usize,
    name: String,
    port: u16,
}

/// One finished lookup.
#[derive(Debug)]
pub struct Answer {
    /// The key given to `lookup`.
    pub key: usize,
    /// The addresses, in the resolver's order of preference, or a one-line error.
    pub result: Result<Vec<SocketAddr>, String>,
}

/// Lookups on helper threads, answered through a channel and the loop's waker.
pub struct Resolver {
    waker: Arc<Waker>,
    /// Requests for the helper threads (dropped with the resolver: the threads then end).
    requests: Sender<Request>,
    /// Shared by the helper threads: whichever is free takes the next request.
    queue: Arc<Mutex<Receiver<Request>>>,
    answers_tx: Sender<Answer>,
    answers: Receiver<Answer>,
    threads: usize,
    /// Lookups asked for and not yet answered.
    outstanding: usize,
    /// `--resolve`: answers given on the command line, by (host, port).
    overrides: Overrides,
}

/// `--resolve` entries: (lower-case host or `*`, port) to addresses.
pub type Overrides = HashMap<(String, u16), Vec<IpAddr>>;

/// One `--resolve HOST:PORT:ADDR[,ADDR...]` entry (IPv6 addresses may be in brackets).
/// Errors name the option and say what is wrong.
pub fn parse_resolve(entry: &str) -> Result<((String, u16), Vec<IpAddr>), String> {
    let bad = |why: &str| format!("--resolve {entry:?}: {why} (expected HOST:PORT:ADDR[,ADDR...])");
    // curl's `+HOST:...` (an entry that may time out of its cache) means the same here.
    let mut parts = entry.strip_prefix('+').unwrap_or(entry).splitn(3, ':');
    let (Some(host), Some(port), Some(addrs)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("missing fields"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    let mut ips = Vec::new();
    for addr in addrs.split(',') {
        let addr = addr.trim();
        let literal = addr.trim_start_matches('[').trim_end_matches(']');
        ips.push(
            literal
                .parse::<IpAddr>()
                .map_err(|_| bad(&format!("{addr:?} is not an IP address")))?,
        );
    }
    Ok(((host.to_ascii_lowercase(), port), ips))
}

impl Resolver {
    /// A resolver that wakes the loop through `waker` when an answer is ready.
    pub fn new(waker: Arc<Waker>, overrides: Overrides) -> Resolver {
        let (requests, queue) = mpsc::channel();
        let (answers_tx, answers) = mpsc::channel();
        Resolver {
            waker,
            requests,
            queue: Arc::new(Mutex::new(queue)),
            answers_tx,
            answers,
            threads: 0,
            outstanding: 0,
            overrides,
        }
    }

    /// Start looking up `name:port`; the answer comes back through `answers` with `key`.
    pub fn lookup(&mut self, key: usize, name: &str, port: u16) {
        let lower = name.to_ascii_lowercase();
        let given = (self.overrides.get(&(lower, port)))
            .or_else(|| self.overrides.get(&("*".to_string(), port)));
        if let Some(ips) = given {
            let addrs = ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect();
            let _ = self.answers_tx.send(Answer {
                key,
                result: Ok(eyeballs::order(addrs)),
            });
            self.outstanding += 1;
            let _ = self.waker.wake();
            return;
        }
        self.outstanding += 1;
        if self.threads < self.outstanding.min(MAX_THREADS) {
            self.spawn();
        }
        let request = Request {
            key,
            name: name.to_string(),
            port,
        };
        if let Err(mpsc::SendError(request)) = self.requests.send(request) {
            // Every helper thread is gone (they could not be started): say so as the
            // answer, so the transfers waiting on it fail instead of hanging.
            self.outstanding -= 1;
            let _ = self.answers_tx.send(Answer {
                key: request.key,
                result: Err("no resolver thread could be started".into()),
            });
            let _ = self.waker.wake();
        }
    }

    /// The answers that have arrived (never blocks).
    pub fn answers(&mut self) -> Vec<Answer> {
        let answers: Vec<Answer> = self.answers.try_iter().collect();
        self.outstanding = self.outstanding.saturating_sub(answers.len());
        answers
    }

    fn spawn(&mut self) {
        let queue = Arc::clone(&self.queue);
        let answers = self.answers_tx.clone();
        let waker = Arc::clone(&self.waker);
        let spawned = std::thread::Builder::new()
            .name(format!("resolver-{}", self.threads))
            .spawn(move || serve_lookups(&queue, &answers, &waker));
        match spawned {
            Ok(_) => self.threads += 1,
            Err(e) => warn!("cannot start a resolver thread: {e}"),
        }
    }
}

/// A helper thread: look names up until the fetcher drops its end of the channel.
fn serve_lookups(queue: &Mutex<Receiver<Request>>, answers: &Sender<Answer>, waker: &Waker) {
    loop {
        // Hold the lock only to take one request, not during the lookup.
        let request = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return, // another helper panicked holding it: stop quietly
        };
        let Ok(Request { key, name, port }) = request else {
            return; // the resolver is gone
        };
        let result = match (name.as_str(), port).to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(format!("DNS: no address for {name}"))
                } else {
                    Ok(eyeballs::order(addrs))
                }
            }
            Err(e) => Err(format!("DNS: cannot resolve {name}: {e}")),
        };
        debug!("resolved {name}: {result:?}");
        if answers.send(Answer { key, result }).is_err() {
            return;
        }
        if let Err(e) = waker.wake() {
            warn!("resolver: cannot wake the loop: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_as_curl_writes_them() {
        let (key, ips) = parse_resolve("Example.com:443:127.0.0.2,[::1], 10.0.0.1").unwrap();
        assert_eq!(key, ("example.com".to_string(), 443));
        let want: Vec<IpAddr> = ["127.0.0.2", "::1", "10.0.0.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        assert_eq!(
            parse_resolve("*:80:::1").unwrap().1,
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        for bad in [
            "example.com:443",
            "example.com:x:1.2.3.4",
            ":80:1.2.3.4",
            "a:80:nope",
        ] {
            let e = parse_resolve(bad).unwrap_err();
            assert!(e.starts_with("--resolve"), "{e}");
        }
    }
}
