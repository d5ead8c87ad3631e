//! Derivation of the AES-256-GCM frame keys from the authkey with HKDF-SHA256 (RFC 5869).
//!
//! Every sender seals under its own key:
//! `HKDF-SHA256(ikm = authkey, info = label || key_id || len(cluster_name) u64 BE || cluster_name
//! || sender u32 BE)`. The fixed label keeps these keys apart from any other use of the authkey
//! (and from the v1 layout without a sender, whose keys all nodes shared); the cluster name makes
//! frames of another cluster sharing the same authkey fail authentication; the key id gives each
//! rotation slot its own key even if an authkey were reused; the sender id gives each node its own
//! key, so GCM nonces only have to be unique per sender (see [`crate::nonce`]). The length prefix
//! and the fixed-size fields after it make the encoding injective.
//!
//! A [`ClusterKey`] holds the HKDF pseudo-random key (the extract step, done once) for one key id;
//! [`ClusterKey::frame_key`] expands one sender's [`FrameKey`] from it (one HMAC-SHA256 and an AES
//! key schedule, well under a microsecond: the receiver does it once per sender and key id, see
//! [`crate::open`]). The per-sender keys do not authenticate nodes against each other: every node
//! holds the authkey and can derive every key, as before.

use std::fmt;
use std::sync::Arc;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{CipherKey, KEY_LEN_BYTES};
use crate::authkey::AuthKey;

/// Domain-separation label of the frame key derivation; a new key layout gets a new label
/// (v1: one key per cluster and key id, without the sender).
const FRAME_KEY_INFO_LABEL: &[u8] = b"totemd v2 per-sender frame key AES-256-GCM";
/// Length of HKDF-SHA256's pseudo-random key (the SHA-256 output length, RFC 5869 §2.2).
const PRK_LEN_BYTES: usize = 32;

/// Derives the raw 32-byte frame key of `sender`; wiped when the returned value drops.
pub fn derive_frame_key_bytes(
    authkey: &AuthKey,
    cluster_name: &str,
    key_id: u8,
    sender: u32,
) -> Zeroizing<[u8; KEY_LEN_BYTES]> {
    ClusterKey::derive(authkey, cluster_name, key_id).frame_key_bytes(sender)
}

/// The key material of one key id for a whole cluster: the HKDF-SHA256 pseudo-random key of the
/// authkey, with the cluster name and key id that go into every sender's key. Wiped on drop.
#[derive(Clone)]
pub struct ClusterKey {
    prk: Zeroizing<[u8; PRK_LEN_BYTES]>,
    cluster_name: Arc<str>,
    key_id: u8,
}

impl ClusterKey {
    /// Runs HKDF's extract step over the authkey for `cluster_name` and `key_id`.
    pub fn derive(authkey: &AuthKey, cluster_name: &str, key_id: u8) -> ClusterKey {
        // The authkey is already uniformly random, so no extract salt is needed (RFC 5869 §3.1).
        let (mut prk, _) = Hkdf::<Sha256>::extract(None, authkey.as_bytes());
        let mut bytes = Zeroizing::new([0u8; PRK_LEN_BYTES]);
        bytes.copy_from_slice(&prk);
        prk.as_mut_slice().zeroize();
        ClusterKey {
            prk: bytes,
            cluster_name: Arc::from(cluster_name),
            key_id,
        }
    }

    /// The id frames sealed under this key (by any sender) carry.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The frame key `sender` seals under (HKDF expand plus an AES key schedule: not per frame).
    pub fn frame_key(&self, sender: u32) -> FrameKey {
        let bytes = self.frame_key_bytes(sender);
        FrameKey {
            cipher: CipherKey::new(&bytes),
            key_id: self.key_id,
            sender,
        }
    }

    fn frame_key_bytes(&self, sender: u32) -> Zeroizing<[u8; KEY_LEN_BYTES]> {
        // `from_prk` fails only on a PRK shorter than the hash output; ours is exactly 32 bytes.
        let hkdf = Hkdf::<Sha256>::from_prk(self.prk.as_ref())
            .expect("a 32-byte PRK is valid for HKDF-SHA256");
        let name_len = (self.cluster_name.len() as u64).to_be_bytes();
        let sender_be = sender.to_be_bytes();
        let info: [&[u8]; 5] = [
            FRAME_KEY_INFO_LABEL,
            &[self.key_id],
            &name_len,
            self.cluster_name.as_bytes(),
            &sender_be,
        ];
        let mut okm = Zeroizing::new([0u8; KEY_LEN_BYTES]);
        // HKDF-SHA256 can expand up to 255 * 32 bytes; 32 is always within that.
        hkdf.expand_multi_info(&info, okm.as_mut())
            .expect("32 bytes is within HKDF-SHA256's output limit");
        okm
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterKey")
            .field("key_id", &self.key_id)
            .field("cluster_name", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

/// One sender's derived frame key, with the key id carried in every frame (so a receiver holding
/// two keys during a rotation knows which one to try) and the sender it belongs to.
#[derive(Clone)]
pub struct FrameKey {
    cipher: CipherKey,
    key_id: u8,
    sender: u32,
}

impl FrameKey {
    /// The id frames sealed with this key carry.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The node (or tool session) whose frames this key seals and opens.
    pub fn sender(&self) -> u32 {
        self.sender
    }

    pub(crate) fn cipher(&self) -> &CipherKey {
        &self.cipher
    }
}

impl fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameKey")
            .field("key_id", &self.key_id)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn authkey(fill: u8) -> AuthKey {
        AuthKey::from_bytes(&[fill; 256]).expect("key")
    }

    #[test]
    fn same_inputs_same_key() {
        assert_eq!(
            *derive_frame_key_bytes(&authkey(1), "pve", 0, 1),
            *derive_frame_key_bytes(&authkey(1), "pve", 0, 1)
        );
    }

    #[test]
    fn cluster_name_key_id_authkey_and_sender_each_change_the_key() {
        let base = *derive_frame_key_bytes(&authkey(1), "pve", 0, 1);
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "pve2", 0, 1));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "", 0, 1));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "pve", 1, 1));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(2), "pve", 0, 1));
        assert_ne!(base, *derive_frame_key_bytes(&authkey(1), "pve", 0, 2));
        assert_ne!(
            base,
            *derive_frame_key_bytes(&authkey(1), "pve", 0, 0x0100_0000)
        );
    }

    /// The length prefix keeps a cluster name ending in bytes that look like a sender id apart
    /// from a shorter name with that sender.
    #[test]
    fn cluster_name_and_sender_do_not_run_into_each_other() {
        let name = "pve\0\0\0\x01";
        assert_ne!(
            *derive_frame_key_bytes(&authkey(1), name, 0, 2),
            *derive_frame_key_bytes(&authkey(1), "pve", 0, 1)
        );
    }

    /// Pins the derivation to RFC 5869 HKDF-SHA256 with our info layout, computed independently
    /// with Python's `hmac`/`hashlib`: PRK = HMAC(32 zero bytes, 256 x 0x11),
    /// OKM = HMAC(PRK, label || 0x00 || 00 00 00 00 00 00 00 03 || "pve" || 00 00 00 02 || 0x01).
    #[test]
    fn matches_an_independent_hkdf_computation() {
        let bytes = derive_frame_key_bytes(&authkey(0x11), "pve", 0, 2);
        assert_eq!(hex(&bytes[..]), EXPECTED_PVE_KEY0_SENDER2_HEX);
    }

    const EXPECTED_PVE_KEY0_SENDER2_HEX: &str =
        "373fb559ce1b9e6661dfc4c6967948b748cfac7f33f0afc33c2d902c161e1be1";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    proptest! {
        /// Distinct senders get distinct keys (a collision would be a SHA-256 break).
        #[test]
        fn distinct_senders_distinct_keys(a: u32, b: u32) {
            prop_assume!(a != b);
            let key = ClusterKey::derive(&authkey(7), "c", 3);
            prop_assert_ne!(*key.frame_key_bytes(a), *key.frame_key_bytes(b));
        }
    }
}
