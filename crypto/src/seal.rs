//! The sender side: per-boot nonce state and in-place encryption of frames.
//!
//! One [`Sealer`] per daemon boot, sealing under the sender's own key ([`ClusterKey::frame_key`]
//! of its node id). Its counter starts where the boot's [`NonceStart`] says and only goes up,
//! across [`Sealer::rekey`] calls, so a (key, nonce) pair is never used twice within a boot.
//! Between boots of the same sender the salt (persisted boot number) and the random first counter
//! keep nonces apart (bounds in [`crate::nonce`]); other senders use other keys.

use crate::aead::TAG_LEN;
use crate::kdf::{ClusterKey, FrameKey};
use crate::nonce::{Nonce, NonceStart, SALT_LEN};

/// Frames sealed under one key after which [`Sealer::needs_rekey`] turns true: 2^28 frames of at
/// most 1500 bytes (2^7 AES blocks) stay within the 2^35 blocks per key budget that RFC 8446 §5.5
/// keeps for AES-GCM (2^24.5 records of 2^14 bytes).
pub const REKEY_AFTER_FRAMES: u64 = 1 << 28;
/// The counter value that is never handed out: reaching it means the nonce space of this boot is
/// spent and sealing is refused for good (at least 2^63 frames after a [`NonceStart`] from
/// [`NonceStart::for_boot`] or [`NonceStart::random`]).
pub const COUNTER_HARD_LIMIT: u64 = u64::MAX;

/// Why a frame could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "nonce counter exhausted: this boot cannot seal another frame without reusing a nonce"
    )]
    Exhausted,
    #[error("payload too long for AES-GCM")]
    TooLong,
}

/// Per-boot sender state: this sender's current key, the boot's salt and the 64-bit counter.
#[derive(Clone, Debug)]
pub struct Sealer {
    key: FrameKey,
    salt: [u8; SALT_LEN],
    next_counter: u64,
    frames_under_key: u64,
    rekey_after_frames: u64,
}

impl Sealer {
    /// A sender with node id (or tool session) `sender`, sealing under its key of `key`, whose
    /// nonces start at `start` ([`NonceStart::for_boot`] with a persisted boot number, or
    /// [`NonceStart::random`] without state). Receivers derive the same key from the sender id
    /// in the frame header.
    pub fn new(key: &ClusterKey, sender: u32, start: NonceStart) -> Sealer {
        Sealer {
            key: key.frame_key(sender),
            salt: start.salt,
            next_counter: start.first_counter,
            frames_under_key: 0,
            rekey_after_frames: REKEY_AFTER_FRAMES,
        }
    }

    /// Changes the frame count after which [`Sealer::needs_rekey`] turns true (default
    /// [`REKEY_AFTER_FRAMES`]); values above the default weaken the per-key bound.
    pub fn with_rekey_after(mut self, frames: u64) -> Sealer {
        self.rekey_after_frames = frames;
        self
    }

    /// Reserves the next nonce and returns it with the id of the key to seal under.
    /// `Err(SealError::Exhausted)` once the counter reaches [`COUNTER_HARD_LIMIT`].
    pub fn next_nonce(&mut self) -> Result<(u8, Nonce), SealError> {
        if self.next_counter == COUNTER_HARD_LIMIT {
            return Err(SealError::Exhausted);
        }
        let nonce = Nonce::new(self.salt, self.next_counter);
        self.next_counter += 1;
        self.frames_under_key = self.frames_under_key.saturating_add(1);
        Ok((self.key.key_id(), nonce))
    }

    /// Encrypts `payload` in place, authenticating `aad` (the frame header), and returns the tag.
    /// `nonce` must come from [`Sealer::next_nonce`] on this sealer since the last rekey, and be
    /// used once: the sealer cannot check that, so the transport must not seal twice per nonce.
    pub fn seal_in_place(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        self.key
            .cipher()
            .seal(nonce, aad, payload)
            .map_err(|_| SealError::TooLong)
    }

    /// Switches to this sender's key of `key` (new key id); the counter keeps going, so no
    /// (key, nonce) repeats.
    pub fn rekey(&mut self, key: &ClusterKey) {
        self.key = key.frame_key(self.key.sender());
        self.frames_under_key = 0;
    }

    /// True once the current key has sealed [`REKEY_AFTER_FRAMES`] frames.
    pub fn needs_rekey(&self) -> bool {
        self.frames_under_key >= self.rekey_after_frames
    }

    /// The id of the key frames are sealed under now.
    pub fn key_id(&self) -> u8 {
        self.key.key_id()
    }

    /// The sender id this sealer's key belongs to (what the frame header must carry).
    pub fn sender(&self) -> u32 {
        self.key.sender()
    }

    /// The boot's salt.
    pub fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// The counter the next reserved nonce will carry.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authkey::AuthKey;

    fn key(id: u8) -> ClusterKey {
        ClusterKey::derive(&AuthKey::from_bytes(&[9; 128]).expect("key"), "c", id)
    }

    fn start(salt: [u8; SALT_LEN], first_counter: u64) -> NonceStart {
        NonceStart::new(salt, first_counter)
    }

    #[test]
    fn nonces_count_up_from_the_start_with_the_salt() {
        let mut sealer = Sealer::new(&key(3), 1, start([1, 2, 3, 4], 1000));
        for expected in 1000..1005 {
            let (key_id, nonce) = sealer.next_nonce().expect("nonce");
            assert_eq!(key_id, 3);
            assert_eq!(nonce, Nonce::new([1, 2, 3, 4], expected));
        }
    }

    #[test]
    fn boot_start_seals_from_the_boot_number_and_a_random_counter() {
        let boot = NonceStart::for_boot(77).expect("random");
        let mut sealer = Sealer::new(&key(0), 1, boot);
        let (_, nonce) = sealer.next_nonce().expect("nonce");
        assert_eq!(nonce.salt(), boot.salt);
        assert_eq!(NonceStart::boot_bits(nonce.salt()), 77);
        assert_eq!(nonce.counter(), boot.first_counter);
        assert!(nonce.counter() < crate::nonce::FIRST_COUNTER_BOUND);
    }

    #[test]
    fn counter_keeps_going_across_rekey_and_the_sender_stays() {
        let mut sealer = Sealer::new(&key(0), 9, start([0; 4], 0));
        let (_, before) = sealer.next_nonce().expect("nonce");
        sealer.rekey(&key(1));
        let (key_id, after) = sealer.next_nonce().expect("nonce");
        assert_eq!(key_id, 1);
        assert_eq!(sealer.sender(), 9);
        assert_eq!(after.counter(), before.counter() + 1);
    }

    #[test]
    fn refuses_at_the_hard_limit_and_stays_refused() {
        let mut sealer = Sealer::new(&key(0), 1, start([0; 4], COUNTER_HARD_LIMIT - 2));
        assert_eq!(
            sealer.next_nonce().expect("nonce").1.counter(),
            u64::MAX - 2
        );
        assert_eq!(
            sealer.next_nonce().expect("nonce").1.counter(),
            u64::MAX - 1
        );
        assert_eq!(sealer.next_nonce(), Err(SealError::Exhausted));
        sealer.rekey(&key(1));
        assert_eq!(sealer.next_nonce(), Err(SealError::Exhausted));
    }

    #[test]
    fn needs_rekey_past_the_soft_limit_until_rekeyed() {
        let mut sealer = Sealer::new(&key(0), 1, start([0; 4], 0)).with_rekey_after(3);
        for _ in 0..3 {
            assert!(!sealer.needs_rekey());
            sealer.next_nonce().expect("nonce");
        }
        assert!(sealer.needs_rekey());
        // Soft limit only: sealing still works.
        assert!(sealer.next_nonce().is_ok());
        sealer.rekey(&key(1));
        assert!(!sealer.needs_rekey());
    }

    #[test]
    fn seal_changes_the_payload_and_depends_on_the_nonce() {
        let mut sealer = Sealer::new(&key(0), 1, start([0; 4], 0));
        let plain = [0x33u8; 64];
        let (_, n1) = sealer.next_nonce().expect("nonce");
        let (_, n2) = sealer.next_nonce().expect("nonce");
        let mut a = plain;
        let mut b = plain;
        let tag_a = sealer.seal_in_place(&n1, b"hdr", &mut a).expect("seal");
        let tag_b = sealer.seal_in_place(&n2, b"hdr", &mut b).expect("seal");
        assert_ne!(a, plain);
        assert_ne!(a, b);
        assert_ne!(tag_a, tag_b);
    }

    /// The point of per-sender keys: two nodes that happen to use the same salt and counter do
    /// not produce the same keystream or tag.
    #[test]
    fn two_senders_with_the_same_nonce_seal_differently() {
        let mut one = Sealer::new(&key(0), 1, start([5; 4], 42));
        let mut two = Sealer::new(&key(0), 2, start([5; 4], 42));
        let (_, nonce_one) = one.next_nonce().expect("nonce");
        let (_, nonce_two) = two.next_nonce().expect("nonce");
        assert_eq!(nonce_one, nonce_two);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let tag_a = one.seal_in_place(&nonce_one, b"h", &mut a).expect("seal");
        let tag_b = two.seal_in_place(&nonce_two, b"h", &mut b).expect("seal");
        assert_ne!(a, b, "same keystream: the senders share a key");
        assert_ne!(tag_a, tag_b);
    }
}
