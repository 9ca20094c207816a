//! The writer thread's side of the output: every body byte and result line of a run is
//! written here, on one helper thread, never on the loop thread.
//!
//! Why a thread: writing to standard output blocks for as long as whoever reads our
//! stdout pipe does not read (`netloop fetch URL | (sleep 5; cat)`), and a blocked loop
//! thread stalls every transfer, timer and deadline of the run — what curl does. A
//! file on a slow or full disk blocks the same way. So the loop hands each piece of
//! output to an `offload::Pool` with **one** thread: its jobs run in the order they were
//! submitted, which keeps a body's bytes in order and a head before its body, and the
//! result of each job comes back to the loop through its waker (`on_wake`).
//!
//! A job is a `Job` value run against the `Desk`, the writer thread's own state: the
//! files it has open (by transfer), the names taken in the output directory, and which
//! transfers' output failed. Only the writer thread touches the desk (the mutex around
//! it is never contended: it is how the state travels with the jobs), so naming and
//! creating a file, writing it and removing a partial one all happen on that thread. What
//! comes back (`Written`) says how many bytes left the process, or why they could not.
//!
//! The bound on what may wait for this thread, and pausing the transfers that feed it,
//! are the loop side's business (`output.rs`, `delivery.rs`).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use url::Url;

/// Which transfer a piece of output belongs to: its slot in the fetcher's slab (`id`,
/// reused once the transfer is over) and its number in the run (`serial`, never reused),
/// so an answer arriving after the transfer ended is never taken for another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The transfer's key in `Fetcher::transfers`.
    pub id: usize,
    /// The URL's position in the run's list: unique for the whole run.
    pub serial: u64,
}

/// Where a transfer's body goes, as the loop side knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sink {
    /// Not opened yet (before the final response's head), or bodies are discarded.
    #[default]
    None,
    /// Standard output.
    Stdout,
    /// Its own file in the output directory (opened by the writer thread).
    File,
}

/// One piece of work for the writer thread.
pub enum Job {
    /// Create transfer `key`'s file in the output directory, named after `url`.
    Open {
        /// The transfer.
        key: Key,
        /// The URL as requested (names the file).
        url: Url,
    },
    /// Append bytes (a body piece, or an `--include` head) to the transfer's sink.
    Write {
        /// The transfer.
        key: Key,
        /// Where they go.
        sink: Sink,
        /// The bytes (a copy: the loop's read buffer is reused at once).
        bytes: Vec<u8>,
    },
    /// The transfer is over (`ok`: complete): close its file, or remove a partial one.
    Finish {
        /// The transfer.
        key: Key,
        /// Where its body went.
        sink: Sink,
        /// The transfer succeeded (as far as the network goes).
        ok: bool,
    },
    /// Result lines (each with its newline), to stdout or stderr: one turn's worth.
    Lines {
        /// The lines.
        text: String,
        /// Stderr (when stdout carries the body) instead of stdout.
        to_stderr: bool,
        /// The progress bar to clear while printing, when both share the terminal.
        bar: Option<ProgressBar>,
        /// How many of them report a success (a line nobody can read is a failure).
        succeeded: usize,
    },
}

/// What the writer thread reports back for each job.
#[derive(Debug)]
pub enum Written {
    /// `bytes` of transfer `key`'s output were written (`Open`: 0), or it failed.
    Body {
        /// The transfer.
        key: Key,
        /// Bytes the job was given (all written, unless `error`).
        bytes: usize,
        /// Why the output failed, naming the file or stdout; None if it worked.
        error: Option<String>,
    },
    /// Transfer `key`'s output is complete: the file kept (or None), or the error that
    /// spoiled it (its partial file is gone).
    Finished {
        /// The transfer.
        key: Key,
        /// The saved file, or why the output is not complete.
        outcome: Result<Option<PathBuf>, String>,
    },
    /// Result lines were printed, or could not be.
    Lines {
        /// How many of them reported a success.
        succeeded: usize,
        /// Why they could not be printed.
        error: Option<String>,
    },
}

/// The writer thread's own state.
#[derive(Debug, Default)]
pub struct Desk {
    /// The output directory (`-o DIR`), if bodies go to files.
    dir: Option<PathBuf>,
    /// Names handed out in this run (a name is taken even if its file was removed).
    taken: HashSet<String>,
    /// Open files, by transfer serial.
    files: HashMap<u64, (File, PathBuf)>,
    /// Transfers whose output failed, with the message, until they finish.
    failed: HashMap<u64, String>,
}

impl Desk {
    /// A desk writing files into `dir` (if given).
    pub fn new(dir: Option<PathBuf>) -> Desk {
        Desk {
            dir,
            ..Desk::default()
        }
    }

    /// Do one job.
    pub fn run(&mut self, job: Job) -> Written {
        match job {
            Job::Open { key, url } => {
                let error = self.open(key.serial, &url).err();
                if let Some(e) = &error {
                    self.failed.insert(key.serial, e.clone());
                }
                Written::Body {
                    key,
                    bytes: 0,
                    error,
                }
            }
            Job::Write { key, sink, bytes } => Written::Body {
                key,
                bytes: bytes.len(),
                error: self.write(key.serial, sink, &bytes).err(),
            },
            Job::Finish { key, sink, ok } => Written::Finished {
                key,
                outcome: self.finish(key.serial, sink, ok),
            },
            Job::Lines {
                text,
                to_stderr,
                bar,
                succeeded,
            } => {
                let print = || match to_stderr {
                    true => io::stderr().lock().write_all(text.as_bytes()),
                    false => {
                        let mut out = io::stdout().lock();
                        out.write_all(text.as_bytes()).and_then(|()| out.flush())
                    }
                };
                let printed = match bar {
                    Some(bar) => bar.suspend(print),
                    None => print(),
                };
                let error = printed.err().map(|e| {
                    let stream = if to_stderr { "stderr" } else { "stdout" };
                    format!("printing results to {stream}: {e}")
                });
                Written::Lines { succeeded, error }
            }
        }
    }

    /// Create a file for `serial` in the directory, under a name not used before.
    fn open(&mut self, serial: u64, url: &Url) -> Result<(), String> {
        let Some(dir) = self.dir.clone() else {
            return Err("output: no directory to save to".into());
        };
        let (stem, ext) = split_name(&file_name(url));
        for n in 0u32.. {
            let name = match n {
                0 => format!("{stem}{ext}"),
                n => format!("{stem}-{n}{ext}"),
            };
            if self.taken.contains(&name) {
                continue;
            }
            let path = dir.join(&name);
            // `create_new`: nothing already in the directory is ever overwritten.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    self.taken.insert(name);
                    self.files.insert(serial, (file, path));
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.taken.insert(name);
                }
                Err(e) => {
                    return Err(format!("output: cannot create {}: {e}", path.display()));
                }
            }
        }
        Err("output: no free file name".into())
    }

    /// Write `bytes` for `serial`; after a failure its later bytes are dropped (the first
    /// error is the one reported).
    fn write(&mut self, serial: u64, sink: Sink, bytes: &[u8]) -> Result<(), String> {
        if let Some(e) = self.failed.get(&serial) {
            return Err(e.clone());
        }
        let written = match sink {
            Sink::None => Ok(()),
            Sink::Stdout => {
                // Flushed at once: "written" must mean it left the process.
                let mut out = io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("output: writing to stdout: {e}"))
            }
            Sink::File => match self.files.get_mut(&serial) {
                Some((file, path)) => file
                    .write_all(bytes)
                    .map_err(|e| format!("output: writing {}: {e}", path.display())),
                None => Err("output: the file was never opened".into()),
            },
        };
        if let Err(e) = &written {
            self.failed.insert(serial, e.clone());
        }
        written
    }

    /// The transfer is over: keep a complete file, remove a partial one.
    fn finish(&mut self, serial: u64, sink: Sink, ok: bool) -> Result<Option<PathBuf>, String> {
        let failed = self.failed.remove(&serial);
        let file = self.files.remove(&serial);
        if let Some((file, path)) = file {
            // `File` has no user-space buffer: every byte was handed to the kernel by
            // `write_all`. Closing it cannot lose data that `write` accepted.
            drop(file);
            if ok && failed.is_none() {
                return Ok(Some(path));
            }
            remove_partial(&path);
        }
        match failed {
            Some(e) => Err(e),
            None if sink == Sink::File && ok => Err("output: the file was never opened".into()),
            None => Ok(None),
        }
    }
}

/// Remove a partial file: a file in the output directory is always a complete body.
fn remove_partial(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        log::warn!("output: cannot remove the partial {}: {e}", path.display());
    }
}

/// Longest name made from a URL (file systems allow 255 bytes; leave room for `-N`).
const MAX_NAME: usize = 120;

/// A safe file name from the last segment of the URL's path: `/a/b/page.html` →
/// `page.html`, `/` → `index.html`; only `[A-Za-z0-9._-]`, never a leading dot, so no
/// name can reach outside the directory (no `/`, no `..`) or hide.
pub fn file_name(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    let mut name: String = last
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .take(MAX_NAME)
        .collect();
    // No hidden files, and never "." or "..": a leading dot becomes '_'.
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    if name.is_empty() {
        name = "index.html".into();
    }
    name
}

/// `page.html` → (`page`, `.html`); `README` → (`README`, ``).
fn split_name(name: &str) -> (String, String) {
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        let name = |u: &str| file_name(&Url::parse(u).unwrap());
        assert_eq!(name("http://h/a/b/page.html?x=1"), "page.html");
        assert_eq!(name("http://h/"), "index.html");
        assert_eq!(name("http://h/a/"), "index.html");
        // The URL parser already drops dot segments, encoded or not.
        assert_eq!(name("http://h/%2e%2e"), "index.html");
        assert_eq!(
            name("http://h/..%2f..%2fetc%2fpasswd"),
            "_._2f.._2fetc_2fpasswd"
        );
        assert_eq!(name("http://h/.hidden"), "_hidden");
    }

    #[test]
    fn files_are_unique_and_partial_ones_removed() {
        let dir = std::env::temp_dir().join(format!("netloop-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut desk = Desk::new(Some(dir.clone()));
        let url = Url::parse("http://h/x/page.html").unwrap();
        let mut kept = Vec::new();
        for serial in 0..3 {
            let key = Key { id: 0, serial };
            assert!(matches!(
                desk.run(Job::Open {
                    key,
                    url: url.clone()
                }),
                Written::Body { error: None, .. }
            ));
            let bytes = b"body".to_vec();
            desk.run(Job::Write {
                key,
                sink: Sink::File,
                bytes,
            });
            // The second transfer fails: its file must go.
            match desk.run(Job::Finish {
                key,
                sink: Sink::File,
                ok: serial != 1,
            }) {
                Written::Finished {
                    outcome: Ok(Some(path)),
                    ..
                } => kept.push(path),
                Written::Finished {
                    outcome: Ok(None), ..
                } => assert_eq!(serial, 1),
                other => panic!("{other:?}"),
            }
        }
        let names: Vec<_> = kept.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["page.html", "page-2.html"]);
        assert!(kept.iter().all(|p| p.parent() == Some(dir.as_path())));
        assert!(!dir.join("page-1.html").exists(), "partial file removed");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"body");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
