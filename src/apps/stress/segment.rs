//! `--segment K/N`: this instance's exact share of a test run on N instances.
//!
//! Past one machine, the same command runs on many (k6-operator's pods, a list of SSH
//! hosts), each told which part it is. netloop stays a plain command: any scheduler that
//! can start N processes with an index can run a distributed test, and `stress merge`
//! adds their results up afterwards.
//!
//! The shares follow k6's *execution segments*: instance K of N takes the whole numbers
//! in `[total·K/N, total·(K+1)/N)`, that is `⌊total·(K+1)/N⌋ − ⌊total·K/N⌋` of them. For
//! any N the shares add up to the total exactly (the sum telescopes), with no gaps or
//! overlaps, and they differ by at most one. The rates follow the connections: `--rate`
//! (connects per second) in proportion to this instance's connections, `--rate-limit`
//! (round trips per second) in proportion to its active connections, so every active
//! connection keeps the same schedule however the test is split.

use std::fmt;
use std::str::FromStr;

/// Instance `k` of `n` (0 ≤ k < n).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    /// This instance, from 0.
    pub k: u64,
    /// How many instances.
    pub n: u64,
}

impl Segment {
    /// This segment's share of `total` (exact: the shares of all `n` add up to `total`).
    pub fn share(&self, total: u64) -> u64 {
        let at = |i: u64| (u128::from(total) * u128::from(i) / u128::from(self.n)) as u64;
        at(self.k + 1) - at(self.k)
    }

    /// This segment's share of a rate whose `of` units are split as `share(of)`: the part
    /// of `rate` that goes with them (None when the rate or its units are gone).
    pub fn rate_share(&self, rate: Option<f64>, of: u64) -> Option<f64> {
        let rate = rate?;
        let mine = self.share(of);
        (mine > 0).then(|| rate * mine as f64 / of as f64)
    }
}

impl FromStr for Segment {
    type Err = String;

    fn from_str(text: &str) -> Result<Segment, String> {
        let bad = || format!("`{text}` is not K/N with 0 <= K < N (e.g. 0/4 .. 3/4)");
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 || k >= n {
            return Err(bad());
        }
        Ok(Segment { k, n })
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Which of `n` segments are missing from `seen`, and which appear more than once.
pub fn coverage(seen: &[Segment]) -> (Vec<Segment>, Vec<Segment>) {
    let Some(n) = seen.first().map(|s| s.n) else {
        return (Vec::new(), Vec::new());
    };
    let mut missing = Vec::new();
    let mut doubled = Vec::new();
    for k in 0..n {
        let count = seen.iter().filter(|s| s.n == n && s.k == k).count();
        if count == 0 {
            missing.push(Segment { k, n });
        } else if count > 1 {
            doubled.push(Segment { k, n });
        }
    }
    // A segment of another N cannot be placed at all: count it as doubled (an overlap).
    doubled.extend(seen.iter().filter(|s| s.n != n).copied());
    (missing, doubled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn awkward_splits_add_up_exactly() {
        for (total, n) in [(10, 3), (0, 4), (1, 7), (1_000_010, 6), (7, 7), (5, 9)] {
            let shares: Vec<u64> = (0..n).map(|k| Segment { k, n }.share(total)).collect();
            assert_eq!(
                shares.iter().sum::<u64>(),
                total,
                "{total} over {n}: {shares:?}"
            );
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(hi - lo <= 1, "{total} over {n}: {shares:?}");
        }
        assert_eq!("2/5".parse::<Segment>(), Ok(Segment { k: 2, n: 5 }));
        for bad in ["5/5", "1/0", "-1/3", "1", "a/b", "1/2/3"] {
            assert!(bad.parse::<Segment>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_follow_the_connections() {
        let n = 3;
        let total: f64 = (0..n)
            .filter_map(|k| Segment { k, n }.rate_share(Some(100.0), 10))
            .sum();
        assert!((total - 100.0).abs() < 1e-9, "{total}");
        // A segment with no active connection gets no rate limit at all.
        assert_eq!(Segment { k: 0, n: 4 }.rate_share(Some(50.0), 1), None);
        assert_eq!(Segment { k: 3, n: 4 }.rate_share(Some(50.0), 1), Some(50.0));
    }

    #[test]
    fn coverage_finds_gaps_and_overlaps() {
        let s = |k, n| Segment { k, n };
        assert_eq!(coverage(&[s(0, 3), s(1, 3), s(2, 3)]), (vec![], vec![]));
        assert_eq!(
            coverage(&[s(0, 3), s(0, 3)]),
            (vec![s(1, 3), s(2, 3)], vec![s(0, 3)])
        );
        assert_eq!(coverage(&[s(0, 2), s(1, 3)]).1, vec![s(1, 3)]);
    }

    proptest! {
        #[test]
        fn shares_partition_any_total(total in 0u64..10_000_000_000, n in 1u64..500) {
            let mut sum = 0;
            for k in 0..n {
                sum += Segment { k, n }.share(total);
            }
            prop_assert_eq!(sum, total);
        }
    }
}
