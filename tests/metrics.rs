//! `netloop serve --metrics ADDR`: one loop serving echo and Prometheus metrics over
//! HTTP. The exposition passes `promtool check metrics`, and its counters match the
//! traffic the test sent (scrapes included: they are connections of the same loop); the
//! backpressure gauges show a client that does not read.
//!
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs it). Without
//! it the promtool check prints a note and is skipped, except under CI=true, where the
//! test fails: a missing tool must not pass silently.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use common::TIMEOUT;

/// `netloop serve echo` with a TCP, a UDP and a metrics address; killed when dropped.
struct Served {
    child: Child,
    tcp: SocketAddr,
    udp: SocketAddr,
    metrics: SocketAddr,
}

impl Served {
    #[track_caller]
    fn start(extra: &[&str]) -> Served {
        let mut child = Command::new(common::netloop_bin())
            .args([
                "serve",
                "echo",
                "--listen",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
            ])
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn netloop serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut tcp, mut udp, mut metrics) = (None, None, None);
        while metrics.is_none() {
            let Ok(line) = rx.recv_timeout(TIMEOUT) else {
                let _ = child.kill();
                panic!("netloop serve --metrics printed no `metrics on` line");
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["listening", "on", "tcp", addr, ..] => tcp = addr.parse().ok(),
                ["listening", "on", "udp", addr, ..] => udp = addr.parse().ok(),
                ["metrics", "on", url, ..] => {
                    let hostport = url
                        .strip_prefix("http://")
                        .and_then(|u| u.strip_suffix("/metrics"))
                        .expect("metrics URL");
                    metrics = hostport.parse().ok();
                }
                _ => {}
            }
        }
        Served {
            child,
            tcp: tcp.expect("tcp line"),
            udp: udp.expect("udp line"),
            metrics: metrics.expect("metrics line"),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape: the metrics by name (with labels), and the bytes each way.
struct Scrape {
    values: HashMap<String, f64>,
    body: String,
    request: usize,
    response: usize,
}

impl Scrape {
    #[track_caller]
    fn get(&self, name: &str) -> f64 {
        *self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.body))
    }
}

/// A raw HTTP exchange with the metrics address; returns (status line, head, body, sent).
fn http(addr: SocketAddr, request: &str) -> (String, String, String, usize) {
    let mut conn = common::connect(addr);
    conn.write_all(request.as_bytes()).expect("send request");
    let response = common::read_to_eof(&mut conn);
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string(), text.len())
}

/// Scrape /metrics; `log` accumulates every scrape's bytes for the accounting.
#[track_caller]
fn scrape(addr: SocketAddr, log: &mut Vec<(usize, usize)>) -> Scrape {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
    let (status, head, body, response) = http(addr, &request);
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    log.push((request.len(), response));
    let values = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect();
    Scrape {
        values,
        body,
        request: request.len(),
        response,
    }
}

/// promtool, if installed (fails under CI=true when it is not).
fn promtool() -> Option<PathBuf> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("promtool"));
    }
    let note = "promtool is not installed (Debian: apt-get install prometheus)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{note}: required under CI=true"
    );
    eprintln!("note: {note}; the promtool check is skipped");
    None
}

#[test]
fn metrics_pass_promtool_and_count_the_traffic_sent() {
    let served = Served::start(&[]);
    let mut scrapes = Vec::new();
    let first = scrape(served.metrics, &mut scrapes);
    if let Some(promtool) = promtool() {
        let checked = common::run_bounded(&promtool, &["check", "metrics"], first.body.as_bytes());
        assert!(
            checked.status.success() && checked.stderr.is_empty(),
            "promtool check metrics: {}{}\n{}",
            String::from_utf8_lossy(&checked.stdout),
            checked.stderr,
            first.body
        );
    }

    // Three echo connections of 100,000 bytes each, and five datagrams.
    const CONNS: usize = 3;
    const BYTES: usize = 100_000;
    let data = common::pseudo_random_bytes(14, BYTES);
    for _ in 0..CONNS {
        let mut conn = common::connect(served.tcp);
        let reader = {
            let mut conn = conn.try_clone().expect("clone");
            std::thread::spawn(move || common::read_n(&mut conn, BYTES))
        };
        conn.write_all(&data).expect("send");
        assert_eq!(reader.join().expect("reader"), data);
        conn.shutdown(Shutdown::Write).expect("half-close");
        assert!(common::read_to_eof(&mut conn).is_empty());
    }
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    udp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    for i in 0..5 {
        let msg = format!("datagram {i}");
        udp.send_to(msg.as_bytes(), served.udp)
            .expect("send datagram");
        let mut buf = [0u8; 64];
        let (n, _) = udp.recv_from(&mut buf).expect("echoed datagram");
        assert_eq!(&buf[..n], msg.as_bytes());
    }

    // The server has seen the echo connections close once only the scrape is open.
    let last = common::wait_until(TIMEOUT, || {
        let s = scrape(served.metrics, &mut scrapes);
        (s.get("netloop_connections_open") == 1.0).then_some(s)
    })
    .expect("the echo connections never closed");
    let n = scrapes.len() as f64;
    let requests: usize = scrapes.iter().map(|s| s.0).sum();
    // Every earlier response was written in full (we read it to its end); this one not yet.
    let earlier_responses: usize = scrapes[..scrapes.len() - 1].iter().map(|s| s.1).sum();
    let echoed = (CONNS * BYTES) as f64;
    assert_eq!(last.get("netloop_accepted_total"), CONNS as f64 + n);
    assert_eq!(
        last.get("netloop_closed_total{reason=\"peer\"}"),
        CONNS as f64 + n - 1.0
    );
    assert_eq!(last.get("netloop_closed_total{reason=\"error\"}"), 0.0);
    assert_eq!(
        last.get("netloop_received_bytes_total"),
        echoed + requests as f64
    );
    assert_eq!(
        last.get("netloop_sent_bytes_total"),
        echoed + earlier_responses as f64
    );
    assert_eq!(last.get("netloop_datagrams_received_total"), 5.0);
    assert_eq!(last.get("netloop_datagrams_sent_total"), 5.0);
    assert_eq!(last.get("netloop_paused_connections"), 0.0);
    assert_eq!(last.get("netloop_queued_bytes"), 0.0);
    // One histogram observation per turn.
    let turns = last.get("netloop_loop_turns_total");
    assert!(turns >= n, "{turns}");
    assert_eq!(last.get("netloop_events_per_turn_count"), turns);
    assert_eq!(
        last.get("netloop_events_per_turn_bucket{le=\"+Inf\"}"),
        turns
    );
    assert_eq!(last.get("netloop_turn_asleep_seconds_count"), turns);
    assert!(last.request > 0 && last.response > 0);
}

#[test]
fn a_client_that_does_not_read_shows_in_the_gauges() {
    let served = Served::start(&["--max-queue", "65536"]);
    let mut scrapes = Vec::new();
    let conn = common::connect(served.tcp);
    let stop = Arc::new(AtomicBool::new(false));
    // Sends without ever reading: the echo fills our receive buffer, then the server's
    // queue passes the watermark and it stops reading from us.
    let writer = {
        let mut conn = conn.try_clone().expect("clone");
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) && sent < 256 << 20 {
                match conn.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break, // the test shut the socket down
                }
            }
        })
    };
    let paused = common::wait_until(TIMEOUT, || {
        let s = scrape(served.metrics, &mut scrapes);
        (s.get("netloop_paused_connections") == 1.0).then_some(s)
    })
    .expect("the server never paused the client that does not read");
    assert!(
        paused.get("netloop_queued_bytes") > 65536.0,
        "{}",
        paused.body
    );
    assert_eq!(paused.get("netloop_connections_open"), 2.0);

    // Reading drains the queue: reading resumes and the gauges go back to zero.
    stop.store(true, Ordering::Relaxed);
    let _ = conn.shutdown(Shutdown::Write);
    let drained = {
        let mut conn = conn.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        })
    };
    writer.join().expect("writer");
    drained.join().expect("reader");
    let idle = common::wait_until(TIMEOUT, || {
        let s = scrape(served.metrics, &mut scrapes);
        (s.get("netloop_connections_open") == 1.0).then_some(s)
    })
    .expect("the connection never closed");
    assert_eq!(idle.get("netloop_paused_connections"), 0.0);
    assert_eq!(idle.get("netloop_queued_bytes"), 0.0);
    drop(conn);
}

#[test]
fn other_requests_get_http_answers() {
    let served = Served::start(&[]);
    let (status, _, body, _) = http(served.metrics, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("/metrics"));
    let (status, head, body, _) = http(served.metrics, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        head.contains("Content-Length: ") && body.is_empty(),
        "{head}"
    );
    let (status, _, _, _) = http(
        served.metrics,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, _, _, _) = http(served.metrics, "NOT HTTP\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    // The echo service on the same loop is unaffected.
    let mut conn: TcpStream = common::connect(served.tcp);
    conn.write_all(b"still echo\n").expect("send");
    assert_eq!(common::read_n(&mut conn, 11), b"still echo\n");
}

#[test]
fn metrics_with_workers_are_refused_with_a_reason() {
    let out = common::run_netloop(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--metrics",
            "127.0.0.1:0",
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--metrics") && out.stderr.contains("--workers"),
        "{}",
        out.stderr
    );
}
