//! The AES-256-GCM primitive behind [`crate::Sealer`] and [`crate::Opener`]: one small wrapper so
//! the backend is named in one place.
//!
//! Backend: `aws-lc-rs` (AWS-LC, the FIPS 140-3 validated BoringSSL fork, maintained by AWS; its
//! C part builds with the `cc` crate, no cmake needed on x86-64 Linux). `crypto/benches/aead.rs`
//! measures it beside `ring` and RustCrypto `aes-gcm`: on this machine's VAES/AVX-512 CPU it was
//! the fastest at every size (figures and command in `crypto/README.md`). The backend leaves the
//! buffer unspecified on a failed tag, so [`CipherKey::open`] zeroes it. The 32-byte key we hand
//! the backend is zeroized by [`crate::kdf`]; the backend's own copy is its business.

use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce as BackendNonce, UnboundKey, AES_256_GCM};

use crate::nonce::Nonce;

/// GCM authentication tag length (full 128-bit tag; NIST SP 800-38D §5.2.1.2).
pub const TAG_LEN: usize = 16;
/// AES-256 key length.
pub(crate) const KEY_LEN_BYTES: usize = 32;

/// The backend refused an operation: input longer than GCM allows, or a tag that does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused;

/// An expanded AES-256-GCM key, ready for any number of seal/open calls; clones share it.
#[derive(Clone)]
pub(crate) struct CipherKey(Arc<LessSafeKey>);

impl CipherKey {
    pub(crate) fn new(key_bytes: &[u8; KEY_LEN_BYTES]) -> CipherKey {
        // `UnboundKey::new` fails only on a key length other than the algorithm's, and the array
        // type fixes it at 32 bytes, so this cannot fail on any input.
        let unbound = UnboundKey::new(&AES_256_GCM, key_bytes)
            .expect("a 32-byte key is always valid for AES-256-GCM");
        CipherKey(Arc::new(LessSafeKey::new(unbound)))
    }

    /// Encrypts `payload` in place, authenticating `aad`; returns the detached tag.
    pub(crate) fn seal(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Refused> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                BackendNonce::assume_unique_for_key(nonce.0),
                Aad::from(aad),
                payload,
            )
            .map_err(|_| Refused)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Verifies `tag` over `aad` and the ciphertext, decrypting `payload` in place.
    /// On `Err` the payload is zeroed: no unauthenticated plaintext is left behind.
    pub(crate) fn open(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Refused> {
        self.0
            .open_in_place_separate_tag(
                BackendNonce::assume_unique_for_key(nonce.0),
                Aad::from(aad),
                tag,
                payload,
            )
            .map(|_| ())
            .map_err(|_| {
                payload.fill(0);
                Refused
            })
    }
}
