//! Authkey loading, AES-256-GCM frame sealing and opening, nonces, replay windows, key rotation.
#![forbid(unsafe_code)]
