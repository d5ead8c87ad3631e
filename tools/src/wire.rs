//! The tools' datagram format: a 16-byte header and one small body per message kind.
//!
//! Our peers talk to each other, not to real omping: the phases are omping's (init → response →
//! queries, REFERENCE.md §6) but the bytes are ours. All integers are big-endian.
//!
//! ```text
//! 0..4   magic "TTNT"
//! 4      protocol version (PROTOCOL_VERSION)
//! 5      kind
//! 6      flags (bit 0: the body is sealed with AES-256-GCM, see link.rs)
//! 7      reserved, 0
//! 8..16  session: the sender's random run id
//! 16..   body (kind-specific), then zero padding up to the requested datagram size
//! ```
//!
//! A multicast group in a body (totem-ping's `-m`, in init and response) is one family byte
//! (0: none, 4: IPv4, 6: IPv6) followed by 0, 4 or 16 address bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Bytes that open every datagram of the tools.
pub const MAGIC: [u8; 4] = *b"TTNT";
/// Version of this format; a peer with another value gets a clear "different version" message.
/// Version 2 added the multicast group to init and response, and seals with per-sender keys.
pub const PROTOCOL_VERSION: u8 = 2;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Flag bit: the body is sealed (AES-256-GCM).
pub const FLAG_SEALED: u8 = 0x01;
/// Largest UDP payload over IPv4 (65535 − 20 IP − 8 UDP).
pub const MAX_DATAGRAM_LEN: usize = 65_507;

/// The fixed part of every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message kind byte.
    pub kind: u8,
    /// Flags byte ([`FLAG_SEALED`]).
    pub flags: u8,
    /// The sender's run id.
    pub session: u64,
}

/// What the server of totem-pps measured, sent back to the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsReport {
    /// Data datagrams received (and authenticated) during the run.
    pub received: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Microseconds from the first to the last data datagram.
    pub elapsed_us: u64,
    /// User CPU microseconds the server spent during the run.
    pub cpu_user_us: u64,
    /// System CPU microseconds the server spent during the run.
    pub cpu_sys_us: u64,
    /// Datagrams that failed authentication or decoding.
    pub rejected: u64,
    /// The server's I/O backend (0 io_uring, 1 mmsg).
    pub io: u8,
    /// The server's receive batch size.
    pub batch: u32,
}

/// One message of the tools' protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// "I want to ping you": omping's init request.
    Init {
        /// totem-ping: the multicast group the sender listens on for answers (`-m`), if any.
        group: Option<IpAddr>,
    },
    /// Answer to an [`Body::Init`] of session `to`.
    Response {
        /// Session of the initiator.
        to: u64,
        /// totem-ping: the group the responder multicasts its answers to, if any.
        group: Option<IpAddr>,
    },
    /// A timed query (totem-ping, totem-latency).
    Query {
        /// Sequence number, from 1.
        seq: u32,
        /// The sender's monotonic clock at send time, ns.
        sent_ns: u64,
    },
    /// The echo of a [`Body::Query`] of session `to`.
    Answer {
        /// Session of the querier.
        to: u64,
        /// Echoed sequence number.
        seq: u32,
        /// Echoed send time.
        sent_ns: u64,
    },
    /// The sender finished its queries and stops ("server told us to stop").
    Done,
    /// totem-pps: start a run of `duration_ms` with datagrams of `size` bytes.
    PpsStart {
        /// Datagram size in bytes.
        size: u32,
        /// Run length in milliseconds.
        duration_ms: u32,
    },
    /// totem-pps: the server reset its counters for session `to`.
    PpsReady {
        /// Session of the client.
        to: u64,
    },
    /// totem-pps: a data datagram.
    PpsData {
        /// Sequence number, from 0.
        seq: u64,
    },
    /// totem-pps: the client sent `sent` datagrams and asks for the report.
    PpsStop {
        /// Datagrams sent.
        sent: u64,
    },
    /// totem-pps: the server's side of the run, for session `to`.
    PpsResult {
        /// Session of the client.
        to: u64,
        /// The measurements.
        report: PpsReport,
    },
}

const KIND_INIT: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const KIND_QUERY: u8 = 3;
const KIND_ANSWER: u8 = 4;
const KIND_DONE: u8 = 5;
const KIND_PPS_START: u8 = 10;
const KIND_PPS_READY: u8 = 11;
const KIND_PPS_DATA: u8 = 12;
const KIND_PPS_STOP: u8 = 13;
const KIND_PPS_RESULT: u8 = 14;

/// Why a datagram could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than its header or body")]
    Truncated(usize),
    #[error("not a totem-tools datagram (bad magic)")]
    BadMagic,
    #[error(
        "peer speaks totem-tools protocol version {got}, this build speaks {PROTOCOL_VERSION}"
    )]
    Version {
        /// The peer's version byte.
        got: u8,
    },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("unknown address family byte {0} in a multicast group field")]
    BadFamily(u8),
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("datagram size {0} is larger than the UDP maximum {MAX_DATAGRAM_LEN}")]
    TooLarge(usize),
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Init { .. } => KIND_INIT,
            Body::Response { .. } => KIND_RESPONSE,
            Body::Query { .. } => KIND_QUERY,
            Body::Answer { .. } => KIND_ANSWER,
            Body::Done => KIND_DONE,
            Body::PpsStart { .. } => KIND_PPS_START,
            Body::PpsReady { .. } => KIND_PPS_READY,
            Body::PpsData { .. } => KIND_PPS_DATA,
            Body::PpsStop { .. } => KIND_PPS_STOP,
            Body::PpsResult { .. } => KIND_PPS_RESULT,
        }
    }

    fn write_fields(&self, out: &mut Vec<u8>) {
        match *self {
            Body::Done => {}
            Body::Init { group } => write_group(out, group),
            Body::Response { to, group } => {
                out.extend_from_slice(&to.to_be_bytes());
                write_group(out, group);
            }
            Body::PpsReady { to } => out.extend_from_slice(&to.to_be_bytes()),
            Body::Query { seq, sent_ns } => {
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&sent_ns.to_be_bytes());
            }
            Body::Answer { to, seq, sent_ns } => {
                out.extend_from_slice(&to.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&sent_ns.to_be_bytes());
            }
            Body::PpsStart { size, duration_ms } => {
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&duration_ms.to_be_bytes());
            }
            Body::PpsData { seq } => out.extend_from_slice(&seq.to_be_bytes()),
            Body::PpsStop { sent } => out.extend_from_slice(&sent.to_be_bytes()),
            Body::PpsResult { to, report } => {
                out.extend_from_slice(&to.to_be_bytes());
                for v in [
                    report.received,
                    report.bytes,
                    report.elapsed_us,
                    report.cpu_user_us,
                    report.cpu_sys_us,
                    report.rejected,
                ] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.push(report.io);
                out.extend_from_slice(&report.batch.to_be_bytes());
            }
        }
    }

    /// Parses the body of `kind` from `b` (trailing padding ignored).
    fn read(kind: u8, b: &[u8], total: usize) -> Result<Body, DecodeError> {
        let mut r = Reader { b, total };
        let body = match kind {
            KIND_INIT => Body::Init { group: r.group()? },
            KIND_DONE => Body::Done,
            KIND_RESPONSE => Body::Response {
                to: r.u64()?,
                group: r.group()?,
            },
            KIND_PPS_READY => Body::PpsReady { to: r.u64()? },
            KIND_QUERY => Body::Query {
                seq: r.u32()?,
                sent_ns: r.u64()?,
            },
            KIND_ANSWER => Body::Answer {
                to: r.u64()?,
                seq: r.u32()?,
                sent_ns: r.u64()?,
            },
            KIND_PPS_START => Body::PpsStart {
                size: r.u32()?,
                duration_ms: r.u32()?,
            },
            KIND_PPS_DATA => Body::PpsData { seq: r.u64()? },
            KIND_PPS_STOP => Body::PpsStop { sent: r.u64()? },
            KIND_PPS_RESULT => Body::PpsResult {
                to: r.u64()?,
                report: PpsReport {
                    received: r.u64()?,
                    bytes: r.u64()?,
                    elapsed_us: r.u64()?,
                    cpu_user_us: r.u64()?,
                    cpu_sys_us: r.u64()?,
                    rejected: r.u64()?,
                    io: r.u8()?,
                    batch: r.u32()?,
                },
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        Ok(body)
    }
}

/// Family byte of "no group" in a group field.
const FAMILY_NONE: u8 = 0;
/// Family byte of an IPv4 group.
const FAMILY_V4: u8 = 4;
/// Family byte of an IPv6 group.
const FAMILY_V6: u8 = 6;

fn write_group(out: &mut Vec<u8>, group: Option<IpAddr>) {
    match group {
        None => out.push(FAMILY_NONE),
        Some(IpAddr::V4(a)) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&a.octets());
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    total: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .b
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated(self.total))?;
        self.b = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn group(&mut self) -> Result<Option<IpAddr>, DecodeError> {
        match self.u8()? {
            FAMILY_NONE => Ok(None),
            FAMILY_V4 => Ok(Some(IpAddr::V4(Ipv4Addr::from(self.take::<4>()?)))),
            FAMILY_V6 => Ok(Some(IpAddr::V6(Ipv6Addr::from(self.take::<16>()?)))),
            other => Err(DecodeError::BadFamily(other)),
        }
    }
}

/// Writes the header into `out` (cleared first).
pub fn encode_header(out: &mut Vec<u8>, header: Header) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(header.kind);
    out.push(header.flags);
    out.push(0);
    out.extend_from_slice(&header.session.to_be_bytes());
}

/// Encodes `body` from `session` into `out` (cleared first), zero-padded to `pad_to` bytes when
/// that is longer than the message.
pub fn encode(
    out: &mut Vec<u8>,
    session: u64,
    body: &Body,
    pad_to: usize,
) -> Result<(), EncodeError> {
    if pad_to > MAX_DATAGRAM_LEN {
        return Err(EncodeError::TooLarge(pad_to));
    }
    encode_header(
        out,
        Header {
            kind: body.kind(),
            flags: 0,
            session,
        },
    );
    body.write_fields(out);
    if out.len() < pad_to {
        out.resize(pad_to, 0);
    }
    Ok(())
}

/// Decodes the header of `datagram`.
pub fn decode_header(datagram: &[u8]) -> Result<Header, DecodeError> {
    let head: &[u8; HEADER_LEN] = datagram
        .first_chunk()
        .ok_or(DecodeError::Truncated(datagram.len()))?;
    if head[0..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if head[4] != PROTOCOL_VERSION {
        return Err(DecodeError::Version { got: head[4] });
    }
    let mut session = [0u8; 8];
    session.copy_from_slice(&head[8..16]);
    Ok(Header {
        kind: head[5],
        flags: head[6],
        session: u64::from_be_bytes(session),
    })
}

/// Decodes the body that follows `header` (`body` excludes the header).
pub fn decode_body(header: &Header, body: &[u8]) -> Result<Body, DecodeError> {
    Body::read(header.kind, body, body.len() + HEADER_LEN)
}

/// Decodes a clear (unsealed) datagram.
pub fn decode(datagram: &[u8]) -> Result<(Header, Body), DecodeError> {
    let header = decode_header(datagram)?;
    let body = decode_body(&header, &datagram[HEADER_LEN..])?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_group() -> impl Strategy<Value = Option<IpAddr>> {
        prop_oneof![
            Just(None),
            any::<[u8; 4]>().prop_map(|a| Some(IpAddr::from(a))),
            any::<[u8; 16]>().prop_map(|a| Some(IpAddr::from(a))),
        ]
    }

    fn any_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            any_group().prop_map(|group| Body::Init { group }),
            Just(Body::Done),
            (any::<u64>(), any_group()).prop_map(|(to, group)| Body::Response { to, group }),
            (any::<u32>(), any::<u64>()).prop_map(|(seq, sent_ns)| Body::Query { seq, sent_ns }),
            (any::<u64>(), any::<u32>(), any::<u64>())
                .prop_map(|(to, seq, sent_ns)| Body::Answer { to, seq, sent_ns }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(size, duration_ms)| Body::PpsStart { size, duration_ms }),
            any::<u64>().prop_map(|to| Body::PpsReady { to }),
            any::<u64>().prop_map(|seq| Body::PpsData { seq }),
            any::<u64>().prop_map(|sent| Body::PpsStop { sent }),
            (any::<u64>(), any::<[u64; 6]>(), any::<u8>(), any::<u32>()).prop_map(
                |(to, v, io, batch)| Body::PpsResult {
                    to,
                    report: PpsReport {
                        received: v[0],
                        bytes: v[1],
                        elapsed_us: v[2],
                        cpu_user_us: v[3],
                        cpu_sys_us: v[4],
                        rejected: v[5],
                        io,
                        batch,
                    }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(body in any_body(), session in any::<u64>(), pad in 0usize..2000) {
            let mut buf = Vec::new();
            encode(&mut buf, session, &body, pad).unwrap();
            prop_assert!(buf.len() >= pad);
            let (header, decoded) = decode(&buf).unwrap();
            prop_assert_eq!(header.session, session);
            prop_assert_eq!(header.flags, 0);
            prop_assert_eq!(decoded, body);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncation_is_an_error(body in any_body()) {
            let mut buf = Vec::new();
            encode(&mut buf, 7, &body, 0).unwrap();
            for cut in 0..buf.len() {
                // Every strict prefix either fails or (for bodies ending in nothing) decodes the
                // same body: a prefix never decodes into a different message.
                if let Ok((_, decoded)) = decode(&buf[..cut]) {
                    prop_assert_eq!(decoded, body);
                }
            }
        }
    }

    #[test]
    fn other_version_is_named() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, &Body::Init { group: None }, 0).unwrap();
        buf[4] = 9;
        assert_eq!(decode(&buf), Err(DecodeError::Version { got: 9 }));
        let msg = decode(&buf).unwrap_err().to_string();
        assert!(msg.contains("version 9"), "{msg}");
    }

    #[test]
    fn foreign_bytes_are_bad_magic() {
        assert_eq!(decode(&[0u8; 40]), Err(DecodeError::BadMagic));
        assert_eq!(decode(b"TTN"), Err(DecodeError::Truncated(3)));
        assert!(encode(&mut Vec::new(), 1, &Body::Init { group: None }, 70_000).is_err());
    }

    #[test]
    fn group_fields_round_trip_and_bad_family_is_named() {
        let group: IpAddr = "ff3e::4321:1234".parse().unwrap();
        let body = Body::Response {
            to: 5,
            group: Some(group),
        };
        let mut buf = Vec::new();
        encode(&mut buf, 1, &body, 69).unwrap();
        assert_eq!(buf.len(), 69);
        assert_eq!(decode(&buf).unwrap().1, body);
        buf[HEADER_LEN + 8] = 9;
        assert_eq!(decode(&buf), Err(DecodeError::BadFamily(9)));
    }
}
