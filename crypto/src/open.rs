//! The receiver side: authenticate and decrypt frames in place, then check replay, counting every
//! rejection by reason.
//!
//! Order of checks for one frame: key id known ([`OpenError::UnknownKey`]) → tag over header (AAD)
//! and payload ([`OpenError::BadTag`]) → sender slot available ([`OpenError::SenderLimit`]) →
//! replay window ([`OpenError::Replayed`], [`OpenError::TooOld`]). The replay check runs only after
//! the tag verifies, so forged frames can neither move a window nor be counted as replays. On any
//! error the payload holds no plaintext (zeroed once decryption has touched it).
//!
//! Memory: one [`ReplayWindow`] per sender, in a map sized at construction for the sender limit, so
//! no frame allocates. A sender beyond the limit is refused and counted, nobody is evicted.

use std::collections::HashMap;

use crate::aead::TAG_LEN;
use crate::kdf::FrameKey;
use crate::nonce::Nonce;
use crate::replay::{ReplayWindow, Verdict};

/// Senders tracked by default: corosync's node limit (`PROCESSOR_COUNT_MAX 384`,
/// include/corosync/totem/totem.h; REFERENCE.md §1.5). The daemon passes its configured maximum.
pub const DEFAULT_MAX_SENDERS: usize = 384;
/// Keys accepted at once: the current one and the one being rotated in or out.
pub const MAX_LIVE_KEYS: usize = 2;

/// Why a frame was not delivered. (Frames of a foreign cluster id are dropped and counted by the
/// transport before they reach crypto.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("frame too short to hold an authentication tag")]
    Truncated,
    #[error("frame sealed under a key id this node does not hold")]
    UnknownKey,
    #[error("authentication tag does not verify (tampered, wrong key or foreign cluster name)")]
    BadTag,
    #[error("frame already received, or from a replaced boot of its sender")]
    Replayed,
    #[error("frame older than the sender's replay window")]
    TooOld,
    #[error("authenticated frame from a new sender while the sender table is full")]
    SenderLimit,
}

/// Frames opened and refused since the [`Opener`] was made, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenStats {
    pub opened: u64,
    pub truncated: u64,
    pub unknown_key: u64,
    pub bad_tag: u64,
    pub replayed: u64,
    pub too_old: u64,
    pub sender_limit: u64,
    /// Authenticated frames that carried a new salt for a known sender (it rebooted).
    pub sender_restarts: u64,
}

impl OpenStats {
    /// Frames refused for any reason.
    pub fn rejected(&self) -> u64 {
        self.truncated
            + self.unknown_key
            + self.bad_tag
            + self.replayed
            + self.too_old
            + self.sender_limit
    }

    fn count(&mut self, error: OpenError) {
        let counter = match error {
            OpenError::Truncated => &mut self.truncated,
            OpenError::UnknownKey => &mut self.unknown_key,
            OpenError::BadTag => &mut self.bad_tag,
            OpenError::Replayed => &mut self.replayed,
            OpenError::TooOld => &mut self.too_old,
            OpenError::SenderLimit => &mut self.sender_limit,
        };
        *counter = counter.saturating_add(1);
    }
}

/// Receiver state: up to two keys (live rotation) and one replay window per sender node id.
#[derive(Debug)]
pub struct Opener {
    /// Live keys; `keys[newest]` is the most recently installed when both slots are full.
    keys: [Option<FrameKey>; MAX_LIVE_KEYS],
    newest: usize,
    senders: HashMap<u32, ReplayWindow>,
    max_senders: usize,
    stats: OpenStats,
}

impl Opener {
    /// A receiver holding `key`, tracking up to [`DEFAULT_MAX_SENDERS`] senders.
    pub fn new(key: FrameKey) -> Opener {
        Opener::with_max_senders(key, DEFAULT_MAX_SENDERS)
    }

    /// A receiver holding `key`, tracking up to `max_senders` senders (the cluster's node limit).
    pub fn with_max_senders(key: FrameKey, max_senders: usize) -> Opener {
        Opener {
            keys: [Some(key), None],
            newest: 0,
            senders: HashMap::with_capacity(max_senders),
            max_senders,
            stats: OpenStats::default(),
        }
    }

    /// Accepts frames under `key` too. A key with the same id replaces that one; otherwise the
    /// older of two live keys is dropped, so at most two are accepted at once.
    pub fn install_key(&mut self, key: FrameKey) {
        let slot = self
            .slot_of(key.key_id())
            .or_else(|| self.keys.iter().position(Option::is_none))
            .unwrap_or(1 - self.newest);
        self.keys[slot] = Some(key);
        self.newest = slot;
    }

    /// Stops accepting frames under `key_id` (no-op when it is not live).
    pub fn retire_key(&mut self, key_id: u8) {
        if let Some(slot) = self.slot_of(key_id) {
            self.keys[slot] = None;
        }
    }

    /// Ids of the keys accepted now.
    pub fn live_key_ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().flatten().map(FrameKey::key_id)
    }

    /// Forgets a sender's replay state (when the node leaves the configuration), freeing its slot.
    pub fn forget_sender(&mut self, sender: u32) {
        self.senders.remove(&sender);
    }

    /// Authenticates and decrypts `payload` in place; replay-checks (`sender`, `nonce`) after the
    /// tag verifies. `aad` is the frame header as sent. On `Ok` the payload is the plaintext.
    pub fn open_in_place(
        &mut self,
        sender: u32,
        key_id: u8,
        nonce: &Nonce,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let result = self.authenticate_and_check(sender, key_id, nonce, aad, payload, tag);
        match result {
            Ok(()) => self.stats.opened = self.stats.opened.saturating_add(1),
            Err(error) => self.stats.count(error),
        }
        result
    }

    /// Like [`Opener::open_in_place`] for a body laid out as `ciphertext || tag`; returns the
    /// plaintext part. A body shorter than the tag is [`OpenError::Truncated`].
    pub fn open_in_place_tag_suffix<'body>(
        &mut self,
        sender: u32,
        key_id: u8,
        nonce: &Nonce,
        aad: &[u8],
        body: &'body mut [u8],
    ) -> Result<&'body mut [u8], OpenError> {
        let Some(payload_len) = body.len().checked_sub(TAG_LEN) else {
            self.stats.count(OpenError::Truncated);
            return Err(OpenError::Truncated);
        };
        let (payload, tag_bytes) = body.split_at_mut(payload_len);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_bytes);
        self.open_in_place(sender, key_id, nonce, aad, payload, &tag)?;
        Ok(payload)
    }

    /// Counts a frame the transport found too short before calling in.
    pub fn count_truncated(&mut self) {
        self.stats.count(OpenError::Truncated);
    }

    /// Counters by reason.
    pub fn stats(&self) -> OpenStats {
        self.stats
    }

    /// Senders with replay state now.
    pub fn tracked_senders(&self) -> usize {
        self.senders.len()
    }

    fn slot_of(&self, key_id: u8) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.as_ref().is_some_and(|k| k.key_id() == key_id))
    }

    fn authenticate_and_check(
        &mut self,
        sender: u32,
        key_id: u8,
        nonce: &Nonce,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let key = self
            .slot_of(key_id)
            .and_then(|slot| self.keys[slot].as_ref())
            .ok_or(OpenError::UnknownKey)?;
        key.cipher()
            .open(nonce, aad, payload, tag)
            .map_err(|_| OpenError::BadTag)?;
        let room_for_new_sender = self.senders.len() < self.max_senders;
        let verdict = match self.senders.get_mut(&sender) {
            Some(window) => window.check_and_record(nonce.salt(), nonce.counter()),
            None if room_for_new_sender => {
                self.senders.insert(
                    sender,
                    ReplayWindow::starting_at(nonce.salt(), nonce.counter()),
                );
                Verdict::Fresh
            }
            None => {
                payload.fill(0);
                return Err(OpenError::SenderLimit);
            }
        };
        let refused = match verdict {
            Verdict::Fresh => return Ok(()),
            Verdict::FreshAfterRestart => {
                self.stats.sender_restarts = self.stats.sender_restarts.saturating_add(1);
                return Ok(());
            }
            Verdict::Replayed => OpenError::Replayed,
            Verdict::TooOld => OpenError::TooOld,
        };
        payload.fill(0);
        Err(refused)
    }
}
