//! AES-256-GCM seal + open per frame, three audited implementations side by side: RustCrypto
//! `aes-gcm`, `ring` and `aws-lc-rs`, for 64, 1200 and 8192-byte payloads with a 32-byte header as
//! AAD. The result chose the backend behind `totem_crypto` (see `src/aead.rs`); a fourth line
//! measures the crate's own `Sealer` + `Opener` path so its overhead (nonce, per-sender key lookup,
//! replay window) shows. The `sender-key` group measures what a sender id costs the receiver:
//! deriving one sender's key (done once per sender and key id), and a forged 64-byte frame naming
//! a new sender id each time (the worst case a forger can force: one derivation per frame).
//!
//! Run: `nice -n -5 cargo bench -p totem-crypto --bench aead` (figures are medians of criterion's
//! samples; the machine is shared, so compare lines of the same run, never runs of different days).

use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput,
};
use totem_crypto::{
    AuthKey, ClusterKey, Nonce, NonceStart, OpenError, Opener, Sealer, NONCE_LEN, TAG_LEN,
};

/// Payload sizes the issue asks for: a small control frame, a frame fitting a 1280-byte IPv6 MTU,
/// and a large fragment.
const PAYLOAD_SIZES_BYTES: [usize; 3] = [64, 1200, 8192];
/// A frame header's size, authenticated as AAD (the transport's header is of this order).
const AAD_LEN_BYTES: usize = 32;
const KEY_BYTES: [u8; 32] = [0x42; 32];

/// Nonces advance per iteration so no (key, nonce) pair repeats, as on the wire.
fn nonce_for(counter: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&[1, 2, 3, 4]);
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

fn bench_rustcrypto(group: &mut BenchmarkGroup<WallTime>, aad: &[u8], size: usize) {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let cipher = aes_gcm::Aes256Gcm::new(&KEY_BYTES.into());
    let mut payload = vec![0x5a_u8; size];
    let mut counter = 0u64;
    group.bench_function("aes-gcm", |b| {
        b.iter(|| {
            counter += 1;
            let nonce = aes_gcm::Nonce::from(nonce_for(counter));
            let tag = cipher
                .encrypt_in_place_detached(&nonce, aad, &mut payload)
                .expect("seal");
            cipher
                .decrypt_in_place_detached(&nonce, aad, &mut payload, &tag)
                .expect("open");
            black_box(&payload);
        })
    });
}

fn bench_ring(group: &mut BenchmarkGroup<WallTime>, aad: &[u8], size: usize) {
    use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY_BYTES).expect("key"));
    let mut payload = vec![0x5a_u8; size];
    let mut counter = 0u64;
    group.bench_function("ring", |b| {
        b.iter(|| {
            counter += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    RingNonce::assume_unique_for_key(nonce_for(counter)),
                    Aad::from(aad),
                    &mut payload,
                )
                .expect("seal");
            key.open_in_place_separate_tag(
                RingNonce::assume_unique_for_key(nonce_for(counter)),
                Aad::from(aad),
                tag,
                &mut payload,
                0..,
            )
            .expect("open");
            black_box(&payload);
        })
    });
}

fn bench_aws_lc(group: &mut BenchmarkGroup<WallTime>, aad: &[u8], size: usize) {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce as AwsNonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY_BYTES).expect("key"));
    let mut payload = vec![0x5a_u8; size];
    let mut counter = 0u64;
    group.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            counter += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    AwsNonce::assume_unique_for_key(nonce_for(counter)),
                    Aad::from(aad),
                    &mut payload,
                )
                .expect("seal");
            key.open_in_place_separate_tag(
                AwsNonce::assume_unique_for_key(nonce_for(counter)),
                Aad::from(aad),
                tag.as_ref(),
                &mut payload,
            )
            .expect("open");
            black_box(&payload);
        })
    });
}

/// The crate's own path: nonce reservation, seal, open with key lookup and replay window.
fn bench_totem_crypto(group: &mut BenchmarkGroup<WallTime>, aad: &[u8], size: usize) {
    let authkey = AuthKey::from_bytes(&[7u8; 256]).expect("authkey");
    let key = ClusterKey::derive(&authkey, "bench", 0);
    let mut sealer = Sealer::new(&key, 1, NonceStart::new([9, 9, 9, 9], 0));
    let mut opener = Opener::new(key);
    let mut payload = vec![0x5a_u8; size];
    group.bench_function("totem-crypto", |b| {
        b.iter(|| {
            let (key_id, nonce): (u8, Nonce) = sealer.next_nonce().expect("nonce");
            let tag: [u8; TAG_LEN] = sealer
                .seal_in_place(&nonce, aad, &mut payload)
                .expect("seal");
            opener
                .open_in_place(1, key_id, &nonce, aad, &mut payload, &tag)
                .expect("open");
            black_box(&payload);
        })
    });
}

fn aead_backends(c: &mut Criterion) {
    let aad = [0xa5_u8; AAD_LEN_BYTES];
    for size in PAYLOAD_SIZES_BYTES {
        let mut group = c.benchmark_group(format!("seal+open/{size}"));
        group.throughput(Throughput::Bytes(size as u64));
        bench_rustcrypto(&mut group, &aad, size);
        bench_ring(&mut group, &aad, size);
        bench_aws_lc(&mut group, &aad, size);
        bench_totem_crypto(&mut group, &aad, size);
        group.finish();
    }
}

/// What sender ids cost a receiver: one key derivation, and a forged frame with a new sender id.
fn sender_keys(c: &mut Criterion) {
    let authkey = AuthKey::from_bytes(&[7u8; 256]).expect("authkey");
    let key = ClusterKey::derive(&authkey, "bench", 0);
    let mut group = c.benchmark_group("sender-key");
    let mut sender = 0u32;
    group.bench_function("derive", |b| {
        b.iter(|| {
            sender = sender.wrapping_add(1);
            black_box(key.frame_key(sender));
        })
    });
    // A genuine 64-byte frame of sender 1, presented under ever new sender ids.
    let aad = [0xa5_u8; AAD_LEN_BYTES];
    let mut sealer = Sealer::new(&key, 1, NonceStart::new([9, 9, 9, 9], 0));
    let (key_id, nonce) = sealer.next_nonce().expect("nonce");
    let mut sealed = vec![0x5a_u8; 64];
    let tag = sealer
        .seal_in_place(&nonce, &aad, &mut sealed)
        .expect("seal");
    let mut opener = Opener::new(key.clone());
    let mut payload = sealed.clone();
    let mut forged_id = 1u32;
    group.bench_function("forged-frame-new-sender/64", |b| {
        b.iter(|| {
            forged_id = forged_id.wrapping_add(1).max(2);
            payload.copy_from_slice(&sealed);
            let result = opener.open_in_place(forged_id, key_id, &nonce, &aad, &mut payload, &tag);
            assert_eq!(result, Err(OpenError::BadTag));
        })
    });
    // The same forged frame under one known sender id (the cached key): a tag check only.
    let mut opener = Opener::new(key);
    group.bench_function("forged-frame-cached-sender/64", |b| {
        b.iter(|| {
            payload.copy_from_slice(&sealed);
            let result = opener.open_in_place(2, key_id, &nonce, &aad, &mut payload, &tag);
            assert_eq!(result, Err(OpenError::BadTag));
        })
    });
    group.finish();
}

criterion_group!(benches, aead_backends, sender_keys);
criterion_main!(benches);
