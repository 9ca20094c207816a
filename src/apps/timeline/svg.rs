//! The SVG document: header, legend, time axis, and one row per lane.
//!
//! The same drawing serves the static picture (`-o FILE.svg`, for NOTES.md) and the
//! page (`-o FILE.html`), which embeds it and adds zoom, pan and details. Every lane is
//! a `<g class="lane">` moved into place with `translate(0, y)`, holding its label and
//! a clipped plot whose inner group (`class="z"`) the page scales to zoom; for the page,
//! the members of a group are drawn too, hidden until the group is opened. Only
//! generic font families are named: no font is fetched.

use std::fmt::Write as _;

use super::lanes::{self, Scale, CONN_H, LOOP_H};
use super::layout::{MarkKind, Row, Timeline};
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

/// Escape text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Microseconds in words: "2.5 ms", "1.25 s".
pub fn duration(us: u64) -> String {
    let us = us as f64;
    if us >= 1e6 {
        format!("{:.3} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.3} ms", us / 1e3)
    } else {
        format!("{us:.0} \u{b5}s")
    }
}

/// A tick label for `us` since the start, in the unit the tick `step` calls for.
fn tick_label(us: f64, step: f64) -> String {
    let (div, unit) = if step >= 1e6 {
        (1e6, "s")
    } else if step >= 1e3 {
        (1e3, "ms")
    } else {
        (1.0, "\u{b5}s")
    };
    let step_in_unit = step / div;
    let decimals = if step_in_unit >= 1.0 {
        0
    } else {
        (-step_in_unit.log10()).ceil() as usize
    };
    format!("{:.*} {unit}", decimals, us / div)
}

/// A round step (1, 2 or 5 times a power of ten) about `target` microseconds long.
fn nice_step(target: f64) -> f64 {
    let power = 10f64.powf(target.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= target)
        .unwrap_or(10.0 * power)
}

/// The legend's entries: a swatch (stroke or fill colour) and a text.
fn legend_items() -> Vec<(bool, &'static str, &'static str)> {
    let mut items = vec![
        (false, lanes::AWAKE, "loop awake"),
        (false, lanes::ASLEEP_IDLE, "asleep, nothing scheduled"),
        (false, lanes::ASLEEP_TIMER, "asleep until a timer"),
        (true, lanes::WAKE_BARS, "events per wake-up"),
        (false, lanes::PAUSED, "reading paused (backpressure)"),
        (false, lanes::QUEUE, "queued bytes"),
        (false, lanes::OPEN_COUNT, "open in group"),
    ];
    for kind in [
        MarkKind::Open,
        MarkKind::Ready,
        MarkKind::Read,
        MarkKind::Write,
        MarkKind::WriteShort,
        MarkKind::Flush,
        MarkKind::WouldBlock,
        MarkKind::Eof,
        MarkKind::Due,
        MarkKind::Close,
        MarkKind::Timer,
        MarkKind::Other,
    ] {
        let s = lanes::style(kind);
        items.push((true, s.color, s.legend));
    }
    items
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

    // Header: title, summary, notes, legend.
    let title = opts
        .title
        .clone()
        .unwrap_or_else(|| format!("netloop timeline: {source}"));
    let _ = write!(
        body,
        r#"<text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    let grouped: usize = t.groups.iter().map(|g| g.members.len()).sum();
    let mut summary = format!(
        "{} events over {}, {} turns of the loop, {} connection{}",
        t.events.len(),
        duration(span),
        t.turns,
        t.conns.len(),
        if t.conns.len() == 1 { "" } else { "s" }
    );
    if grouped > 0 {
        let _ = write!(
            summary,
            " ({grouped} of them in {} group lanes)",
            t.groups.len()
        );
    }
    if shown < span {
        let _ = write!(summary, "; showing {} to {}", duration(from), duration(to));
    }
    let _ = write!(
        body,
        r#"<text x="8" y="34" font-size="11">{}</text>"#,
        escape(&summary)
    );
    let mut y = 38.0;
    for note in &t.notes {
        y += 14.0;
        let _ = write!(
            body,
            r##"<text x="8" y="{y}" font-size="11" fill="#b3261e">{}</text>"##,
            escape(note)
        );
    }
    y += 10.0;
    let mut x = 8.0;
    for (stroke, color, text) in legend_items() {
        let w = 22.0 + text.chars().count() as f64 * 6.0 + 12.0;
        if x + w > total_w {
            x = 8.0;
            y += 16.0;
        }
        if stroke {
            let _ = write!(
                body,
                r#"<path d="M{} {}v12" stroke="{color}" stroke-width="2"/>"#,
                x + 6.0,
                y
            );
        } else {
            let _ = write!(
                body,
                r#"<rect x="{x}" y="{}" width="14" height="11" fill="{color}" fill-opacity="{}"/>"#,
                y + 0.5,
                if color == lanes::PAUSED { 0.5 } else { 0.8 }
            );
        }
        let _ = write!(
            body,
            r#"<text x="{}" y="{}" font-size="11">{}</text>"#,
            x + 20.0,
            y + 10.0,
            escape(text)
        );
        x += w;
    }
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
    let mut axis = String::new();
    let step = nice_step(shown as f64 * 90.0 / plot_w);
    let mut k = (from as f64 / step).ceil();
    while k * step <= to as f64 {
        let x = LABEL_W + (k * step - from as f64) * scale.per_us;
        let _ = write!(
            axis,
            r##"<path d="M{x:.1} {}V{height}" stroke="#e3e7eb" stroke-width="1"/><text x="{x:.1}" y="{}" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
            axis_y + 6.0,
            axis_y + 2.0,
            escape(&tick_label(k * step, step))
        );
        k += 1.0;
    }

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

/// A byte count in words: "64.0 MiB".
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_labels_are_round() {
        assert_eq!(nice_step(70.0), 100.0);
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(nice_step(2_600_000.0), 5_000_000.0);
        assert_eq!(tick_label(1_500_000.0, 500_000.0), "1500 ms");
        assert_eq!(tick_label(3_000_000.0, 1_000_000.0), "3 s");
        assert_eq!(tick_label(40.0, 20.0), "40 \u{b5}s");
        assert_eq!(tick_label(250_000.0, 50_000.0), "250 ms");
    }
}
