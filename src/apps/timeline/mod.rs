//! `netloop timeline`: draw a `--record` file, so a student can *see* the loop work.
//!
//! Time runs left to right. The top lane is the loop itself: each sleep in `epoll_wait`
//! (coloured by why it could sleep that long: nothing scheduled, or until a timer), dark
//! where it was awake, and a bar per wake-up that grows with the number of events it
//! returned. Below, one lane per connection: a mark for each accept, readiness event,
//! read, write (whole, or with the rest queued), flush of the queue, `WouldBlock`, EOF,
//! deadline and close; a shaded span while backpressure paused its reading; and the
//! depth of its outbound queue as an area. Past `Options::lanes` connections, the
//! quieter ones are gathered into group lanes so the picture stays readable.
//!
//! - `record.rs`: reading the JSON lines back into typed events.
//! - `layout.rs`: events to lanes (connection lifetimes, sleeps, pauses, queue depth);
//!   `group.rs`: which lanes stay and which are grouped.
//! - `lanes.rs`: one lane's drawing as a few SVG paths; `svg.rs`: the document, a row
//!   per lane; `header.rs`: the title, legend and time axis, and the formatters.
//! - `html.rs` with `page.js` and `page.css`: the self-contained page with zoom, pan,
//!   details and opening groups.
//!
//! The output is a static SVG (`-o FILE.svg`, for NOTES.md) or the HTML page
//! (`-o FILE.html`); neither fetches anything.

pub mod group;
pub mod header;
pub mod html;
pub mod lanes;
pub mod layout;
pub mod record;
pub mod svg;

use std::io;
use std::path::Path;

pub use layout::Timeline;
pub use record::{read, Record};

/// How to draw.
#[derive(Clone, Debug)]
pub struct Options {
    /// Connection rows at most; past it connections are grouped.
    pub lanes: usize,
    /// Width of the plot in pixels (the label column comes on top).
    pub width: u32,
    /// A title instead of "netloop timeline: FILE".
    pub title: Option<String>,
    /// Only this stretch of time, in microseconds from the record's first event: what a
    /// picture shows, or where the page starts zoomed in (zooming out shows the rest).
    pub window: Option<(u64, u64)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lanes: 30,
            width: 1000,
            title: None,
            window: None,
        }
    }
}

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A static SVG picture.
    Svg,
    /// A self-contained HTML page to explore.
    Html,
}

impl Format {
    /// The format an output file's extension asks for (`.svg`, `.html`, `.htm`).
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Some(Format::Svg),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }
}

/// What a drawing contains, for the command's one-line report.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Events read.
    pub events: usize,
    /// Connection lifetimes.
    pub connections: usize,
    /// Connection rows drawn (single lanes and groups).
    pub rows: usize,
    /// Group rows among them.
    pub groups: usize,
    /// Notes about the record (a limit reached, lines skipped).
    pub notes: Vec<String>,
}

/// Draw a record (already read) in the given format.
pub fn render(record: Record, opts: &Options, source: &str, format: Format) -> (String, Summary) {
    let timeline = Timeline::new(record, opts.lanes);
    let drawing = svg::render(&timeline, opts, source, format == Format::Html);
    let summary = Summary {
        events: timeline.events.len(),
        connections: timeline.conns.len(),
        rows: timeline.rows.len(),
        groups: timeline.groups.len(),
        notes: timeline.notes.clone(),
    };
    let text = match format {
        Format::Svg => drawing.svg,
        Format::Html => {
            let title = opts
                .title
                .clone()
                .unwrap_or_else(|| format!("netloop timeline: {source}"));
            html::page(&timeline, &drawing, &title, opts.window)
        }
    };
    (text, summary)
}

/// Read `input` and write its drawing to `output` (SVG or HTML by its extension).
/// Errors name the file concerned.
pub fn draw(input: &Path, output: &Path, opts: &Options) -> io::Result<Summary> {
    let format = Format::of(output).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "-o {}: the name must end in .svg (a picture) or .html (a page to explore)",
                output.display()
            ),
        )
    })?;
    let record = read(input)?;
    let source = input.file_name().map_or_else(
        || input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (text, summary) = render(record, opts, &source, format);
    std::fs::write(output, text)
        .map_err(|e| io::Error::new(e.kind(), format!("-o {}: {e}", output.display())))?;
    Ok(summary)
}
