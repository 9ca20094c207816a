//! The upload directory: file-name rules, temporary files, and putting files in place.
//!
//! An upload's bytes go to a temporary file in the target directory as they arrive
//! (never collected in memory), named `.netloop-upload-<pid>-<n>.part`. Only when the
//! last byte is written is the file flushed to disk (`fsync`) and given its real name,
//! with `link(2)`, which is atomic and **never replaces** an existing file: if the name is
//! taken, the next free `name (1).ext`, `name (2).ext`, ... is used instead, and the reply
//! says which (shortened if need be to fit 255 bytes, see [`numbered_name`], so a name
//! accepted at the header is never refused after its body; where to start looking is
//! remembered per name, so the n-th copy does not cost n failed `link` calls). So a reader of the directory sees a stored file whole or not at all, a
//! client that vanishes mid-file leaves nothing (dropping a [`Partial`] removes its
//! temporary file), and nobody's file is silently overwritten.
//!
//! Everything here is ordinary **blocking** file I/O. A regular file is always "ready" to
//! epoll, so readiness cannot help, and an `fsync` can take tens of milliseconds. So the
//! upload service calls none of it from the loop thread: naming a temporary file
//! ([`Store::temp_path`]) is the only thing it does there; creating, writing, hashing,
//! finishing and removing files run as jobs on its offload pool (`writer.rs`). That is
//! why [`Store`] is cheap to clone (a job carries its own copy) and a [`Partial`] is
//! `Send`: it travels to a helper thread with each job and comes back with the result.
//! The blocking [`Store::begin`] is kept for the `upload_server` example, which mirrors a
//! seed that writes in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};
use sha2::{Digest, Sha256};

use super::names::NextCopy;
pub use super::names::{check_file_name, numbered_name, MAX_NAME_BYTES};

/// Names of temporary files start with this; clients may not use it.
pub const TEMP_PREFIX: &str = ".netloop-upload-";
/// The highest `name (n).ext` number tried before giving up.
const MAX_COPIES: u32 = 10_000;
/// Buffer between the socket reads (often small) and the file.
const WRITE_BUFFER: usize = 64 * 1024;
/// Ask the kernel to start writing a file's pages to disk every this many bytes (see
/// [`Partial::write`]).
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// A file being received: its temporary file, and the running count and hash.
#[derive(Debug)]
pub struct Partial {
    file: BufWriter<File>,
    /// The temporary path; `None` once the file has been put in place.
    temp: Option<PathBuf>,
    /// The name the client asked for (already checked).
    pub name: String,
    /// The size announced in the header.
    pub size: u64,
    /// Bytes written so far.
    pub written: u64,
    /// Bytes whose write-back to disk has been started (`start_writeback`).
    flushed: u64,
    hasher: Sha256,
}

impl Partial {
    /// Create the temporary file `temp` (a name from [`Store::temp_path`]) for an upload
    /// of `name`, `size` bytes. Blocking: call it off the loop thread.
    pub fn create(temp: PathBuf, name: &str, size: u64) -> io::Result<Partial> {
        // create_new: never follow or reuse something already at that path.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", temp.display())))?;
        Ok(Partial {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            temp: Some(temp),
            name: name.to_string(),
            size,
            written: 0,
            flushed: 0,
            hasher: Sha256::new(),
        })
    }

    /// Append body bytes (and hash them). Blocking.
    ///
    /// Every `WRITEBACK_EVERY` bytes the kernel is asked to *start* writing what is
    /// there to disk, without waiting for it. Left alone, it would hold a whole large
    /// upload in dirty pages and write them all during the final `fsync`, after the
    /// last byte arrived: the disk would idle while the network works, then the other
    /// way round. Started early, the disk writes while the next bytes arrive, and the
    /// `fsync` finds little left to do. (That is the one way a receiver can beat
    /// `cat` followed by `sync`, which writes everything at the end.)
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        if self.written - self.flushed >= WRITEBACK_EVERY {
            self.file.flush()?;
            start_writeback(
                self.file.get_ref(),
                self.flushed,
                self.written - self.flushed,
            );
            self.flushed = self.written;
        }
        Ok(())
    }
}

/// Start writing `len` bytes of `file` from `offset` to disk, not waiting for it
/// (Linux's `sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a hint for speed: the
/// `fsync` in `Store::finish` is what makes the data durable, so a failure here is
/// ignored, and other systems skip it.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: a plain system call on a descriptor this `File` owns; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

impl Drop for Partial {
    /// An upload that did not finish leaves nothing behind.
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            if let Err(e) = fs::remove_file(&temp) {
                warn!("removing {}: {e}", temp.display());
            }
        }
    }
}

/// A file now in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The name it was stored under.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
    /// `link` calls it took to find a free name (1 when the name was free; with the
    /// per-name hint, 2 for most copies however many exist).
    pub links: u32,
}

/// The upload directory. Cloning is cheap (the path and a shared handle), so each job
/// on a helper thread carries its own.
#[derive(Debug, Clone)]
pub struct Store {
    dir: Arc<Path>,
    /// Kept open to `fsync` the directory after each new name (so the name survives a
    /// crash, not only the data).
    dir_handle: Arc<File>,
    /// Counter for temporary names (with the pid, unique among live servers). Only the
    /// loop thread names files; a clone's counter is never used.
    next: u64,
    /// Where to look for the next free numbered copy of each duplicated name.
    copies: Arc<std::sync::Mutex<NextCopy>>,
}

impl Store {
    /// Open (creating if needed) the upload directory, and remove temporary files left
    /// by servers that died mid-upload.
    pub fn open(dir: &Path) -> io::Result<Store> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        fs::create_dir_all(dir).map_err(context)?;
        let dir_handle = File::open(dir).map_err(context)?;
        if !dir_handle.metadata().map_err(context)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let store = Store {
            dir: Arc::from(dir),
            dir_handle: Arc::new(dir_handle),
            next: 0,
            copies: Arc::default(),
        };
        store.remove_stale_temps();
        Ok(store)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remove `.netloop-upload-<pid>-*.part` files whose server process is gone
    /// (a `kill -9` mid-upload); files of live servers sharing the directory stay.
    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => warn!("removing stale {}: {e}", entry.path().display()),
            }
        }
        if removed > 0 {
            info!(
                "{}: removed {removed} temporary files left by a dead server",
                self.dir.display()
            );
        }
    }

    /// A fresh temporary path in the directory (no I/O: the loop thread may call it).
    pub fn temp_path(&mut self) -> PathBuf {
        self.next += 1;
        let temp_name = format!("{TEMP_PREFIX}{}-{}.part", std::process::id(), self.next);
        self.dir.join(temp_name)
    }

    /// Start receiving `name` (already checked with `check_file_name`): `temp_path`
    /// and `Partial::create` in one blocking call.
    pub fn begin(&mut self, name: &str, size: u64) -> io::Result<Partial> {
        let temp = self.temp_path();
        Partial::create(temp, name, size)
    }

    /// The last byte is in: flush, `fsync`, and give the file its name (or the first
    /// free numbered alternative), then `fsync` the directory. On error the temporary
    /// file is removed. Blocking: the slowest call of an upload.
    pub fn finish(&self, mut partial: Partial) -> io::Result<Stored> {
        let temp = partial.temp.clone().unwrap_or_default();
        let context = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", temp.display()))
        };
        partial.file.flush().map_err(|e| context("writing", e))?;
        partial
            .file
            .get_ref()
            .sync_all()
            .map_err(|e| context("fsync", e))?;
        let (name, links) = self.link_free_name(&temp, &partial.name)?;
        // The file is in place; the temporary name is now just a second link.
        partial.temp = None;
        if let Err(e) = fs::remove_file(&temp) {
            warn!("removing {}: {e}", temp.display());
        }
        if let Err(e) = self.dir_handle.sync_all() {
            warn!("fsync {}: {e}", self.dir.display());
        }
        let digest = std::mem::take(&mut partial.hasher).finalize();
        Ok(Stored {
            name,
            bytes: partial.written,
            sha256: hex(&digest),
            links,
        })
    }

    /// Link `temp` into place as `name` or, if taken, the first free numbered copy from
    /// the per-name hint on. Returns the name used and the `link` calls it took.
    fn link_free_name(&self, temp: &Path, name: &str) -> io::Result<(String, u32)> {
        let mut n = 0;
        let mut links = 0;
        loop {
            let candidate = numbered_name(name, n);
            let target = self.dir.join(&candidate);
            links += 1;
            // link(2) fails with EEXIST instead of replacing: two uploads of one name,
            // even from two server processes, can never overwrite each other.
            match fs::hard_link(temp, &target) {
                Ok(()) => {
                    if n > 0 {
                        self.copies_lock().set(name, n + 1);
                    }
                    return Ok((candidate, links));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < MAX_COPIES => {
                    // The name itself is tried first (it may have been removed since);
                    // then the numbers, from where the last copy was put.
                    n = if n == 0 {
                        self.copies_lock().get(name)
                    } else {
                        n + 1
                    };
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("naming {}: {e}", target.display()),
                    ))
                }
            }
        }
    }

    fn copies_lock(&self) -> std::sync::MutexGuard<'_, NextCopy> {
        // A thread that panicked holding the lock left a valid map: it is only a hint.
        self.copies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_starts_every_few_mib_and_the_file_is_whole() {
        let dir = std::env::temp_dir().join(format!("netloop-store-wb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).expect("open");
        let batch: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut partial = store
            .begin("big.bin", 20 * batch.len() as u64)
            .expect("begin");
        let mut started = Vec::new();
        for _ in 0..20 {
            partial.write(&batch).expect("write");
            started.push(partial.flushed);
        }
        // Write-back was started at 8 and 16 MiB; the last 4 MiB are left to the fsync.
        let mib = 1024 * 1024;
        assert_eq!(started[7], 8 * mib);
        assert_eq!(started[19], 16 * mib);
        let stored = store.finish(partial).expect("finish");
        assert_eq!(stored.bytes, 20 * mib);
        let data = fs::read(dir.join("big.bin")).expect("read");
        assert!(data.chunks(batch.len()).all(|c| c == batch.as_slice()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn duplicates_cost_a_constant_number_of_links() {
        let dir = std::env::temp_dir().join(format!("netloop-store-dups-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).expect("open");
        let mut names = Vec::new();
        let mut most_links = 0;
        for i in 0..300u32 {
            let mut partial = store.begin("x.bin", 1).expect("begin");
            partial.write(&[i as u8]).expect("write");
            let stored = store.finish(partial).expect("finish");
            most_links = most_links.max(stored.links);
            names.push(stored.name);
        }
        assert_eq!(names[0], "x.bin");
        assert_eq!(names[299], "x (299).bin");
        assert!(most_links <= 2, "a copy took {most_links} links");
        // A copy removed is not reused (the hint moves on), and nothing is overwritten:
        // a name taken behind the hint's back costs one more try.
        fs::remove_file(dir.join("x (5).bin")).expect("remove");
        fs::write(dir.join("x (300).bin"), b"someone else's").expect("write");
        let partial = store.begin("x.bin", 0).expect("begin");
        let stored = store.finish(partial).expect("finish");
        assert_eq!((stored.name.as_str(), stored.links), ("x (301).bin", 3));
        assert_eq!(
            fs::read(dir.join("x (300).bin")).expect("read"),
            b"someone else's"
        );
        let left = fs::read_dir(&dir).expect("read dir").count();
        assert_eq!(left, 301, "300 copies + the stranger's, no temporary file");
        let _ = fs::remove_dir_all(&dir);
    }
}
