//! The daemon's CPU scheduling: corosync's `system.sched_rr` and `system.priority`.
//!
//! corosync (`exec/main.c`) runs SCHED_RR at the highest realtime priority unless `sched_rr` is
//! not `yes`, and knet's threads inherit it, so that a token is passed on however busy the host
//! is. When SCHED_RR is refused (no CAP_SYS_NICE, or a cgroup without a realtime budget),
//! corosync falls back to the highest nice priority; with `sched_rr: no` it applies
//! `system.priority` if set. totemd reads both keys the same way and applies them on the
//! starting thread before any other thread exists, so every thread the daemon starts (link
//! reactors, the core, signal and qdevice threads) inherits them.
//!
//! Departures:
//! * The default is the normal scheduling class (`sched_rr: no`): measured on the end-to-end
//!   topology (three daemons and their clients on two cores, `benches/README.md`), SCHED_RR cut
//!   totemd's 64-byte throughput from about 340 000 to 34 000 messages/s and made light-load
//!   latency worse (p50 231 → 329 µs), nice -20 cut it to 90 000-140 000: a realtime or
//!   favoured daemon keeps the CPU from the very applications that feed it, while its token
//!   rotates at full speed. Its one gain, a shorter p99.9 under contention, is not worth that.
//!   A host where the daemon must win against CPU hogs sets `sched_rr: yes` as with corosync.
//! * The nice value is set for this process only, where corosync renices its whole process
//!   group (`PRIO_PGRP`), which would also renice the shell that started it.

use std::io;

use totem_transport::io::{set_nice as set_thread_nice, set_round_robin_max};

use crate::config::model::{Nice, System};

/// The nice value of `priority: max` (and of the fallback when SCHED_RR is refused).
const NICE_MAX: i32 = -20;
/// The nice value of `priority: min`.
const NICE_MIN: i32 = 19;

/// What [`apply`] achieved, for the start-up log.
#[derive(Debug)]
pub enum Outcome {
    /// SCHED_RR at this priority.
    Realtime(i32),
    /// SCHED_RR was refused for this reason; the nice value was set instead (`Ok`) or not.
    RealtimeRefused(io::Error, Result<i32, io::Error>),
    /// `sched_rr: no` with a `priority`: this nice value was set, or not.
    Nice(Result<i32, io::Error>),
    /// `sched_rr: no` and no `priority`: the scheduling is left as it was.
    Unchanged,
}

impl Outcome {
    /// Logs the outcome the way corosync words its warnings.
    pub fn log(&self) {
        match self {
            Outcome::Realtime(priority) => {
                tracing::info!(
                    "[MAIN  ] Scheduling: SCHED_RR at priority {priority} for every thread"
                )
            }
            Outcome::RealtimeRefused(e, nice) => {
                tracing::warn!("[MAIN  ] Could not set SCHED_RR at the highest priority: {e}");
                match nice {
                    Ok(n) => tracing::warn!("[MAIN  ] Running at nice {n} instead"),
                    Err(e) => tracing::warn!("[MAIN  ] Could not set priority {NICE_MAX}: {e}"),
                }
            }
            Outcome::Nice(Ok(n)) => tracing::info!("[MAIN  ] Scheduling: nice {n}"),
            Outcome::Nice(Err(e)) => tracing::warn!("[MAIN  ] Could not set priority: {e}"),
            Outcome::Unchanged => {}
        }
    }
}

/// Applies `system` to the calling thread; call before starting other threads.
pub fn apply(system: &System) -> Outcome {
    if system.sched_rr {
        return match set_round_robin_max() {
            Ok(priority) => Outcome::Realtime(priority),
            Err(e) => Outcome::RealtimeRefused(e, set_nice(NICE_MAX)),
        };
    }
    match system.priority {
        Some(priority) => Outcome::Nice(set_nice(nice_value(priority))),
        None => Outcome::Unchanged,
    }
}

/// Sets the nice value; returns it.
fn set_nice(nice: i32) -> io::Result<i32> {
    set_thread_nice(nice).map(|()| nice)
}

/// The nice value `priority` stands for, clamped to the kernel's range.
pub fn nice_value(priority: Nice) -> i32 {
    match priority {
        Nice::Max => NICE_MAX,
        Nice::Min => NICE_MIN,
        Nice::Value(n) => n.clamp(NICE_MAX, NICE_MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_words_and_numbers_map_to_nice_values() {
        assert_eq!(nice_value(Nice::Max), -20);
        assert_eq!(nice_value(Nice::Min), 19);
        assert_eq!(nice_value(Nice::Value(5)), 5);
        assert_eq!(nice_value(Nice::Value(-100)), -20);
        assert_eq!(nice_value(Nice::Value(100)), 19);
    }

    #[test]
    fn nothing_configured_changes_nothing() {
        let system = System {
            sched_rr: false,
            priority: None,
        };
        assert!(matches!(apply(&system), Outcome::Unchanged));
    }
}
