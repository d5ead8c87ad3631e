//! Per-peer duplicate suppression over the header's sequence number.
//!
//! In `active` link mode every frame goes out on every up link, and a suspect link makes the
//! policy send on a second link too (see [`crate::policy`]), so the same frame (same source node
//! and sequence number) can arrive more than once. [`Dedupe`] keeps, per sender, the highest
//! sequence number seen and a bitmap of the [`DEDUPE_WINDOW_LEN`] numbers below it, and accepts
//! each number once. Numbers older than the window are rejected: by then the frame's copies have
//! long arrived (a window of 1024 frames is many token rotations at corosync's `window_size` 50,
//! REFERENCE §2.1).
//!
//! A restarted peer starts a new sequence. The sender should start its counter from a value that
//! grows across restarts (for example its realtime clock in nanoseconds at start), and the link
//! set calls [`Dedupe::forget_peer`] when a peer leaves or all its links go down.
#![forbid(unsafe_code)]

use std::collections::HashMap;

/// Sequence numbers remembered below the highest one seen, per sender.
pub const DEDUPE_WINDOW_LEN: u64 = 1024;
const WINDOW_WORDS: usize = (DEDUPE_WINDOW_LEN / 64) as usize;
const _: () = assert!(DEDUPE_WINDOW_LEN % 64 == 0);

/// What [`SeqWindow::accept`] decided about a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: deliver.
    New,
    /// Already seen inside the window: drop.
    Duplicate,
    /// Older than the window: drop (cannot tell whether it was seen).
    TooOld,
}

/// A sliding window over one sender's sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqWindow {
    /// Highest sequence number accepted; meaningless while `bits` is all zero and `started` false.
    highest: u64,
    started: bool,
    /// Bit `seq % DEDUPE_WINDOW_LEN` set = `seq` seen, for `seq` in `highest-LEN+1 ..= highest`.
    bits: [u64; WINDOW_WORDS],
}

impl Default for SeqWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqWindow {
    /// An empty window: the first number offered is accepted.
    pub fn new() -> Self {
        SeqWindow {
            highest: 0,
            started: false,
            bits: [0; WINDOW_WORDS],
        }
    }

    /// Records `seq` and says whether it is new.
    pub fn accept(&mut self, seq: u64) -> Verdict {
        if !self.started {
            self.started = true;
            self.highest = seq;
            self.set(seq);
            return Verdict::New;
        }
        if seq > self.highest {
            self.advance_to(seq);
            self.set(seq);
            return Verdict::New;
        }
        if self.highest - seq >= DEDUPE_WINDOW_LEN {
            return Verdict::TooOld;
        }
        if self.is_set(seq) {
            return Verdict::Duplicate;
        }
        self.set(seq);
        Verdict::New
    }

    /// Highest sequence number accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.started.then_some(self.highest)
    }

    /// Slides the window up to `seq`, clearing the bits of numbers that enter it.
    fn advance_to(&mut self, seq: u64) {
        let distance = seq - self.highest;
        if distance >= DEDUPE_WINDOW_LEN {
            self.bits = [0; WINDOW_WORDS];
        } else {
            for skipped in self.highest + 1..=seq {
                self.clear(skipped);
            }
        }
        self.highest = seq;
    }

    fn position(seq: u64) -> (usize, u64) {
        let slot = seq % DEDUPE_WINDOW_LEN;
        ((slot / 64) as usize, 1 << (slot % 64))
    }

    fn is_set(&self, seq: u64) -> bool {
        let (word, mask) = Self::position(seq);
        self.bits[word] & mask != 0
    }

    fn set(&mut self, seq: u64) {
        let (word, mask) = Self::position(seq);
        self.bits[word] |= mask;
    }

    fn clear(&mut self, seq: u64) {
        let (word, mask) = Self::position(seq);
        self.bits[word] &= !mask;
    }
}

/// Counts of what [`Dedupe`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupeCounters {
    /// Frames accepted.
    pub accepted: u64,
    /// Copies of frames already accepted.
    pub duplicates: u64,
    /// Frames older than the window.
    pub too_old: u64,
}

/// One [`SeqWindow`] per sender node id.
#[derive(Debug, Default)]
pub struct Dedupe {
    windows: HashMap<u32, SeqWindow>,
    counters: DedupeCounters,
}

impl Dedupe {
    /// No senders known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records frame `seq` from `sender`; `true` when it is new and should be delivered.
    pub fn accept(&mut self, sender: u32, seq: u64) -> bool {
        let verdict = self.windows.entry(sender).or_default().accept(seq);
        match verdict {
            Verdict::New => self.counters.accepted += 1,
            Verdict::Duplicate => self.counters.duplicates += 1,
            Verdict::TooOld => self.counters.too_old += 1,
        }
        verdict == Verdict::New
    }

    /// Forgets `sender`'s window (it restarted, left, or all its links went down).
    pub fn forget_peer(&mut self, sender: u32) {
        self.windows.remove(&sender);
    }

    /// Counters since creation.
    pub fn counters(&self) -> DedupeCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_number_once_in_any_order() {
        let mut w = SeqWindow::new();
        assert_eq!(w.accept(10), Verdict::New);
        assert_eq!(w.accept(10), Verdict::Duplicate);
        assert_eq!(w.accept(8), Verdict::New);
        assert_eq!(w.accept(12), Verdict::New);
        assert_eq!(w.accept(11), Verdict::New);
        assert_eq!(w.accept(8), Verdict::Duplicate);
        assert_eq!(w.accept(11), Verdict::Duplicate);
        assert_eq!(w.highest(), Some(12));
    }

    #[test]
    fn window_edges() {
        let mut w = SeqWindow::new();
        assert_eq!(w.accept(5000), Verdict::New);
        assert_eq!(w.accept(5000 - DEDUPE_WINDOW_LEN + 1), Verdict::New);
        assert_eq!(w.accept(5000 - DEDUPE_WINDOW_LEN), Verdict::TooOld);
        // Sliding by exactly one window forgets everything, and old slots do not alias.
        assert_eq!(w.accept(5000 + DEDUPE_WINDOW_LEN), Verdict::New);
        assert_eq!(w.accept(5001), Verdict::New);
        assert_eq!(w.accept(5000), Verdict::TooOld);
        assert_eq!(w.accept(u64::MAX), Verdict::New);
        assert_eq!(w.accept(u64::MAX), Verdict::Duplicate);
        assert_eq!(w.accept(0), Verdict::TooOld);
    }

    #[test]
    fn per_sender_and_counted() {
        let mut d = Dedupe::new();
        assert!(d.accept(1, 7));
        assert!(d.accept(2, 7));
        assert!(!d.accept(1, 7));
        d.forget_peer(1);
        assert!(d.accept(1, 7));
        assert_eq!(
            d.counters(),
            DedupeCounters {
                accepted: 3,
                duplicates: 1,
                too_old: 0
            }
        );
    }
}
