//! `--plot FILE.svg`: the active connections' latency by percentile, as a picture.
//!
//! The chart is HdrHistogram's percentile distribution: x is the percentile on a
//! logarithmic `1/(1-p)` axis (labelled 50%, 90%, 99%, 99.9%, ...: each step to the
//! right is ten times rarer), y the latency in microseconds, also logarithmic, so the
//! median and a tail a thousand times longer are both readable. A flat line is a server
//! whose slowest requests are as fast as its typical ones; the hockey stick at the right
//! is the tail that averages hide. `stress merge --plot` draws several runs on one chart
//! (e.g. 0 idle against 1,000,000 idle), one line and one legend entry each.
//!
//! Each run's points are read from its histogram at fixed percentiles: 20 per decade of
//! `1/(1-p)`, the named ones (50%, 90%, 99%, ...) exactly, and the maximum at the end. A
//! line stops where its samples do: with 1,000 round trips there is no 99.99th
//! percentile to draw. The named percentiles get a marker, and their values are the
//! report's (`Report::quantile`), so the picture and the text never disagree.
//!
//! The SVG is drawn by `plotters` (SVG backend only) into a string; a `<metadata>`
//! element at its end repeats each series' points as JSON, for tools and tests that
//! read numbers rather than pixels.

use std::io;
use std::ops::Range;

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use serde_json::json;

use crate::apps::stress::report::Report;

/// Size of the picture, pixels.
const SIZE: (u32, u32) = (960, 600);
/// Points per decade of `1/(1-p)` between the named percentiles.
const STEPS_PER_DECADE: u32 = 20;
/// The rightmost percentile drawn: 99.9999% (`1/(1-p)` = 10^6).
const MAX_DECADES: u32 = 6;
/// One colour per run, distinct in print and for the common colour blindnesses
/// (Okabe & Ito's palette).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
];

/// One run on the chart.
pub struct Series<'a> {
    /// Its legend entry.
    pub label: String,
    /// Its latency, microseconds.
    pub latency: &'a Histogram<u64>,
}

/// A point of a series: percentile (0-100) and latency (µs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The percentile, 0 to 100.
    pub percentile: f64,
    /// The latency at it, microseconds.
    pub us: u64,
    /// One of the named percentiles (50, 90, 99, ...): drawn with a marker.
    pub named: bool,
}

/// `log10(1/(1-p))` for a percentile `p` (0-100): the x coordinate.
fn x_of(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

/// The percentile at x coordinate `x`.
fn percentile_at(x: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-x))
}

/// How many decades of `1/(1-p)` `count` samples fill: the 99th percentile needs 100.
fn decades_of(count: u64) -> f64 {
    (count.max(1) as f64).log10().min(MAX_DECADES as f64)
}

/// The points of `h`'s percentile distribution.
pub fn points(h: &Histogram<u64>) -> Vec<Point> {
    if h.is_empty() {
        return Vec::new();
    }
    let end = decades_of(h.len());
    let mut xs: Vec<(f64, bool)> = (0..=(MAX_DECADES * STEPS_PER_DECADE))
        .map(|i| (f64::from(i) / f64::from(STEPS_PER_DECADE), false))
        .filter(|&(x, _)| x < end)
        .collect();
    // The named percentiles, exactly: 50% and every decade from 90%.
    xs.push((x_of(50.0), true));
    xs.extend((1..=MAX_DECADES).map(|d| (f64::from(d), true)));
    xs.retain(|&(x, _)| x <= end + 1e-9);
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    xs.dedup_by(|b, a| {
        // Keep one of two (nearly) equal xs, named if either is.
        let same = (a.0 - b.0).abs() < 1e-9;
        a.1 |= same && b.1;
        same
    });
    let mut out: Vec<Point> = xs
        .into_iter()
        .map(|(x, named)| {
            // Named ones as round numbers (99.9, not 99.90000000000001), which is also
            // what the report asks the histogram for.
            let percentile = if named {
                (percentile_at(x) * 1e6).round() / 1e6
            } else {
                percentile_at(x)
            };
            Point {
                percentile,
                us: h.value_at_quantile(percentile / 100.0),
                named,
            }
        })
        .collect();
    // The maximum, where the samples end.
    out.push(Point {
        percentile: percentile_at(end),
        us: h.max(),
        named: false,
    });
    out
}

/// The largest of 1, 2, 5 × 10^k at or below `us`.
fn nice_floor(us: u64) -> f64 {
    let decade = 10f64.powf((us as f64).log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|&t| t <= us as f64)
        .unwrap_or(decade)
}

/// A number of microseconds for an axis label: 1,000,000 rather than 1e6.
fn grouped(us: u64) -> String {
    let digits = us.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A percentile for the x axis: 0%, 50%, 90%, 99%, 99.9%, ...
fn percent_label(x: f64) -> String {
    let p = (percentile_at(x) * 1e6).round() / 1e6;
    format!("{p}%")
}

/// An axis over `log10` of the values, with ticks exactly where we say (50%, 90%, ...
/// or 1, 2, 5 × 10^k µs) rather than at plotters' round linear numbers.
struct LogAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let at = (value - self.range.start) / span;
        limit.0 + (at * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("drawing the plot: {e:?}"))
}

/// The chart of `series` as an SVG document.
pub fn svg(title: &str, series: &[Series]) -> io::Result<String> {
    let all: Vec<Vec<Point>> = series.iter().map(|s| points(s.latency)).collect();
    let decades = series
        .iter()
        .map(|s| decades_of(s.latency.len()).ceil())
        .fold(2.0f64, f64::max);
    let (lo, hi) = all
        .iter()
        .flatten()
        .fold((u64::MAX, 1u64), |(lo, hi), p| (lo.min(p.us), hi.max(p.us)));
    let lo = if lo == u64::MAX { 1 } else { lo };
    // Whole decades of y that hold every point, with a little room.
    // From the 1-2-5 tick at or below the fastest point to a little above the slowest
    // (not a whole decade more: that would squash the lines into the lower part).
    let y_lo = nice_floor(lo.max(1)).log10();
    let y_hi = ((hi.max(1) as f64).log10() + 0.08).max(y_lo + 1.0);
    let x_keys: Vec<f64> = std::iter::once(0.0)
        .chain(std::iter::once(x_of(50.0)))
        .chain((1..=decades as u32).map(f64::from))
        .collect();
    let y_keys: Vec<f64> = (y_lo as i32..=y_hi as i32)
        .flat_map(|d| [1.0, 2.0, 5.0].map(|m| (m * 10f64.powi(d)).log10()))
        .filter(|&y| y >= y_lo - 1e-9 && y <= y_hi + 1e-9)
        .collect();

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            // Room for the last percentile's label, centred on the right edge.
            .margin_right(40)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                LogAxis {
                    range: 0.0..decades,
                    ticks: x_keys,
                },
                LogAxis {
                    range: y_lo..y_hi,
                    ticks: y_keys,
                },
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-p): each step ten times rarer)")
            .y_desc("latency, µs (log scale)")
            .x_label_formatter(&|x| percent_label(*x))
            .y_label_formatter(&|y| grouped(10f64.powf(*y).round() as u64))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()
            .map_err(plot_error)?;
        let y_of = |us: u64| (us.max(1) as f64).log10();
        for (i, (s, pts)) in series.iter().zip(&all).enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let style = ShapeStyle::from(colour).stroke_width(2);
            let label = if pts.is_empty() {
                format!("{} (no round trips)", s.label)
            } else {
                s.label.clone()
            };
            chart
                .draw_series(LineSeries::new(
                    pts.iter()
                        .map(|p| (x_of(p.percentile).min(decades), y_of(p.us))),
                    style,
                ))
                .map_err(plot_error)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 2), (x + 20, y + 2)], colour.filled())
                });
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| p.named)
                        .map(|p| Circle::new((x_of(p.percentile), y_of(p.us)), 4, colour.filled())),
                )
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    let meta = json!({
        "x": "percentile",
        "y": "latency_us",
        "series": series.iter().zip(&all).map(|(s, pts)| json!({
            "label": s.label,
            "samples": s.latency.len(),
            "points": pts.iter().map(|p| json!([p.percentile, p.us])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let meta = format!(
        "<metadata id=\"netloop-plot\">{}</metadata>\n",
        escape(&meta.to_string())
    );
    match text.rfind("</svg>") {
        Some(at) => text.insert_str(at, &meta),
        None => return Err(io::Error::other("drawing the plot: no </svg> written")),
    }
    Ok(text)
}

/// Text for an XML element's content.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A legend entry for a run: what it held, its p99, how much it measured.
pub fn label(report: &Report) -> String {
    format!(
        "{} idle + {} active: p99 {} µs ({} round trips)",
        grouped(report.conns_requested.saturating_sub(report.active)),
        grouped(report.active),
        grouped(report.quantile(0.99)),
        grouped(report.round_trips)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::stress::report::{new_histogram, record_us};

    #[test]
    fn named_points_are_the_histograms_percentiles_and_lines_stop_with_the_samples() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_us(&mut h, 50 + us / 10);
        }
        let pts = points(&h);
        let named: Vec<f64> = pts
            .iter()
            .filter(|p| p.named)
            .map(|p| p.percentile)
            .collect();
        assert_eq!(named, vec![50.0, 90.0, 99.0, 99.9, 99.99]);
        for p in pts.iter().filter(|p| p.named) {
            assert_eq!(p.us, h.value_at_quantile(p.percentile / 100.0), "{p:?}");
        }
        assert_eq!(pts.last().map(|p| p.us), Some(h.max()));
        assert!(pts
            .windows(2)
            .all(|w| w[0].percentile <= w[1].percentile && w[0].us <= w[1].us));
        assert!(points(&new_histogram()).is_empty());
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(999), "999");
        assert_eq!(nice_floor(8), 5.0);
        assert_eq!(nice_floor(250), 200.0);
        assert_eq!(nice_floor(1), 1.0);
        assert_eq!(percent_label(3.0), "99.9%");
        assert_eq!(percent_label(x_of(50.0)), "50%");
    }
}
