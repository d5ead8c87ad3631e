//! The 96-bit AES-GCM nonce of a frame: `salt (4 bytes) || counter (8 bytes, big-endian)`.
//!
//! The salt is drawn at random once per boot of the sender (the daemon reads it from the OS) and
//! the counter counts that boot's frames from 0, across key changes, so no (key, nonce) pair repeats
//! within a boot. This is the deterministic construction of NIST SP 800-38D §8.2.1 (fixed field +
//! invocation field); the salt separates boots and senders only probabilistically: see
//! [`crate::seal`] for the bound.

/// Length of a GCM nonce (NIST SP 800-38D recommends 96 bits).
pub const NONCE_LEN: usize = 12;
/// Length of the per-boot random salt at the front of the nonce.
pub const SALT_LEN: usize = 4;

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

    /// The sender's per-boot salt.
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

    proptest! {
        #[test]
        fn fields_round_trip(salt: [u8; SALT_LEN], counter: u64) {
            let nonce = Nonce::new(salt, counter);
            prop_assert_eq!(nonce.salt(), salt);
            prop_assert_eq!(nonce.counter(), counter);
        }
    }
}
