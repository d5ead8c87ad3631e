//! The per-sender replay window: which (salt, counter) nonces of one sender were already accepted.
//!
//! A sliding bitmap of [`REPLAY_WINDOW_FRAMES`] counters below the highest one seen (the IPsec
//! anti-replay scheme of RFC 4303 §3.4.3, stored as a ring of bits as in RFC 6479), for the
//! sender's current boot (salt). Only authenticated frames reach it, so a forger can neither
//! advance the window nor switch the salt.
//!
//! Reboots: a sender that restarts uses a new salt (its next boot number, or a random one) and a
//! new random first counter. An authenticated frame with an unknown salt therefore starts a fresh
//! window; the replaced salt goes into a history of the last [`SALT_HISTORY_LEN`] salts, and
//! frames carrying any of them are refused as replays. The window assumes nothing about the order
//! of salts (a node whose state directory was wiped restarts from a random boot number) or about
//! where a boot's counter starts.
//!
//! Remaining limits, stated plainly:
//! * A recorded frame from a boot older than the last [`SALT_HISTORY_LEN`] boots of that sender
//!   (its salt has left the history) is taken for a new boot: it is accepted once, and the sender's
//!   live salt moves into the history, so its next frames are refused as replays until the sender
//!   reboots or the key is rotated. Rotating the authkey (new key id) ends both, because the old
//!   frames no longer authenticate.
//! * A receiver that restarts has no history at all: it accepts one window's worth of recorded
//!   frames of any older boot of a sender under the same key until the sender's live frames arrive.
//! * Two boots of one sender with the same salt look like one boot to this window: the later
//!   boot's frames count as counters of the earlier one (refused as [`Verdict::TooOld`] when its
//!   random counter start lies below the earlier boot's, accepted otherwise) until the sender
//!   reboots again. That takes a state directory restored from a backup and matching random salt
//!   bits (2^-12 per restored boot), or a wiped one whose random restart salt hit a remembered
//!   salt (see [`crate::nonce`]).
//!
//! The protocol above (totem ring ids and sequence numbers) rejects stale messages on its own; this
//! window exists so the network cannot inject old frames cheaply.

use crate::nonce::SALT_LEN;

/// Counters tracked below the highest accepted one. At least 1024 (issue 2); 4096 leaves room for
/// reordering across links with different latencies at high frame rates, for 512 bytes per sender.
pub const REPLAY_WINDOW_FRAMES: u64 = 4096;
/// Replaced salts remembered per sender (previous boots whose frames are refused).
pub const SALT_HISTORY_LEN: usize = 8;

const BITS_PER_WORD: u64 = u64::BITS as u64;
const WINDOW_WORDS: usize = (REPLAY_WINDOW_FRAMES / BITS_PER_WORD) as usize;

/// What the window says about an authenticated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time this nonce is seen: deliver it.
    Fresh,
    /// First frame of a new boot of the sender (new salt): the window was reset; deliver it.
    FreshAfterRestart,
    /// This nonce was accepted before, or its salt belongs to a replaced boot.
    Replayed,
    /// The counter is more than the window size behind the highest one accepted.
    TooOld,
}

/// The replay state of one sender.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    salt: [u8; SALT_LEN],
    /// Highest counter accepted in the current boot.
    highest: u64,
    /// Bit `c % REPLAY_WINDOW_FRAMES` is set when counter `c` (within the window) was accepted.
    bitmap: [u64; WINDOW_WORDS],
    /// Salts of replaced boots, newest overwriting oldest; only the first `history_len` are valid.
    salt_history: [[u8; SALT_LEN]; SALT_HISTORY_LEN],
    history_len: usize,
    history_next: usize,
}

impl ReplayWindow {
    /// A window whose first accepted frame is (`salt`, `counter`).
    pub fn starting_at(salt: [u8; SALT_LEN], counter: u64) -> ReplayWindow {
        let mut window = ReplayWindow {
            salt,
            highest: counter,
            bitmap: [0; WINDOW_WORDS],
            salt_history: [[0; SALT_LEN]; SALT_HISTORY_LEN],
            history_len: 0,
            history_next: 0,
        };
        window.set_bit(counter);
        window
    }

    /// Checks an authenticated frame's nonce and records it when fresh.
    pub fn check_and_record(&mut self, salt: [u8; SALT_LEN], counter: u64) -> Verdict {
        if salt != self.salt {
            if self.salt_history[..self.history_len].contains(&salt) {
                return Verdict::Replayed;
            }
            self.remember_replaced_salt();
            self.salt = salt;
            self.highest = counter;
            self.bitmap = [0; WINDOW_WORDS];
            self.set_bit(counter);
            return Verdict::FreshAfterRestart;
        }
        if counter > self.highest {
            self.advance_to(counter);
            return Verdict::Fresh;
        }
        if self.highest - counter >= REPLAY_WINDOW_FRAMES {
            return Verdict::TooOld;
        }
        if self.bit(counter) {
            return Verdict::Replayed;
        }
        self.set_bit(counter);
        Verdict::Fresh
    }

    /// The current boot's salt.
    pub fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// The highest counter accepted in the current boot.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    fn remember_replaced_salt(&mut self) {
        self.salt_history[self.history_next] = self.salt;
        self.history_next = (self.history_next + 1) % SALT_HISTORY_LEN;
        self.history_len = (self.history_len + 1).min(SALT_HISTORY_LEN);
    }

    /// Moves the top of the window to `counter` (> highest), clearing the slots it slides over.
    fn advance_to(&mut self, counter: u64) {
        let distance = counter - self.highest;
        if distance >= REPLAY_WINDOW_FRAMES {
            self.bitmap = [0; WINDOW_WORDS];
        } else {
            // Each counter's slot is cleared once when the window passes it: amortised O(1).
            for passed in self.highest + 1..=counter {
                self.clear_bit(passed);
            }
        }
        self.highest = counter;
        self.set_bit(counter);
    }

    fn slot(counter: u64) -> (usize, u64) {
        let index = counter % REPLAY_WINDOW_FRAMES;
        (
            (index / BITS_PER_WORD) as usize,
            1 << (index % BITS_PER_WORD),
        )
    }

    fn bit(&self, counter: u64) -> bool {
        let (word, mask) = Self::slot(counter);
        self.bitmap[word] & mask != 0
    }

    fn set_bit(&mut self, counter: u64) {
        let (word, mask) = Self::slot(counter);
        self.bitmap[word] |= mask;
    }

    fn clear_bit(&mut self, counter: u64) {
        let (word, mask) = Self::slot(counter);
        self.bitmap[word] &= !mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SALT: [u8; SALT_LEN] = [1, 1, 1, 1];

    #[test]
    fn accepts_each_counter_once_in_order() {
        let mut window = ReplayWindow::starting_at(SALT, 0);
        assert_eq!(window.check_and_record(SALT, 0), Verdict::Replayed);
        for counter in 1..10_000 {
            assert_eq!(window.check_and_record(SALT, counter), Verdict::Fresh);
            assert_eq!(window.check_and_record(SALT, counter), Verdict::Replayed);
        }
    }

    #[test]
    fn window_edge_is_too_old_one_past_it() {
        let mut window = ReplayWindow::starting_at(SALT, 10_000);
        let oldest_tracked = 10_000 - (REPLAY_WINDOW_FRAMES - 1);
        assert_eq!(
            window.check_and_record(SALT, oldest_tracked),
            Verdict::Fresh
        );
        assert_eq!(
            window.check_and_record(SALT, oldest_tracked),
            Verdict::Replayed
        );
        assert_eq!(
            window.check_and_record(SALT, oldest_tracked - 1),
            Verdict::TooOld
        );
        assert_eq!(window.check_and_record(SALT, 0), Verdict::TooOld);
    }

    #[test]
    fn a_long_jump_forgets_everything_behind_the_window() {
        let mut window = ReplayWindow::starting_at(SALT, 5);
        assert_eq!(
            window.check_and_record(SALT, 5 + 3 * REPLAY_WINDOW_FRAMES),
            Verdict::Fresh
        );
        assert_eq!(window.check_and_record(SALT, 5), Verdict::TooOld);
        // A counter whose slot aliases an old accepted one is still fresh after the jump.
        let aliased = 5 + 2 * REPLAY_WINDOW_FRAMES + 1;
        assert_eq!(window.check_and_record(SALT, aliased), Verdict::Fresh);
    }

    #[test]
    fn counters_near_u64_max_do_not_overflow() {
        let mut window = ReplayWindow::starting_at(SALT, u64::MAX - 2);
        assert_eq!(window.check_and_record(SALT, u64::MAX), Verdict::Fresh);
        assert_eq!(window.check_and_record(SALT, u64::MAX - 1), Verdict::Fresh);
        assert_eq!(window.check_and_record(SALT, u64::MAX), Verdict::Replayed);
        assert_eq!(window.check_and_record(SALT, 0), Verdict::TooOld);
    }

    #[test]
    fn new_salt_resets_and_old_salts_stay_refused() {
        let mut window = ReplayWindow::starting_at(SALT, 500);
        let rebooted = [2, 2, 2, 2];
        assert_eq!(
            window.check_and_record(rebooted, 0),
            Verdict::FreshAfterRestart
        );
        assert_eq!(window.salt(), rebooted);
        assert_eq!(window.check_and_record(rebooted, 0), Verdict::Replayed);
        assert_eq!(window.check_and_record(rebooted, 1), Verdict::Fresh);
        // The previous boot's frames, even unseen counters, are refused.
        assert_eq!(window.check_and_record(SALT, 501), Verdict::Replayed);
        assert_eq!(window.salt(), rebooted);
    }

    #[test]
    fn salt_history_keeps_the_last_boots_and_forgets_older_ones() {
        let salt_of = |boot: u8| [boot, 0, 0, 0xb0];
        let mut window = ReplayWindow::starting_at(salt_of(0), 0);
        let boots = SALT_HISTORY_LEN as u8 + 2;
        for boot in 1..=boots {
            assert_eq!(
                window.check_and_record(salt_of(boot), 0),
                Verdict::FreshAfterRestart
            );
        }
        for boot in boots - SALT_HISTORY_LEN as u8..boots {
            assert_eq!(
                window.check_and_record(salt_of(boot), 7),
                Verdict::Replayed,
                "boot {boot}"
            );
        }
        // The documented limit: a boot older than the history is taken for a new one.
        assert_eq!(
            window.check_and_record(salt_of(0), 7),
            Verdict::FreshAfterRestart
        );
    }

    proptest! {
        /// Any permutation of counters that fits in the window is accepted exactly once each,
        /// and every duplicate is refused.
        #[test]
        fn permutations_within_the_window_accept_each_counter_once(
            base in 0u64..u64::MAX - REPLAY_WINDOW_FRAMES,
            order in Just((0..REPLAY_WINDOW_FRAMES).collect::<Vec<u64>>()).prop_shuffle(),
            duplicates in proptest::collection::vec(0..REPLAY_WINDOW_FRAMES, 0..64),
        ) {
            let mut window = ReplayWindow::starting_at(SALT, base + order[0]);
            for &offset in &order[1..] {
                prop_assert_eq!(window.check_and_record(SALT, base + offset), Verdict::Fresh);
            }
            for offset in duplicates {
                prop_assert_eq!(window.check_and_record(SALT, base + offset), Verdict::Replayed);
            }
        }

        /// Against a model (a set of accepted counters), for arbitrary counter sequences.
        #[test]
        fn matches_a_set_model(counters in proptest::collection::vec(0u64..3 * REPLAY_WINDOW_FRAMES, 1..400)) {
            let mut window = ReplayWindow::starting_at(SALT, counters[0]);
            let mut accepted = std::collections::BTreeSet::from([counters[0]]);
            let mut highest = counters[0];
            for &counter in &counters[1..] {
                let expected = if counter + REPLAY_WINDOW_FRAMES <= highest {
                    Verdict::TooOld
                } else if accepted.contains(&counter) {
                    Verdict::Replayed
                } else {
                    Verdict::Fresh
                };
                prop_assert_eq!(window.check_and_record(SALT, counter), expected);
                if expected == Verdict::Fresh {
                    accepted.insert(counter);
                    highest = highest.max(counter);
                }
            }
        }
    }
}
