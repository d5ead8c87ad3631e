//! Property tests for fragmentation and reassembly under arbitrary order, loss and duplication.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;

use proptest::prelude::*;
use totem_transport::frag::{fragments, Reassembler, ReassemblyConfig, MIN_FRAGMENT_LEN};
use totem_transport::wire::{ClusterId, Fragment, FrameType, Header, MonoTime, NONCE_LEN};

/// One delivery event on the simulated path: which message, which fragment.
#[derive(Debug, Clone)]
struct Sent {
    sender: u32,
    message_index: usize,
    seq: u64,
    fragment: Fragment,
    payload: Vec<u8>,
}

prop_compose! {
    fn messages()(lens in proptest::collection::vec(0usize..12_000, 1..8), seed in any::<u8>())
        -> Vec<Vec<u8>> {
        lens.iter()
            .enumerate()
            .map(|(m, &len)| (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ m as u8)).collect())
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reassembly_under_reorder_loss_and_duplication(
        msgs in messages(),
        fragment_len in MIN_FRAGMENT_LEN..3000,
        // Per fragment: how many copies arrive (0 = lost, 1 = once, 2-3 = duplicated).
        copies in proptest::collection::vec(prop_oneof![1 => Just(0u8), 6 => Just(1u8), 2 => 2u8..=3], 512),
        order_keys in proptest::collection::vec(any::<u32>(), 2048),
        senders in 1u32..=3,
        // Whether the receiver passes frame sequence numbers (push_frame) or not (push).
        with_seq in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        let mut copy_index = 0;
        let mut expected_complete = vec![true; msgs.len()];
        let mut seq = 0u64;
        for (m, msg) in msgs.iter().enumerate() {
            let sender = m as u32 % senders;
            for (fragment, piece) in fragments(msg, m as u32, fragment_len).unwrap() {
                let n = copies[copy_index % copies.len()];
                copy_index += 1;
                if n == 0 {
                    expected_complete[m] = false;
                }
                seq += 1;
                for _ in 0..n {
                    wire.push(Sent { sender, message_index: m, seq, fragment, payload: piece.to_vec() });
                }
            }
        }
        // Arbitrary arrival order: sort by random keys.
        let mut keyed: Vec<(u32, Sent)> = wire
            .into_iter()
            .enumerate()
            .map(|(i, s)| (order_keys[i % order_keys.len()] ^ i as u32, s))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);

        let config = ReassemblyConfig { max_in_flight_per_peer: 8, ..ReassemblyConfig::default() };
        let mut r = Reassembler::new(config);
        let mut delivered: HashMap<usize, usize> = HashMap::new();
        for (_, sent) in &keyed {
            let out = if with_seq {
                let header = Header {
                    frame_type: FrameType::Data,
                    encrypted: false,
                    key_id: 0,
                    link_number: 0,
                    cluster_id: ClusterId(1),
                    source_node_id: sent.sender,
                    seq: sent.seq,
                    fragment: sent.fragment,
                    payload_len: sent.payload.len() as u16,
                    nonce: [0; NONCE_LEN],
                };
                r.push_frame(MonoTime(1), &header, &sent.payload).unwrap()
            } else {
                r.push(MonoTime(1), sent.sender, sent.fragment, &sent.payload).unwrap()
            };
            if let Some(message) = out {
                prop_assert_eq!(message, &msgs[sent.message_index][..]);
                *delivered.entry(sent.message_index).or_default() += 1;
            }
        }
        for (m, complete) in expected_complete.iter().enumerate() {
            let times = delivered.get(&m).copied().unwrap_or(0);
            if *complete {
                prop_assert_eq!(times, 1, "complete message {} delivered {} times", m, times);
            } else {
                prop_assert_eq!(times, 0, "incomplete message {} delivered", m);
            }
        }
        prop_assert_eq!(r.counters().malformed_fragments, 0);
        // Whatever is left partial is cleaned up by the stale timeout.
        r.expire(MonoTime(u64::MAX));
        prop_assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn arbitrary_fragments_never_panic(
        pushes in proptest::collection::vec(
            (0u32..3, 0u32..4, any::<u16>(), 0u16..6, proptest::collection::vec(any::<u8>(), 0..1500)),
            0..64),
    ) {
        let mut r = Reassembler::new(ReassemblyConfig { max_in_flight_per_peer: 2, ..ReassemblyConfig::default() });
        for (sender, message_id, index, count, payload) in pushes {
            let fragment = Fragment { message_id, index: index % 6, count };
            if let Ok(Some(message)) = r.push(MonoTime(0), sender, fragment, &payload) {
                prop_assert!(message.len() <= totem_transport::frag::MAX_MESSAGE_LEN);
            }
        }
        prop_assert!(r.in_flight() <= 3 * 2);
    }
}
