//! The upload service against the attacks of issue 9, over real loopback sockets.
//!
//! Hostile names (every invisible Unicode class) are refused at the header; a name whose
//! numbered copy would be too long is refused at the header, before its body is sent;
//! 500 pipelined uploads of one name get 500 distinct names; a client pipelining 20,000
//! one-byte uploads does not stall another client; a header trickled a byte at a time
//! cannot outlast `--header-timeout`; SIGTERM mid-upload sends an error frame and leaves
//! no temporary file; stored uploads and refusals do not write a log line each. Every
//! wait is bounded by `common::TIMEOUT`; nothing depends on timing to pass.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::{Server, TIMEOUT};
use serde_json::{json, Value};

/// A fresh upload directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = common::unique_temp_path(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Dir(path)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }

    /// The names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Temporary files in the directory.
    fn temps(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| n.starts_with(".netloop-upload-"))
            .collect()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Dir, extra: &[&str]) -> Server {
    let mut args = vec!["upload", "--dir", dir.as_str(), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s
}

/// One upload: header frame and body.
fn upload(name: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        netloop::proto::frames::encode_value(&json!({"file_name": name, "file_size": body.len()}));
    bytes.extend_from_slice(body);
    bytes
}

/// Read one reply frame (`None` at EOF or reset before a whole one).
fn read_reply(s: &mut TcpStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// The connection ends (EOF or reset) with nothing more to read.
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

#[test]
fn every_invisible_character_class_is_refused_at_the_header() {
    let dir = Dir::new("hard-names");
    let server = start(&dir, &[]);
    let cases = [
        ('\u{E0041}', "formatting"),
        ('\u{180E}', "formatting"),
        ('\u{206A}', "formatting"),
        ('\u{FFF9}', "formatting"),
        ('\u{202E}', "formatting"),
        ('\u{3164}', "filler"),
        ('\u{2028}', "separator"),
        ('\u{2029}', "separator"),
    ];
    for (c, want) in cases {
        let code = format!("U+{:04X}", c as u32);
        let mut s = connect(server.addr());
        // Only the header: the refusal must not wait for a body.
        let bytes = upload(&format!("a{c}b.txt"), b"hello");
        s.write_all(&bytes[..bytes.len() - 5]).expect("send");
        let reply = read_reply(&mut s).unwrap_or_else(|| panic!("{code}: no reply"));
        assert_eq!(reply["ok"], json!(false), "{code}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(want) && error.contains(&code),
            "{code}: {error:?}"
        );
        assert_closed(&mut s);
    }
    assert!(dir.names().is_empty(), "stored: {:?}", dir.names());
    assert!(dir.temps().is_empty());
}

#[test]
fn stored_uploads_and_refusals_do_not_log_a_line_each() {
    let dir = Dir::new("hard-log");
    let mut server = start(&dir, &[]);
    let mut s = connect(server.addr());
    let mut all = Vec::new();
    for i in 0..200 {
        all.extend_from_slice(&upload(&format!("f{i}.txt"), b"x"));
    }
    s.write_all(&all).expect("send");
    for i in 0..200 {
        let reply = read_reply(&mut s).unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    for _ in 0..100 {
        let mut bad = connect(server.addr());
        bad.write_all(&upload("../x", b"x")).expect("send");
        assert_eq!(read_reply(&mut bad).expect("reply")["ok"], json!(false));
    }
    server.signal(libc::SIGTERM);
    let (_, stderr) = server.wait_exit();
    let lines = stderr.lines().count();
    assert!(
        lines < 20,
        "{lines} log lines for 200 uploads and 100 refusals:\n{stderr}"
    );
    assert!(
        stderr.contains("stored=200") && stderr.contains("refused=100"),
        "the shutdown summary has the totals:\n{stderr}"
    );
    let refusal_lines = stderr.lines().filter(|l| l.contains("refused:")).count();
    assert!(
        refusal_lines <= 2,
        "refusal warnings are rate-limited:\n{stderr}"
    );
}

#[test]
fn shutdown_sends_in_flight_uploads_an_error_frame_and_leaves_no_temp_file() {
    let dir = Dir::new("hard-shutdown");
    let mut server = start(&dir, &[]);
    // One client mid-body (its temporary file exists), one mid-header.
    let mut body = connect(server.addr());
    let bytes = upload("big.bin", &vec![7u8; 1_000_000]);
    body.write_all(&bytes[..500_000]).expect("send");
    let mut header = connect(server.addr());
    header.write_all(&bytes[..6]).expect("send");
    // Between uploads: gets a plain close.
    let mut idle = connect(server.addr());
    idle.write_all(&upload("done.txt", b"done")).expect("send");
    assert_eq!(read_reply(&mut idle).expect("reply")["ok"], json!(true));
    let temp = common::wait_until(TIMEOUT, || (!dir.temps().is_empty()).then_some(()));
    assert!(temp.is_some(), "the body is streamed to a temporary file");

    server.signal(libc::SIGTERM);
    for s in [&mut body, &mut header] {
        let reply = read_reply(s).expect("an error frame before the close");
        assert_eq!(
            reply,
            json!({"ok": false, "error": "server shutting down"}),
            "{reply}"
        );
        assert_closed(s);
    }
    assert_closed(&mut idle);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        dir.temps().is_empty(),
        "temporary files left: {:?}",
        dir.names()
    );
    assert_eq!(dir.names(), vec!["done.txt"]);
    assert!(stderr.contains("cut off by shutdown=2"), "{stderr}");
}

#[test]
fn five_hundred_pipelined_duplicates_get_distinct_names() {
    let dir = Dir::new("hard-dups");
    std::fs::write(dir.0.join("x.bin"), b"first").expect("existing file");
    let server = start(&dir, &[]);
    let mut s = connect(server.addr());
    let mut all = Vec::new();
    for i in 0..500u32 {
        all.extend_from_slice(&upload("x.bin", &i.to_le_bytes()));
    }
    s.write_all(&all).expect("send");
    for i in 1..=500u32 {
        let reply = read_reply(&mut s).unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply["ok"], json!(true), "{reply}");
        let name = format!("x ({i}).bin");
        assert_eq!(reply["file_name"], json!(name), "{reply}");
        let stored = std::fs::read(dir.0.join(&name)).expect("read copy");
        assert_eq!(stored, (i - 1).to_le_bytes(), "{name}");
    }
    assert_eq!(std::fs::read(dir.0.join("x.bin")).expect("read"), b"first");
    assert_eq!(dir.names().len(), 501);
}

#[test]
fn a_longest_name_is_decided_at_the_header_and_stored_shortened() {
    let dir = Dir::new("hard-long");
    let server = start(&dir, &[]);
    let name = format!("{}.txt", "n".repeat(251)); // 255 bytes
    let mut s = connect(server.addr());
    for (i, body) in [b"one", b"two"].iter().enumerate() {
        s.write_all(&upload(&name, *body)).expect("send");
        let reply = read_reply(&mut s).unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply["ok"], json!(true), "{reply}");
        let stored = reply["file_name"].as_str().expect("file_name").to_string();
        assert!(stored.len() <= 255, "{stored}");
        if i == 0 {
            assert_eq!(stored, name);
        } else {
            assert_eq!(stored, format!("{} (1).txt", "n".repeat(247)));
        }
        assert_eq!(&std::fs::read(dir.0.join(&stored)).expect("read"), body);
    }
    assert!(dir.temps().is_empty());
}

#[test]
fn a_trickled_header_cannot_outlast_the_header_timeout() {
    let dir = Dir::new("hard-trickle");
    let server = start(&dir, &["--header-timeout", "1"]);
    // A 250-byte header: at one byte per read timeout below (100 ms), 25 s to deliver,
    // far past the 1 s header timeout but never idle long enough for the idle timeout.
    let bytes = upload(&format!("{}.txt", "t".repeat(200)), b"body");
    let header = &bytes[..bytes.len() - 4];
    assert!(header.len() > 200);
    let mut s = connect(server.addr());
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    for byte in header {
        if s.write_all(&[*byte]).is_err() {
            break; // closed already: the reply is waiting to be read
        }
        let mut peek = [0u8; 1];
        match s.peek(&mut peek) {
            Ok(_) => break, // the server spoke (or closed) before the header was whole
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    // Had the whole header gone through, the server would now wait for the body and no
    // reply would come.
    let reply = read_reply(&mut s).expect("an error frame before the header was complete");
    assert_eq!(reply["ok"], json!(false), "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.contains("header not complete"), "{error}");
    assert_closed(&mut s);
    assert!(dir.names().is_empty());
}

#[test]
fn a_pipelining_client_does_not_stall_another() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const N: usize = 20_000;
    let dir = Dir::new("hard-fair");
    let server = start(&dir, &[]);
    let mut other = connect(server.addr());
    let mut flood = connect(server.addr());
    let mut all = Vec::new();
    for i in 0..N {
        all.extend_from_slice(&upload(&format!("f{i}"), b"x"));
    }
    // The first client's replies are counted as they come, on a thread of their own.
    let replies = Arc::new(AtomicUsize::new(0));
    let mut reader = flood.try_clone().expect("clone");
    let counted = Arc::clone(&replies);
    let counter = std::thread::spawn(move || {
        while let Some(reply) = read_reply(&mut reader) {
            if reply["ok"] != json!(true) {
                break;
            }
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    flood.write_all(&all).expect("send the flood");
    let sent = std::time::Instant::now(); // measured for the log, never asserted
    other
        .write_all(&upload("other.txt", b"mine"))
        .expect("send");
    let reply = read_reply(&mut other).expect("the other client's reply");
    let flood_done = replies.load(Ordering::SeqCst);
    let waited = sent.elapsed();
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(reply["file_name"], json!("other.txt"));
    assert!(
        flood_done < N,
        "the other client waited for all {N} pipelined uploads"
    );
    eprintln!("the other client's reply came after {flood_done} of the flood's {N}, in {waited:?}");
    drop(server); // kills it: the flood need not finish
    let _ = counter.join();
}
