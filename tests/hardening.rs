//! What an adversary broke (issue 9), each as a test against the real binary:
//! shutdown removes only the Unix socket this server created; a UDP port in use is
//! refused; one long hello line is one reply; resets do not flood the log; the
//! unconsumed input of all connections together has a budget.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{Server, TempPath};

/// Stop a server with SIGTERM and return its stderr (it must exit 0).
#[track_caller]
fn stop(mut server: Server) -> String {
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{stderr}");
    stderr
}

#[test]
fn shutdown_leaves_another_servers_socket_alone() {
    let path = TempPath::new("own.sock");
    let first = Server::start(&["echo", "--unix", path.as_str()]);
    // Someone removes the file, and a second server takes the path.
    std::fs::remove_file(&path.0).expect("remove socket file");
    let second = Server::start(&["hello", "--unix", path.as_str()]);
    let stderr = stop(first);
    assert!(stderr.contains("no longer the socket"), "{stderr}");
    // The second server's socket is still there, and still answers.
    let mut conn = UnixStream::connect(&path.0).expect("second server still reachable");
    conn.set_read_timeout(Some(common::TIMEOUT))
        .expect("timeout");
    assert_eq!(common::read_n(&mut conn, 9), b"Welcome!\n");
    drop(conn);
    stop(second);
    assert!(!path.0.exists(), "the second server removes its own socket");
}

#[test]
fn shutdown_leaves_a_regular_file_at_the_path_alone() {
    let path = TempPath::new("file.sock");
    let server = Server::start(&["echo", "--unix", path.as_str()]);
    std::fs::remove_file(&path.0).expect("remove socket file");
    std::fs::write(&path.0, b"precious").expect("write file");
    stop(server);
    assert_eq!(
        std::fs::read(&path.0).expect("file still there"),
        b"precious"
    );
}

#[test]
fn a_udp_port_in_use_is_refused() {
    let server = Server::start(&["hello", "--udp", "127.0.0.1:0"]);
    let addr = server.udp[0].to_string();
    let out = common::run_netloop(&["serve", "--udp", &addr], b"");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("Address already in use") && out.stderr.contains(&addr),
        "{}",
        out.stderr
    );
    // The first server still gets every datagram.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(common::TIMEOUT))
        .expect("timeout");
    socket.send_to(b"Tracy", &addr).expect("send");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"Hello, Tracy!");
}

#[test]
fn one_long_hello_line_is_one_reply() {
    let server = Server::start(&["hello", "--listen", "127.0.0.1:0"]);
    let mut conn = common::connect(server.addr());
    assert_eq!(common::read_n(&mut conn, 9), b"Welcome!\n");
    let line: Vec<u8> = (0..900_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut message = line.clone();
    message.push(b'\n');
    conn.write_all(&message).expect("send the line");
    let mut expected = b"Hello, ".to_vec();
    expected.extend_from_slice(&line);
    expected.extend_from_slice(b"!\n");
    // Split replies would differ in these bytes (each one says `Hello, ` again).
    let reply = common::read_n(&mut conn, expected.len());
    assert!(
        reply == expected,
        "the line came back as more than one reply"
    );
    conn.write_all(b"exit\n").expect("exit");
    assert!(common::read_to_eof(&mut conn).is_empty());
}

#[test]
fn resets_at_the_default_log_level_write_a_few_lines() {
    const RESETS: usize = 10_000;
    let server = Server::start_with(&["echo", "--listen", "127.0.0.1:0"], |cmd| {
        cmd.env_remove("RUST_LOG");
    });
    for _ in 0..RESETS {
        let mut conn = common::connect(server.addr());
        conn.write_all(b"x").expect("send");
        // The echo proves the server accepted and served it; then reset it.
        assert_eq!(common::read_n(&mut conn, 1), b"x");
        let socket = socket2::Socket::from(conn);
        socket
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(socket);
    }
    // A last round trip, so the resets before it have reached the server's loop.
    let mut last = common::connect(server.addr());
    last.write_all(b"y").expect("send");
    assert_eq!(common::read_n(&mut last, 1), b"y");
    drop(last);
    let stderr = stop(server);
    let lines = stderr.lines().count();
    assert!(
        lines <= 5,
        "{lines} log lines for {RESETS} resets:\n{stderr}"
    );
    let resets: u64 = stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("resets="))
        .and_then(|n| n.parse().ok())
        .expect("summary line with resets=");
    assert!(resets > 0, "{stderr}");
}

#[test]
fn unconsumed_input_of_all_connections_has_a_budget() {
    const CONNS: usize = 300;
    const BUDGET: usize = 8 * 1024 * 1024;
    let dir = common::unique_temp_path("budget");
    std::fs::create_dir_all(&dir).expect("dir");
    let budget = BUDGET.to_string();
    let server = Server::start(&[
        "upload",
        "--dir",
        dir.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
        "--max-input-total",
        &budget,
    ]);
    let before = common::rss_kb(server.pid());
    // Each client announces a 60,000-byte header and sends all of it but the end: the
    // server must keep it whole until it is complete, so each holds about 59 KB.
    let mut header = br#"{"file_name": ""#.to_vec();
    header.resize(59_000, b'a');
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let mut conn = common::connect(server.addr());
        conn.write_all(&60_000i32.to_le_bytes()).expect("prefix");
        conn.write_all(&header).expect("header");
        clients.push(conn);
    }
    // The server closes the largest holders once the total passes the budget: about
    // CONNS - BUDGET / 59 KB of them. Wait (bounded) until most of those are closed.
    let expect_closed = CONNS - BUDGET / 59_004 - 10;
    let is_closed = |mut conn: &TcpStream| {
        let mut buf = [0u8; 1];
        match conn.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    for conn in &clients {
        conn.set_nonblocking(true).expect("non-blocking");
    }
    let closed = common::wait_until(common::TIMEOUT, || {
        let closed = clients.iter_mut().filter(|c| is_closed(c)).count();
        (closed >= expect_closed).then_some(closed)
    });
    assert!(
        closed.is_some(),
        "the server did not close the largest holders"
    );
    let grown_kb = common::rss_kb(server.pid()).saturating_sub(before);
    // Without the budget: 300 x 59 KB = 17 MB held. With it: the budget plus slack.
    assert!(
        (grown_kb as usize) * 1024 < BUDGET + 6 * 1024 * 1024,
        "server grew by {grown_kb} KiB holding unfinished headers"
    );
    drop(clients);
    let stderr = stop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let counted: u64 = stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("closed_input_budget="))
        .and_then(|n| n.parse().ok())
        .expect("summary line with closed_input_budget=");
    assert!(counted as usize >= expect_closed, "{stderr}");
}

#[test]
fn pipelined_hello_lines_are_all_answered_in_order() {
    // 20,000 lines in one write: answered 1,024 per pass, others served in between.
    const LINES: usize = 20_000;
    let server = Server::start(&["hello", "--listen", "127.0.0.1:0"]);
    let mut conn = common::connect(server.addr());
    assert_eq!(common::read_n(&mut conn, 9), b"Welcome!\n");
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..LINES {
        request.extend_from_slice(format!("n{i}\n").as_bytes());
        expected.extend_from_slice(format!("Hello, n{i}!\n").as_bytes());
    }
    let writer = {
        let mut conn = conn.try_clone().expect("clone");
        std::thread::spawn(move || conn.write_all(&request))
    };
    // Another client is served while the first one's lines are worked through.
    let mut other = common::connect(server.addr());
    assert_eq!(common::read_n(&mut other, 9), b"Welcome!\n");
    other.write_all(b"Tracy\n").expect("send");
    assert_eq!(common::read_n(&mut other, 14), b"Hello, Tracy!\n");
    let replies = common::read_n(&mut conn, expected.len());
    assert!(replies == expected, "replies out of order or missing");
    writer.join().expect("writer").expect("write");
}
