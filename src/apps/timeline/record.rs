//! Reading a `--record` file back: one JSON object per line, as `core/record.rs` writes.
//!
//! Every line becomes an `Event`: its time, and what it says in a typed form (`What`)
//! for the layout. The original line is kept too, because the HTML page shows it as the
//! event's details: what a student hovers over is exactly what the loop wrote.
//!
//! A kind this reader does not know (a newer loop may record more) is kept as
//! `What::Other` and drawn as a plain mark, so an old `netloop timeline` still draws a
//! new record. A last line cut short (the recording process was killed while writing)
//! is skipped and counted; a bad line anywhere else is an error naming the file and line.

use std::io;
use std::path::Path;

use serde_json::{Map, Value};

/// One recorded event.
#[derive(Clone, Debug)]
pub struct Event {
    /// Microseconds since the recording started (the loop's clock).
    pub t: u64,
    /// What happened.
    pub what: What,
    /// The line as recorded (a JSON object), shown as the event's details.
    pub line: String,
}

/// What a recorded line says, per kind (see `core/record.rs` for the writer's side).
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// The loop is about to sleep: at most `timeout_us` (none: until something happens).
    Poll {
        /// The longest sleep allowed, in microseconds; `None` is "until an event".
        timeout_us: Option<u64>,
        /// Why that long: "nothing scheduled", "next timer", "work left over", ...
        why: String,
    },
    /// The loop woke up with `events` readiness events after `slept_us`.
    Wake {
        /// Events `poll` returned.
        events: u64,
        /// Microseconds asleep.
        slept_us: u64,
    },
    /// A connection was accepted (or an outbound connect completed: `outbound`).
    Open {
        /// The connection's slot (reused after it closes).
        conn: usize,
        /// The address at the other end.
        peer: String,
        /// True for `connected` (outbound), false for `accept`.
        outbound: bool,
    },
    /// A readiness event for a connection, with its flags.
    Ready {
        /// The connection's slot.
        conn: usize,
        /// The socket has bytes (or an EOF) to read.
        readable: bool,
        /// The socket's send buffer has room.
        writable: bool,
        /// The peer closed its side.
        read_closed: bool,
        /// The socket has an error.
        error: bool,
    },
    /// Bytes read (`discarded`: read and dropped, after the handler stopped reading).
    Read {
        /// The connection's slot.
        conn: usize,
        /// How many.
        bytes: u64,
        /// True for `discard`.
        discarded: bool,
    },
    /// A send: `wrote` of `of` bytes went to the kernel at once, `queued` wait.
    Write {
        /// The connection's slot.
        conn: usize,
        /// Bytes the kernel took.
        wrote: u64,
        /// Bytes offered.
        of: u64,
        /// Bytes in the outbound queue afterwards.
        queued: u64,
    },
    /// A queued write on writability: `wrote` bytes left the queue, `queued` remain.
    Flush {
        /// The connection's slot.
        conn: usize,
        /// Bytes the kernel took.
        wrote: u64,
        /// Bytes still queued.
        queued: u64,
    },
    /// A read or a write found the kernel not ready (`op`: "read" or "write").
    WouldBlock {
        /// The connection's slot.
        conn: usize,
        /// Which operation.
        op: String,
    },
    /// Reading stopped (`paused`, the queue passed the high watermark) or resumed.
    Backpressure {
        /// The connection's slot.
        conn: usize,
        /// True for `paused`, false for `resumed`.
        paused: bool,
        /// The queue depth at that moment.
        queued: u64,
    },
    /// The peer's EOF arrived.
    Eof {
        /// The connection's slot.
        conn: usize,
    },
    /// A handler deadline (`deadline`) or the idle timeout (`idle`) came up.
    Due {
        /// The connection's slot.
        conn: usize,
        /// True for `idle`, false for `deadline`.
        idle: bool,
    },
    /// The handler is done and the loop lingers (`closing`), or the slot is gone.
    Close {
        /// The connection's slot.
        conn: usize,
        /// Why, in words.
        reason: String,
        /// True for `closing` (the lingering close begins), false for `closed`.
        lingering: bool,
    },
    /// A loop timer fired.
    Timer {
        /// The handler's key.
        key: u64,
    },
    /// A datagram arrived on UDP port number `port`.
    Datagram {
        /// The loop's UDP port number (0 for the first UDP socket).
        port: usize,
        /// Its size.
        bytes: u64,
    },
    /// A signal arrived, or the recorder says something about itself (`limit`,
    /// `dropped`), or a kind this reader does not know.
    Other {
        /// The recorded kind.
        kind: String,
        /// The connection it concerns, if the line names one.
        conn: Option<usize>,
    },
}

impl What {
    /// The connection this event is about, if any.
    pub fn conn(&self) -> Option<usize> {
        match self {
            What::Open { conn, .. }
            | What::Ready { conn, .. }
            | What::Read { conn, .. }
            | What::Write { conn, .. }
            | What::Flush { conn, .. }
            | What::WouldBlock { conn, .. }
            | What::Backpressure { conn, .. }
            | What::Eof { conn }
            | What::Due { conn, .. }
            | What::Close { conn, .. } => Some(*conn),
            What::Other { conn, .. } => *conn,
            _ => None,
        }
    }
}

/// A record read back.
#[derive(Debug, Default)]
pub struct Record {
    /// The events, in the order written (times never decrease).
    pub events: Vec<Event>,
    /// Lines skipped: a last line cut short by a killed process.
    pub skipped: usize,
    /// True when the recorder stopped at its `--record-limit` (the record is a prefix).
    pub limited: bool,
    /// Chunks the recorder dropped because its disk was slower than the loop.
    pub dropped_chunks: u64,
}

/// Read a record file. Errors name the file (and the line, for a bad one).
pub fn read(path: &Path) -> io::Result<Record> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}:{e}", path.display()),
        )
    })
}

/// Parse a record's text; errors start with the line number.
pub fn parse(text: &str) -> Result<Record, String> {
    let mut record = Record::default();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(event) => {
                match &event.what {
                    What::Other { kind, .. } if kind == "limit" => record.limited = true,
                    What::Other { kind, .. } if kind == "dropped" => {
                        record.dropped_chunks += number(&object(line)?, "chunks").unwrap_or(0);
                    }
                    _ => {}
                }
                record.events.push(event);
            }
            // The process was killed in the middle of writing its last line.
            Err(_) if i + 1 == lines.len() && !line.ends_with('}') => record.skipped += 1,
            Err(e) => return Err(format!("{}: {e}", i + 1)),
        }
    }
    if record.events.is_empty() {
        return Err(" no events: not a `--record` file, or an empty one".into());
    }
    Ok(record)
}

fn object(line: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON ({e})")),
    }
}

fn number(map: &Map<String, Value>, name: &str) -> Option<u64> {
    map.get(name).and_then(Value::as_u64)
}

/// Parse one line into an event.
pub fn parse_line(line: &str) -> Result<Event, String> {
    let map = object(line)?;
    let t = number(&map, "t").ok_or("no time (`t`)")?;
    let kind = map.get("kind").and_then(Value::as_str).ok_or("no `kind`")?;
    let num = |name: &str| number(&map, name).ok_or_else(|| format!("{kind}: no `{name}`"));
    let text = |name: &str| {
        map.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{kind}: no `{name}`"))
    };
    let flag = |name: &str| map.get(name).and_then(Value::as_bool).unwrap_or(false);
    let conn = || num("conn").map(|c| c as usize);
    let what = match kind {
        "poll" => What::Poll {
            timeout_us: number(&map, "timeout_us"),
            why: text("why")?,
        },
        "wake" => What::Wake {
            events: num("events")?,
            slept_us: num("slept_us")?,
        },
        "accept" | "connected" => What::Open {
            conn: conn()?,
            peer: text("peer").unwrap_or_default(),
            outbound: kind == "connected",
        },
        "event" => What::Ready {
            conn: conn()?,
            readable: flag("readable"),
            writable: flag("writable"),
            read_closed: flag("read_closed"),
            error: flag("error"),
        },
        "read" | "discard" => What::Read {
            conn: conn()?,
            bytes: num("bytes")?,
            discarded: kind == "discard",
        },
        "write" => What::Write {
            conn: conn()?,
            wrote: num("wrote")?,
            of: num("of")?,
            queued: num("queued")?,
        },
        "flush" => What::Flush {
            conn: conn()?,
            wrote: num("wrote")?,
            queued: num("queued")?,
        },
        "would_block" => What::WouldBlock {
            conn: conn()?,
            op: text("op").unwrap_or_default(),
        },
        "paused" | "resumed" => What::Backpressure {
            conn: conn()?,
            paused: kind == "paused",
            queued: num("queued")?,
        },
        "eof" => What::Eof { conn: conn()? },
        "deadline" | "idle" => What::Due {
            conn: conn()?,
            idle: kind == "idle",
        },
        "closing" | "closed" => What::Close {
            conn: conn()?,
            reason: text("reason").unwrap_or_default(),
            lingering: kind == "closing",
        },
        "timer" => What::Timer { key: num("key")? },
        "datagram" => What::Datagram {
            port: num("port")? as usize,
            bytes: num("bytes")?,
        },
        other => What::Other {
            kind: other.to_string(),
            conn: number(&map, "conn").map(|c| c as usize),
        },
    };
    Ok(Event {
        t,
        what,
        line: line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_typed_events() {
        let text = r#"{"t":2,"kind":"poll","timeout_us":null,"why":"nothing scheduled"}
{"t":9,"kind":"wake","events":1,"slept_us":7}
{"t":10,"kind":"accept","conn":0,"peer":"127.0.0.1:5000"}
{"t":12,"kind":"write","conn":0,"wrote":0,"of":10,"queued":10}
{"t":13,"kind":"frobnicate","conn":0}
{"t":14,"kind":"limit","events":5}
"#;
        let record = parse(text).unwrap();
        assert_eq!(record.events.len(), 6);
        assert!(record.limited);
        assert_eq!(
            record.events[0].what,
            What::Poll {
                timeout_us: None,
                why: "nothing scheduled".into()
            }
        );
        assert_eq!(record.events[3].what.conn(), Some(0));
        assert_eq!(record.events[4].what.conn(), Some(0));
        assert!(record.events[2].line.contains("5000"));
    }

    #[test]
    fn a_cut_last_line_is_skipped_and_a_bad_line_elsewhere_is_an_error() {
        let cut = "{\"t\":1,\"kind\":\"eof\",\"conn\":3}\n{\"t\":2,\"kind\":\"re";
        let record = parse(cut).unwrap();
        assert_eq!((record.events.len(), record.skipped), (1, 1));
        let bad = "{\"t\":1,\"kind\":\"eof\"}\n{\"t\":2,\"kind\":\"eof\",\"conn\":3}\n";
        let err = parse(bad).unwrap_err();
        assert!(err.starts_with("1: eof: no `conn`"), "{err}");
        assert!(parse("\n\n").is_err());
    }
}
