//! The tools' socket: one [`LinkIo`] of the transport (io_uring or recvmmsg/sendmmsg, batched)
//! plus optional AES-256-GCM sealing with totem-crypto, and decoding of [`crate::wire`] messages.
//!
//! Sealed datagram: `header (flag FLAG_SEALED, used as AAD) | key id | nonce (12) | ciphertext | tag`.
//!
//! Keys: like the daemon's nodes, every run seals under its own key, derived from the authkey with
//! the low 32 bits of its random session id as the sender id ([`sender_id`]); the receiver derives
//! the sender's key from the session in the (authenticated) header, once per session, and keeps
//! its replay window under the same id. The tools keep no state, so each run's nonces start at a
//! random salt and a random counter below 2^63 (`NonceStart::random`): two runs reuse a nonce only
//! if their 32-bit session ids match, then their salts, then their counter ranges overlap.
//! Servers meet a new session per client run, so their sender table drops the session heard from
//! least recently when full instead of refusing new clients.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Instant;

use thiserror::Error;
use totem_crypto::{
    AuthKey, ClusterKey, Nonce, NonceStart, OpenError, Opener, Sealer, WhenFull, NONCE_LEN, TAG_LEN,
};
use totem_transport::io::{
    self as linkio, Backend, BackendKind, Incoming, IoOptions, LinkIo, PathError, RecvSummary,
    Waker,
};

use crate::wire::{self, Body, DecodeError, Header, FLAG_SEALED, HEADER_LEN};

/// Cluster name the tools' frame key is derived under (a fixed label: the tools are not a cluster).
pub const TOOLS_KDF_LABEL: &str = "totem-tools";
/// Bytes a sealed datagram adds: key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Why a link could not be opened or a message not sent.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("cannot bind {addr}: address already in use (another instance, or pick another port)")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot bind {addr}: it is not an address of this host")]
    AddrNotAvailable { addr: SocketAddr },
    #[error("cannot open a socket on {addr}: {source}")]
    Open { addr: SocketAddr, source: io::Error },
    #[error("cannot load the key {path}: {source}")]
    Key {
        path: String,
        source: totem_crypto::KeyError,
    },
    #[error("cannot encode a message: {0}")]
    Encode(#[from] wire::EncodeError),
    #[error("cannot seal a message: {0}")]
    Seal(#[from] totem_crypto::SealError),
    #[error("cannot start the nonce sequence: {0}")]
    Random(#[from] totem_crypto::RandomError),
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// Why a received datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("{0}")]
    Decode(DecodeError),
    #[error("encrypted frame does not open: {0} (different key?)")]
    Auth(OpenError),
    #[error(
        "peer sends encrypted frames but encryption is off here (use the same --encrypt/--key)"
    )]
    UnexpectedSealed,
    #[error("peer sends clear frames but encryption is on here (use the same --encrypt/--key)")]
    UnexpectedClear,
}

/// One thing a receive call saw.
#[derive(Debug)]
pub enum Event {
    /// A decoded message.
    Message {
        /// Source address.
        from: SocketAddr,
        /// Its header.
        header: Header,
        /// Its body.
        body: Body,
        /// Datagram length on the wire.
        len: usize,
    },
    /// A datagram that was dropped, with the reason.
    Rejected {
        /// Source address.
        from: SocketAddr,
        /// Why.
        reason: Rejection,
    },
    /// A destination reported an error (ICMP unreachable...).
    PathError(PathError),
}

/// How to open a [`Link`].
#[derive(Clone, Debug, Default)]
pub struct LinkConfig {
    /// I/O backend (`Auto`: io_uring when available).
    pub backend: Backend,
    /// Datagrams per send/receive batch.
    pub batch: usize,
    /// SO_RCVBUF/SO_SNDBUF; `None`: the transport's default (8 MiB).
    pub socket_buffer_bytes: Option<usize>,
    /// Key material: `Some` seals every datagram (each run under its own key, see the module doc).
    pub key: Option<ClusterKey>,
}

/// Sealing and opening state when encryption is on.
struct Security {
    sealer: Sealer,
    opener: Opener,
}

impl Security {
    /// Seals as the run with `session`; opens any run's frames.
    fn new(key: &ClusterKey, session: u64, start: NonceStart) -> Security {
        Security {
            sealer: Sealer::new(key, sender_id(session), start),
            opener: Opener::new(key.clone()).when_full(WhenFull::EvictLeastRecent),
        }
    }
}

/// The sender id a run's frames are sealed and opened under: the low 32 bits of its session.
pub fn sender_id(session: u64) -> u32 {
    session as u32
}

/// Loads the authkey at `path` and derives the tools' key material from it.
pub fn load_key(path: &Path) -> Result<ClusterKey, LinkError> {
    let (key, _warning) = AuthKey::load(path).map_err(|source| LinkError::Key {
        path: path.display().to_string(),
        source,
    })?;
    Ok(ClusterKey::derive(&key, TOOLS_KDF_LABEL, 0))
}

/// A bound socket speaking the tools' protocol.
pub struct Link {
    io: LinkIo,
    session: u64,
    security: Option<Security>,
    encode_buf: Vec<u8>,
    out_buf: Vec<u8>,
    out: Vec<(SocketAddr, Range<usize>)>,
    open_buf: Vec<u8>,
}

impl Link {
    /// Binds `addr` as `config` says.
    pub fn open(addr: SocketAddr, config: &LinkConfig) -> Result<Link, LinkError> {
        let opts = IoOptions {
            max_datagram_bytes: linkio::MAX_DATAGRAM_BYTES,
            batch_max: config.batch.clamp(1, 1024),
            socket_buffer_bytes: config
                .socket_buffer_bytes
                .unwrap_or(linkio::SOCKET_BUFFER_BYTES_DEFAULT),
            ..IoOptions::default()
        };
        let backend = config.backend;
        let key = config.key.clone();
        let io = linkio::open(addr, backend, &opts).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => LinkError::AddrInUse { addr },
            io::ErrorKind::AddrNotAvailable => LinkError::AddrNotAvailable { addr },
            _ => LinkError::Open { addr, source },
        })?;
        let session = crate::random::u64();
        let security = match key {
            Some(key) => Some(Security::new(&key, session, NonceStart::random()?)),
            None => None,
        };
        Ok(Link {
            io,
            session,
            security,
            encode_buf: Vec::with_capacity(2048),
            out_buf: Vec::with_capacity(64 * 1024),
            out: Vec::with_capacity(64),
            open_buf: Vec::with_capacity(2048),
        })
    }

    /// This run's session id (carried in every datagram we send).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The backend really in use.
    pub fn backend(&self) -> BackendKind {
        self.io.kind()
    }

    /// The batch size really in use.
    pub fn batch(&self) -> usize {
        self.io.options().batch_max
    }

    /// Whether this socket sends runs with UDP GSO (STYLE: the tools say what path they used).
    pub fn gso(&self) -> bool {
        self.io.offload().gso
    }

    /// True when frames are sealed.
    pub fn encrypted(&self) -> bool {
        self.security.is_some()
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// A handle that makes a blocked [`Link::recv`] return, from another thread.
    pub fn waker(&self) -> Waker {
        self.io.waker()
    }

    /// Datagrams waiting for [`Link::flush`].
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Queues `body` for `dest`, padded to `pad_to` bytes on the wire (sealing overhead included).
    pub fn queue(&mut self, dest: SocketAddr, body: &Body, pad_to: usize) -> Result<(), LinkError> {
        let start = self.out_buf.len();
        match &mut self.security {
            None => {
                wire::encode(&mut self.encode_buf, self.session, body, pad_to)?;
                self.out_buf.extend_from_slice(&self.encode_buf);
            }
            Some(sec) => {
                let clear_len = pad_to.saturating_sub(SEAL_OVERHEAD);
                wire::encode(&mut self.encode_buf, self.session, body, clear_len)?;
                self.encode_buf[6] |= FLAG_SEALED;
                let (key_id, nonce) = sec.sealer.next_nonce()?;
                let (head, payload) = self.encode_buf.split_at_mut(HEADER_LEN);
                let tag = sec.sealer.seal_in_place(&nonce, head, payload)?;
                self.out_buf.extend_from_slice(head);
                self.out_buf.push(key_id);
                self.out_buf.extend_from_slice(&nonce.0);
                self.out_buf.extend_from_slice(payload);
                self.out_buf.extend_from_slice(&tag);
            }
        }
        self.out.push((dest, start..self.out_buf.len()));
        Ok(())
    }

    /// Sends everything queued; returns how many datagrams the kernel took.
    pub fn flush(&mut self) -> Result<usize, LinkError> {
        if self.out.is_empty() {
            return Ok(0);
        }
        let batch: Vec<(SocketAddr, &[u8])> = self
            .out
            .iter()
            .map(|(dest, range)| (*dest, &self.out_buf[range.clone()]))
            .collect();
        let sent = self.io.send_batch(&batch);
        self.out.clear();
        self.out_buf.clear();
        Ok(sent?)
    }

    /// Waits until datagrams arrive or `deadline` passes and hands each decoded one to `f`.
    pub fn recv<F>(&mut self, deadline: Option<Instant>, mut f: F) -> Result<RecvSummary, LinkError>
    where
        F: FnMut(Event),
    {
        let security = &mut self.security;
        let open_buf = &mut self.open_buf;
        let summary = self.io.recv_each(deadline, |item| match item {
            Incoming::Datagram { from, data } => f(decode_datagram(security, open_buf, from, data)),
            Incoming::PathError(e) => f(Event::PathError(e)),
        })?;
        Ok(summary)
    }
}

/// The socket, for socket options (multicast membership, TTL); never for I/O.
impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

/// Decodes (and opens when sealed) one datagram.
fn decode_datagram(
    security: &mut Option<Security>,
    open_buf: &mut Vec<u8>,
    from: SocketAddr,
    data: &[u8],
) -> Event {
    let reject = |reason| Event::Rejected { from, reason };
    let header = match wire::decode_header(data) {
        Ok(h) => h,
        Err(e) => return reject(Rejection::Decode(e)),
    };
    let sealed = header.flags & FLAG_SEALED != 0;
    let body = match (security, sealed) {
        (None, false) => wire::decode_body(&header, &data[HEADER_LEN..]),
        (None, true) => return reject(Rejection::UnexpectedSealed),
        (Some(_), false) => return reject(Rejection::UnexpectedClear),
        (Some(sec), true) => {
            let rest = &data[HEADER_LEN..];
            let Some((&key_id, rest)) = rest.split_first() else {
                return reject(Rejection::Auth(OpenError::Truncated));
            };
            let Some((nonce, body)) = rest.split_first_chunk::<NONCE_LEN>() else {
                return reject(Rejection::Auth(OpenError::Truncated));
            };
            open_buf.clear();
            open_buf.extend_from_slice(body);
            let sender = sender_id(header.session);
            match sec.opener.open_in_place_tag_suffix(
                sender,
                key_id,
                &Nonce(*nonce),
                &data[..HEADER_LEN],
                open_buf,
            ) {
                Ok(plain) => wire::decode_body(&header, plain),
                Err(e) => return reject(Rejection::Auth(e)),
            }
        }
    };
    match body {
        Ok(body) => Event::Message {
            from,
            header,
            body,
            len: data.len(),
        },
        Err(e) => reject(Rejection::Decode(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The session [`seal`] puts in its headers.
    const SESSION: u64 = 0xfeed;

    fn security(seed: u8) -> Security {
        security_of(seed, SESSION)
    }

    fn security_of(seed: u8, session: u64) -> Security {
        let key = AuthKey::from_bytes(&[seed; 128]).unwrap();
        let key = ClusterKey::derive(&key, TOOLS_KDF_LABEL, 0);
        Security::new(&key, session, NonceStart::random().unwrap())
    }

    fn from() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    /// Seals like [`Link::queue`] without a socket.
    fn seal(sec: &mut Security, body: &Body, pad: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        wire::encode(&mut buf, SESSION, body, pad.saturating_sub(SEAL_OVERHEAD)).unwrap();
        buf[6] |= FLAG_SEALED;
        let (key_id, nonce) = sec.sealer.next_nonce().unwrap();
        let (head, payload) = buf.split_at_mut(HEADER_LEN);
        let tag = sec.sealer.seal_in_place(&nonce, head, payload).unwrap();
        let mut out = head.to_vec();
        out.push(key_id);
        out.extend_from_slice(&nonce.0);
        out.extend_from_slice(payload);
        out.extend_from_slice(&tag);
        out
    }

    #[test]
    fn sealed_round_trip_and_mismatches() {
        let mut sender = security(1);
        let body = Body::Query {
            seq: 5,
            sent_ns: 77,
        };
        let datagram = seal(&mut sender, &body, 200);
        assert_eq!(datagram.len(), 200);
        let mut buf = Vec::new();
        match decode_datagram(&mut Some(security(1)), &mut buf, from(), &datagram) {
            Event::Message { body: got, len, .. } => {
                assert_eq!(got, body);
                assert_eq!(len, 200);
            }
            other => panic!("{other:?}"),
        }
        match decode_datagram(&mut Some(security(2)), &mut buf, from(), &datagram) {
            Event::Rejected {
                reason: Rejection::Auth(OpenError::BadTag),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        match decode_datagram(&mut None, &mut buf, from(), &datagram) {
            Event::Rejected {
                reason: Rejection::UnexpectedSealed,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        let mut clear = Vec::new();
        wire::encode(&mut clear, 1, &body, 0).unwrap();
        match decode_datagram(&mut Some(security(1)), &mut buf, from(), &clear) {
            Event::Rejected {
                reason: Rejection::UnexpectedClear,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }

    /// Two runs talk to each other: each opens the other's frames under the other's session,
    /// and a frame whose header session is rewritten no longer opens.
    #[test]
    fn two_runs_open_each_others_frames_and_not_a_rewritten_session() {
        let mut receiver = Some(security_of(1, 0xbeef));
        let mut buf = Vec::new();
        let body = Body::Init { group: None };
        let datagram = seal(&mut security(1), &body, 120);
        match decode_datagram(&mut receiver, &mut buf, from(), &datagram) {
            Event::Message {
                header, body: got, ..
            } => {
                assert_eq!(header.session, SESSION);
                assert_eq!(got, body);
            }
            other => panic!("{other:?}"),
        }
        let mut rewritten = seal(&mut security(1), &body, 120);
        // The session (header bytes 8..16) names the sender and its key.
        rewritten[15] ^= 0x01;
        match decode_datagram(&mut receiver, &mut buf, from(), &rewritten) {
            Event::Rejected {
                reason: Rejection::Auth(OpenError::BadTag),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120), sealed in any::<bool>()) {
            if bytes.len() >= HEADER_LEN {
                bytes[..4].copy_from_slice(&wire::MAGIC);
                bytes[4] = wire::PROTOCOL_VERSION;
                bytes[6] = u8::from(sealed);
            }
            let mut buf = Vec::new();
            let _ = decode_datagram(&mut Some(security(3)), &mut buf, from(), &bytes);
            let _ = decode_datagram(&mut None, &mut buf, from(), &bytes);
        }
    }
}
