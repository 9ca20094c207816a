//! `netloop stress --plot` and `stress merge --plot`: the latency-by-percentile chart.
//!
//! The SVG is read back as XML (roxmltree): one line per run, the axis labels, and the
//! points where the report says they are: the chart's metadata gives each named
//! percentile's value exactly (it must equal the report's p50/p90/p99), and the marker
//! drawn for it sits at the pixel the chart's own tick labels put that value at. An
//! existing file is refused, never overwritten. Bounded: a few connections, one or two
//! seconds of hold each, every run waited for at most `common::TIMEOUT`.

mod common;
mod stress_common;

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::{Server, TempPath};
use stress_common::*;

/// What the test reads from a chart.
struct Chart {
    /// The `<metadata>` JSON: `series: [{label, samples, points: [[percentile, us]]}]`.
    meta: Value,
    /// Each series' line: its colour and its points, pixels.
    lines: Vec<(String, Vec<(f64, f64)>)>,
    /// Markers: colour, centre.
    circles: Vec<(String, f64, f64)>,
    /// Every text: its content and position.
    texts: Vec<(String, f64, f64)>,
}

fn attr_f(node: roxmltree::Node, name: &str) -> f64 {
    node.attribute(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} of {node:?}"))
}

#[track_caller]
fn read_chart(path: &std::path::Path) -> Chart {
    let text = fs::read_to_string(path).expect("read the SVG");
    let doc = roxmltree::Document::parse(&text).expect("the SVG parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut chart = Chart {
        meta: Value::Null,
        lines: Vec::new(),
        circles: Vec::new(),
        texts: Vec::new(),
    };
    for node in doc.descendants().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "metadata" => {
                chart.meta = serde_json::from_str(node.text().expect("metadata text"))
                    .expect("metadata is JSON")
            }
            // The series are the wide lines (axes and ticks are 1 px).
            "polyline" if node.attribute("stroke-width") == Some("2") => {
                let points = node
                    .attribute("points")
                    .expect("points")
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                let colour = node.attribute("stroke").expect("stroke").to_string();
                chart.lines.push((colour, points));
            }
            "circle" => chart.circles.push((
                node.attribute("fill").expect("fill").to_string(),
                attr_f(node, "cx"),
                attr_f(node, "cy"),
            )),
            "text" => chart.texts.push((
                node.text().unwrap_or("").trim().to_string(),
                attr_f(node, "x"),
                attr_f(node, "y"),
            )),
            _ => {}
        }
    }
    chart
}

impl Chart {
    #[track_caller]
    fn text(&self, content: &str) -> (f64, f64) {
        self.texts
            .iter()
            .find(|t| t.0 == content)
            .map(|t| (t.1, t.2))
            .unwrap_or_else(|| panic!("no text {content:?} in {:?}", self.texts))
    }

    #[track_caller]
    fn has_text(&self, part: &str) -> bool {
        self.texts.iter().any(|t| t.0.contains(part))
    }

    /// The pixel row of `us` µs on the y axis, from two of its tick labels (log scale).
    fn y_of(&self, us: f64) -> f64 {
        let ticks: Vec<(f64, f64)> = self
            .texts
            .iter()
            .filter_map(|t| Some((t.0.replace(',', "").parse::<f64>().ok()?, t.2)))
            .filter(|(v, _)| *v >= 1.0)
            .collect();
        let (a, b) = (ticks.first().unwrap(), ticks.last().unwrap());
        assert!(a.0 != b.0, "two distinct y tick labels: {ticks:?}");
        let per_decade = (b.1 - a.1) / (b.0.log10() - a.0.log10());
        a.1 + (us.log10() - a.0.log10()) * per_decade
    }

    /// Check one series against a report: the named points' values are the report's
    /// percentiles, and their markers are drawn where the axes put those values.
    #[track_caller]
    fn check_series(&self, i: usize, report: &Value) {
        let series = &self.meta["series"][i];
        let (colour, line) = &self.lines[i];
        let points = series["points"].as_array().expect("points");
        assert_eq!(line.len(), points.len(), "one drawn point per point");
        let samples = series["samples"].as_u64().unwrap();
        assert_eq!(
            samples,
            report["round_trips"].as_u64().unwrap() + report["unanswered"].as_u64().unwrap(),
            "{report}"
        );
        assert!(samples >= 100, "too few round trips for a p99: {report}");
        for (percentile, key, label) in [
            (50.0, "p50_us", "50%"),
            (90.0, "p90_us", "90%"),
            (99.0, "p99_us", "99%"),
            (99.9, "p999_us", "99.9%"),
        ] {
            if percentile == 99.9 && samples < 1000 {
                continue; // no 99.9th percentile point below 1,000 samples
            }
            let point = points
                .iter()
                .find(|p| p[0].as_f64() == Some(percentile))
                .unwrap_or_else(|| panic!("no {percentile}% point in {series}"));
            let us = point[1].as_u64().unwrap();
            assert_eq!(
                Some(us),
                report[key].as_u64(),
                "{key}: {series} vs {report}"
            );
            let (x, _) = self.text(label);
            let marker = self
                .circles
                .iter()
                .find(|c| &c.0 == colour && (c.1 - x).abs() <= 1.0)
                .unwrap_or_else(|| panic!("no {label} marker of {colour}: {:?}", self.circles));
            let want = self.y_of(us as f64);
            assert!(
                (marker.2 - want).abs() <= 2.0,
                "{label} marker at y {} but {us} µs is at {want}",
                marker.2
            );
        }
        // The line ends at the maximum.
        assert_eq!(
            points.last().unwrap()[1].as_u64(),
            report["max_us"].as_u64(),
            "{series}"
        );
    }
}

#[test]
fn plot_of_one_run_shows_its_percentiles_and_never_overwrites() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let svg = TempPath::new("plot.svg");
    let run = stress(&[
        &addr,
        "--idle",
        "20",
        "--active",
        "2",
        "--hold",
        "2",
        "--plot",
        svg.as_str(),
    ]);
    assert_succeeded(&run);
    let chart = read_chart(&svg.0);
    assert_eq!(chart.lines.len(), 1, "one series");
    assert_eq!(chart.meta["series"].as_array().map(Vec::len), Some(1));
    for label in ["0%", "50%", "90%", "99%", "99.9%"] {
        chart.text(label);
    }
    assert!(chart.has_text("percentile"), "x axis description");
    assert!(chart.has_text("latency, µs"), "y axis description");
    assert!(
        chart.has_text("20 idle + 2 active"),
        "legend: {:?}",
        chart.texts
    );
    chart.check_series(0, run.report());

    // Again with the same file: refused before connecting, the chart left as it was.
    let before = fs::read(&svg.0).unwrap();
    let again = stress(&[
        &addr,
        "--active",
        "1",
        "--hold",
        "1",
        "--plot",
        svg.as_str(),
    ]);
    assert_failed_with(&again, &format!("--plot {}: already exists", svg.as_str()));
    assert!(again.json.is_none(), "refused before running: {again:?}");
    assert_eq!(fs::read(&svg.0).unwrap(), before, "never overwritten");

    // Nothing to plot without active connections: refused, and no file left behind.
    let empty = TempPath::new("empty.svg");
    let idle_only = stress(&[&addr, "--idle", "2", "--plot", empty.as_str()]);
    assert_failed_with(&idle_only, "--plot draws the active connections' latency");
    assert!(!empty.0.exists());

    // The same rule for --hdr-log.
    let log = TempPath::new("existing.hlog");
    fs::write(&log.0, b"someone else's").unwrap();
    let refused = stress(&[&addr, "--active", "1", "--hdr-log", log.as_str()]);
    assert_failed_with(
        &refused,
        &format!("--hdr-log {}: already exists", log.as_str()),
    );
    assert_eq!(fs::read(&log.0).unwrap(), b"someone else's");
}

/// Two runs (one on its own, one split in two segments) on one chart: one line and one
/// legend entry each, each line matching its own run's report.
#[test]
fn merge_plot_draws_each_run_on_one_chart() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr().to_string();
    let alone = TempPath::new("alone.hlog");
    let seg: Vec<TempPath> = (0..2)
        .map(|k| TempPath::new(&format!("seg{k}.hlog")))
        .collect();
    let base = stress(&[
        &addr,
        "--active",
        "2",
        "--hold",
        "1",
        "--hdr-log",
        alone.as_str(),
    ]);
    assert_succeeded(&base);
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .ceil()
        + 2.0;
    let start = format!("{start_at}");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|k| {
                let (addr, start, log) = (&addr, &start, seg[k].as_str());
                scope.spawn(move || {
                    let segment = format!("{k}/2");
                    stress(&[
                        addr,
                        "--idle",
                        "40",
                        "--active",
                        "2",
                        "--hold",
                        "1",
                        "--segment",
                        &segment,
                        "--start-at",
                        start,
                        "--hdr-log",
                        log,
                    ])
                })
            })
            .collect();
        for h in handles {
            assert_succeeded(&h.join().unwrap());
        }
    });

    let svg = TempPath::new("runs.svg");
    let merged = stress(&[
        "merge",
        alone.as_str(),
        seg[0].as_str(),
        seg[1].as_str(),
        "--plot",
        svg.as_str(),
        "--label",
        "0 idle",
    ]);
    assert_succeeded(&merged);
    let runs = merged.report()["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 2, "{:?}", merged.json);
    assert_eq!(runs[0]["label"], "0 idle");
    assert_eq!(runs[0]["files"].as_array().map(Vec::len), Some(1));
    assert_eq!(runs[1]["files"].as_array().map(Vec::len), Some(2));
    assert_eq!(runs[1]["report"]["conns_requested"], 42, "{}", runs[1]);
    assert!(
        merged.stderr.contains("== run 2 of 2: 40 idle + 2 active"),
        "{}",
        merged.stderr
    );

    let chart = read_chart(&svg.0);
    assert_eq!(chart.lines.len(), 2, "one line per run");
    assert_ne!(chart.lines[0].0, chart.lines[1].0, "in two colours");
    assert!(chart.has_text("0 idle"), "{:?}", chart.texts);
    assert!(chart.has_text("40 idle + 2 active"), "{:?}", chart.texts);
    for (i, run) in runs.iter().enumerate() {
        chart.check_series(i, &run["report"]);
    }

    // One log cannot hold two runs; and the chart is not overwritten.
    let out = TempPath::new("both.hlog");
    let two = stress(&[
        "merge",
        alone.as_str(),
        seg[0].as_str(),
        "--hdr-log",
        out.as_str(),
    ]);
    assert_failed_with(&two, "--hdr-log writes one run");
    assert!(!out.0.exists(), "nothing left behind");
    let again = stress(&["merge", alone.as_str(), "--plot", svg.as_str()]);
    assert_failed_with(&again, "already exists");
}
