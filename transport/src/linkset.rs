//! The link set: what the daemon and Totem use to talk to their peers over up to eight links.
//!
//! [`LinkSet::start`] opens one socket and starts one reactor thread per link
//! ([`crate::reactor`]). [`LinkSet::send`] fragments a message, picks the links of each
//! destination with its [`PeerPolicy`] (passive / active / rr, plus the suspect fallback) and
//! queues one frame per fragment and link; the reactors seal and send them in batches.
//! [`LinkSet::recv`] returns [`Event`]s: link state changes (knet's log wording), unreachable
//! peers, and messages, after dedupe (a frame sent on several links is delivered once) and
//! reassembly. [`LinkSet::wait_fd`] is readable when `recv` may have something.
//!
//! Locks: `send` and `recv` each take one mutex (uncontended when, as in the daemon, one thread
//! sends and receives); the reactors never take them. Link state reaches the send side through a
//! generation counter, so `send` recomputes a peer's policy only after a link changed.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use totem_crypto::{AuthKey, ClusterKey, Nonce, NonceStart, Opener, Sealer};

use crate::dedupe::{Dedupe, DedupeCounters};
use crate::frag::{
    fragments, FragError, Reassembler, ReassemblyConfig, ReassemblyCounters, MAX_MESSAGE_LEN,
    MIN_FRAGMENT_LEN,
};
use crate::heartbeat::{HeartbeatConfig, KnetTimerOverrides, LinkEvent, LinkState, RttStats};
use crate::io::{self, Backend, BackendKind, IoOptions, Waker};
use crate::pmtud::{IpVersion, PMTUD_INTERVAL_DEFAULT};
use crate::policy::{LinkMask, LinkMode, PeerPolicy};
use crate::queue::BufferPool;
pub use crate::reactor::InlineConsumer;
use crate::reactor::{
    self, Control, DestNodes, LinkParams, ReactorHandle, RxFrame, Shared, TxFrame,
};
use crate::wire::{
    ClusterId, FrameType, Header, HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, MAX_LINKS,
    NONCE_LEN, TAG_LEN, UDP_HEADER_LEN,
};

/// corosync's default token timeout, 3000 ms (REFERENCE §2.1), from which the default heartbeat
/// timers derive (ping_timeout 1500 ms, ping_interval 750 ms).
pub const TOKEN_DEFAULT: Duration = Duration::from_millis(3000);
/// IP MTU assumed for fragmentation when none is configured: Ethernet's 1500 bytes.
pub const MTU_DEFAULT: usize = 1500;
/// Frames each link's transmit queue holds: two 1 MiB messages at the default MTU.
pub const TX_QUEUE_DEFAULT: usize = 2048;
/// Authenticated frames waiting for `recv`: two 1 MiB messages at the default MTU.
pub const RX_QUEUE_DEFAULT: usize = 2048;
/// Link events and unreachable notices waiting for `recv`.
pub const EVENT_QUEUE_DEFAULT: usize = 1024;
/// How often `recv` drops stale partial messages.
const REASSEMBLY_EXPIRE_PERIOD: Duration = Duration::from_millis(500);

/// Writes the frame header with the key id and nonce chosen by the sealer; false when it cannot.
pub type WriteHeader<'a> = dyn FnMut(u8, [u8; NONCE_LEN], &mut [u8]) -> bool + 'a;

/// Seals frames: the sender side of the AEAD.
pub trait FrameSealer: Send + Sync {
    /// Reserves a fresh nonce, writes the header with it (`write_header(key_id, nonce, header)`),
    /// then encrypts `payload` in place authenticating the header; returns the tag, or `None`
    /// when sealing is impossible (nonce space exhausted).
    fn seal(
        &self,
        header: &mut [u8],
        payload: &mut [u8],
        write_header: &mut WriteHeader<'_>,
    ) -> Option<[u8; TAG_LEN]>;

    /// The node id whose key seals, when the key is bound to one (receivers derive the key from
    /// the header's source node id, so [`LinkSet::start`] refuses a sealer of another node).
    fn sender_id(&self) -> Option<u32> {
        None
    }
}

/// Opens frames: the receiver side of the AEAD, with its replay window per sender.
pub trait FrameOpener: Send + Sync {
    /// Decrypts `payload` in place; false for a wrong key, a bad tag or a replay.
    fn open_in_place(
        &self,
        sender: u32,
        key_id: u8,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool;
}

/// Frame encryption for a link set.
#[derive(Clone)]
pub struct FrameCrypto {
    /// Seals outgoing frames.
    pub sealer: Arc<dyn FrameSealer>,
    /// Opens incoming frames.
    pub opener: Arc<dyn FrameOpener>,
}

impl fmt::Debug for FrameCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameCrypto(..)")
    }
}

impl FrameCrypto {
    /// AES-256-GCM (totem-crypto) with per-sender keys derived from `authkey` for `cluster_name`
    /// under key id `key_id`: this node (`node_id`, which must be the link set's) seals under its
    /// own key, with nonces from `start` (the daemon: [`NonceStart::for_boot`] with its persisted
    /// boot counter; without state: [`NonceStart::random`]); each peer's key is derived on its
    /// first frame and cached. Frames of node ids outside the peer list are dropped before they
    /// reach the opener, so only configured peers' keys are ever derived. One sealer and one
    /// opener are shared by the link reactors, each behind a mutex held for one frame.
    pub fn aes_gcm(
        authkey: &AuthKey,
        cluster_name: &str,
        key_id: u8,
        node_id: u32,
        start: NonceStart,
    ) -> FrameCrypto {
        let key = ClusterKey::derive(authkey, cluster_name, key_id);
        FrameCrypto::from_parts(Sealer::new(&key, node_id, start), Opener::new(key))
    }

    /// Wraps an existing sealer and opener (e.g. after installing a second key for rotation).
    pub fn from_parts(sealer: Sealer, opener: Opener) -> FrameCrypto {
        let aead = Arc::new(SharedAead {
            sealer: Mutex::new(sealer),
            opener: Mutex::new(opener),
        });
        FrameCrypto {
            sealer: aead.clone(),
            opener: aead,
        }
    }
}

struct SharedAead {
    sealer: Mutex<Sealer>,
    opener: Mutex<Opener>,
}

impl FrameSealer for SharedAead {
    fn seal(
        &self,
        header: &mut [u8],
        payload: &mut [u8],
        write_header: &mut WriteHeader<'_>,
    ) -> Option<[u8; TAG_LEN]> {
        // One lock for nonce and seal, so a rekey cannot fall between them.
        let mut sealer = lock(&self.sealer);
        let (key_id, nonce) = sealer.next_nonce().ok()?;
        if !write_header(key_id, nonce.0, header) {
            return None;
        }
        sealer.seal_in_place(&nonce, header, payload).ok()
    }

    fn sender_id(&self) -> Option<u32> {
        Some(lock(&self.sealer).sender())
    }
}

impl FrameOpener for SharedAead {
    fn open_in_place(
        &self,
        sender: u32,
        key_id: u8,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        lock(&self.opener)
            .open_in_place(sender, key_id, &Nonce(*nonce), aad, payload, tag)
            .is_ok()
    }
}

/// One link (`linkN` in corosync.conf).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Link number, `0..MAX_LINKS`.
    pub link: u8,
    /// Local address and port (default port 5405 + link, REFERENCE §1.3).
    pub bind: SocketAddr,
    /// `knet_link_priority` (higher wins in passive mode; 0 counts as 1).
    pub priority: u8,
    /// Heartbeat timers of this link, when they differ from the link set's.
    pub heartbeat: Option<HeartbeatConfig>,
    /// CPU to pin the link's reactor thread to.
    pub cpu: Option<usize>,
}

/// A peer and its address on each link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's node id.
    pub node_id: u32,
    /// (link number, address) for each link the peer is on.
    pub addrs: Vec<(u8, SocketAddr)>,
}

/// Everything [`LinkSet::start`] needs.
#[derive(Debug, Clone)]
pub struct LinkSetConfig {
    /// Our node id.
    pub node_id: u32,
    /// The cluster name; frames of other clusters are dropped.
    pub cluster_name: String,
    /// The links (1 to [`MAX_LINKS`]).
    pub links: Vec<LinkConfig>,
    /// The other nodes.
    pub peers: Vec<PeerConfig>,
    /// `link_mode`.
    pub mode: LinkMode,
    /// Heartbeat timers of every link without its own.
    pub heartbeat: HeartbeatConfig,
    /// Encryption; `None` sends and accepts only clear frames.
    pub crypto: Option<FrameCrypto>,
    /// I/O backend.
    pub backend: Backend,
    /// IP MTU used to size fragments (no path MTU discovery yet: every link is assumed to carry
    /// this size).
    pub mtu: usize,
    /// Frames each link's transmit queue holds.
    pub tx_queue_capacity: usize,
    /// Frames waiting for [`LinkSet::recv`].
    pub rx_queue_capacity: usize,
    /// Events waiting for [`LinkSet::recv`].
    pub event_queue_capacity: usize,
    /// Datagrams per I/O batch.
    pub batch_max: usize,
    /// `knet_pmtud_interval`: time between path MTU discovery runs per (peer, link).
    pub pmtud_interval: Duration,
    /// io_uring receive buffers per link.
    pub recv_buffers: u16,
}

impl LinkSetConfig {
    /// Defaults: passive mode, corosync's timers for token 3000 ms, no crypto, automatic backend.
    pub fn new(node_id: u32, cluster_name: &str) -> LinkSetConfig {
        LinkSetConfig {
            node_id,
            cluster_name: cluster_name.to_string(),
            links: Vec::new(),
            peers: Vec::new(),
            mode: LinkMode::Passive,
            heartbeat: default_heartbeat(),
            crypto: None,
            backend: Backend::Auto,
            mtu: MTU_DEFAULT,
            tx_queue_capacity: TX_QUEUE_DEFAULT,
            rx_queue_capacity: RX_QUEUE_DEFAULT,
            event_queue_capacity: EVENT_QUEUE_DEFAULT,
            batch_max: io::BATCH_MAX_DEFAULT,
            pmtud_interval: PMTUD_INTERVAL_DEFAULT,
            recv_buffers: io::RECV_BUFFERS_DEFAULT,
        }
    }
}

fn default_heartbeat() -> HeartbeatConfig {
    // Token 3000 ms and pong_count 2 always give valid timers (1500 ms / 750 ms).
    HeartbeatConfig::from_token(TOKEN_DEFAULT, &KnetTimerOverrides::default()).unwrap_or(
        HeartbeatConfig {
            ping_interval: Duration::from_millis(750),
            ping_timeout: Duration::from_millis(1500),
            pong_count: crate::heartbeat::PONG_COUNT_DEFAULT,
            latency_precision: crate::heartbeat::LATENCY_PRECISION_DEFAULT,
            suspect_floor: crate::heartbeat::SUSPECT_FLOOR_DEFAULT,
        },
    )
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// One peer.
    Node(u32),
    /// Every configured peer.
    AllPeers,
}

/// Why [`LinkSet::send`] refused a message. Nothing was queued, unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A transmit queue is full: back-pressure, try again later.
    #[error("transmit queue full")]
    Full,
    /// The message exceeds the 1 MiB limit.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Message length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The destination is not a configured peer.
    #[error("node {0} is not a configured peer")]
    UnknownPeer(u32),
    /// No link to the destination is up.
    #[error("no usable link to node {0}")]
    NoLink(u32),
}

/// What [`LinkSet::recv`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message from a peer. `data` may be handed back with [`LinkSet::recycle`].
    Message {
        /// Sender's node id.
        from: u32,
        /// Link its last frame arrived on.
        link: u8,
        /// The message.
        data: Vec<u8>,
    },
    /// A link to a peer changed state; `Display` is knet's log line.
    Link(LinkEvent),
    /// Sending to a peer failed with an ICMP unreachable / ENETUNREACH (its link goes down).
    PeerUnreachable {
        /// The peer.
        node: u32,
        /// The link.
        link: u8,
    },
}

/// One (peer, link) line of `pvecm status`/`corosync-cfgtool -n`-like output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerLinkStatus {
    /// Peer node id.
    pub node_id: u32,
    /// Link number.
    pub link: u8,
    /// Peer address on the link.
    pub addr: SocketAddr,
    /// Up by the heartbeat rules.
    pub connected: bool,
    /// Up but pongs overdue.
    pub suspect: bool,
    /// The link's priority.
    pub priority: u8,
    /// The policy currently prefers this link for the peer (passive: best link; active/rr: any
    /// usable link).
    pub active: bool,
    /// RTT min/avg/max.
    pub rtt: RttStats,
    /// 99th percentile RTT.
    pub rtt_p99: Option<Duration>,
    /// Largest data payload per frame found by path MTU discovery, once it completed.
    pub data_mtu: Option<usize>,
}

/// Counters since start, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Frames authenticated and accepted.
    pub rx_frames: u64,
    /// Frames of another cluster (dropped before crypto).
    pub rx_foreign_cluster: u64,
    /// Undecodable frames.
    pub rx_malformed: u64,
    /// Frames failing authentication (wrong key, forged, replayed, clear/encrypted mismatch).
    pub rx_auth_failed: u64,
    /// Frames from node ids that are not peers.
    pub rx_unknown_peer: u64,
    /// Frames whose link number is not the link they arrived on.
    pub rx_wrong_link: u64,
    /// Data frames dropped because the receive queue was full.
    pub rx_queue_full: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames that could not be encoded.
    pub tx_errors: u64,
    /// Messages refused with [`SendError::Full`].
    pub tx_queue_full: u64,
    /// Messages (or, for `AllPeers`, peers of a message) skipped because no link to the peer
    /// was usable.
    pub tx_no_link: u64,
    /// Path errors (ICMP unreachable, EMSGSIZE...).
    pub path_errors: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Socket-level I/O errors.
    pub io_errors: u64,
    /// Dedupe.
    pub dedupe: DedupeCounters,
    /// Reassembly.
    pub reassembly: ReassemblyCounters,
}

/// Why the link set could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error("invalid link configuration: {0}")]
    Config(String),
    /// A link's socket or thread could not be set up.
    #[error("link {link}: {source}")]
    Io {
        /// Link number.
        link: u8,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

struct TxState {
    reactors: [Option<ReactorHandle>; MAX_LINKS],
    policies: HashMap<u32, PeerPolicy>,
    peer_ids: Vec<u32>,
    peers: Vec<PeerConfig>,
    seen_generation: u64,
    next_seq: u64,
    next_message_id: u32,
    /// Largest fragment the configured MTU allows.
    fragment_len: usize,
    /// Per link: the fragment length the protocol minimum MTU allows (used before discovery).
    min_data_mtu: [usize; MAX_LINKS],
    /// Per peer and link: the data MTU path MTU discovery found.
    data_mtu: HashMap<u32, [Option<usize>; MAX_LINKS]>,
    targets: Vec<(u32, LinkMask)>,
    queue_full: u64,
    no_link: u64,
    /// Links with frames queued by [`LinkSet::send_deferred`] whose reactor was not woken yet.
    unflushed: LinkMask,
}

struct RxState {
    dedupe: Dedupe,
    reassembler: Reassembler,
    last_expire: Instant,
}

/// The running links of one node. See the module doc.
pub struct LinkSet {
    shared: Arc<Shared>,
    tx: Mutex<TxState>,
    rx: Mutex<RxState>,
    mode: LinkMode,
    heartbeat: HeartbeatConfig,
    backend: Backend,
    io_options: IoOptions,
    tx_queue_capacity: usize,
    pmtud_interval: Duration,
}

impl fmt::Debug for LinkSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSet")
            .field("node_id", &self.shared.node_id)
            .field("mode", &self.mode)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ip_overhead(addr: &SocketAddr) -> usize {
    UDP_HEADER_LEN
        + if addr.is_ipv4() {
            IPV4_HEADER_LEN
        } else {
            IPV6_HEADER_LEN
        }
}

impl LinkSet {
    /// Validates `config`, opens every link's socket and starts the reactors.
    pub fn start(config: LinkSetConfig) -> Result<LinkSet, Error> {
        let bad = |what: String| Err(Error::Config(what));
        if config.links.is_empty() || config.links.len() > MAX_LINKS {
            return bad(format!(
                "need 1 to {MAX_LINKS} links, got {}",
                config.links.len()
            ));
        }
        for (i, link) in config.links.iter().enumerate() {
            if usize::from(link.link) >= MAX_LINKS {
                return bad(format!("link number {} out of range", link.link));
            }
            if config.links[..i].iter().any(|l| l.link == link.link) {
                return bad(format!("link {} configured twice", link.link));
            }
        }
        if let Err(e) = config.heartbeat.validate() {
            return bad(e.to_string());
        }
        if let Some(sealer_id) = config.crypto.as_ref().and_then(|c| c.sealer.sender_id()) {
            if sealer_id != config.node_id {
                return bad(format!(
                    "frame key is node {sealer_id}'s but this link set is node {}",
                    config.node_id
                ));
            }
        }
        let worst_overhead = config
            .links
            .iter()
            .map(|l| ip_overhead(&l.bind))
            .max()
            .unwrap_or(0);
        let max_frame = config
            .mtu
            .saturating_sub(worst_overhead)
            .min(io::MAX_DATAGRAM_BYTES);
        let fragment_len = max_frame
            .saturating_sub(HEADER_LEN + TAG_LEN)
            .min(crate::wire::MAX_PAYLOAD_LEN);
        if fragment_len < MIN_FRAGMENT_LEN {
            return bad(format!(
                "mtu {} leaves fragments below {MIN_FRAGMENT_LEN} bytes",
                config.mtu
            ));
        }
        let io_options = IoOptions {
            // Probes of any size must arrive for path MTU discovery to find the path's limit.
            max_datagram_bytes: io::MAX_DATAGRAM_BYTES,
            batch_max: config.batch_max,
            recv_buffers: config.recv_buffers,
            socket_buffer_bytes: io::SOCKET_BUFFER_BYTES_DEFAULT,
            udp_offload: true,
        };
        let pool_len =
            config.rx_queue_capacity + config.tx_queue_capacity * config.links.len() + 256;
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            cluster_id: ClusterId::from_cluster_name(&config.cluster_name),
            origin: Instant::now(),
            crypto: config.crypto.clone(),
            rx: crate::queue::BoundedQueue::new(config.rx_queue_capacity),
            events: crate::queue::BoundedQueue::new(config.event_queue_capacity),
            consumer: Waker::new().map_err(|source| Error::Io { link: 0, source })?,
            pool: BufferPool::new(pool_len, max_frame, config.batch_max * 4),
            states: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            peer_data_rx: Mutex::new(HashMap::new()),
            counters: Default::default(),
            inline_consumer: std::sync::RwLock::new(None),
        });
        // Sequence numbers grow across restarts so peers' dedupe windows accept a restarted node
        // (see crate::dedupe): start from the wall clock in nanoseconds.
        let first_seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
            .unwrap_or(1);
        let set = LinkSet {
            shared,
            tx: Mutex::new(TxState {
                reactors: Default::default(),
                policies: HashMap::new(),
                peer_ids: Vec::new(),
                peers: Vec::new(),
                seen_generation: u64::MAX,
                next_seq: first_seq,
                next_message_id: 0,
                fragment_len,
                min_data_mtu: [MIN_FRAGMENT_LEN; MAX_LINKS],
                data_mtu: HashMap::new(),
                targets: Vec::new(),
                queue_full: 0,
                no_link: 0,
                unflushed: LinkMask::EMPTY,
            }),
            rx: Mutex::new(RxState {
                dedupe: Dedupe::new(),
                reassembler: Reassembler::new(ReassemblyConfig::default()),
                last_expire: Instant::now(),
            }),
            mode: config.mode,
            heartbeat: config.heartbeat,
            backend: config.backend,
            io_options,
            tx_queue_capacity: config.tx_queue_capacity,
            pmtud_interval: config.pmtud_interval,
        };
        set.set_peers(config.peers)?;
        for link in config.links {
            set.add_link(link)?;
        }
        Ok(set)
    }

    /// Starts a link at run time (configuration reload).
    pub fn add_link(&self, link: LinkConfig) -> Result<(), Error> {
        let number = link.link;
        if usize::from(number) >= MAX_LINKS {
            return Err(Error::Config(format!("link number {number} out of range")));
        }
        let mut tx = lock(&self.tx);
        if tx.reactors[usize::from(number)].is_some() {
            return Err(Error::Config(format!("link {number} already exists")));
        }
        let io =
            io::open(link.bind, self.backend, &self.io_options).map_err(|source| Error::Io {
                link: number,
                source,
            })?;
        let peers = tx
            .peers
            .iter()
            .filter_map(|p| {
                p.addrs
                    .iter()
                    .find(|(l, _)| *l == number)
                    .map(|(_, addr)| (p.node_id, *addr))
            })
            .collect();
        let params = LinkParams {
            link: number,
            priority: link.priority,
            heartbeat: link.heartbeat.unwrap_or(self.heartbeat),
            peers,
            cpu: link.cpu,
            pmtud_interval: self.pmtud_interval,
        };
        let ip_version = if link.bind.is_ipv4() {
            IpVersion::V4
        } else {
            IpVersion::V6
        };
        tx.min_data_mtu[usize::from(number)] = ip_version
            .min_mtu()
            .saturating_sub(ip_version.ip_udp_overhead() + HEADER_LEN + TAG_LEN)
            .max(MIN_FRAGMENT_LEN);
        let handle = reactor::spawn(Arc::clone(&self.shared), params, io, self.tx_queue_capacity)
            .map_err(|source| Error::Io {
            link: number,
            source,
        })?;
        tracing::info!(
            "link {number}: {} on {} (priority {})",
            handle.kind,
            handle.local_addr,
            handle.priority
        );
        tx.reactors[usize::from(number)] = Some(handle);
        Ok(())
    }

    /// Stops a link at run time; frames still queued on it are dropped.
    pub fn remove_link(&self, link: u8) -> Result<(), Error> {
        let handle = {
            let mut tx = lock(&self.tx);
            tx.reactors
                .get_mut(usize::from(link))
                .and_then(Option::take)
        };
        match handle {
            Some(mut handle) => {
                handle.stop_and_join();
                while let Some(frame) = handle.tx.pop() {
                    self.shared.pool.give(frame.buf);
                }
                Ok(())
            }
            None => Err(Error::Config(format!("link {link} does not exist"))),
        }
    }

    /// Replaces the peer list (configuration reload). Peers whose addresses did not change keep
    /// their link state.
    pub fn set_peers(&self, peers: Vec<PeerConfig>) -> Result<(), Error> {
        for peer in &peers {
            if peer.node_id == self.shared.node_id {
                return Err(Error::Config(format!("node {} is ourselves", peer.node_id)));
            }
            if let Some((link, _)) = peer
                .addrs
                .iter()
                .find(|(l, _)| usize::from(*l) >= MAX_LINKS)
            {
                return Err(Error::Config(format!(
                    "node {}: link {link} out of range",
                    peer.node_id
                )));
            }
        }
        let mut tx = lock(&self.tx);
        let mode = self.mode;
        tx.policies
            .retain(|id, _| peers.iter().any(|p| p.node_id == *id));
        for peer in &peers {
            tx.policies
                .entry(peer.node_id)
                .or_insert_with(|| PeerPolicy::new(peer.node_id, mode));
        }
        tx.peer_ids = peers.iter().map(|p| p.node_id).collect();
        tx.peer_ids.sort_unstable();
        tx.peer_ids.dedup();
        tx.seen_generation = u64::MAX; // recompute every policy on the next send
        for handle in tx.reactors.iter().flatten() {
            let on_link = peers
                .iter()
                .filter_map(|p| {
                    p.addrs
                        .iter()
                        .find(|(l, _)| *l == handle.link)
                        .map(|(_, a)| (p.node_id, *a))
                })
                .collect();
            if !handle.control(Control::SetPeers(on_link)) {
                return Err(Error::Config(format!(
                    "link {}: control queue full",
                    handle.link
                )));
            }
        }
        tx.peers = peers;
        Ok(())
    }

    /// Queues `msg` for `dest` and wakes the reactors that carry it. On `Err` nothing was queued
    /// (except after a race with another sender filling a queue, which the daemon's single core
    /// thread never has).
    pub fn send(&self, dest: Dest, msg: &[u8]) -> Result<(), SendError> {
        self.send_deferred(dest, msg)?;
        self.flush();
        Ok(())
    }

    /// Wakes the reactors of every frame queued by [`LinkSet::send_deferred`] since the last
    /// flush.
    pub fn flush(&self) {
        let mut tx = lock(&self.tx);
        let links = std::mem::replace(&mut tx.unflushed, LinkMask::EMPTY);
        for link in links.iter() {
            if let Some(reactor) = &tx.reactors[usize::from(link)] {
                reactor.notify();
            }
        }
    }

    /// [`LinkSet::send`] without waking the reactors: a sender that queues several messages in
    /// a row (the frames of one token visit) calls [`LinkSet::flush`] after the last, so each
    /// reactor wakes once and takes the whole visit as one batch, whose frames to one peer then
    /// leave as one GSO run instead of the first frame alone and the rest after.
    pub fn send_deferred(&self, dest: Dest, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let mut guard = lock(&self.tx);
        let tx = &mut *guard;
        self.refresh_policies(tx);
        tx.targets.clear();
        let single = match dest {
            Dest::Node(node) => Some(node),
            Dest::AllPeers => None,
        };
        for i in 0..tx.peer_ids.len() {
            let node = tx.peer_ids[i];
            if single.is_some_and(|n| n != node) {
                continue;
            }
            let Some(policy) = tx.policies.get_mut(&node) else {
                continue;
            };
            let mut mask = policy.select();
            // Only links this node runs can carry the frame.
            mask.0 &=
                tx.reactors
                    .iter()
                    .enumerate()
                    .fold(0u8, |m, (l, r)| if r.is_some() { m | 1 << l } else { m });
            if mask.is_empty() {
                tx.no_link += 1;
                if single.is_some() {
                    return Err(SendError::NoLink(node));
                }
                continue;
            }
            tx.targets.push((node, mask));
        }
        if let Some(node) = single {
            if !tx.peer_ids.contains(&node) {
                return Err(SendError::UnknownPeer(node));
            }
        }
        // Every copy of a fragment must have the same length (one seq, one reassembly), so the
        // message uses the smallest data MTU among the chosen (peer, link) pairs; before
        // discovery has a value for a pair, the protocol minimum MTU.
        let mut fragment_len = tx.fragment_len;
        for &(node, mask) in &tx.targets {
            let mtus = tx.data_mtu.get(&node).copied().unwrap_or_default();
            for link in mask.iter() {
                let fallback = tx.min_data_mtu[usize::from(link)];
                fragment_len = fragment_len.min(mtus[usize::from(link)].unwrap_or(fallback));
            }
        }
        let pieces = match fragments(msg, tx.next_message_id, fragment_len.max(MIN_FRAGMENT_LEN)) {
            Ok(pieces) => pieces,
            Err(FragError::MessageTooLong { len, max }) => {
                return Err(SendError::TooLarge { len, max })
            }
            Err(_) => {
                return Err(SendError::TooLarge {
                    len: msg.len(),
                    max: MAX_MESSAGE_LEN,
                })
            }
        };
        let count = usize::from(pieces.fragment_count());
        // Each fragment takes one queue slot per link that carries it, whatever its peers.
        let mut needed = [0usize; MAX_LINKS];
        for &(_, mask) in &tx.targets {
            for link in mask.iter() {
                needed[usize::from(link)] = count;
            }
        }
        for (link, need) in needed.iter().enumerate() {
            if *need > 0
                && tx.reactors[link]
                    .as_ref()
                    .map_or(true, |r| r.tx.free() < *need)
            {
                tx.queue_full += 1;
                return Err(SendError::Full);
            }
        }
        tx.next_message_id = tx.next_message_id.wrapping_add(1);
        let mut touched = LinkMask::EMPTY;
        for (fragment, piece) in pieces {
            tx.next_seq = tx.next_seq.wrapping_add(1);
            let header = Header {
                frame_type: FrameType::Data,
                encrypted: false,
                key_id: 0,
                link_number: 0, // set by the link's reactor
                cluster_id: self.shared.cluster_id,
                source_node_id: self.shared.node_id,
                seq: tx.next_seq,
                fragment,
                // Cannot truncate: fragment_len <= MAX_PAYLOAD_LEN < u16::MAX.
                payload_len: u16::try_from(piece.len()).unwrap_or(u16::MAX),
                nonce: [0; NONCE_LEN],
            };
            // One frame per link, sealed once by its reactor for every peer it goes to there.
            for (link, reactor) in tx.reactors.iter().enumerate() {
                let Some(reactor) = reactor.as_ref() else {
                    continue;
                };
                let Ok(link) = u8::try_from(link) else {
                    continue;
                };
                let nodes: DestNodes = tx
                    .targets
                    .iter()
                    .filter(|(_, mask)| mask.contains(link))
                    .map(|&(node, _)| node)
                    .collect();
                if nodes.is_empty() {
                    continue;
                }
                let mut buf = self.shared.pool.take();
                buf.resize(HEADER_LEN, 0);
                buf.extend_from_slice(piece);
                if let Err(full) = reactor.tx.push(TxFrame { nodes, header, buf }) {
                    self.shared.pool.give(full.0.buf);
                }
                touched.insert(link);
            }
        }
        for link in touched.iter() {
            tx.unflushed.insert(link);
        }
        Ok(())
    }

    fn refresh_policies(&self, tx: &mut TxState) {
        let generation = self.shared.generation.load(Ordering::SeqCst);
        if generation == tx.seen_generation {
            return;
        }
        tx.seen_generation = generation;
        let states = lock(&self.shared.states);
        tx.data_mtu.clear();
        for (node, policy) in tx.policies.iter_mut() {
            let links = states.get(node).copied().unwrap_or_default();
            if let Some(change) = policy.update(links.status) {
                tracing::info!("{change}");
            }
            tx.data_mtu.insert(*node, links.data_mtu);
        }
    }

    /// The next event, waiting up to `timeout` (`None`: return at once when nothing is pending).
    pub fn recv(&self, timeout: Option<Duration>) -> Option<Event> {
        let deadline = Instant::now() + timeout.unwrap_or(Duration::ZERO);
        loop {
            if let Some(event) = self.shared.events.pop() {
                return Some(event);
            }
            while let Some(frame) = self.shared.rx.pop() {
                if let Some(event) = self.accept(frame) {
                    return Some(event);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if self.shared.consumer.wait(left).is_err() {
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
        }
    }

    /// Dedupe, then reassembly; a whole message becomes an event.
    fn accept(&self, frame: RxFrame) -> Option<Event> {
        let RxFrame {
            from,
            link,
            header,
            mut buf,
        } = frame;
        let mut rx = lock(&self.rx);
        let now = self.shared.now();
        if rx.last_expire.elapsed() >= REASSEMBLY_EXPIRE_PERIOD {
            rx.last_expire = Instant::now();
            rx.reassembler.expire(now);
        }
        if !rx.dedupe.accept(from, header.seq) {
            self.shared.pool.give(buf);
            return None;
        }
        let range = header.payload_range();
        if header.fragment.count == 1 {
            // The frame buffer becomes the message: move the payload to the front (no allocation).
            buf.copy_within(range.clone(), 0);
            buf.truncate(range.len());
            return Some(Event::Message {
                from,
                link,
                data: buf,
            });
        }
        let message = match buf.get(range) {
            Some(payload) => rx
                .reassembler
                .push(now, from, header.fragment, payload)
                .ok()
                .flatten()
                .map(<[u8]>::to_vec),
            None => None,
        };
        drop(rx);
        self.shared.pool.give(buf);
        message.map(|data| Event::Message { from, link, data })
    }

    /// Hands a message buffer back for reuse (optional; saves an allocation per message).
    pub fn recycle(&self, data: Vec<u8>) {
        self.shared.pool.give(data);
    }

    /// Lets the reactors hand what they receive to `consumer` on their own threads (`None`:
    /// back to waking the consumer's thread through [`LinkSet::wait_fd`]). `consumer` calls
    /// [`LinkSet::recv`] until it returns `None` and answers `true`, or answers `false` at once
    /// when it cannot now; the descriptor then fires as without it. Saves the consumer thread's
    /// wake-up per received batch: on a light load that wake-up is most of a Totem hop. Once
    /// a call returns, no reactor runs the consumer it replaced any more.
    pub fn set_inline_consumer(&self, consumer: Option<InlineConsumer>) {
        *self
            .shared
            .inline_consumer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = consumer;
    }

    /// A descriptor that becomes readable when [`LinkSet::recv`] may return something; after
    /// it fires, call `recv(None)` until it returns `None`.
    pub fn wait_fd(&self) -> RawFd {
        self.shared.consumer.raw_fd()
    }

    /// Every (peer, link) pair with its state and RTT, ordered by node id then link.
    pub fn status(&self) -> Vec<PeerLinkStatus> {
        let mut tx = lock(&self.tx);
        self.refresh_policies(&mut tx);
        let mut out = Vec::new();
        for handle in tx.reactors.iter().flatten() {
            let snapshot = lock(&handle.snapshot);
            for peer in snapshot.iter() {
                let active =
                    tx.policies
                        .get(&peer.node)
                        .is_some_and(|policy| match policy.mode() {
                            LinkMode::Passive => policy.best_link() == Some(handle.link),
                            LinkMode::Active | LinkMode::RoundRobin => {
                                peer.state != LinkState::Down
                            }
                        });
                out.push(PeerLinkStatus {
                    node_id: peer.node,
                    link: handle.link,
                    addr: peer.addr,
                    connected: peer.state != LinkState::Down,
                    suspect: peer.state == LinkState::Suspect,
                    priority: handle.priority,
                    active,
                    rtt: peer.rtt,
                    rtt_p99: peer.rtt_p99,
                    data_mtu: tx
                        .data_mtu
                        .get(&peer.node)
                        .and_then(|m| m[usize::from(handle.link)]),
                });
            }
        }
        out.sort_by_key(|s| (s.node_id, s.link));
        out
    }

    /// The backend of each running link.
    pub fn backends(&self) -> Vec<(u8, BackendKind)> {
        lock(&self.tx)
            .reactors
            .iter()
            .flatten()
            .map(|h| (h.link, h.kind))
            .collect()
    }

    /// The local address of each running link (with the real port when bound to port 0).
    pub fn local_addrs(&self) -> Vec<(u8, SocketAddr)> {
        lock(&self.tx)
            .reactors
            .iter()
            .flatten()
            .map(|h| (h.link, h.local_addr))
            .collect()
    }

    /// Counters since start.
    pub fn counters(&self) -> TransportCounters {
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (tx_queue_full, tx_no_link) = {
            let tx = lock(&self.tx);
            (tx.queue_full, tx.no_link)
        };
        let rx = lock(&self.rx);
        TransportCounters {
            rx_frames: get(&c.rx_frames),
            rx_foreign_cluster: get(&c.rx_foreign_cluster),
            rx_malformed: get(&c.rx_malformed),
            rx_auth_failed: get(&c.rx_auth_failed),
            rx_unknown_peer: get(&c.rx_unknown_peer),
            rx_wrong_link: get(&c.rx_wrong_link),
            rx_queue_full: get(&c.rx_queue_full),
            tx_frames: get(&c.tx_frames),
            tx_errors: get(&c.tx_errors),
            tx_queue_full,
            tx_no_link,
            path_errors: get(&c.path_errors),
            events_dropped: get(&c.events_dropped),
            io_errors: get(&c.io_errors),
            dedupe: rx.dedupe.counters(),
            reassembly: rx.reassembler.counters(),
        }
    }

    /// Stops every reactor and joins its thread.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for LinkSet {
    fn drop(&mut self) {
        let mut tx = lock(&self.tx);
        for slot in tx.reactors.iter_mut() {
            if let Some(mut handle) = slot.take() {
                handle.stop_and_join();
            }
        }
    }
}
