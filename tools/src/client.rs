//! Client-side plumbing shared by totem-pps and totem-latency: binding next to the server's
//! family, and request/reply exchanges with retries and a clear error when nobody answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::link::{Event, Link, LinkConfig, LinkError, Rejection};
use crate::wire::Body;

/// Period between retries of a control request.
pub const CONTROL_RETRY: Duration = Duration::from_millis(200);
/// How long a control exchange waits for the server.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a client run failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("no server answered at {0} within {t:?} (not running? firewall? other version or --encrypt/--key? see the server's output)", t = CONTROL_TIMEOUT)]
    NoAnswer(SocketAddr),
    #[error("nothing listens at {0} (ICMP port/host unreachable)")]
    Unreachable(SocketAddr),
    #[error("the server at {addr} answers but its datagrams are dropped: {reason}")]
    Rejected { addr: SocketAddr, reason: Rejection },
    #[error("{0}")]
    BadInput(String),
    #[error("cannot write a file or the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Binds an ephemeral port of the server's family (loopback servers get a loopback client).
pub fn open_client(server: SocketAddr, config: &LinkConfig) -> Result<Link, ClientError> {
    let ip: IpAddr = match server.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    Ok(Link::open(SocketAddr::new(ip, 0), config)?)
}

/// Sends `request` to `server` every [`CONTROL_RETRY`] until `accept` takes a reply, for at most
/// [`CONTROL_TIMEOUT`]. Other datagrams are ignored.
pub fn exchange<T>(
    link: &mut Link,
    server: SocketAddr,
    request: &Body,
    pad_to: usize,
    mut accept: impl FnMut(&Body) -> Option<T>,
) -> Result<T, ClientError> {
    let give_up = Instant::now() + CONTROL_TIMEOUT;
    let mut unreachable = false;
    let mut rejected = None;
    while Instant::now() < give_up {
        link.queue(server, request, pad_to)?;
        link.flush()?;
        let retry_at = (Instant::now() + CONTROL_RETRY).min(give_up);
        let mut got = None;
        while got.is_none() && Instant::now() < retry_at {
            link.recv(Some(retry_at), |event| match event {
                Event::Message { from, body, .. } if from == server && got.is_none() => {
                    got = accept(&body);
                }
                Event::Rejected { from, reason } if from == server => rejected = Some(reason),
                Event::PathError(e) if e.dest == server && e.is_unreachable() => unreachable = true,
                _ => {}
            })?;
        }
        if let Some(value) = got {
            return Ok(value);
        }
        if let Some(reason) = rejected {
            return Err(ClientError::Rejected {
                addr: server,
                reason,
            });
        }
    }
    if unreachable {
        Err(ClientError::Unreachable(server))
    } else {
        Err(ClientError::NoAnswer(server))
    }
}
