//! Derivation of the AES-256-GCM frame key from the authkey with HKDF-SHA256 (RFC 5869).
//!
//! `info = label || key_id || len(cluster_name) as u64 BE || cluster_name`: the fixed label keeps
//! these keys apart from any other use of the authkey, the cluster name makes frames of another
//! cluster sharing the same authkey fail authentication, and the key id gives each rotation slot its
//! own key even if an authkey were reused. The length prefix makes the encoding injective.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::aead::{CipherKey, KEY_LEN_BYTES};
use crate::authkey::AuthKey;

/// Domain-separation label of the frame key derivation; a new wire format gets a new label.
const FRAME_KEY_INFO_LABEL: &[u8] = b"totemd v1 frame key AES-256-GCM";

/// Derives the raw 32-byte frame key; wiped when the returned value drops.
pub fn derive_frame_key_bytes(
    authkey: &AuthKey,
    cluster_name: &str,
    key_id: u8,
) -> Zeroizing<[u8; KEY_LEN_BYTES]> {
    // The authkey is already uniformly random, so no extract salt is needed (RFC 5869 §3.1).
    let hkdf = Hkdf::<Sha256>::new(None, authkey.as_bytes());
    let name_len = (cluster_name.len() as u64).to_be_bytes();
    let info: [&[u8]; 4] = [
        FRAME_KEY_INFO_LABEL,
        &[key_id],
        &name_len,
        cluster_name.as_bytes(),
    ];
    let mut okm = Zeroizing::new([0u8; KEY_LEN_BYTES]);
    // HKDF-SHA256 can expand up to 255 * 32 bytes; 32 is always within that.
    hkdf.expand_multi_info(&info, okm.as_mut())
        .expect("32 bytes is within HKDF-SHA256's output limit");
    okm
}

/// A derived frame key with its one-byte id (carried in every frame so a receiver holding two
/// keys during a rotation knows which one to try).
#[derive(Clone)]
pub struct FrameKey {
    cipher: CipherKey,
    key_id: u8,
}

impl FrameKey {
    /// Derives the frame key for `cluster_name` and `key_id` from the authkey.
    pub fn derive(key: &AuthKey, cluster_name: &str, key_id: u8) -> FrameKey {
        let bytes = derive_frame_key_bytes(key, cluster_name, key_id);
        FrameKey {
            cipher: CipherKey::new(&bytes),
            key_id,
        }
    }

    /// The id frames sealed with this key carry.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    pub(crate) fn cipher(&self) -> &CipherKey {
        &self.cipher
    }
}

impl fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authkey(fill: u8) -> AuthKey {
        AuthKey::from_bytes(&[fill; 256]).expect("key")
    }

    #[test]
    fn same_inputs_same_key() {
        assert_eq!(
            *derive_frame_key_bytes(&authkey(1), "pve", 0),
            *derive_frame_key_bytes(&authkey(1), "pve", 0)
        );
    }

    #[test]
    fn cluster_name_key_id_and_authkey_each_change_the_key() {
        let base = *derive_frame_key_bytes(&authkey(1), "pve", 0);
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "pve2", 0));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "", 0));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "pve", 1));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(2), "pve", 0));
    }

    /// Pins the derivation to RFC 5869 HKDF-SHA256 with our info layout, computed independently
    /// with Python's `hmac`/`hashlib`: PRK = HMAC(32 zero bytes, 256 x 0x11), OKM = HMAC(PRK, info || 0x01).
    #[test]
    fn matches_an_independent_hkdf_computation() {
        let bytes = derive_frame_key_bytes(&authkey(0x11), "pve", 0);
        assert_eq!(hex(&bytes[..]), EXPECTED_PVE_KEY0_HEX);
    }

    const EXPECTED_PVE_KEY0_HEX: &str =
        "3d184759ddebe111fa6697d5ce699913c8aafac84329eddb528f9037833d705d";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
