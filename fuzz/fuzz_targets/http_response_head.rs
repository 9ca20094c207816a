//! Fuzz target: `netloop::proto::http_response::ResponseParser` on arbitrary response
//! bytes, fed in arbitrary pieces the way `netloop fetch` feeds it (every byte of a read
//! is offered; `advance` is called again on the rest until it needs more or is done).
//!
//! Run (nightly): `cd fuzz && cargo +nightly fuzz run http_response_head -- -max_total_time=60`
//!
//! Checked: no panic; `advance` never consumes more than offered, and makes progress or
//! says `NeedMore`/`Done`; body bytes are slices of the input; a `Content-Length` body
//! never yields more than promised; an unfinished head never grows past the 64 KiB cap
//! without an error; an error is final; `Done` stays `Done`; `eof` never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloop::proto::http_response::{BodyKind, ResponseParser, Step, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    // First byte: piece size and flags (HEAD request, keep the raw head).
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control % 32) + 1;
    let head_request = control & 0x40 != 0;
    let keep_raw = control & 0x80 != 0;
    let mut parser = ResponseParser::new(head_request, keep_raw);
    let mut promised: Option<u64> = None;
    let mut body = 0u64;
    let mut done = false;
    let mut offered = 0usize;
    for chunk in stream.chunks(piece) {
        offered += chunk.len();
        let mut at = 0;
        loop {
            let rest = &chunk[at..];
            let (n, step) = match parser.advance(rest) {
                Ok(x) => x,
                Err(e) => {
                    assert!(!e.is_empty() && !e.contains('\n'), "one-line error: {e:?}");
                    return; // the fetcher drops the connection
                }
            };
            assert!(n <= rest.len(), "consumed more than offered");
            at += n;
            match step {
                Step::NeedMore => {
                    assert_eq!(at, chunk.len(), "NeedMore with bytes left");
                    break;
                }
                Step::Head(head) => {
                    assert!(promised.is_none(), "a second final head");
                    if let Some(raw) = &head.raw {
                        assert!(raw.len() <= MAX_HEAD_BYTES);
                    }
                    assert!(head.status >= 200, "interim responses are skipped");
                    promised = Some(match head.body {
                        BodyKind::Length(n) => n,
                        _ => u64::MAX,
                    });
                    if head_request {
                        assert_eq!(head.body, BodyKind::Empty, "HEAD has no body");
                    }
                }
                Step::Body(bytes) => {
                    assert!(!bytes.is_empty() || n == 0);
                    body += bytes.len() as u64;
                    assert!(
                        body <= promised.expect("body before head"),
                        "body past its length"
                    );
                }
                Step::Done => {
                    done = true;
                    break;
                }
            }
        }
        if done {
            // Done stays done: more bytes are not part of this response.
            let (n, step) = parser.advance(b"more").expect("done is final");
            assert!(n == 0 && matches!(step, Step::Done));
            return;
        }
    }
    let _ = offered;
    let _ = parser.eof();
});
