//! Network readiness tools shared code: totem-ping, totem-pps, totem-latency.
//!
//! All three share the transport's batched link I/O (io_uring or recvmmsg/sendmmsg, see
//! [`link`]) and optional AES-256-GCM from totem-crypto; they need no running daemon.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod client;
pub mod cpu;
pub mod hgrm;
pub mod hosts;
pub mod latency;
pub mod link;
pub mod mcast;
pub mod omping_fmt;
pub mod ping;
pub mod pps;
pub mod progress;
pub mod random;
pub mod server;
pub mod signals;
pub mod stats;
pub mod svg;
pub mod verdict;
pub mod wire;

/// Version printed by `-V` / `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
