//! One upload on its way to disk: the loop's side of an ordered writer, and the jobs
//! that do the blocking part on the offload pool.
//!
//! **Where the loop thread stops and the pool starts.** The loop thread decodes frames
//! and copies body bytes out of its shared read buffer into the upload's `pending`
//! buffer (a `memcpy`, never a system call on the file). Everything that touches the
//! disk, or could take long, is a [`Job`] run on a helper thread: creating the temporary
//! file, writing and hashing a batch of bytes, and *finishing* (flush, `fsync` the file,
//! `link` it into place under a free name, `fsync` the directory), and removing the
//! temporary file of an upload that will not finish. The reason is the one in
//! `core/offload.rs`: a regular file is always "ready", so a slow disk blocks the thread
//! that calls it, and on the loop thread that would stall every connection at once.
//!
//! **Order without locks.** An upload has at most one job in flight, and the job
//! *carries* the upload's [`Partial`] (file handle and running hash) and returns it with
//! its result: bytes that arrive meanwhile wait in `pending` and go out as the next
//! job's batch when the result comes back. So the writes of one upload happen in order
//! even on a pool of several threads, nothing is shared between threads, and a slow disk
//! makes the batches bigger instead of the job queue longer.
//!
//! **Nothing half-done is left.** A job that fails drops its `Partial` on the helper
//! thread, which removes the temporary file. An upload abandoned on the loop (refused,
//! disconnected) whose `Partial` is at home is sent to the pool to be dropped; one whose
//! `Partial` is in a job is dropped when that job's result comes back and finds nobody
//! waiting for it (`Upload::on_wake`), and at shutdown results never collected are
//! dropped with the pool, which lets queued jobs finish first. A finishing job always
//! runs to its end: the file is then in place whole, or not at all.

use std::io;
use std::path::PathBuf;

use mio::Token;

use super::store::{Partial, Store, Stored};

/// Who a job's result is for: the connection (its token and serial, since tokens are
/// reused) and the upload on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The connection's token.
    pub token: Token,
    /// The connection's serial number (`UploadConn::id`).
    pub conn: u64,
    /// The upload's serial number (`Writer::id`).
    pub upload: u64,
}

/// What a job did.
#[derive(Debug)]
pub enum Outcome {
    /// The batch is written; the `Partial` comes home for the next one.
    Written(Box<Partial>),
    /// The file is in place.
    Stored(Stored),
    /// Creating, writing or finishing failed; the temporary file is already removed.
    Failed(io::Error),
    /// An abandoned upload's temporary file was removed.
    Discarded,
}

/// A job's result, as `Upload::on_wake` collects it from the pool.
#[derive(Debug)]
pub struct Done {
    /// Whose it is.
    pub owner: Owner,
    /// Body bytes the job carried (they no longer count against the memory budget).
    pub bytes: usize,
    /// The batch's buffer, emptied, for the next batch: fresh memory for every batch
    /// would cost a page fault (and the kernel zeroing the page) per 4 KiB received.
    pub buffer: Vec<u8>,
    /// What happened.
    pub outcome: Outcome,
}

/// Where an upload's `Partial` is.
#[derive(Debug)]
enum Home {
    /// Not created yet: the first job creates this temporary file.
    Unborn(PathBuf),
    /// Here, between jobs.
    Here(Box<Partial>),
    /// In the job in flight.
    Away,
}

/// The blocking work of one job.
#[derive(Debug)]
enum Start {
    Create(PathBuf),
    Continue(Box<Partial>),
}

/// One batch for the pool: create the file if needed, write and hash `bytes`, and
/// finish the file if `finish`.
#[derive(Debug)]
pub struct Job {
    owner: Owner,
    store: Store,
    name: String,
    size: u64,
    start: Start,
    bytes: Vec<u8>,
    finish: bool,
}

impl Job {
    /// Body bytes the job carries.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Run on a helper thread.
    pub fn run(mut self) -> Done {
        let owner = self.owner;
        let mut buffer = std::mem::take(&mut self.bytes);
        let outcome = match self.work(&buffer) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        };
        let bytes = buffer.len();
        buffer.clear();
        Done {
            owner,
            bytes,
            buffer,
            outcome,
        }
    }

    fn work(self, bytes: &[u8]) -> io::Result<Outcome> {
        let mut partial = match self.start {
            Start::Create(temp) => Box::new(Partial::create(temp, &self.name, self.size)?),
            Start::Continue(partial) => partial,
        };
        // On an error `partial` is dropped here, on this thread: its temporary file goes.
        partial.write(bytes)?;
        if self.finish {
            Ok(Outcome::Stored(self.store.finish(*partial)?))
        } else {
            Ok(Outcome::Written(partial))
        }
    }
}

/// Remove an abandoned upload's temporary file, on a helper thread.
pub fn discard_job(owner: Owner, partial: Box<Partial>) -> impl FnOnce() -> Done + Send {
    move || {
        drop(partial);
        Done {
            owner,
            bytes: 0,
            buffer: Vec::new(),
            outcome: Outcome::Discarded,
        }
    }
}

/// The loop's side of one upload: what has arrived, and where its file is.
#[derive(Debug)]
pub struct Writer {
    /// The upload's serial number (results name it).
    pub id: u64,
    /// The name the client asked for (already checked).
    pub name: String,
    /// The size announced in the header.
    pub size: u64,
    /// Body bytes received so far.
    pub received: u64,
    /// Bytes received and not yet handed to a job.
    pending: Vec<u8>,
    /// Bytes in the job in flight, if one is.
    in_job: Option<usize>,
    home: Home,
    /// Every body byte is here: the last job finishes the file.
    last: bool,
}

impl Writer {
    /// A new upload whose temporary file will be `temp` (created by its first job).
    pub fn new(id: u64, name: String, size: u64, temp: PathBuf) -> Writer {
        Writer {
            id,
            name,
            size,
            received: 0,
            pending: Vec::new(),
            in_job: None,
            home: Home::Unborn(temp),
            last: false,
        }
    }

    /// Body bytes arrived (copied: the loop's read buffer is reused at once). A new
    /// batch starts in a buffer from `spares` if there is one.
    pub fn push(&mut self, bytes: &[u8], spares: &mut Vec<Vec<u8>>) {
        if self.pending.capacity() == 0 {
            // One allocation for most batches: what is left of the body, within reason.
            let left = self.size.saturating_sub(self.received);
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(BATCH_HINT);
            if want > SMALL {
                self.pending = spares.pop().unwrap_or_default();
            }
            self.pending.reserve(want.max(bytes.len()));
        }
        self.pending.extend_from_slice(bytes);
        self.received += bytes.len() as u64;
    }

    /// The last body byte is in: the next job (after any in flight) finishes the file.
    pub fn set_last(&mut self) {
        self.last = true;
    }

    /// Every body byte has arrived.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Bytes waiting for a job.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes waiting for a job plus bytes in the job in flight.
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.in_job.unwrap_or(0)
    }

    /// A job is in flight.
    pub fn busy(&self) -> bool {
        self.in_job.is_some()
    }

    /// The next job, if one is due: nothing in flight, and bytes waiting or the file to
    /// finish. `owner` is the connection's part of the result's address.
    pub fn next_job(&mut self, store: &Store, token: Token, conn: u64) -> Option<Job> {
        if self.in_job.is_some() || (self.pending.is_empty() && !self.last) {
            return None;
        }
        let start = match std::mem::replace(&mut self.home, Home::Away) {
            Home::Unborn(temp) => Start::Create(temp),
            Home::Here(partial) => Start::Continue(partial),
            Home::Away => return None, // cannot happen: in_job would be set
        };
        let bytes = std::mem::take(&mut self.pending);
        self.in_job = Some(bytes.len());
        Some(Job {
            owner: Owner {
                token,
                conn,
                upload: self.id,
            },
            store: store.clone(),
            name: self.name.clone(),
            size: self.size,
            start,
            bytes,
            finish: self.last,
        })
    }

    /// The job in flight came back with its batch written.
    pub fn written(&mut self, partial: Box<Partial>) {
        self.in_job = None;
        self.home = Home::Here(partial);
    }

    /// Give up on the upload: the `Partial` to drop off the loop thread, if it is here
    /// (one in a job is dropped when the job's result finds no one waiting).
    pub fn abandon(self) -> Option<Box<Partial>> {
        match self.home {
            Home::Here(partial) => Some(partial),
            Home::Unborn(_) | Home::Away => None,
        }
    }
}

/// Room reserved for a new batch: the service's pause limit for a pending batch (1 MiB)
/// plus one read, so that a batch is rarely reallocated.
const BATCH_HINT: usize = (1024 + 64) * 1024;
/// Batches this small (small files) take a fresh buffer, and leave the spares to big ones.
const SMALL: usize = 64 * 1024;

/// Whether an emptied batch buffer of this capacity is worth keeping for another batch.
pub fn reusable(capacity: usize) -> bool {
    capacity > SMALL
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch upload directory, removed when dropped.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path =
                std::env::temp_dir().join(format!("netloop-writer-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Dir(path)
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .expect("read dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Run jobs the way the pool does, one at a time, feeding results back.
    fn run_next(writer: &mut Writer, store: &Store) -> Option<Outcome> {
        let job = writer.next_job(store, Token(0), 1)?;
        let done = job.run();
        assert_eq!(done.owner.upload, writer.id);
        if let Outcome::Written(partial) = done.outcome {
            writer.written(partial);
            return None;
        }
        Some(done.outcome)
    }

    #[test]
    fn batches_are_written_in_order_then_finished() {
        let dir = Dir::new("order");
        let mut store = Store::open(&dir.0).expect("open store");
        let mut w = Writer::new(7, "f.bin".into(), 9, store.temp_path());
        w.push(b"abc", &mut Vec::new());
        assert!(run_next(&mut w, &store).is_none()); // creates, writes "abc"
        assert!(w.next_job(&store, Token(0), 1).is_none(), "nothing pending");
        w.push(b"def", &mut Vec::new());
        let job = w.next_job(&store, Token(0), 1).expect("second batch");
        // While a job is out, more bytes wait: no second job for the same upload.
        w.push(b"ghi", &mut Vec::new());
        w.set_last();
        assert!(w.busy() && w.next_job(&store, Token(0), 1).is_none());
        assert_eq!(w.buffered(), 6);
        match job.run().outcome {
            Outcome::Written(partial) => w.written(partial),
            other => panic!("{other:?}"),
        }
        let Some(Outcome::Stored(stored)) = run_next(&mut w, &store) else {
            panic!("not stored");
        };
        assert_eq!((stored.name.as_str(), stored.bytes), ("f.bin", 9));
        assert_eq!(
            std::fs::read(dir.0.join("f.bin")).expect("read"),
            b"abcdefghi"
        );
        assert_eq!(dir.names(), vec!["f.bin"], "no temporary file left");
    }

    #[test]
    fn an_abandoned_or_failed_upload_leaves_nothing() {
        let dir = Dir::new("abandon");
        let mut store = Store::open(&dir.0).expect("open store");
        let mut w = Writer::new(1, "a.bin".into(), 10, store.temp_path());
        w.push(b"half", &mut Vec::new());
        assert!(run_next(&mut w, &store).is_none());
        assert_eq!(dir.names().len(), 1, "a temporary file while receiving");
        let partial = w.abandon().expect("the file is home between jobs");
        discard_job(
            Owner {
                token: Token(0),
                conn: 1,
                upload: 1,
            },
            partial,
        )();
        assert!(dir.names().is_empty());

        // A job that fails (its temporary path's directory is gone) reports it.
        let mut w = Writer::new(2, "b.bin".into(), 1, dir.0.join("missing/x.part"));
        w.push(b"x", &mut Vec::new());
        w.set_last();
        assert!(matches!(run_next(&mut w, &store), Some(Outcome::Failed(_))));
        assert!(dir.names().is_empty());
    }
}
