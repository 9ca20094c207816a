//! `netloop serve --workers N`: worker processes sharing a port with SO_REUSEPORT, under a
//! supervising parent. The workers are found as the parent's children in /proc, and what
//! each one holds is counted from its /proc/PID/fd.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{child_pids, process_alive, socket_count, wait_until, Server, TIMEOUT};

const TWO_WORKERS: &[&str] = &["echo", "--listen", "127.0.0.1:0", "--workers", "2"];

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Send a line and expect it back.
#[track_caller]
fn echo(stream: &mut TcpStream, text: &str) {
    let line = format!("{text}\n");
    stream.write_all(line.as_bytes()).unwrap();
    let mut back = vec![0u8; line.len()];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("no echo for {text:?}: {e}"));
    assert_eq!(back, line.as_bytes());
}

/// Open `n` connections and check each echoes; they stay open (accepted, held by a worker).
fn hold_echoing(addr: SocketAddr, n: usize, tag: &str) -> Vec<TcpStream> {
    let mut ctx: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    for (i, conn) in ctx.iter_mut().enumerate() {
        echo(conn, &format!("{tag} {i}"));
    }
    ctx
}

/// The server's children that are workers already: a child between fork and exec is
/// still a copy of the parent (with the parent's sockets), so it only counts once its
/// command line is a worker's.
fn worker_pids(server: &Server) -> Vec<u32> {
    child_pids(server.pid())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"--reuse-port"))
        })
        .collect()
}

/// Wait until the server has exactly `n` live worker processes; returns their pids.
#[track_caller]
fn workers(server: &Server, n: usize) -> Vec<u32> {
    wait_until(TIMEOUT, || {
        let pids = worker_pids(server);
        (pids.len() == n).then_some(pids)
    })
    .unwrap_or_else(|| panic!("expected {n} workers, have {:?}", child_pids(server.pid())))
}

/// The sockets of an idle worker (its listener, its signal pipe), once every worker has
/// them: a worker prints `listening on` before it opens its signal pipe, so the counts
/// are read until they agree and hold still.
#[track_caller]
fn idle_sockets(pids: &[u32]) -> usize {
    let mut last = None;
    wait_until(TIMEOUT, || {
        let counts: Vec<usize> = pids.iter().map(|&p| socket_count(p)).collect();
        let same = counts.windows(2).all(|w| w[0] == w[1]);
        let now = same.then(|| counts[0]);
        let settled = now.is_some() && now == last;
        last = now;
        std::thread::sleep(Duration::from_millis(50));
        settled.then_some(counts[0])
    })
    .expect("worker socket counts never settled")
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

#[test]
fn connections_are_spread_over_both_workers_and_all_echo() {
    let server = Server::start(TWO_WORKERS);
    let pids = workers(&server, 2);
    let idle = idle_sockets(&pids);
    let parent_before = socket_count(server.pid());

    let ctx = hold_echoing(server.addr(), 200, "spread");

    let gained: Vec<usize> = pids.iter().map(|&p| socket_count(p) - idle).collect();
    // Every connection is in exactly one worker: none stuck with the parent, whose
    // port reservation is bound but not listening, so the kernel never picks it.
    assert_eq!(gained.iter().sum::<usize>(), 200, "per worker: {gained:?}");
    assert_eq!(socket_count(server.pid()), parent_before);
    // The 4-tuple hash splits 200 connections about evenly; 20 is far in the tail.
    for (pid, n) in pids.iter().zip(&gained) {
        assert!(*n >= 20, "worker {pid} got {n} of 200 ({gained:?})");
    }
    drop(ctx);
}

#[test]
fn two_port_zero_listeners_both_serve() {
    let server = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
    ]);
    assert_eq!(server.tcp.len(), 2);
    assert_ne!(server.tcp[0], server.tcp[1]);
    for &addr in &server.tcp {
        hold_echoing(addr, 10, "two");
    }
}

/// Each worker may hold 200 descriptors, yet the server holds 300 connections.
#[test]
fn more_connections_than_one_process_may_open() {
    let server = Server::start_with(TWO_WORKERS, |cmd| common::limit_open_files(cmd, 200));
    let pids = workers(&server, 2);
    for pid in &pids {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
        assert_eq!(numbers, ["200", "200"], "{line}");
    }
    let ctx = hold_echoing(server.addr(), 300, "many");
    let held: usize = pids.iter().map(|&p| socket_count(p)).sum();
    assert!(held >= 300, "workers hold {held} sockets");
    drop(ctx);
}

/// The control for the test above: one process under the same limit cannot.
#[test]
fn one_process_with_the_same_limit_cannot() {
    let server = Server::start_with(&["echo", "--listen", "127.0.0.1:0"], |cmd| {
        common::limit_open_files(cmd, 200)
    });
    let mut ctx: Vec<TcpStream> = (0..300).map(|_| connect(server.addr())).collect();
    echo(&mut ctx[0], "first");
    // The kernel completed the handshake, but the server cannot accept it: no echo.
    let last = ctx.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    last.write_all(b"last\n").unwrap();
    let mut buf = [0u8; 5];
    let err = last.read_exact(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
}

#[test]
fn a_killed_worker_is_restarted() {
    let mut server = Server::start(TWO_WORKERS);
    let pids = workers(&server, 2);
    let (victim, survivor) = (pids[0], pids[1]);
    // A listening worker with no connections: what the new one will have too.
    let idle = idle_sockets(&pids);

    kill(victim, libc::SIGKILL);
    let replacement = wait_until(TIMEOUT, || {
        let now = worker_pids(&server);
        let fresh: Vec<u32> = now.into_iter().filter(|p| !pids.contains(p)).collect();
        fresh.first().copied()
    })
    .expect("no new worker after SIGKILL");
    assert!(process_alive(survivor));

    // Still serving; and once the replacement listens, the kernel sends it its share.
    let mut held = Vec::new();
    let served = wait_until(TIMEOUT, || {
        held.extend(hold_echoing(server.addr(), 10, "after"));
        (socket_count(replacement) > idle).then_some(())
    });
    assert!(
        served.is_some(),
        "replacement {replacement} accepted nothing of {} connections",
        held.len()
    );
    drop(held);

    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!("(pid {victim}) died: signal: 9")),
        "{stderr}"
    );
    assert!(stderr.contains("is listening again"), "{stderr}");
}

/// A slot whose worker keeps dying young is restarted each time, by its back-off timer
/// (the second wait is the doubled back-off; `workers/slot.rs` checks the arithmetic).
#[test]
fn a_worker_that_keeps_dying_is_restarted_after_a_back_off() {
    let mut server = Server::start(TWO_WORKERS);
    let first = workers(&server, 2);
    let mut seen = first.clone();
    let mut victim = first[0];
    for round in 0..2 {
        kill(victim, libc::SIGKILL);
        let fresh = wait_until(TIMEOUT, || {
            let now = worker_pids(&server);
            now.into_iter().find(|p| !seen.contains(p))
        })
        .unwrap_or_else(|| panic!("round {round}: no new worker after killing {victim}"));
        seen.push(fresh);
        victim = fresh;
    }
    // The last replacement serves: it holds connections once the kernel sends it some.
    let idle = idle_sockets(&[first[1], victim]);
    let mut held = Vec::new();
    let served = wait_until(TIMEOUT, || {
        held.extend(hold_echoing(server.addr(), 10, "after"));
        (socket_count(victim) > idle).then_some(())
    });
    assert!(served.is_some(), "worker {victim} accepted nothing");
    drop(held);

    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        stderr
            .matches("died: signal: 9 (SIGKILL); restarting it in")
            .count(),
        2,
        "{stderr}"
    );
    assert_eq!(stderr.matches("is listening again").count(), 2, "{stderr}");
    assert!(stderr.contains("(2 restarts)"), "{stderr}");
}

#[test]
fn sigterm_stops_every_worker_and_exits_zero() {
    let mut server = Server::start(TWO_WORKERS);
    let pids = workers(&server, 2);
    let mut conn = connect(server.addr());
    echo(&mut conn, "before the end");

    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    // One line for the whole server (the workers' counters added up), not one per worker.
    assert_eq!(stderr.matches("summary:").count(), 1, "{stderr}");
    assert!(stderr.contains("all 2 workers exited cleanly"), "{stderr}");
    for pid in pids {
        assert!(!process_alive(pid), "worker {pid} outlived the parent");
    }
    // Its worker closed the connection on the way out.
    let mut buf = [0u8; 1];
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
}

/// A worker that cannot act on SIGTERM (stopped here with SIGSTOP) gets SIGKILL from the
/// parent's kill timer once `--grace` plus the margin is over, and the exit says so.
#[test]
fn a_worker_that_does_not_stop_is_killed_after_the_grace_period() {
    let mut server = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--grace",
        "0",
    ]);
    let pids = workers(&server, 2);
    let stuck = pids[0];
    kill(stuck, libc::SIGSTOP);
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("1 workers still running after the grace period: SIGKILL"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(pid {stuck}) did not stop cleanly: signal: 9")),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 2 workers did not stop cleanly"),
        "{stderr}"
    );
    assert!(!process_alive(stuck), "worker {stuck} outlived the parent");
}

#[test]
fn unix_and_udp_are_refused_with_workers() {
    let path = common::TempPath::new("workers");
    for extra in [["--udp", "127.0.0.1:0"], ["--unix", path.as_str()]] {
        let mut args = vec!["serve", "--workers", "2"];
        args.extend(extra);
        let out = common::run_netloop(&args, b"");
        assert!(!out.status.success(), "{args:?}");
        assert!(
            out.stderr.contains("--workers shares TCP ports only"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_port_in_use_fails_before_any_worker_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::run_netloop(&["serve", "--workers", "2", "--listen", &addr], b"");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(&format!(
            "{addr}: address already in use (another server listens there)"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("worker 0: started"), "{}", out.stderr);
}

#[test]
fn a_worker_that_cannot_start_fails_the_server() {
    // The parent checks options it can check; a directory that is a regular file is only
    // found out by the workers, which then exit before listening.
    let not_a_dir = common::TempPath::new("not-a-dir");
    std::fs::write(&not_a_dir.0, b"a file").expect("write temp file");
    let out = common::run_netloop(
        &[
            "serve",
            "upload",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            not_a_dir.as_str(),
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains(not_a_dir.as_str()), "{}", out.stderr);
    assert!(
        out.stderr.contains("exited before listening"),
        "{}",
        out.stderr
    );
}

/// The `summary:` value of `key` in the one summary line of `stderr`.
#[track_caller]
fn summary_value(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("summary:"))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    let word = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    word.parse()
        .unwrap_or_else(|_| panic!("{key}={word} in {line}"))
}

/// The parent logs one total `summary:` line: the sum of what each worker counted.
#[test]
fn the_summary_line_adds_up_every_worker() {
    let mut server = Server::start(TWO_WORKERS);
    let pids = workers(&server, 2);
    let _ = idle_sockets(&pids);
    let conns = hold_echoing(server.addr(), 40, "counted");
    // Make sure both workers served some, so the total really is a sum.
    let per_worker: Vec<usize> = pids.iter().map(|&p| socket_count(p)).collect();
    drop(conns);

    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr.matches("summary:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("(2 workers, 0 restarts, 2 processes reported)"),
        "{stderr}"
    );
    assert_eq!(
        summary_value(&stderr, "accepted"),
        40,
        "{per_worker:?}\n{stderr}"
    );
    // Each connection sent one line, `counted N\n`, and got it back.
    let sent: u64 = (0..40).map(|i| format!("counted {i}\n").len() as u64).sum();
    assert_eq!(summary_value(&stderr, "bytes_in"), sent, "{stderr}");
    assert_eq!(summary_value(&stderr, "bytes_out"), sent, "{stderr}");
}

/// A second `serve --workers` on a port the first one serves is refused (it would
/// otherwise join the first one's SO_REUSEPORT group and take half its connections),
/// and so is a single `serve` there; the first one keeps serving.
#[test]
fn a_second_server_on_a_workers_port_is_refused() {
    let server = Server::start(TWO_WORKERS);
    let _ = workers(&server, 2);
    let addr = server.addr().to_string();
    for args in [
        vec!["serve", "--workers", "2", "--listen", addr.as_str()],
        vec!["serve", "--listen", addr.as_str()],
    ] {
        let out = common::run_netloop(&args, b"");
        assert!(!out.status.success(), "{args:?} started beside the first");
        assert!(
            out.stderr.to_lowercase().contains("address already in use")
                && out.stderr.contains(&addr),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("worker 0: started"), "{}", out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("listening on"), "{stdout}");
    }
    let mut conn = connect(server.addr());
    echo(&mut conn, "still the first one's");
}

/// The claim on the address covers what a probe bind cannot see: another supervisor
/// whose workers are all dead (restarting) at this moment. Its claim is simulated here
/// by binding the same abstract socket name.
#[test]
fn a_claimed_address_is_refused_even_with_nothing_listening() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    use std::os::linux::net::SocketAddrExt;
    let name = netloop::workers::ports::claim_name(addr);
    let unix = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _claim = std::os::unix::net::UnixDatagram::bind_addr(&unix).unwrap();
    let text = addr.to_string();
    let out = common::run_netloop(&["serve", "--workers", "2", "--listen", &text], b"");
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(&format!("{text}: address already in use"))
            && out.stderr.contains("another `netloop serve --workers`"),
        "{}",
        out.stderr
    );
}

/// `--workers auto`: at least one worker per core, and with `--max-conns` (the server's
/// total, with `auto`) each worker gets its share.
#[test]
fn auto_starts_a_worker_per_core_and_splits_max_conns() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut server = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "auto",
        "--max-conns",
        "10",
    ]);
    let pids = workers(&server, cpus);
    let share = format!("--max-conns={}", 10usize.div_ceil(cpus));
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.split(|&b| b == 0).any(|a| a == share.as_bytes()),
            "worker {pid}: {}",
            String::from_utf8_lossy(&cmdline)
        );
    }
    hold_echoing(server.addr(), 4, "auto");
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "--workers auto: {cpus} workers: 10 connections (--max-conns 10)"
        )),
        "{stderr}"
    );
    for bad in ["0", "many"] {
        let out = common::run_netloop(&["serve", "--workers", bad], b"");
        assert!(!out.status.success(), "--workers {bad}");
        assert!(out.stderr.contains("(or `auto`)"), "{}", out.stderr);
    }
}
