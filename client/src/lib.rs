//! The client library applications link (process groups, ordered multicast), the control protocol
//! types the daemon and its clients share, and the `pvecm` command line built on them.
//!
//! - [`proto`]: frames and messages of the control socket, and the status snapshots.
//! - [`Client`]: a connection to the local daemon (groups, multicast, status requests).
//! - [`format`]: corosync-quorumtool / corosync-cfgtool / pvecm text and JSON outputs.
//! - [`keygen`], [`link_spec`]: the pieces of `pvecm` that need no daemon.
//! - [`join`]: the secret-authenticated join protocol of `pvecm add` and the daemon's endpoint.
#![forbid(unsafe_code)]

mod client;
pub mod cluster_setup;
pub mod format;
pub mod join;
pub mod keygen;
pub mod link_spec;
pub mod proto;

pub use client::{socket_path, Client, ClientError, RequestId, DEFAULT_SOCKET_PATH, SOCKET_ENV};
