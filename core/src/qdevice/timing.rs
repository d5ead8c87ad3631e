//! qdevice-net timers, derived as corosync-qdevice derives them (REFERENCE.md §5;
//! `qdevices/qdevice-net-instance.c:215-226`, `qnet-config.h`).

/// `quorum.device.timeout` default (ms).
pub const TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// The TCP port qnetd listens on (`QNETD_DEFAULT_HOST_PORT`).
pub const QNETD_PORT_DEFAULT: u16 = 5403;
/// Smallest heartbeat interval qnetd accepts (`QNETD_DEFAULT_HEARTBEAT_INTERVAL_MIN`, ms).
pub const HEARTBEAT_INTERVAL_MIN_MS: u32 = 1_000;
/// Largest heartbeat interval qnetd accepts (`QNETD_DEFAULT_HEARTBEAT_INTERVAL_MAX`, ms).
pub const HEARTBEAT_INTERVAL_MAX_MS: u32 = 120_000;
/// qnetd drops a client silent for this many heartbeat intervals
/// (`QNETD_DEFAULT_DPD_INTERVAL_COEFFICIENT`).
pub const DPD_COEFFICIENT: f64 = 1.5;

/// The timers one qdevice client runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `quorum.device.timeout`: votequorum expires the device's vote after this without a poll.
    pub timeout_ms: u64,
    /// Heartbeat (ECHO_REQUEST) interval sent in INIT: 0.8 × timeout, clamped to qnetd's range.
    pub heartbeat_interval_ms: u32,
    /// How often the client re-casts its vote to votequorum: 0.5 × timeout.
    pub cast_vote_interval_ms: u64,
    /// How long a TCP connect may take: 0.8 × timeout.
    pub connect_timeout_ms: u64,
}

impl Timing {
    /// Timers derived from `quorum.device.timeout`.
    pub fn from_timeout_ms(timeout_ms: u64) -> Timing {
        let heartbeat = (timeout_ms * 8 / 10).clamp(
            u64::from(HEARTBEAT_INTERVAL_MIN_MS),
            u64::from(HEARTBEAT_INTERVAL_MAX_MS),
        );
        Timing {
            timeout_ms,
            heartbeat_interval_ms: u32::try_from(heartbeat).unwrap_or(HEARTBEAT_INTERVAL_MAX_MS),
            cast_vote_interval_ms: timeout_ms / 2,
            connect_timeout_ms: timeout_ms * 8 / 10,
        }
    }
}

impl Default for Timing {
    fn default() -> Timing {
        Timing::from_timeout_ms(TIMEOUT_DEFAULT_MS)
    }
}

/// qnetd's dead-peer interval for a client heartbeat: 1.5 × heartbeat (ms).
pub fn dpd_interval_ms(heartbeat_interval_ms: u32) -> u64 {
    // 1.5 exactly, in integers: 3/2.
    u64::from(heartbeat_interval_ms) * 3 / 2
}

const _: () = assert!(HEARTBEAT_INTERVAL_MIN_MS < HEARTBEAT_INTERVAL_MAX_MS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_corosync_qdevice() {
        let t = Timing::default();
        assert_eq!(t.timeout_ms, 10_000);
        assert_eq!(t.heartbeat_interval_ms, 8_000);
        assert_eq!(t.cast_vote_interval_ms, 5_000);
        assert_eq!(t.connect_timeout_ms, 8_000);
        assert_eq!(dpd_interval_ms(t.heartbeat_interval_ms), 12_000);
        assert!((DPD_COEFFICIENT * 8_000.0 - 12_000.0).abs() < f64::EPSILON);
    }

    #[test]
    fn heartbeat_is_clamped_to_qnetd_limits() {
        assert_eq!(Timing::from_timeout_ms(500).heartbeat_interval_ms, 1_000);
        assert_eq!(
            Timing::from_timeout_ms(1_000_000).heartbeat_interval_ms,
            120_000
        );
    }
}
