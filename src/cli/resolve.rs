//! `netloop resolve`: its command line.
//!
//! (Transitional: the `clap` struct still lives in `netloop::apps::resolve`.)

use std::io;

/// Options of `netloop resolve`.
pub use netloop::apps::resolve::ResolveArgs as Args;

/// Run `netloop resolve`: print the report.
pub fn run(args: &Args) -> io::Result<()> {
    let report = netloop::apps::resolve::resolve_report(&args.host, args.service.as_deref())?;
    print!("{report}");
    Ok(())
}
