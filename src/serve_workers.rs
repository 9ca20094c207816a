//! `netloop serve --workers N`: N processes, each its own loop, sharing the port.

use std::io;

use crate::serve::ServeArgs;

/// Run `args.workers` worker processes and supervise them.
pub fn serve_workers(args: &ServeArgs) -> io::Result<()> {
    let _ = args;
    Err(io::Error::other("--workers is not implemented yet"))
}
