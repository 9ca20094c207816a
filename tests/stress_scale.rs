//! `netloop stress` at scale, with small numbers: adaptive pacing against a server that
//! accepts slowly from a tiny backlog, and (below) the checks that make a large run
//! work without tuning. The large runs themselves are `bench/million.sh`, never tests:
//! every run here is a few hundred connections, and every wait is bounded by
//! `common::TIMEOUT`.

mod common;
mod stress_common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{wait_until, TIMEOUT};
use stress_common::*;

/// A listener with a backlog of 4 whose one thread accepts a connection every 5 ms
/// (at most 200 a second) and keeps it: a server that a burst of connects overwhelms.
struct SlowAcceptor {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowAcceptor {
    fn start() -> SlowAcceptor {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind");
        socket.listen(4).expect("listen");
        socket.set_nonblocking(true).expect("nonblocking");
        let listener: std::net::TcpListener = socket.into();
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((conn, _)) = listener.accept() {
                        held.push(conn);
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        SlowAcceptor {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything the kernel queued so far has been accepted: a marker connection is
    /// made and waited for (the accept queue is first in, first out). Returns how many
    /// connections were accepted before the marker.
    #[track_caller]
    fn drain(&self) -> usize {
        let before = self.accepted.load(Ordering::SeqCst);
        let _marker = TcpStream::connect(self.addr).expect("marker connect");
        // The marker may be one of many still queued: wait until the count passes it.
        let mut last = before;
        let settled = wait_until(TIMEOUT, || {
            let now = self.accepted.load(Ordering::SeqCst);
            let done = now > before && now == last;
            last = now;
            thread::sleep(Duration::from_millis(50));
            done.then_some(now - 1)
        });
        settled.expect("the marker connection was never accepted")
    }
}

impl Drop for SlowAcceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fixed window of 2,048 connects floods the tiny accept queue: SYNs are dropped
/// (stalled connects), and what the client then counts as open is not what the server
/// has — with syncookies the client's handshake completes while the server drops the
/// final ACK, without them the connects time out. The adaptive pacer (the default)
/// finds the server's pace: no connect error, and every connection the client holds is
/// one the server accepted (a few lost to the first burst at most).
#[test]
fn adaptive_pacing_opens_only_what_a_slow_server_accepts() {
    const CONNS: usize = 400;
    let n = CONNS.to_string();
    let fixed = SlowAcceptor::start();
    let addr = fixed.addr.to_string();
    let run = stress(&[
        &addr,
        "--idle",
        &n,
        "--hold",
        "0.5",
        "--connect-timeout",
        "3",
        "--pacing",
        "fixed",
        "--max-inflight",
        "2048",
    ]);
    let v = run.report();
    assert_report_shape(v);
    let accepted = fixed.drain();
    let (open, timeouts) = (run.n("conns_open"), run.errors("timeout"));
    assert!(
        timeouts > 0 || (accepted as u64) < open * 9 / 10,
        "a fixed window of 2048 should have overflowed the server: {accepted} accepted, {v}"
    );
    assert!(v["pacing"]["stalled_connects"].as_u64() > Some(0), "{v}");
    drop(fixed);

    let adaptive = SlowAcceptor::start();
    let addr = adaptive.addr.to_string();
    let run = stress(&[
        &addr,
        "--idle",
        &n,
        "--hold",
        "0.5",
        "--connect-timeout",
        "3",
    ]);
    assert_succeeded(&run);
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.errors("total"), 0, "{v}");
    assert_eq!(run.n("conns_open"), CONNS as u64, "{v}");
    let accepted = adaptive.drain();
    assert!(
        accepted >= CONNS * 95 / 100,
        "adaptive pacing: the server accepted only {accepted} of {CONNS}: {v}"
    );
    assert!(
        v["pacing"]["cuts"].as_u64() > Some(0),
        "it never slowed down: {v}"
    );
}

/// An ask the machine cannot hold is refused at once, before any connect, naming the
/// limit: a hundred million connections exceed the open files (or the memory) of any
/// machine this runs on.
#[test]
fn preflight_refuses_an_impossible_ask_quickly_and_clearly() {
    let addr = refused_port().to_string();
    let run = stress(&[&addr, "--idle", "100000000"]);
    assert!(!run.status.success(), "{run:?}");
    assert!(
        run.stderr
            .contains("netloop stress: 100000000 connections need")
            && (run.stderr.contains("fs.file-max") || run.stderr.contains("MemAvailable")),
        "{}",
        run.stderr
    );
    assert!(run.json.is_none(), "{run:?}");
    // Refused before any connect (which is what "quickly" means here: no stopwatch).
    assert!(
        !run.stderr.contains("refused"),
        "it tried to connect: {}",
        run.stderr
    );
}

/// A loopback target gets 127.0.0.x source addresses of its own when one address's ports
/// would not do (here one address is said to have 200 ports, of which 95 are planned
/// for, so 300 connections need four: 127.0.0.2-127.0.0.5), and the report says so; the connections really come from
/// those addresses. A target elsewhere is refused up front instead, saying how many
/// addresses it needs and how to pass them; so is a `--source-ips` list that is too short.
#[test]
fn source_addresses_are_chosen_for_loopback_and_asked_for_otherwise() {
    let peers = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let server = {
        let peers = peers.clone();
        ThreadServer::start(move |s, _| {
            peers
                .lock()
                .unwrap()
                .insert(s.peer_addr().expect("peer").ip());
            read_all(s);
        })
    };
    let addr = server.addr();
    let run = stress(&[
        &addr,
        "--idle",
        "300",
        "--hold",
        "0.2",
        "--ports-per-source",
        "200",
    ]);
    assert_succeeded(&run);
    let v = run.report();
    assert_eq!(v["source_ips"], "127.0.0.2-127.0.0.5", "{v}");
    assert_eq!(v["source_ips_automatic"], true, "{v}");
    assert!(
        run.stderr
            .contains("source addresses: 127.0.0.2-127.0.0.5 (chosen automatically"),
        "{}",
        run.stderr
    );
    let seen = wait_until(TIMEOUT, || {
        let p = peers.lock().unwrap().clone();
        (p.len() >= 4).then_some(p)
    })
    .expect("connections from four addresses");
    let want: std::collections::BTreeSet<std::net::IpAddr> = (2..=5)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    assert_eq!(seen, want);

    // Not loopback: refused before connecting, with what to do. (10.255.255.1 is never
    // reached: the refusal comes first.)
    let far = stress(&[
        "10.255.255.1:80",
        "--idle",
        "300",
        "--ports-per-source",
        "200",
    ]);
    assert_failed_with(
        &far,
        "300 connections to 10.255.255.1:80 need at least 4 source addresses",
    );
    assert!(far.stderr.contains("--source-ips"), "{}", far.stderr);
    assert!(far.json.is_none(), "no report: nothing was run: {far:?}");
    let short = stress(&[
        &addr,
        "--idle",
        "300",
        "--ports-per-source",
        "200",
        "--source-ips",
        "127.0.0.2,127.0.0.3",
    ]);
    assert_failed_with(
        &short,
        "--source-ips 127.0.0.2,127.0.0.3 gives 2 address(es)",
    );
}
