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

use std::io;
use std::path::PathBuf;

use crate::apps::stress::hdrlog::read_log;
use crate::apps::stress::report::Report;
use crate::apps::stress::segment::{coverage, Segment};

/// The merged report, and what the merge has to say about the split.
pub struct Merged {
    /// One report for every log.
    pub report: Report,
    /// Warnings for people (segments missing or given twice).
    pub notes: Vec<String>,
}

/// Read and add up the logs at `paths`.
pub fn merge_logs(paths: &[PathBuf]) -> io::Result<Merged> {
    if paths.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "give the --hdr-log files to merge",
        ));
    }
    let mut report = Report::default();
    for path in paths {
        report.merge(&read_log(path)?);
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
    if segments.len() < paths.len() {
        notes.push(format!(
            "{} of {} logs were not made with --segment",
            paths.len() - segments.len(),
            paths.len()
        ));
    }
    // How well the holds were aligned is in the report itself (`segments:` line).
    Ok(Merged { report, notes })
}
