//! `netloop fetch` against servers that misbehave on purpose (`fetch_server/robust.rs`):
//! the bugs and robustness items of issue 11, each provoked on a real loopback socket.
//!
//! - reuse: a server that silently closes keep-alive connections after a response — the
//!   FIN with the last bytes (never send on that connection), or a moment later (the
//!   request is resent once, on a new connection);
//! - interrupts: SIGINT/SIGTERM in the middle of a run (a child process), partial bodies
//!   under temporary names only;
//! - TLS: a self-signed CA:TRUE certificate given with `--cacert`, and errors in words;
//! - heads: endless `100 Continue`, a header trickled forever, `Content-Length: +5`;
//! - output: many URLs with one file name, a low open-file limit, `--fail`.
//!
//! Every run is bounded (`common::TIMEOUT`); nothing here waits on timing to pass except
//! the `--idle-timeout` a test sets itself.

mod common;
mod fetch_server;

use std::path::PathBuf;

use fetch_server::page;
use fetch_server::robust::{Counters, Options, RobustServer};
use serde_json::Value;

/// `netloop fetch ARGS`, URLs on stdin (`-i -`), bounded.
#[track_caller]
fn fetch(args: &[&str], urls: &[String]) -> common::RunOutput {
    common::run_fetch(args, urls.join("\n").as_bytes(), &[])
}

/// Every URL has a result, and every one of them is `page(i)`, complete.
#[track_caller]
fn assert_all_pages(run: &common::RunOutput, urls: &[String]) {
    let results = run.results();
    assert_eq!(
        results.len(),
        urls.len(),
        "one result per URL: {}",
        run.stderr
    );
    let failed: Vec<&Value> = results.values().filter(|r| !r["error"].is_null()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed, e.g. {}",
        failed.len(),
        urls.len(),
        failed[0]
    );
    for (i, url) in urls.iter().enumerate() {
        let r = &results[url];
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["bytes"], page(i).len() as u64, "{r}");
    }
    assert!(run.status.success(), "{}", run.stderr);
}

/// The FIN arrives with the response's last bytes (the server closes at once after
/// every 10th response, although it said keep-alive): the connection must not carry
/// another request. Before the fix, requests written on those connections failed with
/// "connection closed before any response byte" when their one retry met another.
#[test]
fn a_fin_with_the_last_response_is_never_written_to() {
    let server = RobustServer::start(Options {
        close_every: Some(10),
        ..Options::default()
    });
    let urls: Vec<String> = (0..2000)
        .map(|i| server.url(&format!("/page/{i}")))
        .collect();
    let run = fetch(&["--json", "--concurrency", "50", "-i", "-"], &urls);
    assert_all_pages(&run, &urls);
    assert!(server.count(|c: &Counters| &c.silent_closes) >= 150);
}

/// Every connection answers one request; the next one on it is read and the connection
/// closed without a word (as when a server's keep-alive timer runs out while our request
/// is on the way): it fails before any response byte, and is sent again on a *new*
/// connection — not on another idle one, which here is just as dead. Before the fix the
/// one retry took an idle connection when `--per-host` was reached, and failed again.
#[test]
fn a_reused_connection_that_dies_is_retried_on_a_new_one() {
    let server = RobustServer::start(Options {
        answers_per_conn: Some(1),
        ..Options::default()
    });
    let urls: Vec<String> = (0..600)
        .map(|i| server.url(&format!("/page/{i}")))
        .collect();
    let run = fetch(&["--json", "--concurrency", "20", "-i", "-"], &urls);
    assert_all_pages(&run, &urls);
    assert!(
        server.count(|c: &Counters| &c.unanswered) > 0,
        "no reuse was tried"
    );
}

/// A POST (`-d`) is not idempotent: when its reused connection dies before any response
/// byte, it fails instead of being sent again (the server may have acted on it).
#[test]
fn a_post_on_a_reused_connection_that_dies_is_not_resent() {
    let server = RobustServer::start(Options {
        answers_per_conn: Some(1),
        ..Options::default()
    });
    let urls: Vec<String> = (0..10).map(|i| server.url(&format!("/page/{i}"))).collect();
    let run = fetch(
        &["--json", "--concurrency", "1", "-d", "x", "-i", "-"],
        &urls,
    );
    let results = run.results();
    assert_eq!(results.len(), urls.len(), "{}", run.stderr);
    let failed: Vec<&Value> = results.values().filter(|r| !r["error"].is_null()).collect();
    assert!(
        !failed.is_empty(),
        "a reused connection died: a POST must fail"
    );
    for r in &failed {
        let error = r["error"].as_str().unwrap_or_default();
        assert!(error.contains("closed before any response byte"), "{r}");
    }
    // Every request reached the server exactly once: none was sent again.
    let seen =
        server.count(|c: &Counters| &c.responses) + server.count(|c: &Counters| &c.unanswered);
    assert_eq!(seen, urls.len());
}

/// The resend is bounded: a server that reads every request and never answers costs
/// one connection per URL — a new connection that fails is a real failure, not a reason
/// to try again.
#[test]
fn a_server_that_never_answers_is_not_retried() {
    let server = RobustServer::start(Options {
        answers_per_conn: Some(0),
        ..Options::default()
    });
    let urls: Vec<String> = (0..20).map(|i| server.url(&format!("/page/{i}"))).collect();
    let run = fetch(&["--json", "-i", "-"], &urls);
    let results = run.results();
    assert_eq!(results.len(), 20, "{}", run.stderr);
    for r in results.values() {
        let error = r["error"].as_str().unwrap_or_default();
        assert!(error.contains("closed before any response byte"), "{r}");
    }
    assert_eq!(server.count(|c: &Counters| &c.accepts), 20);
}

/// A reused connection that is reset (the server closed with our request unread) is
/// resent the same way, and so is one closed a moment after its response.
#[test]
fn a_reset_or_late_close_after_reuse_is_retried() {
    let server = RobustServer::start(Options {
        close_every: Some(1),
        close_delay: std::time::Duration::from_millis(2),
        ..Options::default()
    });
    let urls: Vec<String> = (0..300)
        .map(|i| server.url(&format!("/page/{i}")))
        .collect();
    let run = fetch(&["--json", "--concurrency", "20", "-i", "-"], &urls);
    assert_all_pages(&run, &urls);
}

/// Start `netloop fetch ARGS` with stdout and stderr piped (stdin closed); stderr is
/// collected by a thread (for `common::wait_child`).
fn spawn_fetch(
    args: &[&str],
) -> (
    std::process::Child,
    Option<std::sync::mpsc::Receiver<String>>,
) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::netloop_bin())
        .arg("fetch")
        .args(args)
        .env("RUST_LOG", "netloop=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop fetch");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    (child, Some(rx))
}

/// The names in `dir`.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// SIGINT, then SIGTERM, in the middle of a run with `-o DIR`: 20 URLs done, 3 under way
/// (their partial bodies in temporary files), 10 not started. The run stops starting,
/// cancels the 3 and removes their partial files, prints all 23 results and the
/// summary, and exits with 128 + the signal.
#[test]
fn a_signal_ends_the_run_in_order() {
    use std::io::{BufRead, BufReader};
    for (signal, code, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        let server = RobustServer::start(Options::default());
        let dir = common::fresh_dir(&format!("signal-{signal}"));
        let mut urls: Vec<String> = (0..20).map(|i| server.url(&format!("/page/{i}"))).collect();
        urls.extend((0..3).map(|i| server.url(&format!("/hold/{}", 100_000 + i))));
        urls.extend((20..30).map(|i| server.url(&format!("/page/{i}"))));
        let mut args = vec!["--json", "--concurrency", "3", "-o", dir.to_str().unwrap()];
        args.extend(urls.iter().map(String::as_str));
        let (mut child, mut stderr) = spawn_fetch(&args);
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // 20 results, and the 3 held bodies arriving in their temporary files.
        let mut lines = Vec::new();
        while lines.len() < 20 {
            match rx.recv_timeout(common::TIMEOUT) {
                Ok(line) => lines.push(line),
                Err(_) => panic!("only {} results arrived", lines.len()),
            }
        }
        let parts = |d: &PathBuf| names_in(d).iter().filter(|n| n.ends_with(".part")).count();
        let under_way = common::wait_until(common::TIMEOUT, || {
            (server.count(|c: &Counters| &c.holds) == 3 && parts(&dir) == 3).then_some(())
        });
        assert!(
            under_way.is_some(),
            "held bodies not under way: {:?}",
            names_in(&dir)
        );
        common::signal_child(&child, signal);
        let (status, stderr) = common::wait_child(&mut child, &mut stderr, "netloop fetch");
        while let Ok(line) = rx.recv_timeout(common::TIMEOUT) {
            lines.push(line);
        }
        assert_eq!(status.code(), Some(code), "{name}: {stderr}");
        let run = common::RunOutput {
            status,
            stdout: lines.join("\n").into_bytes(),
            stderr: stderr.clone(),
        };
        let results = run.results();
        assert_eq!(
            results.len(),
            23,
            "{name}: finished and cancelled URLs: {stderr}"
        );
        for (i, url) in urls.iter().enumerate().take(20) {
            let r = &results[url];
            assert_eq!(r["bytes"], page(i).len() as u64, "{r}");
            let file = r["file"].as_str().unwrap_or_default();
            assert_eq!(std::fs::read(file).ok(), Some(page(i)), "{r}");
        }
        for url in &urls[20..23] {
            let r = &results[url];
            let error = r["error"].as_str().unwrap_or_default();
            assert!(error.contains(&format!("interrupted by {name}")), "{r}");
            assert_eq!(r["file"], Value::Null);
        }
        assert!(
            stderr.contains("10 not started") && stderr.contains(&format!("interrupted by {name}")),
            "{stderr}"
        );
        // Only the 20 complete bodies are left: no partial file, no temporary file.
        let left = names_in(&dir);
        assert_eq!(left.len(), 20, "{left:?}");
        assert!(left.iter().all(|n| !n.starts_with('.')), "{left:?}");
        let hung_up = common::wait_until(common::TIMEOUT, || {
            (server.count(|c: &Counters| &c.hangups) == 3).then_some(())
        });
        assert!(
            hung_up.is_some(),
            "the cancelled transfers' connections were closed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A second signal exits at once, even while the first one's orderly end waits for an
/// output that cannot move (a stdout pipe nobody reads holds the writer thread).
#[test]
fn a_second_signal_exits_at_once() {
    let server = RobustServer::start(Options::default());
    // 16 MiB to stdout: far more than the pipe and the fetcher's bound hold.
    let url = server.url(&format!("/hold/{}", 16 << 20));
    let (mut child, mut stderr) = spawn_fetch(&[&url]);
    let stdout = child.stdout.take().expect("stdout"); // open, never read
    let started = common::wait_until(common::TIMEOUT, || {
        (server.count(|c: &Counters| &c.holds) == 1).then_some(())
    });
    assert!(started.is_some(), "the body never started");
    // The writer is stuck only once the pipe is full: before that, a signal would find
    // nothing blocked and the run would (rightly) end at the first one.
    let full = common::wait_until(common::TIMEOUT, || {
        (pipe_unread(&stdout) >= PIPE_FULL).then_some(())
    });
    assert!(full.is_some(), "the body never filled the stdout pipe");
    common::signal_child(&child, libc::SIGINT);
    // The first signal cancelled the transfer (its connection is closed) ...
    let cancelled = common::wait_until(common::TIMEOUT, || {
        (server.count(|c: &Counters| &c.hangups) == 1).then_some(())
    });
    assert!(
        cancelled.is_some(),
        "the first SIGINT did not cancel the transfer"
    );
    // ... but the run cannot end while its output is stuck.
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "nothing should let the run end while stdout is blocked"
    );
    common::signal_child(&child, libc::SIGINT);
    let (status, _) = common::wait_child(&mut child, &mut stderr, "netloop fetch");
    assert_eq!(status.code(), Some(130));
}

/// Linux's default pipe capacity: a pipe holding this much takes no more.
const PIPE_FULL: i32 = 64 * 1024;

/// Bytes written into a pipe and not read yet (`FIONREAD` on its read end).
fn pipe_unread(pipe: &std::process::ChildStdout) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == -1 {
        0
    } else {
        n
    }
}

/// A self-signed certificate for `names`, marked CA:TRUE as `openssl req -x509` marks
/// it, valid from `from` to `until` (years); a server config using it, and its PEM.
fn self_signed(
    names: &[&str],
    from: i32,
    until: i32,
) -> (std::sync::Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "netloop self-signed test");
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).expect("certificate");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], der)
    .expect("server config");
    (std::sync::Arc::new(config), cert.pem())
}

/// The one result of a one-URL run (a JSON line on stderr: stdout has the body), and
/// its error text ("" if none).
#[track_caller]
fn only_result(run: &common::RunOutput) -> (Value, String) {
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    let r: Value = serde_json::from_str(lines[0]).unwrap_or_default();
    let error = r["error"].as_str().unwrap_or_default().to_string();
    (r, error)
}

/// `--cacert` with an ordinary self-signed certificate (CA:TRUE) is accepted, as curl
/// accepts it — for the names it has, within its dates; without `--cacert`, or for
/// another name, or expired, the error says so in words.
#[test]
fn a_self_signed_certificate_given_with_cacert() {
    let dir = common::fresh_dir("self-signed");
    let (config, pem) = self_signed(&["localhost", "127.0.0.1"], 2020, 2090);
    let server = RobustServer::start_with(Options::default(), Some(config));
    let cacert = dir.join("self.pem");
    std::fs::write(&cacert, pem).expect("write cert");
    let port = server.addr.port();
    let urls = vec![
        format!("https://localhost:{port}/page/0"),
        format!("https://127.0.0.1:{port}/page/1"),
    ];
    let run = fetch(
        &["--json", "--cacert", cacert.to_str().unwrap(), "-i", "-"],
        &urls,
    );
    assert_all_pages(&run, &urls);

    let url = vec![format!("https://127.0.0.1:{port}/page/0")];
    let run = fetch(&["--json", "-i", "-"], &url);
    let (_, error) = only_result(&run);
    assert!(
        error.contains("self-signed and not trusted") && error.contains("--cacert"),
        "{error}"
    );

    // The same kind of certificate for another name only: the name is checked.
    let error = pinned_error(&cacert, &["localhost"], 2020, 2090);
    assert!(
        error.contains("is for localhost, not for 127.0.0.1"),
        "{error}"
    );

    // Expired: its dates are checked too.
    let error = pinned_error(&cacert, &["127.0.0.1"], 2000, 2001);
    assert!(
        error.contains("certificate expired on 2001-01-01 00:00:00 UTC"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The error of one fetch from 127.0.0.1 whose self-signed certificate (for `names`,
/// valid `from`..`until`) is the one given with `--cacert` (written to `cacert`).
#[track_caller]
fn pinned_error(cacert: &std::path::Path, names: &[&str], from: i32, until: i32) -> String {
    let (config, pem) = self_signed(names, from, until);
    let server = RobustServer::start_with(Options::default(), Some(config));
    std::fs::write(cacert, pem).expect("write cert");
    let url = vec![format!("https://127.0.0.1:{}/page/0", server.addr.port())];
    let cacert = cacert.to_str().expect("utf-8 path");
    let run = fetch(&["--json", "--cacert", cacert, "-i", "-"], &url);
    only_result(&run).1
}

/// `https://` to a port that speaks plain HTTP (it answers the ClientHello with a 400,
/// as nginx does, or just closes, as our test server does): said in words.
#[test]
fn https_to_a_plain_http_port_is_said_plainly() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let run = fetch(
        &["--json", "-i", "-"],
        &[format!("https://127.0.0.1:{port}/")],
    );
    let (_, error) = only_result(&run);
    assert!(
        error.contains("TLS handshake failed: the server does not speak TLS on this port"),
        "{error}"
    );
    let server = RobustServer::start(Options::default());
    let url = vec![format!("https://127.0.0.1:{}/page/0", server.addr.port())];
    let run = fetch(&["--json", "-i", "-"], &url);
    let (_, error) = only_result(&run);
    assert!(
        error.contains("TLS handshake failed: the server closed the connection"),
        "{error}"
    );
}

/// Heads that never end: endless `100 Continue` (one every 50 ms) and a header trickled
/// a byte every 0.2 s. With `--idle-timeout 2` and no `--timeout`, both end — the first
/// at the cap on interim responses, the second when the head's deadline, which reads do
/// not push back, passes. A few interim responses are fine; `Content-Length: +5` is not.
#[test]
fn heads_that_never_end_and_lengths_that_are_not_digits() {
    let server = RobustServer::start(Options::default());
    let urls: Vec<String> = [
        "/continue-flood",
        "/trickle",
        "/interim/3",
        "/cl-plus",
        "/cl-list",
    ]
    .iter()
    .map(|p| server.url(p))
    .collect();
    let started = std::time::Instant::now();
    let run = fetch(&["--json", "--idle-timeout", "2", "-i", "-"], &urls);
    let results = run.results();
    let error = |i: usize| {
        results[&urls[i]]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        error(0).contains("more than 10 interim (1xx) responses"),
        "{}",
        error(0)
    );
    assert!(
        error(1).contains("no complete response head within 2 s of the request"),
        "{}",
        error(1)
    );
    assert_eq!(results[&urls[2]]["status"], 200, "{}", results[&urls[2]]);
    assert_eq!(results[&urls[2]]["bytes"], 18);
    assert!(
        error(3).contains("bad Content-Length \"+5\""),
        "{}",
        error(3)
    );
    assert!(
        error(4).contains("bad Content-Length \"5, 5\""),
        "{}",
        error(4)
    );
    // Not a timing assertion: the trickle would go on for 30 s (the server's patience),
    // and the bounded run would be killed at 20.
    assert!(started.elapsed() < common::TIMEOUT);
}

/// `--fail`, as curl's: a 4xx or 5xx is that URL's error, and its body is neither saved
/// nor printed; without it, the body of a 404 is saved like any other.
#[test]
fn fail_saves_no_error_body() {
    let server = RobustServer::start(Options::default());
    let dir = common::fresh_dir("fail");
    let urls: Vec<String> = ["/status/404", "/status/503", "/page/1"]
        .iter()
        .map(|p| server.url(p))
        .collect();
    let run = fetch(
        &["--json", "--fail", "-o", dir.to_str().unwrap(), "-i", "-"],
        &urls,
    );
    assert!(!run.status.success());
    let results = run.results();
    for (url, status) in urls.iter().zip([404, 503]) {
        let r = &results[url];
        assert_eq!(r["status"], status, "{r}");
        assert_eq!(r["file"], Value::Null, "{r}");
        let error = r["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("HTTP status {status} (--fail")),
            "{r}"
        );
    }
    assert_eq!(results[&urls[2]]["error"], Value::Null);
    assert_eq!(names_in(&dir), ["1"], "only the 200's body is saved");

    // One URL to stdout: nothing printed with --fail, the body without.
    let run = fetch(&["--fail", "-i", "-"], &urls[..1]);
    assert!(
        run.stdout.is_empty() && !run.status.success(),
        "{}",
        run.stderr
    );
    let run = fetch(&["-i", "-"], &urls[..1]);
    assert_eq!(run.stdout, b"status 404 body\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With 64 descriptors and 400 transfers allowed at once, each on its own connection,
/// `socket()` fails with EMFILE for most of them: they wait for descriptors instead of
/// failing, and every URL completes.
#[test]
fn out_of_descriptors_transfers_wait_for_one() {
    use std::process::{Command, Stdio};
    let server = RobustServer::start(Options::default());
    let dir = common::fresh_dir("emfile");
    let urls: Vec<String> = (0..400)
        .map(|i| server.url(&format!("/page/{i}")))
        .collect();
    let list = dir.join("urls.txt");
    std::fs::write(&list, urls.join("\n")).expect("write list");
    let out = dir.join("out");
    let mut cmd = Command::new(common::netloop_bin());
    cmd.args([
        "fetch",
        "--json",
        "--concurrency",
        "400",
        "--per-host",
        "400",
        "-i",
    ])
    .arg(&list)
    .arg("-o")
    .arg(&out)
    .env("RUST_LOG", "netloop=warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    common::limit_open_files(&mut cmd, 64);
    let mut child = cmd.spawn().expect("spawn netloop fetch");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        out
    });
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        let _ = tx.send(text);
    });
    let (status, stderr) = common::wait_child(&mut child, &mut Some(rx), "netloop fetch");
    let run = common::RunOutput {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr,
    };
    assert!(
        run.stderr.contains("out of file descriptors"),
        "{}",
        run.stderr
    );
    assert_all_pages(&run, &urls);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second signal with `-o DIR` while the writer is stuck (the result lines go to a
/// stdout nobody reads): the process exits at once with 130, and the partial body it
/// was writing is not left behind — not under its name, not as a temporary file.
#[test]
fn a_second_signal_leaves_no_partial_file() {
    let server = RobustServer::start(Options::default());
    let dir = common::fresh_dir("second-signal");
    let mut urls = vec![server.url("/hold/100000")];
    urls.extend((0..2000).map(|i| server.url(&format!("/page/{i}"))));
    let list = dir.join("urls.txt");
    std::fs::write(&list, urls.join("\n")).expect("write list");
    let out = dir.join("out");
    let (mut child, mut stderr) = spawn_fetch(&[
        "--json",
        "--concurrency",
        "2",
        "-o",
        out.to_str().unwrap(),
        "-i",
        list.to_str().unwrap(),
    ]);
    let _stdout = child.stdout.take(); // open, never read: 2,000 result lines fill it
    let part = || {
        names_in(&out)
            .iter()
            .any(|n| n.starts_with(".100000.") && n.ends_with(".part"))
    };
    let busy = common::wait_until(common::TIMEOUT, || {
        (part() && server.count(|c: &Counters| &c.responses) >= 1000).then_some(())
    });
    assert!(busy.is_some(), "not under way: {:?}", names_in(&out));
    common::signal_child(&child, libc::SIGINT);
    let cancelled = common::wait_until(common::TIMEOUT, || {
        (server.count(|c: &Counters| &c.hangups) == 1).then_some(())
    });
    assert!(
        cancelled.is_some(),
        "the first SIGINT did not cancel the held transfer"
    );
    // Normally still stuck on stdout; if the writer got through anyway, the run ended
    // in order after the first signal, with the same status and the same guarantees.
    if child.try_wait().expect("try_wait").is_none() {
        common::signal_child(&child, libc::SIGINT);
    }
    let (status, _) = common::wait_child(&mut child, &mut stderr, "netloop fetch");
    assert_eq!(status.code(), Some(130));
    let left = names_in(&out);
    assert!(
        !left.iter().any(|n| n.starts_with('.')),
        "temporary files left: {left:?}"
    );
    assert!(
        !left.contains(&"100000".to_string()),
        "the partial body has no name"
    );
    for name in &left {
        let i: usize = name.parse().expect("a page's name is its number");
        let saved = std::fs::read(out.join(name)).unwrap_or_default();
        assert!(saved == page(i), "{name} is not the whole page");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
