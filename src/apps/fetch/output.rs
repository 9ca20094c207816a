//! Where response bodies go: standard output, one file per URL, or nowhere.
//!
//! Bodies are written **as they arrive**, one chunk per read, and never collected: the
//! loop's backpressure is about outbound bytes (it stops reading a peer whose replies
//! pile up), and a fetcher's inbound bytes need no queue if each chunk goes straight
//! from the loop's read buffer to its file. Memory stays flat whatever the body size.
//!
//! With `-o DIR`, each body gets its own file named from the last segment of the URL
//! path as requested (`/a/b/page.html` → `page.html`, `/` → `index.html`), reduced to
//! safe characters so no name can reach outside DIR (no `/`, no `..`), and made unique:
//! `page.html`, `page-1.html`, ... A file is created with `create_new`, so nothing already
//! in DIR is overwritten. A transfer that fails after its file was created has the
//! partial file removed: a file in DIR is always a complete body.
//!
//! Writes to a file or to stdout are ordinary blocking writes on the loop thread: disk
//! writes go to the page cache and return at once. A reader of our stdout that stops
//! reading would stall the loop, as it stalls curl.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use url::Url;

/// Where bodies go for the whole run.
#[derive(Clone, Debug)]
pub enum Destination {
    /// One URL, body to stdout (like curl); `include` adds status line and headers.
    Stdout {
        /// Print each response's header section before its body.
        include: bool,
    },
    /// Each body to its own file in this directory.
    Dir(PathBuf),
    /// Bodies are read and dropped (several URLs without `-o`).
    Discard,
}

/// Hands out a sink per transfer, and unique names in the output directory.
#[derive(Debug)]
pub struct Output {
    /// Where bodies go.
    pub destination: Destination,
    /// Names handed out in this run (a name is taken even before its file is written).
    taken: HashSet<String>,
}

/// One transfer's body destination.
#[derive(Debug, Default)]
pub enum Sink {
    /// Not opened yet (before the final response's head), or bodies are discarded.
    #[default]
    None,
    /// Standard output.
    Stdout,
    /// A file in the output directory.
    File(File, PathBuf),
}

impl Output {
    /// Output to `destination`; makes the directory if needed.
    pub fn new(destination: Destination) -> io::Result<Output> {
        if let Destination::Dir(dir) = &destination {
            std::fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("-o {}: {e}", dir.display())))?;
        }
        Ok(Output {
            destination,
            taken: HashSet::new(),
        })
    }

    /// True when response heads are printed before bodies (`--include`).
    pub fn include_heads(&self) -> bool {
        matches!(self.destination, Destination::Stdout { include: true })
    }

    /// The sink for a transfer's final response, named after the URL as requested.
    pub fn open(&mut self, requested: &Url) -> io::Result<Sink> {
        let dir = match &self.destination {
            Destination::Stdout { .. } => return Ok(Sink::Stdout),
            Destination::Discard => return Ok(Sink::None),
            Destination::Dir(dir) => dir.clone(),
        };
        let (stem, ext) = split_name(&file_name(requested));
        for n in 0u32.. {
            let name = match n {
                0 => format!("{stem}{ext}"),
                n => format!("{stem}-{n}{ext}"),
            };
            if self.taken.contains(&name) {
                continue;
            }
            let path = dir.join(&name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    self.taken.insert(name);
                    return Ok(Sink::File(file, path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.taken.insert(name);
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("output: cannot create {}: {e}", path.display()),
                    ))
                }
            }
        }
        Err(io::Error::other("output: no free file name"))
    }
}

impl Sink {
    /// Write body bytes as they arrive.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::None => Ok(()),
            Sink::Stdout => io::stdout()
                .lock()
                .write_all(bytes)
                .map_err(|e| io::Error::new(e.kind(), format!("output: writing to stdout: {e}"))),
            Sink::File(file, path) => file.write_all(bytes).map_err(|e| {
                io::Error::new(e.kind(), format!("output: writing {}: {e}", path.display()))
            }),
        }
    }

    /// The transfer is over: on success, the file's path (if any); on failure, remove
    /// the partial file. A failed final flush (stdout) or write-out (file) is an error:
    /// the body did not all arrive where it was meant to go.
    pub fn finish(self, ok: bool) -> Result<Option<PathBuf>, String> {
        match self {
            Sink::None => Ok(None),
            Sink::Stdout => io::stdout()
                .lock()
                .flush()
                .map(|()| None)
                .map_err(|e| format!("output: writing to stdout: {e}")),
            Sink::File(mut file, path) => {
                // `File` has no user-space buffer; `flush` is a no-op kept for symmetry.
                let flushed = file.flush();
                drop(file);
                match flushed {
                    Ok(()) if ok => Ok(Some(path)),
                    Ok(()) => {
                        let _ = std::fs::remove_file(&path);
                        Ok(None)
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        Err(format!("output: writing {}: {e}", path.display()))
                    }
                }
            }
        }
    }
}

/// Longest name made from a URL (file systems allow 255 bytes; leave room for `-N`).
const MAX_NAME: usize = 120;

/// A safe file name from the last segment of the URL's path.
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
    use std::path::Path;

    /// True if `path` is directly inside `dir` (what every name made here satisfies).
    fn is_inside(dir: &Path, path: &Path) -> bool {
        path.parent() == Some(dir)
    }

    #[test]
    fn names_are_safe_and_unique() {
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

        let dir = std::env::temp_dir().join(format!("netloop-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut out = Output::new(Destination::Dir(dir.clone())).unwrap();
        let url = Url::parse("http://h/x/page.html").unwrap();
        let mut paths = Vec::new();
        for _ in 0..3 {
            match out.open(&url).unwrap() {
                Sink::File(_, path) => paths.push(path),
                other => panic!("{other:?}"),
            }
        }
        let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["page.html", "page-1.html", "page-2.html"]);
        assert!(paths.iter().all(|p| is_inside(&dir, p)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
