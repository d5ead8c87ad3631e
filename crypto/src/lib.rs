//! Authkey loading, AES-256-GCM frame sealing and opening, nonces, replay windows, key rotation.
//!
//! The pieces, in the order a frame meets them:
//!
//! * [`authkey`]: the corosync-keygen key file (raw bytes, 128..=4096), loaded, generated, written.
//! * [`kdf`]: HKDF-SHA256 from the authkey to a [`FrameKey`] bound to the cluster name and key id.
//! * [`nonce`]: the 96-bit GCM nonce, a per-boot random salt and a 64-bit counter.
//! * [`seal`]: the sender's [`Sealer`] (reserves nonces, encrypts in place, rekeys).
//! * [`open`]: the receiver's [`Opener`] (two keys for live rotation, authenticates in place, then
//!   checks the sender's [`replay`] window, counts every rejection by reason).
//!
//! The AEAD itself comes from `ring` (see `aead.rs` for why); nothing here allocates per frame and
//! no input makes it panic.
#![forbid(unsafe_code)]

mod aead;
pub mod authkey;
pub mod kdf;
pub mod nonce;
pub mod open;
pub mod replay;
pub mod seal;

pub use aead::TAG_LEN;
pub use authkey::{AuthKey, KeyError, KeyWarning};
pub use kdf::FrameKey;
pub use nonce::{Nonce, NONCE_LEN, SALT_LEN};
pub use open::{OpenError, OpenStats, Opener};
pub use seal::{SealError, Sealer};
