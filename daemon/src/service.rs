//! The envelope of every message the daemons order through Totem: one byte names the service
//! that owns the rest, so process groups, votequorum and configuration commits share one ring.
//!
//! ```text
//! service u8 (1 = process groups, 2 = votequorum, 3 = configuration) | body
//! ```

use thiserror::Error;

/// Which daemon service a Totem message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Closed process groups ([`crate::cpg`]).
    ProcessGroups = 1,
    /// votequorum node state and reconfiguration ([`totem_core::quorum`]).
    Votequorum = 2,
    /// A new corosync.conf committed cluster-wide.
    Configuration = 3,
}

/// A Totem payload that names no known service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// The payload is empty.
    #[error("empty service message")]
    Empty,
    /// The first byte names no service.
    #[error("unknown service {0}")]
    UnknownService(u8),
}

/// Prefixes `body` with its service byte.
pub fn wrap(service: Service, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(service as u8);
    out.extend_from_slice(body);
    out
}

/// Splits a delivered payload into its service and body.
pub fn unwrap(payload: &[u8]) -> Result<(Service, &[u8]), EnvelopeError> {
    let (&first, body) = payload.split_first().ok_or(EnvelopeError::Empty)?;
    let service = match first {
        1 => Service::ProcessGroups,
        2 => Service::Votequorum,
        3 => Service::Configuration,
        other => return Err(EnvelopeError::UnknownService(other)),
    };
    Ok((service, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        for s in [
            Service::ProcessGroups,
            Service::Votequorum,
            Service::Configuration,
        ] {
            let w = wrap(s, b"abc");
            assert_eq!(unwrap(&w), Ok((s, &b"abc"[..])));
        }
        assert_eq!(unwrap(&[]), Err(EnvelopeError::Empty));
        assert_eq!(unwrap(&[0, 1]), Err(EnvelopeError::UnknownService(0)));
    }
}
