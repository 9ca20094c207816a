//! The HTML page: the SVG drawing, the recorded lines, and a script to explore them.
//!
//! One self-contained file: the stylesheet and the script (`page.css`, `page.js`, kept
//! beside this file so they read as what they are) are inlined, the events ride along
//! as a JSON block, and nothing is fetched — no network, no external script, no font.
//! The script zooms and pans the time axis, shows an event's recorded line and what it
//! means on hover, pins it on click, and opens or closes group lanes.

use std::fmt::Write as _;

use super::header::escape;
use super::layout::Timeline;
use super::svg::{Drawing, GAP};

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Make JSON safe inside a `<script>` element: `<` only occurs inside JSON strings,
/// where `\u003c` means the same, and a `</script>` in a peer's text cannot end the block.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// The page for a drawn timeline.
/// `window`: where the page starts zoomed in (microseconds from the record's start).
pub fn page(t: &Timeline, drawing: &Drawing, title: &str, window: Option<(u64, u64)>) -> String {
    let mut data =
        String::with_capacity(t.events.iter().map(|e| e.line.len() + 1).sum::<usize>() + 4096);
    data.push_str("{\"events\":[");
    for (i, event) in t.events.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&event.line);
    }
    data.push_str("],\"lanes\":[");
    for (i, lane) in drawing.lanes.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        let label = serde_json::Value::String(lane.label.clone());
        let member_of = lane
            .member_of
            .map_or_else(|| "null".to_string(), |g| g.to_string());
        let _ = write!(
            data,
            r#"{{"kind":"{}","label":{label},"member_of":{member_of},"h":{},"events":["#,
            lane.kind, lane.h
        );
        for (j, e) in lane.events.iter().enumerate() {
            if j > 0 {
                data.push(',');
            }
            let _ = write!(data, "{e}");
        }
        data.push_str("]}");
    }
    let span = t.end.saturating_sub(t.start).max(1);
    // The zoom (k) and pan (tx, in plot pixels) that show the window.
    let (k, tx) = match window.map(|(from, to)| (from, to.min(span))) {
        Some((from, to)) if from < to && to - from < span => {
            let k = span as f64 / (to - from) as f64;
            (k, -(from as f64) / span as f64 * drawing.plot_w * k)
        }
        _ => (1.0, 0.0),
    };
    let _ = write!(
        data,
        r#"],"view":{{"plot_x":{},"plot_w":{},"top":{},"axis_h":{},"gap":{GAP},"start":{},"span":{span},"k":{k},"tx":{tx}}}}}"#,
        drawing.plot_x, drawing.plot_w, drawing.top, drawing.axis_h, t.start,
    );

    let mut html =
        String::with_capacity(drawing.svg.len() + data.len() + CSS.len() + JS.len() + 2048);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
    html.push_str(
        "<div id=\"bar\">\
         <button id=\"zoom-in\" title=\"zoom in (or: mouse wheel over the lanes)\">+</button>\
         <button id=\"zoom-out\" title=\"zoom out\">&#8722;</button>\
         <button id=\"reset\" title=\"whole record (or: double-click)\">whole record</button>",
    );
    if !t.groups.is_empty() {
        html.push_str(
            "<button id=\"open-all\">open all groups</button>\
             <button id=\"close-all\">close all groups</button>",
        );
    }
    html.push_str(
        "<span id=\"help\">wheel: zoom \u{b7} drag: pan \u{b7} hover: details \u{b7} \
         click: pin details \u{b7} click a group's name: open it</span>\
         <span id=\"range\"></span></div>\n<div id=\"wrap\">\n",
    );
    html.push_str(&drawing.svg);
    html.push_str(
        "</div>\n<div id=\"detail\"><em>Hover over a mark for its details; click to keep \
         them here.</em></div>\n<div id=\"tip\"></div>\n",
    );
    let _ = write!(
        html,
        "<script id=\"timeline-data\" type=\"application/json\">{}</script>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        script_safe(&data)
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_a_script_cannot_close_it() {
        let json = r#"{"peer":"</script><script>alert(1)"}"#;
        let safe = script_safe(json);
        assert!(!safe.contains("</"));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["peer"], "</script><script>alert(1)");
    }
}
