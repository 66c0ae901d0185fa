//! `RttHistogram`: the distribution of one node's health-check `PING` round trips, in atomics
//! the health check writes and `/metrics` reads (`slotproxy_node_ping_seconds`). Nothing here
//! runs per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (a last, unbounded bucket follows).
pub const BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Samples per bucket, plus their sum.
#[derive(Debug, Default)]
pub struct RttHistogram {
    /// Samples at most `BUCKETS_US[i]`, and above the last bound; not cumulative.
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A copy of the histogram, cumulative as Prometheus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RttBuckets {
    /// `(upper bound in µs, samples at most that)` for each bound of `BUCKETS_US`.
    pub cumulative: Vec<(u64, u64)>,
    /// Every sample.
    pub count: u64,
    pub sum_us: u64,
}

impl RttHistogram {
    /// Adds one round trip.
    pub fn record(&self, sample: Duration) {
        let us = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The samples so far.
    pub fn buckets(&self) -> RttBuckets {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let mut running = 0;
        let cumulative = BUCKETS_US
            .iter()
            .zip(&counts)
            .map(|(&bound, &n)| {
                running += n;
                (bound, running)
            })
            .collect();
        RttBuckets {
            cumulative,
            count: counts.iter().sum(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them() {
        let histogram = RttHistogram::default();
        for us in [80, 100, 101, 3_000, 2_000_000] {
            histogram.record(Duration::from_micros(us));
        }
        let buckets = histogram.buckets();
        assert_eq!(buckets.count, 5);
        assert_eq!(buckets.sum_us, 80 + 100 + 101 + 3_000 + 2_000_000);
        let at = |bound: u64| {
            buckets
                .cumulative
                .iter()
                .find(|(b, _)| *b == bound)
                .unwrap()
                .1
        };
        assert_eq!(at(100), 2, "a sample equal to a bound is inside it");
        assert_eq!(at(250), 3);
        assert_eq!(at(2_500), 3);
        assert_eq!(at(5_000), 4);
        assert_eq!(at(1_000_000), 4, "2 s is only in the unbounded bucket");
    }
}
