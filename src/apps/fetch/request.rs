//! What a transfer sends: method, headers, body and credentials, as curl users spell
//! them (`-X`, `-H`, `-A`, `-e`, `-d`, `--data-binary`, `-u`), and the rules that change
//! them along a redirect chain.
//!
//! The command line becomes one `Request` for the whole run (validated once: a bad
//! header or an unreadable body file is an error before any connection is made); each
//! transfer keeps a small `Sending` of its own — the method it is using now, whether the
//! body still goes with it, and what the redirects so far allow (`transfer.rs` applies
//! the rules in `after_redirect`).
//!
//! The body is either bytes given on the command line (`-d`, kept whole: they were
//! typed) or one file (`--data-binary @FILE`), **streamed**: its length is taken once
//! for `Content-Length`, and each request reads it again from the start in 64 KiB
//! pieces, sent while the connection's queue is under its watermark and resumed from
//! `on_drained` (`upload.rs`), so a 10 GiB upload holds one piece in memory, not the file.
//!
//! Credentials (`-u`, or `user:password@` in the URL) become `Authorization: Basic`,
//! sent only to the origin (scheme, host, port) they were given for: a redirect to
//! another host drops them, and with them any `-H Authorization:` and `-H Cookie:` the
//! user added (curl's rule since CVE-2018-1000007), so a redirect cannot leak a
//! password. A redirect whose `Location` carries its own `user:password@` uses those,
//! for that origin only (the user's own stay home).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use url::Url;

/// One `-d` / `--data-binary` argument, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// `-d TEXT`, or `-d @FILE` (read whole, CR and LF removed, as curl does).
    Ascii(String),
    /// `--data-binary TEXT`, or `--data-binary @FILE` (streamed, byte for byte).
    Binary(String),
}

/// The request body of every transfer of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Bytes from the command line (several `-d` are joined with `&`, as curl does).
    Bytes(Arc<Vec<u8>>),
    /// A file sent as is, `len` bytes (its size when the run started).
    File {
        /// The file.
        path: PathBuf,
        /// Its length, sent as `Content-Length`.
        len: u64,
    },
}

impl Body {
    /// The `Content-Length` it is sent with.
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// True for an empty body (still sent with `Content-Length: 0`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the command line says about requests, as plain values (`FetchOptions`).
#[derive(Clone, Debug, Default)]
pub struct RequestOptions {
    /// `-X METHOD`: the method of the first request (default GET, POST with a body).
    pub method: Option<String>,
    /// `-H 'Name: value'`, in order (`Name:` removes a default header, `Name;` sends it
    /// empty).
    pub headers: Vec<String>,
    /// `-A`: the `User-Agent` (default `netloop/VERSION`).
    pub user_agent: Option<String>,
    /// `-e URL`: the `Referer`; `URL;auto` (or `;auto`) also sets it on redirects.
    pub referer: Option<String>,
    /// `-d` and `--data-binary`, in order.
    pub data: Vec<Data>,
    /// `-u user:password`.
    pub user: Option<String>,
    /// `--compressed`: send `Accept-Encoding` and decode the body (`decode.rs`).
    pub compressed: bool,
}

/// The validated request settings of a run, shared by its transfers.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `-X`, upper-cased as given (methods are case-sensitive; curl sends them as is).
    pub method: Option<String>,
    /// `-H` headers: name and value (`None`: remove the default of that name).
    pub headers: Vec<(String, Option<String>)>,
    /// The `User-Agent` value (None: not sent).
    pub user_agent: Option<String>,
    /// The fixed `Referer` (None: not sent, unless `auto_referer` on a redirect).
    pub referer: Option<String>,
    /// `-e ...;auto`: each redirect sends the URL it came from as `Referer`.
    pub auto_referer: bool,
    /// The body, if any (a body makes the default method POST).
    pub body: Option<Body>,
    /// `Content-Type` sent with a body unless `-H` sets one (curl's default).
    pub form: bool,
    /// `-u`: the `Authorization` value (`Basic ...`).
    pub auth: Option<String>,
    /// Send `Accept-Encoding` and decode what comes back.
    pub compressed: bool,
}

/// The `Accept-Encoding` sent with `--compressed`: every coding `decode.rs` reads.
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A header name: an RFC 9110 token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// No CR, LF or NUL: a value must not be able to start a header or a request of its own.
fn check_value(option: &str, value: &str) -> io::Result<()> {
    match value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        true => Err(invalid(format!(
            "{option} {value:?}: a line break or NUL cannot be sent in a header"
        ))),
        false => Ok(()),
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user_password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
    format!("Basic {encoded}")
}

/// `Authorization` for the credentials in a URL (`user:password@host`), if any; the
/// URL keeps them percent-encoded, the header wants them as they are.
pub fn url_auth(url: &Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or("")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    Some(format!("Basic {encoded}"))
}

impl Request {
    /// Check and prepare `opts` (reads `-d @FILE`, takes the length of
    /// `--data-binary @FILE`); errors name the option.
    pub fn from_options(opts: &RequestOptions) -> io::Result<Request> {
        let mut headers = Vec::new();
        for h in &opts.headers {
            // `Name: value`, `Name:` (remove), `Name;` (send empty), as curl reads them.
            let (name, value) = match (h.find(':'), h.strip_suffix(';')) {
                (Some(i), _) => {
                    let value = h[i + 1..].trim();
                    let value = (!value.is_empty()).then(|| value.to_string());
                    (h[..i].trim(), value)
                }
                (None, Some(name)) => (name.trim(), Some(String::new())),
                (None, None) => {
                    return Err(invalid(format!(
                        "-H {h:?}: expected 'Name: value' ('Name:' removes a default header)"
                    )))
                }
            };
            if !is_token(name) {
                return Err(invalid(format!("-H {h:?}: {name:?} is not a header name")));
            }
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(invalid(format!(
                    "-H {h:?}: {name} is set from the body (-d, --data-binary), not by -H"
                )));
            }
            if let Some(v) = &value {
                check_value("-H", v)?;
            }
            headers.push((name.to_string(), value));
        }
        let method = match &opts.method {
            Some(m) if !is_token(m) => {
                return Err(invalid(format!("-X {m:?}: not a method name")));
            }
            other => other.clone(),
        };
        if let Some(ua) = &opts.user_agent {
            check_value("-A", ua)?;
        }
        let (referer, auto_referer) = match opts.referer.as_deref() {
            None => (None, false),
            Some(r) => match r.strip_suffix(";auto") {
                Some(rest) => ((!rest.is_empty()).then(|| rest.to_string()), true),
                None => (Some(r.to_string()), false),
            },
        };
        if let Some(r) = &referer {
            check_value("-e", r)?;
        }
        let auth = match &opts.user {
            None => None,
            Some(u) if !u.contains(':') => {
                return Err(invalid(
                    "-u: give user:password (netloop does not prompt for a password)".into(),
                ))
            }
            Some(u) => Some(basic(u)),
        };
        let body = body(&opts.data)?;
        let form = body.is_some();
        Ok(Request {
            method,
            headers,
            user_agent: Some(
                opts.user_agent
                    .clone()
                    .unwrap_or_else(|| concat!("netloop/", env!("CARGO_PKG_VERSION")).into()),
            ),
            referer,
            auto_referer,
            body,
            form,
            auth,
            compressed: opts.compressed,
        })
    }

    /// The method of the first request: `-X`, else HEAD for `-I`, POST with a body, GET.
    pub fn first_method(&self, head_only: bool) -> String {
        match (&self.method, head_only, &self.body) {
            (Some(m), _, _) => m.clone(),
            (None, true, _) => "HEAD".into(),
            (None, false, Some(_)) => "POST".into(),
            (None, false, None) => "GET".into(),
        }
    }

    /// The `-H` header named `name`, if given: `Some(None)` means "removed".
    fn custom(&self, name: &str) -> Option<Option<&str>> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

/// The body the `-d` / `--data-binary` arguments make, if any.
fn body(data: &[Data]) -> io::Result<Option<Body>> {
    let streamed: Vec<&str> = data
        .iter()
        .filter_map(|d| match d {
            Data::Binary(s) => s.strip_prefix('@'),
            Data::Ascii(_) => None,
        })
        .collect();
    if let [file] = streamed[..] {
        if data.len() > 1 {
            return Err(invalid(format!(
                "--data-binary @{file} is streamed from the file: it cannot be combined with \
                 other -d or --data-binary"
            )));
        }
        let path = PathBuf::from(file);
        let meta = std::fs::metadata(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("--data-binary @{file}: {e}")))?;
        if !meta.is_file() {
            return Err(invalid(format!(
                "--data-binary @{file}: not a regular file (its length is needed first)"
            )));
        }
        return Ok(Some(Body::File {
            path,
            len: meta.len(),
        }));
    }
    if streamed.len() > 1 {
        return Err(invalid("only one --data-binary @FILE per run".into()));
    }
    if data.is_empty() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    for (i, d) in data.iter().enumerate() {
        if i > 0 {
            bytes.push(b'&');
        }
        match d {
            Data::Ascii(s) => match s.strip_prefix('@') {
                Some(file) => {
                    let text = std::fs::read(file)
                        .map_err(|e| io::Error::new(e.kind(), format!("-d @{file}: {e}")))?;
                    bytes.extend(text.into_iter().filter(|&b| b != b'\r' && b != b'\n'));
                }
                None => bytes.extend_from_slice(s.as_bytes()),
            },
            Data::Binary(s) => bytes.extend_from_slice(s.as_bytes()),
        }
    }
    Ok(Some(Body::Bytes(Arc::new(bytes))))
}

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
    if body.is_some() && request.form {
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
