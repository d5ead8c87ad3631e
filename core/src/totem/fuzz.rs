//! The body of the `totem_msg` fuzz target, shared with a proptest so that a stable toolchain runs
//! it too: decode → encode → decode must agree, and any frame stream fed to an [`Srp`] must neither
//! panic nor break its invariants.

use super::wire::Frame;
use super::{Order, Srp, TotemConfig};
use crate::time::MonoTime;

/// Nodes of the fuzzed cluster; the instance under test is node 1.
const FUZZ_NODES: [crate::NodeId; 3] = [1, 2, 3];

/// Runs one fuzz input. Panics only on a bug.
pub fn fuzz_totem_msg(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let bytes = frame.encode();
        assert_eq!(
            bytes, data,
            "decoding is canonical: re-encoding gives the same bytes"
        );
        assert_eq!(Frame::decode(&bytes).as_ref(), Ok(&frame));
    }
    // The same bytes as a stream of records `sender u8 | len u16 LE | frame[len]` fed to node 1.
    let Ok(mut srp) = Srp::new(TotemConfig::for_nodes(&FUZZ_NODES), 1, 7, 0, MonoTime::ZERO) else {
        return;
    };
    let mut now = MonoTime::ZERO;
    let mut rest = data;
    while let [sender, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (frame, after) = tail.split_at(len);
        rest = after;
        now = now.plus_ms(u64::from(*sender >> 4));
        let from = u32::from(*sender & 3).max(1);
        let _ = srp.handle_frame(now, from, frame);
        if *sender & 4 != 0 {
            let _ = srp.submit(
                now,
                frame,
                if *sender & 8 != 0 {
                    Order::Safe
                } else {
                    Order::Agreed
                },
            );
        }
        if let Some(t) = srp.poll_timeout() {
            if t <= now.plus_ms(5000) {
                now = now.max(t);
                srp.handle_timeout(now);
            }
        }
        while let Some(action) = srp.poll_action() {
            if let super::Action::Send { frame, .. } = action {
                assert!(
                    Frame::decode(&frame).is_ok(),
                    "the core emits only decodable frames"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totem::wire::{Body, Join, Token};
    use crate::totem::RingId;
    use proptest::prelude::*;

    fn record(sender: u8, frame: &Frame) -> Vec<u8> {
        let bytes = frame.encode();
        let mut out = vec![sender];
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&bytes);
        out
    }

    proptest! {
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            fuzz_totem_msg(&data);
        }

        #[test]
        fn plausible_frame_streams(seqs in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u8..255), 1..30)) {
            let mut data = Vec::new();
            for (a, b, sender) in seqs {
                let from = u32::from(sender & 3).max(1);
                let body = if sender & 64 != 0 {
                    Body::Join(Join { ring_seq: a % 64, proc_list: vec![1, 2, 3], failed_list: vec![] })
                } else {
                    let seq = a % 100;
                    Body::Token(Token {
                        ring_id: RingId { rep: 1, seq: b % 16 },
                        token_seq: b % 7,
                        seq,
                        aru: seq / 2,
                        aru_addr: from,
                        fcc: 0,
                        backlog: 0,
                        retrans_flg: false,
                        install: sender & 32 != 0,
                        rtr: vec![seq / 3],
                    })
                };
                data.extend(record(sender, &Frame { sender: from, body }));
            }
            fuzz_totem_msg(&data);
        }
    }
}
