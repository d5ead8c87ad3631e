//! The votequorum messages nodes multicast to each other through Totem (agreed order), as a small
//! versioned codec of our own. Byte layout, all integers big-endian:
//!
//! ```text
//! +---------+------+---------------------------------------------------+
//! | version | kind | body (fixed size per kind)                        |
//! |   u8=1  |  u8  |                                                   |
//! +---------+------+---------------------------------------------------+
//! kind 1 NodeInfo:    node_id u32 | votes u32 | expected_votes u32 | flags u32      (16 bytes)
//! kind 2 Reconfigure: param u8 (1 expected, 2 node votes, 3 cancel wfa) | node_id u32 | value u32 (9)
//! ```
//! A message is exactly header + body: short, long, unknown version or kind are errors, never panics.
//! Node id 0 in a NodeInfo carries the quorum device's votes, as in corosync.

use crate::NodeId;

/// The only version this build writes and reads.
pub const WIRE_VERSION: u8 = 1;
const KIND_NODE_INFO: u8 = 1;
const KIND_RECONFIGURE: u8 = 2;
const HEADER_SIZE: usize = 2;
const NODE_INFO_BODY_SIZE: usize = 16;
const RECONFIGURE_BODY_SIZE: usize = 9;
/// The largest encoded message, for callers sizing buffers.
pub const MESSAGE_SIZE_MAX: usize = HEADER_SIZE + NODE_INFO_BODY_SIZE;
const _: () = assert!(RECONFIGURE_BODY_SIZE < NODE_INFO_BODY_SIZE);

/// Per-node state flags carried in NodeInfo (our own bits, named after corosync's NODE_FLAGS_*).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeFlags(pub u32);

impl NodeFlags {
    /// The sender considers its partition quorate.
    pub const QUORATE: NodeFlags = NodeFlags(1);
    /// The sender is shutting down cleanly.
    pub const LEAVING: NodeFlags = NodeFlags(2);
    /// The sender is still waiting for all nodes (wait_for_all status).
    pub const WFA_STATUS: NodeFlags = NodeFlags(4);
    /// The sender has not yet been part of a multi-node membership.
    pub const FIRST: NodeFlags = NodeFlags(8);
    /// A quorum device is registered on the sender.
    pub const QDEVICE_REGISTERED: NodeFlags = NodeFlags(16);
    /// The sender's quorum device is alive.
    pub const QDEVICE_ALIVE: NodeFlags = NodeFlags(32);
    /// The sender's quorum device casts its vote.
    pub const QDEVICE_CAST_VOTE: NodeFlags = NodeFlags(64);
    /// The sender's quorum device uses master_wins.
    pub const QDEVICE_MASTER_WINS: NodeFlags = NodeFlags(128);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: NodeFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Set or clear the bits of `other`.
    pub fn set(&mut self, other: NodeFlags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

/// Which setting a Reconfigure message changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconfigureParam {
    /// Expected votes on every member (`-e`).
    ExpectedVotes,
    /// Votes of one node (`-v`).
    NodeVotes,
    /// End the wait_for_all wait.
    CancelWaitForAll,
}

/// One votequorum message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuorumMsg {
    /// A node's (or, with node id 0, the device's) votes, expected votes and flags.
    NodeInfo {
        /// The node described (0 = the quorum device).
        node_id: NodeId,
        /// Its votes.
        votes: u32,
        /// Its expected votes.
        expected_votes: u32,
        /// Its flags.
        flags: NodeFlags,
    },
    /// A run-time change every member applies in the same order.
    Reconfigure {
        /// What changes.
        param: ReconfigureParam,
        /// The node concerned (the sender for expected votes).
        node_id: NodeId,
        /// The new value.
        value: u32,
    },
}

/// Why bytes are not a votequorum message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header or the kind's body.
    #[error("votequorum message truncated: {0} bytes")]
    Truncated(usize),
    /// More bytes than the kind's body.
    #[error("votequorum message has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A version this build does not read.
    #[error("votequorum message version {0} unsupported (expected {WIRE_VERSION})")]
    UnknownVersion(u8),
    /// A kind this build does not know.
    #[error("votequorum message kind {0} unknown")]
    UnknownKind(u8),
    /// A Reconfigure parameter this build does not know.
    #[error("votequorum reconfigure parameter {0} unknown")]
    UnknownParam(u8),
}

impl QuorumMsg {
    /// Append the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(WIRE_VERSION);
        match *self {
            QuorumMsg::NodeInfo {
                node_id,
                votes,
                expected_votes,
                flags,
            } => {
                out.push(KIND_NODE_INFO);
                for word in [node_id, votes, expected_votes, flags.0] {
                    out.extend_from_slice(&word.to_be_bytes());
                }
            }
            QuorumMsg::Reconfigure {
                param,
                node_id,
                value,
            } => {
                out.push(KIND_RECONFIGURE);
                out.push(match param {
                    ReconfigureParam::ExpectedVotes => 1,
                    ReconfigureParam::NodeVotes => 2,
                    ReconfigureParam::CancelWaitForAll => 3,
                });
                out.extend_from_slice(&node_id.to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MESSAGE_SIZE_MAX);
        self.encode(&mut out);
        out
    }

    /// Decode exactly one message from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<QuorumMsg, WireError> {
        let [version, kind, body @ ..] = bytes else {
            return Err(WireError::Truncated(bytes.len()));
        };
        if *version != WIRE_VERSION {
            return Err(WireError::UnknownVersion(*version));
        }
        match *kind {
            KIND_NODE_INFO => {
                let words = exact_body::<NODE_INFO_BODY_SIZE>(body)?;
                Ok(QuorumMsg::NodeInfo {
                    node_id: be_u32(&words, 0),
                    votes: be_u32(&words, 4),
                    expected_votes: be_u32(&words, 8),
                    flags: NodeFlags(be_u32(&words, 12)),
                })
            }
            KIND_RECONFIGURE => {
                let fields = exact_body::<RECONFIGURE_BODY_SIZE>(body)?;
                let param = match fields[0] {
                    1 => ReconfigureParam::ExpectedVotes,
                    2 => ReconfigureParam::NodeVotes,
                    3 => ReconfigureParam::CancelWaitForAll,
                    other => return Err(WireError::UnknownParam(other)),
                };
                Ok(QuorumMsg::Reconfigure {
                    param,
                    node_id: be_u32(&fields, 1),
                    value: be_u32(&fields, 5),
                })
            }
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

fn exact_body<const N: usize>(body: &[u8]) -> Result<[u8; N], WireError> {
    if body.len() < N {
        return Err(WireError::Truncated(body.len() + HEADER_SIZE));
    }
    if body.len() > N {
        return Err(WireError::TrailingBytes(body.len() - N));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(body);
    Ok(out)
}

fn be_u32<const N: usize>(bytes: &[u8; N], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_msg() -> impl Strategy<Value = QuorumMsg> {
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(n, v, e, f)| {
                QuorumMsg::NodeInfo {
                    node_id: n,
                    votes: v,
                    expected_votes: e,
                    flags: NodeFlags(f),
                }
            }),
            (0u8..3, any::<u32>(), any::<u32>()).prop_map(|(p, n, v)| QuorumMsg::Reconfigure {
                param: [
                    ReconfigureParam::ExpectedVotes,
                    ReconfigureParam::NodeVotes,
                    ReconfigureParam::CancelWaitForAll
                ][usize::from(p)],
                node_id: n,
                value: v,
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in any_msg()) {
            let bytes = msg.to_bytes();
            prop_assert!(bytes.len() <= MESSAGE_SIZE_MAX);
            prop_assert_eq!(QuorumMsg::decode(&bytes), Ok(msg));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(msg) = QuorumMsg::decode(&bytes) {
                prop_assert_eq!(msg.to_bytes(), bytes);
            }
        }

        #[test]
        fn truncation_and_extension_are_errors(msg in any_msg(), cut in 0usize..18) {
            let bytes = msg.to_bytes();
            if cut < bytes.len() {
                prop_assert!(QuorumMsg::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert_eq!(QuorumMsg::decode(&longer), Err(WireError::TrailingBytes(1)));
        }
    }

    #[test]
    fn bad_header() {
        assert_eq!(QuorumMsg::decode(&[]), Err(WireError::Truncated(0)));
        assert_eq!(
            QuorumMsg::decode(&[2, 1]),
            Err(WireError::UnknownVersion(2))
        );
        assert_eq!(QuorumMsg::decode(&[1, 9]), Err(WireError::UnknownKind(9)));
        assert_eq!(
            QuorumMsg::decode(&[1, 2, 7, 0, 0, 0, 1, 0, 0, 0, 1]),
            Err(WireError::UnknownParam(7))
        );
    }
}
