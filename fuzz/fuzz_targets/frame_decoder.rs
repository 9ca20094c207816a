//! Fuzz target: the upload stream decoder (`netloop::proto::frames`) on arbitrary bytes, fed in
//! arbitrary pieces the way the loop feeds `on_data` (unconsumed bytes are kept and
//! offered again with the next piece).
//!
//! Run (nightly): `cd fuzz && cargo +nightly fuzz run frame_decoder -- -max_total_time=60`
//!
//! Checked: no panic; never consumes more than offered; a body piece never exceeds the
//! announced size; an `Invalid` error is final; small limits are enforced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloop::proto::frames::{FrameError, Item, Limits, UploadDecoder};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size, so the fuzzer explores splits as well as bytes.
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split % 64) + 1;
    let limits = Limits {
        max_header: 256,
        max_file_size: 4096,
    };
    let mut decoder = UploadDecoder::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut body_left = 0u64;
    for chunk in stream.chunks(piece) {
        kept.extend_from_slice(chunk);
        let mut used = 0;
        loop {
            match decoder.decode(&kept[used..], &limits) {
                Err(FrameError::Incomplete) => break,
                Err(FrameError::Invalid(_)) => return, // the server refuses and closes
                Ok((item, n)) => {
                    assert!(n <= kept.len() - used, "consumed more than offered");
                    used += n;
                    match item {
                        Item::Header(h) => {
                            assert!(h.file_size <= limits.max_file_size);
                            assert!(n <= limits.max_header + 4);
                            body_left = h.file_size;
                        }
                        Item::Body { bytes, last } => {
                            assert!(bytes.len() as u64 <= body_left, "body overran its size");
                            body_left -= bytes.len() as u64;
                            assert_eq!(last, body_left == 0);
                        }
                    }
                }
            }
        }
        kept.drain(..used);
        assert!(
            kept.len() <= limits.max_header + 4,
            "a partial header outgrew the limit"
        );
    }
});
