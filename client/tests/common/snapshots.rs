//! The snapshots of the three reference states captured from corosync 3.1.7 on three nodes
//! (`shared/reference/corosync-3.1.7/`): all up, node 3 killed, nodes 2 and 3 killed; seen from
//! node 1, two knet links (10.77.0.0/24 and 10.78.0.0/24).

use std::net::{IpAddr, Ipv4Addr};

use totem_client::proto::{
    ClusterInfo, LinkMode, LinksStatus, LocalLink, MemberNode, Membership, NodeLinks, PeerLink,
    QuorumFlags, QuorumStatus, RingId, RttStats,
};

/// One captured cluster state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `3nodes-up`: ring 1.d, quorate.
    AllUp,
    /// `2of3-n3-killed`: ring 1.11, quorate with 2 of 3 votes.
    ThirdKilled,
    /// `1of3-inquorate`: ring 1.15, 1 of 3 votes, activity blocked.
    Alone,
}

impl State {
    /// Every state, with the prefix of its reference files.
    pub const ALL: [(State, &'static str); 3] = [
        (State::AllUp, "3nodes-up"),
        (State::ThirdKilled, "2of3-n3-killed"),
        (State::Alone, "1of3-inquorate"),
    ];

    /// Nodes alive, node 1 first.
    fn alive(self) -> u32 {
        match self {
            State::AllUp => 3,
            State::ThirdKilled => 2,
            State::Alone => 1,
        }
    }

    /// `Date:` of the `-s` capture, seconds after 16:00:00 on 2026-11-26.
    pub fn capture_second(self) -> u32 {
        match self {
            State::AllUp => 1,
            State::ThirdKilled => 15,
            State::Alone => 24,
        }
    }

    /// The exit status corosync-quorumtool -s had.
    pub fn status_exit_code(self) -> u8 {
        match self {
            State::AllUp | State::ThirdKilled => 0,
            State::Alone => 2,
        }
    }
}

/// Address of node `id` on link `link`: 10.77.0.id on link 0, 10.78.0.id on link 1.
pub fn address(link: u8, id: u32) -> IpAddr {
    let last = u8::try_from(id).expect("test node ids are small");
    IpAddr::V4(Ipv4Addr::new(10, 77 + link, 0, last))
}

/// The membership of `state`.
pub fn membership(state: State) -> Membership {
    Membership {
        nodes: (1..=state.alive())
            .map(|id| MemberNode {
                id,
                name: format!("n{id}"),
                addresses: vec![address(0, id), address(1, id)],
                votes: 1,
                qdevice_flags: QuorumFlags::default(),
                local: id == 1,
            })
            .collect(),
        qdevice: None,
    }
}

/// The quorum status of `state`.
pub fn quorum_status(state: State) -> QuorumStatus {
    let (seq, quorate) = match state {
        State::AllUp => (0xd, true),
        State::ThirdKilled => (0x11, true),
        State::Alone => (0x15, false),
    };
    QuorumStatus {
        cluster: ClusterInfo {
            name: Some("demo".to_owned()),
            config_version: Some(3),
            transport: Some("knet".to_owned()),
            secauth: Some("on".to_owned()),
        },
        provider: Some("corosync_votequorum".to_owned()),
        local_node: 1,
        ring_id: RingId { rep: 1, seq },
        quorate,
        expected_votes: 3,
        highest_expected: 3,
        total_votes: state.alive(),
        quorum: 2,
        flags: if quorate {
            QuorumFlags::QUORATE
        } else {
            QuorumFlags::default()
        },
        membership: membership(state),
    }
}

/// The link status of `state`: link 0 (priority 20) active towards every reachable peer.
pub fn links_status(state: State) -> LinksStatus {
    let nodes = (1..=3)
        .map(|id| {
            let up = id <= state.alive();
            let links = if id == 1 {
                Vec::new()
            } else {
                (0..2u8)
                    .map(|link| PeerLink {
                        link,
                        transport: "udp".to_owned(),
                        source: address(link, 1),
                        destination: address(link, id),
                        enabled: true,
                        connected: up,
                        active: up && link == 0,
                        priority: if link == 0 { 20 } else { 10 },
                        mtu: 1397,
                        rtt: up.then_some(RttStats {
                            min_us: 41 + u32::from(link),
                            avg_us: 77,
                            max_us: 1312,
                            p99_us: 250,
                        }),
                    })
                    .collect()
            };
            NodeLinks {
                id,
                name: format!("n{id}"),
                local: id == 1,
                reachable: id == 1 || up,
                links,
            }
        })
        .collect();
    LinksStatus {
        local_node: 1,
        transport: "knet".to_owned(),
        link_mode: LinkMode::Passive,
        local_links: (0..2u8)
            .map(|link| LocalLink {
                link,
                transport: "udp".to_owned(),
                address: address(link, 1),
            })
            .collect(),
        nodes,
    }
}
