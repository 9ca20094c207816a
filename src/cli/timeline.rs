//! `netloop timeline`: its command line.
//!
//! `netloop timeline FILE -o OUT.html` (a page to explore: zoom, pan, details) or
//! `-o OUT.svg` (a static picture); FILE is what `--record` wrote. The drawing itself is
//! `netloop::apps::timeline`.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use netloop::apps::timeline::{draw, Options};

use super::args::{at_least_one, secs};

/// Options of `netloop timeline`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// A record written by `--record` (JSON lines).
    #[arg(value_name = "FILE")]
    pub record: PathBuf,
    /// Where to write the drawing: a name ending in .html (a self-contained page with
    /// zoom, pan and details) or .svg (a static picture).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// Connection lanes at most; past it the quieter connections are drawn in groups
    /// (on the page, a click on a group's name opens it).
    #[arg(long, default_value_t = 30, value_name = "N", value_parser = at_least_one)]
    pub lanes: usize,
    /// Width of the time axis in pixels.
    #[arg(long, default_value_t = 1000, value_name = "PX")]
    pub width: u32,
    /// Title at the top (default: "netloop timeline: FILE").
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Draw from this many seconds after the record's first event (an SVG shows only
    /// --from..--to; the page starts zoomed in there).
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub from: Option<Duration>,
    /// Draw up to this many seconds after the record's first event.
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub to: Option<Duration>,
}

/// Run `netloop timeline`: draw, then say what was drawn on stderr.
pub fn run(args: &Args) -> io::Result<()> {
    let window = match (args.from, args.to) {
        (None, None) => None,
        (from, to) => {
            let from = from.unwrap_or_default().as_micros() as u64;
            let to = to.map_or(u64::MAX, |t| t.as_micros() as u64);
            if to <= from {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--to must come after --from",
                ));
            }
            Some((from, to))
        }
    };
    let opts = Options {
        lanes: args.lanes,
        width: args.width,
        title: args.title.clone(),
        window,
    };
    let summary = draw(&args.record, &args.output, &opts)?;
    let mut line = format!(
        "wrote {}: {} events, {} connection{} in {} lane{}",
        args.output.display(),
        summary.events,
        summary.connections,
        if summary.connections == 1 { "" } else { "s" },
        summary.rows,
        if summary.rows == 1 { "" } else { "s" },
    );
    if summary.groups > 0 {
        line.push_str(&format!(" ({} of them groups)", summary.groups));
    }
    eprintln!("{line}");
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}
