//! Multicast for totem-ping (`-m`, `-M asm`): the group (omping's defaults and checks), the
//! interface that carries the local address, and the socket options omping sets (omping
//! `sockfunc.c`): on the unicast socket the outgoing multicast interface, TTL and loop; on the
//! socket bound to the group the membership (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP) on that
//! interface. Options go through the descriptor of the transport's [`totem_transport::io::LinkIo`]
//! ([`AsFd`]), so both I/O backends carry multicast the same way.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;

use socket2::SockRef;
use thiserror::Error;

/// omping's default IPv4 group (`DEFAULT_MCAST4_ADDR` in omping.h).
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(232, 43, 211, 234);
/// omping's default IPv6 group (`DEFAULT_MCAST6_ADDR` "ff3e::4321:1234" in omping.h).
pub const DEFAULT_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x4321, 0x1234);
/// IPv6 multicast scope nibble of link-local groups (RFC 4291 §2.7): binding and sending need the
/// interface as scope id.
const IPV6_SCOPE_LINK_LOCAL: u16 = 0x2;

/// Why multicast cannot be set up.
#[derive(Debug, Error)]
pub enum McastError {
    #[error("-m {0}: not a multicast address (IPv4 224.0.0.0/4 or IPv6 ff00::/8)")]
    NotMulticast(String),
    #[error("cannot resolve the multicast address {name:?}: {reason}")]
    Unresolved { name: String, reason: String },
    #[error("multicast address {group} is IPv{group_version} but host {host:?} has no IPv{group_version} address")]
    HostFamily {
        group: IpAddr,
        group_version: u8,
        host: String,
    },
    #[error(
        "cannot find the network interface that carries {0} (multicast is joined and sent there)"
    )]
    NoInterface(IpAddr),
    #[error("cannot bind the multicast socket to {addr}: address already in use (another totem-ping -m or omping on this port?)")]
    BindInUse { addr: SocketAddr },
    #[error("cannot bind the multicast socket to {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot join multicast group {group} on {interface} ({local}): {source}{hint}", hint = join_hint(source))]
    Join {
        group: IpAddr,
        interface: String,
        local: IpAddr,
        source: io::Error,
    },
    #[error("cannot set {what} on the unicast socket: {source}")]
    SocketOption {
        what: &'static str,
        source: io::Error,
    },
}

/// What usually causes a refused join, as a suffix of the error message.
fn join_hint(e: &io::Error) -> &'static str {
    use nix::errno::Errno;
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOBUFS) => {
            " (a kernel limit of group memberships is reached, e.g. net.ipv4.igmp_max_memberships)"
        }
        Some(Errno::ENODEV) => " (the interface is gone or down)",
        _ => "",
    }
}

/// A network interface: its name and index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Name, e.g. `eth0`.
    pub name: String,
    /// Index (`if_nametoindex`).
    pub index: u32,
}

/// IP version number of an address, for messages.
pub fn version(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

/// omping's default group of the family of `local`.
pub fn default_group(local: IpAddr) -> IpAddr {
    match local {
        IpAddr::V4(_) => IpAddr::V4(DEFAULT_GROUP_V4),
        IpAddr::V6(_) => IpAddr::V6(DEFAULT_GROUP_V6),
    }
}

/// Accepts `ip` as a group when it is a multicast address (omping: "is not valid multicast address").
pub fn check_group(text: &str, ip: IpAddr) -> Result<IpAddr, McastError> {
    if ip.is_multicast() {
        Ok(ip)
    } else {
        Err(McastError::NotMulticast(text.to_string()))
    }
}

/// Resolves `-m` (an address, or a name resolving to one) and checks it is multicast. `want_v6`
/// restricts the family (`Some(false)`: IPv4 only).
pub fn resolve_group(text: &str, want_v6: Option<bool>) -> Result<IpAddr, McastError> {
    let trimmed = text.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return check_group(text, ip);
    }
    let found = std::net::ToSocketAddrs::to_socket_addrs(&(trimmed, 0))
        .map_err(|e| McastError::Unresolved {
            name: text.to_string(),
            reason: e.to_string(),
        })?
        .map(|a| a.ip())
        .find(|ip| want_v6.map_or(true, |v6| ip.is_ipv6() == v6))
        .ok_or_else(|| McastError::Unresolved {
            name: text.to_string(),
            reason: "no address of the requested family".to_string(),
        })?;
    check_group(text, found)
}

/// The interface that carries `local` (omping joins and sends multicast there). A 127/8 address
/// that no interface lists (the loopback device answers the whole range) maps to the interface of
/// 127.0.0.1.
pub fn interface_of(local: IpAddr) -> Result<Interface, McastError> {
    let ifaddrs = nix::ifaddrs::getifaddrs().map_err(|_| McastError::NoInterface(local))?;
    let mut exact = None;
    let mut loopback = None;
    for ifa in ifaddrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip == local {
            exact = Some(ifa.interface_name);
            break;
        }
        if ip == IpAddr::V4(Ipv4Addr::LOCALHOST) {
            loopback = Some(ifa.interface_name);
        }
    }
    let name = match (exact, local) {
        (Some(name), _) => name,
        (None, IpAddr::V4(v4)) if v4.is_loopback() => {
            loopback.ok_or(McastError::NoInterface(local))?
        }
        _ => return Err(McastError::NoInterface(local)),
    };
    let index =
        nix::net::if_::if_nametoindex(name.as_str()).map_err(|_| McastError::NoInterface(local))?;
    Ok(Interface { name, index })
}

/// The group's socket address on `port`: what the receiving socket binds and answers are sent to.
/// A link-local-scope IPv6 group (ff?2::) carries the interface as scope id.
pub fn group_endpoint(group: IpAddr, port: u16, interface: &Interface) -> SocketAddr {
    match group {
        IpAddr::V4(g) => SocketAddr::from((g, port)),
        IpAddr::V6(g) => {
            let scope = if g.segments()[0] & 0x000f == IPV6_SCOPE_LINK_LOCAL {
                interface.index
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(g, port, 0, scope))
        }
    }
}

/// Sets the TTL / hop limit of unicast packets (omping applies `-t` to its unicast socket too).
pub fn set_unicast_ttl(socket: &impl AsFd, local: IpAddr, ttl: u32) -> Result<(), McastError> {
    let sock = SockRef::from(socket);
    let (what, result) = match local {
        IpAddr::V4(_) => ("IP_TTL", sock.set_ttl_v4(ttl)),
        IpAddr::V6(_) => ("IPV6_UNICAST_HOPS", sock.set_unicast_hops_v6(ttl)),
    };
    result.map_err(|source| McastError::SocketOption { what, source })
}

/// Prepares the unicast socket to send multicast answers as omping does: outgoing interface =
/// the one carrying `local`, multicast TTL / hop limit `ttl`, and loop-back of our own multicast
/// off (omping enables it only when it pings itself alone).
pub fn configure_sender(
    socket: &impl AsFd,
    local: IpAddr,
    interface: &Interface,
    ttl: u32,
) -> Result<(), McastError> {
    let sock = SockRef::from(socket);
    let opt = |what: &'static str, r: io::Result<()>| {
        r.map_err(|source| McastError::SocketOption { what, source })
    };
    match local {
        IpAddr::V4(addr) => {
            opt("IP_MULTICAST_IF", sock.set_multicast_if_v4(&addr))?;
            opt("IP_MULTICAST_TTL", sock.set_multicast_ttl_v4(ttl))?;
            opt("IP_MULTICAST_LOOP", sock.set_multicast_loop_v4(false))?;
        }
        IpAddr::V6(_) => {
            opt(
                "IPV6_MULTICAST_IF",
                sock.set_multicast_if_v6(interface.index),
            )?;
            opt("IPV6_MULTICAST_HOPS", sock.set_multicast_hops_v6(ttl))?;
            opt("IPV6_MULTICAST_LOOP", sock.set_multicast_loop_v6(false))?;
        }
    }
    Ok(())
}

/// Joins `group` (any-source) on `interface` (IPv4: by the local address, as omping's
/// `imr_interface`; IPv6: by index).
pub fn join(
    socket: &impl AsFd,
    group: IpAddr,
    local: IpAddr,
    interface: &Interface,
) -> Result<(), McastError> {
    let sock = SockRef::from(socket);
    let result = match (group, local) {
        (IpAddr::V4(g), IpAddr::V4(l)) => sock.join_multicast_v4(&g, &l),
        (IpAddr::V6(g), IpAddr::V6(_)) => sock.join_multicast_v6(&g, interface.index),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the group and the local address are of different IP versions",
        )),
    };
    result.map_err(|source| McastError::Join {
        group,
        interface: interface.name.clone(),
        local,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_checked_and_defaulted_like_omping() {
        assert_eq!(
            resolve_group("232.43.211.234", None).unwrap(),
            IpAddr::V4(DEFAULT_GROUP_V4)
        );
        assert_eq!(
            resolve_group("ff3e::4321:1234", None).unwrap(),
            IpAddr::V6(DEFAULT_GROUP_V6)
        );
        assert_eq!(
            resolve_group("[ff02::1]", None).unwrap(),
            "ff02::1".parse::<IpAddr>().unwrap()
        );
        let err = resolve_group("10.0.0.1", None).unwrap_err().to_string();
        assert!(err.contains("not a multicast address"), "{err}");
        assert!(resolve_group("fe80::1", None).is_err());
        assert_eq!(
            default_group("10.0.0.1".parse().unwrap()).to_string(),
            "232.43.211.234"
        );
        assert_eq!(
            default_group("fd00::1".parse().unwrap()).to_string(),
            "ff3e::4321:1234"
        );
    }

    #[test]
    fn link_local_scope_groups_carry_the_interface() {
        let iface = Interface {
            name: "eth7".into(),
            index: 7,
        };
        match group_endpoint("ff02::1:2".parse().unwrap(), 4321, &iface) {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 7),
            other => panic!("{other}"),
        }
        match group_endpoint(IpAddr::V6(DEFAULT_GROUP_V6), 4321, &iface) {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 0),
            other => panic!("{other}"),
        }
        assert_eq!(
            group_endpoint(IpAddr::V4(DEFAULT_GROUP_V4), 1, &iface).to_string(),
            "232.43.211.234:1"
        );
    }

    #[test]
    fn loopback_has_an_interface() {
        let lo = interface_of("127.0.0.1".parse().unwrap()).unwrap();
        assert!(lo.index > 0);
        assert_eq!(interface_of("127.0.0.77".parse().unwrap()).unwrap(), lo);
        assert!(interface_of("192.0.2.77".parse().unwrap()).is_err());
    }
}
