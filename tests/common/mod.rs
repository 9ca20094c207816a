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
                    let err = server
                        .stderr
                        .take()
                        .and_then(|rx| rx.recv_timeout(TIMEOUT).ok());
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
        signal_child(&self.child, sig);
    }

    /// Wait (bounded) for the server to exit; returns its status and everything it wrote
    /// to stderr.
    #[track_caller]
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        wait_child(&mut self.child, &mut self.stderr, "server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send a signal to a child we started and have not waited for.
pub fn signal_child(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child, not yet waited for.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Wait (bounded) for a child to exit; returns its status and what its stderr reader
/// collected. Kills it and panics after `TIMEOUT`.
#[track_caller]
pub fn wait_child(
    child: &mut Child,
    stderr: &mut Option<mpsc::Receiver<String>>,
    what: &str,
) -> (ExitStatus, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let err = stderr
                .take()
                .and_then(|rx| rx.recv_timeout(TIMEOUT).ok())
                .unwrap_or_default();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
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
    unique_temp_path(name)
}

/// A temporary path unique within this test process (a counter, unlike `temp_path`,
/// whose time part can repeat), short enough for a Unix socket address.
pub fn unique_temp_path(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("netloop-t-{name}-{}-{n}", std::process::id()))
}

/// A path removed (if it exists) when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(name: &str) -> TempPath {
        TempPath(unique_temp_path(name))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh, empty directory unique within this test process; the test removes it.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = unique_temp_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make temp dir");
    dir
}

/// A fresh directory, removed with its contents when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        TempDir(fresh_dir(name))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// What a finished `netloop` command printed.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Run `program ARGS...` with `stdin` piped in (then closed), wait at most `TIMEOUT` for
/// it to exit on its own (killing it and panicking otherwise), and collect its output.
#[track_caller]
pub fn run_bounded(program: &std::path::Path, args: &[&str], stdin: &[u8]) -> RunOutput {
    run_bounded_env(program, args, stdin, &[])
}

/// Proxy variables (curl's names, both cases) cleared for every run: the tests talk to
/// loopback only, and `netloop fetch` follows these as curl does.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// `run_bounded`, with the proxy variables cleared and then `env` set.
#[track_caller]
pub fn run_bounded_env(
    program: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> RunOutput {
    use std::io::Write;
    let mut command = Command::new(program);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    let mut child = command
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The child may exit without reading everything (e.g. a refused connect).
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program:?} {args:?} did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    RunOutput {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Run `netloop ARGS...` like `run_bounded`.
#[track_caller]
pub fn run_netloop(args: &[&str], stdin: &[u8]) -> RunOutput {
    run_bounded(&netloop_bin(), args, stdin)
}

/// `netloop fetch ARGS...` with `stdin` and the environment `env` (after the proxy
/// variables are cleared), logging warnings only; bounded like `run_bounded`.
#[track_caller]
pub fn run_fetch(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> RunOutput {
    let mut all = vec!["fetch"];
    all.extend_from_slice(args);
    let mut env_all = vec![("RUST_LOG", "netloop=warn")];
    env_all.extend_from_slice(env);
    run_bounded_env(&netloop_bin(), &all, stdin, &env_all)
}

impl RunOutput {
    /// A `fetch --json` run's result lines, by URL: on stdout, or on stderr when stdout
    /// had a body. Other lines (a body, log lines) are skipped.
    #[track_caller]
    pub fn results(&self) -> std::collections::HashMap<String, serde_json::Value> {
        let stdout = String::from_utf8_lossy(&self.stdout);
        let text = if stdout.trim_start().starts_with('{') {
            stdout.into_owned()
        } else {
            self.stderr.clone()
        };
        text.lines()
            .filter(|l| l.starts_with('{'))
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}\nstderr: {}", self.stderr));
                (v["url"].as_str().unwrap_or_default().to_string(), v)
            })
            .collect()
    }

    /// The one result of a one-URL `fetch --json` run.
    #[track_caller]
    pub fn only(&self, url: &str) -> serde_json::Value {
        self.results()
            .remove(url)
            .unwrap_or_else(|| panic!("no result for {url}: {}", self.stderr))
    }
}

/// `len` pseudo-random bytes from a xorshift64* generator (deterministic per seed).
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Whether this machine can listen on IPv6 loopback.
pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Whether `python3` runs here.
pub fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The live (not zombie) child processes of `pid`, from
/// `/proc/PID/task/PID/children`, or by scanning every process's parent when the kernel
/// lacks that file.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let listed = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .or_else(|_| {
            std::fs::read_dir("/proc").map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&p| process_stat(p).is_some_and(|(_, ppid)| ppid == pid))
                    .collect()
            })
        })
        .unwrap_or_default();
    listed.into_iter().filter(|&p| process_alive(p)).collect()
}

/// State letter and parent pid of a process, from /proc/PID/stat.
fn process_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    process_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// How many sockets a process has open (its /proc/PID/fd links to `socket:[...]`).
pub fn socket_count(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Call `check` every 20 ms until it returns `Some`, for at most `timeout`.
pub fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Make the command start with at most `n` open files (soft and hard `RLIMIT_NOFILE`);
/// the limit is inherited by its children.
pub fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
    // nothing here allocates.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A blocking TCP client with read and write timeouts.
#[track_caller]
pub fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Read exactly `len` bytes (bounded by the stream's read timeout).
#[track_caller]
pub fn read_n(stream: &mut impl Read, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {len} bytes: {e}"));
    buf
}

/// Read until EOF (bounded by the stream's read timeout).
#[track_caller]
pub fn read_to_eof(stream: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("reading to EOF (got {buf:?}): {e}"));
    buf
}

/// The path of an example binary, built once per test run with the cargo and profile
/// that built this test (`cargo test --test X` does not build examples by itself).
pub fn example_bin(name: &str) -> PathBuf {
    use std::path::Path;
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // exe is target/<profile>/deps/<test>-<hash>.
        let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev", // the one profile whose directory has another name
            Some(name) => name,
            None => panic!("unexpected test binary path {}", exe.display()),
        };
        let mut cargo = Command::new(env!("CARGO"));
        // The variables cargo sets for a test (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...) would
        // look like a changed environment to build scripts (ring's), and cargo would
        // rebuild half the dependency tree on every test run.
        for (key, _) in std::env::vars() {
            if key.starts_with("CARGO_") && key != "CARGO_HOME" {
                cargo.env_remove(key);
            }
        }
        let status = cargo
            .args(["build", "--quiet", "--examples", "--profile", profile])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(profile_dir.parent().expect("target dir"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
        profile_dir.join("examples")
    });
    dir.join(name)
}

/// A running example server, started from its binary (`example_bin`) with `ARGS...`,
/// whose address came from its `listening on tcp ADDR` line; killed when dropped.
/// Its stdout keeps being read (and dropped) after that line, so it never blocks on a
/// full pipe; its stderr is collected for `wait_exit`.
pub struct ExampleServer {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Option<mpsc::Receiver<String>>,
}

impl ExampleServer {
    /// Start example `name` and wait (bounded) for its `listening on tcp ADDR` line.
    #[track_caller]
    pub fn start(name: &str, args: &[&str]) -> ExampleServer {
        let mut child = Command::new(example_bin(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn example {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let addr = line
                    .strip_prefix("listening on tcp ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = addr_tx.send(addr);
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        let mut server = ExampleServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: Some(err_rx),
        };
        match addr_rx.recv_timeout(TIMEOUT) {
            Ok(addr) => server.addr = addr,
            Err(_) => {
                let _ = server.child.kill();
                let (_, err) = server.wait_exit();
                panic!("example {name} {args:?} printed no `listening on tcp` line: {err}");
            }
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal to the server.
    pub fn signal(&self, sig: i32) {
        signal_child(&self.child, sig);
    }

    /// Wait (bounded) for the server to exit; returns its status and its stderr.
    #[track_caller]
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        wait_child(&mut self.child, &mut self.stderr, "example")
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
