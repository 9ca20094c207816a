//! Words and the frame around the lanes: the title, the summary, the legend, the time
//! axis, and the small formatters they share (escaping, durations, byte counts).

use std::fmt::Write as _;

use super::lanes;
use super::layout::{MarkKind, Timeline};
use super::svg::LABEL_W;

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

/// Draw the title, the summary line, the record's notes and the legend into `body`;
/// returns the y below them. `(from, to)`: the stretch of time shown, in microseconds
/// from the record's start.
pub fn header(
    body: &mut String,
    t: &Timeline,
    title: &str,
    (from, to): (u64, u64),
    total_w: f64,
) -> f64 {
    let span = t.end.saturating_sub(t.start).max(1);
    let _ = write!(
        body,
        r#"<text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
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
    if to - from < span {
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
    y
}

/// The time axis over the plot, with grid lines down to `height`: round steps, labels
/// counted from the record's start.
pub fn axis(scale: &lanes::Scale, (from, to): (u64, u64), axis_y: f64, height: f64) -> String {
    let mut axis = String::new();
    let step = nice_step((to - from) as f64 * 90.0 / scale.width);
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

    axis
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
