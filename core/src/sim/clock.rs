//! Per-node clocks: each node sees the simulator's global time through a fixed offset and a rate
//! error (drift, in parts per million), as TigerBeetle's VOPR gives each replica its own clock.

use crate::time::MonoTime;

/// Parts per million.
const PPM: i128 = 1_000_000;

/// How one node's monotonic clock relates to global simulated time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeClock {
    /// Local reading at global time 0.
    pub offset_ns: u64,
    /// Rate error: the local clock advances `1 + drift_ppm / 1e6` times as fast as global time.
    pub drift_ppm: i32,
}

impl NodeClock {
    /// The node's reading at global time `global_ns`.
    pub fn local(&self, global_ns: u64) -> MonoTime {
        let g = i128::from(global_ns);
        let local = i128::from(self.offset_ns) + g + g * i128::from(self.drift_ppm) / PPM;
        MonoTime(u64::try_from(local.max(0)).unwrap_or(u64::MAX))
    }

    /// The earliest global time at which the node's clock reads at least `local`.
    pub fn global_at(&self, local: MonoTime) -> u64 {
        let rate = PPM + i128::from(self.drift_ppm);
        let since_origin = i128::from(local.0) - i128::from(self.offset_ns);
        let mut global = u64::try_from((since_origin * PPM / rate).max(0)).unwrap_or(u64::MAX);
        // Integer division may land a few nanoseconds off: step to the earliest instant.
        while global > 0 && self.local(global - 1) >= local {
            global -= 1;
        }
        while self.local(global) < local && global < u64::MAX {
            global += 1;
        }
        global
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_earliest_instant() {
        for drift_ppm in [-300, -1, 0, 7, 250] {
            let clock = NodeClock {
                offset_ns: 12_345,
                drift_ppm,
            };
            for g in [0u64, 1, 999, 1_000_000_007, 86_400_000_000_000] {
                let l = clock.local(g);
                let back = clock.global_at(l);
                assert!(back <= g, "drift {drift_ppm} g {g} back {back}");
                assert!(clock.local(back) >= l);
                if back > 0 {
                    assert!(clock.local(back - 1) < l);
                }
            }
        }
    }
}
