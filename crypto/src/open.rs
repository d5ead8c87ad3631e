//! The receiver side: authenticate and decrypt frames in place, then check replay, counting every
//! rejection by reason.
//!
//! Keys: every sender seals under its own key ([`crate::kdf`]). The opener holds up to two
//! [`ClusterKey`]s (live rotation) and derives a sender's [`FrameKey`] the first time a frame of
//! that sender under that key id arrives, then caches it with the sender: per frame the key costs
//! one hash-map lookup (the same lookup that finds the sender's replay window), never an HKDF.
//!
//! Order of checks for one frame: key id known ([`OpenError::UnknownKey`]) → room for a sender not
//! seen before ([`OpenError::SenderLimit`], before any crypto) → the sender's key (cached or
//! derived once) → tag over header (AAD) and payload ([`OpenError::BadTag`]) → replay window
//! ([`OpenError::Replayed`], [`OpenError::TooOld`]). The replay check runs only after the tag
//! verifies, so forged frames can neither move a window nor be counted as replays. On any error the
//! payload holds no plaintext (zeroed once decryption has touched it).
//!
//! Memory, bounded both ways whatever the sender ids in forged headers:
//! * authenticated senders (cached keys + replay window): at most `max_senders`, in a map sized at
//!   construction. A frame from a new sender when the table is full is refused and counted, nobody
//!   is evicted; or, with [`WhenFull::EvictLeastRecent`] (the tools' servers, which meet a new
//!   session id per client run), the sender heard from least recently makes room.
//! * pending senders: keys derived for sender ids no frame has authenticated yet (a sender's first
//!   frame, or forgeries under its id): at most `max_senders`, oldest dropped first. Repeated
//!   frames under a pending id derive nothing new; a stream of frames each naming a new id costs
//!   one derivation each (HKDF-SHA256 expand and an AES key schedule; `benches/aead.rs` measures
//!   it) and nothing more. In the daemon the transport drops frames whose sender is not a
//!   configured node before they get here, so only configured node ids are ever derived.

use std::collections::{HashMap, VecDeque};

use crate::aead::TAG_LEN;
use crate::kdf::{ClusterKey, FrameKey};
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
    #[error("frame from a sender not seen before while the sender table is full")]
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
    /// Sender frame keys derived (once per sender and key id, plus once per forged new id).
    pub keys_derived: u64,
    /// Authenticated senders dropped to make room ([`WhenFull::EvictLeastRecent`] only).
    pub senders_evicted: u64,
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

/// What a full table of authenticated senders does with a sender not seen before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse its frames ([`OpenError::SenderLimit`]): the daemon, whose senders are the
    /// configured nodes, keeps every member's replay state.
    #[default]
    Refuse,
    /// Drop the sender heard from least recently (its replay state and keys) once the new
    /// sender's frame authenticates. For the tools' servers, which meet a new session per client
    /// run: a dropped session's recorded frames would be accepted again (once each), which only
    /// makes a server answer or count them.
    EvictLeastRecent,
}

/// One sender's frame keys, one per live key slot, derived when first needed.
#[derive(Clone, Debug, Default)]
struct SenderKeys([Option<FrameKey>; MAX_LIVE_KEYS]);

impl SenderKeys {
    /// The key of `sender` for the cluster key in `slot`, derived and cached on first use.
    fn get_or_derive(
        &mut self,
        slot: usize,
        cluster_key: &ClusterKey,
        sender: u32,
        derived: &mut u64,
    ) -> &FrameKey {
        self.0[slot].get_or_insert_with(|| {
            *derived = derived.saturating_add(1);
            cluster_key.frame_key(sender)
        })
    }

    fn clear_slot(&mut self, slot: usize) {
        self.0[slot] = None;
    }

    fn cached(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// An authenticated sender: its keys, its replay window, when it was last heard.
#[derive(Debug)]
struct Sender {
    keys: SenderKeys,
    window: ReplayWindow,
    /// The opener's `heard_clock` at this sender's last authenticated frame.
    last_heard: u64,
}

/// Keys of senders whose frames have not authenticated yet: a bounded map, oldest out first.
#[derive(Debug)]
struct PendingKeys {
    keys: HashMap<u32, SenderKeys>,
    /// Insertion order of the ids in `keys` (exactly those ids).
    order: VecDeque<u32>,
    capacity: usize,
}

impl PendingKeys {
    fn with_capacity(capacity: usize) -> PendingKeys {
        PendingKeys {
            keys: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// The entry of `sender`, made (after dropping the oldest entries beyond the capacity) when
    /// missing. `None` only with a capacity of zero.
    fn entry(&mut self, sender: u32) -> Option<&mut SenderKeys> {
        if !self.keys.contains_key(&sender) {
            if self.capacity == 0 {
                return None;
            }
            while self.keys.len() >= self.capacity {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.keys.remove(&oldest);
            }
            self.keys.insert(sender, SenderKeys::default());
            self.order.push_back(sender);
        }
        self.keys.get_mut(&sender)
    }

    fn remove(&mut self, sender: u32) -> Option<SenderKeys> {
        let keys = self.keys.remove(&sender)?;
        self.order.retain(|&id| id != sender);
        Some(keys)
    }
}

/// Receiver state: up to two cluster keys (live rotation) and, per sender node id, its derived
/// keys and replay window.
#[derive(Debug)]
pub struct Opener {
    /// Live keys; `keys[newest]` is the most recently installed when both slots are full.
    keys: [Option<ClusterKey>; MAX_LIVE_KEYS],
    newest: usize,
    senders: HashMap<u32, Sender>,
    pending: PendingKeys,
    max_senders: usize,
    when_full: WhenFull,
    /// Counts authenticated frames; orders senders by recency for [`WhenFull::EvictLeastRecent`].
    heard_clock: u64,
    stats: OpenStats,
}

impl Opener {
    /// A receiver holding `key`, tracking up to [`DEFAULT_MAX_SENDERS`] senders.
    pub fn new(key: ClusterKey) -> Opener {
        Opener::with_max_senders(key, DEFAULT_MAX_SENDERS)
    }

    /// A receiver holding `key`, tracking up to `max_senders` senders (the cluster's node limit),
    /// and keys for up to as many senders not yet authenticated.
    pub fn with_max_senders(key: ClusterKey, max_senders: usize) -> Opener {
        Opener {
            keys: [Some(key), None],
            newest: 0,
            senders: HashMap::with_capacity(max_senders),
            pending: PendingKeys::with_capacity(max_senders),
            max_senders,
            when_full: WhenFull::default(),
            heard_clock: 0,
            stats: OpenStats::default(),
        }
    }

    /// Sets what a full sender table does with a new sender (default [`WhenFull::Refuse`]).
    pub fn when_full(mut self, when_full: WhenFull) -> Opener {
        self.when_full = when_full;
        self
    }

    /// Accepts frames under `key` too. A key with the same id replaces that one; otherwise the
    /// older of two live keys is dropped, so at most two are accepted at once. Sender keys derived
    /// from the replaced key are dropped; those of `key` are derived when first needed.
    pub fn install_key(&mut self, key: ClusterKey) {
        let slot = self
            .slot_of(key.key_id())
            .or_else(|| self.keys.iter().position(Option::is_none))
            .unwrap_or(1 - self.newest);
        self.keys[slot] = Some(key);
        self.newest = slot;
        self.clear_cached_slot(slot);
    }

    /// Stops accepting frames under `key_id` (no-op when it is not live) and drops the sender
    /// keys derived from it.
    pub fn retire_key(&mut self, key_id: u8) {
        if let Some(slot) = self.slot_of(key_id) {
            self.keys[slot] = None;
            self.clear_cached_slot(slot);
        }
    }

    /// Ids of the keys accepted now.
    pub fn live_key_ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().flatten().map(ClusterKey::key_id)
    }

    /// Forgets a sender's keys and replay state (when the node leaves the configuration), freeing
    /// its slot.
    pub fn forget_sender(&mut self, sender: u32) {
        self.senders.remove(&sender);
        self.pending.remove(sender);
    }

    /// Authenticates and decrypts `payload` in place under `sender`'s key; replay-checks
    /// (`sender`, `nonce`) after the tag verifies. `aad` is the frame header as sent (it carries
    /// `sender`). On `Ok` the payload is the plaintext.
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

    /// Senders with replay state now (their frames authenticated).
    pub fn tracked_senders(&self) -> usize {
        self.senders.len()
    }

    /// Sender ids with derived keys but no authenticated frame yet.
    pub fn pending_senders(&self) -> usize {
        self.pending.keys.len()
    }

    /// Sender frame keys held now, authenticated and pending senders together.
    pub fn cached_keys(&self) -> usize {
        self.senders
            .values()
            .map(|s| s.keys.cached())
            .sum::<usize>()
            + self
                .pending
                .keys
                .values()
                .map(SenderKeys::cached)
                .sum::<usize>()
    }

    fn slot_of(&self, key_id: u8) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.as_ref().is_some_and(|k| k.key_id() == key_id))
    }

    fn clear_cached_slot(&mut self, slot: usize) {
        for sender in self.senders.values_mut() {
            sender.keys.clear_slot(slot);
        }
        for keys in self.pending.keys.values_mut() {
            keys.clear_slot(slot);
        }
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
        let Some(cluster_key) = self
            .slot_of(key_id)
            .and_then(|slot| self.keys[slot].as_ref().map(|key| (slot, key)))
        else {
            return Err(OpenError::UnknownKey);
        };
        let (slot, cluster_key) = cluster_key;
        let derived = &mut self.stats.keys_derived;

        // The hot path: a sender whose frames authenticated before.
        if let Some(known) = self.senders.get_mut(&sender) {
            known
                .keys
                .get_or_derive(slot, cluster_key, sender, derived)
                .cipher()
                .open(nonce, aad, payload, tag)
                .map_err(|_| OpenError::BadTag)?;
            self.heard_clock += 1;
            known.last_heard = self.heard_clock;
            let verdict = known.window.check_and_record(nonce.salt(), nonce.counter());
            return finish(verdict, payload, &mut self.stats);
        }

        // A sender not authenticated yet: only when it could get a slot.
        let full = self.senders.len() >= self.max_senders;
        if full && (self.when_full == WhenFull::Refuse || self.max_senders == 0) {
            return Err(OpenError::SenderLimit);
        }
        let Some(keys) = self.pending.entry(sender) else {
            return Err(OpenError::SenderLimit);
        };
        keys.get_or_derive(slot, cluster_key, sender, derived)
            .cipher()
            .open(nonce, aad, payload, tag)
            .map_err(|_| OpenError::BadTag)?;

        // Authenticated: the sender moves from pending to the table with a fresh window.
        let keys = self.pending.remove(sender).unwrap_or_default();
        if full {
            self.evict_least_recent();
        }
        self.heard_clock += 1;
        self.senders.insert(
            sender,
            Sender {
                keys,
                window: ReplayWindow::starting_at(nonce.salt(), nonce.counter()),
                last_heard: self.heard_clock,
            },
        );
        Ok(())
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.last_heard)
            .map(|(&id, _)| id);
        if let Some(id) = oldest {
            self.senders.remove(&id);
            self.stats.senders_evicted = self.stats.senders_evicted.saturating_add(1);
        }
    }
}

/// Applies the replay window's verdict to an authenticated frame: deliver, or zero and refuse.
fn finish(verdict: Verdict, payload: &mut [u8], stats: &mut OpenStats) -> Result<(), OpenError> {
    let refused = match verdict {
        Verdict::Fresh => return Ok(()),
        Verdict::FreshAfterRestart => {
            stats.sender_restarts = stats.sender_restarts.saturating_add(1);
            return Ok(());
        }
        Verdict::Replayed => OpenError::Replayed,
        Verdict::TooOld => OpenError::TooOld,
    };
    payload.fill(0);
    Err(refused)
}
