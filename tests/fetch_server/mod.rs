//! The test HTTP server behind `tests/fetch.rs`: a real socket on 127.0.0.1:0, plain
//! or TLS, that misbehaves on request.
//!
//! It is deliberately *not* built on netloop (a fetcher tested against its own loop
//! could share its bugs): blocking `std::net`, one thread per connection, keep-alive,
//! and a route per case the fetcher must handle — bodies framed every way, a response
//! dribbled a byte at a time, redirects, oversized headers, garbage, short bodies,
//! resets, silence, a body larger than memory should hold, a body that never ends. Every
//! accepted connection is counted, so a test can prove reuse, and so is every client
//! that hung up on `/hold/N`, so a test can see the fetcher act while it is blocked on
//! its output.
#![allow(dead_code)]

pub mod net;
pub mod robust;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The chunked response every `/split/K` route sends, cut in two at byte K.
pub const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;name=value\r\nhello\r\n8\r\n, chunky\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n";
/// The body `CHUNKED` carries.
pub const CHUNKED_BODY: &[u8] = b"hello, chunky world";

/// `n` bytes of a fixed pattern (so truncation and reordering show).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The `pattern` byte at `offset` (for checking a streamed body piece by piece).
pub fn pattern_at(offset: u64) -> u8 {
    b'a' + (offset % 26) as u8
}

/// The body of `/page/I`: distinct for every I.
pub fn page(i: usize) -> Vec<u8> {
    format!("<p>page {i}</p>\n").repeat(40 + i % 7).into_bytes()
}

/// What to do with the connection after a response.
enum After {
    KeepOpen,
    Close,
    /// Close with SO_LINGER 0: the kernel sends RST instead of FIN.
    Reset,
}

/// A running test server; stops accepting when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    holds_closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    /// A plain HTTP server.
    pub fn start() -> TestServer {
        TestServer::start_with(None)
    }

    /// With `tls`, every connection is TLS first (HTTPS).
    pub fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        let addr = listener.local_addr().expect("local addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let holds_closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (Arc::clone(&accepts), Arc::clone(&stop));
        let h = Arc::clone(&holds_closed);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                let h = Arc::clone(&h);
                thread::spawn(move || connection(stream, addr, tls, &h));
            }
        });
        TestServer {
            addr,
            accepts,
            holds_closed,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// `/hold/N` requests whose client hung up (closed or reset the connection).
    pub fn holds_closed(&self) -> usize {
        self.holds_closed.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop so it sees `stop`
    }
}

fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    holds_closed: &AtomicUsize,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let raw = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let after = match tls {
        None => serve(stream, addr, holds_closed),
        Some(config) => {
            let Ok(session) = rustls::ServerConnection::new(config) else {
                return;
            };
            serve(
                rustls::StreamOwned::new(session, stream),
                addr,
                holds_closed,
            )
        }
    };
    if let After::Reset = after {
        let _ = socket2::SockRef::from(&raw).set_linger(Some(Duration::ZERO));
    }
    // Dropping `raw` (and the stream) closes the socket: FIN, or RST with linger 0.
}

/// Answer requests on one connection until a route closes it or the client does.
fn serve<S: Read + Write>(stream: S, addr: SocketAddr, holds_closed: &AtomicUsize) -> After {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return After::Close,
            Ok(_) => {}
        }
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return After::Close,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => {}
            }
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let out = reader.get_mut();
        if let Some(n) = path.strip_prefix("/hold/").and_then(|n| n.parse().ok()) {
            hold(out, n, holds_closed);
            return After::Close;
        }
        match respond(out, &method, &path, addr) {
            Ok(After::KeepOpen) => {}
            Ok(other) => return other,
            Err(_) => return After::Close,
        }
    }
}

fn head(out: &mut impl Write, status: &str, headers: &str) -> std::io::Result<()> {
    write!(out, "HTTP/1.1 {status}\r\n{headers}\r\n")
}

fn with_length(out: &mut impl Write, status: &str, body: &[u8]) -> std::io::Result<()> {
    head(out, status, &format!("Content-Length: {}\r\n", body.len()))?;
    out.write_all(body)?;
    out.flush()
}

fn redirect(out: &mut impl Write, status: &str, location: &str) -> std::io::Result<After> {
    let body = b"moved";
    head(
        out,
        status,
        &format!("Location: {location}\r\nContent-Length: {}\r\n", body.len()),
    )?;
    out.write_all(body)?;
    out.flush()?;
    Ok(After::KeepOpen)
}

/// `/stream/N`: N pattern bytes, written a piece at a time (never all in memory).
fn stream_body(out: &mut impl Write, n: u64) -> std::io::Result<()> {
    head(out, "200 OK", &format!("Content-Length: {n}\r\n"))?;
    // 26 divides the piece size, so every piece is the same slice of the pattern.
    let piece = pattern(26 * 2048);
    let mut left = n;
    while left > 0 {
        let k = left.min(piece.len() as u64) as usize;
        out.write_all(&piece[..k])?;
        left -= k as u64;
    }
    out.flush()
}

/// `/hold/N`: promise N + 1 bytes, send N, then wait for the client to hang up, and
/// count it. The write blocks while the client does not read; a close or reset from
/// the client ends it (an error), as does the client's EOF once all was sent.
fn hold<S: Read + Write>(stream: &mut S, n: u64, holds_closed: &AtomicUsize) {
    let sent = head(stream, "200 OK", &format!("Content-Length: {}\r\n", n + 1)).and_then(|()| {
        let piece = pattern(26 * 2048);
        let mut left = n;
        while left > 0 {
            let k = left.min(piece.len() as u64) as usize;
            stream.write_all(&piece[..k])?;
            left -= k as u64;
        }
        stream.flush()
    });
    if sent.is_ok() {
        // Everything fitted in the kernel's buffers: wait for EOF or a reset. The read
        // timeout (10 s) is not a hang-up: keep waiting, for a bounded while.
        let mut buf = [0u8; 4096];
        let mut timeouts = 0;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    timeouts += 1;
                    if timeouts == 6 {
                        return; // a minute without a hang-up: not counted
                    }
                }
                Err(_) => break,
            }
        }
    }
    holds_closed.fetch_add(1, Ordering::SeqCst);
}

/// One response; the route decides what happens to the connection afterwards.
fn respond(
    out: &mut impl Write,
    method: &str,
    path: &str,
    addr: SocketAddr,
) -> std::io::Result<After> {
    let number = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
    };
    if let Some(n) = number("/len/") {
        with_length(out, "200 OK", &pattern(n))?;
    } else if let Some(n) = number("/stream/") {
        stream_body(out, n as u64)?;
    } else if let Some(i) = number("/page/") {
        with_length(out, "200 OK", &page(i))?;
    } else if let Some(k) = number("/split/") {
        // The chunked response in two writes cut at byte K, with a pause between, so
        // the client sees two reads cut exactly there.
        let k = k.min(CHUNKED.len());
        out.write_all(&CHUNKED[..k])?;
        out.flush()?;
        thread::sleep(Duration::from_millis(15));
        out.write_all(&CHUNKED[k..])?;
        out.flush()?;
    } else if path == "/chunked" {
        out.write_all(CHUNKED)?;
        out.flush()?;
    } else if path == "/close" {
        // No Content-Length, no chunking: the body ends when the connection does.
        head(out, "200 OK", "Connection: close\r\n")?;
        out.write_all(&pattern(5000))?;
        out.flush()?;
        return Ok(After::Close);
    } else if path == "/http10" {
        write!(out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")?;
        out.write_all(b"old style")?;
        out.flush()?;
        return Ok(After::Close);
    } else if path == "/dribble" {
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nX-Slow: yes\r\n\r\n".to_vec();
        response.extend_from_slice(&pattern(40));
        for byte in response {
            out.write_all(&[byte])?;
            out.flush()?;
            thread::sleep(Duration::from_millis(1));
        }
    } else if path == "/head" {
        // HEAD gets the headers of the GET response, and no body.
        let body = pattern(1234);
        head(out, "200 OK", "Content-Length: 1234\r\n")?;
        if method != "HEAD" {
            out.write_all(&body)?;
        }
        out.flush()?;
    } else if path == "/204" {
        head(out, "204 No Content", "")?;
        out.flush()?;
    } else if path == "/304" {
        // A 304 carries the Content-Length of the resource, and no body.
        head(out, "304 Not Modified", "Content-Length: 50\r\n")?;
        out.flush()?;
    } else if path == "/status/404" {
        with_length(out, "404 Not Found", b"no such page")?;
    } else if path == "/redir/rel" {
        return redirect(out, "302 Found", "../len/10");
    } else if path == "/redir/abs" {
        return redirect(
            out,
            "301 Moved Permanently",
            &format!("http://{addr}/len/20"),
        );
    } else if path == "/redir/303" {
        // A redirect whose own body is chunked: it must be read through and dropped.
        head(
            out,
            "303 See Other",
            "Location: /len/30\r\nTransfer-Encoding: chunked\r\n",
        )?;
        out.write_all(b"4\r\nskip\r\n0\r\n\r\n")?;
        out.flush()?;
    } else if path == "/loop/a" {
        return redirect(out, "302 Found", "/loop/b");
    } else if path == "/loop/b" {
        return redirect(out, "307 Temporary Redirect", "/loop/a");
    } else if let Some(n) = number("/chain/") {
        if n == 0 {
            with_length(out, "200 OK", b"end of chain")?;
        } else {
            return redirect(out, "308 Permanent Redirect", &format!("/chain/{}", n - 1));
        }
    } else if path == "/bighead" {
        // A 1 MiB header line: the client gives up at 64 KiB and closes, so this write
        // fails part way; that is expected.
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.extend_from_slice(&vec![b'x'; 1 << 20]);
        big.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        out.write_all(&big)?;
        out.flush()?;
        return Ok(After::Close);
    } else if path == "/manyheaders" {
        let headers: String = (0..150).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
        head(out, "200 OK", &format!("{headers}Content-Length: 2\r\n"))?;
        out.write_all(b"ok")?;
        out.flush()?;
    } else if path == "/garbage" {
        out.write_all(b"HELLO, I AM NOT HTTP\r\n\r\n")?;
        out.flush()?;
        return Ok(After::Close);
    } else if path == "/short" {
        head(out, "200 OK", "Content-Length: 1000\r\n")?;
        out.write_all(&pattern(500))?;
        out.flush()?;
        return Ok(After::Close);
    } else if path == "/reset" {
        head(out, "200 OK", "Content-Length: 100000\r\n")?;
        out.write_all(&pattern(1000))?;
        out.flush()?;
        thread::sleep(Duration::from_millis(50));
        return Ok(After::Reset);
    } else if path == "/hang" {
        // Accept, read the request, say nothing; give up after a while.
        thread::sleep(Duration::from_secs(4));
        return Ok(After::Close);
    } else {
        with_length(out, "404 Not Found", b"unknown route")?;
    }
    Ok(After::KeepOpen)
}
pub mod requests;
