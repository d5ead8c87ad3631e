//! Monotonic time as the cores see it: nanoseconds from an arbitrary origin, passed in by the caller.
//!
//! The daemon maps `std::time::Instant` onto this; the simulator makes any instant it likes.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on a monotonic clock, in nanoseconds since an origin the driver chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime(pub u64);

impl MonoTime {
    /// The origin.
    pub const ZERO: MonoTime = MonoTime(0);

    /// This instant plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> MonoTime {
        MonoTime(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }

    /// Nanoseconds since the origin.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for MonoTime {
    type Output = MonoTime;
    fn add(self, d: Duration) -> MonoTime {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        MonoTime(self.0.saturating_add(nanos))
    }
}

impl Sub<MonoTime> for MonoTime {
    type Output = Duration;
    fn sub(self, rhs: MonoTime) -> Duration {
        self.saturating_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = MonoTime(5);
        assert_eq!(t.plus_ms(1), MonoTime(1_000_005));
        assert_eq!(MonoTime(3) - MonoTime(7), Duration::ZERO);
        assert_eq!(
            MonoTime(u64::MAX) + Duration::from_secs(1),
            MonoTime(u64::MAX)
        );
    }
}
