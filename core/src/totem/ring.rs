//! The receive buffer of one ring: messages by sequence number, all-received-up-to, delivery
//! point, and what every member is known to hold (safe / stable).

use super::wire::Mcast;
use super::RingId;
use crate::NodeId;
use std::collections::BTreeMap;

/// A ring this node belongs (or belonged) to and the messages it received on it.
#[derive(Debug)]
pub(super) struct Ring {
    /// Ring id.
    pub id: RingId,
    /// Members, ascending (ring order).
    pub members: Vec<NodeId>,
    /// Received, not yet freed messages by sequence number.
    pub buf: BTreeMap<u64, Mcast>,
    /// All received up to (contiguous from 1).
    pub aru: u64,
    /// Highest sequence number received.
    pub high_seq: u64,
    /// Delivered (or skipped) up to.
    pub delivered: u64,
    /// Every member had every message up to here (min of the token's aru on two consecutive
    /// visits, as corosync frees messages).
    pub safe_upto: u64,
    /// Whether this is the placeholder "ring" of a node that never was in one.
    pub placeholder: bool,
}

impl Ring {
    /// A fresh ring.
    pub(super) fn new(id: RingId, members: Vec<NodeId>) -> Ring {
        Ring {
            id,
            members,
            buf: BTreeMap::new(),
            aru: 0,
            high_seq: 0,
            delivered: 0,
            safe_upto: 0,
            placeholder: false,
        }
    }

    /// Stores a message unless it was already received or delivered; true if it was new.
    pub(super) fn insert(&mut self, seq: u64, msg: Mcast) -> bool {
        if seq == 0 || seq <= self.delivered.max(self.aru) || self.buf.contains_key(&seq) {
            return false;
        }
        self.buf.insert(seq, msg);
        self.high_seq = self.high_seq.max(seq);
        while self.buf.contains_key(&(self.aru + 1)) {
            self.aru += 1;
        }
        assert!(
            self.aru <= self.high_seq,
            "aru {} above high seq {}",
            self.aru,
            self.high_seq
        );
        true
    }

    /// Sequence numbers in `(aru, up_to]` not received, at most `max`.
    pub(super) fn missing(&self, up_to: u64, max: usize) -> Vec<u64> {
        (self.aru + 1..=up_to)
            .filter(|s| !self.buf.contains_key(s))
            .take(max)
            .collect()
    }

    /// Frees messages every member has and this node delivered.
    pub(super) fn free_stable(&mut self) {
        let upto = self.safe_upto.min(self.delivered).min(self.aru);
        while let Some((&s, _)) = self.buf.first_key_value() {
            if s > upto {
                break;
            }
            self.buf.remove(&s);
        }
    }
}
