//! The snapshot of votequorum that `corosync-quorumtool -s` / `-l` (and so `pvecm status` /
//! `pvecm nodes`) print; formatting belongs to the CLI, this is only the data (REFERENCE.md §3.5).

use super::flags::Flags;
use crate::NodeId;

/// The ring votequorum works in: the Totem ring id (`%x.%lx`, REFERENCE.md §2.2).
pub use crate::totem::RingId;

/// One row of the membership table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id (0 for the quorum device row).
    pub node_id: NodeId,
    /// Votes the node has.
    pub votes: u32,
    /// Expected votes the node announced.
    pub expected_votes: u32,
    /// Name from the nodelist (`Qdevice` for the device row).
    pub name: String,
    /// Per-node quorum-device flags (registered / alive / cast vote / master wins).
    pub qdevice_flags: Flags,
    /// Whether this row is the local node.
    pub local: bool,
}

impl NodeStatus {
    /// The `Qdevice` column text (`A,V,NMW`, `NR`, ...).
    pub fn qdevice_column(&self) -> String {
        self.qdevice_flags.qdevice_column()
    }
}

/// The quorum device row, printed after the nodes when a device is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdeviceStatus {
    /// The device's votes as configured.
    pub votes: u32,
    /// Whether this node's device currently casts its vote (else quorumtool prints
    /// `0` votes plus ` (votes N)`).
    pub casting: bool,
    /// The device's name (`Qdevice` by default; corosync-qdevice registers as `Qdevice`).
    pub name: String,
}

/// Everything `corosync-quorumtool -s` shows about votequorum on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumStatus {
    /// This node's id.
    pub local_node_id: NodeId,
    /// Current ring id.
    pub ring_id: RingId,
    /// Number of member nodes (`Nodes:`).
    pub member_count: u32,
    /// `Quorate:`.
    pub quorate: bool,
    /// `Expected votes:` (this node's expected votes).
    pub expected_votes: u32,
    /// `Highest expected:` over members.
    pub highest_expected: u32,
    /// `Total votes:` (members + the device when it casts its vote).
    pub total_votes: u32,
    /// `Quorum:`.
    pub quorum: u32,
    /// `Flags:`.
    pub flags: Flags,
    /// Membership rows, sorted by node id.
    pub nodes: Vec<NodeStatus>,
    /// The quorum device row, if a device is registered.
    pub qdevice: Option<QdeviceStatus>,
}

impl QuorumStatus {
    /// The `Flags:` line body (corosync order, each name followed by a space).
    pub fn flags_line(&self) -> String {
        self.flags.flags_line()
    }

    /// The `Quorum:` line value as quorumtool prints it: `"2  "` when quorate (number, then `" "`
    /// and a space), `"2 Activity blocked"` when not.
    pub fn quorum_line(&self) -> String {
        if self.quorate {
            format!("{}  ", self.quorum)
        } else {
            format!("{} Activity blocked", self.quorum)
        }
    }

    /// Exit status of `corosync-quorumtool -s`: 0 quorate, 2 (`EXIT_NOT_QUORATE`) not.
    pub fn exit_code(&self) -> i32 {
        if self.quorate {
            0
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_id_prints_hex_dot_hex() {
        assert_eq!(RingId { rep: 1, seq: 0x1a8 }.to_string(), "1.1a8");
        assert_eq!(
            RingId {
                rep: 0x1f,
                seq: 0x15
            }
            .to_string(),
            "1f.15"
        );
    }
}
