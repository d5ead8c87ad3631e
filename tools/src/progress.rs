//! A one-line progress display on stderr, only when stderr is a terminal (quiet when piped).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const REDRAW_PERIOD: Duration = Duration::from_millis(250);

/// Redraws a status line in place with `\r`; a no-op when stderr is not a terminal.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// Enabled when `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// True when the line is drawn at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// True when a redraw is due (call [`Progress::draw`] then).
    pub fn due(&self, now: Instant) -> bool {
        self.enabled
            && self
                .last
                .map_or(true, |t| now.duration_since(t) >= REDRAW_PERIOD)
    }

    /// Draws `text`, replacing the previous line.
    pub fn draw(&mut self, now: Instant, text: &str) {
        if !self.enabled {
            return;
        }
        self.last = Some(now);
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{text}");
        let _ = err.flush();
    }

    /// Erases the line (before printing results).
    pub fn clear(&mut self) {
        if self.enabled && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}
