//! `netloop stress`: what a user controls during and around a run, against real loopback
//! sockets. Ctrl-C (SIGINT) or SIGTERM ends a run early with the report of what was
//! measured, marked as interrupted, and a non-zero exit, with and without worker
//! processes; `--server-pid` sums a process tree and refuses a PID that does not exist;
//! with `--rate-limit`, latency is never below what the server really took. Every run
//! is bounded (a few connections, a hold of a few seconds at most) and every wait by
//! `common::TIMEOUT`.

mod common;
mod stress_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{child_pids, process_alive, wait_until, Server, TIMEOUT};
use stress_common::*;

fn kill(pid: u32, signal: i32) {
    // SAFETY: plain kill(2) on a process this test started.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Ctrl-C half way through a long hold: the run ends at once, prints the report of what
/// it measured (marked interrupted) and exits non-zero; with workers, the parent tells
/// them to stop, merges their reports and leaves no worker behind.
#[test]
fn a_signal_during_the_hold_ends_the_run_with_a_report() {
    for (workers, signal, name) in [
        (None, libc::SIGINT, "SIGINT"),
        (Some("2"), libc::SIGINT, "SIGINT"),
        (Some("2"), libc::SIGTERM, "SIGTERM"),
    ] {
        let echoed = Arc::new(AtomicU64::new(0));
        let counter = echoed.clone();
        let server = ThreadServer::start(move |s, _| echo_counting(s, &counter));
        let addr = server.addr();
        let mut args = vec![&addr[..], "--idle", "10", "--active", "2", "--hold", "60"];
        if let Some(w) = workers {
            args.extend(["--workers", w]);
        }
        let (run, worker_pids) = stress_full(
            &args,
            |_| {},
            |pid| {
                // Every connection open, and round trips going: the hold has begun.
                let holding = wait_until(TIMEOUT, || {
                    (server.accepted() == 12 && echoed.load(Ordering::SeqCst) > 0).then_some(())
                });
                assert!(holding.is_some(), "{args:?}: the hold never began");
                let workers = child_pids(pid);
                kill(pid, signal);
                workers
            },
        );
        // It ended early: `stress_full` waits at most `TIMEOUT` (20 s) for a 60 s hold.
        assert!(!run.status.success(), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(&format!(
                "INTERRUPTED by {name}: what follows is what was measured"
            )) && run.stderr.contains(&format!(
                "netloop stress: interrupted by {name}; the report above covers"
            )),
            "{args:?}: {}",
            run.stderr
        );
        let v = run.report();
        assert_report_shape(v);
        assert_eq!(v["interrupted"], name, "{v}");
        assert_eq!(run.n("conns_open"), 12, "{v}");
        assert_eq!(run.n("still_open_at_end"), 12, "{v}");
        assert!(run.f("hold_secs") < 60.0, "the hold was cut short: {v}");
        assert_eq!(run.n("mismatches"), 0, "{v}");
        for pid in worker_pids {
            assert!(
                wait_until(TIMEOUT, || (!process_alive(pid)).then_some(())).is_some(),
                "worker {pid} outlived the interrupted run"
            );
        }
    }
}

/// A signal while connections are still being opened (here they never complete: the
/// server never accepts and its backlog is full) ends the run as well, with a report.
#[test]
fn a_signal_while_connecting_ends_the_run_with_a_report() {
    // A listener with a backlog of 1 that never accepts: a few connects complete in the
    // kernel, the rest wait for a SYN-ACK that does not come.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .expect("bind");
    listener.listen(1).expect("listen");
    let addr = listener
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .to_string();
    let args = [&addr[..], "--idle", "50", "--max-inflight", "50"];
    let (run, ()) = stress_full(
        &args,
        |_| {},
        |pid| {
            // Wait until it has sockets (connects started), then interrupt.
            let started = wait_until(TIMEOUT, || (common::socket_count(pid) > 2).then_some(()));
            assert!(started.is_some(), "no connect started");
            kill(pid, libc::SIGINT);
        },
    );
    // Bounded by `stress_full`'s `TIMEOUT`: it did not wait for connects that never end.
    assert!(!run.status.success(), "{run:?}");
    let v = run.report();
    assert_report_shape(v);
    assert_eq!(v["interrupted"], "SIGINT", "{v}");
    assert!(run.n("conns_open") < 50, "{v}");
}

/// `--server-pid` of a `serve --workers 2` supervisor counts its workers (the parent
/// itself holds no connection); so do the workers' PIDs given as a list. A PID that does
/// not exist is refused before any connect.
#[test]
fn server_pid_sums_a_process_tree_and_refuses_a_missing_pid() {
    // A fresh server for each form: a slab grown by one run is reused by the next.
    for form in ["supervisor", "workers"] {
        let server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--workers", "2"]);
        let addr = server.addr().to_string();
        let workers = wait_until(TIMEOUT, || {
            let pids = child_pids(server.pid());
            (pids.len() == 2).then_some(pids)
        })
        .expect("two workers");
        let pids = match form {
            "supervisor" => server.pid().to_string(),
            _ => format!("{},{}", workers[0], workers[1]),
        };
        let run = stress(&[
            &addr,
            "--idle",
            "2000",
            "--hold",
            "1",
            "--server-pid",
            &pids,
        ]);
        assert_succeeded(&run);
        let v = run.report();
        let per_conn = v["server_rss_bytes_per_conn"]
            .as_f64()
            .unwrap_or_else(|| panic!("--server-pid {pids} ({form}): no server memory in {v}"));
        // 2,000 connections cost the workers some memory: more than nothing, and far
        // less than a megabyte each.
        assert!(
            per_conn > 0.0 && per_conn < 1_000_000.0,
            "--server-pid {pids} ({form}): {v}"
        );
    }
    let addr = refused_port().to_string();
    let run = stress(&[&addr, "--idle", "1", "--server-pid", "999999999"]);
    assert_failed_with(&run, "--server-pid 999999999: no such process");
    assert!(run.json.is_none(), "{run:?}");
}

/// With `--rate-limit`, a round is timed from its intended send time, or from the real
/// send when that came first, and never less than what the server took: here every
/// reply is delayed by 20 ms, so no sample may be below 20 ms (the loop's millisecond
/// timers must not make requests look faster than they were).
#[test]
fn rate_limited_latency_is_never_below_the_servers_delay() {
    const DELAY: Duration = Duration::from_millis(20);
    let server = ThreadServer::start(|mut s: TcpStream, _| {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    std::thread::sleep(DELAY);
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let addr = server.addr();
    let run = stress(&[
        &addr,
        "--active",
        "4",
        "--size",
        "8",
        "--rate-limit",
        "40",
        "--hold",
        "2",
    ]);
    assert_succeeded(&run);
    let v = run.report();
    assert_report_shape(v);
    assert!(run.n("round_trips") >= 40, "{v}");
    // The histogram's resolution is 0.1 %: 20 ms may be recorded as 19.99 ms.
    let floor = DELAY.as_micros() as u64 * 999 / 1000;
    assert!(
        run.n("p50_us") >= floor,
        "p50 below the server's delay: {v}"
    );
    // A min would be best; p50 is what the report has, and every sample counts in it.
    assert!(run.n("p50_us") < 10 * DELAY.as_micros() as u64, "{v}");
}
