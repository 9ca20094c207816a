//! Fuzz target: `netloop fetch`'s redirect and cookie handling on arbitrary input — a
//! first URL, then a chain of redirects (status and `Location` from the input) and
//! `Set-Cookie` values, walked the way a transfer walks them (`Transfer::on_head`, then
//! `follow`), with the run's cookie jar (`cookies::Jar`) in between.
//!
//! Run (nightly): `cd fuzz && cargo +nightly fuzz run cookie_redirect -- -max_total_time=60`
//!
//! Input: lines. Line 0 is the first URL (a fixed one if it does not parse). Each later
//! line is a step: a first byte `C` makes the rest a `Set-Cookie` value for the current
//! URL; any other first byte picks a redirect status (301, 302, 303, 307, 308) and the
//! rest is its `Location`.
//!
//! Checked after every step: no panic; a redirect target is http or https; every request
//! head is well formed — lines end in CRLF, no bare CR or LF anywhere (nothing from a
//! URL, a Location or a cookie can start a header or a request of its own) — and ends
//! with an empty line; the credentials (`-u`) and the user's own `Cookie` header go only
//! to the origin they were given for; the body goes only with POST (307/308), never after
//! 301/302/303 turned the POST into a GET.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use netloop::apps::fetch::cookies::Jar;
use netloop::apps::fetch::request::{Data, Request, RequestOptions};
use netloop::apps::fetch::transfer::{HeadAction, Transfer};
use netloop::proto::http_response::{Head, ResponseParser, Step};
use url::Url;

const BODY: &str = "secret-body";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let url = match Url::parse(first) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => Url::parse("http://a.test/start").expect("fixed URL"),
    };
    let Ok(request) = Request::from_options(&RequestOptions {
        data: vec![Data::Ascii(BODY.into())],
        user: Some("user:pw".into()),
        headers: vec!["Cookie: mine=1".into()],
        referer: Some(";auto".into()),
        compressed: true,
        ..RequestOptions::default()
    }) else {
        return;
    };
    let home = url.origin();
    let mut t = Transfer::new(0, first.into(), url, 0, false, false, Arc::new(request));
    let mut jar = Jar::new(true);
    let mut buf = Vec::new();
    for line in lines.take(16) {
        let Some(selector) = line.chars().next() else {
            continue;
        };
        let rest = &line[selector.len_utf8()..];
        if selector == 'C' {
            jar.store(&[rest.to_string()], &t.url);
        } else {
            let status = [301, 302, 303, 307, 308][selector as usize % 5];
            // The head as the fetcher gets it: through the response parser.
            let Some(head) = parse_head(status, rest) else {
                continue;
            };
            match t.on_head(&head, 20) {
                Ok(HeadAction::Redirect(next)) => {
                    assert!(matches!(next.scheme(), "http" | "https"), "{next}");
                    t.follow(next, 0);
                }
                Ok(HeadAction::Final) => unreachable!("a redirect status with a Location"),
                Err(e) => assert!(!e.contains('\n'), "error on two lines: {e:?}"),
            }
        }
        let cookie = jar.header(&t.url);
        t.write_request(&mut buf, true, cookie.as_deref());
        let at_home = t.url.origin() == home;
        check(&buf, &t, at_home);
    }
});

/// A redirect response with this `Location`, parsed by `ResponseParser`; None if the
/// parser refuses it (a Location with a line break cannot reach the fetcher).
fn parse_head(status: u16, location: &str) -> Option<Head> {
    let response =
        format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
    match ResponseParser::new(false, false).advance(response.as_bytes()) {
        Ok((_, Step::Head(head))) => Some(head),
        _ => None,
    }
}

/// The request head in `buf`: well formed, and nothing private sent to another origin.
fn check(buf: &[u8], t: &Transfer, home: bool) {
    let with_body = t.sending.with_body;
    let head_len = buf.len() - if with_body { BODY.len() } else { 0 };
    let head = &buf[..head_len];
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "head not ended by an empty line"
    );
    let text = std::str::from_utf8(head).expect("head is UTF-8");
    let lines: Vec<&str> = text[..text.len() - 4].split("\r\n").collect();
    for line in &lines {
        assert!(
            !line.contains('\r') && !line.contains('\n') && !line.is_empty(),
            "bad line {line:?}"
        );
    }
    let has = |name: &str| {
        lines.iter().any(|l| {
            l.get(..name.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(name))
        })
    };
    if !home {
        let from_location = t
            .sending
            .redirect_auth
            .as_ref()
            .is_some_and(|(_, origin)| *origin == t.url.origin());
        assert!(
            from_location || !has("authorization:"),
            "credentials to another origin: {text}"
        );
        assert!(
            !text.contains("mine=1"),
            "the user's cookie to another origin: {text}"
        );
        assert!(
            !text.contains("dXNlcjpwdw=="),
            "-u user:pw to another origin: {text}"
        );
    }
    if with_body {
        assert!(lines[0].starts_with("POST "), "a body with {}", lines[0]);
        assert!(buf.ends_with(BODY.as_bytes()));
    } else {
        assert!(!has("content-type:"), "Content-Type without a body: {text}");
    }
}
