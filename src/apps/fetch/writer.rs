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
//! files it has open (by transfer), the names taken in the output directory
//! (`naming.rs`: unique in O(1), written under a temporary name and renamed when
//! complete), and which transfers' output failed. Only the writer thread touches the desk (the mutex around
//! it is never contended: it is how the state travels with the jobs), so naming and
//! creating a file, writing it and removing a partial one all happen on that thread. What
//! comes back (`Written`) says how many bytes left the process, or why they could not.
//!
//! The bound on what may wait for this thread, and pausing the transfers that feed it,
//! are the loop side's business (`output.rs`, `delivery.rs`).

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use url::Url;

use super::naming::{Names, Pending};

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
    /// Names and temporary files in the output directory (`-o DIR`), if bodies go to
    /// files (`naming.rs`).
    names: Option<Names>,
    /// Bodies being written, by transfer serial.
    files: HashMap<u64, Pending>,
    /// Transfers whose output failed, with the message, until they finish.
    failed: HashMap<u64, String>,
}

impl Desk {
    /// A desk writing files into `dir` (if given).
    pub fn new(dir: Option<PathBuf>) -> Desk {
        Desk {
            names: dir.map(Names::new),
            ..Desk::default()
        }
    }

    /// The temporary files that exist now (for a last-moment cleanup, `naming.rs`).
    pub fn temps(&self) -> Arc<Mutex<HashSet<PathBuf>>> {
        self.names.as_ref().map(Names::temps).unwrap_or_default()
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

    /// Create the (temporary) file for `serial`'s body, named after `url`.
    fn open(&mut self, serial: u64, url: &Url) -> Result<(), String> {
        let Some(names) = self.names.as_mut() else {
            return Err("output: no directory to save to".into());
        };
        let pending = names.create(url)?;
        self.files.insert(serial, pending);
        Ok(())
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
                Some(p) => p
                    .file
                    .write_all(bytes)
                    .map_err(|e| format!("output: writing {}: {e}", p.target.display())),
                None => Err("output: the file was never opened".into()),
            },
        };
        if let Err(e) = &written {
            self.failed.insert(serial, e.clone());
        }
        written
    }

    /// The transfer is over: give a complete body its name, remove a partial one.
    fn finish(&mut self, serial: u64, sink: Sink, ok: bool) -> Result<Option<PathBuf>, String> {
        let failed = self.failed.remove(&serial);
        if let (Some(pending), Some(names)) = (self.files.remove(&serial), self.names.as_mut()) {
            if ok && failed.is_none() {
                return names.publish(pending).map(Some);
            }
            names.discard(pending);
        }
        match failed {
            Some(e) => Err(e),
            None if sink == Sink::File && ok => Err("output: the file was never opened".into()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, 2, "no temporary file left behind");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"body");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
