//! `ResponseParser`: one HTTP/1.1 response, read incrementally, yielding body bytes.
//!
//! The loop hands a connection's bytes over in whatever pieces the kernel delivered: a
//! header section may arrive one byte at a time, a chunk-size line may be split anywhere,
//! and one read may hold the end of the head and half the body. So the parser is a state
//! machine fed slices, and it **never holds the body**: body bytes are returned as
//! sub-slices of the input (`Step::Body`) for the caller to write out at once. Only the
//! small things that must be whole before they can be parsed are copied: an unfinished
//! header section (capped at `MAX_HEAD_BYTES`) and an unfinished chunk-size or trailer
//! line. The header section itself is parsed by `httparse`, never by hand.
//!
//! How the body ends follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked
//! when `Transfer-Encoding` ends in `chunked` (trailers read and dropped); else
//! `Content-Length`; else everything until the server closes (`Parser::eof`).
//!
//! The head itself — what its fields mean for the body and the connection, and the caps
//! on it — is `http_head.rs`; this file is the state machine around it and the body
//! framing (length, chunked, until close).

use super::http_head::{head_too_large, interpret};
pub use super::http_head::{BodyKind, Head, MAX_HEADERS, MAX_HEAD_BYTES, MAX_INTERIM};

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// What one call to `advance` found.
#[derive(Debug)]
pub enum Step<'a> {
    /// Everything given was used; the response continues in the next bytes.
    NeedMore,
    /// The header section is complete (interim 1xx responses are skipped).
    Head(Head),
    /// Body bytes, a slice of the input.
    Body(&'a [u8]),
    /// The response is complete; bytes after it are not part of it.
    Done,
}

/// Where the parser is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Head,
    /// `n` bytes of a `Content-Length` body still to come.
    Length(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// `n` bytes of chunk data still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines, until an empty line.
    Trailers,
    UntilClose,
    Done,
}

/// One response being read.
#[derive(Debug)]
pub struct ResponseParser {
    stage: Stage,
    /// The request was HEAD: whatever the headers say, there is no body.
    head_request: bool,
    /// Keep the raw header section in `Head::raw`.
    keep_raw: bool,
    /// An unfinished header section, or an unfinished line (chunk size, trailer).
    partial: Vec<u8>,
    /// Trailer bytes so far (capped like the header section).
    trailer_bytes: usize,
    /// Body length promised by `Content-Length`, for the "shorter than" message.
    promised: u64,
    /// Body bytes returned so far.
    body_bytes: u64,
    /// Any byte of this response was received.
    started: bool,
    /// Interim (1xx) responses skipped so far (at most `MAX_INTERIM`).
    interim: u32,
}

impl ResponseParser {
    /// A parser for the response to a GET (`head_request` false) or HEAD request.
    pub fn new(head_request: bool, keep_raw: bool) -> ResponseParser {
        ResponseParser {
            stage: Stage::Head,
            head_request,
            keep_raw,
            partial: Vec::new(),
            trailer_bytes: 0,
            promised: 0,
            body_bytes: 0,
            started: false,
            interim: 0,
        }
    }

    /// True once the final response's header section is complete (interim responses
    /// do not count): the fetcher's head deadline ends there.
    pub fn head_complete(&self) -> bool {
        self.stage != Stage::Head
    }

    /// True once any byte of the response arrived (a reused connection that closes
    /// before that may simply have been closed by the server while idle: retry).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Consume bytes from the front of `data`: returns how many were used and what they
    /// completed. Call again with the rest until `NeedMore` or `Done`.
    pub fn advance<'a>(&mut self, data: &'a [u8]) -> Result<(usize, Step<'a>), String> {
        if !data.is_empty() {
            self.started = true;
        }
        let mut used = 0;
        loop {
            let rest = &data[used..];
            match self.stage {
                Stage::Done => return Ok((used, Step::Done)),
                Stage::Head => match self.head(rest)? {
                    (n, Some(head)) => return Ok((used + n, Step::Head(head))),
                    (n, None) if n == rest.len() => return Ok((data.len(), Step::NeedMore)),
                    (n, None) => used += n, // an interim 1xx response: parse the next head
                },
                Stage::Length(left) | Stage::ChunkData(left) => {
                    if rest.is_empty() {
                        return Ok((used, Step::NeedMore));
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    let left = left - n as u64;
                    self.stage = match self.stage {
                        Stage::Length(_) if left == 0 => Stage::Done,
                        Stage::Length(_) => Stage::Length(left),
                        _ if left == 0 => Stage::ChunkEnd,
                        _ => Stage::ChunkData(left),
                    };
                    self.body_bytes += n as u64;
                    return Ok((used + n, Step::Body(&rest[..n])));
                }
                Stage::UntilClose => {
                    if rest.is_empty() {
                        return Ok((used, Step::NeedMore));
                    }
                    self.body_bytes += rest.len() as u64;
                    return Ok((data.len(), Step::Body(rest)));
                }
                Stage::ChunkSize | Stage::ChunkEnd | Stage::Trailers => {
                    let cap = if self.stage == Stage::Trailers {
                        MAX_HEAD_BYTES
                    } else {
                        MAX_CHUNK_LINE
                    };
                    let (n, line) = take_line(&mut self.partial, rest, cap)?;
                    used += n;
                    let Some(line) = line else {
                        return Ok((data.len(), Step::NeedMore));
                    };
                    self.stage = self.after_line(&line)?;
                }
            }
        }
    }

    /// The server closed the connection: fine only if the body runs until the close.
    pub fn eof(&mut self) -> Result<(), String> {
        match self.stage {
            Stage::Done => Ok(()),
            Stage::UntilClose => {
                self.stage = Stage::Done;
                Ok(())
            }
            Stage::Head if !self.started => {
                Err("connection closed before any response byte".to_string())
            }
            Stage::Head => Err("malformed response: connection closed in the header".into()),
            Stage::Length(_) => Err(format!(
                "body shorter than Content-Length: connection closed after {} of {} bytes",
                self.body_bytes, self.promised
            )),
            _ => Err(format!(
                "malformed response: connection closed inside the chunked body after {} bytes",
                self.body_bytes
            )),
        }
    }

    /// Try to parse the header section from `partial` + `rest`. Returns the bytes of
    /// `rest` used and the head, if one completed (None with bytes used: a 1xx skipped).
    fn head(&mut self, rest: &[u8]) -> Result<(usize, Option<Head>), String> {
        let before = self.partial.len();
        // Parse straight from the input when nothing is buffered (the common case);
        // copy only an unfinished head.
        let buf: &[u8] = if before == 0 {
            rest
        } else {
            self.partial.extend_from_slice(rest);
            &self.partial
        };
        // A head can only end at a line end: do not re-parse for bytes without one
        // (a head dribbled a byte at a time would otherwise cost quadratic time).
        let window = &buf[before.saturating_sub(3)..];
        if !window.contains(&b'\n') {
            return self.head_incomplete(before, rest);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let n = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return self.head_incomplete(before, rest),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(format!(
                    "malformed response: more than {MAX_HEADERS} header fields"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "malformed response: {e} in the status line or header"
                ))
            }
        };
        if n > MAX_HEAD_BYTES {
            return Err(head_too_large());
        }
        let status = response.code.unwrap_or(0);
        if !(100..=599).contains(&status) {
            // httparse takes any three digits ("083" too); RFC 9110 §15 has 100-599.
            return Err(format!("malformed response: status {status} out of range"));
        }
        let version = response.version.unwrap_or(1);
        let used = n - before;
        if (100..200).contains(&status) {
            if status == 101 {
                return Err("malformed response: 101 Switching Protocols was not asked for".into());
            }
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return Err(format!(
                    "malformed response: more than {MAX_INTERIM} interim (1xx) responses"
                ));
            }
            self.partial.clear();
            return Ok((used, None));
        }
        let (head, promised) = interpret(
            status,
            version,
            response.headers,
            self.head_request,
            self.keep_raw.then(|| buf[..n].to_vec()),
        )?;
        self.promised = promised;
        self.stage = match head.body {
            BodyKind::Empty => Stage::Done,
            BodyKind::Length(n) => Stage::Length(n),
            BodyKind::Chunked => Stage::ChunkSize,
            BodyKind::UntilClose => Stage::UntilClose,
        };
        self.partial.clear();
        Ok((used, Some(head)))
    }

    /// The head is not complete yet: keep what came, within the cap.
    fn head_incomplete(
        &mut self,
        before: usize,
        rest: &[u8],
    ) -> Result<(usize, Option<Head>), String> {
        if before == 0 {
            self.partial.extend_from_slice(rest);
        }
        if self.partial.len() > MAX_HEAD_BYTES {
            return Err(head_too_large());
        }
        Ok((rest.len(), None))
    }

    /// A complete line in a chunked body: what comes next.
    fn after_line(&mut self, line: &[u8]) -> Result<Stage, String> {
        match self.stage {
            Stage::ChunkSize => {
                // chunk-size [; extensions]: extensions are allowed and ignored.
                let size = line.split(|&b| b == b';').next().unwrap_or(b"");
                let size = std::str::from_utf8(size).unwrap_or("").trim();
                let n = u64::from_str_radix(size, 16).map_err(|_| {
                    format!(
                        "malformed response: bad chunk size line {:?}",
                        String::from_utf8_lossy(line)
                    )
                })?;
                Ok(if n == 0 {
                    Stage::Trailers
                } else {
                    Stage::ChunkData(n)
                })
            }
            Stage::ChunkEnd if line.is_empty() => Ok(Stage::ChunkSize),
            Stage::ChunkEnd => Err("malformed response: chunk data longer than its size".into()),
            Stage::Trailers if line.is_empty() => Ok(Stage::Done),
            Stage::Trailers => {
                self.trailer_bytes += line.len() + 2;
                if self.trailer_bytes > MAX_HEAD_BYTES {
                    return Err(format!(
                        "malformed response: trailer section over {} KiB",
                        MAX_HEAD_BYTES / 1024
                    ));
                }
                Ok(Stage::Trailers) // trailers are read and dropped
            }
            _ => Ok(self.stage),
        }
    }
}

/// Take one LF-terminated line (CR before the LF stripped) from `rest`, continuing one
/// kept in `partial`. Returns bytes of `rest` used and the line once it is complete.
fn take_line(
    partial: &mut Vec<u8>,
    rest: &[u8],
    cap: usize,
) -> Result<(usize, Option<Vec<u8>>), String> {
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) => {
            partial.extend_from_slice(&rest[..i]);
            if partial.last() == Some(&b'\r') {
                partial.pop();
            }
            if partial.len() > cap {
                return Err("malformed response: line in chunked body too long".into());
            }
            Ok((i + 1, Some(std::mem::take(partial))))
        }
        None => {
            partial.extend_from_slice(rest);
            if partial.len() > cap {
                return Err("malformed response: line in chunked body too long".into());
            }
            Ok((rest.len(), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of the given sizes; returns (status, body) or the error.
    fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Result<(u16, Vec<u8>, bool), String> {
        let mut p = ResponseParser::new(false, false);
        let mut body = Vec::new();
        let mut status = 0;
        let mut pieces = Vec::new();
        let mut at = 0;
        for &c in cuts {
            pieces.push(&input[at..c]);
            at = c;
        }
        pieces.push(&input[at..]);
        for piece in pieces {
            let mut off = 0;
            loop {
                let (n, step) = p.advance(&piece[off..])?;
                off += n;
                match step {
                    Step::NeedMore => break,
                    Step::Head(h) => status = h.status,
                    Step::Body(b) => body.extend_from_slice(b),
                    Step::Done => return Ok((status, body, true)),
                }
            }
        }
        Ok((status, body, false))
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n";

    #[test]
    fn chunked_split_at_every_point() {
        for cut in 0..=CHUNKED.len() {
            let (status, body, done) = parse_in_pieces(CHUNKED, &[cut]).unwrap();
            assert_eq!(
                (status, &body[..], done),
                (200, &b"hello, world"[..], true),
                "{cut}"
            );
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let cuts: Vec<usize> = (1..CHUNKED.len()).collect();
        let (_, body, done) = parse_in_pieces(CHUNKED, &cuts).unwrap();
        assert_eq!((&body[..], done), (&b"hello, world"[..], true));
    }

    #[test]
    fn content_length_and_interim_response() {
        let r =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let mut p = ResponseParser::new(false, false);
        let (n, step) = p.advance(r).unwrap();
        assert!(matches!(
            step,
            Step::Head(Head {
                status: 200,
                keep_alive: true,
                ..
            })
        ));
        let (m, step) = p.advance(&r[n..]).unwrap();
        assert!(matches!(step, Step::Body(b"abc")));
        let (_, step) = p.advance(&r[n + m..]).unwrap();
        assert!(matches!(step, Step::Done));
    }

    #[test]
    fn interim_responses_are_capped() {
        let mut few = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM as usize);
        few.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(parse_in_pieces(&few, &[]).unwrap().1, b"ok");
        let many = b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(MAX_INTERIM as usize + 1);
        let mut p = ResponseParser::new(false, false);
        let e = p.advance(&many).unwrap_err();
        assert!(e.contains("more than 10 interim (1xx) responses"), "{e}");
        assert!(!p.head_complete());
    }

    #[test]
    fn until_close_and_short_body() {
        let mut p = ResponseParser::new(false, false);
        let (_, step) = p.advance(b"HTTP/1.0 200 OK\r\n\r\nab").unwrap();
        assert!(matches!(
            step,
            Step::Head(Head {
                keep_alive: false,
                body: BodyKind::UntilClose,
                ..
            })
        ));
        assert!(p.eof().is_ok());

        let mut p = ResponseParser::new(false, false);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let (n, _) = p.advance(r).unwrap();
        p.advance(&r[n..]).unwrap();
        let e = p.eof().unwrap_err();
        assert!(
            e.contains("shorter than Content-Length") && e.contains("3 of 10"),
            "{e}"
        );
    }

    #[test]
    fn head_and_no_body_statuses() {
        let mut p = ResponseParser::new(true, false);
        let (_, step) = p
            .advance(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
            .unwrap();
        assert!(matches!(
            step,
            Step::Head(Head {
                body: BodyKind::Empty,
                ..
            })
        ));
        let mut p = ResponseParser::new(false, false);
        let (_, step) = p
            .advance(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
            .unwrap();
        assert!(matches!(
            step,
            Step::Head(Head {
                body: BodyKind::Empty,
                ..
            })
        ));
    }

    #[test]
    fn caps_and_garbage() {
        let mut p = ResponseParser::new(false, false);
        let e = p.advance(b"HELLO WORLD\r\n\r\n").unwrap_err();
        assert!(e.starts_with("malformed response"), "{e}");

        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        let mut p = ResponseParser::new(false, false);
        let e = p.advance(&big).unwrap_err();
        assert!(e.contains("header section over 64 KiB"), "{e}");

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut p = ResponseParser::new(false, false);
        let e = p.advance(&many).unwrap_err();
        assert!(e.contains("more than 100 header fields"), "{e}");

        // Found by the fuzz target `http_response_head`: three digits below 100.
        for status in ["083", "000", "600"] {
            let mut p = ResponseParser::new(false, false);
            let e = p
                .advance(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes())
                .unwrap_err();
            assert!(e.contains("out of range"), "{e}");
        }
    }
}
