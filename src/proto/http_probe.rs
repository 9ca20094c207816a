//! Just enough HTTP/1.1 response reading for `--probe http`: one response per round trip.
//!
//! The header section is parsed with `httparse` (never by hand). The body is skipped by
//! `Content-Length`, or by chunked framing; a response that can only end by closing the
//! connection cannot be measured on a keep-alive connection and is reported as an error.

/// Largest header section accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Where a response is in being read.
#[derive(Debug, Default)]
enum Stage {
    /// Waiting for the end of the header section.
    #[default]
    Head,
    /// `n` body bytes still to come.
    Body(u64),
    /// Chunked body: `n` bytes of the current chunk (and its CRLF) still to come.
    ChunkData(u64),
    /// Chunked body: reading a chunk-size line or the trailer.
    ChunkLine { last: bool },
    /// Complete.
    Done,
}

/// An HTTP response being read incrementally.
#[derive(Debug, Default)]
pub struct HttpResponse {
    stage: Stage,
    status: u16,
}

impl HttpResponse {
    /// True for a 2xx status.
    pub fn ok_status(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Consume bytes of the response; returns (bytes used, response complete). Unused
    /// bytes are an incomplete header or chunk line: offer them again with more.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), String> {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            match self.stage {
                Stage::Done => return Ok((used, true)),
                Stage::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    let mut response = httparse::Response::new(&mut headers);
                    match response.parse(rest) {
                        Ok(httparse::Status::Partial) => {
                            if rest.len() > MAX_HEADER_BYTES {
                                return Err(format!(
                                    "header section over {MAX_HEADER_BYTES} bytes"
                                ));
                            }
                            return Ok((used, false));
                        }
                        Ok(httparse::Status::Complete(n)) => {
                            self.status = response.code.unwrap_or(0);
                            self.stage = body_stage(self.status, response.headers)?;
                            used += n;
                        }
                        Err(e) => return Err(format!("malformed response: {e}")),
                    }
                }
                Stage::Body(left) => {
                    let take = (rest.len() as u64).min(left);
                    used += take as usize;
                    if take == left {
                        self.stage = Stage::Done;
                    } else {
                        self.stage = Stage::Body(left - take);
                        return Ok((used, false));
                    }
                }
                Stage::ChunkData(left) => {
                    let take = (rest.len() as u64).min(left);
                    used += take as usize;
                    if take == left {
                        self.stage = Stage::ChunkLine { last: false };
                    } else {
                        self.stage = Stage::ChunkData(left - take);
                        return Ok((used, false));
                    }
                }
                Stage::ChunkLine { last } => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > MAX_HEADER_BYTES {
                            return Err("chunk line too long".into());
                        }
                        return Ok((used, false));
                    };
                    let line = &rest[..end];
                    used += end + 2;
                    if last {
                        // Trailer section: ends at an empty line.
                        if line.is_empty() {
                            self.stage = Stage::Done;
                        }
                    } else if !line.is_empty() {
                        // (An empty line is the CRLF after the previous chunk's data.)
                        let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                        let text = std::str::from_utf8(hex).map_err(|_| "bad chunk size")?;
                        let size = u64::from_str_radix(text.trim(), 16)
                            .map_err(|_| format!("bad chunk size {text:?}"))?;
                        self.stage = if size == 0 {
                            Stage::ChunkLine { last: true }
                        } else {
                            Stage::ChunkData(size)
                        };
                    }
                }
            }
        }
    }
}

fn body_stage(status: u16, headers: &[httparse::Header<'_>]) -> Result<Stage, String> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Stage::Done);
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if find("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return Ok(Stage::ChunkLine { last: false });
    }
    match find("content-length") {
        Some(v) => {
            let n: u64 = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            Ok(if n == 0 { Stage::Done } else { Stage::Body(n) })
        }
        None => Err("response has neither Content-Length nor chunked body; \
                     it cannot be timed on a keep-alive connection"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(resp: &[u8], at: usize) -> bool {
        let mut r = HttpResponse::default();
        let (used, done) = r.feed(&resp[..at]).unwrap();
        if done {
            return used == resp.len();
        }
        let mut rest = resp[used..].to_vec();
        let (used2, done2) = r.feed(&rest).unwrap();
        rest.drain(..used2);
        done2 && rest.is_empty() && r.ok_status()
    }

    #[test]
    fn content_length_any_split() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for at in 0..=resp.len() {
            assert!(feed_split(resp, at), "split at {at}");
        }
    }

    #[test]
    fn chunked_any_split() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n";
        for at in 0..=resp.len() {
            assert!(feed_split(resp, at), "split at {at}");
        }
    }

    #[test]
    fn no_length_is_an_error() {
        let mut r = HttpResponse::default();
        assert!(r.feed(b"HTTP/1.1 200 OK\r\n\r\nabc").is_err());
    }
}
