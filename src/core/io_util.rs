//! Small helpers for the error kinds every readiness loop must treat specially.
//!
//! Under a readiness API, `WouldBlock` is not an error: it is the kernel saying "nothing
//! more for now, wait for the next event". `Interrupted` means a signal arrived during
//! the system call, which is simply retried. Naming the two checks keeps every
//! read/write/accept loop in the crate short enough to read at a glance.

use std::io;

/// The socket has nothing more to give (or take) until the next readiness event.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// A signal interrupted the call; the call is retried at once.
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// The process (or the whole system) ran out of file descriptors or socket memory.
///
/// `accept` fails this way while a connection is still waiting in the backlog, so the
/// listener stays readable: retrying at once would spin, so the loop pauses accepting.
pub fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
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
