//! The reply to one command: seed 004's framing, with a richer header.
//!
//! Seed 004's server answers a command with `struct.pack('i', len(json))`, the JSON of
//! `{'name': 'jason', 'file_size': len(res), 'info': '...'}`, then `res`: the command's
//! stdout followed by its stderr. Its client reads the four bytes, the JSON, then loops
//! on `recv` until it has `file_size` bytes. netloop keeps exactly that (the frame is
//! `proto::frames`' length-prefixed JSON), so the seed's client works unchanged and
//! ignores the keys it does not know, which say what the seed's could not:
//!
//! ```text
//! {"file_size": N, "stdout_size": A, "stderr_size": B, "exit_code": 0, "signal": null,
//!  "truncated": false, "timed_out": false}
//! ```
//!
//! `exit_code` is null when the command was killed by a signal (`signal` then says
//! which); `truncated` means the output reached `--max-output` and the command was
//! killed; `timed_out` that it ran past `--timeout` and was killed. A refused request
//! gets `"error": "..."`, `exit_code` null, and the same text as its body (on the stderr
//! side), so a client that only prints bodies, like the seed's, shows why.
//!
//! Pure codec: nothing here touches a socket.

use serde_json::{json, Map, Value};

use crate::proto::frames;

/// Largest reply header a client accepts (ours are about 150 bytes).
pub const MAX_HEADER: usize = 64 * 1024;

/// What the header of a reply says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyHeader {
    /// Bytes of output after the header: stdout then stderr.
    pub file_size: u64,
    /// How many of them are stdout (the rest is stderr).
    pub stdout_size: u64,
    /// How many of them are stderr.
    pub stderr_size: u64,
    /// The exit status, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The output reached the server's limit; the command was killed.
    pub truncated: bool,
    /// The command ran past the server's time limit and was killed.
    pub timed_out: bool,
    /// The request was refused (nothing ran): why.
    pub error: Option<String>,
}

impl ReplyHeader {
    /// The header of a refusal; its body is [`refusal_body`]`(error)`.
    pub fn refusal(error: &str) -> ReplyHeader {
        let len = refusal_body(error).len() as u64;
        ReplyHeader {
            file_size: len,
            stderr_size: len,
            error: Some(error.to_string()),
            ..ReplyHeader::default()
        }
    }

    /// The frame: 4-byte little-endian length, then the JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut value = json!({
            "file_size": self.file_size,
            "stdout_size": self.stdout_size,
            "stderr_size": self.stderr_size,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "truncated": self.truncated,
            "timed_out": self.timed_out,
        });
        if let (Some(error), Value::Object(map)) = (&self.error, &mut value) {
            map.insert("error".into(), Value::String(error.clone()));
        }
        frames::encode_value(&value)
    }

    /// Read a header object (the client's side). Only `file_size` is required, so a
    /// seed-style server's `{"file_size": N, "name": ...}` is read too (all stdout).
    pub fn from_object(obj: &Map<String, Value>) -> Result<ReplyHeader, String> {
        let file_size = obj
            .get("file_size")
            .and_then(Value::as_u64)
            .ok_or("reply header has no file_size (a non-negative integer)")?;
        let size = |key: &str| obj.get(key).and_then(Value::as_u64);
        let (stdout_size, stderr_size) = match (size("stdout_size"), size("stderr_size")) {
            (Some(out), Some(err)) if out.checked_add(err) == Some(file_size) => (out, err),
            (None, None) => (file_size, 0),
            _ => return Err("reply header's stdout_size and stderr_size do not add up".into()),
        };
        let int = |key: &str| {
            obj.get(key)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        let flag = |key: &str| obj.get(key).and_then(Value::as_bool).unwrap_or(false);
        Ok(ReplyHeader {
            file_size,
            stdout_size,
            stderr_size,
            exit_code: int("exit_code"),
            signal: int("signal"),
            truncated: flag("truncated"),
            timed_out: flag("timed_out"),
            error: obj.get("error").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// The exit status a client passes on, as shells and `timeout(1)` do: the command's
    /// own code; 124 if it timed out; 126 if it was refused; 128 + N if signal N killed
    /// it.
    pub fn shell_status(&self) -> u8 {
        if self.error.is_some() {
            126
        } else if self.timed_out {
            124
        } else if let Some(code) = self.exit_code {
            // Exit statuses are 0..=255 on Unix; anything else is a broken header.
            u8::try_from(code).unwrap_or(1)
        } else if let Some(signal) = self.signal {
            u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(255)
        } else {
            1
        }
    }
}

/// The body of a refusal: the error and a newline (on the stderr side).
pub fn refusal_body(error: &str) -> Vec<u8> {
    format!("{error}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(header: &ReplyHeader) -> ReplyHeader {
        let frame = header.encode();
        let (obj, used) = frames::decode_object(&frame, MAX_HEADER).expect("frame");
        assert_eq!(used, frame.len());
        ReplyHeader::from_object(&obj).expect("header")
    }

    #[test]
    fn headers_survive_the_wire() {
        let ran = ReplyHeader {
            file_size: 5,
            stdout_size: 3,
            stderr_size: 2,
            exit_code: Some(0),
            ..ReplyHeader::default()
        };
        assert_eq!(roundtrip(&ran), ran);
        let killed = ReplyHeader {
            signal: Some(15),
            timed_out: true,
            ..ReplyHeader::default()
        };
        assert_eq!(roundtrip(&killed), killed);
        let refused = ReplyHeader::refusal("`rm` is not an allowed program");
        assert_eq!(roundtrip(&refused), refused);
        assert_eq!(refused.stderr_size, refused.file_size);
    }

    #[test]
    fn the_frame_is_seed_004s() {
        let frame = ReplyHeader::refusal("x").encode();
        assert_eq!(refusal_body("x"), b"x\n");
        let len = i32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(len as usize, frame.len() - 4);
        let text = std::str::from_utf8(&frame[4..]).expect("utf-8");
        assert!(text.contains("\"file_size\":2"), "{text}");
    }

    #[test]
    fn a_seed_style_header_is_all_stdout() {
        let obj = serde_json::from_str::<Value>(r#"{"name":"jason","file_size":7,"info":"x"}"#)
            .expect("json");
        let Value::Object(obj) = obj else {
            panic!("not an object")
        };
        let h = ReplyHeader::from_object(&obj).expect("header");
        assert_eq!((h.file_size, h.stdout_size, h.stderr_size), (7, 7, 0));
        assert_eq!(h.exit_code, None);
    }

    #[test]
    fn shell_statuses() {
        let code = |c| ReplyHeader {
            exit_code: Some(c),
            ..ReplyHeader::default()
        };
        assert_eq!(code(0).shell_status(), 0);
        assert_eq!(code(3).shell_status(), 3);
        let signal = ReplyHeader {
            signal: Some(9),
            ..ReplyHeader::default()
        };
        assert_eq!(signal.shell_status(), 137);
        let timed_out = ReplyHeader {
            timed_out: true,
            signal: Some(15),
            ..ReplyHeader::default()
        };
        assert_eq!(timed_out.shell_status(), 124);
        assert_eq!(ReplyHeader::refusal("no").shell_status(), 126);
    }
}
