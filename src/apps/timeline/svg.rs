//! The SVG document: the frame (`header.rs`: title, legend, time axis) and one row per
//! lane (`lanes.rs` draws their insides).
//!
//! The same drawing serves the static picture (`-o FILE.svg`, for NOTES.md) and the
//! page (`-o FILE.html`), which embeds it and adds zoom, pan and details. Every lane is
//! a `<g class="lane">` moved into place with `translate(0, y)`, holding its label and
//! a clipped plot whose inner group (`class="z"`) the page scales to zoom; for the page,
//! the members of a group are drawn too, hidden until the group is opened. Only
//! generic font families are named: no font is fetched.

use std::fmt::Write as _;

use super::header::{axis, bytes, duration, escape, header};
use super::lanes::{self, Scale, CONN_H, LOOP_H};
use super::layout::{Row, Timeline};
use super::Options;

/// Width of the label column.
pub const LABEL_W: f64 = 210.0;
/// Space between lanes.
pub const GAP: f64 = 3.0;
/// Height of the time axis row.
const AXIS_H: f64 = 22.0;

/// What the page needs to know about each lane, in document order.
#[derive(Debug, Default)]
pub struct LaneInfo {
    /// "loop", "udp", "conn" or "group".
    pub kind: &'static str,
    /// Its label.
    pub label: String,
    /// The events it shows (indices into `Timeline::events`), in time order.
    pub events: Vec<usize>,
    /// For a group's member: the group's lane number.
    pub member_of: Option<usize>,
    /// Its height.
    pub h: f64,
}

/// A drawn timeline.
#[derive(Debug)]
pub struct Drawing {
    /// The SVG document.
    pub svg: String,
    /// The lanes, in document order.
    pub lanes: Vec<LaneInfo>,
    /// Where the plot starts (x) and how wide it is.
    pub plot_x: f64,
    /// Plot width in pixels.
    pub plot_w: f64,
    /// y of the first lane.
    pub top: f64,
    /// Height of the time axis row, just above `top`.
    pub axis_h: f64,
}

/// Draw the timeline. `page`: for the HTML page (hidden group members, finer x).
pub fn render(t: &Timeline, opts: &Options, source: &str, page: bool) -> Drawing {
    let plot_w = f64::from(opts.width.max(200));
    let total_w = LABEL_W + plot_w + 36.0;
    let span = t.end.saturating_sub(t.start).max(1);
    // The stretch of time drawn, from the record's start: all of it, or for a static
    // picture the window asked for (the page always holds all, and starts zoomed in).
    let (from, to) = match opts.window {
        Some((from, to)) if !page => (from.min(span), to.min(span).max(from.min(span) + 1)),
        _ => (0, span),
    };
    let shown = to - from;
    let scale = Scale {
        start: t.start + from,
        per_us: plot_w / shown as f64,
        width: plot_w,
        decimals: if page { 3 } else { 1 },
    };
    let mut body = String::new();
    let title = opts
        .title
        .clone()
        .unwrap_or_else(|| format!("netloop timeline: {source}"));
    let y = header(&mut body, t, &title, (from, to), total_w);
    let axis_y = y + 22.0;
    let top = axis_y + AXIS_H;

    // Lanes.
    let mut lanes_svg = String::new();
    let mut infos: Vec<LaneInfo> = Vec::new();
    let mut lane_y = top;
    let clip = r#" clip-path="url(#plot)""#;
    let mut lane = |infos: &mut Vec<LaneInfo>,
                    info: LaneInfo,
                    hidden: bool,
                    content: &str,
                    title: &str| {
        let n = infos.len();
        let h = info.h;
        let y = if hidden { 0.0 } else { lane_y };
        let _ = write!(
            lanes_svg,
            r#"<g class="lane" id="lane{n}" transform="translate(0,{y})"{}>"#,
            if hidden { r#" display="none""# } else { "" }
        );
        let _ = write!(
            lanes_svg,
            r##"<path d="M0 {}H{total_w}" stroke="#eceff1" stroke-width="1"/>"##,
            h + GAP / 2.0
        );
        let indent = if info.member_of.is_some() { 22.0 } else { 8.0 };
        let marker = match (info.kind, page) {
            ("group", true) => "\u{25b8} ",
            _ => "",
        };
        let _ = write!(
            lanes_svg,
            r#"<text class="label" x="{indent}" y="{}" font-size="11" font-family="monospace">{marker}{}<title>{}</title></text>"#,
            if h > CONN_H { 18.0 } else { h / 2.0 + 4.0 },
            escape(&info.label),
            escape(title)
        );
        if info.kind == "loop" {
            let _ = write!(
                lanes_svg,
                r#"<text x="{indent}" y="36" font-size="10" fill="{}">{} turns</text>"#,
                lanes::WAKE_BARS,
                t.turns
            );
        }
        let _ = write!(
            lanes_svg,
            r#"<g{clip}><g class="z" transform="translate({LABEL_W},0)">{content}</g></g></g>"#
        );
        if !hidden {
            lane_y += h + GAP;
        }
        infos.push(info);
        n
    };

    let mut content = String::new();
    lanes::loop_lane(&mut content, &scale, &t.loop_lane, t.start, t.end);
    let info = LaneInfo {
        kind: "loop",
        label: "loop".into(),
        events: t.loop_lane.events.clone(),
        member_of: None,
        h: LOOP_H,
    };
    lane(
        &mut infos,
        info,
        false,
        &content,
        "the loop: each sleep (poll to wake) coloured by why it slept that long; \
         dark where it was awake; bars: events per wake-up",
    );
    for udp in &t.udp {
        let mut content = String::new();
        lanes::udp_lane(&mut content, &scale, &udp.marks);
        let label = format!("udp port {}", udp.port);
        let info = LaneInfo {
            kind: "udp",
            label: label.clone(),
            events: udp.events.clone(),
            member_of: None,
            h: CONN_H,
        };
        let title = format!("{label}: {} datagrams", udp.marks.len());
        lane(&mut infos, info, false, &content, &title);
    }
    for &row in &t.rows {
        match row {
            Row::Conn(i) => {
                let conn = &t.conns[i];
                let mut content = String::new();
                lanes::conn_lane(&mut content, &scale, conn, t.end);
                let info = LaneInfo {
                    kind: "conn",
                    label: conn.label(),
                    events: conn.events.clone(),
                    member_of: None,
                    h: CONN_H,
                };
                lane(&mut infos, info, false, &content, &conn_title(t, i));
            }
            Row::Group(g) => {
                let mut content = String::new();
                lanes::group_lane(&mut content, &scale, t, g);
                let group = &t.groups[g];
                let mut events: Vec<usize> = group
                    .members
                    .iter()
                    .flat_map(|&i| t.conns[i].events.iter().copied())
                    .collect();
                events.sort_unstable();
                let label = group.label(&t.conns);
                let info = LaneInfo {
                    kind: "group",
                    label: label.clone(),
                    events,
                    member_of: None,
                    h: CONN_H,
                };
                let title = format!(
                    "{label}: grey area = how many were open; marks of all of them merged{}",
                    if page {
                        " (click to open the group)"
                    } else {
                        ""
                    }
                );
                let group_lane = lane(&mut infos, info, false, &content, &title);
                if page {
                    for &i in &group.members {
                        let conn = &t.conns[i];
                        let mut content = String::new();
                        lanes::conn_lane(&mut content, &scale, conn, t.end);
                        let info = LaneInfo {
                            kind: "conn",
                            label: conn.label(),
                            events: conn.events.clone(),
                            member_of: Some(group_lane),
                            h: CONN_H,
                        };
                        lane(&mut infos, info, true, &content, &conn_title(t, i));
                    }
                }
            }
        }
    }
    let height = lane_y + 8.0;

    // The time axis, with grid lines through all lanes.
    let axis = axis(&scale, (from, to), axis_y, height);

    let mut svg = String::with_capacity(body.len() + lanes_svg.len() + axis.len() + 1024);
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{total_w}" height="{height}" viewBox="0 0 {total_w} {height}" font-family="sans-serif">"#
    );
    let _ = write!(
        svg,
        r#"<defs><clipPath id="plot" clipPathUnits="userSpaceOnUse"><rect x="{LABEL_W}" y="-2" width="{plot_w}" height="{}"/></clipPath></defs>"#,
        LOOP_H + 4.0
    );
    let _ = write!(
        svg,
        r#"<rect id="background" x="0" y="0" width="{total_w}" height="{height}" fill="white"/>"#
    );
    svg.push_str(&body);
    let _ = write!(svg, r#"<g id="axis">{axis}</g>"#);
    let _ = write!(svg, r#"<g id="lanes">{lanes_svg}</g>"#);
    svg.push_str("</svg>\n");
    Drawing {
        svg,
        lanes: infos,
        plot_x: LABEL_W,
        plot_w,
        top,
        axis_h: AXIS_H,
    }
}

/// A connection's label tooltip: what it did in one line.
fn conn_title(t: &Timeline, i: usize) -> String {
    let c = &t.conns[i];
    let mut s = format!(
        "{}: {}, slot {}, {} in, {} out",
        c.label(),
        if c.outbound { "outbound" } else { "accepted" },
        c.slot,
        bytes(c.bytes_in),
        bytes(c.bytes_out)
    );
    if c.max_queue > 0 {
        let _ = write!(s, ", queue up to {}", bytes(c.max_queue));
    }
    if !c.paused.is_empty() {
        let _ = write!(s, ", paused {} times", c.paused.len());
    }
    match (&c.reason, c.closed) {
        (Some(reason), Some(at)) => {
            let _ = write!(s, ", closed at {} ({reason})", duration(at - t.start));
        }
        _ => s.push_str(", open at the end of the record"),
    }
    s
}
