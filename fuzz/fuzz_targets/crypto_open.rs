//! Fuzz target for `totem_crypto::Opener`: arbitrary frames must never panic and never open
//! without the key, and a sealed frame with any byte changed, the sender id included (it selects
//! the per-sender key), must never open (seal → mutate → open oracle); forged sender ids never
//! hold more keys than the opener's bound. Input layout (short inputs are zero-padded):
//! `mode u8 | sender u32 | key_id u8 | nonce [12] | tag [16] | aad_len u8 | aad | payload`.
//! In oracle mode (`mode` odd) the fields pick what to seal and which byte to flip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use totem_crypto::{
    AuthKey, ClusterKey, Nonce, NonceStart, OpenError, Opener, Sealer, NONCE_LEN, TAG_LEN,
};

const CLUSTER: &str = "fuzz";
/// Sender table bound of the opener under test.
const MAX_SENDERS: usize = 4;

fn cluster_key(key_id: u8) -> ClusterKey {
    let authkey = AuthKey::from_bytes(&[0x5a; 256]).expect("a 256-byte key is valid");
    ClusterKey::derive(&authkey, CLUSTER, key_id)
}

/// Splits the next `N` bytes off `data`, zero-padding when it runs out.
fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(data.len());
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let [mode] = take::<1>(&mut data);
    let sender = u32::from_le_bytes(take::<4>(&mut data));
    let [key_id] = take::<1>(&mut data);
    let nonce = Nonce(take::<NONCE_LEN>(&mut data));
    let tag = take::<TAG_LEN>(&mut data);
    let [aad_len] = take::<1>(&mut data);
    let aad_len = usize::from(aad_len).min(data.len());
    let (aad, payload) = data.split_at(aad_len);
    let mut payload = payload.to_vec();

    let mut opener = Opener::with_max_senders(cluster_key(0), MAX_SENDERS);
    opener.install_key(cluster_key(1));

    if mode % 2 == 0 {
        // Raw frame: without the key, nothing may authenticate.
        let result = opener.open_in_place(sender, key_id, &nonce, aad, &mut payload, &tag);
        assert!(
            matches!(result, Err(OpenError::BadTag) | Err(OpenError::UnknownKey)),
            "unsealed input gave {result:?}"
        );
        let mut body = payload.clone();
        let suffix = opener.open_in_place_tag_suffix(sender, key_id, &nonce, aad, &mut body);
        assert!(suffix.is_err(), "unsealed body opened");
        assert_eq!(opener.stats().opened, 0);
        assert!(opener.pending_senders() <= MAX_SENDERS);
        assert!(opener.cached_keys() <= 2 * MAX_SENDERS);
        return;
    }

    // Oracle: seal `payload` as `sender` under key `key_id % 2` with the nonce's salt and counter,
    // then flip one byte chosen by the tag bytes (sender id, key id, nonce, tag, header or
    // payload) and check it does not open; the original opens once.
    let start = NonceStart::new(nonce.salt(), nonce.counter() >> 1);
    let mut sealer = Sealer::new(&cluster_key(key_id % 2), sender, start);
    let Ok((sealed_key_id, sealed_nonce)) = sealer.next_nonce() else {
        return;
    };
    let plain = payload.clone();
    let Ok(sealed_tag) = sealer.seal_in_place(&sealed_nonce, aad, &mut payload) else {
        return;
    };
    let original_aad = aad;
    let mut aad = aad.to_vec();
    let mut mutated_sender = sender;
    let mut mutated_key_id = sealed_key_id;
    let mut mutated_nonce = sealed_nonce;
    let mut mutated_tag = sealed_tag;
    let flip = tag[0] | 1;
    const SENDER_LEN: usize = 4;
    let total = SENDER_LEN + 1 + NONCE_LEN + TAG_LEN + aad.len() + payload.len();
    let position = usize::from(u16::from_le_bytes([tag[1], tag[2]])) % total;
    let mut mutated_payload = payload.clone();
    if position < SENDER_LEN {
        // The sender id selects the key: another id must not open the frame.
        mutated_sender ^= u32::from(flip) << (8 * position);
    } else {
        let mut position = position - SENDER_LEN;
        if position == 0 {
            mutated_key_id ^= flip;
        } else if position <= NONCE_LEN {
            mutated_nonce.0[position - 1] ^= flip;
        } else if position <= NONCE_LEN + TAG_LEN {
            mutated_tag[position - 1 - NONCE_LEN] ^= flip;
        } else {
            position -= 1 + NONCE_LEN + TAG_LEN;
            if position < aad.len() {
                aad[position] ^= flip;
            } else {
                mutated_payload[position - aad.len()] ^= flip;
            }
        }
    }
    let result = opener.open_in_place(
        mutated_sender,
        mutated_key_id,
        &mutated_nonce,
        &aad,
        &mut mutated_payload,
        &mutated_tag,
    );
    assert!(result.is_err(), "a mutated frame opened");
    assert_eq!(opener.stats().opened, 0);

    // The original (with the original header) opens exactly once.
    let mut original = payload.clone();
    let opened = opener.open_in_place(
        sender,
        sealed_key_id,
        &sealed_nonce,
        original_aad,
        &mut original,
        &sealed_tag,
    );
    assert_eq!(opened, Ok(()));
    assert_eq!(original, plain);
    let again = opener.open_in_place(
        sender,
        sealed_key_id,
        &sealed_nonce,
        original_aad,
        &mut payload,
        &sealed_tag,
    );
    assert_eq!(again, Err(OpenError::Replayed));
});
