//! The quorum device, qdevice-net model: the corosync-qdevice <-> qnetd wire format ([`wire`]),
//! timers ([`timing`]), the client state machine a node runs ([`client`]), the arbiter's logic
//! ([`server`]) and its decision algorithms ffsplit and lms ([`algorithm`]). Everything is sans-IO:
//! the daemon and `totem-qnetd` own the sockets and the clock. Facts: REFERENCE.md §3.4, §5.

pub mod algorithm;
pub mod client;
pub mod server;
pub mod timing;
pub mod wire;

pub use client::{ClientAction, ClientConfig, ClusterView, DisconnectReason, Phase, QdeviceClient};
pub use server::{ConnId, QnetdServer, ServerAction, ServerConfig, ServerEvent};
pub use timing::Timing;
pub use wire::{DecisionAlgorithm, Message, MsgType, RingId, TieBreaker, Vote};

/// Device votes corosync-qdevice expects for a cluster of `node_count` one-vote nodes: 1 for an
/// even cluster (ffsplit), N−1 for an odd one (lms) (REFERENCE.md §3.4, corosync-qdevice.8).
pub fn recommended_device(node_count: u32) -> (DecisionAlgorithm, u32) {
    if node_count % 2 == 0 {
        (DecisionAlgorithm::Ffsplit, 1)
    } else {
        (DecisionAlgorithm::Lms, node_count.saturating_sub(1))
    }
}
