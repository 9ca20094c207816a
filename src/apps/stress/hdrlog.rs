//! `--hdr-log FILE`: the active connections' latency as an HdrHistogram interval log.
//!
//! Percentiles cannot be averaged: the p99 of four load generators is not the mean of
//! their four p99s. What *can* be combined exactly is the histogram itself, so that is
//! what each instance keeps: HdrHistogram's interval log (format V2, the one the Java
//! and Rust HdrHistogram tools read: `HistogramLogProcessor`, `hdr-plot`), a histogram
//! per `INTERVAL` of the hold, each line `start,length,max,<V2 compressed, base64>`,
//! values in microseconds. `stress merge` (`merge.rs`) adds the histograms of any
//! number of logs, which gives exactly the percentiles one histogram of all the samples
//! would have.
//!
//! The log also carries the run's counters (connections, errors, round trips, the JSON
//! report without its percentiles), as one comment line, `#netloop-stress-report {…}`,
//! which the HdrHistogram tools skip as they skip every comment.
//!
//! Recording: while the hold lasts, each sample goes into the run's histogram and into
//! the current interval's (`IntervalRecorder`); every `INTERVAL` (a loop timer) the
//! interval is closed, compressed (a few hundred bytes) and a fresh one begins. The last,
//! partial interval is closed with the books, after the drain, so every sample of the
//! run is in exactly one interval. Worker processes send their intervals to the parent
//! in their report; the parent adds interval *i* of every worker into interval *i* of
//! the run (all holds started on the same `go`), and writes the log.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde_json::Value;

use crate::apps::stress::output::Claimed;
use crate::apps::stress::report::{new_histogram, record_us, Report};

/// Length of one interval of the log.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// What starts the comment line that holds the run's counters.
pub const REPORT_COMMENT: &str = "netloop-stress-report ";

/// One interval of a hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// When it began, seconds since the Unix epoch.
    pub start: f64,
    /// Its length, seconds.
    pub secs: f64,
    /// Its histogram, V2 deflate-compressed, base64 (as on a log line).
    pub encoded: String,
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A histogram as a log line carries it.
pub fn encode(h: &Histogram<u64>) -> io::Result<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| bad_data(format!("compress a histogram: {e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A histogram back from a log line, in the run's bounds (so it can be added).
pub fn decode(text: &str) -> io::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| bad_data(format!("histogram is not base64: {e}")))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| bad_data(format!("unreadable histogram: {e:?}")))?;
    let mut ours = new_histogram();
    for v in h.iter_recorded() {
        let _ = ours.record_n(v.value_iterated_to().max(1), v.count_at_value());
    }
    Ok(ours)
}

/// Add interval `b` into `a` (the same window of two processes or hosts).
pub fn add_interval(a: &mut Interval, b: &Interval) -> io::Result<()> {
    let mut h = decode(&a.encoded)?;
    h.add(decode(&b.encoded)?)
        .map_err(|e| bad_data(format!("add histograms: {e:?}")))?;
    a.encoded = encode(&h)?;
    a.start = a.start.min(b.start);
    a.secs = a.secs.max(b.secs);
    Ok(())
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The intervals of one process's hold, as it goes.
pub struct IntervalRecorder {
    current: Histogram<u64>,
    /// When the current interval began: wall clock (for the log), monotonic (its length).
    began: (SystemTime, Instant),
    /// The intervals closed so far.
    pub done: Vec<Interval>,
}

impl IntervalRecorder {
    /// Start the first interval now.
    pub fn new() -> IntervalRecorder {
        IntervalRecorder {
            current: new_histogram(),
            began: (SystemTime::now(), Instant::now()),
            done: Vec::new(),
        }
    }

    /// One sample into the current interval.
    pub fn record(&mut self, us: u64) {
        record_us(&mut self.current, us);
    }

    /// Close the current interval now and begin the next.
    pub fn cut(&mut self) -> io::Result<()> {
        let (wall, mono) = self.began;
        self.done.push(Interval {
            start: unix_secs(wall),
            secs: mono.elapsed().as_secs_f64(),
            encoded: encode(&self.current)?,
        });
        self.current.reset();
        self.began = (SystemTime::now(), Instant::now());
        Ok(())
    }
}

impl Default for IntervalRecorder {
    fn default() -> Self {
        IntervalRecorder::new()
    }
}

/// Write `report` as an interval log into `file`, claimed before the run (an existing
/// file is refused, never overwritten: `output.rs`).
pub fn write_log(file: &mut Claimed, report: &Report) -> io::Result<()> {
    let bytes = log_bytes(file.path(), report)?;
    file.write(&bytes)
}

/// `report` as the text of an interval log (`path` only names it in messages).
fn log_bytes(path: &Path, report: &Report) -> io::Result<Vec<u8>> {
    let shown = path.display();
    let base = report
        .intervals
        .first()
        .map_or_else(|| unix_secs(SystemTime::now()), |i| i.start);
    let base_time = UNIX_EPOCH + Duration::from_secs_f64(base.max(0.0));
    let mut text: Vec<u8> = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("netloop stress: latency of the active connections, microseconds")
            .with_start_time(base_time)
            .with_base_time(base_time)
            .with_max_value_divisor(1.0)
            .begin_log_with(&mut text, &mut serializer)
            .map_err(|e| io::Error::new(e.kind(), format!("{shown}: {e}")))?;
        log.write_comment(&format!("{REPORT_COMMENT}{}", report.to_json(false)))?;
        for i in &report.intervals {
            let h = decode(&i.encoded)?;
            let at = Duration::from_secs_f64((i.start - base).max(0.0));
            log.write_histogram(&h, at, Duration::from_secs_f64(i.secs.max(0.0)), None)
                .map_err(|e| bad_data(format!("{shown}: {e}")))?;
        }
    }
    Ok(text)
}

/// Read a log written by `write_log` back into a report: the counters from its comment,
/// the latency from its intervals (their sum).
pub fn read_log(path: &Path) -> io::Result<Report> {
    let shown = path.display();
    let bytes = fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{shown}: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let counters = text
        .lines()
        .find_map(|l| l.strip_prefix('#')?.strip_prefix(REPORT_COMMENT))
        .ok_or_else(|| {
            bad_data(format!(
                "{shown}: no `#{REPORT_COMMENT}` line: not an --hdr-log of netloop stress"
            ))
        })?;
    let v: Value = serde_json::from_str(counters)
        .map_err(|e| bad_data(format!("{shown}: unreadable report line: {e}")))?;
    let mut report = Report::from_json(&v)
        .ok_or_else(|| bad_data(format!("{shown}: the report line lacks counters")))?;
    let mut base = 0.0;
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.map_err(|e| bad_data(format!("{shown}: {e:?}")))? {
            LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(i) => {
                let h =
                    decode(i.encoded_histogram()).map_err(|e| bad_data(format!("{shown}: {e}")))?;
                report
                    .latency
                    .add(&h)
                    .map_err(|e| bad_data(format!("{shown}: {e:?}")))?;
                report.intervals.push(Interval {
                    start: base + i.start_timestamp().as_secs_f64(),
                    secs: i.duration().as_secs_f64(),
                    encoded: i.encoded_histogram().to_string(),
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Samples split over any number of processes and intervals, each written to its
        /// own log and merged back, give exactly the histogram of all the samples.
        #[test]
        fn merged_logs_equal_one_histogram_of_every_sample(
            samples in proptest::collection::vec(1u64..50_000_000, 1..400),
            parts in 1usize..5,
            cuts in 1usize..4,
        ) {
            let mut whole = new_histogram();
            let mut merged = Report::default();
            for p in 0..parts {
                let mut rec = IntervalRecorder::new();
                let mine: Vec<u64> = samples.iter().copied().skip(p).step_by(parts).collect();
                for (i, &us) in mine.iter().enumerate() {
                    rec.record(us);
                    record_us(&mut whole, us);
                    if i % (mine.len() / cuts + 1) == 0 {
                        rec.cut().unwrap();
                    }
                }
                rec.cut().unwrap();
                let mut one = Report { intervals: rec.done, ..Report::default() };
                for i in &one.intervals {
                    one.latency.add(decode(&i.encoded).unwrap()).unwrap();
                }
                let path = std::env::temp_dir()
                    .join(format!("netloop-hdrlog-{}-{p}.hlog", std::process::id()));
                write_log(&mut Claimed::new(&path, "--hdr-log").unwrap(), &one).unwrap();
                let back = read_log(&path).unwrap();
                let _ = fs::remove_file(&path);
                prop_assert_eq!(back.latency.len(), one.latency.len());
                merged.merge(&back);
            }
            prop_assert_eq!(merged.latency.len(), whole.len());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                prop_assert_eq!(
                    merged.latency.value_at_quantile(q),
                    whole.value_at_quantile(q)
                );
            }
            prop_assert_eq!(merged.latency.max(), whole.max());
        }
    }
}
