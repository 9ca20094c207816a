//! Framing: the seeds' length-prefixed JSON frames, and the uploads built from them.
//!
//! TCP delivers a byte stream, not messages: two `send`s may arrive as one `recv`, and
//! one `send` as several (the seeds' "sticky packets", 黏包). Seeds 000 and 004 fix it
//! with a **frame**: a 4-byte length L from Python's `struct.pack('i', L)` (signed,
//! native order, so little-endian on x86-64 and ARM64), then L bytes of UTF-8 JSON. An
//! **upload** is a frame whose object names a file (`file_name` or `filename`) and its
//! size (`file_size` or `filesize`), followed by exactly that many raw bytes.
//!
//! Decoding is in two phases, as in mini-redis: [`check`] says whether a whole frame is
//! in the buffer (`Incomplete` is a normal answer, not an error: wait for more bytes),
//! and only then is the JSON parsed. Nothing here reads a socket, so the decoder works
//! with any split of the stream — the loop's rule for `on_data` is "return what you
//! used; the rest is offered again with more", and [`UploadDecoder::decode`] returns
//! exactly that count. A body is never buffered: it is handed out in whatever pieces
//! arrived, so the caller can stream it to disk.
//!
//! Every field is distrusted: the length must be 0..=`max_header` (a negative or huge
//! length is refused before any allocation), the header must be UTF-8 JSON holding an
//! object, and the size a non-negative integer no larger than `max_file_size`.

use std::fmt;

use serde_json::{Map, Value};

/// Bytes in the length prefix (`struct.pack('i', n)`).
pub const PREFIX_LEN: usize = 4;
/// Default largest JSON header accepted.
pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;
/// Default largest file accepted: 10 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024 * 1024;

/// What a peer may send: checked before anything is allocated or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON header, in bytes.
    pub max_header: usize,
    /// Largest upload body, in bytes.
    pub max_file_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: DEFAULT_MAX_HEADER,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// Why bytes could not be decoded (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not enough bytes for a whole frame: keep them, and try again with more.
    Incomplete,
    /// The bytes break the protocol: no amount of further input can fix them.
    Invalid(ProtocolError),
}

impl From<ProtocolError> for FrameError {
    fn from(e: ProtocolError) -> Self {
        FrameError::Invalid(e)
    }
}

/// A protocol violation, worded for the error reply the peer receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The length prefix is negative (Python's `struct.pack('i', -1)` allows it).
    NegativeLength(i32),
    /// The length prefix is over the header limit.
    HeaderTooLarge {
        /// The length announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header is not UTF-8; `valid_up_to` bytes were.
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The header is not JSON (serde_json's message).
    NotJson(String),
    /// The header is JSON, but not an object.
    NotObject(&'static str),
    /// A required field is absent (both spellings are named).
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was, shortened.
        found: String,
    },
    /// `file_size` is a negative integer.
    NegativeSize(i64),
    /// `file_size` is over `max_file_size`.
    FileTooLarge {
        /// The size announced.
        size: u64,
        /// The limit.
        max: u64,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::NegativeLength(n) => write!(f, "negative header length {n}"),
            ProtocolError::HeaderTooLarge { len, max } => {
                write!(f, "header length {len} is over the limit of {max} bytes")?;
                let prefix = (*len as u32).to_le_bytes();
                if prefix.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                    // Typed text (nc) reads as a huge length: say what the port expects.
                    let text = String::from_utf8_lossy(&prefix);
                    write!(
                        f,
                        " (the first 4 bytes, {text:?}, look like text: this port expects \
                         frames of a 4-byte little-endian length, a JSON header and the file; \
                         send files with `netloop upload FILE --to ADDR`)"
                    )?;
                }
                Ok(())
            }
            ProtocolError::NotUtf8 { valid_up_to } => {
                write!(f, "header is not UTF-8 (invalid byte at {valid_up_to})")
            }
            ProtocolError::NotJson(e) => write!(f, "header is not JSON: {e}"),
            ProtocolError::NotObject(kind) => {
                write!(f, "header must be a JSON object, not {kind}")
            }
            ProtocolError::MissingField(names) => write!(f, "header has no {names}"),
            ProtocolError::WrongType {
                field,
                expected,
                found,
            } => write!(f, "{field} must be {expected}, not {found}"),
            ProtocolError::NegativeSize(n) => write!(f, "file_size is negative ({n})"),
            ProtocolError::FileTooLarge { size, max } => {
                write!(f, "file_size {size} is over the limit of {max} bytes")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Phase one: is a whole frame at the start of `buf`? Returns its total length (prefix
/// included). Looks at the prefix only, so a hostile length costs nothing.
pub fn check(buf: &[u8], max_header: usize) -> Result<usize, FrameError> {
    let Some(&[a, b, c, d]) = buf.get(..PREFIX_LEN) else {
        return Err(FrameError::Incomplete);
    };
    let len = i32::from_le_bytes([a, b, c, d]);
    let len = usize::try_from(len).map_err(|_| ProtocolError::NegativeLength(len))?;
    if len > max_header {
        return Err(ProtocolError::HeaderTooLarge {
            len,
            max: max_header,
        }
        .into());
    }
    if buf.len() < PREFIX_LEN + len {
        return Err(FrameError::Incomplete);
    }
    Ok(PREFIX_LEN + len)
}

/// Phase two: the JSON object in a frame's payload (the bytes after the prefix).
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, ProtocolError> {
    let text = std::str::from_utf8(payload).map_err(|e| ProtocolError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ProtocolError::NotObject(kind_of(&other))),
        Err(e) => Err(ProtocolError::NotJson(e.to_string())),
    }
}

/// Both phases: the object in the frame at the start of `buf`, and the frame's length.
pub fn decode_object(
    buf: &[u8],
    max_header: usize,
) -> Result<(Map<String, Value>, usize), FrameError> {
    let total = check(buf, max_header)?;
    Ok((parse_object(&buf[PREFIX_LEN..total])?, total))
}

/// A frame around `json`: the 4-byte little-endian length, then the bytes.
pub fn encode(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + json.len());
    // A payload over i32::MAX cannot be described by the prefix; ours are small JSON.
    let len = i32::try_from(json.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(json);
    out
}

/// A frame around a JSON value.
pub fn encode_value(value: &Value) -> Vec<u8> {
    encode(value.to_string().as_bytes())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `found` text for a wrong type: the kind, with a short sample of the value.
fn describe(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 40 {
        let mut cut = 40;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    format!("{} ({text})", kind_of(value))
}

/// The first of two spellings present in `obj` (seed 004 vs seed 000).
fn field<'a>(obj: &'a Map<String, Value>, a: &str, b: &str) -> Option<&'a Value> {
    obj.get(a).or_else(|| obj.get(b))
}

/// What an upload header says; other keys (`msg`, `filepath`, `info`) are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadHeader {
    /// The name the client asks for, not yet checked as a file name.
    pub file_name: String,
    /// The number of raw bytes that follow the header.
    pub file_size: u64,
}

impl UploadHeader {
    /// Read and check the two fields.
    pub fn from_object(
        obj: &Map<String, Value>,
        max_file_size: u64,
    ) -> Result<UploadHeader, ProtocolError> {
        let name = field(obj, "file_name", "filename")
            .ok_or(ProtocolError::MissingField("file_name (or filename)"))?;
        let Value::String(file_name) = name else {
            return Err(ProtocolError::WrongType {
                field: "file_name",
                expected: "a string",
                found: describe(name),
            });
        };
        let size = field(obj, "file_size", "filesize")
            .ok_or(ProtocolError::MissingField("file_size (or filesize)"))?;
        let file_size = match size.as_u64() {
            Some(n) => n,
            None => match size.as_i64() {
                Some(n) => return Err(ProtocolError::NegativeSize(n)),
                None => {
                    return Err(ProtocolError::WrongType {
                        field: "file_size",
                        expected: "a non-negative integer",
                        found: describe(size),
                    })
                }
            },
        };
        if file_size > max_file_size {
            return Err(ProtocolError::FileTooLarge {
                size: file_size,
                max: max_file_size,
            });
        }
        Ok(UploadHeader {
            file_name: file_name.clone(),
            file_size,
        })
    }

    /// The header frame, with seed 004's key names.
    pub fn encode(&self) -> Vec<u8> {
        encode_value(&serde_json::json!({
            "file_name": self.file_name,
            "file_size": self.file_size,
        }))
    }
}

/// One step of an upload stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A header: the body (`file_size` bytes) comes next.
    Header(UploadHeader),
    /// Some bytes of the current body; `last` on the piece that completes it. A body of
    /// zero bytes is one empty piece with `last` set.
    Body {
        /// The bytes, borrowed from the input.
        bytes: &'a [u8],
        /// The body is complete.
        last: bool,
    },
}

/// Incremental decoder of upload streams: header frame, body, header frame, body, ...
///
/// Its only state is how much of the current body is left; a header is decoded only
/// once its whole frame is in the buffer, so partial headers stay with the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadDecoder {
    /// Body bytes still expected (`None`: a header comes next).
    remaining: Option<u64>,
}

impl UploadDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> UploadDecoder {
        UploadDecoder::default()
    }

    /// Decode the next item at the start of `buf`; returns it and how many bytes of
    /// `buf` it used. `Incomplete` means: keep `buf` and call again with more bytes.
    pub fn decode<'a>(
        &mut self,
        buf: &'a [u8],
        limits: &Limits,
    ) -> Result<(Item<'a>, usize), FrameError> {
        match self.remaining {
            Some(0) => {
                self.remaining = None;
                Ok((
                    Item::Body {
                        bytes: &[],
                        last: true,
                    },
                    0,
                ))
            }
            Some(_) if buf.is_empty() => Err(FrameError::Incomplete),
            Some(left) => {
                // Bounded by buf.len(), so the conversion back to usize is exact.
                let take = left.min(buf.len() as u64) as usize;
                let left = left - take as u64;
                self.remaining = if left == 0 { None } else { Some(left) };
                let item = Item::Body {
                    bytes: &buf[..take],
                    last: left == 0,
                };
                Ok((item, take))
            }
            None => {
                let (obj, used) = decode_object(buf, limits.max_header)?;
                let header = UploadHeader::from_object(&obj, limits.max_file_size)?;
                self.remaining = Some(header.file_size);
                Ok((Item::Header(header), used))
            }
        }
    }

    /// Body bytes still expected, if a body is in progress.
    pub fn body_remaining(&self) -> Option<u64> {
        self.remaining
    }
}

/// The server's answer to one upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `{"ok":true,"file_name":…,"bytes":N,"sha256":…}`: stored under `file_name`.
    Stored {
        /// The name the file was stored under (may differ from the one asked for).
        file_name: String,
        /// Bytes stored.
        bytes: u64,
        /// SHA-256 of the stored bytes, lower-case hex.
        sha256: String,
    },
    /// `{"ok":false,"error":…}`: refused; the server closes the connection after it.
    Refused {
        /// Why.
        error: String,
    },
}

impl Reply {
    /// The reply as a frame.
    pub fn encode(&self) -> Vec<u8> {
        let value = match self {
            Reply::Stored {
                file_name,
                bytes,
                sha256,
            } => serde_json::json!({
                "ok": true, "file_name": file_name, "bytes": bytes, "sha256": sha256,
            }),
            Reply::Refused { error } => serde_json::json!({ "ok": false, "error": error }),
        };
        encode_value(&value)
    }

    /// Read a reply object (the client's side).
    pub fn from_object(obj: &Map<String, Value>) -> Result<Reply, String> {
        let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
        match obj.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(Reply::Stored {
                file_name: text("file_name").ok_or("reply has no file_name")?,
                bytes: obj
                    .get("bytes")
                    .and_then(Value::as_u64)
                    .ok_or("reply has no byte count")?,
                sha256: text("sha256").ok_or("reply has no sha256")?,
            }),
            Some(false) => Ok(Reply::Refused {
                error: text("error").unwrap_or_else(|| "(no reason given)".into()),
            }),
            None => Err("reply has no boolean \"ok\"".into()),
        }
    }
}
