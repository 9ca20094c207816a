//! Shared helpers for the integration tests: start the real `netloop` binary as a child
//! process on port 0, learn its addresses from its "listening on" lines, and clean up.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits on.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The netloop binary cargo built for these tests.
pub fn netloop_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netloop"))
}

/// A running `netloop serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub unix: Vec<PathBuf>,
    stderr: Option<mpsc::Receiver<String>>,
}

impl Server {
    /// Start `netloop serve ARGS...` and wait until it printed one "listening on" line
    /// per transport. Pass `--listen 127.0.0.1:0` (port 0) to avoid port clashes.
    #[track_caller]
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, |_| {})
    }

    /// Like `start`, with a hook to adjust the command (environment, rlimits...).
    #[track_caller]
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let expected = args
            .iter()
            .filter(|a| matches!(**a, "--listen" | "--udp" | "--unix"))
            .count()
            .max(1);
        let mut cmd = Command::new(netloop_bin());
        cmd.arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn netloop serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        let mut server = Server {
            child,
            tcp: Vec::new(),
            udp: Vec::new(),
            unix: Vec::new(),
            stderr: Some(err_rx),
        };
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = 0;
        while seen < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match line_rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = server.child.kill();
                    let err = server.stderr.take().and_then(|rx| rx.recv_timeout(TIMEOUT).ok());
                    panic!("netloop serve {args:?} did not start: {err:?}");
                }
            };
            let Some(rest) = line.strip_prefix("listening on ") else {
                continue;
            };
            seen += 1;
            let mut words = rest.split_whitespace();
            let kind = words.next().unwrap_or_default();
            let what = words.next().unwrap_or_default();
            match kind {
                "tcp" => server.tcp.push(what.parse().expect("tcp addr")),
                "udp" => server.udp.push(what.parse().expect("udp addr")),
                "unix" => server.unix.push(PathBuf::from(what)),
                _ => panic!("unexpected line {line}"),
            }
        }
        server
    }

    /// The first TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.tcp[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait (bounded) for the server to exit; returns its status and everything it wrote
    /// to stderr.
    #[track_caller]
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = self
                    .stderr
                    .take()
                    .and_then(|rx| rx.recv_timeout(TIMEOUT).ok())
                    .unwrap_or_default();
                return (status, err);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, in KiB (from /proc/PID/status).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// CPU time (user + system) a process used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

/// A unique temporary path for a socket file, removed by the caller.
pub fn temp_path(name: &str) -> PathBuf {
    let n = std::process::id();
    let t = Instant::now().elapsed().as_nanos();
    std::env::temp_dir().join(format!("netloop-test-{name}-{n}-{t}"))
}
