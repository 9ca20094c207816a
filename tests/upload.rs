//! `netloop serve upload` and `netloop upload`, over real loopback sockets.
//!
//! Seed-style Python clients (tests/fixtures/, run with python3; skipped with a message
//! when it is missing) store byte-identical files; every hostile input the issue lists
//! gets its error reply and leaves nothing behind; a client that resets mid-file leaves
//! no temporary file, also when it leaves while its file is being finished on the disk
//! threads; pipelined uploads get their replies in order; 100 clients upload at once;
//! the HMAC challenge accepts the right answer and refuses wrong, replayed and missing
//! ones; the client command checks every reply, and its `--timeout` counts sending as
//! progress. Every wait is bounded by `common::TIMEOUT`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{pseudo_random_bytes, python3_available, run_netloop, Server, TIMEOUT};
use netloop::proto::hmac_auth::Secret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A fresh directory tree, removed when dropped: `root/` holds `dir/` (the upload
/// directory) and nothing else, so anything written outside `dir` shows up in `root`.
struct TempTree {
    root: PathBuf,
    dir: PathBuf,
}

impl TempTree {
    fn new(name: &str) -> TempTree {
        let root = common::unique_temp_path(name);
        let dir = root.join("dir");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempTree { root, dir }
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// The names in the upload directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Nothing but `dir` in the root, and no temporary file in `dir`.
    #[track_caller]
    fn assert_clean(&self) {
        let outside: Vec<_> = std::fs::read_dir(&self.root)
            .expect("read root")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            outside,
            vec![std::ffi::OsString::from("dir")],
            "written outside dir"
        );
        let temps: Vec<_> = self
            .names()
            .into_iter()
            .filter(|n| n.starts_with(".netloop-upload-"))
            .collect();
        assert!(temps.is_empty(), "temporary files left: {temps:?}");
    }

    /// Wait until the directory holds exactly `want` (and no temporary file).
    #[track_caller]
    fn wait_for(&self, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let deadline = Instant::now() + TIMEOUT;
        while self.names() != want {
            assert!(
                Instant::now() < deadline,
                "dir has {:?}, want {want:?}",
                self.names()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn start_upload(tree: &TempTree, extra: &[&str]) -> Server {
    let mut args = vec!["upload", "--dir", tree.dir_str(), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s
}

fn frame(value: &Value) -> Vec<u8> {
    netloop::proto::frames::encode_value(value)
}

/// Read one reply frame (`None` at EOF or reset before a whole one).
fn read_reply(s: &mut TcpStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(serde_json::from_slice(&body).expect("reply is JSON"))
}

/// The connection ends (EOF or reset) without further bytes.
#[track_caller]
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {:?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

fn skip_without_python() -> bool {
    if python3_available() {
        return false;
    }
    eprintln!("SKIPPED: python3 is not installed; the seed-style client tests need it");
    true
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Run a Python fixture to completion (bounded), returning its stdout.
#[track_caller]
fn run_python(script: &str, args: &[&str]) -> String {
    let mut cmd_args = vec![fixture(script).to_string_lossy().into_owned()];
    cmd_args.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = cmd_args.iter().map(String::as_str).collect();
    let out = common::run_bounded(Path::new("python3"), &refs, b"");
    assert!(out.status.success(), "{script} failed: {}", out.stderr);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write `bytes` to a file called `name` in a fresh source directory.
fn source_file(tree: &TempTree, name: &str, bytes: &[u8]) -> PathBuf {
    let src = tree.root.with_extension("src");
    std::fs::create_dir_all(&src).expect("src dir");
    let path = src.join(name);
    std::fs::write(&path, bytes).expect("write source");
    path
}

// ---- the seeds' clients ----

#[test]
fn seed000_demo3_client_stores_an_identical_file() {
    if skip_without_python() {
        return;
    }
    let tree = TempTree::new("up-s000");
    let server = start_upload(&tree, &[]);
    let data = pseudo_random_bytes(1, 300_000);
    let name = "04 python fullstack s9day32 struct模块补充.mp4";
    let path = source_file(&tree, name, &data);
    let port = server.addr().port().to_string();
    run_python(
        "seed000_upload_client.py",
        &["127.0.0.1", &port, path.to_str().unwrap()],
    );
    tree.wait_for(&[name]);
    assert!(tree.read(name) == data, "stored bytes differ");
    tree.assert_clean();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

#[test]
fn seed004_menu_client_sends_several_files_on_one_connection() {
    if skip_without_python() {
        return;
    }
    let tree = TempTree::new("up-s004m");
    let server = start_upload(&tree, &[]);
    let files = [
        ("movie.mp4", pseudo_random_bytes(2, 200_000)),
        ("empty.txt", Vec::new()),
        ("small.txt", b"hello".to_vec()),
    ];
    let paths: Vec<String> = files
        .iter()
        .map(|(n, d)| source_file(&tree, n, d).to_string_lossy().into_owned())
        .collect();
    let port = server.addr().port().to_string();
    let mut args = vec!["127.0.0.1", port.as_str()];
    args.extend(paths.iter().map(String::as_str));
    let out = run_python("seed004_menu_client.py", &args);
    assert_eq!(out.matches("reply:").count(), 3, "{out}");
    assert_eq!(out.matches(r#""ok":true"#).count(), 3, "{out}");
    tree.wait_for(&["empty.txt", "movie.mp4", "small.txt"]);
    for (name, data) in &files {
        assert!(&tree.read(name) == data, "{name} differs");
    }
    tree.assert_clean();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

#[test]
fn seed004_second_client_non_ascii_name_never_reading() {
    if skip_without_python() {
        return;
    }
    let tree = TempTree::new("up-s004s");
    let server = start_upload(&tree, &[]);
    // Line by line: text with newlines, and a last line without one.
    let first = b"line one\nline two\n\nlast".to_vec();
    let second = pseudo_random_bytes(3, 100_000);
    let a = source_file(&tree, "a.mp4", &first);
    let b = source_file(&tree, "b.mp4", &second);
    let mut child = Command::new("python3")
        .arg(fixture("seed004_second_client.py"))
        .args(["127.0.0.1", &server.addr().port().to_string()])
        .arg(&a)
        .arg(&b)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn python3");
    // Both carry the same fixed name: the second is not allowed to overwrite the first.
    let (one, two) = ("性感荷官在线发牌.mp4", "性感荷官在线发牌 (1).mp4");
    tree.wait_for(&[one, two]);
    drop(child.stdin.take()); // the seed's input() ends: it exits, replies unread
    let _ = child.wait();
    assert!(tree.read(one) == first, "first file differs");
    assert!(tree.read(two) == second, "second file differs");
    tree.assert_clean();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

// ---- hostile input ----

#[test]
fn hostile_inputs_get_error_replies_and_write_nothing() {
    let tree = TempTree::new("up-hostile");
    let server = start_upload(&tree, &["--max-file-size", "1000000"]);
    let passwd_before = std::fs::read("/etc/passwd").ok();
    let named = |name: &str| {
        let mut bytes = frame(&json!({"file_name": name, "file_size": 5}));
        bytes.extend_from_slice(b"hello");
        bytes
    };
    let long = "x".repeat(300);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "negative length",
            (-1i32).to_le_bytes().to_vec(),
            "negative header length",
        ),
        (
            "length 2^31-1",
            i32::MAX.to_le_bytes().to_vec(),
            "over the limit",
        ),
        (
            "invalid UTF-8",
            netloop::proto::frames::encode(b"{\"a\xff\":1}"),
            "not UTF-8",
        ),
        (
            "not JSON",
            netloop::proto::frames::encode(b"file_name=x"),
            "not JSON",
        ),
        ("JSON array", frame(&json!(["x", 5])), "not an array"),
        (
            "missing name",
            frame(&json!({"file_size": 5})),
            "no file_name",
        ),
        (
            "missing size",
            frame(&json!({"file_name": "x"})),
            "no file_size",
        ),
        (
            "negative size",
            frame(&json!({"file_name": "x", "file_size": -1})),
            "negative",
        ),
        (
            "string size",
            frame(&json!({"file_name": "x", "file_size": "5"})),
            "not a string",
        ),
        (
            "float size",
            frame(&json!({"file_name": "x", "file_size": 5.5})),
            "not a float",
        ),
        (
            "huge size",
            frame(&json!({"file_name": "x", "file_size": 1u64 << 40})),
            "over the limit",
        ),
        ("../x", named("../x"), "path separator"),
        ("/etc/passwd", named("/etc/passwd"), "path separator"),
        ("a/b", named("a/b"), "path separator"),
        ("a\\b", named("a\\b"), "path separator"),
        ("..", named(".."), "not a file"),
        (".", named("."), "not a file"),
        ("empty", named(""), "empty"),
        ("NUL", named("a\0b"), "NUL"),
        ("control", named("a\nb"), "control character"),
        (
            "RLO",
            named("evil\u{202E}gpj.exe"),
            "invisible formatting character (U+202E)",
        ),
        ("zero-width space", named("a\u{200B}b"), "U+200B"),
        ("soft hyphen", named("a\u{00AD}b"), "U+00AD"),
        ("Arabic letter mark", named("a\u{061C}b"), "U+061C"),
        ("word joiner", named("a\u{2060}b"), "U+2060"),
        ("isolate", named("a\u{2066}b"), "U+2066"),
        ("BOM", named("\u{FEFF}a"), "U+FEFF"),
        ("300 bytes", named(&long), "over the limit of 255"),
        ("reserved", named(".netloop-upload-1-1.part"), "reserved"),
    ];
    for (what, bytes, want) in &cases {
        let mut s = connect(server.addr());
        s.write_all(bytes).expect("send");
        let reply = read_reply(&mut s).unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(reply["ok"], json!(false), "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(want),
            "{what}: {error:?} should contain {want:?}"
        );
        assert_closed(&mut s);
    }
    tree.assert_clean();
    assert!(tree.names().is_empty(), "stored: {:?}", tree.names());
    assert_eq!(std::fs::read("/etc/passwd").ok(), passwd_before);
    // The server is still serving.
    let mut s = connect(server.addr());
    s.write_all(&named("fine.txt")).expect("send");
    assert_eq!(read_reply(&mut s).expect("reply")["ok"], json!(true));
    tree.wait_for(&["fine.txt"]);
}

/// Wait until a temporary file exists and holds at least `bytes`: the body is being
/// streamed to disk, not collected in memory.
#[track_caller]
fn wait_for_temp(tree: &TempTree, bytes: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let big = tree.names().iter().any(|n| {
            n.starts_with(".netloop-upload-")
                && std::fs::metadata(tree.dir.join(n)).is_ok_and(|m| m.len() >= bytes)
        });
        if big {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no temporary file of {bytes} bytes: {:?}",
            tree.names()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn half_a_file_then_reset_leaves_nothing() {
    let tree = TempTree::new("up-reset");
    let server = start_upload(&tree, &[]);
    let mut s = connect(server.addr());
    s.write_all(&frame(
        &json!({"file_name": "big.bin", "file_size": 4 << 20}),
    ))
    .expect("header");
    s.write_all(&pseudo_random_bytes(4, 1 << 20)).expect("half");
    wait_for_temp(&tree, (1 << 20) - 64 * 1024); // less what the write buffer holds
                                                 // SO_LINGER 0: close() sends a reset instead of a FIN.
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(s);
    tree.wait_for(&[]);
    tree.assert_clean();
    // A clean EOF mid-file gets a reply saying why nothing was stored.
    let mut s = connect(server.addr());
    s.write_all(&frame(&json!({"file_name": "big.bin", "file_size": 1000})))
        .expect("header");
    s.write_all(&[7u8; 400]).expect("part");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let reply = read_reply(&mut s).expect("reply");
    assert_eq!(reply["ok"], json!(false));
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.contains("after 400 of 1000 bytes"), "{error}");
    tree.wait_for(&[]);
    tree.assert_clean();
}

// ---- disk work on the offload pool ----

/// Many uploads written back to back on one connection before any reply is read: the
/// replies come in the order of the uploads, each for its own file. Each upload is
/// finished on a helper thread while reading pauses, and the bytes already read past it
/// (several small uploads arrive in one read) wait in the server until its reply is out.
#[test]
fn pipelined_uploads_on_one_connection_get_replies_in_order() {
    let tree = TempTree::new("up-pipe");
    let server = start_upload(&tree, &[]);
    let n = 60;
    // Empty, one byte, a few per read, around the read size, and larger than a batch.
    let size = |i: usize| match i % 6 {
        0 => 0,
        1 => 1,
        2 => 100 + i,
        3 => 65_536 + i,
        4 => 3_000,
        _ => 300_000 + i * 1000,
    };
    let mut stream = Vec::new();
    let mut want = Vec::new();
    for i in 0..n {
        let data = pseudo_random_bytes(20 + i as u64, size(i));
        let name = format!("p-{i:02}.bin");
        stream.extend_from_slice(&frame(&json!({"file_name": name, "file_size": data.len()})));
        stream.extend_from_slice(&data);
        want.push(json!({
            "ok": true, "file_name": name, "bytes": data.len(), "sha256": sha256_hex(&data),
        }));
    }
    let mut s = connect(server.addr());
    let mut w = s.try_clone().expect("clone");
    // All of it in one write, from another thread, while this one reads the replies.
    let writer = std::thread::spawn(move || {
        w.write_all(&stream).expect("write uploads");
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    for (i, want) in want.iter().enumerate() {
        let reply = read_reply(&mut s).unwrap_or_else(|| panic!("no reply {i}"));
        assert_eq!(&reply, want, "reply {i}");
    }
    writer.join().expect("writer thread");
    assert_closed(&mut s);
    let names: Vec<String> = (0..n).map(|i| format!("p-{i:02}.bin")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    tree.wait_for(&names);
    for i in [5, 9, 11] {
        assert!(
            tree.read(&format!("p-{i:02}.bin")) == pseudo_random_bytes(20 + i as u64, size(i)),
            "file {i} differs"
        );
    }
    tree.assert_clean();
}

/// The names in `tree` other than temporary files are all whole copies of `data`.
#[track_caller]
fn assert_whole_copies(tree: &TempTree, data: &[u8]) -> usize {
    let names = tree.names();
    for name in &names {
        assert!(tree.read(name) == data, "{name} is not a whole copy");
    }
    names.len()
}

/// The last byte of a file arrives and the client resets the connection at once, so
/// the connection goes while the file's finishing job (fsync, link) is on a helper
/// thread; likewise a server told to stop right after the last byte. Whichever comes
/// first decides whether the file is stored, never that it is half there: no temporary
/// file stays, and every stored file is whole. (The server's exit joins its disk
/// threads, so by then every job is done.)
#[test]
fn a_file_being_finished_when_the_client_leaves_leaves_no_temporary_file() {
    let tree = TempTree::new("up-gone");
    let big = pseudo_random_bytes(30, 8 << 20);
    let header = frame(&json!({"file_name": "big.bin", "file_size": big.len()}));
    let mut server = start_upload(&tree, &[]);
    for _ in 0..4 {
        let mut s = connect(server.addr());
        s.write_all(&header).expect("header");
        s.write_all(&big).expect("body");
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s); // a reset, right behind the last byte
    }
    // One more that waits for its reply: the server is still well.
    let mut s = connect(server.addr());
    s.write_all(&frame(&json!({"file_name": "ok.txt", "file_size": 2})))
        .expect("header");
    s.write_all(b"ok").expect("body");
    assert_eq!(read_reply(&mut s).expect("reply")["ok"], json!(true));
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait_exit();
    assert!(status.success(), "{log}");
    tree.assert_clean();
    std::fs::remove_file(tree.dir.join("ok.txt")).expect("ok.txt stored");
    let stored = assert_whole_copies(&tree, &big);
    eprintln!("{stored} of 4 reset uploads stored");

    // Shutdown right behind the last byte.
    let mut server = start_upload(&tree, &[]);
    let mut s = connect(server.addr());
    s.write_all(&header).expect("header");
    s.write_all(&big).expect("body");
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait_exit();
    assert!(status.success(), "{log}");
    tree.assert_clean();
    assert_whole_copies(&tree, &big);
}

/// Stalled clients: `--idle-timeout 1` drops one that sent half a header, one that sent
/// half a file (its temporary file removed), and one that authenticated and went silent.
/// Without `--idle-timeout` the upload service uses 60 s (not testable in a unit of time).
#[test]
fn stalled_clients_are_dropped_by_the_idle_timeout() {
    let tree = TempTree::new("up-stall");
    let key = secret_file(&tree, "egg");
    let server = start_upload(&tree, &["--idle-timeout", "1"]);
    let t = Instant::now();
    let mut half_header = connect(server.addr());
    let header = frame(&json!({"file_name": "stall.bin", "file_size": 1000}));
    half_header
        .write_all(&header[..header.len() / 2])
        .expect("half header");
    let mut half_file = connect(server.addr());
    half_file.write_all(&header).expect("header");
    half_file.write_all(&[7u8; 500]).expect("half body");
    wait_for_temp(&tree, 0);
    assert_closed(&mut half_header);
    assert_closed(&mut half_file);
    let waited = t.elapsed();
    assert!(
        // At least the timeout; the upper bound only says "closed, not left open", so it
        // is generous (a loaded machine may be slow to run the loop).
        waited >= Duration::from_millis(800) && waited < TIMEOUT,
        "{waited:?}"
    );
    tree.wait_for(&[]);
    tree.assert_clean();

    // With authentication: the idle timeout counts again once the answer is in.
    let auth = start_upload(
        &tree,
        &[
            "--secret-file",
            key.to_str().unwrap(),
            "--idle-timeout",
            "1",
        ],
    );
    let mut s = connect(auth.addr());
    let challenge = read_challenge(&mut s);
    s.write_all(&Secret::new(b"egg".to_vec()).unwrap().answer(&challenge))
        .expect("answer");
    let t = Instant::now();
    assert_closed(&mut s);
    assert!(t.elapsed() < TIMEOUT, "{:?}", t.elapsed());
    tree.assert_clean();
    let _ = std::fs::remove_file(key);
}

#[test]
fn hundred_clients_upload_a_mebibyte_each_at_once() {
    let tree = TempTree::new("up-100");
    let server = start_upload(&tree, &[]);
    let addr = server.addr();
    let n = 100;
    let barrier = Arc::new(Barrier::new(n));
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let data = pseudo_random_bytes(1000 + i as u64, 1 << 20);
                let mut s = connect(addr);
                barrier.wait(); // all connected: now everyone sends at once
                let header =
                    json!({"file_name": format!("client-{i:03}.bin"), "file_size": data.len()});
                s.write_all(&frame(&header)).expect("header");
                s.write_all(&data).expect("body");
                let reply = read_reply(&mut s).expect("reply");
                assert_eq!(reply["ok"], json!(true), "{reply}");
                assert_eq!(reply["bytes"], json!(1 << 20));
                assert_eq!(reply["sha256"], json!(sha256_hex(&data)));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "100 x 1 MiB in {secs:.2} s ({:.0} MB/s)",
        100.0 * 1.048576 / secs
    );
    let want: Vec<String> = (0..n).map(|i| format!("client-{i:03}.bin")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    tree.wait_for(&want);
    for i in 0..n {
        let stored = tree.read(&format!("client-{i:03}.bin"));
        assert!(
            stored == pseudo_random_bytes(1000 + i as u64, 1 << 20),
            "file {i} differs"
        );
    }
    tree.assert_clean();
}

#[test]
fn a_disk_error_is_an_error_reply_and_the_server_goes_on() {
    use std::os::unix::process::CommandExt;
    let tree = TempTree::new("up-disk");
    let args = ["upload", "--dir", tree.dir_str(), "--listen", "127.0.0.1:0"];
    // A 1 MiB file-size limit makes writes past it fail with EFBIG, like a full disk.
    let server = Server::start_with(&args, |cmd| {
        // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 1 << 20,
                    rlim_max: 1 << 20,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let mut s = connect(server.addr());
    s.write_all(&frame(
        &json!({"file_name": "big.bin", "file_size": 2 << 20}),
    ))
    .expect("header");
    // The server may refuse and close before the whole body is sent.
    let _ = s.write_all(&pseudo_random_bytes(5, 2 << 20));
    let reply = read_reply(&mut s).expect("reply");
    assert_eq!(reply["ok"], json!(false));
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot store \"big.bin\""), "{error}");
    tree.wait_for(&[]);
    let mut s = connect(server.addr());
    s.write_all(&frame(&json!({"file_name": "ok.bin", "file_size": 3})))
        .expect("header");
    s.write_all(b"abc").expect("body");
    assert_eq!(read_reply(&mut s).expect("reply")["ok"], json!(true));
    tree.wait_for(&["ok.bin"]);
    tree.assert_clean();
}

// ---- authentication ----

fn secret_file(tree: &TempTree, secret: &str) -> PathBuf {
    let path = tree.root.with_extension(format!("{secret}.key"));
    std::fs::write(&path, format!("{secret}\n")).expect("write secret");
    path
}

fn read_challenge(s: &mut TcpStream) -> [u8; 32] {
    let mut challenge = [0u8; 32];
    s.read_exact(&mut challenge).expect("challenge");
    challenge
}

#[test]
fn auth_right_wrong_replayed_and_silent() {
    let tree = TempTree::new("up-auth");
    let key = secret_file(&tree, "egg");
    let mut server = start_upload(
        &tree,
        &[
            "--secret-file",
            key.to_str().unwrap(),
            "--auth-timeout",
            "1",
        ],
    );
    let egg = Secret::new(b"egg".to_vec()).unwrap();
    let upload = |s: &mut TcpStream, name: &str| {
        s.write_all(&frame(&json!({"file_name": name, "file_size": 2})))
            .expect("header");
        s.write_all(b"hi").expect("body");
        read_reply(s).expect("reply")
    };

    // Right: the answer to this connection's challenge.
    let mut right = connect(server.addr());
    let challenge = read_challenge(&mut right);
    let answer = egg.answer(&challenge);
    right.write_all(&answer).expect("answer");
    assert_eq!(upload(&mut right, "right.txt")["ok"], json!(true));

    // Wrong secret.
    let mut wrong = connect(server.addr());
    let wrong_peer = wrong.local_addr().unwrap();
    let c = read_challenge(&mut wrong);
    wrong
        .write_all(&Secret::new(b"ham".to_vec()).unwrap().answer(&c))
        .expect("answer");
    let reply = read_reply(&mut wrong).expect("reply");
    assert_eq!(
        reply,
        json!({"ok": false, "error": "authentication failed"})
    );
    assert_closed(&mut wrong);

    // Replayed: the first connection's (right) answer, on a new connection.
    let mut replay = connect(server.addr());
    let _ = read_challenge(&mut replay);
    replay.write_all(&answer).expect("answer");
    let reply = read_reply(&mut replay).expect("reply");
    assert_eq!(reply["error"], json!("authentication failed"));
    assert_closed(&mut replay);

    // Silent: dropped after the time limit, with a reply saying so.
    let mut silent = connect(server.addr());
    let silent_peer = silent.local_addr().unwrap();
    let _ = read_challenge(&mut silent);
    let t = Instant::now();
    let reply = read_reply(&mut silent).expect("reply");
    assert_eq!(reply["error"], json!("authentication timed out"));
    assert_closed(&mut silent);
    let waited = t.elapsed();
    assert!(
        // At least the timeout; the upper bound only says "closed, not left open", so it
        // is generous (a loaded machine may be slow to run the loop).
        waited >= Duration::from_millis(800) && waited < TIMEOUT,
        "{waited:?}"
    );

    // Seed 000 demo 4's client (with SHA-256), then an upload; and `netloop upload`.
    if !skip_without_python() {
        let path = source_file(&tree, "seed.txt", b"from python");
        let port = server.addr().port().to_string();
        let out = run_python(
            "seed000_hmac_client.py",
            &["127.0.0.1", &port, "egg", path.to_str().unwrap()],
        );
        assert!(out.contains(r#""ok":true"#), "{out}");
    }
    let path = source_file(&tree, "cli.txt", b"from netloop upload");
    let to = server.addr().to_string();
    let out = run_netloop(
        &[
            "upload",
            path.to_str().unwrap(),
            "--to",
            &to,
            "--secret-file",
            key.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = run_netloop(&["upload", path.to_str().unwrap(), "--to", &to], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("--secret-file"), "{}", out.stderr);

    server.signal(libc::SIGTERM);
    let (_, log) = server.wait_exit();
    assert!(
        log.contains(&format!("{wrong_peer}: authentication failed")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{silent_peer}: no authentication answer")),
        "{log}"
    );
    let mut want = vec!["cli.txt", "right.txt"];
    if python3_available() {
        want.push("seed.txt");
    }
    tree.wait_for(&want);
    tree.assert_clean();
    let _ = std::fs::remove_file(key);
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

// ---- the client command ----

#[test]
fn upload_command_sends_and_checks_every_file() {
    let tree = TempTree::new("up-cli");
    let sock = common::TempPath::new("up.sock");
    let server = Server::start(&[
        "upload",
        "--dir",
        tree.dir_str(),
        "--listen",
        "127.0.0.1:0",
        "--unix",
        sock.as_str(),
        "--max-file-size",
        "300000",
    ]);
    let big = pseudo_random_bytes(6, 250_000);
    let a = source_file(&tree, "a.bin", &big);
    let e = source_file(&tree, "empty", b"");
    let (a, e) = (a.to_str().unwrap(), e.to_str().unwrap());
    let to = server.addr().to_string();
    let out = run_netloop(&["upload", a, e, a, "--to", &to, "--chunk", "4096"], b"");
    assert!(out.status.success(), "{}", out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("-> a.bin: 250000 bytes"), "{stdout}");
    assert!(stdout.contains("-> a (1).bin: 250000 bytes"), "{stdout}");
    assert!(stdout.contains(&sha256_hex(&big)), "{stdout}");
    let out = run_netloop(&["upload", e, "--unix", sock.as_str()], b"");
    assert!(out.status.success(), "{}", out.stderr);
    tree.wait_for(&["a (1).bin", "a.bin", "empty", "empty (1)"]);
    assert!(tree.read("a (1).bin") == big);

    // Refused: too large for the server.
    let huge = source_file(&tree, "huge.bin", &pseudo_random_bytes(7, 300_001));
    let out = run_netloop(&["upload", huge.to_str().unwrap(), "--to", &to], b"");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("server refused") && out.stderr.contains("over the limit"),
        "{}",
        out.stderr
    );
    // A missing file fails before connecting.
    let out = run_netloop(&["upload", "/nonexistent/file", "--to", &to], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("/nonexistent/file"), "{}", out.stderr);
    // --secret-file against a server without authentication: no challenge ever comes.
    let key = secret_file(&tree, "egg");
    let out = run_netloop(
        &[
            "upload",
            e,
            "--to",
            &to,
            "--secret-file",
            key.to_str().unwrap(),
            "--timeout",
            "1",
        ],
        b"",
    );
    assert!(!out.status.success());
    let want = format!("no challenge received from {to} — does the server run with --secret-file?");
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    let _ = std::fs::remove_file(key);
    tree.wait_for(&["a (1).bin", "a.bin", "empty", "empty (1)"]);
    tree.assert_clean();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

/// `--timeout` counts progress both ways. The server here reads slowly but steadily
/// (a small receive buffer, 64 KiB every 8 ms) and replies only after the last byte,
/// so the upload takes more than twice `--timeout` and the reply is the first byte the
/// client receives: counting only input, the client would give up half way.
///
/// The rate is not arbitrary: after the client's last write, its kernel send buffer
/// (up to 4 MiB here) drains with no event the loop can see, so that tail must take
/// well under `--timeout` (about 0.5 s of 2 s here; see `src/apps/upload/mod.rs`).
#[test]
fn upload_command_timeout_counts_sending_as_progress() {
    use socket2::{Domain, Socket, Type};
    let tree = TempTree::new("up-slow");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind");
    socket.listen(1).expect("listen");
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let slow = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut header = vec![0u8; i32::from_le_bytes(len) as usize];
        s.read_exact(&mut header).unwrap();
        let header: Value = serde_json::from_slice(&header).unwrap();
        let mut left = header["file_size"].as_u64().unwrap() as usize;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let total = left;
        while left > 0 {
            let want = left.min(buf.len());
            let n = s.read(&mut buf[..want]).expect("read body");
            assert!(n > 0, "EOF with {left} bytes to come");
            hasher.update(&buf[..n]);
            left -= n;
            // Slow for the first 24 MiB (about 3 s, longer than --timeout, while the
            // client keeps sending); then at full speed, so the bytes still in the
            // kernel's buffers after the client's last write drain at once, however
            // loaded the machine is.
            if total - left < 24 << 20 {
                std::thread::sleep(Duration::from_millis(8));
            }
        }
        let sha: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let size = header["file_size"].as_u64().unwrap();
        let reply = json!({"ok": true, "file_name": "slow.bin", "bytes": size, "sha256": sha});
        s.write_all(&frame(&reply)).unwrap();
        let _ = s.read(&mut [0u8; 16]);
    });
    let f = source_file(&tree, "slow.bin", &pseudo_random_bytes(40, 40 << 20));
    let started = Instant::now();
    let out = run_netloop(
        &[
            "upload",
            f.to_str().unwrap(),
            "--to",
            &addr.to_string(),
            "--timeout",
            "2",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", out.stderr);
    eprintln!("slow upload took {:?}", started.elapsed());
    slow.join().expect("slow server");
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

/// Empty files: the header is the whole upload, so the server may reply as soon as it
/// is out; each reply must still find its file. (The client once registered a file as
/// awaiting its reply only when a read job came back after the header was sent: a
/// narrow race, which many empty files in a row make more likely, not certain.)
#[test]
fn upload_command_sends_many_empty_files() {
    let tree = TempTree::new("up-empties");
    let server = start_upload(&tree, &[]);
    let e = source_file(&tree, "e", b"");
    let e = e.to_str().unwrap();
    let to = server.addr().to_string();
    let mut args = vec!["upload"];
    args.extend(std::iter::repeat_n(e, 40));
    args.extend(["--to", &to]);
    let out = run_netloop(&args, b"");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 40);
    assert_eq!(tree.names().len(), 40);
    tree.assert_clean();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

/// A server that stores something else than what was sent is caught by the hash check.
#[test]
fn upload_command_detects_a_mismatch() {
    let tree = TempTree::new("up-liar");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let liar = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut header = vec![0u8; i32::from_le_bytes(len) as usize];
        s.read_exact(&mut header).unwrap();
        let header: Value = serde_json::from_slice(&header).unwrap();
        let mut body = vec![0u8; header["file_size"].as_u64().unwrap() as usize];
        s.read_exact(&mut body).unwrap();
        let reply = json!({"ok": true, "file_name": "x", "bytes": body.len(), "sha256": "00"});
        s.write_all(&frame(&reply)).unwrap();
        let _ = s.read(&mut [0u8; 16]);
    });
    let f = source_file(&tree, "f.txt", b"some bytes");
    let out = run_netloop(
        &["upload", f.to_str().unwrap(), "--to", &addr.to_string()],
        b"",
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("sha256 00"), "{}", out.stderr);
    let _ = liar.join();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}

// ---- the examples that mirror the seed programs ----

/// Start an example server on port 0; returns it, the port it printed, and its later
/// output lines.
fn start_example(
    name: &str,
    args: &[&str],
) -> (std::process::Child, u16, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(common::example_bin(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn example");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    let port = line
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(',').parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("{name}: no address in {line:?}"))
        .port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, port, rx)
}

/// Wait (bounded) for an output line containing `want`.
#[track_caller]
fn expect_line(lines: &std::sync::mpsc::Receiver<String>, want: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(want) => return,
            Ok(_) => {}
            Err(_) => panic!("no line containing {want:?}"),
        }
    }
}

#[test]
fn examples_mirror_the_seeds() {
    let tree = TempTree::new("up-examples");
    let data = pseudo_random_bytes(8, 200_000);
    let file = source_file(&tree, "movie.mp4", &data);
    let run =
        |name: &str, args: &[&str]| common::run_bounded(&common::example_bin(name), args, b"");

    // Seed 000 demo 3 / seed 004: the framed upload pair.
    let (mut server, port, _) = start_example("upload_server", &["0", tree.dir_str()]);
    let port = port.to_string();
    let out = run("upload_client", &[file.to_str().unwrap(), &port]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha256_hex(&data)));
    assert!(tree.read("movie.mp4") == data);
    tree.assert_clean();

    // Seed 000 demo 2: length-prefixed command output.
    let (mut server, port, lines) = start_example("length_prefix", &["server", "0", "echo hi"]);
    let out = run("length_prefix", &["client", &port.to_string()]);
    expect_line(&lines, ">>> echo hi");
    expect_line(&lines, "hi");
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", out.stderr);

    // Seed 000 demo 4: the HMAC challenge, right and wrong secrets.
    let (mut server, port, lines) = start_example("hmac_auth", &["server", "0", "egg"]);
    let port = port.to_string();
    for (secret, verdict, accepted) in [
        ("egg", ": legitimate client", true),
        ("ham", ": illegitimate client", false),
    ] {
        let out = run("hmac_auth", &["client", &port, secret]);
        // The client learns the verdict: a refused one exits with an error.
        assert_eq!(out.status.success(), accepted, "{}", out.stderr);
        if !accepted {
            assert!(out.stderr.contains("refused"), "{}", out.stderr);
        }
        expect_line(&lines, verdict);
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(tree.root.with_extension("src"));
}
