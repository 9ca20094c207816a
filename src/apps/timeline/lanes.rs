//! Drawing the inside of each lane: spans, queue depth and marks as SVG paths.
//!
//! Each lane is a few `<path>` elements, not one element per event: all the reads of a
//! lane are one path of short vertical strokes (`M x y v h`), all its pauses one path of
//! rectangles. A record of a million events stays a file a browser opens. Marks that
//! fall on the same x (at the drawing's precision) are drawn once: at the default width
//! that merges only what would overlap on screen anyway.
//!
//! The x coordinate is the time scaled to the plot's width, with the lane's own time
//! axis starting at 0; the page zooms by scaling this group horizontally, which is why
//! strokes carry `vector-effect="non-scaling-stroke"`: a tick stays one pixel wide at
//! any zoom.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::layout::{ConnLane, LoopLane, Mark, MarkKind, SleepWhy, Timeline};

/// Height of a connection, group or UDP lane, in pixels.
pub const CONN_H: f64 = 22.0;
/// Height of the loop's lane.
pub const LOOP_H: f64 = 44.0;

/// How a mark kind looks on a connection lane: colour, top, height, legend text.
pub struct Style {
    /// Stroke colour.
    pub color: &'static str,
    /// Top of the stroke within the lane.
    pub y: f64,
    /// Its length.
    pub h: f64,
    /// What the legend says.
    pub legend: &'static str,
}

/// The look of each mark kind.
pub fn style(kind: MarkKind) -> Style {
    let s = |color, y, h, legend| Style {
        color,
        y,
        h,
        legend,
    };
    match kind {
        MarkKind::Open => s("#222222", 0.0, 22.0, "accepted / connected"),
        MarkKind::Ready => s("#9aa0a6", 0.0, 4.0, "readiness event"),
        MarkKind::Read => s("#1f6fd1", 1.0, 9.0, "read"),
        MarkKind::Write => s("#2e9d3a", 12.0, 9.0, "write, all taken"),
        MarkKind::WriteShort => s("#e8590c", 12.0, 9.0, "write, rest queued"),
        MarkKind::Flush => s("#13a3b5", 12.0, 9.0, "queue flushed"),
        MarkKind::WouldBlock => s("#d0342c", 6.0, 10.0, "WouldBlock"),
        MarkKind::Eof => s("#7b3fbf", 0.0, 22.0, "EOF"),
        MarkKind::Due => s("#8c564b", 0.0, 22.0, "deadline / idle"),
        MarkKind::Close => s("#000000", 0.0, 22.0, "closing / closed"),
        MarkKind::Timer => s("#b8860b", 24.0, 18.0, "timer"),
        MarkKind::Datagram => s("#1f6fd1", 2.0, 18.0, "datagram"),
        MarkKind::Other => s("#e377c2", 0.0, 22.0, "other"),
    }
}

/// Colours of the loop lane and of spans, for the legend too.
pub const AWAKE: &str = "#46525e";
/// Asleep with nothing scheduled.
pub const ASLEEP_IDLE: &str = "#d4e3f5";
/// Asleep until a timer.
pub const ASLEEP_TIMER: &str = "#cfeccf";
/// Asleep for another reason.
pub const ASLEEP_OTHER: &str = "#eadcf5";
/// Events per wake-up bars.
pub const WAKE_BARS: &str = "#6b7b8c";
/// Reading paused by backpressure (a stripe along the top of the lane).
pub const PAUSED: &str = "#d81b60";
/// Outbound queue depth.
pub const QUEUE: &str = "#e8590c";
/// A group's open connections.
pub const OPEN_COUNT: &str = "#c5cad3";

/// Maps a time to x within the plot.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Time at x = 0, microseconds (times before it have a negative x, and are clipped).
    pub start: u64,
    /// Pixels per microsecond.
    pub per_us: f64,
    /// Width of the plot: marks past it are left out (spans are clipped).
    pub width: f64,
    /// Decimals written for x (more for the zoomable page).
    pub decimals: usize,
}

impl Scale {
    /// x of a time.
    pub fn x(&self, t: u64) -> f64 {
        (t as f64 - self.start as f64) * self.per_us
    }

    /// Whether a mark at this time is inside the plot.
    pub fn shows(&self, t: u64) -> bool {
        (0.0..=self.width).contains(&self.x(t))
    }

    /// x of a time, as written.
    pub fn fx(&self, t: u64) -> String {
        format!("{:.*}", self.decimals, self.x(t))
    }
}

/// A path's `d` with vertical ticks, skipping one at the same x as the last.
fn ticks(scale: &Scale, times: &mut [u64], y: f64, h: f64) -> String {
    times.sort_unstable();
    let mut d = String::new();
    let mut last = String::new();
    for &t in times.iter().filter(|&&t| scale.shows(t)) {
        let x = scale.fx(t);
        if x != last {
            let _ = write!(d, "M{x} {y}v{h}");
            last = x;
        }
    }
    d
}

fn stroke_path(out: &mut String, d: &str, color: &str, width: f64) {
    if !d.is_empty() {
        let _ = write!(
            out,
            r#"<path d="{d}" stroke="{color}" stroke-width="{width}" fill="none" vector-effect="non-scaling-stroke"/>"#
        );
    }
}

fn fill_path(out: &mut String, d: &str, color: &str, opacity: f64) {
    if !d.is_empty() {
        let _ = write!(
            out,
            r#"<path d="{d}" fill="{color}" fill-opacity="{opacity}" stroke="none"/>"#
        );
    }
}

/// Marks of any number of lanes, one path per kind.
fn marks<'a>(out: &mut String, scale: &Scale, lanes: impl Iterator<Item = &'a [Mark]>) {
    let mut by_kind: BTreeMap<MarkKind, Vec<u64>> = BTreeMap::new();
    for lane in lanes {
        for mark in lane {
            by_kind.entry(mark.kind).or_default().push(mark.t);
        }
    }
    for (kind, mut times) in by_kind {
        let s = style(kind);
        let width = if s.h >= CONN_H { 1.5 } else { 1.0 };
        stroke_path(out, &ticks(scale, &mut times, s.y, s.h), s.color, width);
    }
}

/// A rectangle from `from` to `to` over the height `y..y+h`.
fn rect(d: &mut String, scale: &Scale, from: u64, to: u64, y: f64, h: f64) {
    let _ = write!(
        d,
        "M{} {y}H{}v{h}H{}Z",
        scale.fx(from),
        scale.fx(to.max(from)),
        scale.fx(from)
    );
}

/// The loop's lane: awake background, sleeps by reason, events per wake, timers.
pub fn loop_lane(out: &mut String, scale: &Scale, lane: &LoopLane, start: u64, end: u64) {
    let mut awake = String::new();
    rect(&mut awake, scale, start, end, 2.0, 20.0);
    fill_path(out, &awake, AWAKE, 1.0);
    for (why, color) in [
        (SleepWhy::Nothing, ASLEEP_IDLE),
        (SleepWhy::Timer, ASLEEP_TIMER),
        (SleepWhy::Other, ASLEEP_OTHER),
    ] {
        let mut d = String::new();
        for s in lane.sleeps.iter().filter(|s| s.why == why) {
            rect(&mut d, scale, s.from, s.to, 2.0, 20.0);
        }
        fill_path(out, &d, color, 1.0);
    }
    // Events per wake-up: a bar whose height grows with the logarithm of the count.
    let mut d = String::new();
    let mut last = String::new();
    for &(t, events) in lane.wakes.iter().filter(|w| scale.shows(w.0)) {
        let h = if events == 0 {
            2.0
        } else {
            (4.0 + 3.0 * (events as f64).log2()).min(18.0)
        };
        let x = scale.fx(t);
        if x != last {
            let _ = write!(d, "M{x} 42v-{h:.1}");
            last = x;
        }
    }
    stroke_path(out, &d, WAKE_BARS, 1.0);
    for (kind, color) in [
        (MarkKind::Timer, style(MarkKind::Timer).color),
        (MarkKind::Other, style(MarkKind::Other).color),
    ] {
        let mut times: Vec<u64> = lane
            .marks
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.t)
            .collect();
        stroke_path(out, &ticks(scale, &mut times, 24.0, 18.0), color, 1.5);
    }
}

/// One connection's lane: lifetime, pauses, queue depth, marks.
pub fn conn_lane(out: &mut String, scale: &Scale, conn: &ConnLane, end: u64) {
    let closed = conn.closed.unwrap_or(end);
    let mid = CONN_H / 2.0;
    let solid_to = conn.lingering.unwrap_or(closed);
    stroke_path(
        out,
        &format!("M{} {mid}H{}", scale.fx(conn.open), scale.fx(solid_to)),
        "#c8ccd0",
        2.0,
    );
    if let Some(from) = conn.lingering {
        let _ = write!(
            out,
            r##"<path d="M{} {mid}H{}" stroke="#8a9096" stroke-width="2" stroke-dasharray="3 2" fill="none" vector-effect="non-scaling-stroke"/>"##,
            scale.fx(from),
            scale.fx(closed),
        );
    }
    pauses(out, scale, std::iter::once(conn), end);
    queue(out, scale, conn, end);
    marks(out, scale, std::iter::once(conn.marks.as_slice()));
}

fn pauses<'a>(
    out: &mut String,
    scale: &Scale,
    conns: impl Iterator<Item = &'a ConnLane>,
    end: u64,
) {
    let mut d = String::new();
    for conn in conns {
        for &(from, to) in &conn.paused {
            rect(
                &mut d,
                scale,
                from,
                to.or(conn.closed).unwrap_or(end),
                0.0,
                4.0,
            );
        }
    }
    fill_path(out, &d, PAUSED, 0.85);
}

/// The outbound queue's depth as a step area, scaled to the lane's deepest.
fn queue(out: &mut String, scale: &Scale, conn: &ConnLane, end: u64) {
    if conn.max_queue == 0 {
        return;
    }
    let base = CONN_H - 1.0;
    let y = |q: u64| base - (CONN_H - 5.0) * q as f64 / conn.max_queue as f64;
    let mut d = format!("M{} {base}", scale.fx(conn.open));
    for &(t, q) in &conn.queue {
        let _ = write!(d, "H{}V{:.1}", scale.fx(t), y(q));
    }
    let _ = write!(d, "H{}V{base}Z", scale.fx(conn.closed.unwrap_or(end)));
    fill_path(out, &d, QUEUE, 0.45);
}

/// A group's lane: how many members were open, their pauses, their marks merged.
pub fn group_lane(out: &mut String, scale: &Scale, t: &Timeline, group: usize) {
    let group = &t.groups[group];
    let size = group.members.len().max(1) as f64;
    let base = CONN_H - 1.0;
    let mut d = format!("M{} {base}", scale.fx(t.start));
    for &(at, count) in &group.open_count {
        let _ = write!(
            d,
            "H{}V{:.1}",
            scale.fx(at),
            base - (CONN_H - 3.0) * count as f64 / size
        );
    }
    let _ = write!(d, "H{}V{base}Z", scale.fx(t.end));
    fill_path(out, &d, OPEN_COUNT, 0.8);
    let members = group.members.iter().map(|&i| &t.conns[i]);
    pauses(out, scale, members.clone(), t.end);
    marks(out, scale, members.map(|c| c.marks.as_slice()));
}

/// A UDP port's lane: one mark per datagram.
pub fn udp_lane(out: &mut String, scale: &Scale, lane_marks: &[Mark]) {
    marks(out, scale, std::iter::once(lane_marks));
}
