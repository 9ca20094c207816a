//! Fuzz target: the chunked body decoder of `netloop::proto::http_response`, two ways.
//!
//! - Arbitrary bytes after a chunked response head: no panic, never more consumed than
//!   offered, errors final and one line, trailers bounded.
//! - Round trip: the fuzzer's data is cut into chunks (sizes from the data itself),
//!   encoded as a valid chunked body (with chunk extensions and a trailer), fed in
//!   pieces; the decoded body must be exactly the data, and the response must be `Done`.
//!
//! Run (nightly): `cd fuzz && cargo +nightly fuzz run chunked_decoder -- -max_total_time=60`
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloop::proto::http_response::{BodyKind, ResponseParser, Step};

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Feed `input` in pieces of `piece` bytes; the body decoded, and whether it was Done.
fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), String> {
    let mut parser = ResponseParser::new(false, false);
    let mut body = Vec::new();
    for chunk in input.chunks(piece) {
        let mut at = 0;
        loop {
            let (n, step) = parser.advance(&chunk[at..])?;
            assert!(n <= chunk.len() - at, "consumed more than offered");
            at += n;
            match step {
                Step::NeedMore => break,
                Step::Head(head) => assert_eq!(head.body, BodyKind::Chunked),
                Step::Body(bytes) => body.extend_from_slice(bytes),
                Step::Done => return Ok((body, true)),
            }
        }
    }
    Ok((body, false))
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control % 16) + 1;
    if control & 0x80 != 0 {
        // Arbitrary bytes as the chunked body.
        let mut input = HEAD.to_vec();
        input.extend_from_slice(data);
        if let Err(e) = decode(&input, piece) {
            assert!(!e.is_empty() && !e.contains('\n'), "{e:?}");
        }
        return;
    }
    // A valid encoding of `data`: chunk sizes taken from the data's own bytes.
    let mut input = HEAD.to_vec();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = (usize::from(rest[0]) % 40 + 1).min(rest.len());
        let ext = if i % 3 == 1 { ";name=value" } else { "" };
        input.extend_from_slice(format!("{size:x}{ext}\r\n").as_bytes());
        input.extend_from_slice(&rest[..size]);
        input.extend_from_slice(b"\r\n");
        rest = &rest[size..];
        i += 1;
    }
    input.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let (body, done) = decode(&input, piece).expect("a valid chunked body is accepted");
    assert!(done, "a complete chunked body ends the response");
    assert_eq!(body, data, "decoded body differs from what was encoded");
});
