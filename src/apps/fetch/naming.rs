//! Output file names for `-o DIR`: safe, unique in constant time, and never seen
//! half-written.
//!
//! A body's file is named from the last segment of the URL path as requested
//! (`/a/b/page.html` → `page.html`), reduced to `[A-Za-z0-9._-]` with no leading dot, so
//! no name reaches outside the directory or hides. Names are unique within the run and
//! never overwrite a file already in the directory: `page.html`, `page-1.html`, ...
//!
//! **Constant time per file.** Trying `page.html`, `page-1.html`, `page-2.html`, ... from
//! the start for each new file costs O(n) tries for the n-th file of one name, so 10,000
//! URLs ending in `/index.html` cost 50 million tries (issue 11: 10 s against 0.7 s for
//! distinct names, 43 s for 20,000). `Names` remembers, per base name, the next number
//! to try: every number is tried at most once per base name, so the whole run does O(n)
//! tries in all.
//!
//! **Temporary name, then rename.** The body is written to a hidden temporary file
//! (`.page.html.<pid>.part`) and only given its name once complete, so a file under a
//! final name is always a whole body — even if the process is killed (a second Ctrl-C, or
//! `kill -9`), when only a hidden `.part` file can be left behind. The final name is
//! taken with `link(2)` + `unlink(2)` rather than `rename(2)`: a link fails with `EEXIST`
//! if something appeared under that name meanwhile (another program writing into the
//! same directory), where a rename would silently replace it. On a file system without
//! hard links, a rename after checking the name is free is the fallback.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use url::Url;

/// Longest name made from a URL (file systems allow 255 bytes; leave room for `-N` and
/// the temporary name's prefix and suffix).
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
fn split_name(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// A body being written: its open temporary file, and the name it will get.
#[derive(Debug)]
pub struct Pending {
    /// The temporary file, open for writing.
    pub file: File,
    /// Where it is being written (hidden).
    pub temp: PathBuf,
    /// The name it gets when complete.
    pub target: PathBuf,
    /// The base name it was made from (to pick another if `target` is taken by then).
    base: String,
}

/// The names of one output directory in one run.
#[derive(Debug)]
pub struct Names {
    dir: PathBuf,
    /// Names handed out in this run (kept even when the body failed and its file is gone,
    /// so a name always means one URL).
    taken: HashSet<String>,
    /// Per base name, the next number to try: what makes naming O(1) per file.
    next: HashMap<String, u32>,
    /// The temporary files that exist now, shared with the loop thread, which removes
    /// them itself when a second signal ends the process at once (`interrupt.rs`): the
    /// writer thread may be blocked then. Locked only around creating a file, an
    /// insert or a remove.
    temps: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Names {
    /// Names in `dir`.
    pub fn new(dir: PathBuf) -> Names {
        Names {
            dir,
            taken: HashSet::new(),
            next: HashMap::new(),
            temps: Arc::default(),
        }
    }

    /// The set of temporary files that exist now (see `temps`).
    pub fn temps(&self) -> Arc<Mutex<HashSet<PathBuf>>> {
        Arc::clone(&self.temps)
    }

    /// `temp` is gone: no longer a file to clean up.
    fn forget(&self, temp: &Path) {
        let mut temps = self.temps.lock().unwrap_or_else(PoisonError::into_inner);
        temps.remove(temp);
    }

    /// The next free name for `base` (`page.html`, `page-1.html`, ...): not handed out
    /// in this run and not in the directory. Each number is tried once per base name.
    fn claim(&mut self, base: &str) -> Result<PathBuf, String> {
        let (stem, ext) = split_name(base);
        let start = self.next.get(base).copied().unwrap_or(0);
        for n in start..=u32::MAX - 1 {
            let name = match n {
                0 => base.to_string(),
                n => format!("{stem}-{n}{ext}"),
            };
            if self.taken.contains(&name) {
                continue;
            }
            // Taken either way: by us now, or by whatever is already there.
            self.taken.insert(name.clone());
            let path = self.dir.join(&name);
            if std::fs::symlink_metadata(&path).is_err() {
                self.next.insert(base.to_string(), n + 1);
                return Ok(path);
            }
        }
        Err(format!("output: no free file name for {base}"))
    }

    /// Start a body for `url`: claim its name and create its temporary file.
    pub fn create(&mut self, url: &Url) -> Result<Pending, String> {
        let base = file_name(url);
        loop {
            let target = self.claim(&base)?;
            let temp = temp_path(&target);
            // Created and listed under one lock, so a last-moment cleanup on the loop
            // thread either waits for both or sees neither (never a file it missed).
            let mut temps = self.temps.lock().unwrap_or_else(PoisonError::into_inner);
            // `create_new`: never opens what is already there (a leftover of a killed run
            // with the same process id: then take the next name).
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    temps.insert(temp.clone());
                    return Ok(Pending {
                        file,
                        temp,
                        target,
                        base,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("output: cannot create {}: {e}", temp.display())),
            }
        }
    }

    /// The body is complete: give it its name (another one if that was taken meanwhile);
    /// returns the name. The temporary file is gone afterwards either way.
    pub fn publish(&mut self, pending: Pending) -> Result<PathBuf, String> {
        let Pending {
            file,
            temp,
            mut target,
            base,
        } = pending;
        // `File` has no user-space buffer: every byte was handed to the kernel by
        // `write_all`. Closing it cannot lose data that `write` accepted.
        drop(file);
        let published = loop {
            match std::fs::hard_link(&temp, &target) {
                Ok(()) => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match self.claim(&base) {
                    Ok(next) => target = next,
                    Err(e) => break Err(e),
                },
                // No hard links here (some FUSE or FAT file systems): rename, the name
                // having been checked free just before.
                Err(_) if std::fs::symlink_metadata(&target).is_err() => {
                    break std::fs::rename(&temp, &target).map_err(|e| {
                        format!(
                            "output: cannot rename {} to {}: {e}",
                            temp.display(),
                            target.display()
                        )
                    });
                }
                Err(e) => {
                    break Err(format!("output: cannot create {}: {e}", target.display()));
                }
            }
        };
        remove_quietly(&temp);
        self.forget(&temp);
        published.map(|()| target)
    }

    /// The body is not complete: remove its temporary file.
    pub fn discard(&mut self, pending: Pending) {
        drop(pending.file);
        remove_quietly(&pending.temp);
        self.forget(&pending.temp);
    }
}

/// `DIR/page.html` → `DIR/.page.html.<pid>.part`: hidden, and not a name `file_name`
/// ever makes (those never start with a dot).
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

/// Remove a file that may already be gone (after a rename).
pub fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("output: cannot remove {}: {e}", path.display()),
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
    fn names_are_unique_skip_existing_files_and_appear_only_when_published() {
        let dir = std::env::temp_dir().join(format!("netloop-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("page-1.html"), b"already here").unwrap();
        let mut names = Names::new(dir.clone());
        let url = Url::parse("http://h/x/page.html").unwrap();
        let literal = Url::parse("http://h/page-2.html").unwrap();
        let a = names.create(&url).unwrap();
        let b = names.create(&literal).unwrap();
        let c = names.create(&url).unwrap();
        assert!(a
            .temp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".page.html."));
        assert!(
            !a.target.exists(),
            "no final name before the body is complete"
        );
        let (a, b, c) = (
            names.publish(a).unwrap(),
            names.publish(b).unwrap(),
            names.publish(c).unwrap(),
        );
        let file = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            [file(&a), file(&b), file(&c)],
            ["page.html", "page-2.html", "page-3.html"]
        );
        assert_eq!(
            std::fs::read(dir.join("page-1.html")).unwrap(),
            b"already here"
        );
        let d = names.create(&url).unwrap();
        let temp = d.temp.clone();
        names.discard(d);
        assert!(!temp.exists());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(
            left.len(),
            4,
            "three bodies and the file that was there: {left:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
