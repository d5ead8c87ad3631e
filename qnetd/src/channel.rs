//! The optional secure channel between a qdevice client and totem-qnetd: AES-256-GCM records keyed
//! from the cluster authkey. Off by default (corosync's own qdevice speaks plain TCP with `tls: off`
//! and NSS TLS otherwise); `totem-qnetd --authkey FILE` requires it from every client.
//!
//! ```text
//! client -> server  hello: "TQN1" | client_salt[16] | name_len u8 | cluster_name
//! server -> client  hello: "TQN1" | server_salt[16]
//! key_d = HKDF-SHA256(salt = client_salt || server_salt, ikm = authkey,
//!                     info = "totem-qnetd v1 channel" | "c2s" or "s2c" | name_len u8 | cluster_name)
//! record: len u32 BE (ciphertext + 16-byte tag) | AES-256-GCM(key_d, nonce = 0u32 || n u64 BE,
//!         aad = the 4 length bytes)        n = 0, 1, 2 ... per direction
//! ```
//! Fresh salts from both ends make every connection's keys unique, so a counter nonce never
//! repeats under a key; records must arrive in order (TCP), so a replayed, reordered, truncated or
//! forged record fails to open and the connection is closed.

use hkdf::Hkdf;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Hello magic: protocol name and version.
pub const HELLO_MAGIC: &[u8; 4] = b"TQN1";
/// Salt bytes each side contributes.
pub const SALT_LEN: usize = 16;
/// AES-GCM tag size.
pub const TAG_LEN: usize = 16;
/// Largest record body (ciphertext + tag): a qdevice message is at most 32 KiB.
pub const RECORD_LEN_MAX: usize = 64 * 1024;
/// Longest cluster name the hello carries (corosync limits cluster_name far below this).
pub const CLUSTER_NAME_LEN_MAX: usize = 255;
/// Domain-separation label of the channel keys (no other use of the authkey derives with it).
const KEY_INFO_LABEL: &[u8] = b"totem-qnetd v1 channel";
/// corosync-keygen authkey size limits (bytes), as corosync and totem-crypto enforce them.
pub const AUTHKEY_LEN_MIN: usize = 128;
/// See [`AUTHKEY_LEN_MIN`].
pub const AUTHKEY_LEN_MAX: usize = 4096;

/// The cluster authkey (corosync-keygen format: raw random bytes); wiped on drop, never printed.
#[derive(Clone)]
pub struct ChannelKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelKey({} bytes)", self.0.len())
    }
}

/// Why an authkey was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read authkey {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Outside corosync's 128..=4096 bytes.
    #[error("authkey must be {AUTHKEY_LEN_MIN}..={AUTHKEY_LEN_MAX} bytes, got {0}")]
    Size(usize),
}

impl ChannelKey {
    /// A key from bytes (size-checked).
    pub fn from_bytes(bytes: &[u8]) -> Result<ChannelKey, KeyFileError> {
        if !(AUTHKEY_LEN_MIN..=AUTHKEY_LEN_MAX).contains(&bytes.len()) {
            return Err(KeyFileError::Size(bytes.len()));
        }
        Ok(ChannelKey(Zeroizing::new(bytes.to_vec())))
    }

    /// Load an authkey file.
    pub fn load(path: &std::path::Path) -> Result<ChannelKey, KeyFileError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        })?);
        ChannelKey::from_bytes(&bytes)
    }
}

/// Why the channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer's hello is not ours.
    #[error("peer did not open with the totem-qnetd secure hello")]
    BadHello,
    /// A record failed authentication (wrong key, tampering, replay or reordering).
    #[error("record {0} failed authentication")]
    BadRecord(u64),
    /// A record length above the limit.
    #[error("record of {0} bytes exceeds the limit")]
    RecordTooLong(usize),
    /// The nonce counter ran out (2^64 records).
    #[error("record counter exhausted")]
    CounterExhausted,
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
}

/// A fresh random salt.
pub fn random_salt() -> Result<[u8; SALT_LEN], ChannelError> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| ChannelError::Random)?;
    Ok(salt)
}

/// The client's hello bytes.
pub fn client_hello(client_salt: &[u8; SALT_LEN], cluster_name: &str) -> Vec<u8> {
    let name = &cluster_name.as_bytes()[..cluster_name.len().min(CLUSTER_NAME_LEN_MAX)];
    let mut out = Vec::with_capacity(4 + SALT_LEN + 1 + name.len());
    out.extend_from_slice(HELLO_MAGIC);
    out.extend_from_slice(client_salt);
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name);
    out
}

/// Parse a client hello from the start of `bytes`: `Ok(None)` while incomplete, else the salt,
/// the cluster name and the hello's length.
pub fn parse_client_hello(
    bytes: &[u8],
) -> Result<Option<([u8; SALT_LEN], String, usize)>, ChannelError> {
    let fixed = 4 + SALT_LEN + 1;
    if bytes.len() < 4 {
        return Ok(None);
    }
    if &bytes[..4] != HELLO_MAGIC {
        return Err(ChannelError::BadHello);
    }
    let Some(&name_len) = bytes.get(fixed - 1) else {
        return Ok(None);
    };
    let total = fixed + usize::from(name_len);
    let Some(name) = bytes.get(fixed..total) else {
        return Ok(None);
    };
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&bytes[4..4 + SALT_LEN]);
    let name = String::from_utf8(name.to_vec()).map_err(|_| ChannelError::BadHello)?;
    Ok(Some((salt, name, total)))
}

/// The server's hello bytes.
pub fn server_hello(server_salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut out = HELLO_MAGIC.to_vec();
    out.extend_from_slice(server_salt);
    out
}

/// Parse a server hello: `Ok(None)` while incomplete, else the salt.
pub fn parse_server_hello(bytes: &[u8]) -> Result<Option<[u8; SALT_LEN]>, ChannelError> {
    if bytes.len() < 4 + SALT_LEN {
        if bytes.len() >= 4 && &bytes[..4] != HELLO_MAGIC {
            return Err(ChannelError::BadHello);
        }
        return Ok(None);
    }
    if &bytes[..4] != HELLO_MAGIC {
        return Err(ChannelError::BadHello);
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&bytes[4..4 + SALT_LEN]);
    Ok(Some(salt))
}

/// Which end of the connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The qdevice client.
    Client,
    /// totem-qnetd.
    Server,
}

/// One direction's key and counter.
struct Direction {
    key: LessSafeKey,
    counter: u64,
}

impl Direction {
    fn nonce(&mut self) -> Result<Nonce, ChannelError> {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or(ChannelError::CounterExhausted)?;
        Ok(Nonce::assume_unique_for_key(bytes))
    }
}

/// An established channel: seals what we send, opens what we receive.
pub struct SecureChannel {
    send: Direction,
    recv: Direction,
    inbox: Vec<u8>,
}

impl std::fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureChannel")
            .field("sent", &self.send.counter)
            .field("received", &self.recv.counter)
            .finish_non_exhaustive()
    }
}

impl SecureChannel {
    /// Derive both directions' keys once both salts are known.
    pub fn new(
        authkey: &ChannelKey,
        cluster_name: &str,
        client_salt: &[u8; SALT_LEN],
        server_salt: &[u8; SALT_LEN],
        role: Role,
    ) -> SecureChannel {
        let mut salt = [0u8; 2 * SALT_LEN];
        salt[..SALT_LEN].copy_from_slice(client_salt);
        salt[SALT_LEN..].copy_from_slice(server_salt);
        let hkdf = Hkdf::<Sha256>::new(Some(&salt), &authkey.0);
        let name = &cluster_name.as_bytes()[..cluster_name.len().min(CLUSTER_NAME_LEN_MAX)];
        let name_len = [u8::try_from(name.len()).unwrap_or(u8::MAX)];
        let key = |direction: &[u8]| {
            let mut okm = Zeroizing::new([0u8; 32]);
            let info: [&[u8]; 4] = [KEY_INFO_LABEL, direction, &name_len, name];
            // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so expand cannot fail.
            let _ = hkdf.expand_multi_info(&info, okm.as_mut());
            LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, okm.as_ref())
                    .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for AES-256-GCM")),
            )
        };
        let (send_info, recv_info): (&[u8], &[u8]) = match role {
            Role::Client => (b"c2s", b"s2c"),
            Role::Server => (b"s2c", b"c2s"),
        };
        SecureChannel {
            send: Direction {
                key: key(send_info),
                counter: 0,
            },
            recv: Direction {
                key: key(recv_info),
                counter: 0,
            },
            inbox: Vec::new(),
        }
    }

    /// One sealed record carrying `plain`.
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let body_len = plain.len() + TAG_LEN;
        if body_len > RECORD_LEN_MAX {
            return Err(ChannelError::RecordTooLong(body_len));
        }
        let len_bytes = u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes();
        let nonce = self.send.nonce()?;
        let mut out = Vec::with_capacity(4 + body_len);
        out.extend_from_slice(&len_bytes);
        out.extend_from_slice(plain);
        let mut body = out.split_off(4);
        self.send
            .key
            .seal_in_place_append_tag(nonce, Aad::from(len_bytes), &mut body)
            .map_err(|_| ChannelError::BadRecord(self.send.counter))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Feed received bytes; returns the plaintext of every complete record, in order.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.inbox.extend_from_slice(bytes);
        let mut plain = Vec::new();
        while let Some(len_bytes) = self.inbox.get(..4) {
            let len_bytes = [len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]];
            let body_len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
            if !(TAG_LEN..=RECORD_LEN_MAX).contains(&body_len) {
                return Err(ChannelError::RecordTooLong(body_len));
            }
            if self.inbox.len() < 4 + body_len {
                break;
            }
            let rest = self.inbox.split_off(4 + body_len);
            let mut record = std::mem::replace(&mut self.inbox, rest);
            let number = self.recv.counter;
            let nonce = self.recv.nonce()?;
            let opened = self
                .recv
                .key
                .open_in_place(nonce, Aad::from(len_bytes), &mut record[4..])
                .map_err(|_| ChannelError::BadRecord(number))?;
            plain.extend_from_slice(opened);
        }
        Ok(plain)
    }
}

/// Keep the `aead` import meaningful for readers: the algorithm in use.
pub const ALGORITHM: &aead::Algorithm = &AES_256_GCM;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ChannelKey {
        ChannelKey::from_bytes(&[byte; 256]).expect("valid key size")
    }

    #[test]
    fn key_size_limits() {
        assert!(ChannelKey::from_bytes(&[0; 127]).is_err());
        assert!(ChannelKey::from_bytes(&[0; 4097]).is_err());
        assert!(ChannelKey::from_bytes(&[0; 128]).is_ok());
    }

    #[test]
    fn other_cluster_name_gives_other_keys() {
        let k = key(5);
        let (cs, ss) = ([1u8; SALT_LEN], [2u8; SALT_LEN]);
        let mut a = SecureChannel::new(&k, "c1", &cs, &ss, Role::Client);
        let mut b = SecureChannel::new(&k, "c2", &cs, &ss, Role::Server);
        let rec = a.seal(b"x").expect("seal");
        assert!(b.open(&rec).is_err());
    }

    fn pair(a: &ChannelKey, b: &ChannelKey) -> (SecureChannel, SecureChannel) {
        let (cs, ss) = ([1u8; SALT_LEN], [2u8; SALT_LEN]);
        (
            SecureChannel::new(a, "c1", &cs, &ss, Role::Client),
            SecureChannel::new(b, "c1", &cs, &ss, Role::Server),
        )
    }

    #[test]
    fn records_round_trip_in_any_chunking() {
        let k = key(7);
        let (mut client, mut server) = pair(&k, &k);
        let mut wire = Vec::new();
        for msg in [&b"hello"[..], b"", b"qdevice message bytes"] {
            wire.extend(client.seal(msg).expect("seal"));
        }
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(server.open(chunk).expect("open"));
        }
        assert_eq!(got, b"helloqdevice message bytes");
        let back = server.seal(b"reply").expect("seal");
        assert_eq!(client.open(&back).expect("open"), b"reply");
    }

    #[test]
    fn wrong_key_tampering_replay_and_reflection_fail() {
        let (mut client, mut server) = pair(&key(1), &key(2));
        let rec = client.seal(b"x").expect("seal");
        assert!(matches!(server.open(&rec), Err(ChannelError::BadRecord(0))));

        let k = key(3);
        let (mut client, mut server) = pair(&k, &k);
        let mut rec = client.seal(b"vote").expect("seal");
        let last = rec.len() - 1;
        rec[last] ^= 1;
        assert!(server.open(&rec).is_err(), "tampered tag");

        let (mut client, mut server) = pair(&k, &k);
        let rec = client.seal(b"once").expect("seal");
        assert_eq!(server.open(&rec).expect("first"), b"once");
        assert!(server.open(&rec).is_err(), "replayed record");

        let (mut client, _) = pair(&k, &k);
        let rec = client.seal(b"mirror").expect("seal");
        let (mut other_client, _) = pair(&k, &k);
        assert!(
            other_client.open(&rec).is_err(),
            "reflected back to a client"
        );
    }

    #[test]
    fn hellos_parse_and_reject_foreign_bytes() {
        let hello = client_hello(&[9; SALT_LEN], "cluster-a");
        assert_eq!(parse_client_hello(&hello[..10]).expect("partial"), None);
        let (salt, name, len) = parse_client_hello(&hello).expect("ok").expect("complete");
        assert_eq!(
            (salt, name.as_str(), len),
            ([9; SALT_LEN], "cluster-a", hello.len())
        );
        // A plain qdevice PREINIT (type 0) is not a hello.
        assert!(parse_client_hello(&[0, 0, 0, 0, 0, 14]).is_err());
        assert_eq!(
            parse_server_hello(&server_hello(&[4; SALT_LEN])).expect("ok"),
            Some([4; SALT_LEN])
        );
        assert!(parse_server_hello(b"XXXX").is_err());
    }
}
