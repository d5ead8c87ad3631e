//! Turning `ringN_addr` values into socket addresses once, at load, and finding the local node.
//!
//! Names are resolved following `totem.ip_version` as corosync does (corosync.conf.5
//! `ip_version`): `ipv4` and `ipv6` accept only that family; `ipv4-6` takes the first IPv4 address
//! the resolver returns, else the first IPv6; `ipv6-4` the reverse. IP literals never reach the
//! resolver. The resolver is a trait so tests run without DNS or /etc/hosts.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::model::{Config, ConfigError, IpVersion, Node};

/// Looks host names up. [`SystemResolver`] asks the system; tests use a table.
pub trait Resolver {
    /// Every address `host` resolves to, in the resolver's order.
    fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system's resolver (getaddrinfo through the standard library).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok((host, 0u16)
            .to_socket_addrs()?
            .map(|socket_addr| socket_addr.ip())
            .collect())
    }
}

/// One link of a resolved node: link number and where to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedLink {
    pub link: u8,
    pub addr: SocketAddr,
}

/// A nodelist entry with its addresses resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedNode {
    pub nodeid: u32,
    pub name: Option<String>,
    pub quorum_votes: u32,
    /// In link order.
    pub links: Vec<ResolvedLink>,
}

impl ResolvedNode {
    /// The name, or else the first address, for messages.
    pub fn label(&self) -> String {
        match (&self.name, self.links.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(link)) => link.addr.ip().to_string(),
            (None, None) => format!("nodeid {}", self.nodeid),
        }
    }
}

/// Picks the address `ip_version` prefers among `candidates`.
pub fn choose_address(candidates: &[IpAddr], ip_version: IpVersion) -> Option<IpAddr> {
    let first_v4 = candidates.iter().copied().find(IpAddr::is_ipv4);
    let first_v6 = candidates.iter().copied().find(IpAddr::is_ipv6);
    match ip_version {
        IpVersion::Ipv4 => first_v4,
        IpVersion::Ipv6 => first_v6,
        IpVersion::Ipv4Then6 => first_v4.or(first_v6),
        IpVersion::Ipv6Then4 => first_v6.or(first_v4),
    }
}

/// Resolves one address text (literal or name) under `ip_version`.
pub fn resolve_address(
    text: &str,
    ip_version: IpVersion,
    resolver: &dyn Resolver,
) -> Result<IpAddr, String> {
    let candidates = match text.parse::<IpAddr>() {
        Ok(literal) => vec![literal],
        Err(_) => resolver
            .lookup(text)
            .map_err(|error| format!("cannot resolve {text:?}: {error}"))?,
    };
    choose_address(&candidates, ip_version).ok_or_else(|| {
        if candidates.is_empty() {
            format!("{text:?} resolves to no address")
        } else {
            format!("{text:?} has no address allowed by ip_version {ip_version:?}")
        }
    })
}

/// Resolves every node's addresses and checks what needs IPs: one address family per link and no
/// address used twice on a link (`totemconfig.c`: "Nodes for link %d have different IP families").
pub fn resolve_nodes(
    config: &Config,
    resolver: &dyn Resolver,
) -> Result<Vec<ResolvedNode>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut nodes = Vec::with_capacity(config.nodes.len());
    for node in &config.nodes {
        match resolve_node(config, node, resolver) {
            Ok(resolved) => nodes.push(resolved),
            Err(mut node_errors) => errors.append(&mut node_errors),
        }
    }
    if errors.is_empty() {
        // Only when every node resolved, so `nodes` lines up with `config.nodes`.
        check_families_and_duplicates(config, &nodes, &mut errors);
    }
    if errors.is_empty() {
        Ok(nodes)
    } else {
        errors.sort_by_key(|error| error.pos);
        Err(errors)
    }
}

fn resolve_node(
    config: &Config,
    node: &Node,
    resolver: &dyn Resolver,
) -> Result<ResolvedNode, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut links = Vec::with_capacity(node.addrs.len());
    for addr in &node.addrs {
        match resolve_address(&addr.text, config.totem.ip_version, resolver) {
            Ok(ip) => links.push(ResolvedLink {
                link: addr.link,
                addr: SocketAddr::new(ip, config.interface(addr.link).port),
            }),
            Err(message) => errors.push(ConfigError::new(
                addr.pos,
                format!("node {} ring{}_addr: {message}", node.label(), addr.link),
            )),
        }
    }
    let Some(nodeid) = node.nodeid else {
        errors.push(ConfigError::new(
            node.pos,
            format!("node {} has no nodeid", node.label()),
        ));
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ResolvedNode {
        nodeid,
        name: node.name.clone(),
        quorum_votes: node.quorum_votes,
        links,
    })
}

fn check_families_and_duplicates(
    config: &Config,
    nodes: &[ResolvedNode],
    errors: &mut Vec<ConfigError>,
) {
    // (link) -> first node's address; (link, ip) -> first node using it.
    let mut first_on_link: BTreeMap<u8, IpAddr> = BTreeMap::new();
    let mut users: BTreeMap<(u8, IpAddr), String> = BTreeMap::new();
    for (resolved, node) in nodes.iter().zip(&config.nodes) {
        for link in &resolved.links {
            let pos = node
                .addr(link.link)
                .map(|addr| addr.pos)
                .unwrap_or(node.pos);
            let ip = link.addr.ip();
            let first = *first_on_link.entry(link.link).or_insert(ip);
            if first.is_ipv4() != ip.is_ipv4() {
                errors.push(ConfigError::new(
                    pos,
                    format!(
                        "Nodes for link {} have different IP families (compared {ip} with {first})",
                        link.link
                    ),
                ));
            }
            if let Some(other) = users.get(&(link.link, ip)) {
                errors.push(ConfigError::new(
                    pos,
                    format!(
                        "node {} and node {other} both use {ip} on link {}",
                        resolved.label(),
                        link.link
                    ),
                ));
            } else {
                users.insert((link.link, ip), resolved.label());
            }
        }
    }
}

/// Why the local node could not be chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalNodeError {
    #[error("no node named {0:?} in the nodelist")]
    NoSuchName(String),
    #[error("node {0:?} has no address on this host")]
    NameNotLocal(String),
    #[error("no nodelist entry has an address of this host (local addresses: {0})")]
    NoneLocal(String),
    #[error("several nodes have addresses of this host ({0}); choose one with --node NAME")]
    Ambiguous(String),
}

/// Finds this host's nodelist entry: the node named `wanted` (which must have a local address),
/// or else the only node with an address in `local_addrs`.
pub fn find_local_node<'a>(
    nodes: &'a [ResolvedNode],
    local_addrs: &[IpAddr],
    wanted: Option<&str>,
) -> Result<&'a ResolvedNode, LocalNodeError> {
    let is_local = |node: &ResolvedNode| {
        node.links
            .iter()
            .any(|link| local_addrs.contains(&link.addr.ip()))
    };
    if let Some(name) = wanted {
        let node = nodes
            .iter()
            .find(|node| node.name.as_deref() == Some(name))
            .ok_or_else(|| LocalNodeError::NoSuchName(name.to_owned()))?;
        return if is_local(node) {
            Ok(node)
        } else {
            Err(LocalNodeError::NameNotLocal(name.to_owned()))
        };
    }
    let local: Vec<&ResolvedNode> = nodes.iter().filter(|node| is_local(node)).collect();
    match local.as_slice() {
        [only] => Ok(only),
        [] => {
            let listed: Vec<String> = local_addrs.iter().map(ToString::to_string).collect();
            Err(LocalNodeError::NoneLocal(listed.join(", ")))
        }
        several => {
            let labels: Vec<String> = several.iter().map(|node| node.label()).collect();
            Err(LocalNodeError::Ambiguous(labels.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A resolver from a fixed table.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolver for Table {
        fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
            self.0
                .get(host)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))
        }
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

    #[test]
    fn preference_follows_ip_version() {
        let both = [V6, V4];
        assert_eq!(choose_address(&both, IpVersion::Ipv4Then6), Some(V4));
        assert_eq!(choose_address(&both, IpVersion::Ipv6Then4), Some(V6));
        assert_eq!(choose_address(&[V4], IpVersion::Ipv6Then4), Some(V4));
        assert_eq!(choose_address(&[V4], IpVersion::Ipv6), None);
    }

    #[test]
    fn literals_skip_the_resolver_and_names_use_it() {
        let table = Table(HashMap::from([("pve1", vec![V6, V4])]));
        assert_eq!(
            resolve_address("192.0.2.7", IpVersion::Ipv6Then4, &table),
            Ok("192.0.2.7".parse().expect("ip"))
        );
        assert_eq!(
            resolve_address("pve1", IpVersion::Ipv4Then6, &table),
            Ok(V4)
        );
        assert!(resolve_address("::1", IpVersion::Ipv4, &table).is_err());
        assert!(resolve_address("nowhere", IpVersion::Ipv4, &table).is_err());
    }

    fn node(name: &str, nodeid: u32, ip: &str) -> ResolvedNode {
        ResolvedNode {
            nodeid,
            name: Some(name.into()),
            quorum_votes: 1,
            links: vec![ResolvedLink {
                link: 0,
                addr: SocketAddr::new(ip.parse().expect("ip"), 5405),
            }],
        }
    }

    #[test]
    fn local_node_selection() {
        let nodes = [
            node("a", 1, "127.0.0.1"),
            node("b", 2, "127.0.0.2"),
            node("c", 3, "10.9.9.9"),
        ];
        let one: [IpAddr; 1] = ["127.0.0.2".parse().expect("ip")];
        assert_eq!(find_local_node(&nodes, &one, None).map(|n| n.nodeid), Ok(2));
        let two: [IpAddr; 2] = [
            "127.0.0.1".parse().expect("ip"),
            "127.0.0.2".parse().expect("ip"),
        ];
        assert!(matches!(
            find_local_node(&nodes, &two, None),
            Err(LocalNodeError::Ambiguous(_))
        ));
        assert_eq!(
            find_local_node(&nodes, &two, Some("a")).map(|n| n.nodeid),
            Ok(1)
        );
        assert_eq!(
            find_local_node(&nodes, &two, Some("c")),
            Err(LocalNodeError::NameNotLocal("c".into()))
        );
        assert_eq!(
            find_local_node(&nodes, &two, Some("zz")),
            Err(LocalNodeError::NoSuchName("zz".into()))
        );
        assert!(matches!(
            find_local_node(&nodes, &[], None),
            Err(LocalNodeError::NoneLocal(_))
        ));
    }
}
