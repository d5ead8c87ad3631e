//! The Totem single-ring ordering and membership protocol (SRP), sans-IO.
//!
//! One [`Srp`] per node. The driver feeds it received frames ([`Srp::handle_frame`]), timer expiries
//! ([`Srp::handle_timeout`] at [`Srp::poll_timeout`]), client submissions ([`Srp::submit`]) and
//! transport hints ([`Srp::peer_unreachable`]); after every input it drains [`Srp::poll_action`]
//! until `None` and then re-reads [`Srp::poll_timeout`]. Actions are frames to send, deliveries in
//! total order, configuration changes (transitional, then regular: extended virtual synchrony),
//! the ring sequence number to persist, and the end of back-pressure.
//!
//! Module map: [`config`] (corosync defaults), [`wire`] (codec), [`frag`] (packing, fragmentation,
//! reassembly of client messages), `ring` (receive buffer of one ring), `srp` (the state machine:
//! OPERATIONAL token handling here, GATHER/COMMIT/RECOVERY in `srp::membership`).
//!
//! Protocol facts follow the Totem paper (Amir et al., ACM TOCS 1995) and corosync's
//! `exec/totemsrp.c` (REFERENCE.md §2); the code is our own.

pub mod config;
pub mod frag;
pub mod fuzz;
mod ring;
mod srp;
pub mod wire;

use crate::NodeId;
use std::fmt;

pub use config::{ConfigError, TotemConfig, MAX_MESSAGE_BYTES};
pub use srp::Srp;
pub use wire::DecodeError;

/// A ring (configuration) identifier: the representative (lowest node id of the membership) and a
/// sequence number 4 above the highest one its members knew (REFERENCE.md §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingId {
    /// Representative: lowest node id of the membership.
    pub rep: NodeId,
    /// Ring sequence number.
    pub seq: u64,
}

impl fmt::Display for RingId {
    /// corosync's `CS_PRI_RING_ID` `"%x.%lx"`, e.g. `1.1a8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{:x}", self.rep, self.seq)
    }
}

/// Delivery guarantee of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Delivered in total order as soon as every earlier message was delivered.
    Agreed,
    /// Additionally delivered only once every member of the ring has received it.
    Safe,
}

/// Protocol state (REFERENCE.md §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A ring is installed; the token circulates and messages are ordered.
    Operational,
    /// Exchanging joins to agree on a membership.
    Gather,
    /// The commit token circulates to install the agreed membership.
    Commit,
    /// Old-ring messages are exchanged on the new ring before it is installed.
    Recovery,
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// One node.
    Node(NodeId),
    /// Every node (the transport sends it to all configured peers, not back to the sender).
    All,
}

/// A client message delivered in total order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Author.
    pub sender: NodeId,
    /// Ring on which the message was ordered (in a transitional configuration: the old ring).
    pub ring_id: RingId,
    /// Guarantee it was sent with.
    pub order: Order,
    /// The message.
    pub payload: Vec<u8>,
}

/// Kind of configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfKind {
    /// The members that come from this node's previous ring into the new one. Messages delivered
    /// after it and before the regular configuration belong to the old ring but could not be
    /// delivered with their guarantee in the old regular configuration.
    Transitional,
    /// The new ring's full membership; messages delivered after it belong to `ring_id`.
    Regular,
}

/// A configuration change. Both kinds carry the new ring's id; `left` names the old-ring members
/// not in the new ring (in both), `joined` the new members that were not in this node's old ring
/// (empty in the transitional configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChange {
    /// Transitional or regular.
    pub kind: ConfKind,
    /// The new ring.
    pub ring_id: RingId,
    /// Members, ascending.
    pub members: Vec<NodeId>,
    /// Old-ring members that are gone, ascending.
    pub left: Vec<NodeId>,
    /// New members, ascending.
    pub joined: Vec<NodeId>,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Transmit a frame.
    Send {
        /// Destination.
        to: Dest,
        /// Encoded totem frame.
        frame: Vec<u8>,
    },
    /// Hand a message to the application.
    Deliver(Delivery),
    /// Hand a configuration change to the application.
    Conf(ConfChange),
    /// Store this ring sequence number durably and pass it to [`Srp::new`] after a restart. It is
    /// emitted before any frame that uses it.
    PersistRingSeq(u64),
    /// The submit queue has room again after a `QueueFull`.
    SubmitReady,
}

/// Why a submission was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The submit queue holds `submit_queue_limit` messages; wait for [`Action::SubmitReady`].
    #[error("submit queue full; wait for SubmitReady")]
    QueueFull,
    /// The message exceeds [`MAX_MESSAGE_BYTES`].
    #[error("message exceeds the 1 MiB limit")]
    TooLarge,
    /// The node has left the cluster ([`Srp::leave`]).
    #[error("node has left the cluster")]
    NotOperational,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_id_prints_like_corosync() {
        assert_eq!(RingId { rep: 1, seq: 0x1a8 }.to_string(), "1.1a8");
        assert_eq!(
            RingId {
                rep: 0x2a,
                seq: 0xd43
            }
            .to_string(),
            "2a.d43"
        );
    }
}
