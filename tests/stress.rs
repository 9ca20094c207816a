//! `netloop stress` against real loopback sockets: netloop's own echo server, and small
//! misbehaving servers written here (closing, refusing, stalling, never accepting), an
//! HTTP/1.1 keep-alive server, and servers that count what idle connections send and
//! where they come from. Every run is bounded (`--hold` of a second or two, a few hundred
//! connections at most, except the 2,000-connection run against netloop itself) and
//! every wait is bounded by `common::TIMEOUT`. The helpers that run the binary and the
//! small servers are in `stress_common/`, shared with the other `stress_*` test files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{child_pids, limit_open_files, process_alive, wait_until, Server, TIMEOUT};

mod stress_common;

use stress_common::*;

// ---------------------------------------------------------------------------------------
// 1. Against netloop's own server
// ---------------------------------------------------------------------------------------

#[test]
fn holds_2000_idle_and_measures_10_active_against_netloop_echo() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let pid = server.pid().to_string();
    let run = stress(&[
        &addr,
        "--idle",
        "2000",
        "--active",
        "10",
        "--hold",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_succeeded(&run);
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.n("conns_requested"), 2010, "{v}");
    assert_eq!(run.n("conns_open"), 2010, "{v}");
    assert_eq!(run.n("still_open_at_end"), 2010, "{v}");
    assert_eq!(run.n("closed_by_peer"), 0, "{v}");
    assert_eq!(run.errors("total"), 0, "{v}");
    assert!(v["first_error"].is_null(), "{v}");
    assert_eq!(run.n("active"), 10, "{v}");
    assert_eq!(run.n("mismatches"), 0, "{v}");
    assert!(run.n("round_trips") > 0, "{v}");
    assert!(run.n("p50_us") > 0, "{v}");
    assert!(run.n("max_us") < 20_000_000, "{v}");
    let hold = run.f("hold_secs");
    // At least the hold asked for; a loaded machine may run the loop late, so no upper
    // bound beyond the run having ended at all (`stress` waits at most `TIMEOUT`).
    assert!(hold >= 1.9, "hold_secs {hold} in {v}");
    let rps = run.f("rps");
    let expected = run.n("round_trips") as f64 / hold;
    assert!(
        (rps - expected).abs() <= expected * 0.01 + 1.0,
        "rps {rps} vs round_trips/hold_secs {expected}"
    );
    assert!(run.n("client_rss_kb") > 0, "{v}");
    assert!(v["client_rss_bytes_per_conn"].is_f64(), "{v}");
    assert!(
        v["server_rss_bytes_per_conn"].is_f64(),
        "--server-pid must give server_rss_bytes_per_conn: {v}"
    );
    // The human report went to stderr.
    assert!(
        run.stderr.contains("2010 of 2010 open"),
        "human report on stderr:\n{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------
// 2. Against misbehaving servers
// ---------------------------------------------------------------------------------------

/// (a) The server echoes, but once everything is connected it closes every second idle
/// connection.
#[test]
fn server_closing_half_the_idle_connections_is_counted() {
    const IDLE: usize = 100;
    const ACTIVE: usize = 2;
    type Registry = Mutex<Vec<(TcpStream, Arc<AtomicU64>)>>;
    let registry: Arc<Registry> = Arc::new(Mutex::new(Vec::new()));
    let server = {
        let registry = registry.clone();
        ThreadServer::start(move |s, _| {
            let count = Arc::new(AtomicU64::new(0));
            let clone = s.try_clone().expect("clone");
            registry.lock().unwrap().push((clone, count.clone()));
            echo_counting(s, &count);
        })
    };
    let closer = {
        let registry = registry.clone();
        thread::spawn(move || {
            wait_until(TIMEOUT, || {
                (registry.lock().unwrap().len() >= IDLE + ACTIVE).then_some(())
            })
            .expect("every connection accepted");
            // Wait until every active connection has sent (the hold has started), so
            // that exactly the idle ones are those that sent nothing.
            wait_until(TIMEOUT, || {
                let reg = registry.lock().unwrap();
                let sent = reg
                    .iter()
                    .filter(|(_, n)| n.load(Ordering::SeqCst) > 0)
                    .count();
                (sent >= ACTIVE).then_some(())
            })
            .expect("active connections sent");
            let reg = registry.lock().unwrap();
            let idle: Vec<&TcpStream> = reg
                .iter()
                .filter(|(_, n)| n.load(Ordering::SeqCst) == 0)
                .map(|(s, _)| s)
                .collect();
            assert_eq!(idle.len(), IDLE, "idle connections seen by the server");
            for s in idle.iter().step_by(2) {
                s.shutdown(Shutdown::Both).expect("shutdown");
            }
        })
    };
    let run = stress(&[
        &server.addr(),
        "--idle",
        &IDLE.to_string(),
        "--active",
        &ACTIVE.to_string(),
        "--hold",
        "1.5",
    ]);
    closer.join().expect("closer");
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.n("conns_open"), (IDLE + ACTIVE) as u64, "{v}");
    assert_eq!(run.n("closed_by_peer"), (IDLE / 2) as u64, "{v}");
    assert_eq!(
        run.n("still_open_at_end"),
        (IDLE / 2 + ACTIVE) as u64,
        "{v}"
    );
    assert!(run.n("round_trips") > 0, "{v}");
    assert_eq!(run.n("mismatches"), 0, "{v}");
    assert_failed_with(&run, "could not hold");
    assert!(
        run.stderr
            .contains(&format!("{} still open", IDLE / 2 + ACTIVE)),
        "{}",
        run.stderr
    );
}

/// (b) Nothing listens: every connect is refused, and the tool says so at once instead
/// of waiting out the hold.
#[test]
fn refused_port_reports_unreachable() {
    let addr = refused_port().to_string();
    let run = stress(&[&addr, "--idle", "20", "--active", "2", "--hold", "8"]);
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.errors("refused"), 22, "{v}");
    assert_eq!(run.errors("total"), 22, "{v}");
    assert_eq!(run.n("conns_open"), 0, "{v}");
    assert_eq!(run.n("round_trips"), 0, "{v}");
    assert!(
        v["first_error"]
            .as_str()
            .is_some_and(|e| e.to_ascii_lowercase().contains("refused")),
        "{v}"
    );
    assert_failed_with(&run, "target unreachable");
    // It did not wait out --hold 8: no hold was measured at all (said by the report's
    // counters, not by a stopwatch; the run is bounded by `TIMEOUT` anyway).
    assert_eq!(
        run.f("hold_secs"),
        0.0,
        "a refused target must not hold: {v}"
    );
}

/// (c) The server reads but never replies: the active connections never complete a
/// round trip, and the tool still ends after --hold with a report.
#[test]
fn stalled_echo_server_still_ends_after_hold() {
    let received = Arc::new(AtomicU64::new(0));
    let server = {
        let received = received.clone();
        ThreadServer::start(move |s, _| {
            let n = read_all(s).len();
            received.fetch_add(n as u64, Ordering::SeqCst);
        })
    };
    let run = stress(&[
        &server.addr(),
        "--idle",
        "20",
        "--active",
        "3",
        "--hold",
        "1",
    ]);
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.n("conns_open"), 23, "{v}");
    assert_eq!(run.n("still_open_at_end"), 23, "{v}");
    assert_eq!(run.n("round_trips"), 0, "{v}");
    assert_eq!(run.n("mismatches"), 0, "{v}");
    // Unanswered requests are recorded with the time they waited: a stalled server
    // shows up as latency about as long as the hold, not as silence.
    assert_eq!(run.n("unanswered"), 3, "{v}");
    assert!(run.n("max_us") >= 900_000, "{v}");
    let hold = run.f("hold_secs");
    assert!(hold >= 0.9, "hold_secs {hold}: {v}");
    // A lower bound only: the hold cannot end early; how late a loaded machine ends it
    // is not this test's business (the run is bounded by `TIMEOUT`).
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "{:?}",
        run.elapsed
    );
    // Everything asked for was held, so the run itself succeeded.
    assert_succeeded(&run);
    // The three active connections did send their first request (64 bytes each).
    let sent = wait_until(TIMEOUT, || {
        let n = received.load(Ordering::SeqCst);
        (n >= 3 * 64).then_some(n)
    });
    assert_eq!(sent, Some(3 * 64), "bytes the stalled server received");
}

/// (d) A listener whose accept queue is full and never drained: Linux drops further
/// SYNs, so those connects hang until --connect-timeout.
#[test]
fn full_backlog_connects_time_out() {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&bind.into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("inet");
    // Fill the accept queue (a backlog of 0 still admits a connection or two).
    let mut fillers = Vec::new();
    loop {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        match s.connect_timeout(&addr.into(), Duration::from_millis(300)) {
            Ok(()) => fillers.push(s),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the backlog never filled up");
    }
    let started = Instant::now();
    let run = stress(&[
        &addr.to_string(),
        "--idle",
        "20",
        "--connect-timeout",
        "0.5",
        "--hold",
        "0.2",
    ]);
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.errors("timeout"), 20, "{v}");
    assert_eq!(run.errors("total"), 20, "{v}");
    assert_eq!(run.n("conns_open"), 0, "{v}");
    assert!(
        v["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{v}"
    );
    assert_failed_with(&run, "target unreachable");
    // The connects waited out their timeout (a lower bound only: no stopwatch limit).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "connect timeout 0.5 s, run took {took:?}"
    );
    drop(fillers);
}

// ---------------------------------------------------------------------------------------
// 3. Worker processes
// ---------------------------------------------------------------------------------------

/// Open-file limit for the stress process in the worker tests: 300 descriptors cannot
/// hold 400 connections in one process.
const LOW_NOFILE: u64 = 300;

#[test]
fn workers_hold_more_than_one_process_may_open() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let pid = server.pid().to_string();

    // Explicit --workers 2.
    let run = stress_with(
        &[
            &addr,
            "--idle",
            "396",
            "--active",
            "4",
            "--hold",
            "1",
            "--workers",
            "2",
            "--server-pid",
            &pid,
        ],
        |cmd| limit_open_files(cmd, LOW_NOFILE),
    );
    assert_succeeded(&run);
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(run.n("conns_requested"), 400, "{v}");
    assert_eq!(run.n("conns_open"), 400, "{v}");
    assert_eq!(run.n("still_open_at_end"), 400, "{v}");
    assert_eq!(run.errors("total"), 0, "{v}");
    assert_eq!(run.n("active"), 4, "{v}");
    assert!(run.n("round_trips") > 0, "{v}");
    assert!(run.n("p50_us") > 0, "merged latency histogram: {v}");
    assert_eq!(run.n("mismatches"), 0, "{v}");
    assert!(v["server_rss_bytes_per_conn"].is_f64(), "{v}");

    // Without --workers at that limit the tool picks enough workers by itself
    // (src/stress/mod.rs: total.div_ceil(limit - 64)).
    let run = stress_with(&[&addr, "--idle", "400", "--hold", "0.5"], |cmd| {
        limit_open_files(cmd, LOW_NOFILE)
    });
    assert_succeeded(&run);
    assert_eq!(run.n("conns_open"), 400, "{:?}", run.json);
    assert_eq!(run.n("still_open_at_end"), 400, "{:?}", run.json);

    // Too few workers asked for: a clear message naming --workers, before connecting.
    let run = stress_with(
        &[&addr, "--idle", "400", "--hold", "0.5", "--workers", "1"],
        |cmd| limit_open_files(cmd, LOW_NOFILE),
    );
    assert_failed_with(&run, "--workers 2");
    assert!(run.stderr.contains("open-file limit"), "{}", run.stderr);
    assert!(run.json.is_none(), "no report for a refused plan");
}

/// `--rate` is the total connect rate, however the connections are spread over workers.
#[test]
fn connect_rate_is_total_across_workers() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    // 400 connections at 400/s take about a second: in one process, over two explicit
    // workers, and over the two workers the open-file limit calls for.
    for (workers, nofile) in [
        (None, None),
        (Some("2"), Some(LOW_NOFILE)),
        (None, Some(LOW_NOFILE)),
    ] {
        let mut args = vec![&addr[..], "--idle", "400", "--rate", "400", "--hold", "0.2"];
        if let Some(w) = workers {
            args.extend(["--workers", w]);
        }
        let run = stress_with(&args, |cmd| {
            if let Some(n) = nofile {
                limit_open_files(cmd, n)
            }
        });
        assert_succeeded(&run);
        assert_eq!(run.n("conns_open"), 400, "{:?}", run.json);
        // A lower bound only: a rate per worker would take half the time; how much
        // longer a loaded machine takes is no failure.
        let secs = run.f("connect_secs");
        assert!(
            secs >= 0.8,
            "--rate 400 for 400 connections (--workers {workers:?}, open-file limit \
             {nofile:?}): connect_secs {secs}"
        );
    }
}

/// Option values are handed on to the workers intact, even ones that look like options.
#[test]
fn worker_args_keep_values_that_start_with_a_dash() {
    const IDLE: usize = 6;
    let (server, rx) = recording_server();
    let run = stress(&[
        &server.addr(),
        "--idle",
        &IDLE.to_string(),
        "--keepalive",
        "0.2",
        "--keepalive-data=-k",
        "--hold",
        "0.7",
        "--workers",
        "2",
    ]);
    assert_succeeded(&run);
    assert_eq!(run.n("still_open_at_end"), IDLE as u64, "{:?}", run.json);
    for (i, data) in collect(&rx, IDLE) {
        let text = String::from_utf8_lossy(&data);
        assert!(
            !data.is_empty() && text.replace("-k", "").is_empty(),
            "connection {i} sent {text:?}"
        );
    }
}

/// A worker killed mid-run fails the run with a message, in bounded time, and the other
/// worker is reaped.
#[test]
fn a_dead_worker_fails_the_run() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let (run, workers) = stress_full(
        &[
            &addr,
            "--idle",
            "100",
            "--active",
            "2",
            "--hold",
            "2",
            "--workers",
            "2",
        ],
        |_| {},
        |pid| {
            let workers = wait_until(TIMEOUT, || {
                let kids = child_pids(pid);
                (kids.len() == 2).then_some(kids)
            })
            .expect("two worker processes");
            // Let them connect and start holding, then kill one.
            thread::sleep(Duration::from_millis(700));
            // SAFETY: kill(2) on a process this test started (a child of our child).
            unsafe { libc::kill(workers[0] as i32, libc::SIGKILL) };
            workers
        },
    );
    // Bounded by `stress_full`'s `TIMEOUT`: the parent noticed and ended the run.
    assert_failed_with(&run, "exited without a report");
    for w in workers {
        assert!(!process_alive(w), "worker {w} outlived the run");
    }
}

/// Workers stop when their parent is killed (their stdin closes) instead of holding
/// connections on their own.
#[test]
fn workers_exit_when_the_parent_dies() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let (run, workers) = stress_full(
        &[&addr, "--idle", "100", "--hold", "15", "--workers", "2"],
        |_| {},
        |pid| {
            let workers = wait_until(TIMEOUT, || {
                let kids = child_pids(pid);
                (kids.len() == 2).then_some(kids)
            })
            .expect("two worker processes");
            thread::sleep(Duration::from_millis(500));
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            workers
        },
    );
    assert!(!run.status.success());
    let gone = wait_until(TIMEOUT, || {
        workers.iter().all(|&w| !process_alive(w)).then_some(())
    });
    assert!(
        gone.is_some(),
        "workers {workers:?} still running without a parent"
    );
}

// ---------------------------------------------------------------------------------------
// 4. --probe http
// ---------------------------------------------------------------------------------------

/// How the test HTTP server frames its replies.
#[derive(Clone, Copy, Debug)]
enum HttpStyle {
    ContentLength,
    Chunked,
    ServerError,
    /// Content-Length framing, written a few bytes at a time.
    Dribble,
    /// A 256 KiB body.
    Large,
    /// Neither Content-Length nor chunked: the end of the body cannot be found on a
    /// keep-alive connection.
    Unframed,
}

/// A keep-alive HTTP/1.1 server: 200 for GET /x, 404 for any other path, or 500 for
/// everything in `ServerError` style. Counts the requests it answered.
fn http_server(style: HttpStyle, answered: Arc<AtomicU64>) -> ThreadServer {
    ThreadServer::start(move |mut s, _| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let target = head.split_whitespace().nth(1).unwrap_or_default();
                let ok = head.starts_with("GET ") && target == "/x";
                let reply = match (style, ok) {
                    (HttpStyle::ServerError, _) => {
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"
                            .to_string()
                    }
                    (_, false) => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_string()
                    }
                    (HttpStyle::ContentLength, true) => {
                        let body = "hello from x\n".repeat(3);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    (HttpStyle::Chunked, true) => "HTTP/1.1 200 OK\r\n\
                         Transfer-Encoding: chunked\r\n\r\n\
                         5\r\nhello\r\n7;ext=1\r\n from x\r\n0\r\nX-Trailer: t\r\n\r\n"
                        .to_string(),
                    (HttpStyle::Dribble, true) => {
                        "HTTP/1.1 200 OK\r\nServer: slow\r\nContent-Length: 11\r\n\r\nhello there"
                            .to_string()
                    }
                    (HttpStyle::Large, true) => {
                        let body = "0123456789abcdef".repeat(16 * 1024);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    (HttpStyle::Unframed, true) => "HTTP/1.1 200 OK\r\n\r\nabc".to_string(),
                };
                let written = if let HttpStyle::Dribble = style {
                    s.set_nodelay(true).expect("nodelay");
                    reply.as_bytes().chunks(7).try_for_each(|piece| {
                        thread::sleep(Duration::from_micros(300));
                        s.write_all(piece)
                    })
                } else {
                    s.write_all(reply.as_bytes())
                };
                if written.is_err() {
                    return;
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
}

#[track_caller]
fn http_run(style: HttpStyle, path: &str) -> (Run, u64) {
    let answered = Arc::new(AtomicU64::new(0));
    let server = http_server(style, answered.clone());
    let run = stress(&[
        &server.addr(),
        "--probe",
        "http",
        "--path",
        path,
        "--idle",
        "10",
        "--active",
        "2",
        "--hold",
        "1",
    ]);
    assert_report_shape(run.report());
    (run, answered.load(Ordering::SeqCst))
}

#[test]
fn http_probe_content_length_and_chunked() {
    for style in [HttpStyle::ContentLength, HttpStyle::Chunked] {
        let (run, answered) = http_run(style, "/x");
        assert_succeeded(&run);
        let v = run.report();
        assert!(run.n("round_trips") > 0, "{style:?}: {v}");
        assert!(answered >= run.n("round_trips"), "{style:?}: {v}");
        assert_eq!(run.n("mismatches"), 0, "{style:?}: {v}");
        assert_eq!(run.n("closed_by_peer"), 0, "{style:?}: {v}");
        assert_eq!(run.n("still_open_at_end"), 12, "{style:?}: {v}");
        assert!(run.n("p50_us") > 0, "{style:?}: {v}");
    }
}

#[test]
fn http_probe_reads_dribbled_and_large_responses() {
    for style in [HttpStyle::Dribble, HttpStyle::Large] {
        let (run, answered) = http_run(style, "/x");
        assert_succeeded(&run);
        let v = run.report();
        assert!(run.n("round_trips") > 0, "{style:?}: {v}");
        assert!(answered >= run.n("round_trips"), "{style:?}: {v}");
        assert_eq!(run.n("mismatches"), 0, "{style:?}: {v}");
        assert_eq!(run.n("closed_by_peer"), 0, "{style:?}: {v}");
    }
}

/// A response without Content-Length or chunked framing cannot be timed on a keep-alive
/// connection: it must count as a mismatch, and since the test server never closes a
/// connection itself, nothing may be reported as closed by the peer.
#[test]
fn http_probe_unframed_response_is_a_mismatch_not_a_peer_close() {
    let (run, _) = http_run(HttpStyle::Unframed, "/x");
    let v = run.report();
    assert!(run.n("mismatches") > 0, "{v}");
    assert_eq!(run.n("round_trips"), 0, "{v}");
    assert_eq!(
        run.n("closed_by_peer"),
        0,
        "the server closed no connection, yet the report says it did: {v}"
    );
}

#[test]
fn http_probe_counts_error_statuses_as_mismatches() {
    // A 500 for everything.
    let (run, _) = http_run(HttpStyle::ServerError, "/x");
    let v = run.report();
    assert!(run.n("round_trips") > 0, "{v}");
    assert!(run.n("mismatches") > 0, "{v}");
    assert_eq!(run.n("mismatches"), run.n("round_trips"), "{v}");
    // --path is what is requested: another path gets the test server's 404.
    let (run, _) = http_run(HttpStyle::ContentLength, "/elsewhere");
    let v = run.report();
    assert!(run.n("round_trips") > 0, "{v}");
    assert_eq!(run.n("mismatches"), run.n("round_trips"), "{v}");
}

// ---------------------------------------------------------------------------------------
// 5. --rate-limit
// ---------------------------------------------------------------------------------------

#[test]
fn rate_limit_paces_round_trips() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    for workers in [None, Some("2")] {
        let mut args = vec![
            &addr[..],
            "--active",
            "2",
            "--rate-limit",
            "200",
            "--hold",
            "2",
        ];
        if let Some(w) = workers {
            args.extend(["--workers", w]);
        }
        let run = stress(&args);
        assert_succeeded(&run);
        let v = run.report();
        assert_report_shape(v);
        let n = run.n("round_trips");
        assert!(
            (200..=600).contains(&n),
            "--rate-limit 200 for 2 s (--workers {workers:?}): {n} round trips: {v}"
        );
        assert_eq!(run.n("mismatches"), 0, "{v}");
    }
}

// ---------------------------------------------------------------------------------------
// 6. --keepalive
// ---------------------------------------------------------------------------------------

/// A server that sends back, per connection, everything it received (once the peer
/// closes).
fn recording_server() -> (ThreadServer, mpsc::Receiver<(usize, Vec<u8>)>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = ThreadServer::start(move |s, i| {
        let data = read_all(s);
        let _ = tx.lock().unwrap().send((i, data));
    });
    (server, rx)
}

/// Collect `n` connections' data from a `recording_server`.
#[track_caller]
fn collect(rx: &mpsc::Receiver<(usize, Vec<u8>)>, n: usize) -> BTreeMap<usize, Vec<u8>> {
    let mut got = BTreeMap::new();
    while got.len() < n {
        match rx.recv_timeout(TIMEOUT) {
            Ok((i, data)) => {
                got.insert(i, data);
            }
            Err(_) => panic!("only {} of {n} connections reported", got.len()),
        }
    }
    got
}

#[test]
fn keepalive_sends_on_every_idle_connection() {
    const IDLE: usize = 20;
    for workers in [None, Some("2")] {
        let (server, rx) = recording_server();
        let mut args = vec![
            server.addr(),
            "--idle".into(),
            IDLE.to_string(),
            "--keepalive".into(),
            "0.2".into(),
            "--keepalive-data".into(),
            "ping".into(),
            "--hold".into(),
            "1".into(),
        ];
        if let Some(w) = workers {
            args.extend(["--workers".into(), w.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = stress(&args);
        assert_succeeded(&run);
        assert_eq!(run.n("still_open_at_end"), IDLE as u64, "{:?}", run.json);
        let got = collect(&rx, IDLE);
        assert_eq!(server.accepted(), IDLE);
        for (i, data) in &got {
            let text = String::from_utf8_lossy(data);
            assert!(
                data.len() >= 4 && data.len() % 4 == 0 && text.replace("ping", "").is_empty(),
                "connection {i} (--workers {workers:?}) sent {text:?}"
            );
            // About five keepalives in a 1 s hold at 0.2 s (plus the connect phase).
            let pings = data.len() / 4;
            assert!(
                (2..=12).contains(&pings),
                "connection {i} (--workers {workers:?}) sent {pings} pings"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. --source-ips
// ---------------------------------------------------------------------------------------

#[test]
fn source_ips_spread_connections_over_every_address() {
    let peers: Arc<Mutex<Vec<IpAddr>>> = Arc::new(Mutex::new(Vec::new()));
    let server = {
        let peers = peers.clone();
        ThreadServer::start(move |s, _| {
            peers
                .lock()
                .unwrap()
                .push(s.peer_addr().expect("peer").ip());
            read_all(s);
        })
    };
    let run = stress(&[
        &server.addr(),
        "--idle",
        "9",
        "--active",
        "0",
        "--source-ips",
        "127.0.0.2-127.0.0.4",
        "--hold",
        "0.3",
    ]);
    assert_succeeded(&run);
    assert_eq!(run.n("conns_open"), 9, "{:?}", run.json);
    let peers = wait_until(TIMEOUT, || {
        let p = peers.lock().unwrap().clone();
        (p.len() >= 9).then_some(p)
    })
    .expect("nine connections accepted");
    let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for ip in &peers {
        *per_ip.entry(*ip).or_default() += 1;
    }
    let want: BTreeSet<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        per_ip.keys().copied().collect::<BTreeSet<_>>(),
        want,
        "peer addresses {per_ip:?}"
    );
    assert!(
        per_ip.values().all(|&n| n == 3),
        "round robin over three addresses: {per_ip:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Unix sockets and option checking
// ---------------------------------------------------------------------------------------

#[test]
fn unix_socket_target_with_and_without_workers() {
    let path = common::TempPath::new("stress");
    let server = Server::start(&["echo", "--unix", path.as_str()]);
    assert_eq!(server.unix.len(), 1);
    for workers in [None, Some("2")] {
        let mut args = vec![
            "--unix",
            path.as_str(),
            "--idle",
            "50",
            "--active",
            "2",
            "--hold",
            "0.5",
        ];
        if let Some(w) = workers {
            args.extend(["--workers", w]);
        }
        let run = stress(&args);
        assert_succeeded(&run);
        let v = run.report();
        assert_report_shape(v);
        assert_eq!(run.n("still_open_at_end"), 52, "--workers {workers:?}: {v}");
        assert!(run.n("round_trips") > 0, "--workers {workers:?}: {v}");
        assert_eq!(run.n("mismatches"), 0, "--workers {workers:?}: {v}");
    }
}

#[test]
fn bad_options_are_rejected_before_connecting() {
    // Nothing listens there; every case must fail on its options, not on a connect.
    let addr = refused_port().to_string();
    for (args, message) in [
        (vec!["--idle", "0"], "nothing to do"),
        (vec!["--active", "1", "--size", "0"], "--size"),
        (vec!["--idle", "1", "--rate", "0"], "must be positive"),
        (
            vec!["--active", "1", "--rate-limit", "0"],
            "must be positive",
        ),
        (vec!["--idle", "1", "--source-ips", "1.2.3"], "--source-ips"),
        (
            vec!["--idle", "1", "--source-ips", "127.0.0.9-127.0.0.2"],
            "--source-ips",
        ),
    ] {
        let mut all = vec![&addr[..]];
        all.extend(args.iter().copied());
        let run = stress(&all);
        assert_failed_with(&run, message);
        assert_no_attempt(&args, &run);
    }
    // Seconds are parsed by the command line itself (one parser for every SECS option),
    // which names the option and the value.
    for option in ["--hold", "--connect-timeout", "--keepalive"] {
        let bad = format!("{option}=-1");
        let args = ["--idle", "1", &bad];
        let mut all = vec![&addr[..]];
        all.extend(args);
        let run = stress(&all);
        assert!(!run.status.success(), "{args:?}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("invalid value '-1' for '{option} <SECS>'")),
            "{args:?}: {}",
            run.stderr
        );
        assert_no_attempt(&args, &run);
    }
}

/// A run refused on its options printed no report and tried no connect.
#[track_caller]
fn assert_no_attempt(args: &[&str], run: &Run) {
    assert!(
        run.json.is_none(),
        "{args:?}: no report expected, got {:?}",
        run.json
    );
    assert!(
        !run.stderr.contains("refused"),
        "{args:?} tried to connect: {}",
        run.stderr
    );
}

/// `--hold` and the other SECS options take fractions, and workers get them intact.
#[test]
fn fractional_seconds_reach_the_workers() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    for workers in [None, Some("2")] {
        let mut args = vec![
            &addr[..],
            "--idle",
            "4",
            "--active",
            "2",
            "--hold",
            "1.5",
            "--connect-timeout",
            "2.5",
        ];
        if let Some(w) = workers {
            args.extend(["--workers", w]);
        }
        let run = stress(&args);
        assert_succeeded(&run);
        // The hold is timed on the loop's clock; it ends by a timer, never early. The
        // upper bound only tells 1.5 from a misread 15 (however late the loop runs).
        let hold = run.f("hold_secs");
        assert!(
            (1.5..15.0).contains(&hold),
            "--workers {workers:?}: hold_secs {hold}: {:?}",
            run.json
        );
    }
}
