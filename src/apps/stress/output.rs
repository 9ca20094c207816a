//! The files a stress run or a merge writes (`--hdr-log`, `--plot`): claimed before the
//! work begins, written at its end.
//!
//! The project's rule for output files: never overwrite what this process did not
//! create. So each output is created with `create_new` *before* the connections are
//! opened (an existing file is refused at once, naming it, rather than after a long
//! hold), kept open, and filled in when the report is ready. If the run ends without
//! writing it (an error, an impossible ask), the empty file this process created is
//! removed again, so a failed run leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::core::io_util::{create_new_file, with_context};

/// One output file, created empty by this process and not yet written.
pub struct Claimed {
    /// The path as given (for messages, and for removing it if never written).
    path: PathBuf,
    /// The option that named it (`--hdr-log`, `--plot`), for messages.
    option: &'static str,
    /// Open until written; `None` once written (nothing left to clean up).
    file: Option<File>,
}

impl Claimed {
    /// Create `path` for `option`; an existing file (or anything else at that path) is
    /// an error naming both, and is left untouched.
    pub fn new(path: &Path, option: &'static str) -> io::Result<Claimed> {
        let file = create_new_file(path, option)?;
        Ok(Claimed {
            path: path.to_path_buf(),
            option,
            file: Some(file),
        })
    }

    /// Claim `path` if one was given.
    pub fn maybe(path: Option<&Path>, option: &'static str) -> io::Result<Option<Claimed>> {
        path.map(|p| Claimed::new(p, option)).transpose()
    }

    /// The path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fill the file with `bytes` (once) and make it durable.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let shown = self.path.display();
        let option = self.option;
        let mut file = self.file.take().ok_or_else(|| {
            io::Error::other(format!("{option} {shown}: written twice (a netloop bug)"))
        })?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| with_context(e, format_args!("{option} {shown}")))
    }
}

impl Drop for Claimed {
    /// Never written: remove the empty file this process created.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_is_refused_and_kept_and_an_unwritten_claim_is_removed() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("netloop-claim-{}.svg", std::process::id()));
        fs::write(&path, b"mine").unwrap();
        let err = Claimed::new(&path, "--plot").err().expect("refused");
        assert!(err.to_string().contains("--plot"), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"mine");
        fs::remove_file(&path).unwrap();

        let claim = Claimed::new(&path, "--plot").unwrap();
        assert!(path.exists());
        drop(claim);
        assert!(!path.exists(), "an unwritten claim leaves nothing behind");

        let mut claim = Claimed::new(&path, "--plot").unwrap();
        claim.write(b"<svg/>").unwrap();
        drop(claim);
        assert_eq!(fs::read(&path).unwrap(), b"<svg/>");
        fs::remove_file(&path).unwrap();
    }
}
