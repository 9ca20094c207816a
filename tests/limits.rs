//! Limits and hostile peers, against the real binary on loopback: backpressure keeps
//! memory bounded, resets and half-closes are handled, idle and connection limits hold,
//! descriptor exhaustion neither kills nor spins the loop, shutdown flushes queued bytes,
//! and junk traffic leaves the server serving.
//!
//! Every wait polls a condition against `common::TIMEOUT`; the only fixed waits are the
//! ones the scenario itself is made of (an active client's 200 ms pace, a 2 s window to
//! measure CPU time, and the probe that declares a blocked send stalled).

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TIMEOUT};
use socket2::{Domain, SockRef, Socket, Type};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Size of one write or read in these tests.
const CHUNK: usize = 64 * KIB;
/// Period of the test pattern: a prime, so it never lines up with chunk boundaries.
const PERIOD: usize = 251;
/// A blocked write that moves no byte for this long counts as one stalled probe...
const STALL_PROBE: Duration = Duration::from_millis(500);
/// ...and this many stalled probes in a row mean the send is stalled for good.
const STALL_PROBES: u32 = 2;

/// The pattern byte at stream offset `i`: any loss, duplication or reordering shows.
fn pattern_byte(i: usize) -> u8 {
    (i % PERIOD) as u8
}

/// `len` (at most `CHUNK`) pattern bytes starting at stream offset `offset`.
fn pattern_at(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(pattern_byte).collect()
}

/// Connect with a generous read timeout, so a broken server fails the test, not hangs it.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Send `msg` and read exactly as many bytes back; they must be the same.
#[track_caller]
fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("write to echo server");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("read echo back");
    assert_eq!(back, msg, "echo came back different");
}

/// Expect the server to end the connection: EOF, or a reset.
#[track_caller]
fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} bytes"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

/// Write the pattern from stream offset `offset` up to `limit`, without reading, until
/// the kernel takes no byte for `STALL_PROBES` probes in a row. `sample` runs after every
/// write attempt. Returns the offset reached.
fn send_until_stalled(
    s: &mut TcpStream,
    mut offset: usize,
    limit: usize,
    mut sample: impl FnMut(usize),
) -> usize {
    s.set_write_timeout(Some(STALL_PROBE)).unwrap();
    let mut stalled = 0;
    let deadline = Instant::now() + TIMEOUT;
    while offset < limit && Instant::now() < deadline {
        let len = CHUNK.min(limit - offset);
        match s.write(&pattern_at(offset, len)) {
            Ok(0) => panic!("write returned 0"),
            Ok(n) => {
                offset += n;
                stalled = 0;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                stalled += 1;
                if stalled >= STALL_PROBES {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("write at offset {offset}: {e}"),
        }
        sample(offset);
    }
    s.set_write_timeout(None).unwrap();
    offset
}

/// Read until EOF, checking every byte against the pattern; returns the byte count.
fn read_pattern_to_eof(s: &mut TcpStream) -> usize {
    match try_read_pattern_to_eof(s) {
        Ok(total) => total,
        Err((total, e)) => panic!("read after {total} bytes: {e}"),
    }
}

/// Like `read_pattern_to_eof`, but a read error is returned with the count before it.
fn try_read_pattern_to_eof(s: &mut TcpStream) -> Result<usize, (usize, io::Error)> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((total, e)),
        };
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern_byte(total + i)) {
            panic!(
                "byte {} is {}, expected {}",
                total + i,
                buf[i],
                pattern_byte(total + i)
            );
        }
        total += n;
    }
}

/// One counter from the `summary:` line on stderr.
#[track_caller]
fn summary_field(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("summary: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let key = format!(" {name}=");
    let at = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[at + key.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {name} in {line}"))
}

/// SIGTERM the server, expect exit status 0, and return its stderr.
#[track_caller]
fn stop(server: &mut Server) -> String {
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "server exited with {status}:\n{stderr}");
    assert!(stderr.contains("summary: "), "no summary line:\n{stderr}");
    stderr
}

/// Poll `cond` until it holds, or fail after `TIMEOUT`.
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Number of descriptors a process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `(tx_queue, rx_queue)` of the IPv4 TCP socket `local` -> `remote`, from /proc/net/tcp:
/// bytes sent but not yet acknowledged, and bytes received but not yet read.
fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(usize, usize)> {
    fn hex(a: SocketAddr) -> String {
        let SocketAddr::V4(a) = a else {
            panic!("IPv4 only")
        };
        // The kernel prints the address as the native-endian u32 of the network bytes.
        let ip = u32::from_ne_bytes(a.ip().octets());
        format!("{ip:08X}:{:04X}", a.port())
    }
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[1] != l || f[2] != r {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((
            usize::from_str_radix(tx, 16).ok()?,
            usize::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// 1. A peer that sends 64 MiB and never reads: backpressure pauses reading, so the
///    server's memory stays near the watermark and the sender blocks; others are served.
///    When the peer finally reads, everything comes back byte-exact.
#[test]
fn non_reading_peer_is_bounded_by_backpressure() {
    const TOTAL: usize = 64 * MIB;
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let pid = server.pid();
    let mut other = connect(server.addr());
    // Warm up (scratch buffer touched, allocator primed) before taking the baseline.
    round_trip(&mut other, &pattern_at(0, CHUNK));
    let baseline = common::rss_kb(pid);

    let mut hog = connect(server.addr());
    let mut peak = baseline;
    let sent = send_until_stalled(&mut hog, 0, TOTAL, |_| {
        peak = peak.max(common::rss_kb(pid));
    });
    assert!(
        sent < TOTAL,
        "the sender never blocked: all {TOTAL} bytes went through"
    );
    // Stalled: the server is holding its queue. Others are still served meanwhile.
    round_trip(&mut other, b"still there?");
    let mut fresh = connect(server.addr());
    round_trip(&mut fresh, b"new client");
    peak = peak.max(common::rss_kb(pid));
    let growth_kb = peak.saturating_sub(baseline);
    eprintln!(
        "backpressure: sent {} KiB before stalling; RSS baseline {baseline} KiB, \
         peak {peak} KiB (+{growth_kb} KiB)",
        sent / KIB
    );
    // 1 MiB watermark plus one 64 KiB read, with allocator slack: well under 8 MiB.
    // Without backpressure the queue would hold most of what was sent.
    assert!(
        growth_kb < 8 * 1024,
        "server RSS grew by {growth_kb} KiB while a peer did not read (baseline \
         {baseline} KiB, sent {sent} bytes)"
    );

    // Now the peer reads: reading on the server resumes and the whole stream comes back.
    let mut reader = hog.try_clone().unwrap();
    let echoed = thread::spawn(move || read_pattern_to_eof(&mut reader));
    hog.set_write_timeout(Some(TIMEOUT)).unwrap();
    let mut offset = sent;
    while offset < TOTAL {
        let len = CHUNK.min(TOTAL - offset);
        hog.write_all(&pattern_at(offset, len)).unwrap();
        offset += len;
    }
    hog.shutdown(Shutdown::Write).unwrap();
    assert_eq!(echoed.join().unwrap(), TOTAL);
    round_trip(&mut other, b"after");
}

/// 2. A peer that resets (SO_LINGER 0) while the server holds queued data for it: the
///    server logs the peer (at DEBUG: per-connection events are not INFO, so resets
///    cannot flood the log), counts an error close, and keeps serving everyone else.
#[test]
fn reset_mid_message_is_survived_and_logged() {
    let mut server = Server::start_with(&["echo", "--listen", "127.0.0.1:0"], |cmd| {
        cmd.env("RUST_LOG", "netloop=debug");
    });
    let mut other = connect(server.addr());
    round_trip(&mut other, b"hello");

    let mut victim = connect(server.addr());
    let victim_addr = victim.local_addr().unwrap();
    // Half of a "message": enough for the server to queue past its watermark and stop.
    let sent = send_until_stalled(&mut victim, 0, 32 * MIB, |_| {});
    assert!(sent < 32 * MIB, "the sender never blocked");
    SockRef::from(&victim)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(victim); // RST, with our receive buffer full and the server's queue non-empty

    round_trip(&mut other, b"still serving");
    let mut fresh = connect(server.addr());
    round_trip(&mut fresh, b"new client after the reset");
    drop((other, fresh));

    let stderr = stop(&mut server);
    assert!(
        stderr.contains(&victim_addr.to_string()),
        "stderr does not mention the reset peer {victim_addr}:\n{stderr}"
    );
    assert_eq!(summary_field(&stderr, "closed_by_error"), 1, "{stderr}");
    assert_eq!(summary_field(&stderr, "accepted"), 3, "{stderr}");
}

/// 3. Half-close: the peer sends 8 MiB, shuts down its write side, and reads: it gets
///    every byte back, in order, then EOF.
#[test]
fn half_closed_peer_gets_everything_then_eof() {
    const TOTAL: usize = 8 * MIB;
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let mut client = connect(server.addr());
    let mut writer = client.try_clone().unwrap();
    writer.set_write_timeout(Some(TIMEOUT)).unwrap();
    let sender = thread::spawn(move || {
        let mut offset = 0;
        while offset < TOTAL {
            let len = CHUNK.min(TOTAL - offset);
            writer.write_all(&pattern_at(offset, len)).unwrap();
            offset += len;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_pattern_to_eof(&mut client);
    sender.join().unwrap();
    assert_eq!(got, TOTAL, "echoed byte count");
    // EOF stays EOF.
    expect_closed(&mut client);
    drop(client);

    let stderr = stop(&mut server);
    assert_eq!(summary_field(&stderr, "bytes_in"), TOTAL as u64, "{stderr}");
    assert_eq!(
        summary_field(&stderr, "bytes_out"),
        TOTAL as u64,
        "{stderr}"
    );
    assert_eq!(summary_field(&stderr, "closed_by_peer"), 1, "{stderr}");
}

/// 4. `--idle-timeout 1`: a silent client is closed after about a second, while a client
///    that talks every 200 ms over more than twice that stays open.
#[test]
fn idle_timeout_closes_idle_and_spares_active() {
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--idle-timeout", "1"]);
    let mut idle = connect(server.addr());
    let mut active = connect(server.addr());
    round_trip(&mut idle, b"i");
    round_trip(&mut active, b"a");
    let start = Instant::now();
    idle.set_nonblocking(true).unwrap();

    let mut idle_closed_after = None;
    let mut ticks = 0;
    while idle_closed_after.is_none() || start.elapsed() < Duration::from_millis(2500) {
        assert!(start.elapsed() < TIMEOUT, "idle client was never closed");
        if idle_closed_after.is_none() {
            let mut buf = [0u8; 16];
            match idle.read(&mut buf) {
                Ok(0) => idle_closed_after = Some(start.elapsed()),
                Ok(n) => panic!("idle client got {n} unexpected bytes"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("idle client: {e}"),
            }
        }
        // The active client's pace is the scenario, not a wait for the server.
        thread::sleep(Duration::from_millis(200));
        ticks += 1;
        round_trip(&mut active, format!("tick {ticks}").as_bytes());
    }
    let after = idle_closed_after.unwrap();
    eprintln!("idle client closed after {after:?}; active client sent {ticks} ticks");
    assert!(
        after >= Duration::from_millis(800),
        "idle client closed too early, after {after:?}"
    );

    let stderr = stop(&mut server);
    assert_eq!(summary_field(&stderr, "closed_by_timeout"), 1, "{stderr}");
    assert_eq!(summary_field(&stderr, "closed_by_shutdown"), 1, "{stderr}");
}

/// 5. `--max-conns 3`: the fourth connection is closed at once, the first three keep
///    working, and once one of them leaves a new connection is served.
#[test]
fn max_conns_rejects_extra_and_frees_slots() {
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--max-conns", "3"]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(server.addr())).collect();
    for (i, c) in held.iter_mut().enumerate() {
        round_trip(c, format!("first {i}").as_bytes());
    }
    let mut extra = connect(server.addr());
    expect_closed(&mut extra);
    for (i, c) in held.iter_mut().enumerate() {
        round_trip(c, format!("second {i}").as_bytes());
    }

    // One leaves; its EOF from the server means the slot is free.
    let mut leaving = held.remove(0);
    leaving.shutdown(Shutdown::Write).unwrap();
    expect_closed(&mut leaving);
    let mut newcomer = connect(server.addr());
    round_trip(&mut newcomer, b"served after a slot freed");
    for c in &mut held {
        round_trip(c, b"third");
    }
    drop((held, newcomer, extra, leaving));

    let stderr = stop(&mut server);
    assert_eq!(summary_field(&stderr, "rejected_max_conns"), 1, "{stderr}");
    assert_eq!(summary_field(&stderr, "closed_by_limit"), 1, "{stderr}");
    assert_eq!(summary_field(&stderr, "peak_open"), 3, "{stderr}");
}

/// 6. Out of descriptors (RLIMIT_NOFILE 64, 150 clients): the server stays up, does not
///    spin while the backlog waits, and serves the waiting clients once descriptors free.
#[test]
fn descriptor_exhaustion_pauses_accepting_without_spinning() {
    const LIMIT: u64 = 64;
    const CLIENTS: usize = 150;
    const CLOSED: usize = 120;
    let mut server = Server::start_with(&["echo", "--listen", "127.0.0.1:0"], |cmd| {
        // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: LIMIT,
                    rlim_max: LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let pid = server.pid();
    let addr = server.addr();
    // The kernel completes these handshakes in the backlog whether or not we accept.
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
    wait_for("the server to run out of descriptors", || {
        open_fds(pid) as u64 >= LIMIT
    });

    // Saturated. Measure CPU over 2 s, while more clients keep knocking.
    let cpu_before = common::cpu_time(pid);
    let window = Instant::now();
    while clients.len() < CLIENTS {
        clients.push(connect(addr));
        thread::sleep(Duration::from_millis(40));
    }
    thread::sleep(Duration::from_millis(2000).saturating_sub(window.elapsed()));
    let spent = common::cpu_time(pid).saturating_sub(cpu_before);
    let wall = window.elapsed();
    eprintln!("saturated server used {spent:?} of CPU in {wall:?}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "server died out of descriptors"
    );
    assert!(
        spent < Duration::from_millis(500),
        "server spun while out of descriptors: {spent:?} CPU in {wall:?}"
    );

    // Free descriptors: the earliest clients are the accepted ones (the backlog is FIFO).
    clients.drain(..CLOSED);
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(c, format!("waited in the backlog {i}").as_bytes());
    }
    let mut fresh = connect(addr);
    round_trip(&mut fresh, b"new client after exhaustion");
    drop((clients, fresh));

    let stderr = stop(&mut server);
    assert!(summary_field(&stderr, "accept_pauses") >= 1, "{stderr}");
    assert_eq!(
        summary_field(&stderr, "accepted"),
        CLIENTS as u64 + 1,
        "{stderr}"
    );
}

/// 7. SIGTERM while a client has echoed bytes queued and is not reading: the grace period
///    flushes them all, then the server exits 0 with its summary.
///
/// The server's kernel send buffer autotunes up to `tcp_wmem` max (4 MiB here), and took
/// a whole 512 KiB echo in trials, so the client sends more than that, with a watermark
/// high enough that the server still reads all of it before the signal.
#[test]
fn sigterm_flushes_queued_bytes() {
    const TOTAL: usize = 6 * MIB;
    let mut server = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--grace",
        "15",
        "--max-queue",
        "16777216",
    ]);
    let addr = server.addr();
    // A small receive buffer, so the echo cannot all hide in kernel buffers.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut client: TcpStream = socket.into();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.set_write_timeout(Some(TIMEOUT)).unwrap();
    let local = client.local_addr().unwrap();
    client.write_all(&pattern_at(0, TOTAL)).unwrap();

    // Wait until the server has read all of it (our side has it all acknowledged and the
    // server's socket holds no unread byte): bytes it never read are not "queued".
    let mut held = 0;
    wait_for("the server to read the whole upload", || {
        match (tcp_queues(local, addr), tcp_queues(addr, local)) {
            (Some((client_tx, client_rx)), Some((server_tx, server_rx))) => {
                held = TOTAL.saturating_sub(client_rx + server_tx);
                client_tx == 0 && server_rx == 0
            }
            _ => false,
        }
    });
    eprintln!("at SIGTERM the server's own queue holds about {held} bytes");
    assert!(
        held > 0,
        "nothing was queued in the server; the test proves nothing"
    );

    server.signal(libc::SIGTERM);
    let got = read_pattern_to_eof(&mut client);
    assert_eq!(got, TOTAL, "bytes flushed during the grace period");
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "server exited with {status}:\n{stderr}");
    assert_eq!(
        summary_field(&stderr, "bytes_out"),
        TOTAL as u64,
        "{stderr}"
    );
    assert_eq!(summary_field(&stderr, "closed_by_shutdown"), 1, "{stderr}");
}

/// 7b. SIGTERM while reading from a client is paused by backpressure, so the server's
///     socket still holds input it never read: the bytes the server flushes during the
///     grace period (and counts in `bytes_out`) must reach the client, followed by EOF.
///     Closing a socket with unread input makes the kernel send RST and discard what is
///     still in the send buffer, so "flushed" bytes would be lost.
#[test]
fn sigterm_with_unread_input_still_delivers_flushed_bytes() {
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--grace", "15"]);
    let addr = server.addr();
    let mut client = connect(addr);
    let local = client.local_addr().unwrap();
    let sent = send_until_stalled(&mut client, 0, 64 * MIB, |_| {});
    assert!(sent < 64 * MIB, "the sender never blocked");
    let unread = tcp_queues(addr, local).map_or(0, |(_, rx)| rx);
    assert!(unread > 0, "the server's socket holds no unread input");

    server.signal(libc::SIGTERM);
    // The listener closes when shutdown begins: from then on the server reads no more.
    wait_for("the server to begin shutting down", || {
        TcpStream::connect(addr).is_err()
    });
    let got = try_read_pattern_to_eof(&mut client);
    drop(client);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "server exited with {status}:\n{stderr}");
    let bytes_out = summary_field(&stderr, "bytes_out");
    match got {
        Ok(n) => assert_eq!(n as u64, bytes_out, "received vs. server's bytes_out"),
        Err((n, e)) => panic!(
            "after sending {sent} bytes and SIGTERM, the client read {n} bytes, then: {e}; \
             the server reported bytes_out={bytes_out} ({} bytes lost; the server's \
             socket held {unread} unread bytes at the signal)",
            bytes_out.saturating_sub(n as u64)
        ),
    }
}

/// Deterministic junk (xorshift), all 256 byte values.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// 8. A thousand clients that connect and vanish (plain close, reset, junk then close,
///    half-close), and clients sending binary junk: the server stays up and serves.
#[test]
fn spurious_connections_and_garbage_are_survived() {
    const CHURN: usize = 1000;
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr();
    for i in 0..CHURN {
        let mut c = connect(addr);
        match i % 4 {
            0 => {}
            1 => SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap(),
            2 => {
                c.write_all(&garbage(i as u64, 1 + i % 700)).unwrap();
                SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
            }
            _ => c.shutdown(Shutdown::Write).unwrap(),
        }
    }
    assert!(server.child.try_wait().unwrap().is_none(), "server died");

    // Junk is just bytes to echo: it comes back unchanged, in odd sizes.
    let mut junk = connect(addr);
    for (i, len) in [1, 2, 3, 255, 4096, 65_537, 300_000]
        .into_iter()
        .enumerate()
    {
        let data = garbage(1000 + i as u64, len);
        let mut reader = junk.try_clone().unwrap();
        let expect = data.clone();
        let back = thread::spawn(move || {
            let mut got = vec![0u8; expect.len()];
            reader.read_exact(&mut got).unwrap();
            assert!(
                got == expect,
                "junk of {} bytes came back different",
                got.len()
            );
        });
        junk.write_all(&data).unwrap();
        back.join().unwrap();
    }

    let mut last = connect(addr);
    round_trip(&mut last, b"final client");
    drop((junk, last));
    let stderr = stop(&mut server);
    assert_eq!(
        summary_field(&stderr, "accepted"),
        CHURN as u64 + 2,
        "{stderr}"
    );
}
