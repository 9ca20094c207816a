//! Helpers for the `netloop stress` test files: run the real binary with `--json` and read
//! its one JSON object back, check the report's shape, and small `std::net` servers
//! (a thread per connection) that behave as a test needs.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{netloop_bin, TIMEOUT};

// ---------------------------------------------------------------------------------------
// Running `netloop stress`
// ---------------------------------------------------------------------------------------

/// What one `netloop stress` run produced.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    /// The one JSON object on stdout (`None` when stdout was empty: an early error).
    pub json: Option<Value>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The report; panics (with stderr) when there is none.
    #[track_caller]
    pub fn report(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON report; stderr:\n{}", self.stderr))
    }

    /// An unsigned field of the report.
    #[track_caller]
    pub fn n(&self, key: &str) -> u64 {
        self.report()[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is not an unsigned number in {}", self.report()))
    }

    /// A field of `connect_errors`.
    #[track_caller]
    pub fn errors(&self, key: &str) -> u64 {
        self.report()["connect_errors"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("connect_errors.{key} missing in {}", self.report()))
    }

    /// A floating-point field of the report.
    #[track_caller]
    pub fn f(&self, key: &str) -> f64 {
        self.report()[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {}", self.report()))
    }
}

/// Run `netloop stress ARGS... --json` (at most `TIMEOUT`), with `adjust` applied to the
/// command first (e.g. an open-file limit), and check that stdout holds exactly one JSON
/// object on one line (or nothing).
#[track_caller]
pub fn stress_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Run {
    stress_full(args, adjust, |_| ()).0
}

/// Like `stress_with`, calling `during` with the stress process's pid once it runs (its
/// result is returned with the run).
#[track_caller]
pub fn stress_full<T>(
    args: &[&str],
    adjust: impl FnOnce(&mut Command),
    during: impl FnOnce(u32) -> T,
) -> (Run, T) {
    let mut cmd = Command::new(netloop_bin());
    cmd.arg("stress")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "netloop=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    adjust(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn netloop stress");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let during = during(child.id());
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netloop stress {args:?} did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    let text = String::from_utf8(stdout).expect("stdout is UTF-8");
    let json = if text.is_empty() {
        None
    } else {
        assert!(
            text.ends_with('\n') && text.trim_end().lines().count() == 1,
            "stdout must be exactly one line of JSON, got {text:?}"
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text:?}"));
        assert!(v.is_object(), "stdout JSON is not an object: {v}");
        Some(v)
    };
    let run = Run {
        status,
        json,
        stderr,
        elapsed,
    };
    (run, during)
}

#[track_caller]
pub fn stress(args: &[&str]) -> Run {
    stress_with(args, |_| {})
}

/// Every key the report promises, and the shape of its value.
#[track_caller]
pub fn assert_report_shape(v: &Value) {
    let obj = v.as_object().expect("object");
    for key in [
        "conns_requested",
        "conns_open",
        "closed_by_peer",
        "still_open_at_end",
        "active",
        "round_trips",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "mismatches",
        "unanswered",
        "client_rss_kb",
    ] {
        assert!(obj.get(key).is_some_and(Value::is_u64), "{key} in {v}");
    }
    for key in ["connect_secs", "hold_secs", "rps"] {
        assert!(
            obj.get(key)
                .and_then(Value::as_f64)
                .is_some_and(|x| x.is_finite() && x >= 0.0),
            "{key} in {v}"
        );
    }
    for key in [
        "client_rss_bytes_per_conn",
        "client_anon_bytes_per_conn",
        "server_rss_bytes_per_conn",
        "server_anon_bytes_per_conn",
    ] {
        assert!(
            obj.get(key).is_some_and(|x| x.is_null() || x.is_f64()),
            "{key} in {v}"
        );
    }
    assert!(
        obj.get("first_error")
            .is_some_and(|x| x.is_null() || x.is_string()),
        "first_error in {v}"
    );
    let errors = obj["connect_errors"].as_object().expect("connect_errors");
    let mut sum = 0;
    for key in ["refused", "timeout", "reset", "other"] {
        sum += errors
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("connect_errors.{key} in {v}"));
    }
    assert_eq!(
        errors["total"].as_u64(),
        Some(sum),
        "connect_errors.total in {v}"
    );
    let q = |k: &str| obj[k].as_u64().unwrap();
    assert!(
        q("p50_us") <= q("p90_us")
            && q("p90_us") <= q("p99_us")
            && q("p99_us") <= q("p999_us")
            && q("p999_us") <= q("max_us"),
        "percentiles out of order in {v}"
    );
    assert!(q("conns_open") <= q("conns_requested"), "{v}");
    assert!(q("conns_open") + sum <= q("conns_requested"), "{v}");
}

/// A failed run: non-zero status and `netloop stress: ...WHAT...` on stderr.
#[track_caller]
pub fn assert_failed_with(run: &Run, what: &str) {
    assert!(!run.status.success(), "expected failure, got {run:?}");
    assert!(
        run.stderr.contains("netloop stress:") && run.stderr.contains(what),
        "expected {what:?} in stderr:\n{}",
        run.stderr
    );
}

#[track_caller]
pub fn assert_succeeded(run: &Run) {
    assert!(
        run.status.success(),
        "netloop stress failed ({}): {}\n{:?}",
        run.status,
        run.stderr,
        run.json
    );
}

// ---------------------------------------------------------------------------------------
// Small servers written for these tests (std::net, a thread per connection)
// ---------------------------------------------------------------------------------------

/// A listener on 127.0.0.1 whose connections each get a thread running `handler`
/// (with the accept index). Stops accepting when dropped; connection threads end when
/// their peer closes (or after `TIMEOUT` without data).
pub struct ThreadServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl ThreadServer {
    pub fn start(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> ThreadServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let acceptor = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).expect("blocking");
                            stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                            let i = accepted.fetch_add(1, Ordering::SeqCst);
                            let handler = handler.clone();
                            thread::spawn(move || handler(stream, i));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(2))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        };
        ThreadServer {
            addr,
            stop,
            accepted,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Read until the peer closes (or the read times out), returning everything read.
pub fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Echo until the peer closes, counting the bytes received into `count`.
pub fn echo_counting(mut s: TcpStream, count: &AtomicU64) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn refused_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    drop(listener);
    addr
}
