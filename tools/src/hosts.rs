//! Host arguments: resolving names, and finding which listed host is this machine.
//!
//! Every host runs the same command listing all hosts (omping's model). We find ourselves among
//! them by local addresses (getifaddrs, plus all of 127.0.0.0/8 which the loopback device
//! answers): the first listed local address whose port is free is ours, so two instances on one
//! machine listing 127.0.0.1 and 127.0.0.2 take one each. `--local ADDR` forces the choice.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use thiserror::Error;

/// A host from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// As written by the user (printed in every line, as omping does).
    pub name: String,
    /// Resolved address with the port.
    pub addr: SocketAddr,
}

/// Address family restriction (`-4`, `-6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Family {
    /// Either; the first resolved address wins.
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// Why the host list is unusable.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("cannot resolve host {name:?}: {reason}")]
    Unresolved { name: String, reason: String },
    #[error("host {name:?} has no {family} address")]
    NoAddressOfFamily { name: String, family: &'static str },
    #[error("none of the listed hosts ({0}) is an address of this machine; list this host too or pass --local ADDR")]
    NotListed(String),
}

impl Family {
    fn accepts(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Family::Any => "IP",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Resolves `name` (an address or a DNS name) to one address of `family` on `port`.
pub fn resolve(name: &str, port: u16, family: Family) -> Result<Host, HostError> {
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| HostError::Unresolved {
            name: name.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    let addr = addrs.into_iter().find(|a| family.accepts(&a.ip())).ok_or(
        HostError::NoAddressOfFamily {
            name: name.to_string(),
            family: family.name(),
        },
    )?;
    Ok(Host {
        name: name.to_string(),
        addr,
    })
}

/// Parses `ADDR[:PORT]` (IPv6 as `[ADDR]:PORT`), using `default_port` when none is given.
pub fn parse_endpoint(text: &str, default_port: u16) -> Result<SocketAddr, HostError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => match p.parse::<u16>() {
            Ok(port) => (n, port),
            Err(_) => {
                return Err(HostError::Unresolved {
                    name: text.to_string(),
                    reason: format!("bad port {p:?}"),
                })
            }
        },
        _ => (
            text.trim_start_matches('[').trim_end_matches(']'),
            default_port,
        ),
    };
    resolve(name, port, Family::Any).map(|h| h.addr)
}

/// Addresses of this machine's interfaces.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() {
        for ifa in ifaddrs {
            let Some(addr) = ifa.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                out.push(IpAddr::V6(v6.ip()));
            }
        }
    }
    out
}

/// True when `ip` belongs to this machine (an interface address or any of 127.0.0.0/8).
pub fn is_local(ip: &IpAddr, locals: &[IpAddr]) -> bool {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => true,
        _ => locals.contains(ip),
    }
}

/// Indices of the hosts that are addresses of this machine, in command-line order.
pub fn local_candidates(hosts: &[Host], locals: &[IpAddr]) -> Vec<usize> {
    (0..hosts.len())
        .filter(|&i| is_local(&hosts[i].addr.ip(), locals))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("127.0.0.1:99", 1).ok(),
            "127.0.0.1:99".parse().ok()
        );
        assert_eq!(
            parse_endpoint("127.0.0.1", 7).ok(),
            "127.0.0.1:7".parse().ok()
        );
        assert_eq!(parse_endpoint("[::1]:5", 7).ok(), "[::1]:5".parse().ok());
        assert_eq!(parse_endpoint("::1", 7).ok(), "[::1]:7".parse().ok());
        assert!(parse_endpoint("127.0.0.1:x", 7).is_err());
    }

    #[test]
    fn loopback_range_is_local() {
        let hosts = vec![
            resolve("127.0.0.2", 1, Family::Any).unwrap(),
            resolve("192.0.2.1", 1, Family::Any).unwrap(),
        ];
        assert_eq!(local_candidates(&hosts, &[]), vec![0]);
        assert!(resolve("127.0.0.1", 1, Family::V6).is_err());
    }
}
