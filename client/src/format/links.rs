//! Link status views: `corosync-cfgtool -s` (per link, every node), `corosync-cfgtool -n` (per
//! reachable peer, every link) and `pvecm links`, the `-n` layout extended with what an operator
//! needs to pick and check links: priority, which link is active, RTT (`tools/corosync-cfgtool.c`).

use std::fmt::Write as _;

use crate::proto::{LinkMode, LinksStatus, NodeLinks, PeerLink, RttStats};

/// Microseconds per millisecond, for RTT figures printed in ms.
const MICROS_PER_MILLI: u32 = 1000;

/// `corosync-cfgtool -s`: each local link with the connection state of every node on it.
pub fn cfgtool_status(links: &LinksStatus) -> String {
    let mut out = local_node_line(links);
    for local in &links.local_links {
        let _ = writeln!(out, "LINK ID {} {}", local.link, local.transport);
        if local.transport == "sctp" {
            out.push_str("**SCTP is deprecated and will be removed in a future release\n");
        }
        let _ = writeln!(out, "\taddr\t= {}", local.address);
        out.push_str("\tstatus:\n");
        for node in &links.nodes {
            let state = if node.local {
                "localhost"
            } else if peer_link(node, local.link).is_some_and(|link| link.connected) {
                "connected"
            } else {
                "disconnected"
            };
            let _ = writeln!(out, "\t\tnodeid: {:>10}:\t{state}", node.id);
        }
    }
    out
}

/// `corosync-cfgtool -n`: every reachable peer with its enabled links.
pub fn cfgtool_nodes(links: &LinksStatus) -> String {
    let mut out = local_node_line(links);
    for node in links
        .nodes
        .iter()
        .filter(|node| !node.local && node.reachable)
    {
        let _ = writeln!(out, "nodeid: {} reachable", node.id);
        for link in node.links.iter().filter(|link| link.enabled) {
            let connected = if link.connected { " connected" } else { "" };
            let _ = writeln!(
                out,
                "   LINK: {} {} ({}->{}) enabled{connected} mtu: {}",
                link.link, link.transport, link.source, link.destination, link.mtu
            );
        }
        out.push('\n');
    }
    out
}

/// `pvecm links`: every peer, reachable or not, and each of its links with its state, priority,
/// whether it carries the traffic now, MTU and RTT (min/avg/max/p99 in ms).
///
/// ```text
/// Local node ID 1, transport knet, link mode passive (highest priority wins, ties go to the lowest link id)
/// nodeid: 2 (n2) reachable
///    LINK: 0 udp (10.0.0.1->10.0.0.2) enabled connected active priority: 20 mtu: 1397 rtt min/avg/max/p99: 0.041/0.077/0.312/0.250 ms
///    LINK: 1 udp (10.1.0.1->10.1.0.2) enabled connected priority: 10 mtu: 1397 rtt min/avg/max/p99: 0.043/0.080/0.298/0.261 ms
/// ```
pub fn pvecm_links(links: &LinksStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Local node ID {}, transport {}, link mode {} ({})",
        links.local_node,
        links.transport,
        links.link_mode.as_str(),
        link_mode_rule(links.link_mode)
    );
    for node in links.nodes.iter().filter(|node| !node.local) {
        let reachable = if node.reachable {
            "reachable"
        } else {
            "unreachable"
        };
        if node.name.is_empty() {
            let _ = writeln!(out, "nodeid: {} {reachable}", node.id);
        } else {
            let _ = writeln!(out, "nodeid: {} ({}) {reachable}", node.id, node.name);
        }
        for link in &node.links {
            out.push_str(&link_line(link));
        }
        out.push('\n');
    }
    out
}

/// The first line of every cfgtool view.
fn local_node_line(links: &LinksStatus) -> String {
    format!(
        "Local node ID {}, transport {}\n",
        links.local_node, links.transport
    )
}

/// How the mode picks links, said the way knet implements it (REFERENCE.md §1.1, §1.2).
fn link_mode_rule(mode: LinkMode) -> &'static str {
    match mode {
        LinkMode::Passive => "highest priority wins, ties go to the lowest link id",
        LinkMode::Active => "all connected links carry every packet",
        LinkMode::RoundRobin => "connected links take turns",
    }
}

/// The link of `node` with number `link`.
fn peer_link(node: &NodeLinks, link: u8) -> Option<&PeerLink> {
    node.links.iter().find(|peer| peer.link == link)
}

/// One `   LINK:` line of `pvecm links`.
fn link_line(link: &PeerLink) -> String {
    let mut line = format!(
        "   LINK: {} {} ({}->{}) {} {}",
        link.link,
        link.transport,
        link.source,
        link.destination,
        if link.enabled { "enabled" } else { "disabled" },
        if link.connected {
            "connected"
        } else {
            "disconnected"
        },
    );
    if link.active {
        line.push_str(" active");
    }
    let _ = write!(line, " priority: {} mtu: {}", link.priority, link.mtu);
    match link.rtt {
        Some(rtt) => {
            let _ = write!(line, " rtt min/avg/max/p99: {} ms", rtt_figures(rtt));
        }
        None => line.push_str(" rtt min/avg/max/p99: -"),
    }
    line.push('\n');
    line
}

/// `min/avg/max/p99` in milliseconds with microsecond precision.
fn rtt_figures(rtt: RttStats) -> String {
    [rtt.min_us, rtt.avg_us, rtt.max_us, rtt.p99_us]
        .map(millis)
        .join("/")
}

/// Microseconds as milliseconds with three decimals.
fn millis(micros: u32) -> String {
    format!(
        "{}.{:03}",
        micros / MICROS_PER_MILLI,
        micros % MICROS_PER_MILLI
    )
}
