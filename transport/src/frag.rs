//! Fragmentation of messages into data frames, and their reassembly with bounded memory.
//!
//! A message of up to [`MAX_MESSAGE_LEN`] bytes (corosync `MESSAGE_SIZE_MAX`, REFERENCE §1.5) is
//! cut by [`fragments`] into pieces of exactly `fragment_len` bytes except the last, which holds
//! the rest (1..=`fragment_len` bytes). Every piece travels in one data frame whose header carries
//! the message id, the fragment index and the fragment count ([`crate::wire::Fragment`]). There is
//! no offset on the wire: the receiver learns `fragment_len` from the first non-last fragment it
//! sees, so all non-last fragments of one message must have the same length.
//!
//! [`Reassembler`] puts messages back together per (sender, message id):
//! * at most [`ReassemblyConfig::max_in_flight_per_peer`] partial messages per sender; a new one
//!   beyond that evicts the sender's oldest partial message (counted);
//! * partial messages without progress for [`ReassemblyConfig::stale_after`] are dropped by
//!   [`Reassembler::expire`] (counted);
//! * duplicate fragments are ignored (counted), fragments arrive in any order, and a message is
//!   delivered at most once: the last [`RECENT_COMPLETED_LEN`] completed message ids are
//!   remembered per sender. With [`Reassembler::push_frame`] each is remembered with the highest
//!   frame sequence number seen from the sender at completion, so only copies of old frames
//!   count as late duplicates: a restarted sender (whose sequence numbers continue upwards, see
//!   [`crate::dedupe`]) may reuse message ids at once;
//! * reassembly buffers come from a pool and go back to it, so steady state does not allocate per
//!   fragment; a message that fits one frame is handed out without any copy.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::Duration;

use crate::wire::{Fragment, Header, MonoTime, MAX_FRAME_OVERHEAD, MIN_MTU};

/// Largest message the transport carries: corosync's `MESSAGE_SIZE_MAX` of 1 MiB (REFERENCE §1.5).
pub const MAX_MESSAGE_LEN: usize = 1 << 20;
/// Smallest fragment payload a sender may use: what fits in a [`MIN_MTU`] datagram after the
/// worst-case overhead. The receiver rejects smaller non-last fragments, which bounds the fragment
/// count (and so the bookkeeping) of any message.
pub const MIN_FRAGMENT_LEN: usize = MIN_MTU - MAX_FRAME_OVERHEAD;
/// Most fragments one message of [`MAX_MESSAGE_LEN`] can need.
pub const MAX_FRAGMENT_COUNT: usize = MAX_MESSAGE_LEN.div_ceil(MIN_FRAGMENT_LEN);
/// Completed message ids remembered per sender to drop late duplicates of delivered messages.
pub const RECENT_COMPLETED_LEN: usize = 64;

const _: () = assert!(MAX_FRAGMENT_COUNT <= u16::MAX as usize);
const _: () = assert!(MIN_FRAGMENT_LEN > 0);

/// Why a message could not be fragmented or a fragment was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragError {
    /// The message is longer than the configured maximum.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    MessageTooLong {
        /// Message length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// The sender asked for fragments smaller than [`MIN_FRAGMENT_LEN`].
    #[error("fragment length {0} is below the minimum {MIN_FRAGMENT_LEN}")]
    FragmentTooSmall(usize),
    /// Fragment index or count out of range (index ≥ count, count 0 or above the maximum).
    #[error("fragment {index}/{count} out of range")]
    BadFragmentFields {
        /// Index.
        index: u16,
        /// Count.
        count: u16,
    },
    /// The fragment's count differs from earlier fragments of the same message.
    #[error("fragment count {got} differs from {expected} for the same message")]
    CountMismatch {
        /// Count of the earlier fragments.
        expected: u16,
        /// Count of this fragment.
        got: u16,
    },
    /// A fragment's length does not fit the message's fragment length (or the minimum).
    #[error("fragment length {len} inconsistent with the message (fragment length {expected})")]
    LengthMismatch {
        /// This fragment's length.
        len: usize,
        /// The message's fragment length (0 while unknown).
        expected: usize,
    },
}

/// Splits `message` into fragments of `fragment_len` bytes (the last one shorter), numbered for
/// message id `message_id`. Does not copy; the caller writes each piece into a frame.
pub fn fragments(
    message: &[u8],
    message_id: u32,
    fragment_len: usize,
) -> Result<Fragments<'_>, FragError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(FragError::MessageTooLong {
            len: message.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    if fragment_len < MIN_FRAGMENT_LEN {
        return Err(FragError::FragmentTooSmall(fragment_len));
    }
    let count = message.len().div_ceil(fragment_len).max(1);
    let count = u16::try_from(count).map_err(|_| FragError::MessageTooLong {
        len: message.len(),
        max: MAX_MESSAGE_LEN,
    })?;
    Ok(Fragments {
        rest: message,
        message_id,
        fragment_len,
        next_index: 0,
        count,
    })
}

/// Iterator over the fragments of one message: header fields and the bytes to send.
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    rest: &'a [u8],
    message_id: u32,
    fragment_len: usize,
    next_index: u16,
    count: u16,
}

impl Fragments<'_> {
    /// Number of fragments of the message.
    pub fn fragment_count(&self) -> u16 {
        self.count
    }
}

impl<'a> Iterator for Fragments<'a> {
    type Item = (Fragment, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_index >= self.count {
            return None;
        }
        let take = self.fragment_len.min(self.rest.len());
        let (piece, rest) = self.rest.split_at(take);
        self.rest = rest;
        let fragment = Fragment {
            message_id: self.message_id,
            index: self.next_index,
            count: self.count,
        };
        self.next_index += 1;
        Some((fragment, piece))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.count - self.next_index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Fragments<'_> {}

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Longest message accepted; at most [`MAX_MESSAGE_LEN`].
    pub max_message_len: usize,
    /// Partial messages kept per sender; a new one beyond this evicts the oldest.
    pub max_in_flight_per_peer: usize,
    /// A partial message with no new fragment for this long is dropped by
    /// [`Reassembler::expire`].
    pub stale_after: Duration,
    /// Free reassembly buffers kept for reuse; more are released.
    pub pooled_buffers: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_message_len: MAX_MESSAGE_LEN,
            // Totem sends at most window_size = 50 messages per token rotation (REFERENCE §2.1),
            // most of them single-frame; 16 large messages in flight per peer is ample.
            max_in_flight_per_peer: 16,
            // After the token timeout (3000 ms default, REFERENCE §2.1) Totem has moved on and
            // will retransmit; a fragment set older than that is not going to complete usefully.
            stale_after: Duration::from_millis(3000),
            pooled_buffers: 16,
        }
    }
}

/// What a reassembler dropped or delivered, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyCounters {
    /// Messages handed out (single-frame and reassembled).
    pub delivered_messages: u64,
    /// Fragments already received for their message.
    pub duplicate_fragments: u64,
    /// Fragments of a message already delivered.
    pub late_duplicates: u64,
    /// Fragments rejected as malformed (a [`FragError`] was returned).
    pub malformed_fragments: u64,
    /// Partial messages dropped by [`Reassembler::expire`].
    pub stale_messages: u64,
    /// Partial messages evicted to make room for a newer one of the same sender.
    pub evicted_messages: u64,
}

/// Reassembles fragmented messages per (sender, message id). See the module doc.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    peers: HashMap<u32, PeerReassembly>,
    pool: Vec<Vec<u8>>,
    /// The buffer of the last delivered reassembled message; returned to the pool on the next
    /// delivery so the slice handed out stays valid until the next call.
    delivered: Vec<u8>,
    counters: ReassemblyCounters,
}

#[derive(Debug)]
struct PeerReassembly {
    slots: Vec<Slot>,
    /// (message id, highest frame seq seen from the sender when it completed, if known).
    recent_completed: [(u32, Option<u64>); RECENT_COMPLETED_LEN],
    recent_len: usize,
    recent_next: usize,
    /// Highest frame sequence number seen from this sender.
    highest_seq: Option<u64>,
}

#[derive(Debug, Default)]
struct Slot {
    in_use: bool,
    message_id: u32,
    count: u16,
    received_count: u16,
    /// Length of every non-last fragment; 0 until the first non-last fragment arrives.
    fragment_len: usize,
    /// Bit i set = fragment i received.
    received: Vec<u64>,
    /// Non-last fragments at `index * fragment_len`, then the last fragment once placed.
    buffer: Vec<u8>,
    /// The last fragment, when it arrived before `fragment_len` was known.
    parked_last: Vec<u8>,
    last_placed: bool,
    last_parked: bool,
    started_at: MonoTime,
    progress_at: MonoTime,
}

impl Reassembler {
    /// A reassembler with `config`; `pooled_buffers` buffers are allocated up front.
    pub fn new(config: ReassemblyConfig) -> Self {
        let config = ReassemblyConfig {
            max_message_len: config.max_message_len.min(MAX_MESSAGE_LEN),
            max_in_flight_per_peer: config.max_in_flight_per_peer.max(1),
            ..config
        };
        let pool = (0..config.pooled_buffers).map(|_| Vec::new()).collect();
        Reassembler {
            config,
            peers: HashMap::new(),
            pool,
            delivered: Vec::new(),
            counters: ReassemblyCounters::default(),
        }
    }

    /// Counters by reason since creation.
    pub fn counters(&self) -> ReassemblyCounters {
        self.counters
    }

    /// Number of partial messages held for all senders.
    pub fn in_flight(&self) -> usize {
        self.peers
            .values()
            .map(|peer| peer.slots.iter().filter(|slot| slot.in_use).count())
            .sum()
    }

    /// Takes one decoded data frame (its header and payload); returns the whole message when
    /// this frame completes it. Like [`Reassembler::push`], but the frame's sequence number tells
    /// late copies of delivered messages from new messages reusing their id (see module doc).
    pub fn push_frame<'a>(
        &'a mut self,
        now: MonoTime,
        header: &Header,
        payload: &'a [u8],
    ) -> Result<Option<&'a [u8]>, FragError> {
        self.push_checked(
            now,
            header.source_node_id,
            Some(header.seq),
            header.fragment,
            payload,
        )
    }

    /// Takes one fragment (the payload of a data frame from `sender`); returns the whole message
    /// when this fragment completes it. The returned slice is valid until the next call.
    /// Duplicates return `Ok(None)` and are counted; malformed fragments return an error and are
    /// counted too. Without the frame's sequence number a recently completed message id is always
    /// taken for a late duplicate; prefer [`Reassembler::push_frame`].
    pub fn push<'a>(
        &'a mut self,
        now: MonoTime,
        sender: u32,
        fragment: Fragment,
        payload: &'a [u8],
    ) -> Result<Option<&'a [u8]>, FragError> {
        self.push_checked(now, sender, None, fragment, payload)
    }

    fn push_checked<'a>(
        &'a mut self,
        now: MonoTime,
        sender: u32,
        seq: Option<u64>,
        fragment: Fragment,
        payload: &'a [u8],
    ) -> Result<Option<&'a [u8]>, FragError> {
        match self.push_inner(now, sender, seq, fragment, payload) {
            Ok(Completion::Pending) => Ok(None),
            Ok(Completion::Single) => {
                self.counters.delivered_messages += 1;
                Ok(Some(payload))
            }
            Ok(Completion::Reassembled) => {
                self.counters.delivered_messages += 1;
                Ok(Some(&self.delivered))
            }
            Err(error) => {
                self.counters.malformed_fragments += 1;
                Err(error)
            }
        }
    }

    /// Drops partial messages that made no progress for `stale_after`; returns how many.
    pub fn expire(&mut self, now: MonoTime) -> usize {
        let stale_after = self.config.stale_after;
        let mut dropped = 0;
        for peer in self.peers.values_mut() {
            for slot in peer.slots.iter_mut().filter(|slot| slot.in_use) {
                if now.saturating_since(slot.progress_at) >= stale_after {
                    release_slot(slot, &mut self.pool, self.config.pooled_buffers);
                    dropped += 1;
                }
            }
        }
        self.counters.stale_messages += dropped as u64;
        dropped
    }

    /// Forgets everything about `sender` (it left the membership), returning its buffers.
    pub fn forget_peer(&mut self, sender: u32) {
        if let Some(mut peer) = self.peers.remove(&sender) {
            for slot in peer.slots.iter_mut().filter(|slot| slot.in_use) {
                release_slot(slot, &mut self.pool, self.config.pooled_buffers);
            }
        }
    }

    fn push_inner(
        &mut self,
        now: MonoTime,
        sender: u32,
        seq: Option<u64>,
        fragment: Fragment,
        payload: &[u8],
    ) -> Result<Completion, FragError> {
        let count = usize::from(fragment.count);
        let max_count = self
            .config
            .max_message_len
            .div_ceil(MIN_FRAGMENT_LEN)
            .max(1);
        if fragment.count == 0 || fragment.index >= fragment.count || count > max_count {
            return Err(FragError::BadFragmentFields {
                index: fragment.index,
                count: fragment.count,
            });
        }
        let max_in_flight = self.config.max_in_flight_per_peer;
        let peer = self
            .peers
            .entry(sender)
            .or_insert_with(|| PeerReassembly::new(max_in_flight));
        if let Some(seq) = seq {
            peer.highest_seq = Some(peer.highest_seq.map_or(seq, |highest| highest.max(seq)));
        }
        let slot_index = match peer.find_slot(fragment.message_id) {
            Some(index) => index,
            None => {
                if peer.recently_completed(fragment.message_id, seq) {
                    self.counters.late_duplicates += 1;
                    return Ok(Completion::Pending);
                }
                if fragment.count == 1 {
                    if payload.len() > self.config.max_message_len {
                        return Err(FragError::MessageTooLong {
                            len: payload.len(),
                            max: self.config.max_message_len,
                        });
                    }
                    peer.remember_completed(fragment.message_id);
                    return Ok(Completion::Single);
                }
                let (index, evicted) = peer.claim_slot(&mut self.pool, self.config.pooled_buffers);
                self.counters.evicted_messages += u64::from(evicted);
                peer.slots[index].start(fragment, now);
                index
            }
        };
        let slot = &mut peer.slots[slot_index];
        if slot.has(fragment.index) {
            self.counters.duplicate_fragments += 1;
            return Ok(Completion::Pending);
        }
        if let Err(error) = slot.place(fragment, payload, self.config.max_message_len) {
            // An inconsistent fragment poisons its message: drop what we have of it.
            release_slot(slot, &mut self.pool, self.config.pooled_buffers);
            return Err(error);
        }
        slot.progress_at = now;
        if slot.received_count < slot.count {
            return Ok(Completion::Pending);
        }
        let message_id = slot.message_id;
        let buffer = std::mem::take(&mut slot.buffer);
        slot.in_use = false;
        peer.remember_completed(message_id);
        let previous = std::mem::replace(&mut self.delivered, buffer);
        return_to_pool(&mut self.pool, previous, self.config.pooled_buffers);
        Ok(Completion::Reassembled)
    }
}

enum Completion {
    Pending,
    Single,
    Reassembled,
}

fn return_to_pool(pool: &mut Vec<Vec<u8>>, mut buffer: Vec<u8>, pooled_buffers: usize) {
    if pool.len() < pooled_buffers {
        buffer.clear();
        pool.push(buffer);
    }
}

fn release_slot(slot: &mut Slot, pool: &mut Vec<Vec<u8>>, pooled_buffers: usize) {
    let buffer = std::mem::take(&mut slot.buffer);
    return_to_pool(pool, buffer, pooled_buffers);
    slot.in_use = false;
}

impl PeerReassembly {
    fn new(max_in_flight: usize) -> Self {
        PeerReassembly {
            slots: (0..max_in_flight).map(|_| Slot::default()).collect(),
            recent_completed: [(0, None); RECENT_COMPLETED_LEN],
            recent_len: 0,
            recent_next: 0,
            highest_seq: None,
        }
    }

    fn find_slot(&self, message_id: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.in_use && slot.message_id == message_id)
    }

    /// Whether a frame `seq` of message `message_id` is a copy of a frame of a message already
    /// delivered: the id completed recently, and the frame is not newer than what had been seen
    /// from the sender at that point (unknown sequence numbers count as old).
    fn recently_completed(&self, message_id: u32, seq: Option<u64>) -> bool {
        self.recent_completed[..self.recent_len]
            .iter()
            .any(|&(id, seen_at_completion)| {
                id == message_id
                    && match (seq, seen_at_completion) {
                        (Some(seq), Some(seen)) => seq <= seen,
                        _ => true,
                    }
            })
    }

    fn remember_completed(&mut self, message_id: u32) {
        self.recent_completed[self.recent_next] = (message_id, self.highest_seq);
        self.recent_next = (self.recent_next + 1) % RECENT_COMPLETED_LEN;
        self.recent_len = (self.recent_len + 1).min(RECENT_COMPLETED_LEN);
    }

    /// A free slot, or the oldest one emptied; the flag says whether a message was evicted.
    fn claim_slot(&mut self, pool: &mut Vec<Vec<u8>>, pooled_buffers: usize) -> (usize, bool) {
        if let Some(free) = self.slots.iter().position(|slot| !slot.in_use) {
            let buffer = pool.pop().unwrap_or_default();
            self.slots[free].buffer = buffer;
            return (free, false);
        }
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, slot)| slot.started_at)
            .map_or(0, |(index, _)| index);
        release_slot(&mut self.slots[oldest], pool, pooled_buffers);
        self.slots[oldest].buffer = pool.pop().unwrap_or_default();
        (oldest, true)
    }
}

impl Slot {
    fn start(&mut self, fragment: Fragment, now: MonoTime) {
        self.in_use = true;
        self.message_id = fragment.message_id;
        self.count = fragment.count;
        self.received_count = 0;
        self.fragment_len = 0;
        self.received.clear();
        self.received
            .resize(usize::from(fragment.count).div_ceil(64), 0);
        self.buffer.clear();
        self.parked_last.clear();
        self.last_placed = false;
        self.last_parked = false;
        self.started_at = now;
        self.progress_at = now;
    }

    fn has(&self, index: u16) -> bool {
        let index = usize::from(index);
        self.received
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    fn mark(&mut self, index: u16) {
        let index = usize::from(index);
        if let Some(word) = self.received.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
        self.received_count += 1;
    }

    /// Copies one not yet received fragment into place.
    fn place(
        &mut self,
        fragment: Fragment,
        payload: &[u8],
        max_message_len: usize,
    ) -> Result<(), FragError> {
        if fragment.count != self.count {
            return Err(FragError::CountMismatch {
                expected: self.count,
                got: fragment.count,
            });
        }
        let mismatch = FragError::LengthMismatch {
            len: payload.len(),
            expected: self.fragment_len,
        };
        let is_last = fragment.index + 1 == self.count;
        if is_last {
            if payload.is_empty() || (self.fragment_len != 0 && payload.len() > self.fragment_len) {
                return Err(mismatch);
            }
            if self.fragment_len == 0 {
                self.parked_last.clear();
                self.parked_last.extend_from_slice(payload);
                self.last_parked = true;
            } else {
                self.place_last(payload, max_message_len)?;
            }
        } else {
            if self.fragment_len == 0 {
                self.learn_fragment_len(payload.len(), max_message_len)?;
            } else if payload.len() != self.fragment_len {
                return Err(mismatch);
            }
            let start = usize::from(fragment.index) * self.fragment_len;
            let target = self
                .buffer
                .get_mut(start..start + self.fragment_len)
                .ok_or(mismatch)?;
            target.copy_from_slice(payload);
        }
        self.mark(fragment.index);
        Ok(())
    }

    /// First non-last fragment: size the buffer and place a parked last fragment.
    fn learn_fragment_len(&mut self, len: usize, max_message_len: usize) -> Result<(), FragError> {
        let body_len = len * (usize::from(self.count) - 1);
        if len < MIN_FRAGMENT_LEN || body_len >= max_message_len {
            return Err(FragError::LengthMismatch { len, expected: 0 });
        }
        self.fragment_len = len;
        self.buffer.resize(body_len, 0);
        if self.last_parked {
            let parked = std::mem::take(&mut self.parked_last);
            let placed = if parked.len() > len {
                Err(FragError::LengthMismatch {
                    len: parked.len(),
                    expected: len,
                })
            } else {
                self.place_last(&parked, max_message_len)
            };
            self.parked_last = parked;
            placed?;
        }
        Ok(())
    }

    fn place_last(&mut self, payload: &[u8], max_message_len: usize) -> Result<(), FragError> {
        let total = self.buffer.len() + payload.len();
        if total > max_message_len {
            return Err(FragError::MessageTooLong {
                len: total,
                max: max_message_len,
            });
        }
        self.buffer.extend_from_slice(payload);
        self.last_placed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    const T0: MonoTime = MonoTime(1_000_000_000);

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    fn pieces(msg: &[u8], id: u32, len: usize) -> Vec<(Fragment, Vec<u8>)> {
        fragments(msg, id, len)
            .unwrap()
            .map(|(f, p)| (f, p.to_vec()))
            .collect()
    }

    #[test]
    fn fragments_cover_the_message_exactly() {
        let msg = message(2000);
        let parts = pieces(&msg, 3, 500);
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|(f, _)| f.count == 4 && f.message_id == 3));
        assert_eq!(parts.concat_payload(), msg);
        let parts = pieces(&msg, 3, 600);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[3].1.len(), 200);
        assert_eq!(pieces(&[], 1, 500).len(), 1);
        assert_eq!(
            fragments(&msg, 1, MIN_FRAGMENT_LEN - 1).err(),
            Some(FragError::FragmentTooSmall(MIN_FRAGMENT_LEN - 1))
        );
        let huge = vec![0u8; MAX_MESSAGE_LEN + 1];
        assert!(fragments(&huge, 1, 1400).is_err());
        assert_eq!(
            fragments(&huge[..MAX_MESSAGE_LEN], 1, MIN_FRAGMENT_LEN)
                .unwrap()
                .fragment_count(),
            MAX_FRAGMENT_COUNT as u16
        );
    }

    trait Concat {
        fn concat_payload(&self) -> Vec<u8>;
    }
    impl Concat for Vec<(Fragment, Vec<u8>)> {
        fn concat_payload(&self) -> Vec<u8> {
            self.iter().flat_map(|(_, p)| p.iter().copied()).collect()
        }
    }

    #[test]
    fn reassembles_reversed_with_duplicates() {
        let msg = message(5000);
        let mut parts = pieces(&msg, 9, 700);
        parts.reverse();
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut out = None;
        for (f, p) in &parts {
            if let Some(done) = r.push(T0, 2, *f, p).unwrap() {
                out = Some(done.to_vec());
            }
            assert_eq!(r.push(T0, 2, *f, p).unwrap(), None);
        }
        assert_eq!(out.unwrap(), msg);
        assert_eq!(r.counters().delivered_messages, 1);
        assert_eq!(r.counters().duplicate_fragments, parts.len() as u64 - 1);
        assert_eq!(r.counters().late_duplicates, 1);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn single_frame_messages_are_not_copied_and_delivered_once() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let payload = b"tiny";
        let got = r.push(T0, 1, Fragment::WHOLE, payload).unwrap().unwrap();
        assert_eq!(got.as_ptr(), payload.as_ptr());
        assert_eq!(r.push(T0, 1, Fragment::WHOLE, payload).unwrap(), None);
        // The same message id from another sender is another message.
        assert!(r.push(T0, 2, Fragment::WHOLE, payload).unwrap().is_some());
    }

    #[test]
    fn reused_message_ids_with_newer_frames_are_new_messages() {
        let header = |seq: u64| Header {
            frame_type: crate::wire::FrameType::Data,
            encrypted: false,
            key_id: 0,
            link_number: 0,
            cluster_id: crate::wire::ClusterId(1),
            source_node_id: 5,
            seq,
            fragment: Fragment::WHOLE,
            payload_len: 3,
            nonce: [0; crate::wire::NONCE_LEN],
        };
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert!(r.push_frame(T0, &header(100), b"old").unwrap().is_some());
        // A copy of that frame (same seq) is a late duplicate...
        assert_eq!(r.push_frame(T0, &header(100), b"old").unwrap(), None);
        assert_eq!(r.counters().late_duplicates, 1);
        // ...but the restarted sender's message 0 with a higher seq is new.
        assert_eq!(
            r.push_frame(T0, &header(5_000), b"new").unwrap(),
            Some(&b"new"[..])
        );
        // Without sequence numbers the id alone decides.
        assert_eq!(r.push(T0, 5, Fragment::WHOLE, b"new").unwrap(), None);
    }

    #[test]
    fn stale_partials_expire_and_are_counted() {
        let msg = message(3000);
        let parts = pieces(&msg, 1, 1000);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        r.push(T0, 4, parts[0].0, &parts[0].1).unwrap();
        assert_eq!(r.in_flight(), 1);
        assert_eq!(r.expire(T0.saturating_add(Duration::from_millis(2999))), 0);
        assert_eq!(r.expire(T0.saturating_add(Duration::from_millis(3000))), 1);
        assert_eq!(r.counters().stale_messages, 1);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn in_flight_cap_evicts_the_oldest() {
        let config = ReassemblyConfig {
            max_in_flight_per_peer: 2,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(config);
        let msg = message(2000);
        for id in 0..3u32 {
            let parts = pieces(&msg, id, 1000);
            let now = T0.saturating_add(Duration::from_millis(u64::from(id)));
            assert_eq!(r.push(now, 1, parts[0].0, &parts[0].1).unwrap(), None);
        }
        assert_eq!(r.in_flight(), 2);
        assert_eq!(r.counters().evicted_messages, 1);
        // Message 0 was evicted; its second half alone cannot complete it.
        let parts = pieces(&msg, 0, 1000);
        assert_eq!(r.push(T0, 1, parts[1].0, &parts[1].1).unwrap(), None);
        // Message 2 completes.
        let parts = pieces(&msg, 2, 1000);
        assert_eq!(
            r.push(T0, 1, parts[1].0, &parts[1].1).unwrap().unwrap(),
            &msg[..]
        );
    }

    #[test]
    fn inconsistent_fragments_are_rejected() {
        let msg = message(3000);
        let parts = pieces(&msg, 1, 1000);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        r.push(T0, 1, parts[0].0, &parts[0].1).unwrap();
        let short = &parts[1].1[..999];
        assert!(matches!(
            r.push(T0, 1, parts[1].0, short),
            Err(FragError::LengthMismatch { .. })
        ));
        let other_count = Fragment {
            count: 4,
            ..parts[1].0
        };
        r.push(T0, 1, parts[0].0, &parts[0].1).unwrap();
        assert!(matches!(
            r.push(T0, 1, other_count, &parts[1].1),
            Err(FragError::CountMismatch { .. })
        ));
        let bad = Fragment {
            message_id: 5,
            index: 2,
            count: 2,
        };
        assert!(matches!(
            r.push(T0, 1, bad, b"x"),
            Err(FragError::BadFragmentFields { .. })
        ));
        // Non-last fragments below the minimum length would allow huge fragment counts.
        let tiny = Fragment {
            message_id: 6,
            index: 0,
            count: 3,
        };
        assert!(r.push(T0, 1, tiny, &[0u8; 10]).is_err());
        // A parked last fragment longer than the learned fragment length poisons the message.
        let last = Fragment {
            message_id: 7,
            index: 1,
            count: 2,
        };
        r.push(T0, 1, last, &[1u8; 900]).unwrap();
        let first = Fragment { index: 0, ..last };
        assert!(r.push(T0, 1, first, &[1u8; 800]).is_err());
        assert_eq!(r.counters().malformed_fragments, 5);
    }

    #[test]
    fn buffers_are_reused_across_messages() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let msg = message(4000);
        for id in 0..10u32 {
            let parts = pieces(&msg, id, 1000);
            let mut done = false;
            for (f, p) in &parts {
                done |= r.push(T0, 1, *f, p).unwrap().is_some();
            }
            assert!(done);
        }
        // One buffer holds the last delivery, at most one was ever taken beyond the pool.
        assert!(r.pool.len() >= ReassemblyConfig::default().pooled_buffers - 1);
        assert!(r.pool.iter().any(|b| b.capacity() >= 4000));
    }
}
