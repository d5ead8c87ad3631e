//! The 96-bit AES-GCM nonce of a frame: `salt (4 bytes) || counter (8 bytes, big-endian)`.
//!
//! Each sender seals under its own key ([`crate::kdf`]), so a nonce only has to be unique among
//! the frames of one sender (node id) under one key id. Within a boot the counter only goes up,
//! across key changes, so no (key, nonce) pair repeats: the deterministic construction of NIST SP
//! 800-38D §8.2.1 (fixed field + invocation field). Between boots of one sender,
//! [`NonceStart::for_boot`] keeps nonces apart three ways:
//!
//! * the salt's high [`BOOT_SALT_COUNTER_BITS`] (20) bits are the sender's boot number, persisted
//!   in its state directory ([`crate::boot`]): any 2^20 consecutive boots of a node that kept its
//!   state directory have distinct salts, by construction;
//! * the salt's low [`BOOT_SALT_RANDOM_BITS`] (12) bits are random, so boots that repeat a boot
//!   number (a state directory restored from a backup or VM snapshot) still get another salt with
//!   probability 1 - 2^-12. Nonces would stay apart anyway (next point); the salt matters to the
//!   receivers, whose replay windows would refuse a repeated salt's frames as replays or as too
//!   old until the node restarts again;
//! * the first counter of a boot is random below [`FIRST_COUNTER_BOUND`] (2^63), so two boots
//!   that share a salt all the same (restored state and the random bits matched, a wiped state
//!   directory whose random restart value hit a used one, more than 2^20 boots, or a sender without
//!   state like the tools) reuse a nonce only if their counter ranges overlap: at most
//!   `(f + g) / 2^63` for boots sealing `f` and `g` frames (2^40 frames each, 3.5 years at 10,000
//!   frames/s: 2^-22).
//!
//! Senders without persisted state ([`NonceStart::random`]) draw the whole salt at random: a pair
//! of such boots under one sender key collides with probability at most `2^-32 * (f + g) / 2^63`.

use crate::random::{self, RandomError};

/// Length of a GCM nonce (NIST SP 800-38D recommends 96 bits).
pub const NONCE_LEN: usize = 12;
/// Length of the per-boot salt at the front of the nonce.
pub const SALT_LEN: usize = 4;

/// A boot's first counter is drawn uniformly below this bound (2^63), which leaves at least 2^63
/// counters before [`crate::seal::COUNTER_HARD_LIMIT`] and makes the counter ranges of two boots
/// that share a salt overlap only by a tiny chance (see the module doc).
pub const FIRST_COUNTER_BOUND: u64 = 1 << 63;
/// Low bits of a daemon boot's salt drawn at random (see the module doc for the trade-off).
pub const BOOT_SALT_RANDOM_BITS: u32 = 12;
/// High bits of a daemon boot's salt taken from the boot number (its low 20 bits).
pub const BOOT_SALT_COUNTER_BITS: u32 = 32 - BOOT_SALT_RANDOM_BITS;

/// Where one boot's nonces start: its salt and the counter of its first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceStart {
    /// The fixed field of every nonce of the boot.
    pub salt: [u8; SALT_LEN],
    /// The counter of the boot's first frame.
    pub first_counter: u64,
}

impl NonceStart {
    /// A fixed start: for tests, fuzzing, or a caller that persists its own counter high-water
    /// mark. The caller answers for never starting two boots of one sender key at the same place.
    pub fn new(salt: [u8; SALT_LEN], first_counter: u64) -> NonceStart {
        NonceStart {
            salt,
            first_counter,
        }
    }

    /// The start of boot number `boot` (from [`crate::boot::BootCounter`]): the salt is the low
    /// [`BOOT_SALT_COUNTER_BITS`] bits of the boot number followed by [`BOOT_SALT_RANDOM_BITS`]
    /// random bits, big-endian; the first counter is random below [`FIRST_COUNTER_BOUND`].
    pub fn for_boot(boot: u32) -> Result<NonceStart, RandomError> {
        let mut random_bits = [0u8; 4];
        random::fill(&mut random_bits)?;
        let random_mask = (1u32 << BOOT_SALT_RANDOM_BITS) - 1;
        let salt =
            (boot << BOOT_SALT_RANDOM_BITS) | (u32::from_be_bytes(random_bits) & random_mask);
        Ok(NonceStart {
            salt: salt.to_be_bytes(),
            first_counter: random_first_counter()?,
        })
    }

    /// The boot number bits of a salt made by [`NonceStart::for_boot`] (the boot number modulo
    /// 2^[`BOOT_SALT_COUNTER_BITS`]).
    pub fn boot_bits(salt: [u8; SALT_LEN]) -> u32 {
        u32::from_be_bytes(salt) >> BOOT_SALT_RANDOM_BITS
    }

    /// A start for a sender without persisted state (the tools, tests): random salt, random first
    /// counter below [`FIRST_COUNTER_BOUND`]. See the module doc for the collision bound.
    pub fn random() -> Result<NonceStart, RandomError> {
        let mut salt = [0u8; SALT_LEN];
        random::fill(&mut salt)?;
        Ok(NonceStart {
            salt,
            first_counter: random_first_counter()?,
        })
    }
}

fn random_first_counter() -> Result<u64, RandomError> {
    // FIRST_COUNTER_BOUND is a power of two, so masking keeps the draw uniform.
    Ok(random::u64()? & (FIRST_COUNTER_BOUND - 1))
}

/// A frame nonce: `salt(4) || counter(8, big-endian)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// Builds the nonce for `counter` in the boot identified by `salt`.
    pub fn new(salt: [u8; SALT_LEN], counter: u64) -> Nonce {
        let mut bytes = [0u8; NONCE_LEN];
        bytes[..SALT_LEN].copy_from_slice(&salt);
        bytes[SALT_LEN..].copy_from_slice(&counter.to_be_bytes());
        Nonce(bytes)
    }

    /// The sender's per-boot salt (its boot number, or random for senders without state).
    pub fn salt(&self) -> [u8; SALT_LEN] {
        let [a, b, c, d, ..] = self.0;
        [a, b, c, d]
    }

    /// The sender's frame counter within that boot.
    pub fn counter(&self) -> u64 {
        let [_, _, _, _, rest @ ..] = self.0;
        u64::from_be_bytes(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_salt_then_big_endian_counter() {
        let nonce = Nonce::new([1, 2, 3, 4], 0x0506_0708_090a_0b0c);
        assert_eq!(nonce.0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn boot_start_puts_the_boot_number_in_the_salt_and_a_random_counter_below_the_bound() {
        let starts: Vec<NonceStart> = (0..64)
            .map(|_| NonceStart::for_boot(0xabc1_2345).expect("random"))
            .collect();
        for start in &starts {
            // The low 20 bits of the boot number lead the salt.
            assert_eq!(NonceStart::boot_bits(start.salt), 0x1_2345);
            assert_eq!(start.salt[..2], [0x12, 0x34]);
            assert_eq!(start.salt[2] >> 4, 0x5);
            assert!(start.first_counter < FIRST_COUNTER_BOUND);
        }
        // 64 draws of 12 and 63 random bits: all equal only if the generator is broken.
        assert!(starts
            .iter()
            .any(|s| s.first_counter != starts[0].first_counter));
        assert!(starts.iter().any(|s| s.salt != starts[0].salt));
    }

    #[test]
    fn random_starts_differ() {
        let a = NonceStart::random().expect("random");
        let b = NonceStart::random().expect("random");
        assert_ne!(a, b);
        assert!(a.first_counter < FIRST_COUNTER_BOUND && b.first_counter < FIRST_COUNTER_BOUND);
    }

    proptest! {
        /// Boots less than 2^20 apart never share a salt, whatever the random bits.
        #[test]
        fn nearby_boots_have_distinct_salts(boot: u32, gap in 1u32..1 << BOOT_SALT_COUNTER_BITS) {
            let a = NonceStart::for_boot(boot).expect("random");
            let b = NonceStart::for_boot(boot.wrapping_add(gap)).expect("random");
            prop_assert_ne!(a.salt, b.salt);
        }

        #[test]
        fn fields_round_trip(salt: [u8; SALT_LEN], counter: u64) {
            let nonce = Nonce::new(salt, counter);
            prop_assert_eq!(nonce.salt(), salt);
            prop_assert_eq!(nonce.counter(), counter);
        }
    }
}
