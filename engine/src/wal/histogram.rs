//! Fixed-bucket histograms of the log writer's work (records per batch, time per flush), for
//! metrics: the writer records with relaxed atomic adds and never waits; a reader takes a copy
//! whose buckets may be a few samples apart from each other, as a scrape of any live counter is.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the records-per-batch buckets (a batch holds at most `batch_records_max`,
/// 1,024 by default).
pub const BATCH_RECORDS_BOUNDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Upper bounds of the flush-time buckets, in seconds: 100 µs (a fast NVMe `fdatasync`) to
/// 2.5 s (a disk in trouble).
pub const FLUSH_SECONDS_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A histogram over fixed upper bounds, with a last bucket for everything above them.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then the overflow bucket.
    counts: Box<[AtomicU64]>,
    /// The sum of the samples, in millionths of their unit (whole numbers add exactly).
    sum_micros: AtomicU64,
}

/// A copy of a [`Histogram`]: `buckets` are (upper bound, samples in that bucket alone), the
/// last with an infinite bound; Prometheus' cumulative form is the encoder's to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, samples in this bucket alone), the last bound infinite.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of every sample, in the bounds' unit.
    pub sum: f64,
    /// How many samples in all.
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one sample (in the bounds' unit).
    pub fn record(&self, value: f64) {
        let at = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        // Saturating: a negative or NaN sample adds nothing; no sample is that large.
        let micros = (value * 1e6).round().max(0.0) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_falls_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::new(&BATCH_RECORDS_BOUNDS);
        for records in [1.0, 3.0, 4.0, 5.0, 1024.0, 5000.0] {
            histogram.record(records);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 6);
        assert_eq!(snapshot.sum, 6037.0);
        let count_at = |bound: f64| {
            snapshot
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, n)| *n)
        };
        assert_eq!(count_at(1.0), Some(1));
        assert_eq!(count_at(2.0), Some(0));
        assert_eq!(count_at(4.0), Some(2), "3 and 4 are at most 4");
        assert_eq!(count_at(8.0), Some(1));
        assert_eq!(count_at(1024.0), Some(1));
        assert_eq!(count_at(f64::INFINITY), Some(1), "above every bound");
        assert_eq!(snapshot.buckets.len(), BATCH_RECORDS_BOUNDS.len() + 1);
    }

    #[test]
    fn times_sum_in_seconds() {
        let histogram = Histogram::new(&FLUSH_SECONDS_BOUNDS);
        histogram.record(0.0004);
        histogram.record(0.003);
        let snapshot = histogram.snapshot();
        assert!((snapshot.sum - 0.0034).abs() < 1e-9, "{}", snapshot.sum);
        assert_eq!(snapshot.count, 2);
    }
}
