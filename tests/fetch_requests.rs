//! What `netloop fetch` sends, and how it reads what comes back compressed, against
//! the request-echo server in `fetch_server/requests.rs` on loopback.
//!
//! - requests: `-H` (adding, replacing and removing defaults), `-A`, `-X`, `-d`,
//!   `--data-binary @FILE` (checked by the server's checksum of the body it received),
//!   `-u` and credentials in the URL, `-e`;
//! - redirects: 301/302/303 turn a POST into a GET without body, 307/308 resend it (a
//!   streamed file too); credentials and the user's `Cookie` stay on their host;
//! - compression: gzip, deflate, br and zstd bodies, plain and chunked, decoded into the
//!   exact text (`bytes` decoded, `wire_bytes` as sent), and corrupt or truncated ones
//!   failing their URL with a one-line error and no file;
//! - cookies: a `Set-Cookie` reaches the next request of the run, along a redirect and
//!   through `-c FILE` / `-b FILE`.
//!
//! Every run is the real binary, bounded by `common::run_netloop`'s timeout.

mod common;
mod fetch_server;

use common::{pseudo_random_bytes, run_netloop, RunOutput, TempDir, TempPath};
use fetch_server::requests::{sample_text, sha256_hex, RequestServer};
use serde_json::Value;

/// What `/echo` said it received.
#[derive(Debug)]
struct Echo {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body_len: u64,
    body_sha: String,
}

impl Echo {
    #[track_caller]
    fn parse(text: &[u8]) -> Echo {
        let text = String::from_utf8_lossy(text);
        let mut echo = Echo {
            method: String::new(),
            target: String::new(),
            headers: Vec::new(),
            body_len: 0,
            body_sha: String::new(),
        };
        for line in text.lines() {
            if let Some(m) = line.strip_prefix("method ") {
                echo.method = m.into();
            } else if let Some(t) = line.strip_prefix("target ") {
                echo.target = t.into();
            } else if let Some(h) = line.strip_prefix("h ") {
                let (n, v) = h.split_once(": ").unwrap_or((h.trim_end_matches(':'), ""));
                echo.headers.push((n.into(), v.into()));
            } else if let Some(b) = line.strip_prefix("body ") {
                let (len, sha) = b.split_once(' ').expect("body line");
                echo.body_len = len.parse().expect("body length");
                echo.body_sha = sha.into();
            }
        }
        assert!(!echo.method.is_empty(), "not an echo: {text}");
        echo
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// `netloop fetch ARGS`, expecting success.
#[track_caller]
fn fetch_ok(args: &[&str]) -> RunOutput {
    let mut all = vec!["fetch"];
    all.extend_from_slice(args);
    let run = run_netloop(&all, b"");
    assert!(
        run.status.success(),
        "fetch {args:?} failed: {}",
        run.stderr
    );
    run
}

/// One URL, its body (the echo) on stdout.
#[track_caller]
fn echo(args: &[&str]) -> Echo {
    Echo::parse(&fetch_ok(args).stdout)
}

#[test]
fn headers_method_body_and_credentials_reach_the_server() {
    let server = RequestServer::start();
    let url = server.url("/echo?x=1");

    let e = echo(&[&url]);
    assert_eq!((e.method.as_str(), e.target.as_str()), ("GET", "/echo?x=1"));
    assert!(e
        .header("user-agent")
        .is_some_and(|v| v.starts_with("netloop/")));
    assert_eq!(e.header("accept"), Some("*/*"));
    // One URL to stdout: not compressed unless asked (as curl).
    assert_eq!(e.header("accept-encoding"), None);
    assert_eq!(e.body_len, 0);

    // -H replaces a default (-A too, but -H wins), removes one, adds repeated ones.
    let e = echo(&[
        "-H",
        "User-Agent: by-header/1",
        "-A",
        "by-option/2",
        "-H",
        "Accept:",
        "-H",
        "X-One: 1",
        "-H",
        "X-Empty;",
        "-H",
        "X-Two: a, b",
        "--compressed",
        &url,
    ]);
    assert_eq!(e.header("user-agent"), Some("by-header/1"));
    assert_eq!(e.count("accept"), 0, "{e:?}");
    assert_eq!(e.header("x-one"), Some("1"));
    assert_eq!(e.header("x-empty"), Some(""));
    assert_eq!(e.header("x-two"), Some("a, b"));
    assert_eq!(e.header("accept-encoding"), Some("gzip, deflate, br, zstd"));
    assert_eq!(e.count("user-agent"), 1);

    // -X, -d twice (joined with '&'), -u, -e, -A.
    let e = echo(&[
        "-X",
        "PUT",
        "-d",
        "a=1",
        "-d",
        "b=2",
        "-u",
        "alice:s3cret",
        "-e",
        "http://from.example/page",
        "-A",
        "agent/3",
        &url,
    ]);
    assert_eq!(e.method, "PUT");
    assert_eq!(
        (e.body_len, e.body_sha.as_str()),
        (7, sha256_hex(b"a=1&b=2").as_str())
    );
    assert_eq!(e.header("content-length"), Some("7"));
    assert_eq!(
        e.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // base64("alice:s3cret")
    assert_eq!(e.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
    assert_eq!(e.header("referer"), Some("http://from.example/page"));
    assert_eq!(e.header("user-agent"), Some("agent/3"));

    // -d alone means POST; credentials in the URL become Basic (percent-decoded).
    let with_creds = url.replace("http://", "http://bob:p%40ss@");
    let e = echo(&["-d", "x", &with_creds]);
    assert_eq!(e.method, "POST");
    assert_eq!(e.header("authorization"), Some("Basic Ym9iOnBAc3M=")); // bob:p@ss
    assert!(!e.target.contains("bob"));

    // --data-binary @FILE: 5 MiB streamed from the file, byte for byte.
    let file = TempPath::new("upload");
    let data = pseudo_random_bytes(7, 5 * 1024 * 1024 + 3);
    std::fs::write(&file.0, &data).expect("write upload file");
    let e = echo(&["--data-binary", &format!("@{}", file.as_str()), &url]);
    assert_eq!(e.method, "POST");
    assert_eq!(e.body_len, data.len() as u64);
    assert_eq!(e.body_sha, sha256_hex(&data));
}

#[test]
fn redirects_follow_the_method_rules() {
    let server = RequestServer::start();
    let file = TempPath::new("redirect-body");
    let data = pseudo_random_bytes(11, 300_000);
    std::fs::write(&file.0, &data).expect("write body file");
    let at_file = format!("@{}", file.as_str());
    for (code, method, kept) in [
        ("301", "GET", false),
        ("302", "GET", false),
        ("303", "GET", false),
        ("307", "POST", true),
        ("308", "POST", true),
    ] {
        let url = server.url(&format!("/redirect/{code}?to=/echo"));
        let e = echo(&["-d", "form=1", &url]);
        assert_eq!(e.method, method, "{code}");
        match kept {
            true => assert_eq!(e.body_sha, sha256_hex(b"form=1"), "{code}"),
            false => assert_eq!((e.body_len, e.header("content-type")), (0, None), "{code}"),
        }
        // A streamed file body is read again from its start for the second request.
        let e = echo(&["--data-binary", &at_file, &url]);
        assert_eq!(e.method, method, "{code} with a file");
        if kept {
            assert_eq!(e.body_sha, sha256_hex(&data), "{code} with a file");
        } else {
            assert_eq!(e.body_len, 0, "{code} with a file");
        }
    }
    // 303 turns even a PUT into a GET; 301 changes only POST.
    let e = echo(&[
        "-X",
        "PUT",
        "-d",
        "x",
        &server.url("/redirect/303?to=/echo"),
    ]);
    assert_eq!((e.method.as_str(), e.body_len), ("GET", 0));
    let e = echo(&[
        "-X",
        "PUT",
        "-d",
        "x",
        &server.url("/redirect/301?to=/echo"),
    ]);
    assert_eq!((e.method.as_str(), e.body_len), ("PUT", 1));
}

#[test]
fn credentials_and_user_cookies_stay_on_their_host() {
    let a = RequestServer::start();
    let b = RequestServer::start();
    let private = [
        "-u",
        "alice:pw",
        "-H",
        "Cookie: mine=1",
        "-H",
        "X-Kept: yes",
    ];

    // Same host: everything goes along.
    let mut args = private.to_vec();
    let same = a.url("/redirect/302?to=/echo");
    args.push(&same);
    let e = echo(&args);
    assert_eq!(e.header("authorization"), Some("Basic YWxpY2U6cHc="));
    assert_eq!(e.header("cookie"), Some("mine=1"));

    // Another host (another port: another origin): no Authorization, no Cookie.
    let mut args = private.to_vec();
    let cross = a.url(&format!("/redirect/307?to={}", b.url("/echo")));
    args.push(&cross);
    let e = echo(&args);
    assert_eq!(e.header("authorization"), None, "{e:?}");
    assert_eq!(e.header("cookie"), None, "{e:?}");
    assert_eq!(e.header("x-kept"), Some("yes"));

    // Credentials from the first URL do not travel either.
    let with_creds = cross.replacen("http://", "http://bob:pw@", 1);
    let e = echo(&[&with_creds]);
    assert_eq!(e.header("authorization"), None, "{e:?}");
}

#[test]
fn compressed_bodies_are_decoded_as_they_stream() {
    let server = RequestServer::start();
    let dir = TempDir::new("coded");
    let text = sample_text();
    let mut urls = Vec::new();
    for coding in ["gzip", "deflate", "br", "zstd"] {
        for how in ["ok", "chunked", "corrupt", "truncated"] {
            urls.push(server.url(&format!("/coded/{coding}/{how}")));
        }
    }
    let out = dir.path().join("out");
    let mut args = vec!["--json", "-o", out.to_str().expect("utf-8")];
    args.extend(urls.iter().map(String::as_str));
    let mut all = vec!["fetch"];
    all.extend(args);
    let run = run_netloop(&all, b"");
    assert!(!run.status.success(), "corrupt bodies must fail the run");
    let results = run.results();
    assert_eq!(results.len(), urls.len(), "{}", run.stderr);
    for url in &urls {
        let r = &results[url];
        if url.ends_with("/ok") || url.ends_with("/chunked") {
            assert_eq!(r["error"], Value::Null, "{url}: {r}");
            assert_eq!(r["bytes"], text.len() as u64, "{url}: {r}");
            let wire = r["wire_bytes"].as_u64().expect("wire_bytes");
            assert!(wire > 0 && wire * 2 < text.len() as u64, "{url}: {r}");
            let file = r["file"].as_str().expect("file");
            assert!(
                std::fs::read(file).expect("saved") == text,
                "{url}: {file} differs"
            );
        } else {
            let error = r["error"].as_str().unwrap_or_else(|| panic!("{url}: {r}"));
            let what = if url.ends_with("/corrupt") {
                "corrupt"
            } else {
                "truncated"
            };
            // A corrupt stream may also be noticed only as a stream that never ends.
            assert!(
                error.contains(what) || error.contains("truncated"),
                "{url}: {error}"
            );
            assert!(!error.contains('\n'));
            assert_eq!(
                r["file"],
                Value::Null,
                "{url}: a failed transfer leaves no file"
            );
        }
    }
    let saved = std::fs::read_dir(&out).expect("out dir").count();
    assert_eq!(saved, 8, "only the complete bodies are kept");

    // --no-compressed: nothing asked, nothing to decode; bytes are what arrived.
    let url = server.url("/coded/gzip/ok");
    let run = fetch_ok(&["--json", "--no-compressed", "-o", dir.str(), &url, &url]);
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        let r: Value = serde_json::from_str(line).expect("json");
        assert_eq!(r["bytes"], text.len() as u64, "{r}");
        assert_eq!(r["wire_bytes"], text.len() as u64, "{r}");
    }
    // One URL to stdout with --compressed: decoded text, like curl --compressed.
    let run = fetch_ok(&["--compressed", &server.url("/coded/br/chunked")]);
    assert!(run.stdout == text, "stdout is not the decoded text");
}

#[test]
fn cookies_set_in_a_run_are_sent_later_in_it() {
    let server = RequestServer::start();
    let dir = TempDir::new("cookies");
    let out = dir.path().join("out");
    // One transfer at a time, so the Set-Cookie comes before the next request.
    let set = server.url("/setcookie?c=sid=abc123");
    let echo_url = server.url("/echo");
    let chain = server.url("/setcookie-redirect?c=step=2");
    let jar = dir.path().join("jar.txt");
    let run = fetch_ok(&[
        "--json",
        "--concurrency",
        "1",
        "-o",
        out.to_str().expect("utf-8"),
        "-c",
        jar.to_str().expect("utf-8"),
        &set,
        &echo_url,
        &chain,
    ]);
    let first = run.results();
    let saved = |url: &str| {
        let file = first[url]["file"].as_str().expect("file").to_string();
        Echo::parse(&std::fs::read(file).expect("saved echo"))
    };
    assert_eq!(saved(&echo_url).header("cookie"), Some("sid=abc123"));
    // Set on a redirect, sent on the request it leads to.
    let cookie = saved(&chain).header("cookie").unwrap_or("").to_string();
    assert!(
        cookie.contains("step=2") && cookie.contains("sid=abc123"),
        "{cookie}"
    );

    // -c wrote a Netscape file; -b reads it in a new run.
    let text = std::fs::read_to_string(&jar).expect("cookie jar");
    assert!(text.contains("\tsid\tabc123"), "{text}");
    let e = echo(&["-b", jar.to_str().expect("utf-8"), &echo_url]);
    let cookie = e.header("cookie").unwrap_or("");
    assert!(cookie.contains("sid=abc123"), "{cookie}");
    // -b NAME=VALUE is a Cookie header; --no-cookies keeps none.
    let e = echo(&["-b", "k=v", &echo_url]);
    assert_eq!(e.header("cookie"), Some("k=v"));
    let run = fetch_ok(&[
        "--json",
        "--no-cookies",
        "--concurrency",
        "1",
        "-o",
        out.to_str().expect("utf-8"),
        &set,
        &echo_url,
    ]);
    let file = run.results()[&echo_url]["file"]
        .as_str()
        .expect("file")
        .to_string();
    let e = Echo::parse(&std::fs::read(file).expect("saved echo"));
    assert_eq!(e.header("cookie"), None);
}

#[test]
fn bad_request_options_name_themselves() {
    let server = RequestServer::start();
    let url = server.url("/echo");
    for (args, what) in [
        (vec!["-H", "NoColon"], "-H"),
        (vec!["-H", "Content-Length: 3"], "Content-Length"),
        (vec!["-u", "nopassword"], "-u"),
        (
            vec!["--data-binary", "@/nonexistent/netloop-body"],
            "/nonexistent/netloop-body",
        ),
        (vec!["-I", "-d", "x"], "-I"),
        (vec!["-X", "BAD METHOD"], "-X"),
        (
            vec!["-b", "/nonexistent/netloop-jar"],
            "/nonexistent/netloop-jar",
        ),
    ] {
        let mut all = vec!["fetch"];
        all.extend(&args);
        all.push(&url);
        let run = run_netloop(&all, b"");
        assert!(!run.status.success(), "{args:?} should fail");
        assert!(run.stderr.contains(what), "{args:?}: {}", run.stderr);
    }
}

/// A decompression bomb (128 MiB of zeros in about 128 KiB of gzip) printed to stdout
/// (about 8 MiB peak RSS; without the decoder's stash, 60 MiB and more):
/// the decoded bytes wait for the output in bounded amounts, so the fetcher's memory
/// stays far below the decoded size, and every byte still arrives.
#[test]
fn a_decompression_bomb_keeps_memory_bounded() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    const MIB: u64 = 128;
    const BOUND_KB: u64 = 32 << 10;
    let server = RequestServer::start();
    let mut child = Command::new(common::netloop_bin())
        .args([
            "fetch",
            "--compressed",
            &server.url(&format!("/bomb/{MIB}")),
        ])
        .env("RUST_LOG", "netloop=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop fetch");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    // RSS in KiB, 0 once the process is gone (it may exit right after its last byte).
    let rss = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0u64)
    };
    let (mut total, mut peak) = (0u64, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!("read stdout: {e}"),
        };
        assert!(
            buf[..n].iter().all(|&b| b == 0),
            "a wrong byte near {total}"
        );
        total += n as u64;
        peak = peak.max(rss());
    }
    let (status, stderr) = common::wait_child(&mut child, &mut Some(rx), "netloop fetch");
    assert!(status.success(), "{stderr}");
    eprintln!("peak RSS {peak} KiB");
    assert_eq!(total, MIB << 20, "the whole decoded body arrived: {stderr}");
    assert!(
        peak < BOUND_KB,
        "fetcher RSS reached {peak} KiB decoding a {MIB} MiB body"
    );
}

/// Over HTTPS: a streamed file body goes through the TLS session piece by piece (and
/// again after a 307), and a brotli body is decoded from the decrypted stream.
#[test]
fn https_uploads_and_compressed_bodies() {
    let (config, ca_pem) = fetch_server::net::make_tls("netloop requests test CA");
    let server = RequestServer::start_with(Some(config));
    let ca = TempPath::new("ca");
    std::fs::write(&ca.0, ca_pem).expect("write CA");
    let file = TempPath::new("tls-upload");
    let data = pseudo_random_bytes(3, 3 * 1024 * 1024 + 17);
    std::fs::write(&file.0, &data).expect("write upload file");
    let https = |p: &str| format!("https://{}{p}", server.addr);
    let at_file = format!("@{}", file.as_str());
    for path in ["/echo", "/redirect/307?to=/echo"] {
        let e = echo(&[
            "--cacert",
            ca.as_str(),
            "--data-binary",
            &at_file,
            &https(path),
        ]);
        assert_eq!((e.method.as_str(), e.body_len), ("POST", data.len() as u64));
        assert_eq!(e.body_sha, sha256_hex(&data), "{path}");
    }
    let run = fetch_ok(&[
        "--cacert",
        ca.as_str(),
        "--compressed",
        &https("/coded/br/ok"),
    ]);
    assert!(run.stdout == sample_text(), "the decoded text over TLS");
}

/// A 48 MiB `--data-binary @FILE` to a server that reads slowly: the file is streamed,
/// so the fetcher's peak memory (VmHWM, watched until it exits) stays far below the
/// file's size, and the server gets every byte.
#[test]
fn a_large_upload_is_streamed_in_bounded_memory() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    const BOUND_KB: u64 = 24 << 10;
    let server = RequestServer::start();
    let file = TempPath::new("big-upload");
    let data = pseudo_random_bytes(5, 48 << 20);
    std::fs::write(&file.0, &data).expect("write upload file");
    let at_file = format!("@{}", file.as_str());
    let mut child = Command::new(common::netloop_bin())
        .args(["fetch", "--data-binary", &at_file, &server.url("/slowecho")])
        .env("RUST_LOG", "netloop=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop fetch");
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = out.read_to_end(&mut text);
        text
    });
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    // The high-water mark of its RSS, read until the process is gone.
    let mut peak = 0u64;
    while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0u64);
        peak = peak.max(hwm);
        if hwm == 0 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (status, stderr) = common::wait_child(&mut child, &mut Some(rx), "netloop fetch");
    assert!(status.success(), "{stderr}");
    let e = Echo::parse(&reader.join().expect("stdout reader"));
    assert_eq!(
        (e.body_len, e.body_sha),
        (data.len() as u64, sha256_hex(&data))
    );
    eprintln!("peak RSS {peak} KiB uploading {} MiB", data.len() >> 20);
    assert!(
        peak > 0 && peak < BOUND_KB,
        "fetcher peak RSS {peak} KiB for a 48 MiB upload"
    );
}
