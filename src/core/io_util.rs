//! Small helpers for the error kinds every readiness loop must treat specially.
//!
//! Under a readiness API, `WouldBlock` is not an error: it is the kernel saying "nothing
//! more for now, wait for the next event". `Interrupted` means a signal arrived during
//! the system call, which is simply retried. Naming the two checks keeps every
//! read/write/accept loop in the crate short enough to read at a glance.

use std::fmt;
use std::io;

/// The socket has nothing more to give (or take) until the next readiness event.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// A signal interrupted the call; the call is retried at once.
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// `err`, with what was being done put in front of its message (`connect 10.0.0.1:80:
/// Connection refused (os error 111)`), keeping its kind and, through [`os_error`], its
/// OS error number: a caller can still tell `EMFILE` from the rest without reading text.
pub fn with_context(err: io::Error, what: impl fmt::Display) -> io::Error {
    let kind = err.kind();
    io::Error::new(
        kind,
        Context {
            what: what.to_string(),
            source: err,
        },
    )
}

/// The payload of [`with_context`]'s errors.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The OS error number of `err`, also when [`with_context`] wrapped it (once or more).
pub fn os_error(err: &io::Error) -> Option<i32> {
    if let Some(code) = err.raw_os_error() {
        return Some(code);
    }
    let context = err.get_ref()?.downcast_ref::<Context>()?;
    os_error(&context.source)
}

/// The process (or the whole system) ran out of file descriptors or socket memory.
///
/// `accept` fails this way while a connection is still waiting in the backlog, so the
/// listener stays readable: retrying at once would spin, so the loop pauses accepting.
pub fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        os_error(err),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Errors a peer causes by going away: worth a log line, never worth more.
pub fn peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Create `path` for writing the output of `option` (`--record`, `--plot`, ...). It must
/// not exist: what is there already (a file, a link, anything) is left untouched and is
/// an error naming the option and the path. So a run never overwrites what it did not
/// create.
pub fn create_new_file(path: &std::path::Path, option: &str) -> io::Result<std::fs::File> {
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            let shown = format!("{option} {}", path.display());
            if e.kind() == io::ErrorKind::AlreadyExists {
                let why = "already exists; it is never overwritten: remove it or give another name";
                io::Error::new(e.kind(), format!("{shown}: {why}"))
            } else {
                with_context(e, shown)
            }
        })
}

/// The soft open-file limit (`ulimit -n`); `None` if it cannot be read. Unlimited
/// reads as `usize::MAX`.
pub fn open_file_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local struct.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)),
        _ => None,
    }
}

/// The open-file limit, raised to its hard maximum (soft limits are often lower, e.g.
/// 1,024, while a server or stress tester wants as many connections as allowed).
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_the_os_error_and_the_text() {
        let raw = io::Error::from_raw_os_error(libc::EMFILE);
        let text = raw.to_string();
        let once = with_context(raw, "connect 127.0.0.1:80");
        let twice = with_context(once, "transfer 3");
        assert_eq!(os_error(&twice), Some(libc::EMFILE));
        assert!(out_of_descriptors(&twice));
        assert_eq!(
            twice.to_string(),
            format!("transfer 3: connect 127.0.0.1:80: {text}")
        );
        let plain = with_context(io::Error::other("no number"), "x");
        assert_eq!(os_error(&plain), None);
    }
}
