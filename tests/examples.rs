//! The examples, run as real programs against each other: `select_echo_server` with
//! `echo_client`, `udp_server` with `udp_client`, and `upper_server` with a plain
//! `std::net` client; plus the two clients against nothing, to show they give up.
//!
//! Finding the binaries: cargo puts example binaries in `target/<profile>/examples/`, next
//! to the `deps/` directory holding this test binary. `cargo test` builds them, but
//! `cargo test --test examples` does not, and a binary left by an earlier build may be
//! stale. So the first test that needs one runs `cargo build --examples` once, with the
//! cargo that built this test (`env!("CARGO")`) and the same profile and target directory;
//! when the examples are up to date that is a quick no-op.
//!
//! Servers are given port 0 (the kernel picks a free port) and print `listening on ADDR`,
//! which tells the test the port to give the client. Every wait is bounded by `TIMEOUT`,
//! and each child is killed when its guard is dropped, even when an assertion fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits on.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The path of an example binary (built once per run).
fn example(name: &str) -> PathBuf {
    common::example_bin(name)
}

/// A running example; killed (if still running) when dropped.
struct Running {
    child: Child,
    /// Lines of its stdout, as they come.
    lines: mpsc::Receiver<String>,
    /// All of its stderr, once it exits.
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(example(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn example {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        }));
        Running {
            child,
            lines,
            stderr,
        }
    }

    /// Start a server example on port 0 and wait for its `listening on ADDR` line.
    #[track_caller]
    fn server(name: &str) -> (Running, SocketAddr) {
        let server = Running::start(name, &["0"]);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("{name} printed no `listening on` line");
            });
            if let Some((_, addr)) = line.split_once("listening on ") {
                return (server, addr.trim().parse().expect("listening address"));
            }
        }
    }

    /// Wait (bounded) for the program to exit; returns its status, stdout and stderr.
    #[track_caller]
    fn finish(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit within {TIMEOUT:?}");
            thread::sleep(Duration::from_millis(20));
        };
        // The pipes close at exit, so these end.
        let stderr = self.stderr.take().and_then(|h| h.join().ok());
        let stdout: Vec<String> = self.lines.iter().collect();
        (status, stdout.join("\n"), stderr.unwrap_or_default())
    }

    /// SIGTERM (the examples shut down cleanly on it), then `finish`.
    #[track_caller]
    fn terminate(self) -> (ExitStatus, String, String) {
        // SAFETY: kill(2) on our own child, which has not been waited for yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.finish()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn echo_client_against_select_echo_server() {
    let (server, addr) = Running::server("select_echo_server");
    let port = addr.port().to_string();
    let (status, out, err) = Running::start("echo_client", &[&port]).finish();
    assert!(status.success(), "echo_client failed: {err}\n{out}");
    for n in 1..=3 {
        assert!(out.contains(&format!("number {n}我收到了")), "{out}");
    }
    let (status, out, err) = server.terminate();
    assert!(status.success(), "select_echo_server failed: {err}\n{out}");
    assert!(out.contains(": number 3"), "{out}");
    assert!(out.contains("closed: closed by peer"), "{out}");
}

#[test]
fn udp_client_against_udp_server() {
    let (server, addr) = Running::server("udp_server");
    let port = addr.port().to_string();
    let (status, out, err) = Running::start("udp_client", &[&port]).finish();
    assert!(status.success(), "udp_client failed: {err}\n{out}");
    assert!(out.lines().any(|l| l == "bye"), "{out}");
    let (status, out, err) = server.terminate();
    assert!(status.success(), "udp_server failed: {err}\n{out}");
    assert!(out.contains(": hello"), "{out}");
}

#[test]
fn upper_server_upper_cases_like_bytes_upper() {
    let (server, addr) = Running::server("upper_server");
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let message = "hello, Wörld 1\n".as_bytes();
    client.write_all(message).expect("write");
    let mut reply = vec![0; message.len()];
    client.read_exact(&mut reply).expect("read reply");
    assert_eq!(reply, "HELLO, WöRLD 1\n".as_bytes());
    drop(client);
    let (status, out, err) = server.terminate();
    assert!(status.success(), "upper_server failed: {err}\n{out}");
    assert!(out.contains(": hello, Wörld 1"), "{out}");
}

#[test]
fn clients_give_up_without_a_server() {
    // A UDP port that is bound (so no ICMP error) but never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = silent.local_addr().expect("addr").port().to_string();
    let started = Instant::now();
    let (status, _, err) = Running::start("udp_client", &[&port]).finish();
    assert!(!status.success());
    assert!(err.contains("no reply"), "{err}");
    // A sentence for a person, not a Rust Debug dump.
    assert!(!err.contains("Custom {") && !err.contains("kind:"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "gave up too early"
    );

    // A TCP port with no listener: the connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let (status, _, err) = Running::start("echo_client", &[&port]).finish();
    assert!(!status.success());
    assert!(err.contains("refused"), "{err}");
}
