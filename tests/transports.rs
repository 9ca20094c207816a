//! Transports (UDP, Unix sockets, IPv6, all at once) and the `client` and `resolve`
//! commands, against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};

use common::{read_n, read_to_eof, Server, TempPath, TIMEOUT};

fn connect_tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

fn connect_unix(path: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path:?}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// A UDP socket on the loopback of the same family as `server`.
fn udp_client(server: SocketAddr) -> UdpSocket {
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

/// Send one datagram and return the next one received, checking it came from `server`.
#[track_caller]
fn udp_exchange(socket: &UdpSocket, server: SocketAddr, data: &[u8]) -> Vec<u8> {
    socket.send_to(data, server).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no UDP reply to {data:?}: {e}"));
    assert_eq!(from, server, "reply from the server's port");
    buf.truncate(n);
    buf
}

// ---- UDP ----

#[test]
fn udp_echo_one_datagram_per_reply() {
    let server = Server::start(&["echo", "--udp", "127.0.0.1:0"]);
    let to = server.udp[0];
    let socket = udp_client(to);
    assert_eq!(udp_exchange(&socket, to, b"hello"), b"hello");
    assert_eq!(udp_exchange(&socket, to, b"a\nb\n"), b"a\nb\n");
    let big = common::pseudo_random_bytes(7, 60_000);
    assert_eq!(udp_exchange(&socket, to, &big), big);
}

#[test]
fn udp_echo_with_suffix() {
    let server = Server::start(&["echo", "--udp", "127.0.0.1:0", "--suffix", " 我收到了"]);
    let to = server.udp[0];
    let socket = udp_client(to);
    assert_eq!(
        udp_exchange(&socket, to, b"hello"),
        "hello 我收到了".as_bytes()
    );
}

#[test]
fn udp_upper() {
    let server = Server::start(&["upper", "--udp", "127.0.0.1:0"]);
    let to = server.udp[0];
    let socket = udp_client(to);
    assert_eq!(
        udp_exchange(&socket, to, b"hello World 123 \xe4\xbd\xa0"),
        b"HELLO WORLD 123 \xe4\xbd\xa0"
    );
}

#[test]
fn udp_hello_replies_and_exit_is_silent() {
    let server = Server::start(&["hello", "--udp", "127.0.0.1:0"]);
    let to = server.udp[0];
    let socket = udp_client(to);
    // No connection, so no welcome: the first datagram back is the first reply.
    assert_eq!(udp_exchange(&socket, to, b"Michael"), b"Hello, Michael!");
    assert_eq!(
        udp_exchange(&socket, to, b"a\r\nb\n"),
        b"Hello, a!\nHello, b!\n"
    );
    // `exit` gets no reply: the next datagram received answers the message after it.
    socket.send_to(b"exit", to).unwrap();
    assert_eq!(udp_exchange(&socket, to, b"Tracy"), b"Hello, Tracy!");
}

// ---- Unix sockets ----

#[test]
fn unix_echo_and_socket_file_removed_at_shutdown() {
    let path = TempPath::new("echo.sock");
    let mut server = Server::start(&["echo", "--unix", path.as_str()]);
    assert_eq!(server.unix[0], path.0);
    let mut client = connect_unix(&path.0);
    client.write_all(b"over unix \x00\xff").unwrap();
    assert_eq!(read_n(&mut client, 12), b"over unix \x00\xff");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut client), b"");
    assert!(path.0.exists(), "socket file exists while serving");

    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{stderr}");
    assert!(!path.0.exists(), "socket file left behind after SIGTERM");
}

#[test]
fn unix_stale_socket_file_is_replaced() {
    let path = TempPath::new("stale.sock");
    drop(UnixListener::bind(&path.0).unwrap());
    assert!(path.0.exists(), "a dropped std listener leaves its file");
    let server = Server::start(&["upper", "--unix", path.as_str()]);
    let mut client = connect_unix(&server.unix[0]);
    client.write_all(b"stale").unwrap();
    assert_eq!(read_n(&mut client, 5), b"STALE");
}

#[test]
fn unix_path_with_live_listener_is_refused() {
    let path = TempPath::new("live.sock");
    let live = UnixListener::bind(&path.0).unwrap();
    let out = common::run_netloop(&["serve", "echo", "--unix", path.as_str()], b"");
    assert!(!out.status.success(), "serve must fail: {out:?}");
    assert!(
        out.stderr.contains(path.as_str()) && out.stderr.contains("listening"),
        "message should name the path and say another server listens: {}",
        out.stderr
    );
    // The other server's socket is untouched and still answers.
    assert!(path.0.exists());
    live.set_nonblocking(true).unwrap();
    while live.accept().is_ok() {} // the probe connection serve made
    let _c = UnixStream::connect(&path.0).expect("live listener still reachable");
    let (_s, _) = live.accept().expect("accept on the live listener");
}

#[test]
fn unix_path_that_is_a_regular_file_is_not_replaced() {
    let path = TempPath::new("regular");
    std::fs::write(&path.0, b"precious data").unwrap();
    let out = common::run_netloop(&["serve", "echo", "--unix", path.as_str()], b"");
    assert!(!out.status.success(), "serve must fail: {out:?}");
    assert!(
        out.stderr.contains(path.as_str()) && out.stderr.contains("not a socket"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&path.0).unwrap(), b"precious data");
}

// ---- IPv6 ----

#[test]
fn ipv6_loopback_tcp_and_udp() {
    if !common::ipv6_loopback_available() {
        eprintln!("no IPv6 loopback here ([::1]:0 does not bind): skipping");
        return;
    }
    let server = Server::start(&["hello", "--listen", "[::1]:0", "--udp", "[::1]:0"]);
    let addr = server.addr();
    assert!(addr.is_ipv6(), "{addr}");
    let mut client = connect_tcp(addr);
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");
    client.write_all(b"six\n").unwrap();
    assert_eq!(read_n(&mut client, 12), b"Hello, six!\n");

    let to = server.udp[0];
    assert!(to.is_ipv6(), "{to}");
    let socket = udp_client(to);
    assert_eq!(udp_exchange(&socket, to, b"six"), b"Hello, six!");

    // The client takes a bracketed IPv6 address.
    let out = common::run_netloop(&["client", &addr.to_string()], b"six\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"Welcome!\nHello, six!\n", "{}", out.stderr);
}

#[test]
fn ipv4_and_ipv6_side_by_side() {
    if !common::ipv6_loopback_available() {
        eprintln!("no IPv6 loopback here ([::1]:0 does not bind): skipping");
        return;
    }
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    assert_eq!(server.tcp.len(), 2);
    for addr in server.tcp.clone() {
        let mut client = connect_tcp(addr);
        let msg = format!("via {addr}");
        client.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_n(&mut client, msg.len()), msg.as_bytes());
    }
}

// ---- Every transport on one server ----

#[test]
fn all_transports_on_one_server() {
    let path = TempPath::new("all.sock");
    let mut server = Server::start(&[
        "upper",
        "--listen",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--unix",
        path.as_str(),
    ]);
    assert_eq!(
        (server.tcp.len(), server.udp.len(), server.unix.len()),
        (1, 1, 1)
    );
    // Hold a TCP and a Unix connection open and interleave them with UDP.
    let mut tcp = connect_tcp(server.addr());
    let mut unix = connect_unix(&server.unix[0]);
    let udp = udp_client(server.udp[0]);
    for round in 0..3 {
        let msg = format!("round {round} tcp");
        tcp.write_all(msg.as_bytes()).unwrap();
        let msg2 = format!("round {round} unix");
        unix.write_all(msg2.as_bytes()).unwrap();
        let msg3 = format!("round {round} udp");
        assert_eq!(
            udp_exchange(&udp, server.udp[0], msg3.as_bytes()),
            msg3.to_uppercase().as_bytes()
        );
        assert_eq!(
            read_n(&mut unix, msg2.len()),
            msg2.to_uppercase().as_bytes()
        );
        assert_eq!(read_n(&mut tcp, msg.len()), msg.to_uppercase().as_bytes());
    }
    drop(tcp);
    drop(unix);
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("accepted=2 "), "{stderr}");
    assert!(!path.0.exists(), "socket file left behind");
}

// ---- netloop client ----

#[test]
fn client_against_tcp_echo() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let out = common::run_netloop(&["client", &addr], b"hi\nthere\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi\nthere\n", "{}", out.stderr);
}

#[test]
fn client_against_tcp_hello() {
    let server = Server::start(&["hello", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let out = common::run_netloop(&["client", &addr], b"hi\nthere\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Welcome!\nHello, hi!\nHello, there!\n",
        "{}",
        out.stderr
    );

    // `exit` from the client: the server closes and the client ends by itself.
    let out = common::run_netloop(&["client", &addr], b"Michael\nexit\nignored\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Welcome!\nHello, Michael!\n",
        "{}",
        out.stderr
    );
}

#[test]
fn client_streams_one_mib_through_echo() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let input = common::pseudo_random_bytes(0xc11e, 1024 * 1024);
    let out = common::run_netloop(&["client", &addr], &input);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.len(), input.len(), "{}", out.stderr);
    assert!(out.stdout == input, "client output differs from its input");
}

/// 64 MiB through an echo server to a stdout the test reads in small pieces: the
/// client's memory stays far below what flows through (it stops reading the server while
/// its printer thread is behind, and stops reading stdin while the server is behind),
/// nothing deadlocks, and every byte comes back in order.
#[test]
fn client_with_a_slow_stdout_keeps_memory_bounded() {
    use std::process::{Command, Stdio};
    const SIZE: usize = 64 << 20;
    const BOUND_KB: u64 = 40 << 10;
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let mut child = Command::new(common::netloop_bin())
        .args(["client", &server.addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let byte = |i: usize| (i % 251) as u8;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..251 * 256).map(byte).collect();
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(chunk.len());
            if stdin.write_all(&chunk[..n]).is_err() {
                return; // the client is gone: the reader below reports it
            }
            left -= n;
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = child.stdout.take().unwrap();
    let (mut offset, mut peak) = (0usize, 0u64);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stdout.read(&mut buf).expect("read client stdout");
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert!(b == byte(offset + i), "byte {} came back wrong", offset + i);
        }
        offset += n;
        if let Some(kb) = rss_kb(pid) {
            peak = peak.max(kb);
        }
    }
    let _ = feeder.join();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("client did not exit after its output ended");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stderr = errors.join().unwrap_or_default();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(offset, SIZE, "every byte came back: {stderr}");
    assert!(peak < BOUND_KB, "client RSS reached {peak} KiB for 64 MiB");
}

/// Resident set size of a running process in KiB; None once it has exited.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn client_exits_when_server_closes_even_with_stdin_open() {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let server = Server::start(&["hello", "--listen", "127.0.0.1:0"]);
    let mut child = Command::new(common::netloop_bin())
        .args(["client", &server.addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep our end of stdin open for the whole test: only the server's close ends it.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"bob\nexit\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("client still running after the server closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    drop(stdin);
    assert!(status.success(), "{status:?}");
    assert_eq!(
        String::from_utf8_lossy(&reader.join().unwrap()),
        "Welcome!\nHello, bob!\n"
    );
}

#[test]
fn client_udp_prints_each_reply_on_its_own_line() {
    let server = Server::start(&["echo", "--udp", "127.0.0.1:0"]);
    let addr = server.udp[0].to_string();
    let out = common::run_netloop(&["client", &addr, "--udp", "--wait", "1"], b"hi\nthere\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi\nthere\n", "{}", out.stderr);

    // CRLF line ends are not part of the datagram.
    let out = common::run_netloop(&["client", &addr, "--udp", "--wait", "1"], b"a\r\nb\r\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"a\nb\n", "{}", out.stderr);

    // A last line without a newline is sent too.
    let server = Server::start(&["upper", "--udp", "127.0.0.1:0"]);
    let addr = server.udp[0].to_string();
    let out = common::run_netloop(&["client", &addr, "--udp", "--wait", "1"], b"one\ntwo");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"ONE\nTWO\n", "{}", out.stderr);
}

#[test]
fn client_over_unix_socket() {
    let path = TempPath::new("client.sock");
    let server = Server::start(&["upper", "--unix", path.as_str()]);
    let out = common::run_netloop(
        &["client", "--unix", server.unix[0].to_str().unwrap()],
        b"hi\nthere\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"HI\nTHERE\n", "{}", out.stderr);
}

#[test]
fn client_refused_port_fails_naming_the_address() {
    // A port that was just free: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = common::run_netloop(&["client", &addr], b"hi\n");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains(&addr),
        "error should name {addr}: {}",
        out.stderr
    );
}

#[test]
fn client_missing_unix_socket_fails_naming_the_path() {
    let path = TempPath::new("absent.sock");
    let out = common::run_netloop(&["client", "--unix", path.as_str()], b"hi\n");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(path.as_str()), "{}", out.stderr);
}

// ---- netloop resolve ----

#[test]
fn resolve_ip_literal_packed_and_integer() {
    let out = common::run_netloop(&["resolve", "61.135.169.125"], b"");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"packed: 3d87a97d"), "{text}");
    assert!(lines.contains(&"integer: 1032300925"), "{text}");
    assert!(lines.contains(&"version: 4"), "{text}");
}

#[test]
fn resolve_localhost_http() {
    let out = common::run_netloop(&["resolve", "localhost", "http"], b"");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("port 80\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("localhost: 127.") || l.starts_with("localhost: ::1 ")),
        "no loopback address: {text}"
    );
}

#[test]
fn resolve_unknown_service_fails() {
    let out = common::run_netloop(&["resolve", "localhost", "no-such-service-zz"], b"");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("no-such-service-zz"),
        "message should name the service: {}",
        out.stderr
    );
}
