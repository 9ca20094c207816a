//! `Recorder`: the loop's own account of what it did, as JSON lines, for a student to look
//! at (`netloop timeline` draws it).
//!
//! Every turn and every readiness decision is one line: how long the loop meant to sleep
//! and why, how long it slept and how many events woke it; per connection, accepted or
//! connected, the flags of each event, bytes read, bytes written out of bytes offered,
//! the queue depth, `WouldBlock`, reading paused and resumed at the watermarks, deadlines,
//! timers, the start of a lingering close and the close with its reason.
//!
//! Three rules keep recording honest about the loop it records:
//!
//! - **Off costs a branch.** The recorder is an `Option<Box<Recorder>>` in the loop's
//!   context; every hook is `if let Some(r) = ...`. Nothing is formatted, and no clock is
//!   read, unless recording is on.
//! - **It never blocks the loop.** Lines go into a buffer; a full buffer is handed to a
//!   writer thread over a bounded channel. If the writer falls behind (a slow disk), the
//!   buffer is dropped and counted, never waited for.
//! - **It is bounded.** After `limit` events it writes one `limit` line and stops, so a
//!   busy server cannot fill the disk.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;

/// Buffered bytes handed to the writer thread at once.
const CHUNK: usize = 64 * 1024;
/// Chunks that may wait for the writer before further ones are dropped.
const CHUNKS_IN_FLIGHT: usize = 64;

/// What a field of a recorded line may hold.
pub trait Value {
    /// Append `,"name":value` to a line.
    fn put(self, name: &str, line: &mut String);
}

impl Value for u64 {
    fn put(self, name: &str, line: &mut String) {
        let _ = write!(line, r#","{name}":{self}"#);
    }
}

impl Value for Option<u64> {
    fn put(self, name: &str, line: &mut String) {
        match self {
            Some(v) => v.put(name, line),
            None => {
                let _ = write!(line, r#","{name}":null"#);
            }
        }
    }
}

impl Value for usize {
    fn put(self, name: &str, line: &mut String) {
        (self as u64).put(name, line);
    }
}

impl Value for bool {
    fn put(self, name: &str, line: &mut String) {
        let _ = write!(line, r#","{name}":{self}"#);
    }
}

impl Value for &str {
    fn put(self, name: &str, line: &mut String) {
        let quoted = serde_json::Value::String(self.to_string()).to_string();
        let _ = write!(line, r#","{name}":{quoted}"#);
    }
}

impl Value for String {
    fn put(self, name: &str, line: &mut String) {
        self.as_str().put(name, line);
    }
}

/// Record one event if recording is on: `record!(ctx, "read", conn = key, bytes = n)`.
/// With recording off this is one branch; the field expressions are not evaluated.
macro_rules! record {
    ($ctx:expr, $kind:expr $(, $name:ident = $value:expr)* $(,)?) => {
        if let Some(recorder) = $ctx.recorder.as_deref_mut() {
            if recorder.begin($kind) {
                $( recorder.field(stringify!($name), $value); )*
                recorder.end();
            }
        }
    };
}
pub(crate) use record;

/// Writes the loop's events to a file as JSON lines.
pub struct Recorder {
    epoch: Instant,
    buf: String,
    events: u64,
    limit: u64,
    dropped_chunks: u64,
    tx: Option<SyncSender<String>>,
    writer: Option<JoinHandle<io::Result<()>>>,
}

impl Recorder {
    /// Record into `path` (created; an existing file is an error, never overwritten), at
    /// most `limit` events.
    pub fn create(path: &Path, limit: u64) -> io::Result<Recorder> {
        let mut file = super::io_util::create_new_file(path, "--record")?;
        let (tx, rx) = sync_channel::<String>(CHUNKS_IN_FLIGHT);
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("netloop-record".into())
            .spawn(move || -> io::Result<()> {
                for chunk in rx {
                    file.write_all(chunk.as_bytes())
                        .map_err(|e| io::Error::new(e.kind(), format!("--record {shown}: {e}")))?;
                }
                file.flush()
            })?;
        Ok(Recorder {
            epoch: Instant::now(),
            buf: String::with_capacity(CHUNK + 512),
            events: 0,
            limit,
            dropped_chunks: 0,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// Start one line: `{"t":MICROS,"kind":"KIND"`; the caller adds fields and `end`s it.
    /// Returns false (and writes nothing) once the limit is reached.
    pub fn begin(&mut self, kind: &str) -> bool {
        if self.events >= self.limit {
            return false;
        }
        self.events += 1;
        if self.events == self.limit {
            let t = self.epoch.elapsed().as_micros();
            let _ = writeln!(
                self.buf,
                r#"{{"t":{t},"kind":"limit","events":{}}}"#,
                self.limit
            );
            self.ship();
            return false;
        }
        let t = self.epoch.elapsed().as_micros();
        let _ = write!(self.buf, r#"{{"t":{t},"kind":"{kind}""#);
        true
    }

    /// Add a field: a number, a flag or a text.
    pub fn field(&mut self, name: &str, value: impl Value) -> &mut Self {
        value.put(name, &mut self.buf);
        self
    }

    /// Finish the line; hand the buffer over when it is full.
    pub fn end(&mut self) {
        self.buf.push_str("}\n");
        if self.buf.len() >= CHUNK {
            self.ship();
        }
    }

    /// Events recorded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    fn ship(&mut self) {
        let Some(tx) = &self.tx else {
            return;
        };
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK + 512));
        match tx.try_send(chunk) {
            Ok(()) => {}
            // The writer is behind: drop rather than make the loop wait for a disk.
            Err(TrySendError::Full(_)) => self.dropped_chunks += 1,
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// Write what is buffered and wait for the writer (at the end of a run).
    pub fn finish(&mut self) -> io::Result<()> {
        if self.dropped_chunks > 0 {
            let t = self.epoch.elapsed().as_micros();
            let _ = writeln!(
                self.buf,
                r#"{{"t":{t},"kind":"dropped","chunks":{}}}"#,
                self.dropped_chunks
            );
        }
        if let Some(tx) = self.tx.take() {
            let chunk = std::mem::take(&mut self.buf);
            // Blocking is fine here: the loop is done.
            let _ = tx.send(chunk);
        }
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the --record writer thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("{e}");
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.events)
            .field("limit", &self.limit)
            .finish()
    }
}
