//! Seal → open through the public API: every rejection reason, key rotation, sender limits, and
//! property tests for round trips and tampering.

use proptest::prelude::*;
use totem_crypto::open::DEFAULT_MAX_SENDERS;
use totem_crypto::{
    AuthKey, FrameKey, Nonce, OpenError, OpenStats, Opener, Sealer, NONCE_LEN, TAG_LEN,
};

const CLUSTER: &str = "pve-test";
const SENDER: u32 = 2;

fn authkey(fill: u8) -> AuthKey {
    AuthKey::from_bytes(&[fill; 256]).expect("authkey")
}

fn frame_key(key_id: u8) -> FrameKey {
    FrameKey::derive(&authkey(0x11), CLUSTER, key_id)
}

/// One sealed frame as the transport would carry it.
#[derive(Clone, Debug)]
struct Frame {
    key_id: u8,
    nonce: Nonce,
    aad: Vec<u8>,
    payload: Vec<u8>,
    tag: [u8; TAG_LEN],
}

fn seal(sealer: &mut Sealer, aad: &[u8], plain: &[u8]) -> Frame {
    let (key_id, nonce) = sealer.next_nonce().expect("nonce");
    let mut payload = plain.to_vec();
    let tag = sealer
        .seal_in_place(&nonce, aad, &mut payload)
        .expect("seal");
    Frame {
        key_id,
        nonce,
        aad: aad.to_vec(),
        payload,
        tag,
    }
}

fn open(opener: &mut Opener, sender: u32, frame: &Frame) -> Result<Vec<u8>, OpenError> {
    let mut payload = frame.payload.clone();
    opener
        .open_in_place(
            sender,
            frame.key_id,
            &frame.nonce,
            &frame.aad,
            &mut payload,
            &frame.tag,
        )
        .map(|()| payload)
}

fn expect_only(stats: OpenStats, expected: OpenStats) {
    assert_eq!(stats, expected);
}

#[test]
fn round_trip_delivers_the_plaintext() {
    let mut sealer = Sealer::new(frame_key(0), [1, 2, 3, 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"header", b"hello totem");
    assert_ne!(frame.payload, b"hello totem");
    assert_eq!(
        open(&mut opener, SENDER, &frame).expect("open"),
        b"hello totem"
    );
    expect_only(
        opener.stats(),
        OpenStats {
            opened: 1,
            ..OpenStats::default()
        },
    );
}

#[test]
fn empty_payload_and_empty_aad_round_trip() {
    let mut sealer = Sealer::new(frame_key(0), [0; 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"", b"");
    assert_eq!(open(&mut opener, SENDER, &frame).expect("open"), b"");
}

#[test]
fn any_flipped_bit_in_header_payload_or_tag_is_a_bad_tag() {
    let mut sealer = Sealer::new(frame_key(0), [5; 4]);
    let frame = seal(&mut sealer, b"0123456789abcdef", &[0x42; 48]);
    let mut opener = Opener::new(frame_key(0));
    let mut tried = 0u64;
    for index in 0..frame.aad.len() + frame.payload.len() + TAG_LEN {
        let mut bad = frame.clone();
        if index < bad.aad.len() {
            bad.aad[index] ^= 0x01;
        } else if index < bad.aad.len() + bad.payload.len() {
            bad.payload[index - bad.aad.len()] ^= 0x80;
        } else {
            bad.tag[index - bad.aad.len() - bad.payload.len()] ^= 0x10;
        }
        assert_eq!(
            open(&mut opener, SENDER, &bad),
            Err(OpenError::BadTag),
            "byte {index}"
        );
        tried += 1;
    }
    for index in 0..NONCE_LEN {
        let mut bad = frame.clone();
        bad.nonce.0[index] ^= 0x04;
        assert_eq!(
            open(&mut opener, SENDER, &bad),
            Err(OpenError::BadTag),
            "nonce {index}"
        );
        tried += 1;
    }
    expect_only(
        opener.stats(),
        OpenStats {
            bad_tag: tried,
            ..OpenStats::default()
        },
    );
    // The untouched frame still opens: rejections did not move the replay window.
    assert!(open(&mut opener, SENDER, &frame).is_ok());
}

#[test]
fn failed_open_leaves_no_plaintext_in_the_buffer() {
    let mut sealer = Sealer::new(frame_key(0), [5; 4]);
    let mut opener = Opener::new(frame_key(0));
    let mut frame = seal(&mut sealer, b"h", &[0x42; 32]);
    frame.tag[0] ^= 1;
    let mut payload = frame.payload.clone();
    let result = opener.open_in_place(SENDER, 0, &frame.nonce, b"h", &mut payload, &frame.tag);
    assert_eq!(result, Err(OpenError::BadTag));
    assert!(
        !payload.windows(4).any(|w| w == [0x42; 4]),
        "plaintext leaked: {payload:?}"
    );
}

#[test]
fn truncated_bodies_are_counted() {
    let mut sealer = Sealer::new(frame_key(0), [0; 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"h", b"data");
    let mut body = [frame.payload.clone(), frame.tag.to_vec()].concat();
    for len in 0..TAG_LEN {
        let mut short = body[..len].to_vec();
        let result = opener.open_in_place_tag_suffix(SENDER, 0, &frame.nonce, b"h", &mut short);
        assert_eq!(
            result.map(|p| p.to_vec()),
            Err(OpenError::Truncated),
            "len {len}"
        );
    }
    // A body cut inside the ciphertext has a whole "tag" but it does not verify.
    let cut = body.len() - 1;
    let mut short = body[..cut].to_vec();
    let result = opener.open_in_place_tag_suffix(SENDER, 0, &frame.nonce, b"h", &mut short);
    assert_eq!(result.map(|p| p.to_vec()), Err(OpenError::BadTag));
    let opened = opener
        .open_in_place_tag_suffix(SENDER, 0, &frame.nonce, b"h", &mut body)
        .expect("whole body opens");
    assert_eq!(opened, b"data");
    opener.count_truncated();
    expect_only(
        opener.stats(),
        OpenStats {
            opened: 1,
            truncated: TAG_LEN as u64 + 1,
            bad_tag: 1,
            ..OpenStats::default()
        },
    );
}

#[test]
fn replayed_frame_is_refused_and_counted() {
    let mut sealer = Sealer::new(frame_key(0), [7; 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"h", b"once");
    assert!(open(&mut opener, SENDER, &frame).is_ok());
    assert_eq!(open(&mut opener, SENDER, &frame), Err(OpenError::Replayed));
    // The same nonce from another sender id is that sender's first frame, not a replay.
    assert!(open(&mut opener, SENDER + 1, &frame).is_ok());
    expect_only(
        opener.stats(),
        OpenStats {
            opened: 2,
            replayed: 1,
            ..OpenStats::default()
        },
    );
}

#[test]
fn frame_behind_the_window_is_too_old() {
    let mut sealer = Sealer::new(frame_key(0), [7; 4]);
    let mut opener = Opener::new(frame_key(0));
    let old = seal(&mut sealer, b"h", b"old");
    let mut newest = old.clone();
    for _ in 0..totem_crypto::replay::REPLAY_WINDOW_FRAMES {
        newest = seal(&mut sealer, b"h", b"new");
    }
    assert!(open(&mut opener, SENDER, &newest).is_ok());
    assert_eq!(open(&mut opener, SENDER, &old), Err(OpenError::TooOld));
    assert_eq!(opener.stats().too_old, 1);
}

#[test]
fn wrong_authkey_is_a_bad_tag() {
    let mut sealer = Sealer::new(FrameKey::derive(&authkey(0x22), CLUSTER, 0), [0; 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"h", b"intruder");
    assert_eq!(open(&mut opener, SENDER, &frame), Err(OpenError::BadTag));
    assert_eq!(
        opener.tracked_senders(),
        0,
        "a forged frame must not create sender state"
    );
}

#[test]
fn same_authkey_other_cluster_name_is_a_bad_tag() {
    let mut sealer = Sealer::new(FrameKey::derive(&authkey(0x11), "other-cluster", 0), [0; 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"h", b"neighbour");
    assert_eq!(open(&mut opener, SENDER, &frame), Err(OpenError::BadTag));
}

#[test]
fn unknown_key_id_is_counted_before_any_crypto() {
    let mut sealer = Sealer::new(frame_key(4), [0; 4]);
    let mut opener = Opener::new(frame_key(0));
    let frame = seal(&mut sealer, b"h", b"x");
    assert_eq!(
        open(&mut opener, SENDER, &frame),
        Err(OpenError::UnknownKey)
    );
    expect_only(
        opener.stats(),
        OpenStats {
            unknown_key: 1,
            ..OpenStats::default()
        },
    );
}

#[test]
fn rotation_accepts_both_keys_then_only_the_new_one() {
    let mut sealer = Sealer::new(frame_key(0), [3; 4]);
    let mut opener = Opener::new(frame_key(0));
    let under_old = seal(&mut sealer, b"h", b"old key");
    opener.install_key(frame_key(1));
    sealer.rekey(frame_key(1));
    let under_new = seal(&mut sealer, b"h", b"new key");
    assert_eq!(under_new.key_id, 1);
    // Reordered delivery during the change: both keys work.
    assert_eq!(
        open(&mut opener, SENDER, &under_new).expect("new"),
        b"new key"
    );
    assert_eq!(
        open(&mut opener, SENDER, &under_old).expect("old"),
        b"old key"
    );
    opener.retire_key(0);
    let late_old = {
        let mut old_sealer = Sealer::new(frame_key(0), [3; 4]);
        seal(&mut old_sealer, b"h", b"late")
    };
    assert_eq!(
        open(&mut opener, SENDER, &late_old),
        Err(OpenError::UnknownKey)
    );
    assert_eq!(opener.live_key_ids().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_third_key_drops_the_oldest() {
    let mut opener = Opener::new(frame_key(0));
    opener.install_key(frame_key(1));
    opener.install_key(frame_key(2));
    let mut ids: Vec<u8> = opener.live_key_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    // Re-installing a live id replaces it in place and keeps the other.
    opener.install_key(frame_key(2));
    let mut ids: Vec<u8> = opener.live_key_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    opener.install_key(frame_key(3));
    let mut ids: Vec<u8> = opener.live_key_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![2, 3]);
}

#[test]
fn same_key_id_from_another_authkey_replaces_the_key() {
    let mut opener = Opener::new(frame_key(0));
    let replacement = FrameKey::derive(&authkey(0x33), CLUSTER, 0);
    opener.install_key(replacement.clone());
    let mut sealer = Sealer::new(replacement, [0; 4]);
    assert!(open(&mut opener, SENDER, &seal(&mut sealer, b"h", b"x")).is_ok());
    let mut old_sealer = Sealer::new(frame_key(0), [1; 4]);
    assert_eq!(
        open(&mut opener, SENDER, &seal(&mut old_sealer, b"h", b"x")),
        Err(OpenError::BadTag)
    );
}

#[test]
fn sender_reboot_resets_the_window_and_old_boot_stays_refused() {
    let mut opener = Opener::new(frame_key(0));
    let mut first_boot = Sealer::new(frame_key(0), [1, 1, 1, 1]);
    let recorded = seal(&mut first_boot, b"h", b"boot 1");
    let later = seal(&mut first_boot, b"h", b"boot 1 later");
    assert!(open(&mut opener, SENDER, &recorded).is_ok());
    let mut second_boot = Sealer::new(frame_key(0), [2, 2, 2, 2]);
    let fresh = seal(&mut second_boot, b"h", b"boot 2");
    assert_eq!(fresh.nonce.counter(), recorded.nonce.counter());
    assert!(
        open(&mut opener, SENDER, &fresh).is_ok(),
        "counter 0 again after a reboot"
    );
    assert_eq!(opener.stats().sender_restarts, 1);
    // Frames of the first boot, seen or not, are refused now.
    assert_eq!(open(&mut opener, SENDER, &later), Err(OpenError::Replayed));
    assert_eq!(
        open(&mut opener, SENDER, &recorded),
        Err(OpenError::Replayed)
    );
}

#[test]
fn forged_frame_with_a_new_salt_does_not_reset_the_window() {
    let mut opener = Opener::new(frame_key(0));
    let mut sealer = Sealer::new(frame_key(0), [1; 4]);
    let frame = seal(&mut sealer, b"h", b"x");
    assert!(open(&mut opener, SENDER, &frame).is_ok());
    let mut forged = frame.clone();
    forged.nonce = Nonce::new([9; 4], 0);
    assert_eq!(open(&mut opener, SENDER, &forged), Err(OpenError::BadTag));
    assert_eq!(open(&mut opener, SENDER, &frame), Err(OpenError::Replayed));
    assert_eq!(opener.stats().sender_restarts, 0);
}

#[test]
fn senders_beyond_the_limit_are_refused_and_counted_not_evicted() {
    let mut opener = Opener::with_max_senders(frame_key(0), 2);
    let mut sealer = Sealer::new(frame_key(0), [0; 4]);
    let first = seal(&mut sealer, b"h", b"1");
    assert!(open(&mut opener, 1, &first).is_ok());
    assert!(open(&mut opener, 2, &seal(&mut sealer, b"h", b"2")).is_ok());
    assert_eq!(
        open(&mut opener, 3, &seal(&mut sealer, b"h", b"3")),
        Err(OpenError::SenderLimit)
    );
    // Known senders keep their state (the replay is still caught).
    assert_eq!(open(&mut opener, 1, &first), Err(OpenError::Replayed));
    opener.forget_sender(2);
    assert!(open(&mut opener, 3, &seal(&mut sealer, b"h", b"3")).is_ok());
    assert_eq!(opener.stats().sender_limit, 1);
    assert_eq!(opener.tracked_senders(), 2);
}

#[test]
fn default_limit_is_corosyncs_node_limit() {
    let mut opener = Opener::new(frame_key(0));
    let mut sealer = Sealer::new(frame_key(0), [0; 4]);
    for sender in 0..384 {
        assert!(open(&mut opener, sender, &seal(&mut sealer, b"h", b"n")).is_ok());
    }
    let extra = seal(&mut sealer, b"h", b"n");
    assert_eq!(open(&mut opener, 384, &extra), Err(OpenError::SenderLimit));
    assert_eq!(DEFAULT_MAX_SENDERS, opener.tracked_senders());
}

/// Which part of a sealed frame a mutation hits.
#[derive(Clone, Copy, Debug)]
enum Part {
    KeyId,
    Nonce,
    Aad,
    Payload,
    Tag,
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(Part::KeyId),
        Just(Part::Nonce),
        Just(Part::Aad),
        Just(Part::Payload),
        Just(Part::Tag),
    ]
}

proptest! {
    #[test]
    fn seal_open_round_trips(
        aad in proptest::collection::vec(any::<u8>(), 0..96),
        plain in proptest::collection::vec(any::<u8>(), 0..2048),
        salt: [u8; 4],
        start in 0u64..u64::MAX - 1,
        sender: u32,
    ) {
        let mut sealer = Sealer::resume(frame_key(0), salt, start);
        let mut opener = Opener::new(frame_key(0));
        let frame = seal(&mut sealer, &aad, &plain);
        prop_assert_eq!(open(&mut opener, sender, &frame), Ok(plain));
        prop_assert_eq!(open(&mut opener, sender, &frame), Err(OpenError::Replayed));
    }

    #[test]
    fn any_mutation_is_rejected(
        aad in proptest::collection::vec(any::<u8>(), 1..64),
        plain in proptest::collection::vec(any::<u8>(), 1..512),
        part in part(),
        position: prop::sample::Index,
        flip in 1u8..=255,
    ) {
        let mut sealer = Sealer::new(frame_key(0), [8; 4]);
        let mut opener = Opener::new(frame_key(0));
        opener.install_key(frame_key(1));
        let mut bad = seal(&mut sealer, &aad, &plain);
        match part {
            Part::KeyId => bad.key_id ^= flip,
            Part::Nonce => bad.nonce.0[position.index(NONCE_LEN)] ^= flip,
            Part::Aad => bad.aad[position.index(aad.len())] ^= flip,
            Part::Payload => bad.payload[position.index(plain.len())] ^= flip,
            Part::Tag => bad.tag[position.index(TAG_LEN)] ^= flip,
        }
        let result = open(&mut opener, 1, &bad);
        prop_assert!(
            matches!(result, Err(OpenError::BadTag) | Err(OpenError::UnknownKey)),
            "mutated frame gave {:?}", result
        );
        prop_assert_eq!(opener.stats().opened, 0);
        prop_assert_eq!(opener.tracked_senders(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_open(
        key_id: u8,
        nonce: [u8; NONCE_LEN],
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        mut payload in proptest::collection::vec(any::<u8>(), 0..256),
        tag: [u8; TAG_LEN],
        sender: u32,
    ) {
        let mut opener = Opener::new(frame_key(key_id));
        let result = opener.open_in_place(sender, key_id, &Nonce(nonce), &aad, &mut payload, &tag);
        prop_assert_eq!(result, Err(OpenError::BadTag));
    }

    /// Frames delivered in any order within the window open exactly once each.
    #[test]
    fn reordered_frames_open_once_each(
        order in Just((0..64usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut sealer = Sealer::new(frame_key(0), [4; 4]);
        let frames: Vec<Frame> = (0..64u8).map(|i| seal(&mut sealer, b"h", &[i; 8])).collect();
        let mut opener = Opener::new(frame_key(0));
        for &i in &order {
            prop_assert_eq!(open(&mut opener, SENDER, &frames[i]), Ok(vec![i as u8; 8]));
        }
        for &i in &order {
            prop_assert_eq!(open(&mut opener, SENDER, &frames[i]), Err(OpenError::Replayed));
        }
    }
}
