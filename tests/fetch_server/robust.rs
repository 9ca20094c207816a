//! The adversarial server behind `tests/fetch_robust.rs`: each route provokes one of
//! the failures issue 11 found against real servers, on a real socket on 127.0.0.1:0.
//!
//! Like `TestServer` it is plain blocking `std::net`, one thread per connection, not
//! netloop. What it adds: a server-wide *silent close* (every Nth response, the
//! connection is closed right after it, although the response said keep-alive — what a
//! server whose keep-alive timer runs out does), endless interim responses, a header
//! trickled forever, a `Content-Length: +5`, bodies held half-sent until the client hangs
//! up (counted, so a test knows when a transfer is under way and when it was cancelled),
//! and any status on request. With a TLS config every connection is TLS first.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::page;

/// How long any route waits for a client at most: no test thread outlives its test
/// by much.
const PATIENCE: Duration = Duration::from_secs(30);

/// Server-wide behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Close the connection silently after every Nth response (counted server-wide).
    pub close_every: Option<usize>,
    /// Wait this long before that close (0: the FIN follows the response at once, and
    /// usually reaches the client in the same event).
    pub close_delay: Duration,
    /// Answer this many requests on a connection; read the next one and close without
    /// a word (a clean FIN: the request was read, so no reset).
    pub answers_per_conn: Option<usize>,
}

/// Counters a test can watch.
#[derive(Default)]
pub struct Counters {
    /// Connections accepted.
    pub accepts: AtomicUsize,
    /// Responses sent (complete ones).
    pub responses: AtomicUsize,
    /// Connections closed silently after a response.
    pub silent_closes: AtomicUsize,
    /// Requests read and never answered (`answers_per_conn`).
    pub unanswered: AtomicUsize,
    /// `/hold/...` bodies started (head and first bytes sent).
    pub holds: AtomicUsize,
    /// `/hold/...` clients that hung up.
    pub hangups: AtomicUsize,
}

/// A running server; stops accepting when dropped.
pub struct RobustServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has seen.
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl RobustServer {
    /// A plain HTTP server with `options`.
    pub fn start(options: Options) -> RobustServer {
        RobustServer::start_with(options, None)
    }

    /// With `tls`, every connection is TLS first.
    pub fn start_with(options: Options, tls: Option<Arc<rustls::ServerConfig>>) -> RobustServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind robust server");
        let addr = listener.local_addr().expect("local addr");
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&counters), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                c.accepts.fetch_add(1, Ordering::SeqCst);
                let (c, tls) = (Arc::clone(&c), tls.clone());
                thread::spawn(move || connection(stream, options, tls, &c));
            }
        });
        RobustServer {
            addr,
            counters,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The value of one counter.
    pub fn count(&self, which: fn(&Counters) -> &AtomicUsize) -> usize {
        which(&self.counters).load(Ordering::SeqCst)
    }
}

impl Drop for RobustServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop so it sees `stop`
    }
}

fn connection(
    stream: TcpStream,
    options: Options,
    tls: Option<Arc<rustls::ServerConfig>>,
    counters: &Counters,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    match tls {
        None => serve(stream, options, counters),
        Some(config) => {
            let Ok(session) = rustls::ServerConnection::new(config) else {
                return;
            };
            serve(rustls::StreamOwned::new(session, stream), options, counters)
        }
    }
    // Dropping the stream closes the socket.
}

/// Answer requests on one connection until a route ends it or the client hangs up.
fn serve<S: Read + Write>(stream: S, options: Options, counters: &Counters) {
    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => {}
            }
        }
        if options.answers_per_conn == Some(answered) {
            counters.unanswered.fetch_add(1, Ordering::SeqCst);
            return;
        }
        answered += 1;
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        if let Some(n) = path.strip_prefix("/hold/").and_then(|n| n.parse().ok()) {
            return hold(&mut reader, n, counters);
        }
        let out = reader.get_mut();
        match respond(out, &path) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        let n = counters.responses.fetch_add(1, Ordering::SeqCst) + 1;
        if options
            .close_every
            .is_some_and(|every| n.is_multiple_of(every))
        {
            thread::sleep(options.close_delay);
            counters.silent_closes.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

fn with_length(out: &mut impl Write, status: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}

/// One response; Ok(true) if the connection may carry another.
fn respond(out: &mut impl Write, path: &str) -> std::io::Result<bool> {
    let number = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
    };
    if let Some(i) = number("/page/") {
        with_length(out, "200 OK", &page(i))?;
    } else if let Some(code) = number("/status/") {
        let body = format!("status {code} body\n");
        with_length(out, &format!("{code} Whatever"), body.as_bytes())?;
    } else if let Some(n) = number("/interim/") {
        // N interim responses, then the real one.
        for _ in 0..n {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        with_length(out, "200 OK", b"after the interims")?;
    } else if path == "/continue-flood" {
        // `100 Continue` every 50 ms, never a final response.
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            out.flush()?;
            thread::sleep(Duration::from_millis(50));
        }
        return Ok(false);
    } else if path == "/trickle" {
        // A header section one byte every 0.2 s, that never ends.
        out.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ")?;
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            out.write_all(b"z")?;
            out.flush()?;
            thread::sleep(Duration::from_millis(200));
        }
        return Ok(false);
    } else if path == "/cl-plus" {
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello")?;
        out.flush()?;
    } else if path == "/cl-list" {
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello")?;
        out.flush()?;
    } else {
        with_length(out, "404 Not Found", b"unknown route")?;
    }
    Ok(true)
}

/// `/hold/N`: promise N + 1 bytes, send N, then wait (bounded) until the client hangs
/// up — its FIN or reset ends the read — and count both moments.
fn hold<S: Read + Write>(reader: &mut BufReader<S>, n: usize, counters: &Counters) {
    let out = reader.get_mut();
    let head = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", n + 1)
        .and_then(|()| out.flush());
    counters.holds.fetch_add(1, Ordering::SeqCst);
    // A large body blocks here while the client does not read; its hang-up ends it.
    let sent = head
        .and_then(|()| out.write_all(&vec![b'h'; n]))
        .and_then(|()| out.flush());
    if sent.is_ok() {
        let started = Instant::now();
        let mut buf = [0u8; 512];
        while started.elapsed() < PATIENCE {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                // The read timeout is not a hang-up: keep waiting (bounded above).
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
    counters.hangups.fetch_add(1, Ordering::SeqCst);
}
