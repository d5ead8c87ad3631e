//! Client messages ↔ multicast packets: packing of small messages, fragmentation of large ones
//! (up to 1 MiB) and reassembly in delivery order, like corosync's totempg.
//!
//! A packet payload is a sequence of chunks:
//!
//! ```text
//! whole:    0u8 | len u32 | bytes[len]
//! fragment: 1u8 | total_len u32 | offset u32 | len u32 | bytes[len]
//! ```
//!
//! A sender's packets are delivered in the order it sent them (they take increasing sequence
//! numbers on one ring), so a message's fragments arrive consecutively per sender. The reassembler
//! accepts a fragment only if it continues the partial message exactly; anything else (a gap left
//! by a failed sender in a transitional configuration) drops the partial message. Partial messages
//! are dropped at every configuration change; the sender then resends its unfinished message whole.

use super::Order;
use crate::NodeId;
use std::collections::{BTreeMap, VecDeque};

const CHUNK_WHOLE: u8 = 0;
const CHUNK_FRAGMENT: u8 = 1;
/// Bytes before a whole message's data.
pub const WHOLE_HEADER_LEN: usize = 1 + 4;
/// Bytes before a fragment's data.
pub const FRAGMENT_HEADER_LEN: usize = 1 + 4 + 4 + 4;

/// A client message waiting to be multicast.
#[derive(Debug)]
struct Outgoing {
    data: Vec<u8>,
    order: Order,
    /// Bytes already packed into packets of the current ring.
    sent: usize,
}

/// The local send queue: whole client messages in, packets out.
#[derive(Debug, Default)]
pub struct Packer {
    queue: VecDeque<Outgoing>,
}

impl Packer {
    /// Messages queued (a partially sent one counts).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a message.
    pub fn push(&mut self, data: Vec<u8>, order: Order) {
        self.queue.push_back(Outgoing {
            data,
            order,
            sent: 0,
        });
    }

    /// A new ring was installed: receivers dropped partial messages, so resend the unfinished one
    /// from its start.
    pub fn restart_partial(&mut self) {
        if let Some(front) = self.queue.front_mut() {
            front.sent = 0;
        }
    }

    /// Builds the next packet of at most `budget` payload bytes, or `None` if nothing waits.
    /// Returns the packet's order (all chunks of a packet share one).
    pub fn next_packet(&mut self, budget: usize) -> Option<(Order, Vec<u8>)> {
        let order = self.queue.front()?.order;
        let mut out = Vec::with_capacity(budget.min(4096));
        while let Some(front) = self.queue.front_mut() {
            if front.order != order {
                break;
            }
            let room = budget.saturating_sub(out.len());
            let total = front.data.len();
            if front.sent == 0 && WHOLE_HEADER_LEN + total <= room {
                out.push(CHUNK_WHOLE);
                out.extend_from_slice(&u32_len(total).to_le_bytes());
                out.extend_from_slice(&front.data);
                self.queue.pop_front();
                continue;
            }
            if room <= FRAGMENT_HEADER_LEN {
                break;
            }
            let len = (room - FRAGMENT_HEADER_LEN).min(total - front.sent);
            out.push(CHUNK_FRAGMENT);
            out.extend_from_slice(&u32_len(total).to_le_bytes());
            out.extend_from_slice(&u32_len(front.sent).to_le_bytes());
            out.extend_from_slice(&u32_len(len).to_le_bytes());
            out.extend_from_slice(&front.data[front.sent..front.sent + len]);
            front.sent += len;
            if front.sent == total {
                self.queue.pop_front();
            } else {
                break; // the packet is full
            }
        }
        Some((order, out))
    }
}

fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Debug)]
struct Partial {
    total: usize,
    data: Vec<u8>,
}

/// Per-sender reassembly of delivered packets into client messages.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: BTreeMap<NodeId, Partial>,
}

impl Reassembler {
    /// Drops every partial message (configuration change).
    pub fn clear(&mut self) {
        self.partial.clear();
    }

    /// Feeds one delivered packet from `origin`; complete messages are appended to `out`.
    /// Malformed packets (only possible from a buggy or hostile member) are dropped from the
    /// first bad chunk on; `max_message` bounds a reassembled message.
    pub fn push(
        &mut self,
        origin: NodeId,
        mut packet: &[u8],
        max_message: usize,
        out: &mut Vec<Vec<u8>>,
    ) {
        while let Some((&kind, rest)) = packet.split_first() {
            packet = rest;
            match kind {
                CHUNK_WHOLE => {
                    let Some((len, rest)) = read_u32(packet) else {
                        return;
                    };
                    let Some(data) = rest.get(..len) else { return };
                    packet = &rest[len..];
                    // A whole message after an unfinished one: the rest of that one is lost.
                    self.partial.remove(&origin);
                    out.push(data.to_vec());
                }
                CHUNK_FRAGMENT => {
                    let Some((total, rest)) = read_u32(packet) else {
                        return;
                    };
                    let Some((offset, rest)) = read_u32(rest) else {
                        return;
                    };
                    let Some((len, rest)) = read_u32(rest) else {
                        return;
                    };
                    let Some(data) = rest.get(..len) else { return };
                    packet = &rest[len..];
                    let fits = offset
                        .checked_add(len)
                        .map(|end| end <= total)
                        .unwrap_or(false);
                    if total > max_message || !fits {
                        self.partial.remove(&origin);
                        return;
                    }
                    if offset == 0 {
                        self.partial.insert(
                            origin,
                            Partial {
                                total,
                                data: Vec::with_capacity(total),
                            },
                        );
                    }
                    let Some(p) = self.partial.get_mut(&origin) else {
                        continue;
                    };
                    if p.total != total || p.data.len() != offset {
                        self.partial.remove(&origin);
                        continue;
                    }
                    p.data.extend_from_slice(data);
                    if p.data.len() == p.total {
                        if let Some(done) = self.partial.remove(&origin) {
                            out.push(done.data);
                        }
                    }
                }
                _ => return,
            }
        }
    }
}

fn read_u32(b: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head) as usize, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(messages: &[Vec<u8>], budget: usize) -> (usize, Vec<Vec<u8>>) {
        let mut p = Packer::default();
        for m in messages {
            p.push(m.clone(), Order::Agreed);
        }
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        let mut packets = 0;
        while let Some((_, pkt)) = p.next_packet(budget) {
            assert!(pkt.len() <= budget);
            packets += 1;
            r.push(7, &pkt, 1 << 20, &mut out);
        }
        (packets, out)
    }

    #[test]
    fn small_messages_are_packed() {
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 50]).collect();
        let (packets, out) = run(&msgs, 1300);
        assert_eq!(packets, 1);
        assert_eq!(out, msgs);
    }

    #[test]
    fn one_mib_is_fragmented_and_reassembled() {
        let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
        let (packets, out) = run(std::slice::from_ref(&big), 1300);
        assert!(packets > 800);
        assert_eq!(out, vec![big]);
    }

    #[test]
    fn gap_drops_the_partial_message() {
        let mut p = Packer::default();
        p.push(vec![1; 3000], Order::Agreed);
        p.push(vec![2; 10], Order::Agreed);
        let pkts: Vec<_> = std::iter::from_fn(|| p.next_packet(1000)).collect();
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        for (i, (_, pkt)) in pkts.iter().enumerate() {
            if i != 1 {
                r.push(1, pkt, 1 << 20, &mut out);
            }
        }
        assert_eq!(out, vec![vec![2; 10]]);
    }

    proptest! {
        #[test]
        fn pack_unpack_round_trip(sizes in proptest::collection::vec(0usize..5000, 0..20), budget in 64usize..2000) {
            let msgs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
            let (_, out) = run(&msgs, budget);
            prop_assert_eq!(out, msgs);
        }

        #[test]
        fn garbage_packets_never_panic(pkt in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut r = Reassembler::default();
            let mut out = Vec::new();
            r.push(1, &pkt, 1 << 20, &mut out);
        }
    }
}
