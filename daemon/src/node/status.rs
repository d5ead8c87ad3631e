//! Snapshots for the control protocol: votequorum's status, the membership and the link table,
//! translated into the types `pvecm` prints (REFERENCE.md §3.5, §4.2).

use std::collections::BTreeMap;
use std::net::IpAddr;

use totem_client::proto::{
    ClusterInfo, LinkMode, LinksStatus, LocalLink, MemberNode, Membership, NodeLinks, PeerLink,
    QdeviceDevice, QuorumFlags, QuorumStatus, RingId, RttStats,
};
use totem_core::quorum;
use totem_transport::linkset::PeerLinkStatus;

/// What the status answers need from the configuration; fixed until the next reload.
#[derive(Clone, Debug)]
pub struct StaticInfo {
    /// The local node id.
    pub local: u32,
    /// `pvecm status`'s "Cluster information" header.
    pub cluster: ClusterInfo,
    /// Node id → (name, addresses link 0 first).
    pub nodes: BTreeMap<u32, (String, Vec<IpAddr>)>,
    /// `link_mode`.
    pub link_mode: LinkMode,
    /// The local node's links: (link number, address).
    pub local_links: Vec<(u8, IpAddr)>,
    /// Configured priority of each link.
    pub priorities: BTreeMap<u8, u8>,
}

/// The quorum status answer.
pub fn quorum_status(info: &StaticInfo, q: &quorum::QuorumStatus) -> QuorumStatus {
    QuorumStatus {
        cluster: info.cluster.clone(),
        provider: Some("corosync_votequorum".into()),
        local_node: info.local,
        ring_id: RingId {
            rep: q.ring_id.rep,
            seq: q.ring_id.seq,
        },
        quorate: q.quorate,
        expected_votes: q.expected_votes,
        highest_expected: q.highest_expected,
        total_votes: q.total_votes,
        quorum: q.quorum,
        flags: QuorumFlags(q.flags.0),
        membership: membership(info, q),
    }
}

/// The membership answer (`pvecm nodes`).
pub fn membership(info: &StaticInfo, q: &quorum::QuorumStatus) -> Membership {
    let nodes = q
        .nodes
        .iter()
        .filter(|n| n.node_id != quorum::QDEVICE_NODE_ID)
        .map(|n| {
            let (name, addresses) = info
                .nodes
                .get(&n.node_id)
                .cloned()
                .unwrap_or_else(|| (n.name.clone(), Vec::new()));
            MemberNode {
                id: n.node_id,
                name,
                addresses,
                votes: n.votes,
                qdevice_flags: QuorumFlags(n.qdevice_flags.0),
                local: n.node_id == info.local,
            }
        })
        .collect();
    Membership {
        nodes,
        qdevice: q.qdevice.as_ref().map(|d| QdeviceDevice {
            name: d.name.clone(),
            votes: if d.casting { d.votes } else { 0 },
        }),
    }
}

/// The link table answer (`pvecm links`).
pub fn links_status(info: &StaticInfo, table: &[PeerLinkStatus]) -> LinksStatus {
    let local_links: Vec<LocalLink> = info
        .local_links
        .iter()
        .map(|(link, address)| LocalLink {
            link: *link,
            transport: "udp".into(),
            address: *address,
        })
        .collect();
    let source_of = |link: u8| {
        info.local_links
            .iter()
            .find(|(l, _)| *l == link)
            .map(|(_, a)| *a)
    };
    let mut nodes: Vec<NodeLinks> = Vec::new();
    for (&id, (name, _)) in &info.nodes {
        let links: Vec<PeerLink> = table
            .iter()
            .filter(|s| s.node_id == id)
            .filter_map(|s| {
                Some(PeerLink {
                    link: s.link,
                    transport: "udp".into(),
                    source: source_of(s.link)?,
                    destination: s.addr.ip(),
                    enabled: true,
                    connected: s.connected,
                    active: s.active,
                    priority: s.priority,
                    mtu: s.data_mtu.and_then(|m| u32::try_from(m).ok()).unwrap_or(0),
                    rtt: (s.rtt.samples > 0).then(|| RttStats {
                        min_us: micros(s.rtt.min),
                        avg_us: micros(s.rtt.avg),
                        max_us: micros(s.rtt.max),
                        p99_us: s.rtt_p99.map(micros).unwrap_or(0),
                    }),
                })
            })
            .collect();
        nodes.push(NodeLinks {
            id,
            name: name.clone(),
            local: id == info.local,
            reachable: id == info.local || links.iter().any(|l| l.connected),
            links,
        });
    }
    LinksStatus {
        local_node: info.local,
        transport: "knet".into(),
        link_mode: info.link_mode,
        local_links,
        nodes,
    }
}

fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
