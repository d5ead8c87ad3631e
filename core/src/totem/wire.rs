//! Wire codec of the totem messages: ORF token, multicast, merge detect, join, commit token and
//! token hold cancel (REFERENCE.md §2.3 lists corosync's set; the layout here is our own).
//!
//! Every frame starts with an 8-byte header, all integers little-endian:
//!
//! ```text
//!  0      2       3      4            8
//!  +------+-------+------+------------+---------------------
//!  |magic |version| type |  sender    |  body (per type)
//!  |0xC070|   1   | 0..5 |  node id   |
//!  +------+-------+------+------------+---------------------
//! ```
//!
//! `sender` is the node that transmitted this frame (a retransmitted multicast keeps its original
//! author in the body). Decoding is a bounds-checked reader in the style of rustls' `codec`: no
//! panics, no allocation beyond what the frame length justifies, trailing bytes rejected.

use super::{Order, RingId};
use crate::NodeId;
use thiserror::Error;

/// First two bytes of every totem frame (corosync's `TOTEM_MH_MAGIC`).
pub const MAGIC: u16 = 0xC070;
/// Version of this encoding.
pub const VERSION: u8 = 1;
/// Bytes of the common header.
pub const HEADER_LEN: usize = 8;
/// Largest retransmit list on a token (corosync `RETRANSMIT_ENTRIES_MAX`, `totemsrp.c` l.96).
pub const RETRANSMIT_ENTRIES_MAX: usize = 30;
/// Bytes of an encoded ring id.
pub const RING_ID_LEN: usize = 12;
/// Multicast bytes besides the payload, encapsulated form included: header + ring id + seq +
/// origin + order + encapsulation flag + (ring id + seq + sender + order) + payload length.
pub const MCAST_OVERHEAD_MAX: usize =
    HEADER_LEN + RING_ID_LEN + 8 + 4 + 1 + 1 + RING_ID_LEN + 8 + 4 + 1 + 4;

const TYPE_TOKEN: u8 = 0;
const TYPE_MCAST: u8 = 1;
const TYPE_MERGE_DETECT: u8 = 2;
const TYPE_JOIN: u8 = 3;
const TYPE_COMMIT_TOKEN: u8 = 4;
const TYPE_TOKEN_HOLD_CANCEL: u8 = 5;

const TOKEN_FLAG_RETRANS: u8 = 1;
const TOKEN_FLAG_INSTALL: u8 = 2;

/// Why a frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The frame ended inside a field.
    #[error("frame truncated: needed {needed} more bytes for {field}")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// Not a totem frame.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A totem frame of another encoding version.
    #[error("unsupported totem wire version {0}")]
    UnsupportedVersion(u8),
    /// Unknown message type.
    #[error("unknown totem message type {0}")]
    UnknownType(u8),
    /// A field holds a value outside its domain.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// The value read.
        value: u64,
    },
    /// Bytes left after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// The frame's sender field is not the node the transport received it from.
    #[error("frame claims sender {claimed} but came from {from}")]
    SenderMismatch {
        /// Sender in the header.
        claimed: NodeId,
        /// Sender according to the transport.
        from: NodeId,
    },
}

/// The ordering/reliability/flow-control token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Ring the token belongs to.
    pub ring_id: RingId,
    /// Hop counter: each forward increments it; receivers drop tokens they have already seen.
    pub token_seq: u64,
    /// Highest message sequence number assigned on the ring.
    pub seq: u64,
    /// All-received-up-to, lowered by any node missing messages.
    pub aru: u64,
    /// Node that last set `aru` below `seq` (0: none).
    pub aru_addr: NodeId,
    /// Messages multicast during the last rotation (flow control).
    pub fcc: u32,
    /// Messages waiting in the nodes' send queues.
    pub backlog: u32,
    /// RECOVERY: some node still has old-ring messages to retransmit.
    pub retrans_flg: bool,
    /// RECOVERY: the representative has seen recovery complete; install the new ring.
    pub install: bool,
    /// Sequence numbers some node is missing.
    pub rtr: Vec<u64>,
}

/// An old-ring message carried on the new ring during RECOVERY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encapsulated {
    /// Ring the message was ordered on.
    pub ring_id: RingId,
    /// Its sequence number there.
    pub seq: u64,
    /// Its author.
    pub origin: NodeId,
    /// Its delivery guarantee.
    pub order: Order,
    /// The old-ring message was itself a recovery carrier (delivers nothing, fills its slot).
    pub nested: bool,
}

/// A multicast message (one packet of client data, or an encapsulated old-ring message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mcast {
    /// Ring the message is ordered on.
    pub ring_id: RingId,
    /// Sequence number on that ring.
    pub seq: u64,
    /// Node that first multicast it.
    pub origin: NodeId,
    /// Delivery guarantee.
    pub order: Order,
    /// Set during RECOVERY: this is an old-ring message (`payload` is its payload).
    pub encapsulated: Option<Encapsulated>,
    /// Packed client data (see `frag`).
    pub payload: Vec<u8>,
}

/// Membership proposal exchanged in GATHER; a join naming its own sender as failed is a leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// Highest ring sequence number the sender knows.
    pub ring_seq: u64,
    /// Processors the sender believes in the membership.
    pub proc_list: Vec<NodeId>,
    /// Processors the sender believes failed.
    pub failed_list: Vec<NodeId>,
}

/// One member's state as carried by the commit token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitEntry {
    /// Member node.
    pub node: NodeId,
    /// The member's last operational ring.
    pub old_ring_id: RingId,
    /// Its all-received-up-to on that ring.
    pub aru: u64,
    /// Highest sequence number it received there.
    pub high_seq: u64,
    /// Highest sequence number it knows every old-ring member had (safe).
    pub safe_upto: u64,
    /// Whether the member has filled this entry.
    pub filled: bool,
}

/// The token that installs a new membership (COMMIT → RECOVERY).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitToken {
    /// The ring being formed.
    pub ring_id: RingId,
    /// Hop counter.
    pub token_seq: u64,
    /// Members in ring order, with their old-ring state.
    pub entries: Vec<CommitEntry>,
}

/// Any totem message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// ORF token.
    Token(Token),
    /// Multicast.
    Mcast(Mcast),
    /// Merge detect, sent by a ring's representative to find other partitions.
    MergeDetect {
        /// The sender's ring.
        ring_id: RingId,
    },
    /// Join.
    Join(Join),
    /// Commit token.
    CommitToken(CommitToken),
    /// Ask the node holding the token to pass it on now.
    TokenHoldCancel {
        /// The ring whose token to release.
        ring_id: RingId,
    },
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Node that transmitted this frame.
    pub sender: NodeId,
    /// The message.
    pub body: Body,
}

impl Frame {
    /// Encodes into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let ty = match &self.body {
            Body::Token(_) => TYPE_TOKEN,
            Body::Mcast(_) => TYPE_MCAST,
            Body::MergeDetect { .. } => TYPE_MERGE_DETECT,
            Body::Join(_) => TYPE_JOIN,
            Body::CommitToken(_) => TYPE_COMMIT_TOKEN,
            Body::TokenHoldCancel { .. } => TYPE_TOKEN_HOLD_CANCEL,
        };
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(VERSION);
        out.push(ty);
        put_u32(out, self.sender);
        match &self.body {
            Body::Token(t) => {
                put_ring(out, t.ring_id);
                put_u64(out, t.token_seq);
                put_u64(out, t.seq);
                put_u64(out, t.aru);
                put_u32(out, t.aru_addr);
                put_u32(out, t.fcc);
                put_u32(out, t.backlog);
                let mut flags = 0;
                if t.retrans_flg {
                    flags |= TOKEN_FLAG_RETRANS;
                }
                if t.install {
                    flags |= TOKEN_FLAG_INSTALL;
                }
                out.push(flags);
                put_len16(out, t.rtr.len());
                for &s in &t.rtr {
                    put_u64(out, s);
                }
            }
            Body::Mcast(m) => {
                put_ring(out, m.ring_id);
                put_u64(out, m.seq);
                put_u32(out, m.origin);
                out.push(order_byte(m.order));
                match &m.encapsulated {
                    None => out.push(0),
                    Some(e) => {
                        out.push(if e.nested { 2 } else { 1 });
                        put_ring(out, e.ring_id);
                        put_u64(out, e.seq);
                        put_u32(out, e.origin);
                        out.push(order_byte(e.order));
                    }
                }
                put_u32(out, u32::try_from(m.payload.len()).unwrap_or(u32::MAX));
                out.extend_from_slice(&m.payload);
            }
            Body::MergeDetect { ring_id } | Body::TokenHoldCancel { ring_id } => {
                put_ring(out, *ring_id)
            }
            Body::Join(j) => {
                put_u64(out, j.ring_seq);
                put_nodes(out, &j.proc_list);
                put_nodes(out, &j.failed_list);
            }
            Body::CommitToken(c) => {
                put_ring(out, c.ring_id);
                put_u64(out, c.token_seq);
                put_len16(out, c.entries.len());
                for e in &c.entries {
                    put_u32(out, e.node);
                    put_ring(out, e.old_ring_id);
                    put_u64(out, e.aru);
                    put_u64(out, e.high_seq);
                    put_u64(out, e.safe_upto);
                    out.push(u8::from(e.filled));
                }
            }
        }
    }

    /// Decodes one frame; the whole input must be the frame.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = Reader { buf: bytes };
        let magic = r.u16("magic")?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let ty = r.u8("type")?;
        let sender = r.node("sender")?;
        let body = match ty {
            TYPE_TOKEN => {
                let ring_id = r.ring()?;
                let token_seq = r.u64("token_seq")?;
                let seq = r.u64("seq")?;
                let aru = r.u64("aru")?;
                let aru_addr = r.u32("aru_addr")?;
                let fcc = r.u32("fcc")?;
                let backlog = r.u32("backlog")?;
                let flags = r.u8("flags")?;
                if flags & !(TOKEN_FLAG_RETRANS | TOKEN_FLAG_INSTALL) != 0 {
                    return Err(DecodeError::Invalid {
                        field: "token flags",
                        value: flags.into(),
                    });
                }
                let n = usize::from(r.u16("rtr count")?);
                if n > RETRANSMIT_ENTRIES_MAX {
                    return Err(DecodeError::Invalid {
                        field: "rtr count",
                        value: n as u64,
                    });
                }
                let mut rtr = Vec::with_capacity(n);
                for _ in 0..n {
                    rtr.push(r.u64("rtr entry")?);
                }
                Body::Token(Token {
                    ring_id,
                    token_seq,
                    seq,
                    aru,
                    aru_addr,
                    fcc,
                    backlog,
                    retrans_flg: flags & TOKEN_FLAG_RETRANS != 0,
                    install: flags & TOKEN_FLAG_INSTALL != 0,
                    rtr,
                })
            }
            TYPE_MCAST => {
                let ring_id = r.ring()?;
                let seq = r.u64("seq")?;
                let origin = r.node("origin")?;
                let order = r.order()?;
                let encapsulated = match r.u8("encapsulated")? {
                    0 => None,
                    kind @ (1 | 2) => Some(Encapsulated {
                        ring_id: r.ring()?,
                        seq: r.u64("encapsulated seq")?,
                        origin: r.node("encapsulated origin")?,
                        order: r.order()?,
                        nested: kind == 2,
                    }),
                    v => {
                        return Err(DecodeError::Invalid {
                            field: "encapsulated",
                            value: v.into(),
                        })
                    }
                };
                let len = r.u32("payload length")? as usize;
                let payload = r.take(len, "payload")?.to_vec();
                Body::Mcast(Mcast {
                    ring_id,
                    seq,
                    origin,
                    order,
                    encapsulated,
                    payload,
                })
            }
            TYPE_MERGE_DETECT => Body::MergeDetect { ring_id: r.ring()? },
            TYPE_JOIN => Body::Join(Join {
                ring_seq: r.u64("ring_seq")?,
                proc_list: r.nodes("proc_list")?,
                failed_list: r.nodes("failed_list")?,
            }),
            TYPE_COMMIT_TOKEN => {
                let ring_id = r.ring()?;
                let token_seq = r.u64("token_seq")?;
                let n = usize::from(r.u16("entry count")?);
                if n == 0 {
                    return Err(DecodeError::Invalid {
                        field: "entry count",
                        value: 0,
                    });
                }
                let mut entries = Vec::with_capacity(n.min(r.buf.len() / 41 + 1));
                for _ in 0..n {
                    let node = r.node("entry node")?;
                    let old_ring_id = r.ring()?;
                    let aru = r.u64("entry aru")?;
                    let high_seq = r.u64("entry high_seq")?;
                    let safe_upto = r.u64("entry safe_upto")?;
                    let filled = match r.u8("entry filled")? {
                        0 => false,
                        1 => true,
                        v => {
                            return Err(DecodeError::Invalid {
                                field: "entry filled",
                                value: v.into(),
                            })
                        }
                    };
                    entries.push(CommitEntry {
                        node,
                        old_ring_id,
                        aru,
                        high_seq,
                        safe_upto,
                        filled,
                    });
                }
                Body::CommitToken(CommitToken {
                    ring_id,
                    token_seq,
                    entries,
                })
            }
            TYPE_TOKEN_HOLD_CANCEL => Body::TokenHoldCancel { ring_id: r.ring()? },
            other => return Err(DecodeError::UnknownType(other)),
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::Trailing(r.buf.len()));
        }
        Ok(Frame { sender, body })
    }
}

fn order_byte(o: Order) -> u8 {
    match o {
        Order::Agreed => 0,
        Order::Safe => 1,
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

fn put_ring(out: &mut Vec<u8>, r: RingId) {
    put_u32(out, r.rep);
    put_u64(out, r.seq);
}

fn put_nodes(out: &mut Vec<u8>, nodes: &[NodeId]) {
    put_len16(out, nodes.len());
    for &n in nodes.iter().take(usize::from(u16::MAX)) {
        put_u32(out, n);
    }
}

/// Bounds-checked cursor over a frame.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n - self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn node(&mut self, field: &'static str) -> Result<NodeId, DecodeError> {
        match self.u32(field)? {
            0 => Err(DecodeError::Invalid { field, value: 0 }),
            n => Ok(n),
        }
    }

    fn ring(&mut self) -> Result<RingId, DecodeError> {
        Ok(RingId {
            rep: self.node("ring rep")?,
            seq: self.u64("ring seq")?,
        })
    }

    fn order(&mut self) -> Result<Order, DecodeError> {
        match self.u8("order")? {
            0 => Ok(Order::Agreed),
            1 => Ok(Order::Safe),
            v => Err(DecodeError::Invalid {
                field: "order",
                value: v.into(),
            }),
        }
    }

    fn nodes(&mut self, field: &'static str) -> Result<Vec<NodeId>, DecodeError> {
        let n = usize::from(self.u16(field)?);
        if self.buf.len() < n * 4 {
            return Err(DecodeError::Truncated {
                field,
                needed: n * 4 - self.buf.len(),
            });
        }
        (0..n).map(|_| self.node(field)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> impl Strategy<Value = RingId> {
        (1u32.., any::<u64>()).prop_map(|(rep, seq)| RingId { rep, seq })
    }

    fn order() -> impl Strategy<Value = Order> {
        prop_oneof![Just(Order::Agreed), Just(Order::Safe)]
    }

    fn body() -> impl Strategy<Value = Body> {
        let token = (
            ring(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<(bool, bool)>(),
            proptest::collection::vec(any::<u64>(), 0..=RETRANSMIT_ENTRIES_MAX),
        )
            .prop_map(
                |(ring_id, token_seq, seq, aru, aru_addr, fcc, backlog, (r, i), rtr)| {
                    Body::Token(Token {
                        ring_id,
                        token_seq,
                        seq,
                        aru,
                        aru_addr,
                        fcc,
                        backlog,
                        retrans_flg: r,
                        install: i,
                        rtr,
                    })
                },
            );
        let encap = proptest::option::of(
            (ring(), any::<u64>(), 1u32.., order(), any::<bool>()).prop_map(
                |(ring_id, seq, origin, order, nested)| Encapsulated {
                    ring_id,
                    seq,
                    origin,
                    order,
                    nested,
                },
            ),
        );
        let mcast = (
            ring(),
            any::<u64>(),
            1u32..,
            order(),
            encap,
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(ring_id, seq, origin, order, encapsulated, payload)| {
                Body::Mcast(Mcast {
                    ring_id,
                    seq,
                    origin,
                    order,
                    encapsulated,
                    payload,
                })
            });
        let join = (
            any::<u64>(),
            proptest::collection::vec(1u32.., 0..20),
            proptest::collection::vec(1u32.., 0..20),
        )
            .prop_map(|(ring_seq, proc_list, failed_list)| {
                Body::Join(Join {
                    ring_seq,
                    proc_list,
                    failed_list,
                })
            });
        let entry = (
            1u32..,
            ring(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(node, old_ring_id, aru, high_seq, safe_upto, filled)| {
                CommitEntry {
                    node,
                    old_ring_id,
                    aru,
                    high_seq,
                    safe_upto,
                    filled,
                }
            });
        let commit = (
            ring(),
            any::<u64>(),
            proptest::collection::vec(entry, 1..20),
        )
            .prop_map(|(ring_id, token_seq, entries)| {
                Body::CommitToken(CommitToken {
                    ring_id,
                    token_seq,
                    entries,
                })
            });
        prop_oneof![
            token,
            mcast,
            join,
            commit,
            ring().prop_map(|ring_id| Body::MergeDetect { ring_id }),
            ring().prop_map(|ring_id| Body::TokenHoldCancel { ring_id }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(sender in 1u32.., body in body()) {
            let frame = Frame { sender, body };
            let bytes = frame.encode();
            prop_assert_eq!(Frame::decode(&bytes), Ok(frame));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(f) = Frame::decode(&bytes) {
                prop_assert_eq!(f.encode(), bytes);
            }
        }

        #[test]
        fn every_truncation_is_an_error(sender in 1u32.., body in body()) {
            let bytes = Frame { sender, body }.encode();
            for cut in 0..bytes.len() {
                prop_assert!(Frame::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn rejects_foreign_and_future_frames() {
        let f = Frame {
            sender: 1,
            body: Body::MergeDetect {
                ring_id: RingId { rep: 1, seq: 4 },
            },
        };
        let mut b = f.encode();
        b[2] = 2;
        assert_eq!(Frame::decode(&b), Err(DecodeError::UnsupportedVersion(2)));
        b[0] = 0;
        assert!(matches!(Frame::decode(&b), Err(DecodeError::BadMagic(_))));
        let mut b = f.encode();
        b.push(0);
        assert_eq!(Frame::decode(&b), Err(DecodeError::Trailing(1)));
    }
}
