//! `--output-format json` documents. Key names follow Proxmox VE's API where it has the same
//! data (`/cluster/status`: `name`, `version`, `nodes`, `quorate`, `nodeid`, `ip`, `local`,
//! `online`), corosync's wording elsewhere.

use serde::Serialize;
use serde_json::Value;

use crate::proto::{LinksStatus, MemberNode, Membership, QuorumFlags, QuorumStatus};

/// `pvecm status --output-format json`.
#[derive(Serialize)]
struct StatusDocument<'a> {
    cluster: ClusterDocument<'a>,
    quorum: QuorumDocument<'a>,
    nodes: Vec<NodeDocument<'a>>,
    qdevice: Option<QdeviceDocument<'a>>,
}

#[derive(Serialize)]
struct ClusterDocument<'a> {
    name: Option<&'a str>,
    version: Option<u64>,
    transport: Option<&'a str>,
    secauth: Option<&'a str>,
    nodes: usize,
    quorate: bool,
}

#[derive(Serialize)]
struct QuorumDocument<'a> {
    provider: Option<&'a str>,
    nodeid: u32,
    ring_id: String,
    quorate: bool,
    expected_votes: u32,
    highest_expected: u32,
    total_votes: u32,
    quorum: u32,
    flags: Vec<&'static str>,
}

#[derive(Serialize)]
struct NodeDocument<'a> {
    nodeid: u32,
    name: &'a str,
    ip: Option<String>,
    votes: u32,
    local: bool,
    online: bool,
    qdevice: Option<QdeviceFlagsDocument>,
}

#[derive(Serialize)]
struct QdeviceFlagsDocument {
    alive: bool,
    cast_vote: bool,
    master_wins: bool,
}

#[derive(Serialize)]
struct QdeviceDocument<'a> {
    name: &'a str,
    votes: u32,
}

/// `pvecm status --output-format json`.
pub fn status_json(status: &QuorumStatus) -> Value {
    let document = StatusDocument {
        cluster: ClusterDocument {
            name: status.cluster.name.as_deref(),
            version: status.cluster.config_version,
            transport: status.cluster.transport.as_deref(),
            secauth: status.cluster.secauth.as_deref(),
            nodes: status.membership.nodes.len(),
            quorate: status.quorate,
        },
        quorum: QuorumDocument {
            provider: status.provider.as_deref(),
            nodeid: status.local_node,
            ring_id: status.ring_id.to_string(),
            quorate: status.quorate,
            expected_votes: status.expected_votes,
            highest_expected: status.highest_expected,
            total_votes: status.total_votes,
            quorum: status.quorum,
            flags: status.flags.names().collect(),
        },
        nodes: status.membership.nodes.iter().map(node_document).collect(),
        qdevice: qdevice_document(&status.membership),
    };
    to_value(&document)
}

/// `pvecm nodes --output-format json`: the membership as a list of nodes.
pub fn nodes_json(membership: &Membership) -> Value {
    let nodes: Vec<NodeDocument<'_>> = membership.nodes.iter().map(node_document).collect();
    to_value(&nodes)
}

/// `pvecm links --output-format json`: the link status snapshot as the daemon reports it.
pub fn links_json(links: &LinksStatus) -> Value {
    to_value(links)
}

fn node_document(node: &MemberNode) -> NodeDocument<'_> {
    let flags = node.qdevice_flags;
    NodeDocument {
        nodeid: node.id,
        name: &node.name,
        ip: node.addresses.first().map(ToString::to_string),
        votes: node.votes,
        local: node.local,
        online: true,
        qdevice: flags
            .contains(QuorumFlags::QDEVICE_REGISTERED)
            .then_some(QdeviceFlagsDocument {
                alive: flags.contains(QuorumFlags::QDEVICE_ALIVE),
                cast_vote: flags.contains(QuorumFlags::QDEVICE_CAST_VOTE),
                master_wins: flags.contains(QuorumFlags::QDEVICE_MASTER_WINS),
            }),
    }
}

fn qdevice_document(membership: &Membership) -> Option<QdeviceDocument<'_>> {
    membership.qdevice.as_ref().map(|device| QdeviceDocument {
        name: &device.name,
        votes: device.votes,
    })
}

/// Serialises a document made of strings, numbers, booleans and IP addresses, which cannot fail;
/// `Value::Null` stands in should serde ever refuse one.
fn to_value<T: Serialize + ?Sized>(document: &T) -> Value {
    serde_json::to_value(document).unwrap_or(Value::Null)
}
