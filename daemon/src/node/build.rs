//! Turns a loaded corosync.conf into the settings of each part: the link set (transport), the
//! Totem core and votequorum. Pure: no socket is opened here.

use std::net::SocketAddr;
use std::time::Duration;

use totem_core::quorum::{AutoTieBreaker, NodeConfig, QdeviceConfig, QuorumConfig};
use totem_core::totem::config::{MAX_PAYLOAD_BYTES_MAX, MAX_PAYLOAD_BYTES_MIN};
use totem_core::totem::TotemConfig;
use totem_transport::heartbeat::{HeartbeatConfig, KnetTimerOverrides};
use totem_transport::linkset::{LinkConfig, LinkSetConfig, PeerConfig};
use totem_transport::policy::LinkMode as TransportLinkMode;
use totem_transport::wire::MAX_FRAME_OVERHEAD;

use crate::config::model::{LinkMode, TieBreaker};
use crate::config::{Config, ResolvedNode};

/// Why a valid corosync.conf cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The local node has no address on a configured link.
    #[error("local node {node} has no address for link {link}")]
    NoLocalAddress {
        /// Local node id.
        node: u32,
        /// Link number.
        link: u8,
    },
    /// A heartbeat setting is unusable.
    #[error("link {link}: {detail}")]
    Heartbeat {
        /// Link number.
        link: u8,
        /// What is wrong.
        detail: String,
    },
}

/// The runtime token (token + coefficient for ≥ 3 nodes), as corosync exports it in
/// `runtime.config.totem.token`.
pub fn runtime_token_ms(config: &Config, node_count: usize) -> u32 {
    config.totem.timings(node_count).token_ms
}

/// The link set's settings: one link per configured interface (link 0 when none is written),
/// every other node as a peer with its address on each link.
pub fn link_set_config(
    config: &Config,
    nodes: &[ResolvedNode],
    local: &ResolvedNode,
    cluster_name: &str,
) -> Result<LinkSetConfig, BuildError> {
    let mut out = LinkSetConfig::new(local.nodeid, cluster_name);
    let token = Duration::from_millis(u64::from(runtime_token_ms(config, nodes.len())));
    out.mode = match config.totem.link_mode {
        LinkMode::Passive => TransportLinkMode::Passive,
        LinkMode::Active => TransportLinkMode::Active,
        LinkMode::RoundRobin => TransportLinkMode::RoundRobin,
    };
    out.heartbeat = heartbeat_for(config, 0, token)?;
    let mut link_numbers: Vec<u8> = local.links.iter().map(|l| l.link).collect();
    link_numbers.sort_unstable();
    for link in link_numbers {
        let iface = config.interface(link);
        let addr = local
            .links
            .iter()
            .find(|l| l.link == link)
            .ok_or(BuildError::NoLocalAddress {
                node: local.nodeid,
                link,
            })?
            .addr;
        out.links.push(LinkConfig {
            link,
            bind: SocketAddr::new(addr.ip(), iface.port),
            priority: iface.knet_link_priority,
            heartbeat: Some(heartbeat_for(config, link, token)?),
            cpu: None,
        });
    }
    out.peers = peers(config, nodes, local.nodeid);
    if config.totem.netmtu > 0 {
        out.mtu = usize::try_from(config.totem.netmtu).unwrap_or(out.mtu);
    }
    Ok(out)
}

/// Every node but `local`, with its address (at the link's port) on each link it has.
pub fn peers(config: &Config, nodes: &[ResolvedNode], local: u32) -> Vec<PeerConfig> {
    nodes
        .iter()
        .filter(|n| n.nodeid != local)
        .map(|n| PeerConfig {
            node_id: n.nodeid,
            addrs: n
                .links
                .iter()
                .map(|l| {
                    let port = config.interface(l.link).port;
                    (l.link, SocketAddr::new(l.addr.ip(), port))
                })
                .collect(),
        })
        .collect()
}

fn heartbeat_for(
    config: &Config,
    link: u8,
    token: Duration,
) -> Result<HeartbeatConfig, BuildError> {
    let iface = config.interface(link);
    let overrides = KnetTimerOverrides {
        ping_interval: iface
            .knet_ping_interval_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        ping_timeout: iface
            .knet_ping_timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        pong_count: u8::try_from(iface.knet_pong_count).ok(),
    };
    HeartbeatConfig::from_token(token, &overrides).map_err(|e| BuildError::Heartbeat {
        link,
        detail: e.to_string(),
    })
}

/// Totem's settings from the `totem` section, with the nodelist for the token coefficient.
pub fn totem_config(config: &Config, nodes: &[ResolvedNode]) -> TotemConfig {
    let t = &config.totem;
    let mut out = TotemConfig::for_nodes(&nodes.iter().map(|n| n.nodeid).collect::<Vec<_>>());
    out.token_ms = u64::from(t.token_ms);
    out.token_coefficient_ms = u64::from(t.token_coefficient_ms);
    out.token_retransmits_before_loss_const = t.token_retransmits_before_loss_const;
    out.token_retransmit_ms = t.token_retransmit_ms.map(u64::from);
    out.hold_ms = t.hold_ms.map(u64::from);
    out.token_warning_percent = t.token_warning_percent;
    out.join_ms = u64::from(t.join_ms);
    out.send_join_ms = u64::from(t.send_join_ms);
    out.consensus_ms = t.consensus_ms.map(u64::from);
    out.merge_ms = u64::from(t.merge_ms);
    out.downcheck_ms = u64::from(t.downcheck_ms);
    out.fail_recv_const = t.fail_recv_const;
    out.seqno_unchanged_const = t.seqno_unchanged_const;
    out.miss_count_const = t.miss_count_const;
    out.heartbeat_failures_allowed = t.heartbeat_failures_allowed;
    out.max_network_delay_ms = u64::from(t.max_network_delay_ms);
    out.cancel_token_hold_on_retransmit = t.cancel_token_hold_on_retransmit;
    out.window_size = t.window_size;
    out.max_messages = t.max_messages;
    out.max_payload_bytes = totem_packet_bytes(t.netmtu_effective());
    out
}

/// Totem's packet size for a `netmtu`. corosync with knet takes `netmtu` (65536 when unset,
/// `totemconfig.c`) as the size of a Totem packet and lets knet fragment it; so does totemd: the
/// transport fragments a packet into datagrams of the path MTU. The transport's worst-case
/// overhead (IPv6 + UDP + frame header + tag) is taken off, so `netmtu: 1500` gives packets that
/// fit one Ethernet frame, and the result is clamped to what the core accepts (at most
/// corosync's `TOKEN_SIZE_MAX`, 64000 bytes).
pub fn totem_packet_bytes(netmtu: u32) -> usize {
    usize::try_from(netmtu)
        .unwrap_or(usize::MAX)
        .saturating_sub(MAX_FRAME_OVERHEAD)
        .clamp(MAX_PAYLOAD_BYTES_MIN, MAX_PAYLOAD_BYTES_MAX)
}

/// votequorum's settings from the `quorum` section and the nodelist.
pub fn quorum_config(config: &Config, nodes: &[ResolvedNode], local: u32) -> QuorumConfig {
    let q = &config.quorum;
    let mut out = QuorumConfig::simple(local, 0);
    out.nodes = nodes
        .iter()
        .map(|n| NodeConfig {
            node_id: n.nodeid,
            votes: n.quorum_votes,
            name: n.label(),
        })
        .collect();
    out.expected_votes = q.expected_votes;
    out.two_node = q.two_node;
    out.wait_for_all = q.wait_for_all;
    out.last_man_standing = q.last_man_standing;
    out.last_man_standing_window_ms = u64::from(q.last_man_standing_window_ms);
    out.auto_tie_breaker = q.auto_tie_breaker.then(|| match &q.auto_tie_breaker_node {
        TieBreaker::Lowest => AutoTieBreaker::Lowest,
        TieBreaker::Highest => AutoTieBreaker::Highest,
        TieBreaker::List(ids) => AutoTieBreaker::List(ids.clone()),
    });
    out.allow_downscale = q.allow_downscale;
    out.qdevice = q.device.as_ref().map(|d| {
        let mut qd = QdeviceConfig {
            votes: d.votes,
            ..QdeviceConfig::default()
        };
        if let Some(ms) = d.timeout_ms {
            qd.timeout_ms = u64::from(ms);
        }
        if let Some(ms) = d.sync_timeout_ms {
            qd.sync_timeout_ms = u64::from(ms);
        }
        qd
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_size_follows_netmtu_like_corosync_with_knet() {
        // Unset netmtu: knet's 65536, clamped to the core's (corosync's) 64000.
        assert_eq!(totem_packet_bytes(65_536), MAX_PAYLOAD_BYTES_MAX);
        // netmtu 1500: a packet that fits one Ethernet frame after IPv6, UDP, header and tag.
        assert_eq!(totem_packet_bytes(1500), 1388);
        assert_eq!(
            totem_packet_bytes(1500),
            totem_core::totem::config::MAX_PAYLOAD_BYTES_DEFAULT
        );
        // Nonsense stays inside what the core accepts.
        assert_eq!(totem_packet_bytes(0), MAX_PAYLOAD_BYTES_MIN);
        assert_eq!(totem_packet_bytes(u32::MAX), MAX_PAYLOAD_BYTES_MAX);
    }

    #[test]
    fn the_core_accepts_the_daemon_packet_size() {
        let mut config = TotemConfig::for_nodes(&[1, 2, 3]);
        for netmtu in [0, 576, 1500, 9000, 65_536, u32::MAX] {
            config.max_payload_bytes = totem_packet_bytes(netmtu);
            assert!(config.validate().is_ok(), "netmtu {netmtu}");
        }
    }
}
