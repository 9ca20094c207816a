//! The frame decoder on its own: any split of the stream decodes to the same frames
//! (a proptest property), `Incomplete` is distinct from `Invalid`, and every hostile
//! header the issue lists is refused with its own error.

use netloop::proto::frames::{
    check, decode_object, encode, encode_value, FrameError, Item, Limits, ProtocolError, Reply,
    UploadDecoder, UploadHeader,
};
use proptest::prelude::*;
use serde_json::json;

/// What a stream of uploads decodes to: (header, body) pairs.
type Uploads = Vec<(UploadHeader, Vec<u8>)>;

/// Feed `stream` to a decoder in pieces cut at `cuts`, the way the loop does: bytes not
/// consumed are kept and offered again with the next piece. The stream must end cleanly.
fn decode_split(stream: &[u8], cuts: &[usize], limits: &Limits) -> Result<Uploads, FrameError> {
    let (uploads, kept, decoder) = decode_pieces(stream, cuts, limits)?;
    assert!(kept.is_empty(), "bytes left over: {kept:?}");
    assert_eq!(decoder.body_remaining(), None, "stream ended inside a body");
    Ok(uploads)
}

/// The decoding of `decode_split`, also returning what is left when the stream ends.
fn decode_pieces(
    stream: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> Result<(Uploads, Vec<u8>, UploadDecoder), FrameError> {
    let mut decoder = UploadDecoder::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut out: Uploads = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(0);
    bounds.push(stream.len());
    bounds.sort_unstable();
    for pair in bounds.windows(2) {
        kept.extend_from_slice(&stream[pair[0]..pair[1]]);
        let mut used = 0;
        loop {
            match decoder.decode(&kept[used..], limits) {
                Err(FrameError::Incomplete) => break,
                Err(e) => return Err(e),
                Ok((Item::Header(h), n)) => {
                    used += n;
                    out.push((h, Vec::new()));
                }
                Ok((Item::Body { bytes, .. }, n)) => {
                    used += n;
                    out.last_mut()
                        .expect("header first")
                        .1
                        .extend_from_slice(bytes);
                }
            }
        }
        kept.drain(..used);
    }
    Ok((out, kept, decoder))
}

fn stream_of(uploads: &Uploads) -> Vec<u8> {
    let mut stream = Vec::new();
    for (h, body) in uploads {
        stream.extend_from_slice(&h.encode());
        stream.extend_from_slice(body);
    }
    stream
}

fn arb_uploads() -> impl Strategy<Value = Uploads> {
    let one =
        ("\\PC{0,20}", proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(name, body)| {
            let header = UploadHeader {
                file_name: name,
                file_size: body.len() as u64,
            };
            (header, body)
        });
    proptest::collection::vec(one, 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any sequence of uploads, split anywhere, decodes to the same uploads.
    #[test]
    fn any_split_decodes_the_same(
        uploads in arb_uploads(),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = stream_of(&uploads);
        let decoded = decode_split(&stream, &cuts, &Limits::default()).expect("valid stream");
        prop_assert_eq!(decoded, uploads);
    }

    /// Plain frames (any JSON object) round-trip through `encode` and `decode_object`.
    #[test]
    fn frames_round_trip(map in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}", 0..5)) {
        let value = json!(map);
        let frame = encode_value(&value);
        for cut in 0..frame.len() {
            prop_assert_eq!(decode_object(&frame[..cut], 1024), Err(FrameError::Incomplete));
        }
        let (obj, used) = decode_object(&frame, 1024).expect("whole frame");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(serde_json::Value::Object(obj), value);
    }

    /// Garbage never panics: it is Incomplete, Invalid, or a frame.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_pieces(&bytes, &[1, 7, 30], &Limits::default());
    }
}

#[test]
fn one_byte_at_a_time_and_all_at_once() {
    let uploads: Uploads = (0..5)
        .map(|i| {
            let body = vec![i as u8; i * 1000];
            let h = UploadHeader {
                file_name: format!("f{i}"),
                file_size: body.len() as u64,
            };
            (h, body)
        })
        .collect();
    let stream = stream_of(&uploads);
    let every_byte: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(
        decode_split(&stream, &every_byte, &Limits::default()).unwrap(),
        uploads
    );
    assert_eq!(
        decode_split(&stream, &[], &Limits::default()).unwrap(),
        uploads
    );
}

/// The seeds' headers: seed 000's `filename`/`filesize` with `filepath`, seed 004's
/// `file_name`/`file_size` with `msg`, non-ASCII names as Python's `json.dumps` escapes them.
#[test]
fn seed_headers() {
    let limits = Limits::default();
    let h000 = br#"{"filename": "04 python.mp4", "filepath": "F:\\python", "filesize": 3}"#;
    let h004 = br#"{"file_name": "\u6027\u611f.mp4", "file_size": 0, "msg": "\u6ce8"}"#;
    for (json, name, size) in [(&h000[..], "04 python.mp4", 3), (&h004[..], "性感.mp4", 0)] {
        let frame = encode(json);
        let (item, used) = UploadDecoder::new().decode(&frame, &limits).unwrap();
        assert_eq!(used, frame.len());
        let expected = UploadHeader {
            file_name: name.into(),
            file_size: size,
        };
        assert_eq!(item, Item::Header(expected));
    }
}

#[track_caller]
fn invalid(frame: &[u8], limits: &Limits) -> ProtocolError {
    match UploadDecoder::new().decode(frame, limits) {
        Err(FrameError::Invalid(e)) => e,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn hostile_headers_are_invalid_with_clear_errors() {
    let limits = Limits {
        max_header: 64 * 1024,
        max_file_size: 1000,
    };
    let header = |v: serde_json::Value| encode_value(&v);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ((-1i32).to_le_bytes().to_vec(), "negative header length -1"),
        (
            i32::MAX.to_le_bytes().to_vec(),
            "header length 2147483647 is over the limit",
        ),
        (encode(b"\xff\xfe{}"), "not UTF-8"),
        (encode(b"hello"), "not JSON"),
        (encode(b""), "not JSON"),
        (header(json!([1, 2])), "must be a JSON object, not an array"),
        (header(json!("x")), "must be a JSON object, not a string"),
        (header(json!({"file_size": 1})), "no file_name"),
        (header(json!({"file_name": "a"})), "no file_size"),
        (
            header(json!({"file_name": 7, "file_size": 1})),
            "file_name must be a string",
        ),
        (
            header(json!({"file_name": "a", "file_size": -5})),
            "negative (-5)",
        ),
        (
            header(json!({"file_name": "a", "file_size": "12"})),
            "file_size must be a non-negative integer, not a string",
        ),
        (
            header(json!({"file_name": "a", "file_size": 1.5})),
            "file_size must be a non-negative integer, not a float",
        ),
        (
            header(json!({"file_name": "a", "file_size": 1001})),
            "over the limit of 1000",
        ),
    ];
    for (frame, want) in cases {
        let e = invalid(&frame, &limits).to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

/// A hostile length is refused from the 4-byte prefix alone: nothing waits for (or
/// allocates) the 2 GiB it announces.
#[test]
fn incomplete_is_not_invalid() {
    assert_eq!(check(&[], 100), Err(FrameError::Incomplete));
    assert_eq!(check(&[5, 0, 0], 100), Err(FrameError::Incomplete));
    assert_eq!(check(&[5, 0, 0, 0, b'{'], 100), Err(FrameError::Incomplete));
    assert!(matches!(
        check(&[101, 0, 0, 0], 100),
        Err(FrameError::Invalid(ProtocolError::HeaderTooLarge {
            len: 101,
            max: 100
        }))
    ));
    assert!(matches!(
        check(&i32::MAX.to_le_bytes(), 100),
        Err(FrameError::Invalid(_))
    ));
}

#[test]
fn replies_round_trip() {
    for reply in [
        Reply::Stored {
            file_name: "a (1).txt".into(),
            bytes: 3,
            sha256: "ab".into(),
        },
        Reply::Refused {
            error: "file name \"..\" is not a file".into(),
        },
    ] {
        let frame = reply.encode();
        let (obj, _) = decode_object(&frame, 1024).unwrap();
        assert_eq!(Reply::from_object(&obj).unwrap(), reply);
    }
}
