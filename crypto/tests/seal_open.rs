//! Seal → open through the public API: every rejection reason, per-sender keys, key rotation,
//! sender limits and forged sender ids, and property tests for round trips and tampering.

use proptest::prelude::*;
use totem_crypto::open::DEFAULT_MAX_SENDERS;
use totem_crypto::{
    AuthKey, ClusterKey, Nonce, NonceStart, OpenError, OpenStats, Opener, Sealer, WhenFull,
    NONCE_LEN, TAG_LEN,
};

const CLUSTER: &str = "pve-test";
const SENDER: u32 = 2;

fn authkey(fill: u8) -> AuthKey {
    AuthKey::from_bytes(&[fill; 256]).expect("authkey")
}

fn cluster_key(key_id: u8) -> ClusterKey {
    ClusterKey::derive(&authkey(0x11), CLUSTER, key_id)
}

/// A sealer of `sender` under key `key_id` whose counter starts at 0 with `salt`.
fn sealer_of(sender: u32, key_id: u8, salt: [u8; 4]) -> Sealer {
    Sealer::new(&cluster_key(key_id), sender, NonceStart::new(salt, 0))
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
    let mut sealer = sealer_of(SENDER, 0, [1, 2, 3, 4]);
    let mut opener = Opener::new(cluster_key(0));
    let frame = seal(&mut sealer, b"header", b"hello totem");
    assert_ne!(frame.payload, b"hello totem");
    assert_eq!(
        open(&mut opener, SENDER, &frame).expect("open"),
        b"hello totem"
    );
    expect_only(
        opener.stats(),
        OpenStats {
            keys_derived: 1,
            opened: 1,
            ..OpenStats::default()
        },
    );
}

#[test]
fn empty_payload_and_empty_aad_round_trip() {
    let mut sealer = sealer_of(SENDER, 0, [0; 4]);
    let mut opener = Opener::new(cluster_key(0));
    let frame = seal(&mut sealer, b"", b"");
    assert_eq!(open(&mut opener, SENDER, &frame).expect("open"), b"");
}

#[test]
fn any_flipped_bit_in_header_payload_or_tag_is_a_bad_tag() {
    let mut sealer = sealer_of(SENDER, 0, [5; 4]);
    let frame = seal(&mut sealer, b"0123456789abcdef", &[0x42; 48]);
    let mut opener = Opener::new(cluster_key(0));
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
            keys_derived: 1,
            bad_tag: tried,
            ..OpenStats::default()
        },
    );
    // The untouched frame still opens: rejections did not move the replay window.
    assert!(open(&mut opener, SENDER, &frame).is_ok());
}

#[test]
fn failed_open_leaves_no_plaintext_in_the_buffer() {
    let mut sealer = sealer_of(SENDER, 0, [5; 4]);
    let mut opener = Opener::new(cluster_key(0));
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
    let mut sealer = sealer_of(SENDER, 0, [0; 4]);
    let mut opener = Opener::new(cluster_key(0));
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
            keys_derived: 1,
            opened: 1,
            truncated: TAG_LEN as u64 + 1,
            bad_tag: 1,
            ..OpenStats::default()
        },
    );
}

#[test]
fn replayed_frame_is_refused_and_counted() {
    let mut sealer = sealer_of(SENDER, 0, [7; 4]);
    let mut opener = Opener::new(cluster_key(0));
    let frame = seal(&mut sealer, b"h", b"once");
    assert!(open(&mut opener, SENDER, &frame).is_ok());
    assert_eq!(open(&mut opener, SENDER, &frame), Err(OpenError::Replayed));
    // Another sender's frame with the same salt and counter is that sender's first frame.
    let other = seal(&mut sealer_of(SENDER + 1, 0, [7; 4]), b"h", b"once");
    assert_eq!(other.nonce, frame.nonce);
    assert!(open(&mut opener, SENDER + 1, &other).is_ok());
    expect_only(
        opener.stats(),
        OpenStats {
            opened: 2,
            replayed: 1,
            keys_derived: 2,
            ..OpenStats::default()
        },
    );
}

#[test]
fn frame_behind_the_window_is_too_old() {
    let mut sealer = sealer_of(SENDER, 0, [7; 4]);
    let mut opener = Opener::new(cluster_key(0));
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
    let other = ClusterKey::derive(&authkey(0x22), CLUSTER, 0);
    let mut sealer = Sealer::new(&other, SENDER, NonceStart::new([0; 4], 0));
    let mut opener = Opener::new(cluster_key(0));
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
    let other = ClusterKey::derive(&authkey(0x11), "other-cluster", 0);
    let mut sealer = Sealer::new(&other, SENDER, NonceStart::new([0; 4], 0));
    let mut opener = Opener::new(cluster_key(0));
    let frame = seal(&mut sealer, b"h", b"neighbour");
    assert_eq!(open(&mut opener, SENDER, &frame), Err(OpenError::BadTag));
}

#[test]
fn unknown_key_id_is_counted_before_any_crypto() {
    let mut sealer = sealer_of(SENDER, 4, [0; 4]);
    let mut opener = Opener::new(cluster_key(0));
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
    let mut sealer = sealer_of(SENDER, 0, [3; 4]);
    let mut opener = Opener::new(cluster_key(0));
    let under_old = seal(&mut sealer, b"h", b"old key");
    opener.install_key(cluster_key(1));
    sealer.rekey(&cluster_key(1));
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
        let mut old_sealer = sealer_of(SENDER, 0, [3; 4]);
        seal(&mut old_sealer, b"h", b"late")
    };
    assert_eq!(
        open(&mut opener, SENDER, &late_old),
        Err(OpenError::UnknownKey)
    );
    assert_eq!(opener.live_key_ids().collect::<Vec<_>>(), vec![1]);
    // One derivation per key id for this sender, none per frame.
    assert_eq!(opener.stats().keys_derived, 2);
    // Retiring a key drops the sender keys derived from it.
    assert_eq!(opener.cached_keys(), 1);
}

#[test]
fn a_third_key_drops_the_oldest() {
    let mut opener = Opener::new(cluster_key(0));
    opener.install_key(cluster_key(1));
    opener.install_key(cluster_key(2));
    let mut ids: Vec<u8> = opener.live_key_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    // Re-installing a live id replaces it in place and keeps the other.
    opener.install_key(cluster_key(2));
    let mut ids: Vec<u8> = opener.live_key_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    opener.install_key(cluster_key(3));
    let mut ids: Vec<u8> = opener.live_key_ids().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![2, 3]);
}

#[test]
fn same_key_id_from_another_authkey_replaces_the_key() {
    let mut opener = Opener::new(cluster_key(0));
    let replacement = ClusterKey::derive(&authkey(0x33), CLUSTER, 0);
    opener.install_key(replacement.clone());
    let mut sealer = Sealer::new(&replacement, SENDER, NonceStart::new([0; 4], 0));
    assert!(open(&mut opener, SENDER, &seal(&mut sealer, b"h", b"x")).is_ok());
    let mut old_sealer = sealer_of(SENDER, 0, [1; 4]);
    assert_eq!(
        open(&mut opener, SENDER, &seal(&mut old_sealer, b"h", b"x")),
        Err(OpenError::BadTag)
    );
}

#[test]
fn sender_reboot_resets_the_window_and_old_boot_stays_refused() {
    let mut opener = Opener::new(cluster_key(0));
    let mut first_boot = sealer_of(SENDER, 0, [1, 1, 1, 1]);
    let recorded = seal(&mut first_boot, b"h", b"boot 1");
    let later = seal(&mut first_boot, b"h", b"boot 1 later");
    assert!(open(&mut opener, SENDER, &recorded).is_ok());
    let mut second_boot = sealer_of(SENDER, 0, [2, 2, 2, 2]);
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
    let mut opener = Opener::new(cluster_key(0));
    let mut sealer = sealer_of(SENDER, 0, [1; 4]);
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
    let mut opener = Opener::with_max_senders(cluster_key(0), 2);
    let mut sealers: Vec<Sealer> = (0..=3).map(|id| sealer_of(id, 0, [0; 4])).collect();
    let first = seal(&mut sealers[1], b"h", b"1");
    assert!(open(&mut opener, 1, &first).is_ok());
    assert!(open(&mut opener, 2, &seal(&mut sealers[2], b"h", b"2")).is_ok());
    assert_eq!(
        open(&mut opener, 3, &seal(&mut sealers[3], b"h", b"3")),
        Err(OpenError::SenderLimit)
    );
    // Refused before any crypto: no key was derived for sender 3.
    assert_eq!(opener.stats().keys_derived, 2);
    assert_eq!(opener.pending_senders(), 0);
    // Known senders keep their state (the replay is still caught).
    assert_eq!(open(&mut opener, 1, &first), Err(OpenError::Replayed));
    opener.forget_sender(2);
    assert!(open(&mut opener, 3, &seal(&mut sealers[3], b"h", b"3")).is_ok());
    assert_eq!(opener.stats().sender_limit, 1);
    assert_eq!(opener.stats().senders_evicted, 0);
    assert_eq!(opener.tracked_senders(), 2);
}

#[test]
fn default_limit_is_corosyncs_node_limit() {
    let mut opener = Opener::new(cluster_key(0));
    for sender in 0..384 {
        let frame = seal(&mut sealer_of(sender, 0, [0; 4]), b"h", b"n");
        assert!(open(&mut opener, sender, &frame).is_ok());
    }
    let extra = seal(&mut sealer_of(384, 0, [0; 4]), b"h", b"n");
    assert_eq!(open(&mut opener, 384, &extra), Err(OpenError::SenderLimit));
    assert_eq!(DEFAULT_MAX_SENDERS, opener.tracked_senders());
}

#[test]
fn evicting_opener_replaces_the_sender_heard_least_recently() {
    let mut opener =
        Opener::with_max_senders(cluster_key(0), 2).when_full(WhenFull::EvictLeastRecent);
    let mut sealers: Vec<Sealer> = (0..=3).map(|id| sealer_of(id, 0, [0; 4])).collect();
    let first_of_1 = seal(&mut sealers[1], b"h", b"1");
    assert!(open(&mut opener, 1, &first_of_1).is_ok());
    assert!(open(&mut opener, 2, &seal(&mut sealers[2], b"h", b"2")).is_ok());
    // Sender 1 is heard again, so sender 2 is now the least recent.
    assert!(open(&mut opener, 1, &seal(&mut sealers[1], b"h", b"1")).is_ok());
    // A forged frame of a new sender evicts nobody.
    let mut forged = seal(&mut sealers[3], b"h", b"3");
    forged.tag[0] ^= 1;
    assert_eq!(open(&mut opener, 3, &forged), Err(OpenError::BadTag));
    assert_eq!(opener.tracked_senders(), 2);
    assert_eq!(opener.stats().senders_evicted, 0);
    // A genuine one evicts sender 2.
    assert!(open(&mut opener, 3, &seal(&mut sealers[3], b"h", b"3")).is_ok());
    assert_eq!(opener.stats().senders_evicted, 1);
    assert_eq!(opener.tracked_senders(), 2);
    assert_eq!(open(&mut opener, 1, &first_of_1), Err(OpenError::Replayed));
    // Sender 2 comes back as a new sender (and evicts sender 1, now the least recent).
    assert!(open(&mut opener, 2, &seal(&mut sealers[2], b"h", b"2")).is_ok());
    assert_eq!(opener.stats().senders_evicted, 2);
}

/// The sender id is part of the key: a frame of sender A presented as sender B's (its header's
/// sender id rewritten, as the transport passes it from the header) does not authenticate.
#[test]
fn frame_with_another_sender_id_is_a_bad_tag() {
    let mut opener = Opener::new(cluster_key(0));
    let frame = seal(&mut sealer_of(1, 0, [4; 4]), b"h", b"from node 1");
    for claimed in [0, 2, 3, 0x100_0001, u32::MAX] {
        assert_eq!(
            open(&mut opener, claimed, &frame),
            Err(OpenError::BadTag),
            "claimed {claimed}"
        );
    }
    assert_eq!(opener.tracked_senders(), 0);
    assert_eq!(
        open(&mut opener, 1, &frame).expect("opens as node 1"),
        b"from node 1"
    );
}

/// Frames of node A open at every receiver holding the authkey (A's key is derived from it), and
/// each receiver derives A's key once however many frames arrive.
#[test]
fn frames_of_one_node_open_at_every_other_node_with_one_derivation_each() {
    let mut a = sealer_of(1, 0, [0, 0, 0, 9]);
    let mut at_b = Opener::new(cluster_key(0));
    let mut at_c = Opener::new(cluster_key(0));
    for i in 0..100u8 {
        let frame = seal(&mut a, b"hdr", &[i; 40]);
        assert_eq!(open(&mut at_b, 1, &frame).expect("B"), vec![i; 40]);
        assert_eq!(open(&mut at_c, 1, &frame).expect("C"), vec![i; 40]);
    }
    assert_eq!(at_b.stats().keys_derived, 1);
    assert_eq!(at_c.stats().keys_derived, 1);
    assert_eq!(at_b.cached_keys(), 1);
}

/// Frames naming sender ids nobody uses cost at most one derivation each and never hold more
/// than `max_senders` keys, whatever their number; repeated forged ids derive nothing new; the
/// authenticated senders keep their keys and windows.
#[test]
fn forged_sender_ids_do_not_grow_the_key_cache() {
    const MAX: usize = 8;
    let mut opener = Opener::with_max_senders(cluster_key(0), MAX);
    let mut real = sealer_of(1, 0, [1; 4]);
    assert!(open(&mut opener, 1, &seal(&mut real, b"h", b"hello")).is_ok());
    let template = seal(&mut sealer_of(2, 0, [1; 4]), b"h", b"junk");
    for forged_id in 1_000..11_000u32 {
        assert_eq!(
            open(&mut opener, forged_id, &template),
            Err(OpenError::BadTag)
        );
        assert!(opener.pending_senders() <= MAX);
        assert!(opener.cached_keys() <= 2 * MAX);
    }
    assert_eq!(opener.tracked_senders(), 1);
    assert_eq!(opener.stats().keys_derived, 1 + 10_000);
    // The last MAX forged ids are still pending: frames naming them derive nothing.
    for forged_id in 11_000 - MAX as u32..11_000 {
        assert_eq!(
            open(&mut opener, forged_id, &template),
            Err(OpenError::BadTag)
        );
    }
    assert_eq!(opener.stats().keys_derived, 1 + 10_000);
    // The real sender still opens with its cached key and window.
    assert!(open(&mut opener, 1, &seal(&mut real, b"h", b"again")).is_ok());
    assert_eq!(opener.stats().keys_derived, 1 + 10_000);
    // Forgetting a pending id frees it.
    opener.forget_sender(10_999);
    assert_eq!(opener.pending_senders(), MAX - 1);
}

/// A sender whose first frames are forged (pending, key cached) then authenticates normally.
#[test]
fn pending_sender_is_promoted_by_its_first_genuine_frame() {
    let mut opener = Opener::new(cluster_key(0));
    let mut sealer = sealer_of(5, 0, [5; 4]);
    let genuine = seal(&mut sealer, b"h", b"real");
    let mut forged = genuine.clone();
    forged.payload[0] ^= 0x20;
    assert_eq!(open(&mut opener, 5, &forged), Err(OpenError::BadTag));
    assert_eq!(opener.pending_senders(), 1);
    assert_eq!(opener.tracked_senders(), 0);
    assert_eq!(open(&mut opener, 5, &genuine).expect("genuine"), b"real");
    assert_eq!(opener.pending_senders(), 0);
    assert_eq!(opener.tracked_senders(), 1);
    assert_eq!(opener.stats().keys_derived, 1);
    assert_eq!(open(&mut opener, 5, &genuine), Err(OpenError::Replayed));
}

/// Two boots of a node with persisted boot numbers: salts differ, the receiver sees a restart.
#[test]
fn consecutive_boots_from_the_boot_counter_open_as_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opener = Opener::new(cluster_key(0));
    let mut salts = Vec::new();
    for boot in 0..3 {
        let counter = totem_crypto::BootCounter::new(dir.path(), 7).expect("state dir");
        let start = NonceStart::for_boot(counter.next_boot().expect("boot")).expect("random");
        let mut sealer = Sealer::new(&cluster_key(0), 7, start);
        let frame = seal(&mut sealer, b"h", b"up");
        salts.push(frame.nonce.salt());
        assert!(open(&mut opener, 7, &frame).is_ok(), "boot {boot}");
    }
    assert_eq!(opener.stats().sender_restarts, 2);
    salts.dedup();
    assert_eq!(salts.len(), 3);
}

/// Which part of a sealed frame a mutation hits.
#[derive(Clone, Copy, Debug)]
enum Part {
    Sender,
    KeyId,
    Nonce,
    Aad,
    Payload,
    Tag,
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(Part::Sender),
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
        let mut sealer = Sealer::new(&cluster_key(0), sender, NonceStart::new(salt, start));
        let mut opener = Opener::new(cluster_key(0));
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
        let mut sealer = sealer_of(SENDER, 0, [8; 4]);
        let mut opener = Opener::new(cluster_key(0));
        opener.install_key(cluster_key(1));
        let mut bad = seal(&mut sealer, &aad, &plain);
        let mut sender = SENDER;
        match part {
            Part::Sender => sender ^= u32::from(flip) << (8 * (position.index(4) as u32)),
            Part::KeyId => bad.key_id ^= flip,
            Part::Nonce => bad.nonce.0[position.index(NONCE_LEN)] ^= flip,
            Part::Aad => bad.aad[position.index(aad.len())] ^= flip,
            Part::Payload => bad.payload[position.index(plain.len())] ^= flip,
            Part::Tag => bad.tag[position.index(TAG_LEN)] ^= flip,
        }
        let result = open(&mut opener, sender, &bad);
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
        let mut opener = Opener::new(cluster_key(key_id));
        let result = opener.open_in_place(sender, key_id, &Nonce(nonce), &aad, &mut payload, &tag);
        prop_assert_eq!(result, Err(OpenError::BadTag));
    }

    /// A frame opens only as the sender that sealed it.
    #[test]
    fn frames_open_only_as_their_sender(
        sealer_id: u32,
        claimed: u32,
        plain in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut opener = Opener::new(cluster_key(0));
        let frame = seal(&mut sealer_of(sealer_id, 0, [3; 4]), b"hdr", &plain);
        let result = open(&mut opener, claimed, &frame);
        if claimed == sealer_id {
            prop_assert_eq!(result, Ok(plain));
        } else {
            prop_assert_eq!(result, Err(OpenError::BadTag));
        }
    }

    /// Two senders sealing the same plaintext with the same salt and counter produce different
    /// ciphertexts and tags: they do not share a GCM key.
    #[test]
    fn same_nonce_different_senders_different_ciphertexts(
        a: u32,
        b: u32,
        salt: [u8; 4],
        counter in 0u64..u64::MAX - 1,
        plain in proptest::collection::vec(any::<u8>(), 16..128),
    ) {
        prop_assume!(a != b);
        let start = NonceStart::new(salt, counter);
        let fa = seal(&mut Sealer::new(&cluster_key(0), a, start), b"h", &plain);
        let fb = seal(&mut Sealer::new(&cluster_key(0), b, start), b"h", &plain);
        prop_assert_eq!(fa.nonce, fb.nonce);
        prop_assert_ne!(&fa.payload, &fb.payload);
        prop_assert_ne!(fa.tag, fb.tag);
    }

    /// Frames delivered in any order within the window open exactly once each.
    #[test]
    fn reordered_frames_open_once_each(
        order in Just((0..64usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut sealer = sealer_of(SENDER, 0, [4; 4]);
        let frames: Vec<Frame> = (0..64u8).map(|i| seal(&mut sealer, b"h", &[i; 8])).collect();
        let mut opener = Opener::new(cluster_key(0));
        for &i in &order {
            prop_assert_eq!(open(&mut opener, SENDER, &frames[i]), Ok(vec![i as u8; 8]));
        }
        for &i in &order {
            prop_assert_eq!(open(&mut opener, SENDER, &frames[i]), Err(OpenError::Replayed));
        }
    }
}
