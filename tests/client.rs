//! `netloop client` as a user of nc meets it (issue 10): a server that never answers the
//! connect, a server that never replies, address errors, `-v`, half-close control
//! (`-N`, `--no-shutdown`), `-q`, `-w`; and `--record` on `client` and `fetch` (issue 14).
//!
//! Each test runs the real binary and checks its exit status and its message. The
//! servers that misbehave are made here, deterministically: a listener with backlog 0
//! whose queue is full (the kernel drops our SYN: the connect stays in SYN-SENT), a
//! listener that never accepts (the kernel completes the handshake and takes our bytes;
//! nobody reads them), and small threads that reply by rule. Timeouts are short only
//! where the outcome cannot depend on them; every run is bounded by `common::TIMEOUT`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{RunOutput, Server, TempPath, TIMEOUT};
use serde_json::Value;
use socket2::{Domain, Socket, Type};

/// Exit status 1: the run failed, and said why.
#[track_caller]
fn assert_fails_saying(out: &RunOutput, says: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for part in says {
        assert!(out.stderr.contains(part), "no {part:?} in: {}", out.stderr);
    }
}

/// A listener whose accept queue is full: connects to it stay in SYN-SENT. Backlog 0
/// holds one connection nobody accepts; each probe connect must then time out (the
/// kernel drops its SYN), which shows the queue is full. Keep it alive while used.
struct FullListener {
    addr: SocketAddr,
    _listener: Socket,
    _queued: Vec<TcpStream>,
}

fn full_listener() -> FullListener {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("an inet address");
    let mut queued = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            // The queue had room: this one waits in it too.
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return FullListener {
                    addr,
                    _listener: listener,
                    _queued: queued,
                };
            }
            Err(e) => panic!("probe connect to {addr}: {e}"),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[test]
fn a_server_that_never_accepts_is_a_connect_timeout_naming_the_address() {
    let full = full_listener();
    let addr = full.addr.to_string();
    for args in [["-w", "1"], ["--connect-timeout", "1"]] {
        let out = common::run_netloop(&["client", args[0], args[1], &addr], b"hi\n");
        assert_fails_saying(
            &out,
            &[&format!("no connection to {addr} within 1 s"), "-w"],
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

#[test]
fn input_sent_but_no_reply_is_a_failure_that_says_so() {
    // The kernel completes the handshake and takes the bytes; nobody ever reads them.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    let out = common::run_netloop(&["client", "--wait", "0.5", &addr], b"hi\n");
    assert_fails_saying(
        &out,
        &[
            &format!("sent 3 bytes to {addr} but no reply came"),
            "--wait",
        ],
    );
    // With -q the session ends that long after input ended: still no reply.
    let out = common::run_netloop(&["client", "-q", "0.5", &addr], b"hi\n");
    assert_fails_saying(
        &out,
        &["no reply came", "quit 0.5 s after input ended (-q)"],
    );
    // Asked to send nothing, connecting was all there was to do.
    let out = common::run_netloop(&["client", "--wait", "0.5", &addr], b"");
    assert!(out.status.success(), "{out:?}");

    // UDP says nothing when nobody listens: no reply is how a user learns it.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = udp.local_addr().expect("address").to_string();
    let out = common::run_netloop(&["client", "--udp", "--wait", "0.5", &addr], b"hi\n");
    assert_fails_saying(&out, &[&format!("sent 1 datagram to {addr} but no reply")]);
}

/// How many bytes the kernel takes on a Unix connection nobody reads (the sender's
/// socket buffer: no autotuning, unlike TCP), measured on a probe connection.
fn unix_absorbs(path: &std::path::Path) -> usize {
    let mut probe = std::os::unix::net::UnixStream::connect(path).expect("probe connect");
    probe.set_nonblocking(true).expect("nonblocking");
    let chunk = [0u8; 16 * 1024];
    let mut total = 0;
    for _ in 0..10_000 {
        match probe.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("probe write: {e}"),
        }
    }
    panic!("the kernel took {total} bytes nobody reads");
}

#[test]
fn input_the_server_never_reads_is_reported_unsent() {
    // A Unix listener that never accepts: the kernel takes what fits the socket buffer,
    // the rest stays in the client's queue.
    let path = TempPath::new("never-reads.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path.0).expect("bind unix");
    let absorbed = unix_absorbs(&path.0);
    // 128 KiB more than the kernel takes: what is queued never leaves. (Whether input
    // ends first, or standard input is paused first because the connect completed after
    // all of it was queued, the server must read some of it every --wait.)
    let input = vec![b'x'; absorbed + 128 * 1024];
    let out = common::run_netloop(
        &["client", "--unix", path.as_str(), "--wait", "0.5"],
        &input,
    );
    assert_fails_saying(
        &out,
        &[
            path.as_str(),
            "of input never sent",
            "the server read none of it for 0.5 s",
        ],
    );

    // Input that does not even fit the client's queue: standard input stays paused and
    // input never ends; -w (the idle timeout) ends the session before --wait would.
    let input = vec![b'x'; absorbed + (4 << 20)];
    let args = [
        "client",
        "--unix",
        path.as_str(),
        "-w",
        "0.5",
        "--wait",
        "10",
    ];
    let out = common::run_netloop(&args, &input);
    assert_fails_saying(
        &out,
        &[path.as_str(), "of input never sent", "(idle timeout)"],
    );

    // Without -w, the stalled input is what ends it: the client never waits for ever.
    let args = ["client", "--unix", path.as_str(), "--wait", "0.5"];
    let out = common::run_netloop(&args, &input);
    assert_fails_saying(
        &out,
        &[
            path.as_str(),
            "of input never sent",
            "the server read none of it for 0.5 s",
        ],
    );
}

#[test]
fn addresses_without_a_port_say_so_and_host_names_work() {
    for form in ["127.0.0.1", "[::1]", "::1", "localhost"] {
        let out = common::run_netloop(&["client", form], b"");
        assert_eq!(out.status.code(), Some(2), "{form}: {out:?}");
        assert!(
            out.stderr.contains(&format!("`{form}` has no port")),
            "{form}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("invalid socket address"),
            "{}",
            out.stderr
        );
    }
    let out = common::run_netloop(&["client", "127.0.0.1:99999"], b"");
    assert!(out.stderr.contains("0 to 65535"), "{}", out.stderr);

    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let by_name = format!("localhost:{}", server.addr().port());
    let out = common::run_netloop(&["client", &by_name], b"by name\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"by name\n");
}

#[test]
fn verbose_says_connected_and_closed() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    // (--wait 10: the server's close ends the session long before.)
    let out = common::run_netloop(&["client", "-v", "--wait", "10", &addr], b"hi\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi\n");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("connected to {addr}"),
            format!("{addr}: closed by the server; sent 3 bytes, received 3 bytes"),
        ],
        "{}",
        out.stderr
    );
    // A host name is shown with the address it resolved to.
    let by_name = format!("localhost:{}", server.addr().port());
    let out = common::run_netloop(&["client", "-v", "--wait", "10", &by_name], b"x\n");
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("connected to {by_name} ({})", server.addr())),
        "{}",
        out.stderr
    );
    // Without -v, a successful run says nothing on stderr.
    let out = common::run_netloop(&["client", "--wait", "10", &addr], b"hi\n");
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}

/// A server for one connection that answers only once it reads EOF: `eof after N
/// bytes`. Whether it ever answers shows whether the client half-closed.
fn answers_at_eof() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let thread = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let _ = conn.set_read_timeout(Some(TIMEOUT));
        let mut got = Vec::new();
        if conn.read_to_end(&mut got).is_ok() {
            let _ = conn.write_all(format!("eof after {} bytes\n", got.len()).as_bytes());
        }
    });
    (addr, thread)
}

#[test]
fn input_end_half_closes_by_default_and_not_with_no_shutdown() {
    for flags in [&[][..], &["-N"][..]] {
        let (addr, server) = answers_at_eof();
        let mut args = vec!["client", "--wait", "10"];
        args.extend_from_slice(flags);
        let addr = addr.to_string();
        args.push(&addr);
        let out = common::run_netloop(&args, b"hi\n");
        assert!(out.status.success(), "{flags:?}: {out:?}");
        assert_eq!(out.stdout, b"eof after 3 bytes\n", "{flags:?}");
        server.join().expect("server thread");
    }

    // Without the half-close the server waits for more input, so no reply comes; -q
    // ends the session, and the exit status says nothing came back.
    let (addr, server) = answers_at_eof();
    let addr = addr.to_string();
    let out = common::run_netloop(&["client", "--no-shutdown", "-q", "0.5", &addr], b"hi\n");
    assert_fails_saying(&out, &["no reply came", "(-q)"]);
    assert!(out.stdout.is_empty(), "{out:?}");
    server.join().expect("server thread");
}

/// Run the client with standard input piped, writing `input` first; `then` gets its
/// stdout and stdin once the child runs, and may give stdin back to hold it open until
/// the child exits; returns the exit status and stderr.
fn run_with_open_stdin(
    args: &[&str],
    input: &[u8],
    then: impl FnOnce(&mut ChildStdout, ChildStdin) -> Option<ChildStdin>,
) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(common::netloop_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let _held = then(&mut stdout, stdin);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netloop {args:?} did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, errors.join().unwrap_or_default())
}

#[test]
fn quit_after_input_ends_even_if_the_server_stays() {
    // The server greets at once and then keeps the connection open for ever.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let _ = conn.write_all(b"hello\n");
        let _ = conn.set_read_timeout(Some(TIMEOUT));
        let _ = conn.read_to_end(&mut Vec::new());
    });
    // The greeting is printed before input ends, so a reply came; then only -q can end
    // the session (--wait 60 would outlast the test's bound).
    let (status, stderr) = run_with_open_stdin(
        &["client", "-q", "0.2", "--wait", "60", &addr],
        b"",
        |stdout, stdin| {
            let mut greeting = [0u8; 6];
            stdout.read_exact(&mut greeting).expect("read greeting");
            assert_eq!(&greeting, b"hello\n");
            drop(stdin);
            None
        },
    );
    assert!(status.success(), "{status:?}: {stderr}");
    server.join().expect("server thread");
}

#[test]
fn idle_timeout_with_input_open_and_no_reply_fails() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    let (status, stderr) =
        // Input stays open until the client is gone: only the idle timeout ends it.
        run_with_open_stdin(&["client", "-w", "0.5", &addr], b"hi\n", |_, stdin| Some(stdin));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no reply came: nothing sent or received for 0.5 s (idle timeout)"),
        "{stderr}"
    );
}

// ---- --record ----

/// The recorded lines, each parsed (the test fails on a line that is not JSON).
#[track_caller]
fn recorded(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read the record");
    assert!(text.ends_with('\n'), "the record ends mid-line");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The kinds of events recorded for the connection whose `connected` line names `peer`.
#[track_caller]
fn kinds_for(events: &[Value], peer: &str) -> Vec<String> {
    let conn = events
        .iter()
        .find(|e| e["kind"] == "connected" && e["peer"] == peer)
        .unwrap_or_else(|| panic!("no connected line for {peer}: {events:#?}"))["conn"]
        .clone();
    events
        .iter()
        .filter(|e| e["conn"] == conn)
        .filter_map(|e| e["kind"].as_str().map(String::from))
        .collect()
}

#[test]
fn client_records_its_loop_as_json_lines() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let record = TempPath::new("client-record.jsonl");
    let out = common::run_netloop(
        &["client", "--record", record.as_str(), "--wait", "10", &addr],
        b"hi\n",
    );
    assert!(out.status.success(), "{out:?}");
    let events = recorded(&record.0);
    assert!(events.iter().any(|e| e["kind"] == "poll"), "{events:#?}");
    let kinds = kinds_for(&events, &addr);
    for kind in ["connected", "write", "read", "eof", "closed"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind}: {kinds:?}");
    }
    let read: u64 = events
        .iter()
        .filter(|e| e["kind"] == "read" && e["conn"] != Value::Null)
        .filter_map(|e| e["bytes"].as_u64())
        .sum();
    assert!(read >= 6, "stdin's 3 bytes and the server's 3: {read}");

    // A run that fails still leaves a finished record: the failed connect is in it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let refused = format!("127.0.0.1:{port}");
    let record = TempPath::new("client-refused.jsonl");
    let out = common::run_netloop(&["client", "--record", record.as_str(), &refused], b"hi\n");
    assert_fails_saying(&out, &[&refused]);
    let events = recorded(&record.0);
    assert!(
        events.iter().any(|e| e["kind"] == "closed"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("connect failed"))),
        "{events:#?}"
    );
}

/// A one-connection HTTP server: reads a request head, answers `hello` and closes.
fn http_once() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let thread = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let _ = conn.set_read_timeout(Some(TIMEOUT));
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    });
    (addr, thread)
}

#[test]
fn fetch_records_its_loop_as_json_lines() {
    let (addr, server) = http_once();
    let record = TempPath::new("fetch-record.jsonl");
    let url = format!("http://{addr}/");
    let out = common::run_netloop(&["fetch", "--record", record.as_str(), &url], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hello");
    server.join().expect("server thread");
    let kinds = kinds_for(&recorded(&record.0), &addr.to_string());
    for kind in ["connected", "write", "read", "closed"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind}: {kinds:?}");
    }

    // A failed fetch (nothing listens) still finishes its record.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let record = TempPath::new("fetch-refused.jsonl");
    let url = format!("http://127.0.0.1:{port}/");
    let out = common::run_netloop(&["fetch", "--record", record.as_str(), &url], b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let events = recorded(&record.0);
    assert!(events.iter().any(|e| e["kind"] == "closed"), "{events:#?}");
}
