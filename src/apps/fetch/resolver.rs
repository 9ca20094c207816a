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

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use log::{debug, warn};
use mio::Waker;

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
}

impl Resolver {
    /// A resolver that wakes the loop through `waker` when an answer is ready.
    pub fn new(waker: Arc<Waker>) -> Resolver {
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
        }
    }

    /// Start looking up `name:port`; the answer comes back through `answers` with `key`.
    pub fn lookup(&mut self, key: usize, name: &str, port: u16) {
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
                    Ok(addrs)
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
