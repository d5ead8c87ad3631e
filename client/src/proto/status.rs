//! Snapshots the daemon reports over the control socket: quorum status, membership and link
//! status. They carry data only; [`crate::format`] turns them into corosync's and pvecm's text.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A cluster node id as corosync numbers it (nodelist `nodeid`, ≥ 1; 0 is the quorum device,
/// `VOTEQUORUM_QDEVICE_NODEID`, REFERENCE.md §3.5).
pub type NodeId = u32;

/// A Totem ring id: the representative (lowest node id of the membership) and the ring sequence
/// (REFERENCE.md §2.2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RingId {
    /// Representative node of the ring.
    pub rep: NodeId,
    /// Ring sequence number.
    pub seq: u64,
}

impl fmt::Display for RingId {
    /// corosync's `CS_PRI_RING_ID`, `%x.%lx` (`include/corosync/corotypes.h:62`), e.g. `1.1a8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{:x}", self.rep, self.seq)
    }
}

/// votequorum's `votequorum_info.flags` bit set, with corosync's bit values
/// (`include/corosync/votequorum.h:50-62`, REFERENCE.md §3.5). Used both for the cluster-wide
/// flags of the local node and for each node's quorum-device flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuorumFlags(pub u32);

impl QuorumFlags {
    /// `two_node` is configured.
    pub const TWO_NODE: QuorumFlags = QuorumFlags(1);
    /// The partition is quorate.
    pub const QUORATE: QuorumFlags = QuorumFlags(2);
    /// `wait_for_all` is configured.
    pub const WAIT_FOR_ALL: QuorumFlags = QuorumFlags(4);
    /// `last_man_standing` is configured.
    pub const LAST_MAN_STANDING: QuorumFlags = QuorumFlags(8);
    /// `auto_tie_breaker` is configured.
    pub const AUTO_TIE_BREAKER: QuorumFlags = QuorumFlags(16);
    /// `allow_downscale` is configured.
    pub const ALLOW_DOWNSCALE: QuorumFlags = QuorumFlags(32);
    /// A quorum device is registered on the node.
    pub const QDEVICE_REGISTERED: QuorumFlags = QuorumFlags(64);
    /// The quorum device answered within its timeout.
    pub const QDEVICE_ALIVE: QuorumFlags = QuorumFlags(128);
    /// The quorum device casts its vote for the node.
    pub const QDEVICE_CAST_VOTE: QuorumFlags = QuorumFlags(256);
    /// The quorum device's `master_wins` is set.
    pub const QDEVICE_MASTER_WINS: QuorumFlags = QuorumFlags(512);
    /// The quorum device published extra information for the node.
    pub const QDEVICE_HAS_EXTRA_INFO: QuorumFlags = QuorumFlags(1024);

    /// The flags corosync-quorumtool names on its `Flags:` line, in its order (REFERENCE.md §3.5,
    /// `tools/corosync-quorumtool.c` l.707-715); the other bits show in the Qdevice column.
    pub const NAMED: [(QuorumFlags, &'static str); 7] = [
        (QuorumFlags::TWO_NODE, "2Node"),
        (QuorumFlags::QUORATE, "Quorate"),
        (QuorumFlags::WAIT_FOR_ALL, "WaitForAll"),
        (QuorumFlags::LAST_MAN_STANDING, "LastManStanding"),
        (QuorumFlags::AUTO_TIE_BREAKER, "AutoTieBreaker"),
        (QuorumFlags::ALLOW_DOWNSCALE, "AllowDownscale"),
        (QuorumFlags::QDEVICE_REGISTERED, "Qdevice"),
    ];

    /// Names of the set flags of [`QuorumFlags::NAMED`], in corosync's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        QuorumFlags::NAMED
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: QuorumFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with the bits of `other` set.
    #[must_use]
    pub fn with(self, other: QuorumFlags) -> QuorumFlags {
        QuorumFlags(self.0 | other.0)
    }
}

/// What `pvecm status` prints in its "Cluster information" header, read from the running
/// configuration's `totem` section. `None` is a key the configuration does not set; the printer
/// then uses pvecm's default (REFERENCE.md §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// `totem.cluster_name`.
    pub name: Option<String>,
    /// `totem.config_version`.
    pub config_version: Option<u64>,
    /// `totem.transport` (`knet`).
    pub transport: Option<String>,
    /// `totem.secauth` as written in the configuration (`on` / `off`).
    pub secauth: Option<String>,
}

/// One member of the current membership, as a row of the membership table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// Node id.
    pub id: NodeId,
    /// Nodelist `name` (empty when the nodelist has none).
    pub name: String,
    /// Addresses of the node, link 0 first (`ringX_addr`); may be empty.
    pub addresses: Vec<IpAddr>,
    /// Votes the node has (`quorum_votes`).
    pub votes: u32,
    /// The node's quorum-device flags (`QDEVICE_*` bits of its `votequorum_info.flags`).
    pub qdevice_flags: QuorumFlags,
    /// Whether this is the node answering the request.
    pub local: bool,
}

/// The quorum device as the membership table's `Qdevice` row shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdeviceDevice {
    /// Device name (`Qdevice` for corosync-qdevice).
    pub name: String,
    /// Votes the device holds (`quorum.device.votes`).
    pub votes: u32,
}

/// The current membership: what `corosync-quorumtool -l` / `pvecm nodes` show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Members in corosync's order (by address).
    pub nodes: Vec<MemberNode>,
    /// The registered quorum device, if any.
    pub qdevice: Option<QdeviceDevice>,
}

impl Membership {
    /// The local node's row, if it is a member.
    pub fn local_node(&self) -> Option<&MemberNode> {
        self.nodes.iter().find(|node| node.local)
    }
}

/// The quorum status of the answering node: what `corosync-quorumtool -s` and `pvecm status`
/// show (REFERENCE.md §3.5, §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// The `totem` keys of the running configuration.
    pub cluster: ClusterInfo,
    /// Quorum provider (`corosync_votequorum`); `None` prints "Not configured".
    pub provider: Option<String>,
    /// The answering node's id.
    pub local_node: NodeId,
    /// Current ring.
    pub ring_id: RingId,
    /// Whether the partition is quorate (the quorum service's view, the `Quorate:` line).
    pub quorate: bool,
    /// The local node's expected votes.
    pub expected_votes: u32,
    /// Highest expected votes of all members.
    pub highest_expected: u32,
    /// Total votes of the membership (with the quorum device's when it casts them).
    pub total_votes: u32,
    /// Votes needed for quorum.
    pub quorum: u32,
    /// The local node's votequorum flags.
    pub flags: QuorumFlags,
    /// Current membership.
    pub membership: Membership,
}

/// How knet chooses the link a packet leaves on (REFERENCE.md §1.2). Named in JSON by its
/// corosync.conf `link_mode` keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkMode {
    /// The connected link with the highest priority (ties: lowest link id).
    #[serde(rename = "passive")]
    Passive,
    /// Every connected link, every packet.
    #[serde(rename = "active")]
    Active,
    /// Connected links in turn.
    #[serde(rename = "rr")]
    RoundRobin,
}

impl LinkMode {
    /// The `link_mode` keyword of corosync.conf.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Passive => "passive",
            LinkMode::Active => "active",
            LinkMode::RoundRobin => "rr",
        }
    }
}

/// One configured link of the local node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalLink {
    /// Link number (0..=7).
    pub link: u8,
    /// Link transport (`udp`).
    pub transport: String,
    /// Local address of the link.
    pub address: IpAddr,
}

/// Round-trip time statistics of one link, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RttStats {
    /// Smallest sample.
    pub min_us: u32,
    /// Mean of the samples.
    pub avg_us: u32,
    /// Largest sample.
    pub max_us: u32,
    /// 99th percentile.
    pub p99_us: u32,
}

/// The state of one link towards one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLink {
    /// Link number (0..=7).
    pub link: u8,
    /// Link transport (`udp`).
    pub transport: String,
    /// Local address.
    pub source: IpAddr,
    /// Peer address.
    pub destination: IpAddr,
    /// The link is configured and enabled.
    pub enabled: bool,
    /// Heartbeats flow: the link is up.
    pub connected: bool,
    /// Traffic to this peer currently leaves on this link.
    pub active: bool,
    /// `knet_link_priority`: the higher value is preferred in passive mode.
    pub priority: u8,
    /// Path MTU of the link in bytes (payload available to Totem).
    pub mtu: u32,
    /// RTT statistics; `None` before the first pong.
    pub rtt: Option<RttStats>,
}

/// One node of the link status: the local node (no links) or a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLinks {
    /// Node id.
    pub id: NodeId,
    /// Nodelist name.
    pub name: String,
    /// Whether this is the local node.
    pub local: bool,
    /// At least one link to the node is connected.
    pub reachable: bool,
    /// Links to the node, by link number.
    pub links: Vec<PeerLink>,
}

/// Link status of the local node towards every configured node: what `corosync-cfgtool -s` / `-n`
/// and `pvecm links` show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinksStatus {
    /// The answering node's id.
    pub local_node: NodeId,
    /// Cluster transport (`knet`).
    pub transport: String,
    /// How the active link is chosen.
    pub link_mode: LinkMode,
    /// The local node's configured links, by link number.
    pub local_links: Vec<LocalLink>,
    /// Every configured node, local one included, by node id.
    pub nodes: Vec<NodeLinks>,
}
