//! `Sending`: where one transfer's request stands along its redirect chain, and the
//! request head written from it.
//!
//! The run's `Request` (`request.rs`) says what the user asked for; a redirect changes
//! what the next request of a transfer sends: 301 and 302 turn a POST into a GET, 303
//! anything but HEAD, each dropping the body; 307 and 308 keep both. The credentials
//! (`-u`, the first URL's `user:password@`) and the user's own `-H Authorization` and
//! `-H Cookie` are for the first URL's origin only, and a `Location` that carries its own
//! credentials gets them for its origin only — so no redirect can send a password, or a
//! cookie the user typed, to another host (`fuzz/fuzz_targets/cookie_redirect.rs` checks
//! it on arbitrary chains). `write_head` turns all of that into bytes: the request line,
//! the default headers (each replaced or removed by a `-H` of the same name), the
//! user's headers, the run's cookies, `Content-Length`, and an in-memory body.

use url::Url;

use super::request::{url_auth, Body, Request, ACCEPT_ENCODING};

/// Where a transfer's request stands along its redirect chain.
#[derive(Clone, Debug)]
pub struct Sending {
    /// The method of the current request.
    pub method: String,
    /// The body goes with the current request (until a 301/302/303 turns it into GET).
    pub with_body: bool,
    /// `Authorization` for `home` (from `-u` or the first URL), if any.
    pub auth: Option<String>,
    /// The first URL's origin: what the credentials and the user's own
    /// `-H Authorization`/`Cookie` were given for.
    pub home: url::Origin,
    /// Credentials a redirect's `Location` carried, for that URL's origin only.
    pub redirect_auth: Option<(String, url::Origin)>,
    /// The `Referer` of the current request.
    pub referer: Option<String>,
}

impl Sending {
    /// The first request of a transfer for `url`.
    pub fn new(request: &Request, url: &Url, head_only: bool) -> Sending {
        Sending {
            method: request.first_method(head_only),
            with_body: request.body.is_some(),
            // `-u` wins over credentials in the URL, as in curl.
            auth: request.auth.clone().or_else(|| url_auth(url)),
            home: url.origin(),
            redirect_auth: None,
            referer: request.referer.clone(),
        }
    }

    /// A redirect with `status` from `from` to `to`: the method, body, credentials and
    /// referer of the next request. 301 and 302 turn a POST into a GET, and 303 turns
    /// everything but HEAD into a GET, each without the body (what browsers and curl
    /// do); 307 and 308 repeat the request as it was, body included.
    pub fn after_redirect(&mut self, request: &Request, status: u16, from: &Url, to: &Url) {
        let to_get = match status {
            301 | 302 => self.method == "POST",
            303 => self.method != "HEAD",
            _ => false,
        };
        if to_get {
            self.method = "GET".into();
            self.with_body = false;
        }
        if let Some(auth) = url_auth(to) {
            self.redirect_auth = Some((auth, to.origin()));
        }
        if request.auto_referer {
            self.referer = Some(referer_of(from));
        }
    }

    /// Whether the user's credentials and `Authorization`/`Cookie` headers may go to
    /// `url`: only to the origin of the first URL.
    pub fn trusted(&self, url: &Url) -> bool {
        url.origin() == self.home
    }

    /// The `Authorization` for a request to `url`: a redirect's own credentials for
    /// their origin, else the user's for the first URL's origin, else none.
    pub fn auth_for(&self, url: &Url) -> Option<&str> {
        match &self.redirect_auth {
            Some((auth, origin)) if *origin == url.origin() => Some(auth),
            _ => self.auth.as_deref().filter(|_| self.trusted(url)),
        }
    }
}

/// A URL as a `Referer`: without credentials and fragment.
pub fn referer_of(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    u.into()
}

/// Write the request head for `url` into `buf` (cleared first), followed by an
/// in-memory body; a file body is sent afterwards (`upload.rs`). `cookie`: the
/// `Cookie` value from the run's jar.
pub fn write_head(
    buf: &mut Vec<u8>,
    request: &Request,
    sending: &Sending,
    url: &Url,
    cookie: Option<&str>,
    keepalive: bool,
) {
    buf.clear();
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let path = if path.is_empty() { "/" } else { path };
    let trusted = sending.trusted(url);
    buf.extend_from_slice(sending.method.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(path.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &str, value: &str| push_line(buf, name, value);
    // A default header is replaced by a `-H` of the same name (or removed by `Name:`).
    // (A private `-H` not sent to this origin replaces nothing.)
    let mut default = |name: &str, value: Option<&str>| {
        let replaced = request.custom(name).is_some() && (trusted || !private(name));
        if let (false, Some(v)) = (replaced, value) {
            line(name, v)
        }
    };
    // `host_str` keeps IPv6 literals in brackets, as the Host header wants them.
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    default("Host", Some(&host));
    default("User-Agent", request.user_agent.as_deref());
    default("Accept", Some("*/*"));
    default(
        "Accept-Encoding",
        request.compressed.then_some(ACCEPT_ENCODING),
    );
    default("Authorization", sending.auth_for(url));
    default("Referer", sending.referer.as_deref());
    let body = request.body.as_ref().filter(|_| sending.with_body);
    // With a body, curl's default `Content-Type` unless `-H` set one.
    if body.is_some() {
        default("Content-Type", Some("application/x-www-form-urlencoded"));
    }
    if !keepalive {
        default("Connection", Some("close"));
    }
    for (name, value) in &request.headers {
        if private(name) && !trusted {
            continue;
        }
        // The run's cookies go in the same header as the user's own.
        if name.eq_ignore_ascii_case("cookie") {
            continue;
        }
        if let Some(v) = value {
            push_line(buf, name, v);
        }
    }
    let user_cookie = match request.custom("Cookie") {
        Some(Some(v)) if trusted => Some(v),
        _ => None,
    };
    match (user_cookie, cookie) {
        (Some(a), Some(b)) => push_line(buf, "Cookie", &format!("{a}; {b}")),
        (Some(v), None) | (None, Some(v)) => push_line(buf, "Cookie", v),
        (None, None) => {}
    }
    if let Some(body) = body {
        push_line(buf, "Content-Length", &body.len().to_string());
    } else if sending.method == "POST" || sending.method == "PUT" {
        // A POST or PUT without a body still says how long it is (nothing).
        push_line(buf, "Content-Length", "0");
    }
    buf.extend_from_slice(b"\r\n");
    if let Some(Body::Bytes(bytes)) = body {
        buf.extend_from_slice(bytes);
    }
}

/// A header that carries credentials: sent only to the first URL's origin.
fn private(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie")
}

fn push_line(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::fetch::request::{Data, RequestOptions};

    fn request(opts: RequestOptions) -> Request {
        Request::from_options(&opts).unwrap()
    }

    fn head(r: &Request, s: &Sending, url: &str, cookie: Option<&str>) -> String {
        let mut buf = Vec::new();
        write_head(&mut buf, r, s, &Url::parse(url).unwrap(), cookie, true);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn headers_replace_remove_and_add() {
        let r = request(RequestOptions {
            headers: vec![
                "User-Agent: me/1".into(),
                "Accept:".into(),
                "X-Empty;".into(),
                "X-Two: a b".into(),
            ],
            data: vec![Data::Ascii("a=1".into()), Data::Binary("b=2".into())],
            user: Some("u:p w".into()),
            referer: Some("http://r/".into()),
            compressed: true,
            ..RequestOptions::default()
        });
        let url = Url::parse("http://h:8/p?q").unwrap();
        let s = Sending::new(&r, &url, false);
        let text = head(&r, &s, url.as_str(), Some("c=1"));
        assert!(
            text.starts_with("POST /p?q HTTP/1.1\r\nHost: h:8\r\n"),
            "{text}"
        );
        for line in [
            "User-Agent: me/1\r\n",
            "X-Empty: \r\n",
            "X-Two: a b\r\n",
            "Accept-Encoding: gzip, deflate, br, zstd\r\n",
            "Authorization: Basic dTpwIHc=\r\n",
            "Referer: http://r/\r\n",
            "Cookie: c=1\r\n",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            "Content-Length: 7\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in {text}");
        }
        assert!(!text.contains("Accept: "), "{text}");
        assert!(!text.contains("netloop/"), "{text}");
        assert!(text.ends_with("\r\n\r\na=1&b=2"), "{text}");

        for bad in [
            "NoColon",
            "Bad Name: x",
            "X: a\r\nY: b",
            "Content-Length: 5",
        ] {
            let opts = RequestOptions {
                headers: vec![bad.into()],
                ..RequestOptions::default()
            };
            assert!(Request::from_options(&opts).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redirects_change_method_and_keep_credentials_home() {
        let r = request(RequestOptions {
            data: vec![Data::Ascii("x".into())],
            headers: vec!["Cookie: mine=1".into(), "Authorization: Bearer t".into()],
            referer: Some(";auto".into()),
            ..RequestOptions::default()
        });
        let a = Url::parse("http://user:pa%40ss@a.test/form").unwrap();
        let b = Url::parse("http://b.test/next").unwrap();
        for (status, method, body) in [
            (301, "GET", false),
            (302, "GET", false),
            (303, "GET", false),
            (307, "POST", true),
            (308, "POST", true),
        ] {
            let mut s = Sending::new(&r, &a, false);
            assert_eq!(s.auth.as_deref(), Some("Basic dXNlcjpwYUBzcw=="));
            s.after_redirect(&r, status, &a, &a);
            assert_eq!((s.method.as_str(), s.with_body), (method, body), "{status}");
            let same = head(&r, &s, a.as_str(), None);
            assert!(same.contains("Authorization: Bearer t\r\n"), "{same}");
            assert!(same.contains("Cookie: mine=1"), "{same}");
            assert!(same.contains("Referer: http://a.test/form\r\n"), "{same}");
            let other = head(&r, &s, b.as_str(), Some("jar=1"));
            assert!(!other.contains("Authorization"), "{other}");
            assert!(other.contains("Cookie: jar=1\r\n"), "{other}");
            assert!(!other.contains("mine=1"), "{other}");
            assert_eq!(other.contains("Content-Length: 1"), body, "{other}");
        }
        // Credentials in a Location are for that origin; the user's stay home.
        let mut s = Sending::new(&r, &a, false);
        let evil = Url::parse("http://x:y@evil.test/").unwrap();
        s.after_redirect(&r, 302, &a, &evil);
        let there = head(&r, &s, evil.as_str(), None);
        assert!(there.contains("Authorization: Basic eDp5\r\n"), "{there}");
        assert!(!there.contains("mine=1"), "{there}");
        let home = head(&r, &s, a.as_str(), None);
        assert!(home.contains("Authorization: Bearer t\r\n"), "{home}");

        // 303 turns a PUT into a GET; 301 keeps a PUT (only POST changes).
        let put = request(RequestOptions {
            method: Some("PUT".into()),
            ..RequestOptions::default()
        });
        let mut s = Sending::new(&put, &a, false);
        s.after_redirect(&put, 301, &a, &b);
        assert_eq!(s.method, "PUT");
        s.after_redirect(&put, 303, &a, &b);
        assert_eq!(s.method, "GET");
    }
}
