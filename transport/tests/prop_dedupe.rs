//! Property test: the dedupe window delivers each sequence number at most once, and exactly once
//! when copies arrive within the window.

use std::collections::HashSet;

use proptest::prelude::*;
use totem_transport::dedupe::{Dedupe, DEDUPE_WINDOW_LEN};

proptest! {
    #[test]
    fn each_seq_delivered_once(
        start in any::<u32>(),
        // Each frame is sent 1..=3 times (active mode over up to three links)...
        copies in proptest::collection::vec(1usize..=3, 1..400),
        // ...and arrives displaced by a bounded reordering.
        jitter in proptest::collection::vec(0u64..64, 1200),
    ) {
        let base = u64::from(start);
        let mut arrivals = Vec::new();
        for (i, &n) in copies.iter().enumerate() {
            for c in 0..n {
                let seq = base + i as u64;
                let at = i as u64 * 8 + jitter[(i * 3 + c) % jitter.len()];
                arrivals.push((at, seq));
            }
        }
        arrivals.sort();
        let mut dedupe = Dedupe::new();
        let mut delivered = HashSet::new();
        for (_, seq) in arrivals {
            if dedupe.accept(9, seq) {
                prop_assert!(delivered.insert(seq), "seq {} delivered twice", seq);
            }
        }
        // Reordering (at most 64 ticks, 8 ticks per frame) stays far inside the window.
        prop_assert!(64 / 8 < DEDUPE_WINDOW_LEN);
        prop_assert_eq!(delivered.len(), copies.len());
        prop_assert_eq!(dedupe.counters().too_old, 0);
    }

    #[test]
    fn arbitrary_sequences_never_deliver_twice(seqs in proptest::collection::vec(any::<u16>(), 0..500)) {
        let mut dedupe = Dedupe::new();
        let mut delivered = HashSet::new();
        for seq in seqs {
            if dedupe.accept(1, u64::from(seq)) {
                prop_assert!(delivered.insert(seq));
            }
        }
    }
}
