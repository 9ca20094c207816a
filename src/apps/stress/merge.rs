//! `netloop stress merge FILE...`: the segments of a split test, added up into one run.
//!
//! Each instance of a test split with `--segment K/N` writes its `--hdr-log`: interval
//! histograms of its latency plus its counters. Merging reads them all and adds them
//! *exactly*: counters are summed (connections, errors, round trips, memory), the
//! histograms are added bucket by bucket — which gives the percentiles of all samples
//! together, not an average of percentiles — and interval *i* of every log is added into
//! interval *i* of the merged one (the instances began their holds together, at
//! `--start-at`). The result is printed as the report of one run (`--json` too), and
//! can be written as one log again.
//!
//! The merge also checks the split: a segment missing or given twice is said (`K/N`
//! shares are only a whole when each is there once); and the report says how far apart
//! the instances began their holds, which tells whether they measured the same window.
//!
//! The files given may be several *runs*, to compare them (`--plot` draws one line per
//! run, e.g. 0 idle against 1,000,000 idle): the segments of one split test (the same
//! `N` and the same `--start-at`) are one run, and every other log is a run of its own.
//! Runs are kept in the order their first file was given.

use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::apps::stress::hdrlog::{self, read_log};
use crate::apps::stress::output::Claimed;
use crate::apps::stress::plot;
use crate::apps::stress::report::Report;
use crate::apps::stress::run::{print_report_as, verdict};
use crate::apps::stress::segment::{coverage, Segment};

/// What `netloop stress merge` was asked.
#[derive(Clone, Debug, Default)]
pub struct MergeOptions {
    /// The `--hdr-log` files.
    pub files: Vec<PathBuf>,
    /// One JSON object on stdout.
    pub json: bool,
    /// Write the merged log into this new file (one run only).
    pub hdr_log: Option<PathBuf>,
    /// Draw every run on one chart in this new file.
    pub plot: Option<PathBuf>,
    /// Legend entries of the runs, in order (the rest: `Merged::label`).
    pub labels: Vec<String>,
}

/// One run's merged report, and what the merge has to say about its split.
pub struct Merged {
    /// The logs it was added up from, in the order given.
    pub files: Vec<PathBuf>,
    /// One report for every log of the run.
    pub report: Report,
    /// Warnings for people (segments missing or given twice).
    pub notes: Vec<String>,
}

impl Merged {
    /// The run's name in a legend: what it held and how much it measured.
    pub fn label(&self) -> String {
        plot::label(&self.report)
    }
}

/// The split a log is a segment of: its `N` and its `--start-at` (as bits).
type RunKey = (u64, Option<u64>);

/// Which run a log belongs to: the split it is a segment of, or none (a run of its own).
fn run_key(report: &Report) -> Option<RunKey> {
    let n = report.segments.first()?.parse::<Segment>().ok()?.n;
    Some((n, report.start_at.map(f64::to_bits)))
}

/// Read the logs at `paths` and add them up, one `Merged` per run (see the module docs).
pub fn merge_runs(paths: &[PathBuf]) -> io::Result<Vec<Merged>> {
    if paths.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "give the --hdr-log files to merge",
        ));
    }
    // Each run's key and its logs, in the order given.
    type Logs = Vec<(PathBuf, Report)>;
    let mut groups: Vec<(Option<RunKey>, Logs)> = Vec::new();
    for path in paths {
        let report = read_log(path)?;
        let key = run_key(&report);
        match groups.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, logs)) => logs.push((path.clone(), report)),
            None => groups.push((key, vec![(path.clone(), report)])),
        }
    }
    Ok(groups
        .into_iter()
        .map(|(_, logs)| merge_one(logs))
        .collect())
}

/// Add up the logs of one run.
fn merge_one(logs: Vec<(PathBuf, Report)>) -> Merged {
    let mut report = Report::default();
    let mut files = Vec::new();
    for (path, one) in &logs {
        report.merge(one);
        files.push(path.clone());
    }
    let mut notes = Vec::new();
    let segments: Vec<Segment> = report
        .segments
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let (missing, doubled) = coverage(&segments);
    let list = |v: &[Segment]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !missing.is_empty() {
        notes.push(format!(
            "segments missing: {} (the merged figures are not the whole test)",
            list(&missing)
        ));
    }
    if !doubled.is_empty() {
        notes.push(format!(
            "segments given more than once or of another split: {}",
            list(&doubled)
        ));
    }
    // How well the holds were aligned is in the report itself (`segments:` line).
    Merged {
        files,
        report,
        notes,
    }
}

/// `netloop stress merge`: read, add up, write `--hdr-log` and `--plot`, print the
/// report of each run and judge them.
pub fn run(args: &MergeOptions) -> io::Result<()> {
    // The output files first: an existing one is refused before any work.
    let mut hdr_log = Claimed::maybe(args.hdr_log.as_deref(), "--hdr-log")?;
    let mut plot_file = Claimed::maybe(args.plot.as_deref(), "--plot")?;
    let runs = merge_runs(&args.files)?;
    if hdr_log.is_some() && runs.len() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--hdr-log writes one run, and these files hold {} runs (the segments of one \
                 split share N and --start-at): merge each run's files on their own",
                runs.len()
            ),
        ));
    }
    if args.labels.len() > runs.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} --label given for {} run(s)",
                args.labels.len(),
                runs.len()
            ),
        ));
    }
    let labels: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| args.labels.get(i).cloned().unwrap_or_else(|| run.label()))
        .collect();
    for (run, label) in runs.iter().zip(&labels) {
        for note in &run.notes {
            if runs.len() > 1 {
                log::warn!("{label}: {note}");
            } else {
                log::warn!("{note}");
            }
        }
    }
    if let (Some(file), [run]) = (&mut hdr_log, &runs[..]) {
        hdrlog::write_log(file, &run.report)?;
    }
    if let Some(file) = &mut plot_file {
        let series: Vec<plot::Series> = runs
            .iter()
            .zip(&labels)
            .map(|(run, label)| plot::Series {
                label: label.clone(),
                latency: &run.report.latency,
            })
            .collect();
        let title = if runs.len() > 1 {
            "netloop stress: latency of the active connections, run by run"
        } else {
            "netloop stress: latency of the active connections"
        };
        file.write(plot::svg(title, &series)?.as_bytes())?;
    }
    match &runs[..] {
        [run] => print_report_as(args.json, &run.report)?,
        _ => print_runs(args.json, &runs, &labels)?,
    }
    // Judged run by run: the first that did not hold what it asked fails the merge.
    runs.iter().try_for_each(|run| verdict(&run.report))
}

/// Several runs' reports: each under a heading (text), or one JSON object of them all.
fn print_runs(json: bool, runs: &[Merged], labels: &[String]) -> io::Result<()> {
    let mut text = String::new();
    for (i, (run, label)) in runs.iter().zip(labels).enumerate() {
        let files: Vec<String> = run.files.iter().map(|f| f.display().to_string()).collect();
        text.push_str(&format!(
            "== run {} of {}: {label} ({})\n{}",
            i + 1,
            runs.len(),
            files.join(" "),
            run.report.human()
        ));
    }
    if json {
        eprint!("{text}");
        let all: Vec<Value> = runs
            .iter()
            .zip(labels)
            .map(|(run, label)| {
                json!({
                    "label": label,
                    "files": run.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                    "report": run.report.to_json(false),
                })
            })
            .collect();
        let mut out = io::stdout().lock();
        writeln!(out, "{}", json!({ "runs": all }))?;
        out.flush()
    } else {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}
