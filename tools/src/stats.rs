//! Round-trip statistics: omping's running figures (min/avg/max/std-dev with Knuth's on-line
//! variance, `util.c`) plus an HDR histogram for percentiles, and duplicate detection.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest round trip the histogram records, ns (60 s; longer values are clamped).
pub const HIST_MAX_NS: u64 = 60_000_000_000;
/// Significant decimal digits of the histogram (0.1 % value resolution).
pub const HIST_SIGFIG: u8 = 3;
/// Nanoseconds per millisecond (omping's `UTIL_NSINMS`).
pub const NS_PER_MS: f64 = 1_000_000.0;

/// A new latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the crate's rules (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG).unwrap_or_else(|_| {
        Histogram::new(HIST_SIGFIG).unwrap_or_else(|_| unreachable!("sigfig 3 is valid"))
    })
}

/// Records `ns` (clamped into the histogram's range).
pub fn record(hist: &mut Histogram<u64>, ns: u64) {
    let _ = hist.record(ns.clamp(1, HIST_MAX_NS));
}

/// omping's loss: `(int)((1 - rcv/sent) * 100)`, truncated, 0 when more came back than went out.
pub fn omping_loss_percent(sent: u64, received: u64) -> i64 {
    if sent == 0 || received > sent {
        0
    } else {
        ((1.0 - received as f64 / sent as f64) * 100.0) as i64
    }
}

/// Exact loss in percent (for the verdict and JSON).
pub fn loss_percent(sent: u64, received: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        (sent.saturating_sub(received)) as f64 * 100.0 / sent as f64
    }
}

/// Round trips of one cast type (unicast or multicast) from one peer.
#[derive(Debug, Clone)]
pub struct RttStats {
    /// Distinct replies received.
    pub received: u64,
    /// Duplicate replies.
    pub dups: u64,
    mean_ns: f64,
    m2: f64,
    min_ns: u64,
    max_ns: u64,
    hist: Histogram<u64>,
}

impl Default for RttStats {
    fn default() -> Self {
        RttStats {
            received: 0,
            dups: 0,
            mean_ns: 0.0,
            m2: 0.0,
            min_ns: 0,
            max_ns: 0,
            hist: new_histogram(),
        }
    }
}

/// Summary figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RttSummary {
    /// Smallest round trip.
    pub min_ms: f64,
    /// Mean.
    pub avg_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// omping's std-dev (sample variance, integer square root in ns).
    pub std_dev_ms: f64,
    /// Median from the histogram.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

impl RttStats {
    /// Adds one reply's round trip.
    pub fn record(&mut self, rtt_ns: u64) {
        self.received += 1;
        let x = rtt_ns as f64;
        let delta = x - self.mean_ns;
        self.mean_ns += delta / self.received as f64;
        self.m2 += delta * (x - self.mean_ns);
        if self.received == 1 || rtt_ns < self.min_ns {
            self.min_ns = rtt_ns;
        }
        self.max_ns = self.max_ns.max(rtt_ns);
        record(&mut self.hist, rtt_ns);
    }

    /// Running mean in ms (omping's `-C` avg).
    pub fn avg_ms(&self) -> f64 {
        self.mean_ns / NS_PER_MS
    }

    /// The histogram (ns).
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// min/avg/max/std-dev and percentiles, in ms.
    pub fn summary(&self) -> RttSummary {
        if self.received == 0 {
            return RttSummary::default();
        }
        let variance = if self.received > 1 {
            self.m2 / (self.received - 1) as f64
        } else {
            0.0
        };
        // omping: util_u64sqrt((uint64_t)variance), an integer square root of ns².
        let std_dev_ns = (variance.max(0.0) as u64 as f64).sqrt().floor();
        let q = |quantile: f64| self.hist.value_at_quantile(quantile) as f64 / NS_PER_MS;
        RttSummary {
            min_ms: self.min_ns as f64 / NS_PER_MS,
            avg_ms: self.avg_ms(),
            max_ms: self.max_ns as f64 / NS_PER_MS,
            std_dev_ms: std_dev_ns / NS_PER_MS,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
        }
    }
}

/// Remembers which sequence numbers were seen, to flag duplicates (a growable bitset: one bit
/// per query, 125 KB per million).
#[derive(Debug, Clone, Default)]
pub struct SeenSet {
    words: Vec<u64>,
}

/// Highest sequence number tracked for duplicates; later ones are never flagged.
const SEEN_MAX_SEQ: u32 = 1 << 26;

impl SeenSet {
    /// Marks `seq`; true when it was already marked.
    pub fn insert(&mut self, seq: u32) -> bool {
        if seq >= SEEN_MAX_SEQ {
            return false;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let was = self.words[word] & mask != 0;
        self.words[word] |= mask;
        was
    }

    /// True when `seq` was marked.
    pub fn contains(&self, seq: u32) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        self.words.get(word).is_some_and(|w| w & (1u64 << bit) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn loss_truncates_like_omping() {
        assert_eq!(omping_loss_percent(21, 20), 4);
        assert_eq!(omping_loss_percent(3, 2), 33);
        assert_eq!(omping_loss_percent(10, 11), 0);
        assert_eq!(omping_loss_percent(0, 0), 0);
        assert_eq!(omping_loss_percent(100, 0), 100);
    }

    #[test]
    fn summary_matches_hand_computation() {
        let mut s = RttStats::default();
        for ms in [1u64, 2, 3, 4] {
            s.record(ms * 1_000_000);
        }
        let sum = s.summary();
        assert_eq!(sum.min_ms, 1.0);
        assert_eq!(sum.max_ms, 4.0);
        assert!((sum.avg_ms - 2.5).abs() < 1e-9);
        // sample variance of 1,2,3,4 ms = 1.6667 ms² → sqrt = 1.29099 ms
        assert!(
            (sum.std_dev_ms - 1.290994).abs() < 1e-6,
            "{}",
            sum.std_dev_ms
        );
        assert!((sum.p50_ms - 2.0).abs() < 0.01, "{}", sum.p50_ms);
    }

    proptest! {
        #[test]
        fn online_mean_matches_batch_mean(values in proptest::collection::vec(1u64..10_000_000, 1..200)) {
            let mut s = RttStats::default();
            for v in &values { s.record(*v); }
            let mean = values.iter().map(|v| *v as f64).sum::<f64>() / values.len() as f64;
            prop_assert!((s.summary().avg_ms - mean / NS_PER_MS).abs() < 1e-6);
            prop_assert_eq!(s.received, values.len() as u64);
        }

        #[test]
        fn seen_set_flags_exactly_repeats(seqs in proptest::collection::vec(0u32..5000, 0..300)) {
            let mut seen = SeenSet::default();
            let mut reference = std::collections::HashSet::new();
            for seq in seqs {
                prop_assert_eq!(seen.insert(seq), !reference.insert(seq));
                prop_assert!(seen.contains(seq));
            }
        }
    }
}
