//! `--allow FILE`: the programs `serve exec` may run, and nothing else.
//!
//! The file has one entry per line: an absolute path, optionally followed by fixed
//! leading arguments (words split as in a shell, so a path with spaces can be quoted).
//! Blank lines and lines starting with `#` are skipped:
//!
//! ```text
//! /bin/echo                   # echo with any arguments
//! /usr/bin/git log            # git, but only `git log ...`
//! /usr/bin/git status         # ... or `git status ...`
//! ```
//!
//! A request names a program by its listed path or by its file name (`echo`, as seed
//! 004's client types `ls`), and its first arguments must be an entry's fixed ones. A
//! name with a `/` in it must be a listed path exactly: `./echo`, `../bin/echo` or
//! `/tmp/echo` are refused however their last part reads. The request's program never
//! goes through `PATH`: what runs is the listed path, so there is no way to run an
//! unlisted program.
//!
//! The file is checked at start-up: every path absolute, existing, an executable
//! regular file, and no file name listed for two different paths (`ls` would be
//! ambiguous). An error names the file and the line.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One allowed program, with the arguments it must start with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The absolute path that runs.
    pub program: PathBuf,
    /// Its file name, by which requests may name it.
    pub name: String,
    /// Arguments every request for this entry must start with.
    pub fixed: Vec<String>,
}

/// A request that may run: the program and all its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    /// The listed path.
    pub program: PathBuf,
    /// The arguments after the program name, fixed ones included.
    pub args: Vec<String>,
}

/// The allowed programs.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Read and check the file (see the module docs).
    pub fn load(path: &Path) -> io::Result<Allowlist> {
        let text = fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("allow file {}: {e}", path.display())))?;
        let origin = format!("allow file {}", path.display());
        let list = Allowlist::parse(&text, &origin)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        for entry in &list.entries {
            check_executable(&entry.program).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{origin}: {}: {e}", entry.program.display()),
                )
            })?;
        }
        Ok(list)
    }

    /// The entries in `text`; errors name `origin` and the line. Checks the form of
    /// each line only (not the files: see `load`).
    pub fn parse(text: &str, origin: &str) -> Result<Allowlist, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = || format!("{origin}, line {}", i + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = shell_words::split(line)
                .map_err(|_| format!("{}: unterminated quote", at()))?
                .into_iter();
            let Some(first) = words.next() else {
                continue; // only a comment after all
            };
            let program = PathBuf::from(&first);
            if !program.is_absolute() {
                return Err(format!(
                    "{}: `{first}` is not an absolute path (write e.g. /bin/{first})",
                    at()
                ));
            }
            let name = match program.file_name().and_then(|n| n.to_str()) {
                Some(name) if !first.ends_with('/') => name.to_string(),
                _ => return Err(format!("{}: `{first}` names no program", at())),
            };
            if let Some(other) = entries
                .iter()
                .find(|e| e.name == name && e.program != program)
            {
                return Err(format!(
                    "{}: `{name}` would mean both {} and {}; list only one",
                    at(),
                    other.program.display(),
                    program.display()
                ));
            }
            entries.push(Entry {
                program,
                name,
                fixed: words.collect(),
            });
        }
        if entries.is_empty() {
            return Err(format!("{origin} lists no program"));
        }
        Ok(Allowlist { entries })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What runs for the request `argv`, or why nothing does (worded for the client,
    /// naming the program).
    pub fn resolve(&self, argv: &[String]) -> Result<Allowed, String> {
        let Some((asked, rest)) = argv.split_first() else {
            return Err("empty command".to_string());
        };
        let by_path = asked.contains('/');
        let matches: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| {
                if by_path {
                    e.program.as_os_str() == asked.as_str()
                } else {
                    e.name == *asked
                }
            })
            .collect();
        if matches.is_empty() {
            return Err(format!("`{asked}` is not an allowed program"));
        }
        match matches.iter().find(|e| rest.starts_with(&e.fixed)) {
            Some(entry) => Ok(Allowed {
                program: entry.program.clone(),
                args: rest.to_vec(),
            }),
            None => {
                let forms: Vec<String> = matches
                    .iter()
                    .map(|e| format!("`{}`", shell_words::join(leading(e))))
                    .collect();
                Err(format!(
                    "`{asked}` is allowed only as {}",
                    forms.join(" or ")
                ))
            }
        }
    }
}

/// An entry as a request would start: its name and fixed arguments.
fn leading(entry: &Entry) -> Vec<&str> {
    std::iter::once(entry.name.as_str())
        .chain(entry.fixed.iter().map(String::as_str))
        .collect()
}

/// The path is an executable regular file (following symbolic links).
fn check_executable(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not executable",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Allowlist {
        Allowlist::parse(text, "test").unwrap_or_else(|e| panic!("{e}"))
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn programs_are_found_by_path_or_name() {
        let l = list("# comment\n\n/bin/echo\n  /usr/bin/git log  \n/usr/bin/git status\n");
        assert_eq!(l.entries().len(), 3);
        let ok = l.resolve(&argv(&["echo", "hi"])).expect("echo");
        assert_eq!(ok.program, Path::new("/bin/echo"));
        assert_eq!(ok.args, ["hi"]);
        assert!(l.resolve(&argv(&["/bin/echo"])).is_ok());
        let git = l.resolve(&argv(&["git", "log", "-1"])).expect("git log");
        assert_eq!(git.args, ["log", "-1"]);
        assert!(l.resolve(&argv(&["git", "status"])).is_ok());
    }

    #[test]
    fn anything_else_is_refused_naming_the_program() {
        let l = list("/bin/echo\n/usr/bin/git log\n");
        let e = l.resolve(&argv(&["rm", "-rf", "/"])).unwrap_err();
        assert_eq!(e, "`rm` is not an allowed program");
        for path in [
            "/tmp/echo",
            "./echo",
            "../bin/echo",
            "/bin//echo",
            "bin/echo",
        ] {
            let e = l.resolve(&argv(&[path])).unwrap_err();
            assert!(e.contains("not an allowed program"), "{path}: {e}");
        }
        let e = l.resolve(&argv(&["git", "push"])).unwrap_err();
        assert_eq!(e, "`git` is allowed only as `git log`");
        assert!(l.resolve(&argv(&["git"])).is_err());
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let e = Allowlist::parse("/bin/echo\nls\n", "f").unwrap_err();
        assert!(
            e.starts_with("f, line 2: `ls` is not an absolute path"),
            "{e}"
        );
        let e = Allowlist::parse("/bin/ls\n/usr/bin/ls\n", "f").unwrap_err();
        assert!(e.contains("would mean both /bin/ls and /usr/bin/ls"), "{e}");
        assert!(Allowlist::parse("# nothing\n", "f").is_err());
        assert!(Allowlist::parse("/bin/echo 'open\n", "f").is_err());
        assert!(Allowlist::parse("/usr/bin/\n", "f").is_err());
    }

    #[test]
    fn load_checks_the_programs() {
        let dir = std::env::temp_dir().join(format!("netloop-allow-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("allow");
        fs::write(&file, "/bin/sh\n").expect("write");
        assert!(Allowlist::load(&file).is_ok());
        fs::write(&file, "/nonexistent/program\n").expect("write");
        let e = Allowlist::load(&file).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/program"), "{e}");
        let data = dir.join("data");
        fs::write(&data, "not a program").expect("write");
        fs::write(&file, format!("{}\n", data.display())).expect("write");
        let e = Allowlist::load(&file).unwrap_err().to_string();
        assert!(e.contains("not executable"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
