//! The server behind `tests/fetch_requests.rs`: it reads whole requests (head and body)
//! and says what it got, so a test can check what `netloop fetch` sent.
//!
//! Like the rest of `fetch_server/`, it is blocking `std::net`, a thread per
//! connection, keep-alive, and not built on netloop. Routes (the query is part of the
//! route's input):
//! - `/echo`: the request as text — `method M`, `target T`, one `h name: value` line per
//!   header (name lower-cased, in order), and `body N SHA256` (the body's length and
//!   checksum, computed as it streams in, never held); `/slowecho` the same, reading
//!   the body slowly;
//! - `/redirect/CODE?to=URL`: a CODE response with `Location: URL` (after reading the
//!   request body, so the connection stays in step);
//! - `/setcookie?c=NAME=VALUE` (200) and `/setcookie-redirect?c=...` (302 to `/echo`):
//!   a `Set-Cookie: NAME=VALUE; Path=/`;
//! - `/coded/CODING/HOW`: `sample_text()` compressed with CODING (gzip, deflate, br,
//!   zstd) if the request's Accept-Encoding names it, else sent as is; HOW is `ok`,
//!   `chunked` (the same bytes in 1000-byte chunks), `corrupt` (bytes in the middle of
//!   the compressed stream changed) or `truncated` (its second half never sent, the
//!   HTTP framing itself complete);
//! - `/bomb/MIB`: MIB MiB of zeros, gzip-compressed (about 1,000 times smaller).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// About 200 KB of text that compresses like a real page (3-5x), the same every time.
pub fn sample_text() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "loop",
        "reads",
        "until",
        "would",
        "block",
        "and",
        "every",
        "connection",
        "keeps",
        "its",
        "own",
        "state",
        "machine",
        "server",
        "response",
        "header",
        "body",
        "bytes",
        "stream",
        "timer",
        "deadline",
        "output",
        "writer",
        "page",
        "request",
        "compressed",
        "window",
        "memory",
        "bounded",
        "<p>",
        "</p>",
        "<a href=\"/x\">",
        "</a>",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(200_000);
    while out.len() < 200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize].as_bytes());
        out.push(if state.is_multiple_of(11) {
            b'\n'
        } else {
            b' '
        });
    }
    out
}

/// `data` compressed with `coding` (gzip, deflate, br, zstd).
pub fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("deflate");
            e.finish().expect("deflate")
        }
        "br" => {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
            e.write_all(data).expect("br");
            e.into_inner()
        }
        "zstd" => {
            // With its checksum, so a corrupt body cannot pass as a different text.
            let mut e = zstd::stream::Encoder::new(Vec::new(), 3).expect("zstd");
            e.include_checksum(true).expect("zstd checksum");
            e.write_all(data).expect("zstd");
            e.finish().expect("zstd")
        }
        other => panic!("no coding {other}"),
    }
}

/// SHA-256 of `data`, in hex (what `/echo` reports for a body).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running request-echo server; stops accepting when dropped.
pub struct RequestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl RequestServer {
    /// Listen on 127.0.0.1, a free port.
    pub fn start() -> RequestServer {
        RequestServer::start_with(None)
    }

    /// With `tls`, every connection is TLS first (HTTPS).
    pub fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> RequestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind request server");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                match tls.clone() {
                    None => thread::spawn(move || serve(stream)),
                    Some(config) => thread::spawn(move || {
                        if let Ok(session) = rustls::ServerConnection::new(config) {
                            serve(rustls::StreamOwned::new(session, stream));
                        }
                    }),
                };
            }
        });
        RequestServer { addr, stop }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for RequestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One request as received.
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body_len: u64,
    body_sha: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn serve<S: Read + Write>(stream: S) {
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        if respond(reader.get_mut(), &req).is_err() {
            return;
        }
    }
}

/// Read a request head and stream its body through SHA-256; None at EOF or on error.
fn read_request(reader: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let target = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len: u64 = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; 64 * 1024];
    // `/slowecho`: the body is read slowly (64 KiB per millisecond at most), so an
    // upload lasts long enough to be watched.
    let slow = target.starts_with("/slowecho");
    while left > 0 {
        if slow {
            thread::sleep(Duration::from_millis(1));
        }
        let want = left.min(buf.len() as u64) as usize;
        let n = reader.read(&mut buf[..want]).ok()?;
        if n == 0 {
            return None;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Some(Received {
        method,
        target,
        headers,
        body_len: len,
        body_sha: hex(&hasher.finalize()),
    })
}

fn respond(out: &mut impl Write, req: &Received) -> std::io::Result<()> {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    if path == "/echo" || path == "/slowecho" {
        let mut text = format!("method {}\ntarget {}\n", req.method, req.target);
        for (n, v) in &req.headers {
            text.push_str(&format!("h {n}: {v}\n"));
        }
        text.push_str(&format!("body {} {}\n", req.body_len, req.body_sha));
        return send(out, "200 OK", "", text.as_bytes());
    }
    if let Some(code) = path.strip_prefix("/redirect/") {
        let status = match code {
            "301" => "301 Moved Permanently",
            "302" => "302 Found",
            "303" => "303 See Other",
            "307" => "307 Temporary Redirect",
            _ => "308 Permanent Redirect",
        };
        return send(
            out,
            status,
            &format!("Location: {}\r\n", param("to")),
            b"moved",
        );
    }
    if path == "/setcookie" {
        let headers = format!("Set-Cookie: {}; Path=/\r\n", param("c"));
        return send(out, "200 OK", &headers, b"cookie set");
    }
    if path == "/setcookie-redirect" {
        let headers = format!("Set-Cookie: {}; Path=/\r\nLocation: /echo\r\n", param("c"));
        return send(out, "302 Found", &headers, b"moved");
    }
    if let Some(mib) = path
        .strip_prefix("/bomb/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        // MIB MiB of zeros in about a thousandth of that: what a decompression bomb is.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..mib {
            e.write_all(&zeros)?;
        }
        let body = e.finish()?;
        return send(out, "200 OK", "Content-Encoding: gzip\r\n", &body);
    }
    if let Some(rest) = path.strip_prefix("/coded/") {
        let (coding, how) = rest.split_once('/').unwrap_or((rest, "ok"));
        let accepted = req
            .header("accept-encoding")
            .is_some_and(|v| v.split(',').any(|c| c.trim() == coding));
        let text = sample_text();
        if !accepted {
            return send(out, "200 OK", "", &text);
        }
        let mut body = compress(coding, &text);
        let headers = format!("Content-Encoding: {coding}\r\nVary: Accept-Encoding\r\n");
        match how {
            "corrupt" => {
                let mid = body.len() / 2;
                for b in &mut body[mid..mid + 16] {
                    *b ^= 0x5a;
                }
            }
            "truncated" => body.truncate(body.len() / 2),
            "chunked" => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\n{headers}Transfer-Encoding: chunked\r\n\r\n"
                )?;
                for chunk in body.chunks(1000) {
                    write!(out, "{:x}\r\n", chunk.len())?;
                    out.write_all(chunk)?;
                    out.write_all(b"\r\n")?;
                }
                out.write_all(b"0\r\n\r\n")?;
                return out.flush();
            }
            _ => {}
        }
        return send(out, "200 OK", &headers, &body);
    }
    send(out, "404 Not Found", "", b"unknown route")
}

fn send(out: &mut impl Write, status: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}
