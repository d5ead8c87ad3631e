//! Authkey loading, AES-256-GCM frame sealing and opening, nonces, replay windows, key rotation.
//!
//! The pieces, in the order a frame meets them:
//!
//! * [`authkey`]: the corosync-keygen key file (raw bytes, 128..=4096), loaded, generated, written.
//! * [`kdf`]: HKDF-SHA256 from the authkey to a [`ClusterKey`] per cluster name and key id, and
//!   from that to each sender's own [`FrameKey`].
//! * [`nonce`]: the 96-bit GCM nonce, a per-boot salt and a 64-bit counter; [`NonceStart`] says
//!   where a boot's nonces start.
//! * [`boot`]: the persisted boot counter whose value is a daemon boot's salt.
//! * [`seal`]: the sender's [`Sealer`] (reserves nonces, encrypts in place, rekeys).
//! * [`open`]: the receiver's [`Opener`] (two keys for live rotation, per-sender keys derived once
//!   and cached, authenticates in place, then checks the sender's [`replay`] window, counts every
//!   rejection by reason).
//!
//! The AEAD itself comes from `aws-lc-rs` (see `aead.rs` for why); nothing here allocates per
//! frame once a sender's key is cached, and no input makes it panic.
#![forbid(unsafe_code)]

mod aead;
pub mod authkey;
pub mod boot;
pub mod kdf;
pub mod nonce;
pub mod open;
mod random;
pub mod replay;
pub mod seal;

pub use aead::TAG_LEN;
pub use authkey::{AuthKey, KeyError, KeyWarning};
pub use boot::{BootCounter, BootCounterError};
pub use kdf::{ClusterKey, FrameKey};
pub use nonce::{Nonce, NonceStart, NONCE_LEN, SALT_LEN};
pub use open::{OpenError, OpenStats, Opener, WhenFull};
pub use random::RandomError;
pub use seal::{SealError, Sealer};
