//! `--record FILE`: the loop's own account of a scripted echo session, line by line, and
//! the limit that keeps a busy server from filling a disk.

mod common;

use std::io::Write;
use std::net::Shutdown;

use common::{Server, TempPath};
use serde_json::Value;

fn stop(mut server: Server) -> String {
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{stderr}");
    stderr
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read the record")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn summary(stderr: &str, key: &str) -> u64 {
    stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {stderr}"))
}

#[test]
fn an_echo_session_is_recorded_event_by_event() {
    let record = TempPath::new("session.jsonl");
    let server = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--record",
        record.as_str(),
    ]);
    let mut conn = common::connect(server.addr());
    let local = conn.local_addr().expect("local addr").to_string();
    conn.write_all(b"hello\n").expect("send");
    assert_eq!(common::read_n(&mut conn, 6), b"hello\n");
    conn.shutdown(Shutdown::Write).expect("half-close");
    assert!(common::read_to_eof(&mut conn).is_empty());
    drop(conn);
    let stderr = stop(server);

    let events = lines(&record.0);
    // Every line has a time and a kind; times never go backwards.
    let mut last = 0;
    for e in &events {
        let t = e["t"].as_u64().expect("t");
        assert!(t >= last, "time went backwards at {e}");
        last = t;
        assert!(e["kind"].is_string(), "{e}");
    }
    // The loop's own lines: each sleep is recorded with its reason and its length.
    assert!(events
        .iter()
        .any(|e| e["kind"] == "poll" && e["why"].is_string()));
    assert!(events
        .iter()
        .any(|e| e["kind"] == "wake" && e["slept_us"].is_u64()));

    // The connection's lines, in order: accepted, its first event, read 6, wrote 6 of 6
    // with nothing queued, an event carrying the EOF, EOF, closed by peer.
    let conn = events
        .iter()
        .find(|e| e["kind"] == "accept" && e["peer"] == local.as_str())
        .expect("accept line with our address")["conn"]
        .clone();
    // (A new socket may also report a writable-only event, depending on when the loop
    // polls; with nothing queued the loop does nothing with it, so it is left out here.)
    let writable_only =
        |e: &Value| e["kind"] == "event" && e["readable"] == false && e["read_closed"] == false;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["conn"] == conn && !writable_only(e))
        .collect();
    let kinds: Vec<&str> = mine.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["accept", "event", "read", "write", "event", "eof", "closed"],
        "{mine:#?}"
    );
    assert_eq!(mine[2]["bytes"], 6);
    assert_eq!(
        (&mine[3]["wrote"], &mine[3]["of"], &mine[3]["queued"]),
        (&6.into(), &6.into(), &0.into())
    );
    assert_eq!(mine[4]["read_closed"], true);
    assert_eq!(mine[6]["reason"], "closed by peer");

    // The record agrees with the server's own summary.
    let read: u64 = events
        .iter()
        .filter(|e| e["kind"] == "read")
        .filter_map(|e| e["bytes"].as_u64())
        .sum();
    assert_eq!(read, summary(&stderr, "bytes_in"));
    let accepts = events.iter().filter(|e| e["kind"] == "accept").count() as u64;
    assert_eq!(accepts, summary(&stderr, "accepted"));
}

#[test]
fn the_record_limit_holds() {
    let record = TempPath::new("limited.jsonl");
    let server = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--record",
        record.as_str(),
        "--record-limit",
        "50",
    ]);
    for i in 0..100 {
        let mut conn = common::connect(server.addr());
        let msg = format!("message {i}");
        conn.write_all(msg.as_bytes()).expect("send");
        assert_eq!(common::read_n(&mut conn, msg.len()), msg.as_bytes());
    }
    stop(server);
    let events = lines(&record.0);
    assert_eq!(events.len(), 50, "the limit is the number of lines");
    assert_eq!(events[49]["kind"], "limit");
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let record = TempPath::new("exists.jsonl");
    std::fs::write(&record.0, b"keep me").expect("write");
    let out = common::run_netloop(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--record",
            record.as_str(),
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains(record.as_str()), "{}", out.stderr);
    assert_eq!(std::fs::read(&record.0).expect("read"), b"keep me");
}

#[test]
fn a_stress_run_is_recorded_too() {
    let record = TempPath::new("stress.jsonl");
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let out = common::run_netloop(
        &[
            "stress",
            &addr,
            "--idle",
            "5",
            "--active",
            "1",
            "--hold",
            "0.5",
            "--workers",
            "1",
            "--record",
            record.as_str(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", out.stderr);
    let events = lines(&record.0);
    let connected = events.iter().filter(|e| e["kind"] == "connected").count();
    assert_eq!(connected, 6, "5 idle and 1 active connection");
    assert!(events.iter().any(|e| e["kind"] == "write"));
    assert!(events.iter().any(|e| e["kind"] == "read"));
    drop(server);
}
