//! `netloop fetch` against real servers on loopback: the test server in `fetch_server/`
//! (plain and TLS, with a CA made here by `rcgen`), and nginx when it is installed.
//!
//! Each test runs the real binary with `--json` and checks every URL's result line: the
//! right status, byte count and redirects, or the right one-line error, while all the
//! other URLs of the same run still complete. Bodies saved with `-o` are compared byte
//! for byte. Every run is bounded by `TIMEOUT`; the slowest case (a server that never
//! answers) costs the `--idle-timeout 1` of its run.
//!
//! Output is written off the loop: a stdout pipe nobody reads must neither stall the
//! loop (its `--timeout` still fires, and nothing received is lost) nor make it hold the
//! whole body (memory stays bounded while the test reads slowly), and a stdout that
//! cannot be written is that URL's error.

mod common;
mod fetch_server;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use fetch_server::net::make_tls;
use fetch_server::{page, pattern, pattern_at, TestServer, CHUNKED, CHUNKED_BODY};
use serde_json::Value;

use common::TIMEOUT;

/// The binary, with no proxy settings from the environment it was started in (fetch
/// follows `http_proxy` and friends as curl does; these tests talk to loopback only).
fn netloop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netloop"));
    for var in common::PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// What one run of `netloop fetch` left behind (status, stdout, stderr, `results()`).
type Run = common::RunOutput;

/// Run `netloop fetch ARGS`, with `stdin` piped in; bounded by `TIMEOUT`.
#[track_caller]
fn fetch(args: &[&str], stdin: Option<&str>) -> Run {
    common::run_fetch(args, stdin.unwrap_or("").as_bytes(), &[])
}

/// Check a successful result: status, body bytes, redirects, and the saved file.
#[track_caller]
fn assert_body(
    results: &HashMap<String, Value>,
    url: &str,
    status: u64,
    body: &[u8],
    redirects: u64,
) {
    let r = results
        .get(url)
        .unwrap_or_else(|| panic!("no result for {url}"));
    assert_eq!(r["error"], Value::Null, "{url}: {r}");
    assert_eq!(r["status"], status, "{url}: {r}");
    assert_eq!(r["bytes"], body.len() as u64, "{url}: {r}");
    assert_eq!(r["redirects"], redirects, "{url}: {r}");
    if let Some(file) = r["file"].as_str() {
        let saved = std::fs::read(file).unwrap_or_else(|e| panic!("{url}: {file}: {e}"));
        assert!(saved == body, "{url}: {file} differs from the body sent");
    }
}

/// Check a failed result: no file, and an error mentioning `what`.
#[track_caller]
fn assert_error(results: &HashMap<String, Value>, url: &str, what: &str) {
    let r = results
        .get(url)
        .unwrap_or_else(|| panic!("no result for {url}"));
    let error = r["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{url}: expected an error: {r}"));
    assert!(
        error.contains(what),
        "{url}: error {error:?} does not say {what:?}"
    );
    assert!(
        !error.contains('\n'),
        "{url}: error is not one line: {error:?}"
    );
    assert_eq!(
        r["file"],
        Value::Null,
        "{url}: a failed transfer leaves no file: {r}"
    );
}

#[test]
fn every_kind_of_response_in_one_run() {
    let server = TestServer::start();
    let dir = common::fresh_dir("kinds");
    let u = |p: &str| server.url(p);
    let refused = format!("http://127.0.0.1:{}/", common::closed_port());
    // A DNS label longer than 63 bytes: getaddrinfo refuses it without asking a DNS
    // server, so the failure is the same, and as quick, on a machine with no network.
    let bad_name = format!("http://{}.invalid/", "a".repeat(64));
    let splits: Vec<String> = (0..=CHUNKED.len())
        .map(|k| u(&format!("/split/{k}")))
        .collect();
    let mut urls: Vec<String> = [
        "/len/0",
        "/len/1",
        "/len/100000",
        "/chunked",
        "/close",
        "/http10",
        "/dribble",
        "/204",
        "/304",
        "/status/404",
        "/redir/rel",
        "/redir/abs",
        "/redir/303",
        "/loop/a",
        "/chain/5",
        "/chain/6",
        "/bighead",
        "/manyheaders",
        "/garbage",
        "/short",
        "/reset",
        "/hang",
    ]
    .iter()
    .map(|p| u(p))
    .collect();
    urls.extend(splits.iter().cloned());
    urls.extend([refused.clone(), bad_name.clone(), "not a url".into()]);
    let list = dir.join("urls.txt");
    std::fs::write(&list, urls.join("\n")).expect("write url list");
    let out = dir.join("out");
    let run = fetch(
        &[
            "--json",
            "-o",
            out.to_str().unwrap(),
            "-i",
            list.to_str().unwrap(),
            "--idle-timeout",
            "1",
            "--timeout",
            "10",
        ],
        None,
    );
    let results = run.results();
    assert_eq!(
        results.len(),
        urls.len(),
        "one result per URL\n{}",
        run.stderr
    );

    assert_body(&results, &u("/len/0"), 200, b"", 0);
    assert_body(&results, &u("/len/1"), 200, b"a", 0);
    assert_body(&results, &u("/len/100000"), 200, &pattern(100_000), 0);
    assert_body(&results, &u("/chunked"), 200, CHUNKED_BODY, 0);
    for url in &splits {
        assert_body(&results, url, 200, CHUNKED_BODY, 0);
    }
    assert_body(&results, &u("/close"), 200, &pattern(5000), 0);
    assert_body(&results, &u("/http10"), 200, b"old style", 0);
    assert_body(&results, &u("/dribble"), 200, &pattern(40), 0);
    assert_body(&results, &u("/204"), 204, b"", 0);
    assert_body(&results, &u("/304"), 304, b"", 0);
    assert_body(&results, &u("/status/404"), 404, b"no such page", 0);
    assert_body(&results, &u("/redir/rel"), 200, &pattern(10), 1);
    assert_body(&results, &u("/redir/abs"), 200, &pattern(20), 1);
    assert_body(&results, &u("/redir/303"), 200, &pattern(30), 1);
    assert_body(&results, &u("/chain/5"), 200, b"end of chain", 5);

    assert_error(&results, &u("/loop/a"), "redirect loop");
    assert_error(&results, &u("/chain/6"), "too many redirects");
    assert_error(&results, &u("/bighead"), "header section over 64 KiB");
    assert_error(&results, &u("/manyheaders"), "more than 100 header fields");
    assert_error(&results, &u("/garbage"), "malformed response");
    assert_error(&results, &u("/short"), "body shorter than Content-Length");
    assert_error(&results, &u("/short"), "500 of 1000");
    assert_error(&results, &u("/reset"), "reset");
    assert_error(&results, &u("/hang"), "timeout");
    assert_error(&results, &refused, "connection refused");
    assert_error(&results, &bad_name, "DNS: cannot resolve");
    assert_error(&results, "not a url", "invalid URL");

    // 11 errors, plus 304 and 404: results, but not successes.
    assert!(
        !run.status.success(),
        "exit status must say something failed"
    );
    assert!(
        run.stderr.contains("13 of"),
        "failure count: {}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_thousand_urls_over_a_few_reused_connections() {
    let server = TestServer::start();
    let dir = common::fresh_dir("thousand");
    let urls: Vec<String> = (0..1000)
        .map(|i| server.url(&format!("/page/{i}")))
        .collect();
    let out = dir.join("out");
    let run = fetch(
        &[
            "--json",
            "--concurrency",
            "50",
            "-o",
            out.to_str().unwrap(),
            "-i",
            "-",
        ],
        Some(&urls.join("\n")),
    );
    assert!(run.status.success(), "{}", run.stderr);
    let results = run.results();
    assert_eq!(results.len(), 1000);
    for (i, url) in urls.iter().enumerate() {
        assert_body(&results, url, 200, &page(i), 0);
    }
    // Keep-alive: at most --per-host (6) connections for 1,000 requests.
    let accepts = server.accepts();
    assert!(
        accepts <= 6,
        "{accepts} connections accepted for 1,000 URLs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_keepalive_means_one_connection_per_url() {
    let server = TestServer::start();
    let urls: Vec<String> = (0..30).map(|i| server.url(&format!("/page/{i}"))).collect();
    let mut args = vec!["--json", "--no-keepalive"];
    args.extend(urls.iter().map(String::as_str));
    let run = fetch(&args, None);
    assert!(run.status.success(), "{}", run.stderr);
    let results = run.results();
    for (i, url) in urls.iter().enumerate() {
        assert_body(&results, url, 200, &page(i), 0);
        assert_eq!(
            results[url]["file"],
            Value::Null,
            "several URLs without -o: no files"
        );
    }
    assert_eq!(server.accepts(), 30);
}

#[test]
fn one_url_prints_its_body_like_curl() {
    let server = TestServer::start();
    let run = fetch(&[&server.url("/len/100000")], None);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stdout == pattern(100_000), "stdout is exactly the body");
    assert!(
        run.stderr.contains("100000 bytes"),
        "result on stderr: {}",
        run.stderr
    );

    let run = fetch(&["--include", &server.url("/redir/rel")], None);
    let text = String::from_utf8_lossy(&run.stdout);
    let expected_tail = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        "abcdefghij"
    );
    assert!(
        text.starts_with("HTTP/1.1 302 Found\r\nLocation: ../len/10\r\n"),
        "{text}"
    );
    assert!(text.ends_with(&expected_tail), "{text}");

    let run = fetch(&["-I", "--include", &server.url("/head")], None);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        "HEAD: headers, no body"
    );

    let run = fetch(&[&server.url("/status/404")], None);
    assert_eq!(
        run.stdout, b"no such page",
        "a non-2xx body is still printed"
    );
    assert!(
        !run.status.success() && run.stderr.contains("1 of 1 URLs failed"),
        "{}",
        run.stderr
    );
}

/// Stdout that cannot be written (`/dev/full`: every write fails with ENOSPC): the body's
/// final flush and the `--include` head are that URL's error, and the exit status says so.
#[test]
fn an_unwritable_stdout_is_an_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        println!("SKIPPED an_unwritable_stdout_is_an_error: no /dev/full");
        return;
    };
    let server = TestServer::start();
    for extra in [&[][..], &["--include"][..]] {
        let mut args = vec!["fetch"];
        args.extend_from_slice(extra);
        let url = server.url("/len/10");
        args.push(&url);
        let output = netloop()
            .args(&args)
            .env("RUST_LOG", "netloop=warn")
            .stdin(Stdio::null())
            .stdout(full.try_clone().expect("dup /dev/full"))
            .stderr(Stdio::piped())
            .output()
            .expect("run netloop fetch");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("FAIL") && stderr.contains("writing to stdout"),
            "{args:?}: {stderr}"
        );
    }
}

/// Resident set size of a running process in KiB; None once it has exited.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Start `netloop fetch ARGS` with stdout and stderr piped (stdin closed).
fn spawn_fetch(args: &[&str]) -> std::process::Child {
    netloop()
        .arg("fetch")
        .args(args)
        .env("RUST_LOG", "netloop=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop fetch")
}

/// Wait for `child` (killed after `TIMEOUT`); its status and stderr.
#[track_caller]
fn finish_child(mut child: std::process::Child) -> (ExitStatus, String) {
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netloop fetch did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, reader.join().unwrap_or_default())
}

/// While stdout is a pipe nobody reads, the loop still runs: the transfer's `--timeout`
/// fires and the fetcher hangs up on the server (a fetcher blocked in `write(1)` never
/// would). Then the test reads stdout: every byte received arrives, in order, and the
/// result reports the timeout. Nothing here depends on timing but the 1 s `--timeout`.
#[test]
fn a_stdout_nobody_reads_does_not_stall_the_loop() {
    let server = TestServer::start();
    // 16 MiB: more than the kernel's socket buffers and the fetcher's bound together,
    // so the server's write blocks until the fetcher hangs up.
    let url = server.url(&format!("/hold/{}", 16 << 20));
    let mut child = spawn_fetch(&["--json", "--timeout", "1", &url]);
    let stdout = child.stdout.take().expect("stdout");
    let hung_up = wait_until(TIMEOUT, || server.holds_closed() == 1);
    if !hung_up {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the fetcher did not hang up on the server while its stdout was not read");
    }
    // Now read it all: the body received before the timeout, intact.
    let mut body = Vec::new();
    let mut stdout = stdout;
    stdout.read_to_end(&mut body).expect("read stdout");
    let (status, stderr) = finish_child(child);
    assert!(!status.success(), "{stderr}");
    let result: Value = serde_json::from_str(stderr.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON result on stderr ({e}): {stderr}"));
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("timeout"), "{result}");
    assert_eq!(
        result["bytes"],
        body.len() as u64,
        "every byte received is written"
    );
    assert!(!body.is_empty(), "some body arrived before the timeout");
    assert!(
        body == pattern(body.len()),
        "stdout is the body's beginning, in order"
    );
}

/// A 96 MiB body to a stdout the test reads slowly: the fetcher's memory stays far
/// below the body's size (it pauses the connection while its writer is behind), and
/// every byte arrives in order.
#[test]
fn a_slow_stdout_keeps_memory_bounded() {
    const SIZE: u64 = 96 << 20;
    const BOUND_KB: u64 = 40 << 10;
    let server = TestServer::start();
    let mut child = spawn_fetch(&[&server.url(&format!("/stream/{SIZE}"))]);
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let (mut offset, mut peak) = (0u64, 0u64);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!("read stdout: {e}"),
        };
        for (i, &b) in buf[..n].iter().enumerate() {
            let at = offset + i as u64;
            assert!(b == pattern_at(at), "byte {at} of the body is wrong");
        }
        offset += n as u64;
        peak = peak.max(rss_kb(pid).unwrap_or(0));
    }
    let (status, stderr) = finish_child(child);
    assert!(status.success(), "{stderr}");
    assert_eq!(offset, SIZE, "the whole body arrived: {stderr}");
    assert!(
        peak < BOUND_KB,
        "fetcher RSS reached {peak} KiB for a {} MiB body",
        SIZE >> 20
    );
}

/// Stdout whose reader is gone: the write fails with EPIPE, and that is the URL's error.
#[test]
fn a_closed_stdout_pipe_is_that_urls_error() {
    let server = TestServer::start();
    let mut child = spawn_fetch(&[&server.url("/len/300000")]);
    drop(child.stdout.take()); // nobody will ever read it
    let (status, stderr) = finish_child(child);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("FAIL") && stderr.contains("writing to stdout: Broken pipe"),
        "{stderr}"
    );
}

/// A file that cannot be written whole (the process may not make files over 100,000
/// bytes: `write` fails with EFBIG, as it would with ENOSPC on a full disk): that URL
/// fails naming the file, its partial file is removed, and the other URL is saved.
#[test]
fn a_file_that_cannot_be_written_is_that_urls_error() {
    use std::os::unix::process::CommandExt;
    let server = TestServer::start();
    let dir = common::fresh_dir("fsize");
    let out = dir.join("out");
    let (big, small) = (server.url("/len/300000"), server.url("/len/1000"));
    let mut cmd = netloop();
    cmd.args(["fetch", "--json", "-o", out.to_str().unwrap(), &big, &small])
        .env("RUST_LOG", "netloop=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec; signal and setrlimit are
    // async-signal-safe and nothing here allocates.
    unsafe {
        cmd.pre_exec(|| {
            // Ignored, SIGXFSZ no longer kills the process: the write returns EFBIG.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 100_000,
                rlim_max: 100_000,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn netloop fetch");
    let mut pipe = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        text
    });
    let (status, stderr) = finish_child(child);
    let stdout = reader.join().unwrap_or_default();
    let run = Run {
        status,
        stdout,
        stderr,
    };
    assert!(!run.status.success(), "{}", run.stderr);
    let results = run.results();
    let path = out.join("300000");
    assert_error(
        &results,
        &big,
        &format!("output: writing {}", path.display()),
    );
    assert!(!path.exists(), "the partial file is removed");
    assert_body(&results, &small, 200, &pattern(1000), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wait (polling, bounded) until `check` holds; true if it did.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

#[test]
fn https_with_a_ca_made_in_the_test() {
    let (config, ca_pem) = make_tls("netloop test CA");
    let server = TestServer::start_with(Some(config));
    let dir = common::fresh_dir("tls");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem).expect("write CA");
    let port = server.addr.port();
    // `localhost` goes through the resolver thread (and may try ::1 first).
    let https = |p: &str| format!("https://localhost:{port}{p}");
    let mut urls: Vec<String> = (0..20).map(|i| https(&format!("/page/{i}"))).collect();
    urls.push(https("/len/300000"));
    urls.push(https("/chunked"));
    urls.push(format!("https://127.0.0.1:{port}/redir/rel"));
    let mut args = vec!["--json", "--cacert", ca.to_str().unwrap()];
    args.extend(urls.iter().map(String::as_str));
    let run = fetch(&args, None);
    assert!(run.status.success(), "{}", run.stderr);
    let results = run.results();
    for i in 0..20 {
        assert_body(&results, &https(&format!("/page/{i}")), 200, &page(i), 0);
    }
    assert_body(&results, &https("/len/300000"), 200, &pattern(300_000), 0);
    assert_body(&results, &https("/chunked"), 200, CHUNKED_BODY, 0);
    assert_body(
        &results,
        &format!("https://127.0.0.1:{port}/redir/rel"),
        200,
        &pattern(10),
        1,
    );
    assert!(
        server.accepts() <= 12,
        "TLS connections reused: {}",
        server.accepts()
    );

    // Another CA, or none (the built-in roots do not know ours): a clear TLS error.
    let (_, other_pem) = make_tls("some other CA");
    let other = dir.join("other.pem");
    std::fs::write(&other, other_pem).expect("write other CA");
    for extra in [vec!["--cacert", other.to_str().unwrap()], vec![]] {
        let url = https("/len/10");
        let out = dir.join("out");
        let mut args = vec!["--json", "-o", out.to_str().unwrap()];
        args.extend(extra);
        args.push(&url);
        let run = fetch(&args, None);
        assert!(!run.status.success());
        let results = run.results();
        assert_error(
            &results,
            &url,
            "TLS handshake failed: the server's certificate is not signed by a CA we trust",
        );
    }

    // --insecure works, and says loudly what it gives up.
    let run = fetch(&["--insecure", &https("/len/10")], None);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, pattern(10));
    assert!(run.stderr.contains("WARNING"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A private nginx on a free loopback port, stopped when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
    prefix: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

fn start_nginx(bin: &str, prefix: &Path) -> Option<Nginx> {
    let www = prefix.join("www");
    write_site(&www)?;
    let port = common::closed_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n\
         error_log {prefix}/error.log;\nevents {{ worker_connections 256; }}\n\
         http {{\n  log_format conn '$connection $request_uri $status';\n\
           access_log {prefix}/access.log conn;\n\
           client_body_temp_path {prefix}; proxy_temp_path {prefix}; fastcgi_temp_path {prefix};\n\
           uwsgi_temp_path {prefix}; scgi_temp_path {prefix};\n\
           server {{\n    listen 127.0.0.1:{port};\n    root {www};\n\
             location = /moved {{ return 301 /p/7.html; }}\n  }}\n}}\n",
        prefix = prefix.display(),
        www = www.display(),
    );
    std::fs::write(prefix.join("nginx.conf"), conf).ok()?;
    let child = Command::new(bin)
        .args([
            "-p",
            prefix.to_str()?,
            "-c",
            prefix.join("nginx.conf").to_str()?,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut nginx = Nginx {
        child,
        port,
        prefix: prefix.to_path_buf(),
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(nginx);
        }
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = nginx.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("nginx exited ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nginx did not start listening on port {port}");
}

/// The nginx binary: on PATH, or where Debian puts it (/usr/sbin is not always on PATH).
fn nginx_binary() -> Option<&'static str> {
    server_binary(&["nginx", "/usr/sbin/nginx"], "-v")
}

/// The fetches every real server gets (its files made by `write_site`): 200 pages, a
/// 3 MiB file, a redirect, a 404; every body checked byte for byte.
#[track_caller]
fn fetch_site(base: &str, out: &Path) -> Run {
    let mut urls: Vec<String> = (0..200).map(|i| format!("{base}/p/{i}.html")).collect();
    urls.push(format!("{base}/big.bin"));
    urls.push(format!("{base}/moved"));
    urls.push(format!("{base}/missing"));
    let run = fetch(
        &["--json", "-o", out.to_str().unwrap(), "-i", "-"],
        Some(&urls.join("\n")),
    );
    let results = run.results();
    for (i, url) in urls.iter().take(200).enumerate() {
        assert_body(&results, url, 200, &page(i), 0);
    }
    assert_body(
        &results,
        &format!("{base}/big.bin"),
        200,
        &pattern(3 << 20),
        0,
    );
    assert_body(&results, &format!("{base}/moved"), 200, &page(7), 1);
    assert_eq!(results[&format!("{base}/missing")]["status"], 404);
    assert!(
        run.stderr.contains("1 of 203 URLs failed"),
        "{}",
        run.stderr
    );
    run
}

/// The files `fetch_site` asks for, under `www`.
fn write_site(www: &Path) -> Option<()> {
    std::fs::create_dir_all(www.join("p")).ok()?;
    for i in 0..200 {
        std::fs::write(www.join(format!("p/{i}.html")), page(i)).ok()?;
    }
    std::fs::write(www.join("big.bin"), pattern(3 << 20)).ok()
}

/// Distinct connections in an access log whose lines start with the connection's id.
fn connections_in_log(log: &str) -> usize {
    let mut ids: Vec<&str> = log.lines().filter_map(|l| l.split(' ').next()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// A server binary: the first of `names` that runs with `version_flag`.
fn server_binary(names: &[&'static str], version_flag: &str) -> Option<&'static str> {
    names.iter().copied().find(|bin| {
        Command::new(bin)
            .arg(version_flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// In CI a missing server is a broken setup (`.ci/run` installs it), not a pass.
fn skip_without(server: &str, package: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {server} is not on PATH (nor /usr/sbin): install {package} (.ci/run \
         does); the {server} test must not be skipped in CI"
    );
    println!("SKIPPED the_same_fetches_against_{server}: {server} is not on PATH (apt-get install {package})");
}

#[test]
fn the_same_fetches_against_nginx() {
    let Some(bin) = nginx_binary() else {
        return skip_without("nginx", "nginx-light");
    };
    let prefix = common::fresh_dir("nginx");
    let nginx = start_nginx(bin, &prefix).expect("set up nginx");
    let base = format!("http://127.0.0.1:{}", nginx.port);
    fetch_site(&base, &prefix.join("out"));
    // nginx's log names the connection of every request: a handful for 203 URLs.
    let log = std::fs::read_to_string(prefix.join("access.log")).unwrap_or_default();
    assert!(
        log.lines().count() >= 203,
        "requests logged: {}",
        log.lines().count()
    );
    let conns = connections_in_log(&log);
    assert!(conns <= 7, "{conns} connections for 203 URLs");
}

/// lighttpd 1.4 (Debian's), in the foreground on a free loopback port: the same
/// fetches as nginx's. Its access log is written when it stops, so the connections are
/// counted after a SIGTERM (each line starts with the client's port: one per connection).
#[test]
fn the_same_fetches_against_lighttpd() {
    let Some(bin) = server_binary(&["lighttpd", "/usr/sbin/lighttpd"], "-v") else {
        return skip_without("lighttpd", "lighttpd");
    };
    let prefix = common::fresh_dir("lighttpd");
    let www = prefix.join("www");
    write_site(&www).expect("write the site");
    let port = common::closed_port();
    let conf = format!(
        "server.document-root = \"{www}\"\nserver.bind = \"127.0.0.1\"\nserver.port = {port}\n\
         server.errorlog = \"{prefix}/error.log\"\n\
         server.modules = (\"mod_redirect\", \"mod_accesslog\")\n\
         accesslog.filename = \"{prefix}/access.log\"\naccesslog.format = \"%{{remote}}p %U %s\"\n\
         url.redirect = (\"^/moved$\" => \"/p/7.html\")\n\
         mimetype.assign = (\".html\" => \"text/html\", \"\" => \"application/octet-stream\")\n",
        www = www.display(),
        prefix = prefix.display(),
    );
    std::fs::write(prefix.join("lighttpd.conf"), conf).expect("write lighttpd.conf");
    let mut child = Command::new(bin)
        .args(["-D", "-f", prefix.join("lighttpd.conf").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lighttpd");
    let up = wait_until(TIMEOUT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            || matches!(child.try_wait(), Ok(Some(_)))
    });
    if !up || matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
        panic!("lighttpd did not start listening on port {port}: {log}");
    }
    let base = format!("http://127.0.0.1:{port}");
    fetch_site(&base, &prefix.join("out"));
    // SAFETY: kill(2) on our own child's pid: a graceful stop flushes the access log.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = wait_until(TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
    let log = std::fs::read_to_string(prefix.join("access.log")).unwrap_or_default();
    assert!(
        log.lines().count() >= 203,
        "requests logged: {}",
        log.lines().count()
    );
    let conns = connections_in_log(&log);
    assert!(conns <= 7, "{conns} connections for 203 URLs");
    let _ = std::fs::remove_dir_all(&prefix);
}
