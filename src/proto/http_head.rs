//! The header section of an HTTP/1.1 response: what it says about the body and the
//! connection, and the limits a response head must keep.
//!
//! `httparse` splits the head into a status and fields; `interpret` decides, per RFC
//! 9112 §6.3, how the body ends (none for HEAD, 1xx, 204, 304; chunked when
//! `Transfer-Encoding` ends in `chunked`; else `Content-Length`; else until the close)
//! and whether the connection may carry another request. It is strict where leniency
//! has been used to smuggle requests past proxies: a `Content-Length` is digits only
//! (`+5`, `5, 5`, ` 0x5` are refused: Rust's `u64::from_str` alone would take `+5`),
//! conflicting lengths are an error, and a response with both `Content-Length` and
//! `Transfer-Encoding` is read but never reused.
//!
//! Limits, so a server cannot make the client hold or loop forever: `MAX_HEAD_BYTES`,
//! `MAX_HEADERS`, and `MAX_INTERIM` interim (1xx) responses before the final one — a
//! server sending `100 Continue` every 50 ms would otherwise keep a transfer alive
//! indefinitely, each one looking like progress.

/// Largest header section (and largest trailer section) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in one response.
pub const MAX_HEADERS: usize = 100;
/// Most interim (1xx) responses accepted before the final one.
pub const MAX_INTERIM: u32 = 10;
/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (HEAD, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// The parsed header section of a response.
#[derive(Clone, Debug)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// The `Location` header, for redirects.
    pub location: Option<String>,
    /// How the body ends.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
    /// The header section exactly as received (only when asked for, for `--include`).
    pub raw: Option<Vec<u8>>,
    /// The `Content-Encoding` (several headers joined with `, `), for `--compressed`.
    pub content_encoding: Option<String>,
    /// Every `Set-Cookie` value, in order, for the run's cookie jar.
    pub set_cookies: Vec<String>,
    /// The `Retry-After` header (seconds or an HTTP date), for `--retry`.
    pub retry_after: Option<String>,
}

/// Decide how the body is delimited and whether the connection can be reused; returns
/// the head and the promised `Content-Length` (0 if none).
pub(super) fn interpret(
    status: u16,
    version: u8,
    headers: &[httparse::Header<'_>],
    head_request: bool,
    raw: Option<Vec<u8>>,
) -> Result<(Head, u64), String> {
    let mut location = None;
    let mut content_encoding: Option<String> = None;
    let mut set_cookies = Vec::new();
    let mut retry_after = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in headers {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(value)
                .ok_or_else(|| format!("malformed response: bad Content-Length {value:?}"))?;
            if length.is_some_and(|m| m != n) {
                return Err("malformed response: conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides the framing.
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = last.eq_ignore_ascii_case("chunked");
            other_coding = !chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("content-encoding") {
            content_encoding = Some(match content_encoding {
                Some(before) => format!("{before}, {value}"),
                None => value.to_string(),
            });
        } else if h.name.eq_ignore_ascii_case("set-cookie") {
            set_cookies.push(value.to_string());
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.to_string());
        }
    }
    let body = if head_request || status == 204 || status == 304 {
        BodyKind::Empty
    } else if chunked {
        BodyKind::Chunked
    } else if other_coding {
        BodyKind::UntilClose
    } else {
        match length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::UntilClose,
        }
    };
    let persistent = if version == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    // With both Content-Length and Transfer-Encoding the message may have been
    // smuggled through a proxy: read it, but never reuse the connection.
    let keep_alive = persistent
        && body != BodyKind::UntilClose
        && !(length.is_some() && (chunked || other_coding));
    let head = Head {
        status,
        location,
        body,
        keep_alive,
        raw,
        content_encoding,
        set_cookies,
        retry_after,
    };
    Ok((head, length.unwrap_or(0)))
}

pub(super) fn head_too_large() -> String {
    format!(
        "malformed response: header section over {} KiB",
        MAX_HEAD_BYTES / 1024
    )
}

/// A `Content-Length` value: 1*DIGIT (RFC 9110 §8.6), nothing else — no sign, no
/// list, no spaces inside — and it must fit in a u64.
fn content_length(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length("0"), Some(0));
        assert_eq!(content_length("12345"), Some(12345));
        for bad in [
            "+5",
            "-5",
            "5, 5",
            "5 5",
            "0x5",
            "",
            "5.0",
            "99999999999999999999",
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
        let header = |v: &'static [u8]| httparse::Header {
            name: "Content-Length",
            value: v,
        };
        let e = interpret(200, 1, &[header(b"+5")], false, None).unwrap_err();
        assert!(e.contains("bad Content-Length \"+5\""), "{e}");
    }
}
