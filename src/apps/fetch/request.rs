//! What a transfer sends: method, headers, body and credentials, as curl users spell
//! them (`-X`, `-H`, `-A`, `-e`, `-d`, `--data-binary`, `-u`), and the rules that change
//! them along a redirect chain.
//!
//! The command line becomes one `Request` for the whole run (validated once: a bad
//! header or an unreadable body file is an error before any connection is made); each
//! transfer keeps a small `Sending` of its own (`sending.rs`) — the method it is using
//! now, whether the body still goes with it, and what the redirects so far allow — and
//! the request head is written there.
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
    pub fn custom(&self, name: &str) -> Option<Option<&str>> {
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
