//! SIGINT/SIGTERM as a flag, so a run stopped by the user still prints its summary (omping does).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A flag set when SIGINT or SIGTERM arrives (registration failures leave the default action).
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&flag));
    }
    flag
}
