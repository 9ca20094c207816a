//! `netloop fetch`'s network behaviour against real loopback servers: `--retry` (503 with
//! `Retry-After`, resets, a refused port), phase timings in `--json`, `--resolve`,
//! happy eyeballs (an address whose connects hang), and proxies (`-x`, the proxy
//! environment, `no_proxy`, absolute-form requests, CONNECT tunnels with TLS inside).
//!
//! Each test runs the real binary with a clean proxy environment (the host's own
//! `http_proxy` must not leak in) and checks its `--json` lines. Nothing depends on
//! timing to pass: waits are only checked from below (a timer never fires early), and
//! every run is bounded by `common::TIMEOUT`, far above what any case needs.

mod common;
mod fetch_server;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fetch_server::net::{make_tls, FlakyServer, HungListener, Proxy, Socks5Proxy};
use fetch_server::{pattern, TestServer};
use serde_json::Value;

/// One finished run (`common::RunOutput`: status, stdout, stderr, `results()`).
type Run = common::RunOutput;

/// Run `netloop fetch ARGS` with only `env` as proxy environment; bounded.
#[track_caller]
fn fetch_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    common::run_fetch(args, b"", env)
}

#[track_caller]
fn fetch(args: &[&str]) -> Run {
    fetch_env(args, &[])
}

#[track_caller]
fn num(r: &Value, key: &str) -> f64 {
    r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {r}"))
}

#[test]
fn retries_503_with_retry_after_then_succeeds() {
    let server = FlakyServer::start();
    let dir = common::fresh_dir("retry503");
    let out = dir.join("out");
    // Retry-After in seconds (1 s), and as an HTTP date in the past (at once).
    let secs = server.url("/503/1?after=1");
    let date = server.url("/503/2?after=Thu,%2001%20Jan%201970%2000:00:00%20GMT");
    let run = fetch(&[
        "--json",
        "--retry",
        "3",
        "-o",
        out.to_str().unwrap(),
        &secs,
        &date,
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let results = run.results();
    let r = &results[&secs];
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    // The 1 s wait is a loop timer: never early (a little slack for the loop's
    // millisecond clock, read once per turn).
    assert!(
        num(r, "elapsed_ms") >= 990.0,
        "Retry-After: 1 honoured: {r}"
    );
    let file = r["file"].as_str().expect("file");
    assert_eq!(
        std::fs::read(file).expect("read"),
        b"ok",
        "the 503 body is not saved"
    );
    let r = &results[&date];
    assert_eq!(
        (r["status"].clone(), r["attempts"].clone()),
        (200.into(), 3.into()),
        "{r}"
    );
    assert_eq!(server.hits("/503/1?after=1"), 2);
    // Only the files of the final responses are left.
    let files = std::fs::read_dir(&out).expect("out dir").count();
    assert_eq!(files, 2, "one file per URL");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retry_after_is_capped_by_retry_max_time_and_attempts_run_out() {
    let server = FlakyServer::start();
    // An hour's Retry-After, cut to what --retry-max-time leaves (1 s): the run ends
    // long before TIMEOUT, with the last 503 as the result.
    let url = server.url("/503/100?after=3600");
    let run = fetch(&["--json", "--retry", "1", "--retry-max-time", "1", &url]);
    assert!(!run.status.success());
    let r = run.only(&url);
    assert_eq!(r["status"], 503, "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(r["error"], Value::Null, "a status is a result: {r}");
    assert_eq!(
        run.stdout, b"busy, come back later",
        "the last response is printed"
    );
    assert_eq!(server.hits("/503/100?after=3600"), 2);

    // Without --retry: one attempt, the 503 as it is.
    let url = server.url("/503/1?after=0");
    let run = fetch(&["--json", &url]);
    let r = run.only(&url);
    assert_eq!(
        (r["status"].clone(), r["attempts"].clone()),
        (503.into(), 1.into()),
        "{r}"
    );
}

#[test]
fn resets_and_refused_connects_are_retried() {
    let server = FlakyServer::start();
    let dir = common::fresh_dir("resets");
    let out = dir.join("out");
    let reset = server.url("/reset/2");
    let cut = server.url("/cut/1");
    let refused = format!("http://127.0.0.1:{}/", common::closed_port());
    let run = fetch(&[
        "--json",
        "--retry",
        "2",
        "--retry-delay",
        "0.05",
        "-o",
        out.to_str().unwrap(),
        &reset,
        &cut,
        &refused,
    ]);
    let results = run.results();
    let r = &results[&reset];
    assert_eq!(
        (r["status"].clone(), r["attempts"].clone()),
        (200.into(), 3.into()),
        "{r}"
    );
    assert_eq!(server.hits("/reset/2"), 3);
    // A body cut by a reset: the partial file is dropped, the retry's body saved whole.
    let r = &results[&cut];
    assert_eq!(
        (r["status"].clone(), r["attempts"].clone()),
        (200.into(), 2.into()),
        "{r}"
    );
    assert_eq!(r["bytes"], 1000, "{r}");
    let file = r["file"].as_str().expect("file");
    assert_eq!(std::fs::read(file).expect("read"), vec![b'y'; 1000]);
    let r = &results[&refused];
    assert_eq!(r["attempts"], 3, "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("connection refused") && error.contains("after 3 attempts"),
        "{r}"
    );
    assert!(!run.status.success());
    let files = std::fs::read_dir(&out).expect("out dir").count();
    assert_eq!(files, 2, "no partial or failed file left");

    // A body that already went to stdout is not retried (it cannot be taken back).
    let url = server.url("/cut/1?stdout");
    let run = fetch(&["--json", "--retry", "3", "--retry-delay", "0", &url]);
    let r = run.only(&url);
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(
        run.stdout,
        vec![b'x'; 500],
        "what arrived is on stdout, once"
    );
    assert_eq!(server.hits("/cut/1?stdout"), 1);

    // Without --retry a reset is final.
    let url = server.url("/reset/1");
    let r = fetch(&["--json", &url]).only(&url);
    assert_eq!(r["attempts"], 1, "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("reset"),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn phase_timings_in_json() {
    let server = TestServer::start();
    let url = server.url("/len/1000");
    let r = fetch(&["--json", &url]).only(&url);
    assert_eq!(r["status"], 200, "{r}");
    let (dns, connect, ttfb, total) = (
        num(&r, "dns_us"),
        num(&r, "connect_us"),
        num(&r, "ttfb_us"),
        num(&r, "total_us"),
    );
    assert!(dns <= connect && connect <= ttfb && ttfb <= total, "{r}");
    assert!(total > 0.0, "{r}");
    assert_eq!(r["tls_us"], Value::Null, "no TLS on http: {r}");
    assert!(
        num(&r, "elapsed_ms") > 0.0,
        "elapsed_ms is not 0 on loopback: {r}"
    );
    assert_eq!(r["attempts"], 1);
}

#[test]
fn resolve_gives_a_name_its_address() {
    let server = TestServer::start();
    let port = server.addr.port();
    // `.invalid` never resolves (RFC 6761): only --resolve can make this work.
    let url = format!("http://netloop-test.invalid:{port}/len/10");
    let entry = format!("netloop-test.invalid:{port}:127.0.0.1");
    let run = fetch(&["--json", "--resolve", &entry, &url]);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, pattern(10));
    // The same name on another port is not covered, and a malformed entry is refused.
    let other = format!("http://netloop-test.invalid:{}/", common::closed_port());
    let r = fetch(&["--json", "--resolve", &entry, &other]).only(&other);
    assert!(
        r["error"].as_str().unwrap_or_default().contains("DNS"),
        "{r}"
    );
    let run = fetch(&["--resolve", "nonsense", &url]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--resolve"), "{}", run.stderr);
}

/// The first address's connects hang; the second answers. With a connect timeout far
/// above the test's bound, only happy eyeballs can finish the run: the second connect
/// starts 250 ms after the first, not after the first gave up.
#[test]
fn happy_eyeballs_races_past_a_hung_address() {
    let server = TestServer::start();
    let port = server.addr.port();
    let Some(_hung) = HungListener::bind(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port) else {
        println!("SKIPPED happy_eyeballs: could not make connects to 127.0.0.2:{port} hang");
        return;
    };
    let url = format!("http://eyeballs.invalid:{port}/len/100");
    let entry = format!("eyeballs.invalid:{port}:127.0.0.2,127.0.0.1");
    let run = fetch(&[
        "--json",
        "--connect-timeout",
        "120",
        "--resolve",
        &entry,
        &url,
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.only(&url);
    assert_eq!(r["bytes"], 100, "{r}");
    assert!(
        num(&r, "connect_us") >= 249_000.0,
        "the second address started after the attempt delay: {r}"
    );
    assert_eq!(server.accepts(), 1, "one connection carried it");
}

/// IPv6 first: with both families given IPv4 first, the IPv6 address (hung) is still
/// tried first, and the IPv4 one 250 ms later.
#[test]
fn happy_eyeballs_tries_ipv6_first() {
    let server = TestServer::start();
    let port = server.addr.port();
    let Some(_hung) = HungListener::bind(IpAddr::V6(Ipv6Addr::LOCALHOST), port) else {
        println!("SKIPPED happy_eyeballs_tries_ipv6_first: no hanging listener on [::1]:{port}");
        return;
    };
    let url = format!("http://eyeballs.invalid:{port}/len/100");
    let entry = format!("eyeballs.invalid:{port}:127.0.0.1,[::1]");
    let run = fetch(&[
        "--json",
        "--connect-timeout",
        "120",
        "--resolve",
        &entry,
        &url,
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.only(&url);
    assert!(
        num(&r, "connect_us") >= 249_000.0,
        "::1 was tried first, 127.0.0.1 after the delay: {r}"
    );
}

#[test]
fn http_proxy_gets_absolute_form_requests() {
    let proxy = Proxy::start(HashMap::new());
    // The name never resolves here: only the proxy sees it.
    let url = "http://origin.invalid:8080/a/b?c=d";
    let run = fetch(&["--json", "-x", &proxy.url(), url]);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "GET http://origin.invalid:8080/a/b?c=d HTTP/1.1"
    );
    let asked = proxy.asked();
    assert!(
        asked[0]
            .headers
            .iter()
            .any(|h| h == "Host: origin.invalid:8080"),
        "{asked:?}"
    );

    // From the environment: http_proxy (lower case), with credentials.
    let with_creds = format!("http://user:s%3Acret@{}", proxy.addr);
    let run = fetch_env(&[url], &[("http_proxy", &with_creds)]);
    assert!(run.status.success(), "{}", run.stderr);
    let asked = proxy.asked();
    let last = asked.last().expect("asked");
    assert_eq!(last.line, "GET http://origin.invalid:8080/a/b?c=d HTTP/1.1");
    assert!(
        last.headers
            .iter()
            .any(|h| h == "Proxy-Authorization: Basic dXNlcjpzOmNyZXQ="),
        "{last:?}"
    );
}

#[test]
fn no_proxy_and_upper_case_http_proxy_go_direct() {
    let server = TestServer::start();
    let proxy = Proxy::start(HashMap::new());
    let url = server.url("/len/10");
    // curl ignores HTTP_PROXY (upper case); no_proxy lists the host.
    for env in [
        vec![("HTTP_PROXY", proxy.url())],
        vec![
            ("http_proxy", proxy.url()),
            ("no_proxy", "localhost,127.0.0.1".into()),
        ],
        vec![("http_proxy", proxy.url()), ("NO_PROXY", "*".into())],
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = fetch_env(&[&url], &env);
        assert!(run.status.success(), "{env:?}: {}", run.stderr);
        assert_eq!(run.stdout, pattern(10), "{env:?}");
    }
    // --noproxy on the command line too.
    let run = fetch(&["-x", &proxy.url(), "--noproxy", "127.0.0.1", &url]);
    assert_eq!(run.stdout, pattern(10));
    assert!(
        proxy.asked().is_empty(),
        "the proxy saw nothing: {:?}",
        proxy.asked()
    );
    // A proxy that is down is an error, not a silent direct connect.
    let down = format!("http://127.0.0.1:{}", common::closed_port());
    let r = fetch_env(&["--json", &url], &[("http_proxy", &down)]).only(&url);
    assert!(
        r["error"].as_str().unwrap_or_default().contains("refused"),
        "{r}"
    );
}

#[test]
fn https_through_a_connect_tunnel() {
    let (config, ca_pem) = make_tls("netloop proxy test CA");
    let server = TestServer::start_with(Some(config));
    let port = server.addr.port();
    let dir = common::fresh_dir("connect");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("write CA");
    // `localhost:PORT` as the proxy sees it goes to the TLS server.
    let authority = format!("localhost:{port}");
    let proxy = Proxy::start(HashMap::from([(authority.clone(), server.addr)]));
    let urls: Vec<String> = (0..5)
        .map(|i| format!("https://localhost:{port}/len/{}", 1000 * (i + 1)))
        .collect();
    let mut args = vec!["--json", "--cacert", ca.to_str().unwrap()];
    args.extend(urls.iter().map(String::as_str));
    let run = fetch_env(&args, &[("HTTPS_PROXY", &proxy.url())]);
    assert!(run.status.success(), "{}", run.stderr);
    let results = run.results();
    for (i, url) in urls.iter().enumerate() {
        let r = &results[url];
        assert_eq!(r["bytes"], 1000 * (i as u64 + 1), "{r}");
        let (connect, tls, ttfb) = (num(r, "connect_us"), num(r, "tls_us"), num(r, "ttfb_us"));
        assert!(connect <= tls && tls <= ttfb, "{r}");
    }
    let asked = proxy.asked();
    assert!(!asked.is_empty());
    for a in &asked {
        assert_eq!(a.line, format!("CONNECT {authority} HTTP/1.1"), "{asked:?}");
        assert!(a.headers.iter().any(|h| *h == format!("Host: {authority}")));
    }
    // Tunnels are kept alive and reused like direct connections (at most --per-host).
    assert!(asked.len() <= 6, "{} tunnels for 5 URLs", asked.len());

    // A proxy that refuses the tunnel: a clear error.
    let refusing = Proxy::start(HashMap::new());
    let url = "https://nowhere.invalid:1/";
    let r = fetch(&["--json", "-x", &refusing.url(), url]).only(url);
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("proxy refused the tunnel: 502"),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `socks5h://`: the proxy gets the host *name* (it resolves it), for http (origin-form
/// requests through the tunnel) and https (TLS inside it), with and without credentials.
#[test]
fn socks5h_tunnels_by_name() {
    let plain = TestServer::start();
    let (config, ca_pem) = make_tls("netloop socks test CA");
    let tls = TestServer::start_with(Some(config));
    let dir = common::fresh_dir("socks");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("write CA");
    let http_target = "origin.invalid:8080".to_string();
    let https_target = format!("localhost:{}", tls.addr.port());
    let targets = HashMap::from([
        (http_target.clone(), plain.addr),
        (https_target.clone(), tls.addr),
    ]);
    let http_url = "http://origin.invalid:8080/len/100";
    let https_url = format!("https://{https_target}/len/200");

    let proxy = Socks5Proxy::start(targets.clone(), None);
    let socks = format!("socks5h://{}", proxy.addr);
    let run = fetch(&[
        "--json",
        "--cacert",
        ca.to_str().unwrap(),
        "-x",
        &socks,
        http_url,
        &https_url,
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let results = run.results();
    assert_eq!(results[http_url]["bytes"], 100);
    assert_eq!(results[&https_url]["bytes"], 200);
    let mut asked: Vec<String> = proxy.asked().into_iter().map(|a| a.target).collect();
    asked.sort();
    assert_eq!(asked, vec![https_target.clone(), http_target.clone()]);

    // With credentials, from the environment (ALL_PROXY covers both schemes).
    let proxy = Socks5Proxy::start(targets, Some(("alice", "s3cret")));
    let socks = format!("socks5h://alice:s3cret@{}", proxy.addr);
    let run = fetch_env(&["--json", http_url], &[("ALL_PROXY", &socks)]);
    assert!(run.status.success(), "{}", run.stderr);
    let asked = proxy.asked();
    assert_eq!(
        asked[0].credentials,
        Some(("alice".to_string(), "s3cret".to_string()))
    );
    // Wrong password: a clear error.
    let bad = format!("socks5h://alice:wrong@{}", proxy.addr);
    let r = fetch(&["--json", "-x", &bad, http_url]).only(http_url);
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the user name"),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
