//! `netloop resolve`: its command line.

use std::io;

/// Options of `netloop resolve`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// An IP address or a host name.
    pub host: String,
    /// A service name (`http`) or port number.
    pub service: Option<String>,
}

/// Run `netloop resolve`: print the report.
pub fn run(args: &Args) -> io::Result<()> {
    let report = netloop::apps::resolve::resolve_report(&args.host, args.service.as_deref())?;
    print!("{report}");
    Ok(())
}
