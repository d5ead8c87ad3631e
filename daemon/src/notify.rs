//! systemd readiness and watchdog notifications (`Type=notify`, `WatchdogSec=`). Outside systemd
//! (no `NOTIFY_SOCKET`) every call is a no-op.

use std::time::Duration;

/// Tells systemd the daemon is up: links bound, core running, control socket listening.
pub fn ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("sd_notify READY failed: {e}");
    }
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// One watchdog keep-alive.
pub fn watchdog() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
}

/// How often to send [`watchdog`]: half of `WatchdogSec` (systemd's advice), or `None` when the
/// watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}
