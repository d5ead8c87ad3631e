//! The on-wire frame format: a fixed-size, versioned header in network byte order, and the small
//! typed bodies of ping, pong and MTU probe frames.
//!
//! The format is totemd's own (knet's is described in REFERENCE.md §1.5 and is not wire-compatible
//! with ours). Every frame is one UDP datagram:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+---------------+---------------+
//! |        magic 0x5444 "TD"      |  version = 2  |  frame type   |  0
//! +---------------+---------------+---------------+---------------+
//! |     flags     |    key id     |  link number  |  reserved = 0 |  4
//! +---------------+---------------+---------------+---------------+
//! |                     cluster id (u32)                          |  8
//! +---------------------------------------------------------------+
//! |                   source node id (u32)                        | 12
//! +---------------------------------------------------------------+
//! |                                                               | 16
//! +            per-peer sequence number (u64)                     +
//! |                                                               | 20
//! +---------------------------------------------------------------+
//! |                   message id (u32)                            | 24
//! +-------------------------------+-------------------------------+
//! |    fragment index (u16)       |    fragment count (u16)       | 28
//! +-------------------------------+-------------------------------+
//! |    payload length (u16)       |        reserved = 0           | 32
//! +-------------------------------+-------------------------------+
//! |                                                               | 36
//! +                                                               +
//! |             nonce (12 bytes; all zero when not encrypted)     | 40
//! +                                                               +
//! |                                                               | 44
//! +---------------------------------------------------------------+
//! |   payload (payload length bytes; ciphertext when encrypted)  ...  48
//! +---------------------------------------------------------------+
//! |   AES-GCM tag (16 bytes, only when the encrypted flag is set)  |
//! +---------------------------------------------------------------+
//! ```
//!
//! * All integers are big-endian. The header is [`HEADER_LEN`] = 48 bytes whatever the frame type,
//!   so the AEAD's additional authenticated data is always exactly the header bytes.
//! * The nonce field is always present. Keeping it in unencrypted frames costs 12 bytes but keeps
//!   one header size, one AAD length and one decode path; unencrypted frames must carry zeros there
//!   (and key id 0), so every accepted header has exactly one encoding.
//! * Frame types: [`FrameType::Data`] (a fragment of a totem message), [`FrameType::Ping`],
//!   [`FrameType::Pong`] (body: [`PingBody`], echoed), [`FrameType::MtuProbe`] (body:
//!   [`MtuProbeBody`] then zero padding up to the probed size), [`FrameType::MtuReply`] (body:
//!   [`MtuProbeBody`], no padding).
//! * Fragment fields: a message of up to 1 MiB is cut into `fragment count` frames sharing one
//!   `message id` (see [`crate::frag`]). Frames other than data frames carry index 0 and count 1.
//! * The cluster id ([`ClusterId::from_cluster_name`]) lets a receiver drop frames of another
//!   cluster on the same network before any crypto work (DESIGN.md "Transport").
//!
//! [`Header::decode`] checks cheap things first (length, magic, version, cluster id), never
//! indexes out of bounds and never allocates; [`Header::encode_into`] writes into the caller's
//! buffer.
#![forbid(unsafe_code)]

use std::ops::Range;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// First two bytes of every frame: ASCII "TD" (totemd).
pub const MAGIC: u16 = 0x5444;
/// The only header version this code speaks. History: 1, the first; 2, sealed frames use the
/// sender's own key (HKDF info names the sender node id), so a version-1 node could not open
/// them: it drops them as another version instead of counting authentication failures.
pub const VERSION: u8 = 2;
/// Size of the frame header in bytes (see the diagram in the module doc).
pub const HEADER_LEN: usize = 48;
/// Size of the AES-GCM nonce carried in the header.
pub const NONCE_LEN: usize = 12;
/// Size of the AES-GCM authentication tag that follows the payload of an encrypted frame.
pub const TAG_LEN: usize = 16;
/// Number of links per peer (knet `KNET_MAX_LINK 8`, corosync `INTERFACE_MAX 8`; REFERENCE §1.5).
pub const MAX_LINKS: usize = 8;
/// Largest UDP payload over IPv4: 65535 − 20 (IPv4 header) − 8 (UDP header).
pub const MAX_FRAME_LEN: usize = 65_507;
/// Largest payload of one frame (encrypted frames also carry the tag).
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - HEADER_LEN - TAG_LEN;
/// IPv4 header size without options (knet `transport_udp.h`; REFERENCE §1.5).
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header size (REFERENCE §1.5).
pub const IPV6_HEADER_LEN: usize = 40;
/// UDP header size (REFERENCE §1.5).
pub const UDP_HEADER_LEN: usize = 8;
/// Smallest IP MTU we ever assume: the IPv4 minimum reassembly size, 576 (knet's v4 minimum,
/// REFERENCE §1.5; IPv6 guarantees 1280).
pub const MIN_MTU: usize = 576;
/// Worst-case per-frame overhead on top of the payload: IPv6 + UDP + our header + the tag.
pub const MAX_FRAME_OVERHEAD: usize = IPV6_HEADER_LEN + UDP_HEADER_LEN + HEADER_LEN + TAG_LEN;

// A frame with a useful payload must fit in the smallest MTU, whatever the IP version.
const _: () = assert!(MAX_FRAME_OVERHEAD < MIN_MTU);
const _: () = assert!(HEADER_LEN == 36 + NONCE_LEN);
const _: () = assert!(MAX_PAYLOAD_LEN <= u16::MAX as usize);
const _: () = assert!(MAX_LINKS <= u8::MAX as usize);

/// An instant on a monotonic clock, in nanoseconds from an arbitrary origin.
///
/// The pure modules ([`crate::frag`], [`crate::pmtud`], [`crate::heartbeat`]) take time as an
/// argument of this type and never read a clock; the reactor converts its clock readings. It is
/// also what a ping carries ([`PingBody::sent_at_ns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoTime(pub u64);

impl MonoTime {
    /// The clock's origin.
    pub const ZERO: MonoTime = MonoTime(0);

    /// Nanoseconds since the clock's origin.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + span`, saturating at the end of time.
    pub fn saturating_add(self, span: Duration) -> MonoTime {
        let span_ns = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        MonoTime(self.0.saturating_add(span_ns))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Bit of [`Header`]'s flags byte: the payload is AES-GCM ciphertext followed by a tag.
const FLAG_ENCRYPTED: u8 = 0x01;
/// Flag bits this version defines; any other bit is rejected.
const FLAGS_KNOWN: u8 = FLAG_ENCRYPTED;

/// Why a frame was rejected. `Copy`, so a reactor can count it by reason without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the field being read needs (a cut datagram or a wrong length field).
    #[error("frame truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The first two bytes are not [`MAGIC`]: not a totemd frame at all.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A header version this build does not speak (a newer or older peer).
    #[error("unsupported header version {0}")]
    UnsupportedVersion(u8),
    /// A frame of another cluster on the same network.
    #[error("frame for cluster id {got:#010x}, ours is {expected:#010x}")]
    ForeignCluster {
        /// Our cluster id.
        expected: u32,
        /// The frame's cluster id.
        got: u32,
    },
    /// An unknown frame type byte.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// Flag bits this version does not define.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// A link number at or above [`MAX_LINKS`].
    #[error("link number {0} out of range (max {MAX_LINKS})")]
    LinkOutOfRange(u8),
    /// A reserved field is not zero.
    #[error("reserved header field is not zero")]
    ReservedNotZero,
    /// An unencrypted frame carries a non-zero nonce or key id.
    #[error("unencrypted frame with a nonce or key id")]
    CryptoFieldsWithoutEncryption,
    /// Fragment index not below fragment count, count zero, or a non-data frame with fragments.
    #[error("invalid fragment {index}/{count} for this frame type")]
    BadFragment {
        /// Fragment index.
        index: u16,
        /// Fragment count.
        count: u16,
    },
    /// The datagram length disagrees with the header's payload length (and tag).
    #[error("frame length {actual} does not match header (expected {declared})")]
    LengthMismatch {
        /// Length the header implies.
        declared: usize,
        /// Datagram length.
        actual: usize,
    },
    /// A payload longer than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {0} bytes exceeds the maximum {MAX_PAYLOAD_LEN}")]
    PayloadTooLong(usize),
    /// The output buffer is too small for what is being encoded.
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A body (ping, pong, MTU probe) whose length or content does not fit its type.
    #[error("malformed {0} body")]
    MalformedBody(&'static str),
}

/// A 32-bit cluster identifier, derived from the cluster name.
///
/// Frames of other clusters are dropped on this field before any crypto. It is not a secret and
/// not a security boundary (the AEAD is): it only keeps two clusters sharing a network apart
/// cheaply. A collision costs one failed AEAD open per frame, counted as a bad tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u32);

/// Domain separation for [`ClusterId::from_cluster_name`], so the id never equals some other
/// SHA-256 use of the cluster name (the crypto crate binds its HKDF to the name too).
const CLUSTER_ID_DOMAIN: &[u8] = b"totemd cluster id v1\0";

impl ClusterId {
    /// The first four bytes (big-endian) of SHA-256("totemd cluster id v1\0" || name).
    pub fn from_cluster_name(name: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(CLUSTER_ID_DOMAIN)
            .chain_update(name.as_bytes())
            .finalize();
        let mut first = [0u8; 4];
        first.copy_from_slice(&digest[..4]);
        ClusterId(u32::from_be_bytes(first))
    }
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// A fragment (or the whole) of a message for the upper layer.
    Data = 0,
    /// A heartbeat request; body [`PingBody`].
    Ping = 1,
    /// A heartbeat answer; body is the ping's [`PingBody`] echoed.
    Pong = 2,
    /// A path MTU probe; body [`MtuProbeBody`] then zero padding to the probed size.
    MtuProbe = 3,
    /// Answer to an MTU probe; body [`MtuProbeBody`].
    MtuReply = 4,
}

impl FrameType {
    /// Parses the frame type byte.
    pub fn from_u8(byte: u8) -> Result<Self, WireError> {
        match byte {
            0 => Ok(FrameType::Data),
            1 => Ok(FrameType::Ping),
            2 => Ok(FrameType::Pong),
            3 => Ok(FrameType::MtuProbe),
            4 => Ok(FrameType::MtuReply),
            other => Err(WireError::UnknownFrameType(other)),
        }
    }
}

/// Fragment fields of the header: which piece of which message this frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Identifies the message among the sender's in-flight messages (wraps around).
    pub message_id: u32,
    /// Position of this fragment, `0..count`.
    pub index: u16,
    /// Number of fragments of the message, at least 1.
    pub count: u16,
}

impl Fragment {
    /// The fragment fields of an unfragmented frame.
    pub const WHOLE: Fragment = Fragment {
        message_id: 0,
        index: 0,
        count: 1,
    };

    fn check(self, frame_type: FrameType) -> Result<(), WireError> {
        let bad = WireError::BadFragment {
            index: self.index,
            count: self.count,
        };
        if self.count == 0 || self.index >= self.count {
            return Err(bad);
        }
        if frame_type != FrameType::Data && (self.count != 1 || self.message_id != 0) {
            return Err(bad);
        }
        Ok(())
    }
}

/// A decoded frame header (everything before the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the frame carries.
    pub frame_type: FrameType,
    /// The payload is AES-GCM ciphertext and a [`TAG_LEN`]-byte tag follows it.
    pub encrypted: bool,
    /// Which of the (up to two) live keys sealed the frame; 0 when not encrypted.
    pub key_id: u8,
    /// The link the frame was sent on, `0..MAX_LINKS`.
    pub link_number: u8,
    /// The sender's cluster.
    pub cluster_id: ClusterId,
    /// The sender's node id.
    pub source_node_id: u32,
    /// Per-peer sequence number; the receiver dedupes copies sent on several links with it.
    pub seq: u64,
    /// Fragment fields.
    pub fragment: Fragment,
    /// Payload bytes after the header (excluding the tag).
    pub payload_len: u16,
    /// The AEAD nonce; all zero when not encrypted.
    pub nonce: [u8; NONCE_LEN],
}

impl Header {
    /// Total datagram length this header describes: header, payload and tag if encrypted.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len) + if self.encrypted { TAG_LEN } else { 0 }
    }

    /// Where the payload sits in the datagram.
    pub fn payload_range(&self) -> Range<usize> {
        HEADER_LEN..HEADER_LEN + usize::from(self.payload_len)
    }

    /// Where the tag sits in the datagram, if the frame is encrypted.
    pub fn tag_range(&self) -> Option<Range<usize>> {
        let payload_end = HEADER_LEN + usize::from(self.payload_len);
        self.encrypted.then_some(payload_end..payload_end + TAG_LEN)
    }

    /// Checks the invariants [`Header::decode`] enforces; [`Header::encode_into`] refuses headers
    /// that fail them, so everything encoded decodes again.
    pub fn validate(&self) -> Result<(), WireError> {
        if usize::from(self.link_number) >= MAX_LINKS {
            return Err(WireError::LinkOutOfRange(self.link_number));
        }
        if !self.encrypted && (self.key_id != 0 || self.nonce != [0; NONCE_LEN]) {
            return Err(WireError::CryptoFieldsWithoutEncryption);
        }
        if usize::from(self.payload_len) > MAX_PAYLOAD_LEN {
            return Err(WireError::PayloadTooLong(usize::from(self.payload_len)));
        }
        self.fragment.check(self.frame_type)
    }

    /// Writes the [`HEADER_LEN`] header bytes to the start of `out`; returns [`HEADER_LEN`].
    ///
    /// The caller then writes the payload at `out[HEADER_LEN..]` and, for encrypted frames, seals
    /// it with `out[..HEADER_LEN]` as AAD and appends the tag (see [`split_frame_mut`]).
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.validate()?;
        let available = out.len();
        let header: &mut [u8; HEADER_LEN] =
            out.first_chunk_mut().ok_or(WireError::BufferTooSmall {
                needed: HEADER_LEN,
                available,
            })?;
        let mut w = Writer::new(header);
        w.put(&MAGIC.to_be_bytes());
        w.put(&[VERSION, self.frame_type as u8]);
        let flags = if self.encrypted { FLAG_ENCRYPTED } else { 0 };
        w.put(&[flags, self.key_id, self.link_number, 0]);
        w.put(&self.cluster_id.0.to_be_bytes());
        w.put(&self.source_node_id.to_be_bytes());
        w.put(&self.seq.to_be_bytes());
        w.put(&self.fragment.message_id.to_be_bytes());
        w.put(&self.fragment.index.to_be_bytes());
        w.put(&self.fragment.count.to_be_bytes());
        w.put(&self.payload_len.to_be_bytes());
        w.put(&[0, 0]);
        w.put(&self.nonce);
        debug_assert_eq!(w.position, HEADER_LEN);
        Ok(HEADER_LEN)
    }

    /// Encodes a whole unencrypted frame (header then `payload`) into `out`; returns its length.
    /// `self.payload_len` must equal `payload.len()` and `self.encrypted` must be false.
    pub fn encode_frame_into(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, WireError> {
        let frame_len = self.frame_len();
        if self.encrypted || usize::from(self.payload_len) != payload.len() {
            return Err(WireError::LengthMismatch {
                declared: frame_len,
                actual: HEADER_LEN + payload.len(),
            });
        }
        let available = out.len();
        let frame = out.get_mut(..frame_len).ok_or(WireError::BufferTooSmall {
            needed: frame_len,
            available,
        })?;
        let (header, body) = frame.split_at_mut(HEADER_LEN);
        self.encode_into(header)?;
        body.copy_from_slice(payload);
        Ok(frame_len)
    }

    /// Decodes one datagram without checking the cluster id; returns the header and the payload
    /// (ciphertext if encrypted, without the tag). The datagram must be exactly
    /// [`Header::frame_len`] bytes long.
    pub fn decode(datagram: &[u8]) -> Result<(Header, &[u8]), WireError> {
        decode_checked(datagram, None)
    }

    /// Like [`Header::decode`], but rejects frames of another cluster right after the magic and
    /// version checks, before parsing anything else (the reactor's entry point).
    pub fn decode_for_cluster(
        datagram: &[u8],
        cluster_id: ClusterId,
    ) -> Result<(Header, &[u8]), WireError> {
        decode_checked(datagram, Some(cluster_id))
    }
}

fn decode_checked(
    datagram: &[u8],
    expected_cluster: Option<ClusterId>,
) -> Result<(Header, &[u8]), WireError> {
    let mut r = Reader::new(datagram);
    let header_bytes: &[u8; HEADER_LEN] = r.take_array()?;
    let mut h = Reader::new(header_bytes);
    let magic = h.u16()?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = h.u8()?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let frame_type_byte = h.u8()?;
    let flags = h.u8()?;
    let key_id = h.u8()?;
    let link_number = h.u8()?;
    let reserved_byte = h.u8()?;
    let cluster_id = ClusterId(h.u32()?);
    if let Some(expected) = expected_cluster {
        if cluster_id != expected {
            return Err(WireError::ForeignCluster {
                expected: expected.0,
                got: cluster_id.0,
            });
        }
    }
    let source_node_id = h.u32()?;
    let seq = h.u64()?;
    let message_id = h.u32()?;
    let index = h.u16()?;
    let count = h.u16()?;
    let payload_len = h.u16()?;
    let reserved_word = h.u16()?;
    let nonce: [u8; NONCE_LEN] = *h.take_array()?;
    debug_assert!(h.is_empty());

    if reserved_byte != 0 || reserved_word != 0 {
        return Err(WireError::ReservedNotZero);
    }
    if flags & !FLAGS_KNOWN != 0 {
        return Err(WireError::UnknownFlags(flags & !FLAGS_KNOWN));
    }
    let header = Header {
        frame_type: FrameType::from_u8(frame_type_byte)?,
        encrypted: flags & FLAG_ENCRYPTED != 0,
        key_id,
        link_number,
        cluster_id,
        source_node_id,
        seq,
        fragment: Fragment {
            message_id,
            index,
            count,
        },
        payload_len,
        nonce,
    };
    if header.frame_len() != datagram.len() {
        return Err(WireError::LengthMismatch {
            declared: header.frame_len(),
            actual: datagram.len(),
        });
    }
    header.validate()?;
    let payload = r.take(usize::from(payload_len))?;
    Ok((header, payload))
}

/// A datagram split into the parts the AEAD needs, borrowed mutably for in-place opening.
#[derive(Debug)]
pub struct FrameParts<'a> {
    /// The header bytes: the AEAD's additional authenticated data.
    pub aad: &'a [u8],
    /// The payload (ciphertext when encrypted), to open or seal in place.
    pub payload: &'a mut [u8],
    /// The tag, when the frame is encrypted.
    pub tag: Option<&'a mut [u8; TAG_LEN]>,
}

/// Splits `datagram` (already checked by [`Header::decode`] into `header`, or being built for
/// sending with room for [`Header::frame_len`] bytes) into AAD, payload and tag.
pub fn split_frame_mut<'a>(
    datagram: &'a mut [u8],
    header: &Header,
) -> Result<FrameParts<'a>, WireError> {
    let available = datagram.len();
    let frame = datagram
        .get_mut(..header.frame_len())
        .ok_or(WireError::BufferTooSmall {
            needed: header.frame_len(),
            available,
        })?;
    let (aad, rest) = frame.split_at_mut(HEADER_LEN);
    let (payload, tag) = rest.split_at_mut(usize::from(header.payload_len));
    let tag = if header.encrypted {
        let tag_len = tag.len();
        let tag: &mut [u8; TAG_LEN] = tag.try_into().map_err(|_| WireError::Truncated {
            needed: TAG_LEN,
            available: tag_len,
        })?;
        Some(tag)
    } else {
        None
    };
    Ok(FrameParts {
        aad: &*aad,
        payload,
        tag,
    })
}

/// Body of a ping, echoed unchanged in the pong: the sender's monotonic send time and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingBody {
    /// The pinger's monotonic clock at send time, nanoseconds (opaque to the peer, echoed back;
    /// knet does the same with a raw timespec, REFERENCE §1.5).
    pub sent_at_ns: u64,
    /// Per (peer, link) ping counter, to match a pong to its ping.
    pub ping_seq: u64,
}

impl PingBody {
    /// Encoded size in bytes.
    pub const LEN: usize = 16;

    /// Writes the body into the start of `out`; returns [`PingBody::LEN`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let available = out.len();
        let body: &mut [u8; Self::LEN] =
            out.first_chunk_mut().ok_or(WireError::BufferTooSmall {
                needed: Self::LEN,
                available,
            })?;
        let mut w = Writer::new(body);
        w.put(&self.sent_at_ns.to_be_bytes());
        w.put(&self.ping_seq.to_be_bytes());
        Ok(Self::LEN)
    }

    /// Reads a ping or pong payload; it must be exactly [`PingBody::LEN`] bytes.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        if payload.len() != Self::LEN {
            return Err(WireError::MalformedBody("ping"));
        }
        let mut r = Reader::new(payload);
        Ok(PingBody {
            sent_at_ns: r.u64()?,
            ping_seq: r.u64()?,
        })
    }
}

/// Body of an MTU probe and of its reply.
///
/// A probe's payload is this body followed by zero padding so that the whole datagram is
/// `frame_len` bytes (header, payload and tag if encrypted); the reply carries the same body with
/// no padding. `frame_len` is the UDP payload size being tested; IP and UDP overhead come on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MtuProbeBody {
    /// Matches a reply to its probe (per peer and link).
    pub probe_id: u32,
    /// UDP payload size of the probe datagram.
    pub frame_len: u16,
}

impl MtuProbeBody {
    /// Encoded size of the fixed fields in bytes.
    pub const LEN: usize = 6;

    /// Writes the fixed fields into the start of `out`; returns [`MtuProbeBody::LEN`]. For a probe
    /// the caller zero-fills the rest of the payload (see [`MtuProbeBody::probe_payload_len`]).
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let available = out.len();
        let body: &mut [u8; Self::LEN] =
            out.first_chunk_mut().ok_or(WireError::BufferTooSmall {
                needed: Self::LEN,
                available,
            })?;
        let mut w = Writer::new(body);
        w.put(&self.probe_id.to_be_bytes());
        w.put(&self.frame_len.to_be_bytes());
        Ok(Self::LEN)
    }

    /// Payload length of a probe datagram of `frame_len` bytes, or `None` when `frame_len` is too
    /// small to hold the header, the body (and the tag) or too large for a frame.
    pub fn probe_payload_len(frame_len: usize, encrypted: bool) -> Option<u16> {
        let overhead = HEADER_LEN + if encrypted { TAG_LEN } else { 0 };
        if frame_len > MAX_FRAME_LEN {
            return None;
        }
        let payload_len = frame_len.checked_sub(overhead)?;
        if payload_len < Self::LEN {
            return None;
        }
        u16::try_from(payload_len).ok()
    }

    /// Reads an MTU reply payload: exactly [`MtuProbeBody::LEN`] bytes.
    pub fn decode_reply(payload: &[u8]) -> Result<Self, WireError> {
        if payload.len() != Self::LEN {
            return Err(WireError::MalformedBody("MTU reply"));
        }
        Self::decode_fields(payload)
    }

    /// Reads an MTU probe payload: the fixed fields, then zero padding, and `frame_len` must be
    /// the datagram's real length `datagram_len`, or the probe lies about the size it tests.
    pub fn decode_probe(payload: &[u8], datagram_len: usize) -> Result<Self, WireError> {
        let body = Self::decode_fields(payload)?;
        if usize::from(body.frame_len) != datagram_len {
            return Err(WireError::MalformedBody("MTU probe"));
        }
        let padding = payload.get(Self::LEN..).unwrap_or_default();
        if padding.iter().any(|&byte| byte != 0) {
            return Err(WireError::MalformedBody("MTU probe"));
        }
        Ok(body)
    }

    fn decode_fields(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        Ok(MtuProbeBody {
            probe_id: r.u32()?,
            frame_len: r.u16()?,
        })
    }
}

/// The body of the `frame_decode` fuzz target (fuzz/fuzz_targets/frame_decode.rs), here so that
/// tests run it too. Panics only on a broken invariant, which is what the fuzzer looks for.
#[doc(hidden)]
pub fn fuzz_frame_decode(data: &[u8]) {
    // 1. The whole input as one datagram: whatever decodes re-encodes to the same bytes.
    if let Ok((header, payload)) = Header::decode(data) {
        let mut again = [0u8; HEADER_LEN];
        assert_eq!(header.encode_into(&mut again), Ok(HEADER_LEN));
        assert_eq!(Some(&again[..]), data.get(..HEADER_LEN));
        assert_eq!(Some(payload), data.get(header.payload_range()));
        if !header.encrypted {
            fuzz_body(header.frame_type, payload, data.len());
        }
    }
    // 2. The input as a stream of datagrams (u16 length prefix each) from one link: data frames
    //    go through dedupe and reassembly as the reactor would run them.
    let mut dedupe = crate::dedupe::Dedupe::new();
    let mut reassembler = crate::frag::Reassembler::new(crate::frag::ReassemblyConfig {
        max_in_flight_per_peer: 4,
        ..crate::frag::ReassemblyConfig::default()
    });
    let mut rest = data;
    let mut now = MonoTime::ZERO;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let (datagram, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        now = now.saturating_add(Duration::from_millis(1));
        let Ok((header, payload)) = Header::decode(datagram) else {
            continue;
        };
        if header.frame_type != FrameType::Data || !dedupe.accept(header.source_node_id, header.seq)
        {
            continue;
        }
        let delivered = reassembler.push_frame(now, &header, payload);
        if let Ok(Some(message)) = delivered {
            assert!(message.len() <= crate::frag::MAX_MESSAGE_LEN);
        }
        reassembler.expire(now);
    }
}

fn fuzz_body(frame_type: FrameType, payload: &[u8], datagram_len: usize) {
    match frame_type {
        FrameType::Ping | FrameType::Pong => {
            if let Ok(body) = PingBody::decode(payload) {
                let mut again = [0u8; PingBody::LEN];
                assert_eq!(body.encode_into(&mut again), Ok(PingBody::LEN));
                assert_eq!(&again[..], payload);
            }
        }
        FrameType::MtuReply => {
            if let Ok(body) = MtuProbeBody::decode_reply(payload) {
                let mut again = [0u8; MtuProbeBody::LEN];
                assert_eq!(body.encode_into(&mut again), Ok(MtuProbeBody::LEN));
                assert_eq!(&again[..], payload);
            }
        }
        FrameType::MtuProbe => {
            if let Ok(body) = MtuProbeBody::decode_probe(payload, datagram_len) {
                assert_eq!(usize::from(body.frame_len), datagram_len);
            }
        }
        FrameType::Data => {}
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked and returns an error when short.
struct Reader<'a> {
    rest: &'a [u8],
    consumed: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            rest: bytes,
            consumed: 0,
        }
    }

    fn truncated(&self, needed: usize) -> WireError {
        WireError::Truncated {
            needed: self.consumed + needed,
            available: self.consumed + self.rest.len(),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<&'a [u8; N], WireError> {
        let (first, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(self.truncated(N))?;
        self.rest = rest;
        self.consumed += N;
        Ok(first)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let (first, rest) = self.rest.split_at_checked(len).ok_or(self.truncated(len))?;
        self.rest = rest;
        self.consumed += len;
        Ok(first)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(*self.take_array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(*self.take_array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(*self.take_array()?))
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Writes fields into a fixed-size array whose size the caller proved with the type; a write past
/// its end is a bug in this module (the layout), hence an assertion rather than an error.
struct Writer<'a, const N: usize> {
    out: &'a mut [u8; N],
    position: usize,
}

impl<'a, const N: usize> Writer<'a, N> {
    fn new(out: &'a mut [u8; N]) -> Self {
        Writer { out, position: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = self.position + bytes.len();
        assert!(end <= N, "wire layout writes past its fixed size");
        self.out[self.position..end].copy_from_slice(bytes);
        self.position = end;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    fn sample_header() -> Header {
        Header {
            frame_type: FrameType::Data,
            encrypted: true,
            key_id: 1,
            link_number: 2,
            cluster_id: ClusterId(0xdead_beef),
            source_node_id: 7,
            seq: 0x0102_0304_0506_0708,
            fragment: Fragment {
                message_id: 9,
                index: 1,
                count: 3,
            },
            payload_len: 5,
            nonce: [0xaa; NONCE_LEN],
        }
    }

    fn encrypted_frame(header: &Header) -> Vec<u8> {
        let mut buf = vec![0u8; header.frame_len()];
        header.encode_into(&mut buf).unwrap();
        buf
    }

    #[test]
    fn layout_matches_the_diagram() {
        let buf = encrypted_frame(&sample_header());
        assert_eq!(&buf[0..2], b"TD");
        assert_eq!(buf[2], VERSION);
        assert_eq!(buf[3], FrameType::Data as u8);
        assert_eq!(buf[4], FLAG_ENCRYPTED);
        assert_eq!(buf[5], 1);
        assert_eq!(buf[6], 2);
        assert_eq!(&buf[8..12], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&buf[12..16], &[0, 0, 0, 7]);
        assert_eq!(&buf[16..24], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[24..28], &[0, 0, 0, 9]);
        assert_eq!(&buf[28..32], &[0, 1, 0, 3]);
        assert_eq!(&buf[32..36], &[0, 5, 0, 0]);
        assert_eq!(&buf[36..48], &[0xaa; 12]);
        assert_eq!(buf.len(), HEADER_LEN + 5 + TAG_LEN);
    }

    #[test]
    fn round_trip_and_parts() {
        let header = sample_header();
        let mut buf = encrypted_frame(&header);
        buf[HEADER_LEN..HEADER_LEN + 5].copy_from_slice(b"hello");
        let (decoded, payload) = Header::decode(&buf).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(payload, b"hello");
        let parts = split_frame_mut(&mut buf, &decoded).unwrap();
        assert_eq!(parts.aad.len(), HEADER_LEN);
        assert_eq!(parts.payload, b"hello");
        assert!(parts.tag.is_some());
    }

    #[test]
    fn cheap_checks_come_first() {
        let header = sample_header();
        let mut buf = encrypted_frame(&header);
        // A foreign cluster is reported as such even if later fields are garbage.
        buf[3] = 0xff;
        assert_eq!(
            Header::decode_for_cluster(&buf, ClusterId(1)),
            Err(WireError::ForeignCluster {
                expected: 1,
                got: 0xdead_beef
            })
        );
        buf[0] = 0;
        assert!(matches!(
            Header::decode_for_cluster(&buf, ClusterId(1)),
            Err(WireError::BadMagic(_))
        ));
        assert!(matches!(
            Header::decode(&buf[..10]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_length_mismatch_and_bad_fields() {
        let header = sample_header();
        let buf = encrypted_frame(&header);
        assert!(matches!(
            Header::decode(&buf[..buf.len() - 1]),
            Err(WireError::LengthMismatch { .. })
        ));
        let mut longer = buf.clone();
        longer.push(0);
        assert!(matches!(
            Header::decode(&longer),
            Err(WireError::LengthMismatch { .. })
        ));
        let mut bad = buf.clone();
        bad[6] = MAX_LINKS as u8;
        assert_eq!(
            Header::decode(&bad),
            Err(WireError::LinkOutOfRange(MAX_LINKS as u8))
        );
        let mut bad = buf.clone();
        bad[4] = 0x80 | FLAG_ENCRYPTED;
        assert_eq!(Header::decode(&bad), Err(WireError::UnknownFlags(0x80)));
        let mut bad = buf.clone();
        bad[29] = 3; // index 3 of 3
        assert!(matches!(
            Header::decode(&bad),
            Err(WireError::BadFragment { .. })
        ));
        let mut bad = buf;
        bad[2] = VERSION + 1;
        assert_eq!(
            Header::decode(&bad),
            Err(WireError::UnsupportedVersion(VERSION + 1))
        );
        bad[2] = 1; // the first version: other keys, refused by version before any crypto
        assert_eq!(Header::decode(&bad), Err(WireError::UnsupportedVersion(1)));
    }

    #[test]
    fn unencrypted_frames_carry_no_crypto_fields() {
        let mut header = sample_header();
        header.encrypted = false;
        let mut buf = [0u8; 64];
        assert_eq!(
            header.encode_into(&mut buf),
            Err(WireError::CryptoFieldsWithoutEncryption)
        );
        header.key_id = 0;
        header.nonce = [0; NONCE_LEN];
        let len = header.encode_frame_into(b"abcde", &mut buf).unwrap();
        assert_eq!(len, HEADER_LEN + 5);
        let (decoded, payload) = Header::decode(&buf[..len]).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(payload, b"abcde");
    }

    #[test]
    fn control_frames_are_never_fragmented() {
        let mut header = sample_header();
        header.frame_type = FrameType::Ping;
        let mut buf = [0u8; HEADER_LEN];
        assert!(matches!(
            header.encode_into(&mut buf),
            Err(WireError::BadFragment { .. })
        ));
        header.fragment = Fragment::WHOLE;
        assert_eq!(header.encode_into(&mut buf), Ok(HEADER_LEN));
    }

    #[test]
    fn cluster_id_is_stable_and_name_dependent() {
        let a = ClusterId::from_cluster_name("pve-cluster");
        assert_eq!(a, ClusterId::from_cluster_name("pve-cluster"));
        assert_ne!(a, ClusterId::from_cluster_name("pve-cluster2"));
    }

    #[test]
    fn ping_and_probe_bodies() {
        let ping = PingBody {
            sent_at_ns: 123_456_789,
            ping_seq: 42,
        };
        let mut buf = [0u8; PingBody::LEN];
        ping.encode_into(&mut buf).unwrap();
        assert_eq!(PingBody::decode(&buf), Ok(ping));
        assert!(PingBody::decode(&buf[..15]).is_err());

        let payload_len = MtuProbeBody::probe_payload_len(1200, true).unwrap();
        let probe = MtuProbeBody {
            probe_id: 5,
            frame_len: 1200,
        };
        let mut payload = vec![0u8; usize::from(payload_len)];
        probe.encode_into(&mut payload).unwrap();
        assert_eq!(MtuProbeBody::decode_probe(&payload, 1200), Ok(probe));
        assert!(MtuProbeBody::decode_probe(&payload, 1199).is_err());
        payload[100] = 1;
        assert!(MtuProbeBody::decode_probe(&payload, 1200).is_err());
        assert_eq!(MtuProbeBody::decode_reply(&payload[..6]), Ok(probe));
        assert_eq!(MtuProbeBody::probe_payload_len(HEADER_LEN + 5, false), None);
        assert_eq!(
            MtuProbeBody::probe_payload_len(MAX_FRAME_LEN + 1, false),
            None
        );
    }
}
