//! `netloop stress` past one machine, on one machine: N processes, each with its own
//! `--segment K/N` and its own source address on loopback, standing in for N hosts,
//! all beginning their hold at the same `--start-at`; `stress merge` adds their
//! `--hdr-log` files up, and the result must be what one histogram of every sample
//! gives. Bounded: a few connections each, a one-second hold, waits bounded by
//! `common::TIMEOUT`.

mod common;
mod stress_common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

use common::TempPath;
use stress_common::*;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every histogram of an interval log, added up (read with the HdrHistogram crate's own
/// reader, not netloop's).
fn log_histogram(path: &std::path::Path) -> Histogram<u64> {
    let bytes = std::fs::read(path).expect("read log");
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = entry.expect("log entry") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .expect("base64");
            let h: Histogram<u64> = Deserializer::new().deserialize(&mut &raw[..]).unwrap();
            total.add(h).unwrap();
        }
    }
    total
}

#[test]
fn four_local_hosts_merge_into_one_run() {
    const N: usize = 4;
    let echoed = Arc::new(AtomicU64::new(0));
    let peers: Arc<Mutex<BTreeSet<IpAddr>>> = Arc::default();
    let server = {
        let (echoed, peers) = (echoed.clone(), peers.clone());
        ThreadServer::start(move |s, _| {
            peers.lock().unwrap().insert(s.peer_addr().unwrap().ip());
            echo_counting(s, &echoed)
        })
    };
    let addr = server.addr();
    let logs: Vec<TempPath> = (0..N)
        .map(|k| TempPath::new(&format!("seg{k}.hlog")))
        .collect();
    // Far enough ahead for every instance to connect first.
    let start_at = (unix_now() + 3.0).ceil();
    let start_text = format!("{start_at}");
    let runs: Vec<Run> = thread::scope(|scope| {
        let handles: Vec<_> = (0..N)
            .map(|k| {
                let (addr, start_text, log) = (&addr, &start_text, logs[k].as_str());
                scope.spawn(move || {
                    let segment = format!("{k}/{N}");
                    let source = format!("127.0.0.{}", 10 + k);
                    stress(&[
                        addr,
                        "--idle",
                        "10",
                        "--active",
                        "6",
                        "--hold",
                        "1",
                        "--segment",
                        &segment,
                        "--source-ips",
                        &source,
                        "--start-at",
                        start_text,
                        "--hdr-log",
                        log,
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut round_trips = 0;
    for (k, run) in runs.iter().enumerate() {
        assert_succeeded(run);
        let v = run.report();
        assert_report_shape(v);
        assert_eq!(v["segments"][0], format!("{k}/{N}"), "{v}");
        // 10 idle and 6 active over 4: shares of 2 or 3 and 1 or 2, adding up.
        let began = v["hold_began"][0].as_f64().unwrap();
        assert!(
            began >= start_at,
            "segment {k} began its hold before --start-at: {v}"
        );
        round_trips += run.n("round_trips");
    }
    let total: u64 = runs.iter().map(|r| r.n("conns_requested")).sum();
    assert_eq!(total, 16);
    let actives: u64 = runs.iter().map(|r| r.n("active")).sum();
    assert_eq!(actives, 6);
    let expected: BTreeSet<IpAddr> = (10..14)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    assert_eq!(
        *peers.lock().unwrap(),
        expected,
        "each segment from its own address"
    );

    // The merge, as one run.
    let mut args = vec!["merge"];
    args.extend(logs.iter().map(|l| l.as_str()));
    let merged = stress(&args);
    assert_succeeded(&merged);
    let v = merged.report();
    assert_report_shape(v);
    assert_eq!(merged.n("conns_requested"), 16, "{v}");
    assert_eq!(merged.n("conns_open"), 16, "{v}");
    assert_eq!(merged.n("active"), 6, "{v}");
    assert_eq!(merged.n("round_trips"), round_trips, "{v}");
    assert!(
        !merged.stderr.contains("segments missing"),
        "{}",
        merged.stderr
    );
    assert!(
        merged.stderr.contains("segments: 0/4 1/4 2/4 3/4"),
        "{}",
        merged.stderr
    );
    // Exactly the percentiles of one histogram of every sample of every log.
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for log in &logs {
        all.add(log_histogram(&log.0)).unwrap();
    }
    assert_eq!(
        all.len(),
        merged.n("round_trips") + merged.n("unanswered"),
        "{v}"
    );
    for (key, q) in [
        ("p50_us", 0.5),
        ("p90_us", 0.9),
        ("p99_us", 0.99),
        ("p999_us", 0.999),
    ] {
        assert_eq!(merged.n(key), all.value_at_quantile(q), "{key}: {v}");
    }
    assert_eq!(merged.n("max_us"), all.max(), "{v}");
}

/// `--start-at` in the past holds at once (with a warning); a few seconds ahead, the
/// hold begins then, not before, with or without workers.
#[test]
fn start_at_in_the_past_and_near_future() {
    let server = ThreadServer::start(|s, _| echo_counting(s, &AtomicU64::new(0)));
    let addr = server.addr();
    let past = format!("{}", unix_now() - 60.0);
    let run = stress(&[&addr, "--active", "1", "--hold", "0.5", "--start-at", &past]);
    assert_succeeded(&run);
    assert!(run.stderr.contains("--start-at passed"), "{}", run.stderr);
    // It held at once: a hold in the past never waits (bounded by `TIMEOUT` anyway).

    for workers in ["1", "2"] {
        let at = unix_now() + 2.0;
        let text = format!("{at}");
        let run = stress(&[
            &addr,
            "--idle",
            "4",
            "--active",
            "2",
            "--hold",
            "0.5",
            "--start-at",
            &text,
            "--workers",
            workers,
        ]);
        assert_succeeded(&run);
        let v = run.report();
        let began = v["hold_began"][0].as_f64().unwrap();
        assert!(
            began >= at,
            "--workers {workers}: hold began at {began}, before {at}: {v}"
        );
        assert!((v["start_at"].as_f64().unwrap() - at).abs() < 0.001, "{v}");
    }
}
