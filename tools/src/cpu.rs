//! CPU time of this process (getrusage), to report CPU per packet.

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};

/// User and system CPU time consumed so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// User time.
    pub user: Duration,
    /// System time.
    pub sys: Duration,
}

impl CpuTime {
    /// CPU time of the whole process now (zero when getrusage fails, which it cannot for SELF).
    pub fn now() -> CpuTime {
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(u) => CpuTime {
                user: timeval(u.user_time()),
                sys: timeval(u.system_time()),
            },
            Err(_) => CpuTime::default(),
        }
    }

    /// Time spent since `earlier`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    /// User + system.
    pub fn total(&self) -> Duration {
        self.user + self.sys
    }

    /// Nanoseconds of CPU per packet (0 when no packet).
    pub fn ns_per_packet(&self, packets: u64) -> f64 {
        if packets == 0 {
            0.0
        } else {
            self.total().as_nanos() as f64 / packets as f64
        }
    }
}

fn timeval(tv: nix::sys::time::TimeVal) -> Duration {
    let secs = u64::try_from(tv.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}
