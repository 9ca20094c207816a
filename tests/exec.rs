//! `netloop serve exec` and `netloop exec`, over real loopback sockets, with real child
//! processes: byte-exact output (also to a client that behaves like seed 004's), every
//! refusal, every limit, authentication, and the processes: none left running, none
//! left a zombie (checked in /proc).
//!
//! Every wait is bounded (`wait_until`, read timeouts). Where a test needs to know that
//! the server has *read* a request before the next is sent, it looks at the kernel's
//! receive queue of the server's socket (/proc/net/tcp) rather than sleeping.

mod common;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    child_pids, connect, process_alive, python3_available, read_n, read_to_eof, rss_kb,
    run_netloop, wait_until, Server, TIMEOUT,
};
use netloop::proto::frames;
use netloop::proto::hmac_auth::Secret;
use netloop::services::exec::reply::ReplyHeader;

/// The programs the test servers allow.
const ALLOWED: &[&str] = &[
    "/bin/echo",
    "/bin/cat",
    "/usr/bin/printf",
    "/bin/sleep",
    "/usr/bin/head",
    "/usr/bin/env",
    "/bin/true",
    "/usr/bin/touch",
    "/bin/sh",
    "/bin/date",
    "/bin/pwd",
    "/bin/ls",
];

/// A scratch directory: `work/` (the children's `--dir`, holding `fixture.txt`), the
/// allow file and the secret; removed when dropped.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root = common::unique_temp_path(&format!("exec-{name}"));
        fs::create_dir_all(root.join("work")).expect("scratch dir");
        fs::write(root.join("work/fixture.txt"), "line one\nline two: 中文\n").expect("fixture");
        fs::write(root.join("allow"), ALLOWED.join("\n") + "\n").expect("allow file");
        fs::write(root.join("secret"), "egg\n").expect("secret");
        Scratch { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// `serve exec` on a free loopback port with the scratch allow file and `--dir`.
#[track_caller]
fn start(scratch: &Scratch, extra: &[&str]) -> Server {
    start_with(scratch, extra, |_| {})
}

#[track_caller]
fn start_with(scratch: &Scratch, extra: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
    let (allow, dir) = (scratch.arg("allow"), scratch.arg("work"));
    let mut args = vec![
        "exec",
        "--listen",
        "127.0.0.1:0",
        "--allow",
        &allow,
        "--dir",
        &dir,
    ];
    if !extra.contains(&"--secret-file") {
        args.push("--no-auth");
    }
    args.extend_from_slice(extra);
    Server::start_with(&args, adjust)
}

/// One reply: its header and its body.
#[derive(Debug)]
struct Reply {
    header: ReplyHeader,
    body: Vec<u8>,
}

impl Reply {
    fn stdout(&self) -> &[u8] {
        &self.body[..self.header.stdout_size as usize]
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.body[self.header.stdout_size as usize..]).into_owned()
    }
}

#[track_caller]
fn read_reply(stream: &mut TcpStream) -> Reply {
    let prefix = read_n(stream, 4);
    let len = i32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let json = read_n(stream, usize::try_from(len).expect("header length"));
    let obj = frames::parse_object(&json).expect("header JSON");
    let header = ReplyHeader::from_object(&obj).expect("reply header");
    let body = read_n(stream, header.file_size as usize);
    Reply { header, body }
}

/// Send one command line (with its newline) and read its reply.
#[track_caller]
fn ask(stream: &mut TcpStream, line: &[u8]) -> Reply {
    let mut message = line.to_vec();
    message.push(b'\n');
    stream.write_all(&message).expect("send command");
    read_reply(stream)
}

#[track_caller]
fn assert_ran(reply: &Reply, stdout: &[u8]) {
    assert_eq!(reply.header.error, None, "refused: {}", reply.stderr());
    assert_eq!(reply.header.exit_code, Some(0), "{reply:?}");
    let shown = String::from_utf8_lossy(&reply.stdout()[..reply.stdout().len().min(300)]);
    assert!(
        reply.stdout() == stdout,
        "stdout differs: {:?}: {shown:?}",
        reply.header
    );
}

#[track_caller]
fn assert_refused(reply: &Reply, contains: &str) {
    let error = reply.header.error.as_deref().unwrap_or_else(|| {
        panic!("not refused: {reply:?}");
    });
    assert!(
        error.contains(contains),
        "error {error:?} lacks {contains:?}"
    );
    assert_eq!(reply.header.exit_code, None);
    assert_eq!(reply.stderr(), format!("{error}\n"));
}

/// Children of `pid` that exited but were not reaped.
fn zombie_children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let Some(after) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|f| f.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .collect()
}

#[track_caller]
fn assert_no_children_left(server: &Server) {
    let pid = server.pid();
    let left = wait_until(TIMEOUT, || child_pids(pid).is_empty().then_some(()));
    assert!(
        left.is_some(),
        "children still running: {:?}",
        child_pids(pid)
    );
    // A child that just died is a zombie until the server's loop handles its SIGCHLD:
    // wait (bounded) for that, then there must be none.
    let _ = wait_until(TIMEOUT, || zombie_children(pid).is_empty().then_some(()));
    assert_eq!(zombie_children(pid), Vec::<u32>::new(), "zombies left");
}

/// Bytes the server has not read yet from the connection of `client` (its socket's
/// receive queue in /proc/net/tcp), if the socket is found.
fn server_unread(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    fn hex(addr: SocketAddr) -> Option<String> {
        let SocketAddr::V4(a) = addr else { return None };
        let ip = u32::from_le_bytes(a.ip().octets());
        Some(format!("{ip:08X}:{:04X}", a.port()))
    }
    let (local, remote) = (hex(server)?, hex(client)?);
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&local.as_str()) || f.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let rx = f.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Send a line and wait until the server has read it (it then acts on it at once).
#[track_caller]
fn send_and_wait_read(stream: &mut TcpStream, server: SocketAddr, line: &str) {
    stream.write_all(line.as_bytes()).expect("send");
    let me = stream.local_addr().expect("local addr");
    let read = wait_until(TIMEOUT, || (server_unread(server, me)? == 0).then_some(()));
    assert!(read.is_some(), "the server did not read {line:?}");
}

// ----- output -------------------------------------------------------------------------

#[test]
fn seed004s_client_gets_the_exact_output() {
    if !python3_available() {
        eprintln!("skipped: python3 not available");
        return;
    }
    let scratch = Scratch::new("seed");
    let server = start(&scratch, &[]);
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed004_command_client.py");
    let addr = server.addr();
    // Sent unframed and without a newline, as the seed sends them: each is a message
    // because the seed then waits for the reply (the end of a read burst).
    let commands = "ls\necho hello world\n\ncat fixture.txt\nprintf '%5242879s' x\n";
    let out = common::run_bounded(
        Path::new("python3"),
        &[
            fixture.to_str().unwrap(),
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ],
        commands.as_bytes(),
    );
    assert!(out.status.success(), "fixture failed: {}", out.stderr);
    let mut big = vec![b' '; 5 * 1024 * 1024 - 2];
    big.push(b'x');
    let expected: [&[u8]; 4] = [
        b"fixture.txt\n",
        b"hello world\n",
        "line one\nline two: 中文\n".as_bytes(),
        &big,
    ];
    let mut rest = &out.stdout[..];
    for want in expected {
        let end = rest.iter().position(|&b| b == b'\n').expect("header line");
        let line = std::str::from_utf8(&rest[..end]).expect("utf-8 header line");
        let json = line.strip_prefix("header ").expect("header prefix");
        let value: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(value["file_size"], want.len(), "{json}");
        assert_eq!(value["exit_code"], 0, "{json}");
        assert_eq!(value["truncated"], false, "{json}");
        rest = &rest[end + 1..];
        assert!(&rest[..want.len()] == want, "body differs after {json}");
        rest = &rest[want.len() + 1..];
    }
    assert!(rest.is_empty(), "unexpected trailing output");
    assert_no_children_left(&server);
}

#[test]
fn netloop_exec_passes_on_output_streams_and_status() {
    let scratch = Scratch::new("client");
    let server = start(&scratch, &[]);
    let addr = server.addr().to_string();
    let out = run_netloop(
        &[
            "exec",
            &addr,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert_eq!(out.stdout, b"out\n");
    assert!(out.stderr.contains("err\n"), "{}", out.stderr);
    // Words reach the program as typed, shell syntax included.
    let out = run_netloop(&["exec", &addr, "--", "echo", "a;b", "$(id)", "it's"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, b"a;b $(id) it's\n");
    let out = run_netloop(&["exec", &addr, "--", "rm", "-rf", "/"], b"");
    assert_eq!(out.status.code(), Some(126));
    assert!(
        out.stderr.contains("`rm` is not an allowed program"),
        "{}",
        out.stderr
    );
    // Interactive: a command per line, replies in order, the last one's status.
    let out = run_netloop(&["exec", &addr], b"echo one\n\necho two\nsh -c 'exit 5'\n");
    assert_eq!(out.stdout, b"one\ntwo\n");
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    // Its own failures are 255.
    let out = run_netloop(&["exec", "127.0.0.1:1", "--", "true"], b"");
    assert_eq!(out.status.code(), Some(255));
    assert_no_children_left(&server);
}

#[test]
fn the_child_gets_a_clean_environment_no_stdin_and_its_dir() {
    let scratch = Scratch::new("env");
    let server = start_with(&scratch, &["--env", "NETLOOP_TEST_PASSED"], |cmd| {
        cmd.env("NETLOOP_TEST_PASSED", "yes")
            .env("NETLOOP_TEST_SECRET", "must not leak");
    });
    let mut stream = connect(server.addr());
    let path = std::env::var("PATH").unwrap_or_default();
    let env = ask(&mut stream, b"env");
    assert_eq!(env.header.exit_code, Some(0));
    let mut vars: Vec<String> = String::from_utf8_lossy(env.stdout())
        .lines()
        .map(str::to_string)
        .collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "NETLOOP_TEST_PASSED=yes".to_string(),
            format!("PATH={path}")
        ]
    );
    let dir = fs::canonicalize(scratch.path("work")).expect("dir");
    assert_ran(
        &ask(&mut stream, b"pwd"),
        format!("{}\n", dir.display()).as_bytes(),
    );
    // `cat` with no file reads stdin: /dev/null, so it ends at once with nothing.
    assert_ran(&ask(&mut stream, b"cat"), b"");
    assert_no_children_left(&server);
}

// ----- refusals -----------------------------------------------------------------------

#[test]
fn refused_requests_get_an_error_reply_and_nothing_runs() {
    let scratch = Scratch::new("refuse");
    let server = start(&scratch, &[]);
    let marker = scratch.path("marker");
    let m = marker.to_str().unwrap();
    let mut stream = connect(server.addr());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("mkdir {m}").into_bytes(),
            "`mkdir` is not an allowed program",
        ),
        (
            format!("echo hi; touch {m}").into_bytes(),
            "';' is shell syntax",
        ),
        (
            format!("echo hi && touch {m}").into_bytes(),
            "'&' is shell syntax",
        ),
        (format!("$(touch {m})").into_bytes(), "'$' is shell syntax"),
        (
            format!("echo `touch {m}`").into_bytes(),
            "'`' is shell syntax",
        ),
        (format!("echo x > {m}").into_bytes(), "'>' is shell syntax"),
        (
            format!("../../usr/bin/touch {m}").into_bytes(),
            "not an allowed program",
        ),
        (
            format!("/tmp/touch {m}").into_bytes(),
            "not an allowed program",
        ),
        (
            format!("/usr/local/bin/touch {m}").into_bytes(),
            "not an allowed program",
        ),
        (b"".to_vec(), "empty command"),
        (b"   ".to_vec(), "empty command"),
        (
            [format!("touch {m} ").as_bytes(), b"\xff\xfe"].concat(),
            "not UTF-8",
        ),
        (format!("touch '{m}").into_bytes(), "unterminated quote"),
    ];
    for (line, why) in &cases {
        let reply = ask(&mut stream, line);
        assert_refused(&reply, why);
    }
    // A 1 MiB line: skipped as it arrives, then one error reply.
    let mut long = format!("touch {m} ").into_bytes();
    long.resize(1024 * 1024, b'a');
    assert_refused(&ask(&mut stream, &long), "over the limit");
    // The same connection, and the server, go on.
    assert_ran(&ask(&mut stream, b"echo still here"), b"still here\n");
    let mut other = connect(server.addr());
    assert_ran(&ask(&mut other, b"echo another"), b"another\n");
    assert!(!marker.exists(), "a refused command ran");
    assert_no_children_left(&server);
}

// ----- limits -------------------------------------------------------------------------

#[test]
fn a_command_past_its_timeout_is_killed_and_reaped() {
    let scratch = Scratch::new("timeout");
    let server = start(&scratch, &["--timeout", "1"]);
    let mut stream = connect(server.addr());
    let started = Instant::now();
    let reply = ask(&mut stream, b"sleep 60");
    let took = started.elapsed();
    eprintln!("sleep 60 with --timeout 1: reply after {took:?}");
    assert!(reply.header.timed_out, "{reply:?}");
    assert_eq!(reply.header.signal, Some(libc::SIGTERM));
    assert!(took < Duration::from_secs(10), "reply took {took:?}");
    assert_eq!(zombie_children(server.pid()), Vec::<u32>::new());
    // A command that ignores SIGTERM (and passes that on to its child) gets SIGKILL.
    let reply = ask(
        &mut stream,
        b"sh -c 'trap \"\" TERM; echo started; sleep 60'",
    );
    assert!(reply.header.timed_out, "{reply:?}");
    assert_eq!(reply.header.signal, Some(libc::SIGKILL));
    assert_eq!(reply.stdout(), b"started\n", "what it printed comes back");
    assert_no_children_left(&server);
}

#[test]
fn output_past_the_limit_is_truncated_and_the_command_killed() {
    let scratch = Scratch::new("truncate");
    let server = start(&scratch, &["--max-output", "1M"]);
    let mut stream = connect(server.addr());
    let reply = ask(&mut stream, b"head -c 1073741824 /dev/zero");
    assert!(reply.header.truncated, "{reply:?}");
    assert_eq!(reply.header.file_size, 1024 * 1024);
    assert!(reply.body.iter().all(|&b| b == 0));
    assert_eq!(reply.header.exit_code, None, "killed, not exited");
    let rss = rss_kb(server.pid());
    eprintln!("server RSS after a 1 GiB command capped at 1 MiB: {rss} KiB");
    assert!(rss < 32 * 1024, "server RSS {rss} KiB");
    assert_ran(&ask(&mut stream, b"echo next"), b"next\n");
    assert_no_children_left(&server);
}

#[test]
fn requests_wait_for_a_free_child_in_arrival_order() {
    let scratch = Scratch::new("order");
    let server = start(&scratch, &["--max-children", "1", "--timeout", "2"]);
    let addr = server.addr();
    // The one child slot is taken until the blocker's time limit.
    let mut blocker = connect(addr);
    send_and_wait_read(&mut blocker, addr, "sleep 60\n");
    let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
    for client in &mut clients {
        send_and_wait_read(client, addr, "date +%s%N\n");
    }
    assert!(read_reply(&mut blocker).header.timed_out);
    let mut started = Vec::new();
    for client in &mut clients {
        let reply = read_reply(client);
        assert_eq!(reply.header.exit_code, Some(0), "{reply:?}");
        let text = String::from_utf8_lossy(reply.stdout()).trim().to_string();
        started.push(text.parse::<u128>().expect("date +%s%N"));
    }
    let mut sorted = started.clone();
    sorted.sort_unstable();
    assert_eq!(started, sorted, "not run in arrival order");
    assert_no_children_left(&server);
}

#[test]
fn fifty_clients_share_four_children() {
    let scratch = Scratch::new("fifty");
    let server = start(&scratch, &["--max-children", "4"]);
    let addr = server.addr();
    let mut clients: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let line = format!("sh -c 'sleep 0.1; echo {i}'\n");
        client.write_all(line.as_bytes()).expect("send");
    }
    // Sample the children while they run: never more than four.
    let pid = server.pid();
    let sampler = std::thread::spawn(move || {
        let mut most = 0;
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            let n = child_pids(pid).len();
            most = most.max(n);
            if n == 0 && most > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        most
    });
    for (i, client) in clients.iter_mut().enumerate() {
        assert_ran(&read_reply(client), format!("{i}\n").as_bytes());
    }
    let most = sampler.join().expect("sampler");
    eprintln!("most children seen at once: {most}");
    assert!(most <= 4, "{most} children at once with --max-children 4");
    assert_no_children_left(&server);
}

/// Where a process is blocked in the kernel (/proc/PID/wchan).
fn wchan(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

#[test]
fn a_client_that_does_not_read_blocks_its_next_command_not_the_server() {
    let scratch = Scratch::new("backpressure");
    let server = start(&scratch, &["--max-output", "128M", "--timeout", "60"]);
    let mut stream = connect(server.addr());
    // Two commands at once, and no reading: the first reply fills the queue, so the
    // second command's pipe is left unread and it blocks writing to it.
    stream
        .write_all(b"head -c 16777216 /dev/zero\nhead -c 104857600 /dev/zero\n")
        .expect("send");
    let pid = server.pid();
    let blocked = wait_until(TIMEOUT, || {
        let children = child_pids(pid);
        let child = *children.first()?;
        let args = fs::read_to_string(format!("/proc/{child}/cmdline")).ok()?;
        (args.contains("104857600") && wchan(child).contains("pipe_write")).then_some(child)
    });
    let rss = rss_kb(pid);
    eprintln!("server RSS with a 16 MiB reply unread and a 100 MiB command blocked: {rss} KiB");
    assert!(
        blocked.is_some(),
        "the second command never blocked on its pipe"
    );
    assert!(rss < 64 * 1024, "server RSS {rss} KiB");
    // Reading resumes everything: both replies whole.
    let first = read_reply(&mut stream);
    assert_eq!(
        (first.header.file_size, first.header.exit_code),
        (16 << 20, Some(0))
    );
    let second = read_reply(&mut stream);
    assert_eq!(
        (second.header.file_size, second.header.exit_code),
        (100 << 20, Some(0))
    );
    assert!(second.body.iter().all(|&b| b == 0));
    assert_no_children_left(&server);
}

#[test]
fn a_huge_reply_to_a_client_that_never_reads_keeps_the_server_small() {
    let scratch = Scratch::new("never");
    let server = start(&scratch, &[]);
    let mut stream = connect(server.addr());
    stream
        .write_all(b"head -c 104857600 /dev/zero\n")
        .expect("send");
    // The command is cut at the default --max-output (16 MiB) and killed; its reply
    // starts only once it is reaped, and then waits, mostly in the service's 16 MiB.
    let mut first = [0u8; 1];
    assert_eq!(stream.peek(&mut first).expect("reply starts"), 1);
    let pid = server.pid();
    assert_no_children_left(&server);
    let rss = rss_kb(pid);
    eprintln!("server RSS with a 16 MiB reply unread: {rss} KiB");
    assert!(rss < 48 * 1024, "server RSS {rss} KiB");
    let reply = read_reply(&mut stream);
    assert!(reply.header.truncated);
    assert_eq!(reply.header.file_size, 16 << 20);
}

// ----- processes ----------------------------------------------------------------------

#[test]
fn a_client_that_disconnects_has_its_command_killed() {
    let scratch = Scratch::new("gone");
    let server = start(&scratch, &[]);
    let mut stream = connect(server.addr());
    stream.write_all(b"sleep 60\n").expect("send");
    let pid = server.pid();
    let child = wait_until(TIMEOUT, || child_pids(pid).first().copied()).expect("child");
    let closed = Instant::now();
    drop(stream);
    let killed = wait_until(TIMEOUT, || (!process_alive(child)).then_some(()));
    eprintln!(
        "child killed {:?} after the client closed",
        closed.elapsed()
    );
    assert!(killed.is_some(), "child {child} outlived its client");
    assert_no_children_left(&server);
}

#[test]
fn sigterm_kills_and_reaps_every_child() {
    let scratch = Scratch::new("sigterm");
    let mut server = start(&scratch, &[]);
    let pid = server.pid();
    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(server.addr())).collect();
    for client in &mut clients {
        client.write_all(b"sleep 60\n").expect("send");
    }
    let children = wait_until(TIMEOUT, || {
        let c = child_pids(pid);
        (c.len() == 10).then_some(c)
    })
    .expect("10 children");
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        stderr.contains("authentication is off"),
        "no --no-auth warning: {stderr}"
    );
    assert!(
        stderr.contains("10 children were running") && stderr.contains("0 could not be reaped"),
        "{stderr}"
    );
    for child in children {
        assert!(!process_alive(child), "child {child} survived the server");
    }
    for mut client in clients {
        // Each connection was closed, without a reply.
        let rest = read_to_eof(&mut client);
        assert!(rest.is_empty(), "unexpected reply after SIGTERM");
    }
}

// ----- authentication -----------------------------------------------------------------

#[test]
fn authentication_is_required_and_checked() {
    let scratch = Scratch::new("auth");
    let secret = scratch.arg("secret");
    let server = start(&scratch, &["--secret-file", &secret]);
    let addr = server.addr();
    // A wrong answer: an error reply, then the connection closes; nothing runs.
    let mut stream = connect(addr);
    let _challenge = read_n(&mut stream, 32);
    stream.write_all(&[0u8; 32]).expect("answer");
    stream.write_all(b"echo never\n").expect("command");
    let reply = read_reply(&mut stream);
    assert_refused(&reply, "authentication failed");
    assert!(read_to_eof(&mut stream).is_empty());
    // The right answer (HMAC-SHA256 of the challenge with the secret).
    let mut stream = connect(addr);
    let challenge = read_n(&mut stream, 32);
    let key = Secret::new(b"egg".to_vec()).expect("secret");
    stream.write_all(&key.answer(&challenge)).expect("answer");
    assert_ran(&ask(&mut stream, b"echo welcome"), b"welcome\n");
    // netloop exec with and without the secret.
    let addr = addr.to_string();
    let out = run_netloop(
        &["exec", &addr, "--secret-file", &secret, "--", "echo", "ok"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, b"ok\n");
    let out = run_netloop(&["exec", &addr, "--timeout", "5", "--", "echo", "ok"], b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        out.stderr.contains("--secret-file"),
        "no hint: {}",
        out.stderr
    );
    assert_no_children_left(&server);
}

#[test]
fn serve_exec_refuses_unsafe_or_incomplete_options() {
    let scratch = Scratch::new("options");
    let (allow, secret) = (scratch.arg("allow"), scratch.arg("secret"));
    let refused = |args: &[&str], why: &str| {
        let mut all = vec!["serve", "exec"];
        all.extend_from_slice(args);
        let out = run_netloop(&all, b"");
        assert!(!out.status.success(), "{args:?} started");
        assert!(out.stderr.contains(why), "{args:?}: {}", out.stderr);
    };
    refused(
        &["--listen", "127.0.0.1:0", "--allow", &allow],
        "needs --secret-file",
    );
    refused(
        &["--listen", "0.0.0.0:0", "--allow", &allow, "--no-auth"],
        "--no-auth is refused on 0.0.0.0:0",
    );
    refused(&["--listen", "127.0.0.1:0", "--no-auth"], "needs --allow");
    refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--allow",
            &allow,
            "--secret-file",
            &secret,
            "--no-auth",
        ],
        "contradict",
    );
    refused(
        &["--udp", "127.0.0.1:0", "--allow", &allow, "--no-auth"],
        "not UDP",
    );
    let out = run_netloop(&["serve", "echo", "--allow", &allow], b"");
    assert!(
        out.stderr.contains("only apply to the exec service"),
        "{}",
        out.stderr
    );
    let bad = scratch.path("bad-allow");
    fs::write(&bad, "/bin/echo\nls\n").expect("write");
    refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--allow",
            bad.to_str().unwrap(),
            "--no-auth",
        ],
        "line 2: `ls` is not an absolute path",
    );
}

#[test]
fn unix_listener_without_auth() {
    let scratch = Scratch::new("unix");
    let sock = common::TempPath::new("exec.sock");
    let (allow, dir) = (scratch.arg("allow"), scratch.arg("work"));
    let server = Server::start(&[
        "exec",
        "--unix",
        sock.as_str(),
        "--allow",
        &allow,
        "--dir",
        &dir,
        "--no-auth",
    ]);
    let out = run_netloop(
        &["exec", "--unix", sock.as_str(), "--", "cat", "fixture.txt"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "line one\nline two: 中文\n".as_bytes());
    drop(server);
}

#[test]
fn many_commands_leave_no_zombie() {
    let scratch = Scratch::new("zombies");
    let server = start(&scratch, &[]);
    let mut stream = connect(server.addr());
    for _ in 0..200 {
        assert_ran(&ask(&mut stream, b"true"), b"");
    }
    // A reply is built only after its child is reaped: none can be a zombie now.
    assert_eq!(zombie_children(server.pid()), Vec::<u32>::new());
    assert_no_children_left(&server);
}

// ----- the examples -------------------------------------------------------------------

#[test]
fn the_command_examples_run_commands_and_refuse_others() {
    use std::io::{BufRead, BufReader};
    let mut server = Command::new(common::example_bin("command_server"))
        .arg("0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn command_server");
    let stdout = server.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let port = loop {
        let line = rx.recv_timeout(TIMEOUT);
        let Ok(line) = line else {
            let _ = server.kill();
            panic!("command_server did not start");
        };
        if let Some(addr) = line.strip_prefix("command_server listening on ") {
            break addr.rsplit(':').next().expect("port").to_string();
        }
    };
    let out = common::run_bounded(
        &common::example_bin("command_client"),
        &[&port, "echo hi there", "rm -rf /", "echo a; id"],
        b"",
    );
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", out.stderr);
    assert!(text.contains("\nhi there\n(exit status 0)"), "{text}");
    assert!(text.contains("`rm` is not an allowed program"), "{text}");
    assert!(text.contains("';' is shell syntax"), "{text}");
    assert_eq!(text.matches("(exit status 126)").count(), 2, "{text}");
}
