//! Seeded random streams for the simulator: one for the network, one per node, all split from the
//! run's seed so that a seed replays exactly.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp};

/// Mixes a seed and a stream number into an independent sub-seed (SplitMix64 finaliser), so that
/// adding a node or a draw in one stream never shifts the draws of another.
pub fn split_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Named streams split from a run seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Packet loss, duplication and delay.
    Network,
    /// The fault schedule (partitions, crashes, restarts, leaves).
    Faults,
    /// Swarm choice of the fault options themselves.
    Options,
    /// Client load and clock of one node (index, not node id).
    Node(u32),
    /// The seed handed to a node's protocol core at each (re)start.
    Core(u32),
}

impl Stream {
    fn number(self) -> u64 {
        match self {
            Stream::Network => 1,
            Stream::Faults => 2,
            Stream::Options => 3,
            Stream::Node(i) => 0x1_0000 + u64::from(i),
            Stream::Core(i) => 0x2_0000 + u64::from(i),
        }
    }
}

/// A deterministic random stream (xoshiro256++, whose output is fixed by the `rand` crate's
/// portability promise for named generators).
#[derive(Clone, Debug)]
pub struct SimRng {
    inner: Xoshiro256PlusPlus,
}

impl SimRng {
    /// The stream `stream` of run `seed`.
    pub fn new(seed: u64, stream: Stream) -> SimRng {
        SimRng {
            inner: Xoshiro256PlusPlus::seed_from_u64(split_seed(seed, stream.number())),
        }
    }

    /// A uniform `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.random()
    }

    /// `true` with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        self.inner.random_bool(p.clamp(0.0, 1.0))
    }

    /// A uniform integer in `lo..=hi` (`lo` if the range is empty).
    pub fn range_u64(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.inner.random_range(lo..=hi)
        }
    }

    /// A uniform index below `len` (`len` must be non-zero).
    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0, "index into an empty set");
        self.inner.random_range(0..len)
    }

    /// A uniform float in `0..1`.
    pub fn unit(&mut self) -> f64 {
        self.inner.random()
    }

    /// An exponentially distributed value with the given mean (0 if the mean is not positive).
    pub fn exp(&mut self, mean: f64) -> f64 {
        if mean.is_nan() || mean <= 0.0 {
            return 0.0;
        }
        match Exp::new(1.0 / mean) {
            Ok(dist) => dist.sample(&mut self.inner),
            Err(_) => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_replay_and_differ() {
        let mut a = SimRng::new(7, Stream::Network);
        let mut b = SimRng::new(7, Stream::Network);
        let mut c = SimRng::new(7, Stream::Node(0));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn ranges_stay_inside() {
        let mut r = SimRng::new(1, Stream::Faults);
        for _ in 0..1000 {
            let v = r.range_u64(3, 9);
            assert!((3..=9).contains(&v));
            assert!(r.exp(5.0) >= 0.0);
        }
        assert_eq!(r.range_u64(4, 4), 4);
        assert_eq!(r.exp(0.0), 0.0);
    }
}
