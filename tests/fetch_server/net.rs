//! Fixtures for `tests/fetch_net.rs`: servers that fail on purpose until told otherwise,
//! a forward proxy that records what it was asked, and an address whose connects hang.
//!
//! Like the rest of `fetch_server/`, these use blocking `std::net` and a thread per
//! connection, not netloop: the fetcher is tested against code it shares nothing with.
//!
//! - `FlakyServer`: routes that fail the first K times they are asked — `503` with a
//!   `Retry-After`, a reset before any response byte, a body cut short by a reset — and
//!   then answer 200; it counts the requests per path.
//! - `Proxy`: an HTTP forward proxy. `CONNECT host:port` is recorded and tunnelled to
//!   the real target (bytes copied both ways); any other request is recorded and
//!   answered by the proxy itself, its body being the request line, so a test sees the
//!   request-target exactly as the fetcher wrote it (absolute-form).
//! - `make_tls`: a CA and a server certificate signed by it, made with `rcgen` (also
//!   used by `tests/fetch.rs`).
//! - `HungListener`: a listener that never accepts, with a backlog of 0 that the fixture
//!   fills itself; further SYNs to it are dropped by the kernel, so a connect to it hangs
//!   as one to an unreachable host does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Read a request head (request line and headers) from `reader`; None at EOF or error.
fn read_head<R: BufRead>(reader: &mut R) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) if line == "\r\n" || line == "\n" => return Some(lines),
            Ok(_) => lines.push(line.trim_end().to_string()),
        }
    }
}

/// Accept on `listener` until `stop`, one thread per connection running `serve`.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(stream));
        }
    });
}

/// Close `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

/// A server whose routes fail the first K times (see the module docs).
pub struct FlakyServer {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
}

impl FlakyServer {
    /// Listen on 127.0.0.1:0 (or `port` on 127.0.0.1 when given).
    pub fn start() -> FlakyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind flaky server");
        let addr = listener.local_addr().expect("local addr");
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let h = Arc::clone(&hits);
        accept_loop(listener, Arc::clone(&stop), move |s| flaky(s, &h));
        FlakyServer { addr, hits, stop }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests for `path` (with its query) so far.
    pub fn hits(&self, path: &str) -> usize {
        let hits = self.hits.lock().expect("hits lock");
        hits.get(path).copied().unwrap_or(0)
    }
}

impl Drop for FlakyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// `/503/K?after=V`: 503 with `Retry-After: V` the first K times, then 200 `ok`.
/// `/reset/K`: reset before any response byte the first K times. `/cut/K`: 1000 bytes
/// promised, 500 sent, then a reset, the first K times. `/ok`: 200 at once.
fn flaky(stream: TcpStream, hits: &Mutex<HashMap<String, usize>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(write) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut out = write;
    while let Some(head) = read_head(&mut reader) {
        let target = head
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string();
        let n = {
            let Ok(mut hits) = hits.lock() else { return };
            let n = hits.entry(target.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut parts = path.trim_start_matches('/').split('/');
        let (route, k) = (parts.next().unwrap_or(""), parts.next().unwrap_or("0"));
        let failing = n <= k.parse().unwrap_or(0);
        let ok =
            |out: &mut TcpStream| out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let sent = match route {
            "503" if failing => {
                let after = query
                    .strip_prefix("after=")
                    .unwrap_or("0")
                    .replace("%20", " ");
                let body = "busy, come back later";
                write!(
                    out,
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {after}\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            "reset" if failing => return reset(out),
            "cut" if failing => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
                let _ = out.write_all(&[b'x'; 500]);
                let _ = out.flush();
                thread::sleep(Duration::from_millis(20));
                return reset(out);
            }
            "cut" => write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .and_then(|()| out.write_all(&[b'y'; 1000])),
            _ => ok(&mut out),
        };
        if sent.and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// What a `Proxy` was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// The request line, as received.
    pub line: String,
    /// Its headers, as received.
    pub headers: Vec<String>,
}

/// An HTTP forward proxy that records every request (see the module docs).
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on 127.0.0.1:0. `targets` maps a CONNECT authority (`localhost:443`) to
    /// where the tunnel really goes (the test server's port); others go where they say.
    pub fn start(targets: HashMap<String, SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("local addr");
        let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let a = Arc::clone(&asked);
        accept_loop(listener, Arc::clone(&stop), move |s| proxy(s, &a, &targets));
        Proxy { addr, asked, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("asked lock").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn proxy(stream: TcpStream, asked: &Mutex<Vec<Asked>>, targets: &HashMap<String, SocketAddr>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(mut head) = read_head(&mut reader) {
        if head.is_empty() {
            return;
        }
        let line = head.remove(0);
        if let Ok(mut a) = asked.lock() {
            a.push(Asked {
                line: line.clone(),
                headers: head,
            });
        }
        let mut words = line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if method == "CONNECT" {
            let to = targets.get(target).copied().or_else(|| target.parse().ok());
            let Some(upstream) = to.and_then(|a| TcpStream::connect(a).ok()) else {
                let _ = out.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                return;
            };
            if out
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
            {
                return;
            }
            // The client sends nothing more before our answer, so the reader's buffer
            // is empty: copy raw sockets both ways until either side closes.
            return tunnel(reader.into_inner(), out, upstream);
        }
        let body = line.as_bytes();
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        if out
            .write_all(answer.as_bytes())
            .and_then(|()| out.write_all(body))
            .is_err()
        {
            return;
        }
    }
}

/// Copy bytes between the client and the upstream until one side is done.
fn tunnel(client: TcpStream, client_out: TcpStream, upstream: TcpStream) {
    let _ = client.set_read_timeout(None);
    let Ok(upstream_out) = upstream.try_clone() else {
        return;
    };
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let a = pump(client, upstream_out);
    let b = pump(upstream, client_out);
    let _ = a.join();
    let _ = b.join();
}

/// A listener whose connects hang (see the module docs); dropping it closes it.
pub struct HungListener {
    _listener: socket2::Socket,
    _filled: Vec<TcpStream>,
}

impl HungListener {
    /// Listen on `ip:port` with a backlog of 0, never accept, and fill the accept queue
    /// until a connect no longer completes. None if that address cannot be bound (or
    /// the queue never filled: a kernel that behaves otherwise).
    pub fn bind(ip: IpAddr, port: u16) -> Option<HungListener> {
        use socket2::{Domain, Socket, Type};
        let addr = SocketAddr::new(ip, port);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).ok()?;
        if ip.is_ipv6() {
            socket.set_only_v6(true).ok()?;
        }
        socket.bind(&addr.into()).ok()?;
        socket.listen(0).ok()?;
        let mut filled = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => filled.push(s),
                Err(_) => {
                    return Some(HungListener {
                        _listener: socket,
                        _filled: filled,
                    })
                }
            }
        }
        None
    }
}

/// A CA named `ca_name`, a certificate for `localhost` and 127.0.0.1 signed by it, and
/// the CA as PEM.
pub fn make_tls(ca_name: &str) -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .expect("server config");
    (Arc::new(config), ca_cert.pem())
}

/// What a `Socks5Proxy` was asked: the CONNECT target (`name:port`, the name as sent:
/// unresolved, since `socks5h`), and the credentials if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocksAsked {
    pub target: String,
    pub credentials: Option<(String, String)>,
}

/// A SOCKS5 proxy (RFC 1928, RFC 1929) that records what it was asked and tunnels to
/// `targets[name:port]` (else to the address given).
pub struct Socks5Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<SocksAsked>>>,
    stop: Arc<AtomicBool>,
}

impl Socks5Proxy {
    /// A proxy on 127.0.0.1:0; with `auth`, it insists on that user name and password.
    pub fn start(targets: HashMap<String, SocketAddr>, auth: Option<(&str, &str)>) -> Socks5Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind socks proxy");
        let addr = listener.local_addr().expect("local addr");
        let asked: Arc<Mutex<Vec<SocksAsked>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let a = Arc::clone(&asked);
        let auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
        accept_loop(listener, Arc::clone(&stop), move |s| {
            let _ = socks(s, &a, &targets, auth.as_ref());
        });
        Socks5Proxy { addr, asked, stop }
    }

    /// Everything asked so far.
    pub fn asked(&self) -> Vec<SocksAsked> {
        self.asked.lock().expect("asked lock").clone()
    }
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_exact(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn socks(
    mut s: TcpStream,
    asked: &Mutex<Vec<SocksAsked>>,
    targets: &HashMap<String, SocketAddr>,
    auth: Option<&(String, String)>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = read_exact(&mut s, 2)?;
    let methods = read_exact(&mut s, usize::from(head[1]))?;
    let mut credentials = None;
    if let Some((user, pw)) = auth {
        if !methods.contains(&2) {
            return s.write_all(&[5, 0xFF]);
        }
        s.write_all(&[5, 2])?;
        let ulen = read_exact(&mut s, 2)?[1];
        let u = String::from_utf8_lossy(&read_exact(&mut s, usize::from(ulen))?).into_owned();
        let plen = read_exact(&mut s, 1)?[0];
        let p = String::from_utf8_lossy(&read_exact(&mut s, usize::from(plen))?).into_owned();
        let ok = (&u, &p) == (user, pw);
        credentials = Some((u, p));
        s.write_all(&[1, if ok { 0 } else { 1 }])?;
        if !ok {
            return Ok(());
        }
    } else {
        s.write_all(&[5, 0])?;
    }
    let req = read_exact(&mut s, 4)?;
    let host = match req[3] {
        1 => IpAddr::from(<[u8; 4]>::try_from(read_exact(&mut s, 4)?).unwrap_or_default())
            .to_string(),
        4 => format!(
            "[{}]",
            IpAddr::from(<[u8; 16]>::try_from(read_exact(&mut s, 16)?).unwrap_or_default())
        ),
        _ => {
            let len = read_exact(&mut s, 1)?[0];
            String::from_utf8_lossy(&read_exact(&mut s, usize::from(len))?).into_owned()
        }
    };
    let port = read_exact(&mut s, 2)?;
    let target = format!("{host}:{}", u16::from_be_bytes([port[0], port[1]]));
    if let Ok(mut a) = asked.lock() {
        a.push(SocksAsked {
            target: target.clone(),
            credentials,
        });
    }
    let to = targets
        .get(&target)
        .copied()
        .or_else(|| target.parse().ok());
    let Some(upstream) = to.and_then(|a| TcpStream::connect(a).ok()) else {
        return s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]); // host unreachable
    };
    s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    let out = s.try_clone()?;
    tunnel(s, out, upstream);
    Ok(())
}
