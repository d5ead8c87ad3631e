//! One link's thread: owns the link's socket ([`crate::io::LinkIo`]) and the heartbeat of every
//! peer on that link.
//!
//! Per wake-up it: applies control messages (peer changes); runs due heartbeat timers and queues
//! the pings they ask for; drains a bounded batch of received datagrams, decoding each header
//! (frames of another cluster are dropped before any crypto work), opening encrypted frames,
//! answering pings and MTU probes itself, feeding pongs and data arrivals to the heartbeat, and
//! pushing authenticated data frames to the shared receive queue; then drains a bounded batch of
//! the link's transmit queue, seals each frame in place and sends everything in one batch.
//! Dedupe and reassembly run on the consumer side ([`crate::linkset`]) because frames of one
//! message may arrive on several links.
//!
//! Buffers come from the shared [`BufferPool`]; the only copy on receive is from the socket
//! buffer into a pooled frame buffer (needed to open in place and to hand the frame over).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::heartbeat::{HeartbeatConfig, LinkEvent, LinkHeartbeat, LinkState, RttStats};
use crate::io::{BackendKind, Incoming, LinkIo, PathError, Waker};
use crate::linkset::{Event, FrameCrypto};
use crate::pmtud::{IpVersion, Pmtud, PmtudConfig, PmtudEvent};
use crate::policy::LinkStatus;
use crate::queue::{BoundedQueue, BufferPool};
use crate::wire::{
    split_frame_mut, ClusterId, Fragment, FrameType, Header, MonoTime, MtuProbeBody, PingBody,
    WireError, HEADER_LEN, MAX_LINKS, NONCE_LEN,
};

/// Longest a reactor sleeps without looking at its timers: knet's heartbeat tick
/// `KNET_THREADS_TIMER_RES` 200 ms (REFERENCE §1.3); our timers are usually sooner.
pub const REACTOR_TICK_MAX: Duration = Duration::from_millis(200);
/// How often a reactor refreshes the status snapshot read by `LinkSet::status`.
const SNAPSHOT_PERIOD: Duration = Duration::from_millis(100);
/// After an I/O error of the whole socket, wait this long before trying again (no busy loop).
const IO_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A frame queued for one link: the header without crypto fields, and a buffer holding
/// [`HEADER_LEN`] reserved bytes followed by the payload. The reactor writes the header, seals.
#[derive(Debug)]
pub(crate) struct TxFrame {
    /// Every peer of this link the frame goes to: the reactor seals it once and sends the same
    /// bytes to each (the header names no destination, and nonces are per sender).
    pub(crate) nodes: DestNodes,
    pub(crate) header: Header,
    pub(crate) buf: Vec<u8>,
}

/// Destination node ids of one frame; inline up to a 9-node cluster's peers, so a frame's
/// destinations cost no allocation on common cluster sizes.
pub(crate) type DestNodes = smallvec::SmallVec<[u32; 8]>;

/// An authenticated data frame for the consumer: the whole datagram, opened in place.
#[derive(Debug)]
pub(crate) struct RxFrame {
    pub(crate) from: u32,
    pub(crate) link: u8,
    pub(crate) header: Header,
    pub(crate) buf: Vec<u8>,
}

/// A change for a running reactor.
#[derive(Debug)]
pub(crate) enum Control {
    /// The peers reachable on this link (node id, address); replaces the previous list.
    SetPeers(Vec<(u32, SocketAddr)>),
}

/// Counters shared by every reactor of a link set, by reason.
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    pub(crate) rx_frames: AtomicU64,
    pub(crate) rx_foreign_cluster: AtomicU64,
    pub(crate) rx_malformed: AtomicU64,
    pub(crate) rx_auth_failed: AtomicU64,
    pub(crate) rx_unknown_peer: AtomicU64,
    pub(crate) rx_wrong_link: AtomicU64,
    pub(crate) rx_queue_full: AtomicU64,
    pub(crate) tx_frames: AtomicU64,
    pub(crate) tx_errors: AtomicU64,
    pub(crate) tx_no_peer: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) path_errors: AtomicU64,
    pub(crate) io_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the send side needs to know about one peer's links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PeerLinks {
    /// Per link: usable, suspect, priority.
    pub(crate) status: [LinkStatus; MAX_LINKS],
    /// Per link: largest data payload per frame found by path MTU discovery (`None` = not yet).
    pub(crate) data_mtu: [Option<usize>; MAX_LINKS],
}

/// Largest batch of received frames a reactor hands to the inline consumer itself. A light load
/// (a token and a message or two per batch) gains most from it: the hand-off to the consumer's
/// thread is most of a Totem hop there. Larger batches go to the consumer's thread as before, so
/// under load the reactor goes back to its socket at once and the two threads work side by
/// side; running them inline measured 7-10 % fewer agreed messages per second in one-off runs
/// (`benches/README.md`).
pub(crate) const INLINE_BATCH_MAX: usize = 4;

/// How often a reactor logs its socket's counters (debug level).
const IO_STATS_LOG_PERIOD: Duration = Duration::from_secs(5);

/// Per link, when the peer's latest data frame arrived there (nanoseconds of [`Shared::now`],
/// 0 = never) and the link's `knet_link_priority`; written by that link's reactor, read by the
/// others.
#[derive(Debug, Default)]
pub(crate) struct PeerDataRx {
    at: [AtomicU64; MAX_LINKS],
    priority: [AtomicU8; MAX_LINKS],
}

impl PeerDataRx {
    fn set_priority(&self, link: u8, priority: u8) {
        if let Some(slot) = self.priority.get(usize::from(link)) {
            slot.store(priority, Ordering::Relaxed);
        }
    }

    fn record(&self, link: u8, now: MonoTime) {
        if let Some(slot) = self.at.get(usize::from(link)) {
            slot.store(now.as_nanos().max(1), Ordering::Relaxed);
        }
    }

    /// The latest data frame on a link the passive rule prefers LESS than `link` (priority
    /// `priority`): the peer's data moving there from `link` means it failed `link` over. Data
    /// moving to a preferred link is a failback and says nothing against `link`.
    fn latest_on_lesser_link(&self, link: u8, priority: u8) -> Option<MonoTime> {
        let rank = |l: usize, p: u8| (std::cmp::Reverse(p.max(1)), l);
        let mine = rank(usize::from(link), priority);
        self.at
            .iter()
            .zip(&self.priority)
            .enumerate()
            .filter(|&(l, (_, p))| rank(l, p.load(Ordering::Relaxed)) > mine)
            .map(|(_, (at, _))| at.load(Ordering::Relaxed))
            .max()
            .filter(|&ns| ns > 0)
            .map(MonoTime)
    }
}

/// State shared by the reactors and the link set.
pub(crate) struct Shared {
    pub(crate) node_id: u32,
    pub(crate) cluster_id: ClusterId,
    pub(crate) origin: Instant,
    pub(crate) crypto: Option<FrameCrypto>,
    pub(crate) rx: BoundedQueue<RxFrame>,
    pub(crate) events: BoundedQueue<Event>,
    /// Written once per reactor batch that queued something for the consumer.
    pub(crate) consumer: Waker,
    pub(crate) pool: BufferPool,
    /// Link state and discovered data MTU per peer for the send side; `generation` bumps on
    /// every change.
    pub(crate) states: Mutex<HashMap<u32, PeerLinks>>,
    pub(crate) generation: AtomicU64,
    /// When each peer's latest data frame arrived on each link, shared by the reactors so a
    /// link's heartbeat sees the peer's data moving to another link (see
    /// `LinkHeartbeat::note_data_elsewhere`).
    pub(crate) peer_data_rx: Mutex<HashMap<u32, Arc<PeerDataRx>>>,
    pub(crate) counters: SharedCounters,
    /// Set by [`crate::linkset::LinkSet::set_inline_consumer`]: run by a reactor on what it
    /// just queued, instead of waking the consumer's thread.
    pub(crate) inline_consumer: RwLock<Option<InlineConsumer>>,
}

/// A consumer a reactor may run on its own thread right after it queued received frames or
/// events: returns `true` when it took everything (the consumer's thread is then not woken),
/// `false` when it could not now (busy elsewhere), so the reactor wakes the consumer's thread as
/// usual.
pub type InlineConsumer = Arc<dyn Fn() -> bool + Send + Sync>;

impl Shared {
    /// Hands the `queued` frames and events a reactor just queued to the consumer: runs the
    /// inline consumer when there is one, the batch is small (see [`INLINE_BATCH_MAX`]) and it
    /// takes them; wakes the consumer's thread otherwise.
    pub(crate) fn hand_over(&self, queued: usize) {
        let inline = self
            .inline_consumer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = queued <= INLINE_BATCH_MAX && inline.as_ref().is_some_and(|consume| consume());
        drop(inline);
        if !taken {
            self.consumer.wake();
        }
    }

    pub(crate) fn now(&self) -> MonoTime {
        MonoTime(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: MonoTime) -> Instant {
        self.origin + Duration::from_nanos(at.as_nanos())
    }

    fn update_peer(&self, node: u32, change: impl FnOnce(&mut PeerLinks)) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = states.entry(node).or_default();
        let before = *entry;
        change(entry);
        if *entry != before {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn set_link_status(&self, node: u32, link: u8, status: LinkStatus) {
        self.update_peer(node, |peer| {
            if let Some(slot) = peer.status.get_mut(usize::from(link)) {
                *slot = status;
            }
        });
    }

    fn peer_data_rx(&self, node: u32) -> Arc<PeerDataRx> {
        let mut map = self
            .peer_data_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(node).or_default())
    }

    fn set_data_mtu(&self, node: u32, link: u8, data_mtu: Option<usize>) {
        self.update_peer(node, |peer| {
            if let Some(slot) = peer.data_mtu.get_mut(usize::from(link)) {
                *slot = data_mtu;
            }
        });
    }
}

/// What `LinkSet::status` reports about one peer on one link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PeerSnapshot {
    pub(crate) node: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) state: LinkState,
    pub(crate) rtt: RttStats,
    pub(crate) rtt_p99: Option<Duration>,
}

/// The fixed part of a link's configuration.
#[derive(Debug, Clone)]
pub(crate) struct LinkParams {
    pub(crate) link: u8,
    pub(crate) priority: u8,
    pub(crate) heartbeat: HeartbeatConfig,
    pub(crate) peers: Vec<(u32, SocketAddr)>,
    pub(crate) cpu: Option<usize>,
    pub(crate) pmtud_interval: Duration,
}

/// The link set's handle on a running reactor.
pub(crate) struct ReactorHandle {
    pub(crate) link: u8,
    pub(crate) priority: u8,
    pub(crate) kind: BackendKind,
    pub(crate) local_addr: SocketAddr,
    pub(crate) tx: Arc<BoundedQueue<TxFrame>>,
    pub(crate) snapshot: Arc<Mutex<Vec<PeerSnapshot>>>,
    control: Arc<BoundedQueue<Control>>,
    waker: Waker,
    idle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReactorHandle {
    /// Wakes the reactor if it sleeps (one eventfd write; none while it is busy).
    pub(crate) fn notify(&self) {
        if self.idle.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Queues a control message and wakes the reactor.
    pub(crate) fn control(&self, control: Control) -> bool {
        let queued = self.control.push(control).is_ok();
        self.waker.wake();
        queued
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("link {} reactor thread panicked", self.link);
            }
        }
    }
}

impl Drop for ReactorHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts the reactor thread of one link on an already opened socket.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    params: LinkParams,
    io: LinkIo,
    tx_capacity: usize,
) -> std::io::Result<ReactorHandle> {
    let tx = Arc::new(BoundedQueue::new(tx_capacity));
    let control = Arc::new(BoundedQueue::new(16));
    let snapshot = Arc::new(Mutex::new(Vec::new()));
    let idle = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let waker = io.waker();
    let kind = io.kind();
    let local_addr = io.local_addr()?;
    let now = shared.now();
    let batch_max = io.options().batch_max;
    let mut reactor = Reactor {
        link: params.link,
        priority: params.priority,
        heartbeat: params.heartbeat,
        pmtud_interval: params.pmtud_interval,
        peers: Vec::new(),
        by_node: HashMap::new(),
        tx: Arc::clone(&tx),
        control: Arc::clone(&control),
        snapshot: Arc::clone(&snapshot),
        idle: Arc::clone(&idle),
        stop: Arc::clone(&stop),
        out_bufs: Vec::with_capacity(batch_max * 2),
        out: Vec::with_capacity(batch_max * 2),
        send_list: Vec::with_capacity(batch_max * 2),
        batch_max,
        pushed_for_consumer: 0,
        last_snapshot: None,
        last_io_stats_log: None,
        shared,
    };
    reactor.set_peers(params.peers, now);
    let cpu = params.cpu;
    let link = params.link;
    let thread = std::thread::Builder::new()
        .name(format!("totem-link{link}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = crate::io::pin_current_thread(cpu) {
                    tracing::warn!("link {link}: cannot pin reactor to cpu {cpu}: {e}");
                }
            }
            reactor.run(io);
        })?;
    Ok(ReactorHandle {
        link: params.link,
        priority: params.priority,
        kind,
        local_addr,
        tx,
        snapshot,
        control,
        waker,
        idle,
        stop,
        thread: Some(thread),
    })
}

struct PeerLink {
    node: u32,
    addr: SocketAddr,
    heartbeat: LinkHeartbeat,
    pmtud: Pmtud,
    /// Id of the MTU probe last sent, to attribute an `EMSGSIZE` to it.
    probe_in_flight: Option<u32>,
    unreachable_reported: bool,
    data_rx: Arc<PeerDataRx>,
}

struct Reactor {
    link: u8,
    priority: u8,
    heartbeat: HeartbeatConfig,
    pmtud_interval: Duration,
    peers: Vec<PeerLink>,
    by_node: HashMap<u32, usize>,
    tx: Arc<BoundedQueue<TxFrame>>,
    control: Arc<BoundedQueue<Control>>,
    snapshot: Arc<Mutex<Vec<PeerSnapshot>>>,
    idle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Sealed frames of this batch, in pooled buffers.
    out_bufs: Vec<Vec<u8>>,
    /// The batch's datagrams: (destination, index into `out_bufs`); a frame to several peers
    /// appears once per peer with the same buffer.
    out: Vec<(SocketAddr, usize)>,
    /// The batch as the socket takes it; only its allocation is kept between batches.
    send_list: Vec<(SocketAddr, &'static [u8])>,
    batch_max: usize,
    /// Frames and events queued for the consumer since it was last handed them.
    pushed_for_consumer: usize,
    last_snapshot: Option<Instant>,
    last_io_stats_log: Option<Instant>,
    shared: Arc<Shared>,
}

impl Reactor {
    fn run(mut self, mut io: LinkIo) {
        while !self.stop.load(Ordering::SeqCst) {
            if !self.control.is_empty() {
                // Frames queued before a peer change go to the peers they were queued for: a
                // node that a configuration change removes must still get the frames that carry
                // the change (the sender applies it as soon as it delivers its own message,
                // which is before this reactor sends that message).
                self.send_queued(&mut io, self.tx.len());
            }
            while let Some(control) = self.control.pop() {
                match control {
                    Control::SetPeers(peers) => self.set_peers(peers, self.shared.now()),
                }
            }
            self.drive_timers(self.shared.now());
            self.drain_tx();
            self.flush(&mut io);
            self.publish_snapshot(false);
            self.log_io_stats(&io);
            self.hand_over();
            let deadline = self.next_deadline();
            self.idle.store(true, Ordering::SeqCst);
            let busy =
                !self.tx.is_empty() || !self.control.is_empty() || self.stop.load(Ordering::SeqCst);
            let deadline = if busy { Instant::now() } else { deadline };
            let result = io.recv_each(Some(deadline), |incoming| self.on_incoming(incoming));
            self.idle.store(false, Ordering::SeqCst);
            if let Err(e) = result {
                bump(&self.shared.counters.io_errors);
                tracing::error!("link {}: receive failed: {e}", self.link);
                std::thread::sleep(IO_ERROR_BACKOFF);
            }
            // Received frames go to the consumer at once, before this reactor's timers and
            // sends: with an inline consumer, the frames it queues in answer (the token, on to
            // the next node) leave in this same turn of the loop.
            self.hand_over();
        }
        // Going away: the policy must stop using this link.
        for peer in &self.peers {
            self.shared
                .set_link_status(peer.node, self.link, LinkStatus::default());
        }
    }

    fn set_peers(&mut self, peers: Vec<(u32, SocketAddr)>, now: MonoTime) {
        let mut old: HashMap<u32, PeerLink> = self.peers.drain(..).map(|p| (p.node, p)).collect();
        self.by_node.clear();
        for (node, addr) in peers {
            if node == self.shared.node_id || self.by_node.contains_key(&node) {
                continue;
            }
            let peer = match old.remove(&node) {
                Some(existing) if existing.addr == addr => existing,
                _ => {
                    self.shared
                        .set_link_status(node, self.link, self.status_of(LinkState::Down));
                    self.shared.set_data_mtu(node, self.link, None);
                    let heartbeat = LinkHeartbeat::new(self.heartbeat, node, self.link, now);
                    let pmtud_config = PmtudConfig {
                        interval: self.pmtud_interval,
                        reply_timeout: heartbeat.pong_timeout_adjusted(),
                        ip_version: if addr.is_ipv4() {
                            IpVersion::V4
                        } else {
                            IpVersion::V6
                        },
                        encrypted: self.shared.crypto.is_some(),
                    };
                    PeerLink {
                        node,
                        addr,
                        heartbeat,
                        pmtud: Pmtud::new(pmtud_config, node, self.link),
                        probe_in_flight: None,
                        unreachable_reported: false,
                        data_rx: {
                            let data_rx = self.shared.peer_data_rx(node);
                            data_rx.set_priority(self.link, self.priority);
                            data_rx
                        },
                    }
                }
            };
            self.by_node.insert(node, self.peers.len());
            self.peers.push(peer);
        }
        for gone in old.into_values() {
            self.shared
                .set_link_status(gone.node, self.link, LinkStatus::default());
            self.shared.set_data_mtu(gone.node, self.link, None);
        }
        for index in 0..self.peers.len() {
            self.after_heartbeat(index, now);
        }
        self.publish_snapshot(true);
    }

    fn status_of(&self, state: LinkState) -> LinkStatus {
        LinkStatus {
            usable: state != LinkState::Down,
            suspect: state == LinkState::Suspect,
            priority: self.priority,
        }
    }

    fn next_deadline(&self) -> Instant {
        let cap = Instant::now() + REACTOR_TICK_MAX;
        self.peers
            .iter()
            .flat_map(|p| [p.heartbeat.poll_timeout(), p.pmtud.poll_timeout()])
            .flatten()
            .map(|at| self.shared.instant(at))
            .fold(cap, Instant::min)
    }

    fn drive_timers(&mut self, now: MonoTime) {
        for index in 0..self.peers.len() {
            let peer = &mut self.peers[index];
            if let Some(at) = peer.data_rx.latest_on_lesser_link(self.link, self.priority) {
                peer.heartbeat.note_data_elsewhere(at);
            }
            if peer.heartbeat.poll_timeout().is_some_and(|at| at <= now) {
                peer.heartbeat.handle_timeout(now);
            }
            peer.pmtud
                .set_reply_timeout(peer.heartbeat.pong_timeout_adjusted());
            if peer.pmtud.poll_timeout().is_some_and(|at| at <= now) {
                peer.pmtud.handle_timeout(now);
            }
            self.after_heartbeat(index, now);
        }
    }

    /// Sends the ping and MTU probe the peer's heartbeat and discovery ask for and publishes
    /// their events.
    fn after_heartbeat(&mut self, index: usize, now: MonoTime) {
        if let Some(ping) = self.peers[index].heartbeat.poll_ping() {
            let mut body = [0u8; PingBody::LEN];
            if ping.encode_into(&mut body).is_ok() {
                self.queue_control(index, FrameType::Ping, &body);
            }
        }
        while let Some(event) = self.peers[index].heartbeat.poll_event() {
            let peer = &mut self.peers[index];
            match event {
                LinkEvent::LinkUp { .. } => peer.pmtud.handle_link_state(now, true),
                LinkEvent::LinkDown { .. } => peer.pmtud.handle_link_state(now, false),
                LinkEvent::Suspect { .. } | LinkEvent::Recovered { .. } => {}
            }
            let (node, state) = (peer.node, peer.heartbeat.state());
            let status = self.status_of(state);
            self.shared.set_link_status(node, self.link, status);
            match event {
                LinkEvent::LinkUp { .. } | LinkEvent::LinkDown { .. } => tracing::info!("{event}"),
                LinkEvent::Suspect { .. } | LinkEvent::Recovered { .. } => {
                    tracing::warn!("{event}")
                }
            }
            if self.shared.events.push(Event::Link(event)).is_err() {
                bump(&self.shared.counters.events_dropped);
            }
            self.pushed_for_consumer += 1;
            self.last_snapshot = None; // refresh the status snapshot now
        }
        // A probe that cannot even be encoded (larger than a frame may be) failed at once; the
        // discovery then asks for a smaller one (bounded by its probes-per-run limit).
        while let Some(probe) = self.peers[index].pmtud.poll_probe() {
            let mut body = vec![0u8; usize::from(probe.payload_len)];
            let queued = probe.body.encode_into(&mut body).is_ok()
                && self.queue_control(index, FrameType::MtuProbe, &body);
            if queued {
                self.peers[index].probe_in_flight = Some(probe.body.probe_id);
                break;
            }
            self.peers[index]
                .pmtud
                .handle_send_error(now, probe.body.probe_id, None);
        }
        while let Some(event) = self.peers[index].pmtud.poll_event() {
            tracing::info!("{event}");
            let node = self.peers[index].node;
            match event {
                PmtudEvent::Completed { to, .. } => {
                    self.shared.set_data_mtu(node, self.link, Some(to))
                }
                PmtudEvent::Invalid { .. } => self.shared.set_data_mtu(node, self.link, None),
                PmtudEvent::Aborted { .. } => {}
            }
        }
    }

    /// Builds a control frame (ping, pong, MTU reply) to peer `index` and queues it for sending.
    fn queue_control(&mut self, index: usize, frame_type: FrameType, body: &[u8]) -> bool {
        let Ok(payload_len) = u16::try_from(body.len()) else {
            return false;
        };
        let header = Header {
            frame_type,
            encrypted: false,
            key_id: 0,
            link_number: self.link,
            cluster_id: self.shared.cluster_id,
            source_node_id: self.shared.node_id,
            seq: 0,
            fragment: Fragment::WHOLE,
            payload_len,
            nonce: [0; NONCE_LEN],
        };
        let mut buf = self.shared.pool.take();
        buf.resize(HEADER_LEN, 0);
        buf.extend_from_slice(body);
        let addr = self.peers[index].addr;
        match self.seal(header, buf) {
            Some(buf) => {
                self.out.push((addr, self.out_bufs.len()));
                self.out_bufs.push(buf);
                true
            }
            None => false,
        }
    }

    /// Writes the header (with crypto fields when encrypting), seals in place and appends the
    /// tag; a frame that cannot be encoded is counted, its buffer returned, and `None`.
    fn seal(&mut self, mut header: Header, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        let sealed = match &self.shared.crypto {
            None => header.encode_into(&mut buf).is_ok(),
            Some(crypto) => {
                header.encrypted = true;
                let (head, payload) = buf.split_at_mut(HEADER_LEN);
                let mut write_header = |key_id: u8, nonce: [u8; NONCE_LEN], out: &mut [u8]| {
                    let header = Header {
                        key_id,
                        nonce,
                        ..header
                    };
                    header.encode_into(out).is_ok()
                };
                match crypto.sealer.seal(head, payload, &mut write_header) {
                    Some(tag) => {
                        buf.extend_from_slice(&tag);
                        true
                    }
                    None => false,
                }
            }
        };
        if sealed {
            Some(buf)
        } else {
            bump(&self.shared.counters.tx_errors);
            self.shared.pool.give(buf);
            None
        }
    }

    /// Hands what this reactor queued since the last hand-over to the consumer.
    fn hand_over(&mut self) {
        let queued = std::mem::take(&mut self.pushed_for_consumer);
        if queued > 0 {
            self.shared.hand_over(queued);
        }
    }

    /// Seals and sends the next `frames` queued frames, a batch at a time.
    fn send_queued(&mut self, io: &mut LinkIo, frames: usize) {
        let mut left = frames;
        while left > 0 {
            let taken = self.drain_tx();
            if taken == 0 {
                break;
            }
            self.flush(io);
            left = left.saturating_sub(taken);
        }
    }

    /// Seals the queued frames into the outgoing batch until it is full; returns how many
    /// frames it took from the queue.
    fn drain_tx(&mut self) -> usize {
        let mut taken = 0;
        while self.out.len() < self.batch_max {
            let Some(frame) = self.tx.pop() else { break };
            taken += 1;
            let header = Header {
                link_number: self.link,
                ..frame.header
            };
            let Some(buf) = self.seal(header, frame.buf) else {
                continue;
            };
            let slot = self.out_bufs.len();
            let before = self.out.len();
            for node in &frame.nodes {
                match self.by_node.get(node) {
                    Some(&index) => self.out.push((self.peers[index].addr, slot)),
                    None => bump(&self.shared.counters.tx_no_peer),
                }
            }
            if self.out.len() > before {
                self.out_bufs.push(buf);
            } else {
                self.shared.pool.give(buf);
            }
        }
        taken
    }

    fn flush(&mut self, io: &mut LinkIo) {
        if self.out.is_empty() {
            return;
        }
        let mut list = recycle(std::mem::take(&mut self.send_list));
        let bufs = &self.out_bufs;
        list.extend(
            self.out
                .iter()
                .map(|&(addr, slot)| (addr, bufs[slot].as_slice())),
        );
        match io.send_batch(&list) {
            Ok(sent) => {
                self.shared
                    .counters
                    .tx_frames
                    .fetch_add(sent as u64, Ordering::Relaxed);
            }
            Err(e) => {
                bump(&self.shared.counters.io_errors);
                tracing::warn!("link {}: send failed: {e}", self.link);
            }
        }
        list.clear();
        self.send_list = recycle(list);
        self.out.clear();
        for buf in self.out_bufs.drain(..) {
            self.shared.pool.give(buf);
        }
    }

    fn on_incoming(&mut self, incoming: Incoming<'_>) {
        match incoming {
            Incoming::Datagram { data, .. } => self.on_datagram(data),
            Incoming::PathError(error) => self.on_path_error(error),
        }
    }

    fn on_path_error(&mut self, error: PathError) {
        bump(&self.shared.counters.path_errors);
        let Some(index) = self.peers.iter().position(|p| p.addr == error.dest) else {
            return;
        };
        let now = self.shared.now();
        if error.errno == libc::EMSGSIZE {
            // The kernel refused a datagram above the interface MTU: our MTU probe (the only
            // datagram that large); discovery goes on with the MTU the kernel reported at once,
            // instead of waiting for the probe's reply timeout.
            if let Some(probe_id) = self.peers[index].probe_in_flight.take() {
                let mtu = error.mtu.and_then(|m| usize::try_from(m).ok());
                self.peers[index]
                    .pmtud
                    .handle_send_error(now, probe_id, mtu);
                self.after_heartbeat(index, now);
            }
            return;
        }
        if !error.is_unreachable() {
            return;
        }
        let peer = &mut self.peers[index];
        if !peer.unreachable_reported {
            peer.unreachable_reported = true;
            tracing::warn!(
                "link {}: host {} unreachable at {}: {}",
                self.link,
                peer.node,
                peer.addr,
                error.to_io_error()
            );
            let event = Event::PeerUnreachable {
                node: peer.node,
                link: self.link,
            };
            if self.shared.events.push(event).is_err() {
                bump(&self.shared.counters.events_dropped);
            }
            self.pushed_for_consumer += 1;
        }
        peer.heartbeat.handle_transport_error(now);
        self.after_heartbeat(index, now);
    }

    fn on_datagram(&mut self, data: &[u8]) {
        let counters = &self.shared.counters;
        let header = match Header::decode_for_cluster(data, self.shared.cluster_id) {
            Ok((header, _)) => header,
            Err(WireError::ForeignCluster { .. }) => return bump(&counters.rx_foreign_cluster),
            Err(_) => return bump(&counters.rx_malformed),
        };
        let Some(&index) = self.by_node.get(&header.source_node_id) else {
            return bump(&counters.rx_unknown_peer);
        };
        if header.link_number != self.link {
            return bump(&counters.rx_wrong_link);
        }
        let mut buf = self.shared.pool.take();
        buf.extend_from_slice(data);
        if !self.open(&header, &mut buf) {
            bump(&self.shared.counters.rx_auth_failed);
            self.shared.pool.give(buf);
            return;
        }
        bump(&self.shared.counters.rx_frames);
        let now = self.shared.now();
        self.peers[index].unreachable_reported = false;
        let payload_range = header.payload_range();
        match header.frame_type {
            FrameType::Data => {
                self.peers[index].heartbeat.handle_data(now);
                self.peers[index].data_rx.record(self.link, now);
                let frame = RxFrame {
                    from: header.source_node_id,
                    link: self.link,
                    header,
                    buf,
                };
                match self.shared.rx.push(frame) {
                    Ok(()) => self.pushed_for_consumer += 1,
                    Err(full) => {
                        bump(&self.shared.counters.rx_queue_full);
                        self.shared.pool.give(full.0.buf);
                    }
                }
            }
            FrameType::Ping => {
                self.peers[index].heartbeat.handle_ping(now);
                let mut body = [0u8; PingBody::LEN];
                if let Some(payload) = buf.get(payload_range) {
                    if PingBody::decode(payload).is_ok() {
                        body.copy_from_slice(payload);
                        self.queue_control(index, FrameType::Pong, &body);
                    }
                }
                self.shared.pool.give(buf);
            }
            FrameType::Pong => {
                if let Some(Ok(body)) = buf.get(payload_range).map(PingBody::decode) {
                    self.peers[index].heartbeat.handle_pong(now, body);
                }
                self.shared.pool.give(buf);
            }
            FrameType::MtuProbe => {
                let probe = buf
                    .get(payload_range)
                    .map(|p| MtuProbeBody::decode_probe(p, data.len()));
                if let Some(Ok(probe)) = probe {
                    let mut body = [0u8; MtuProbeBody::LEN];
                    if probe.encode_into(&mut body).is_ok() {
                        self.queue_control(index, FrameType::MtuReply, &body);
                    }
                }
                self.shared.pool.give(buf);
            }
            FrameType::MtuReply => {
                if let Some(Ok(reply)) = buf.get(payload_range).map(MtuProbeBody::decode_reply) {
                    self.peers[index].pmtud.handle_reply(now, reply);
                }
                self.shared.pool.give(buf);
            }
        }
        self.after_heartbeat(index, now);
    }

    /// Opens an encrypted frame in place; false when it must be dropped (bad tag, replay, or an
    /// encryption mismatch between the peers).
    fn open(&self, header: &Header, buf: &mut [u8]) -> bool {
        match (&self.shared.crypto, header.encrypted) {
            (None, false) => true,
            (Some(crypto), true) => {
                let Ok(parts) = split_frame_mut(buf, header) else {
                    return false;
                };
                let Some(tag) = parts.tag else { return false };
                crypto.opener.open_in_place(
                    header.source_node_id,
                    header.key_id,
                    &header.nonce,
                    parts.aad,
                    parts.payload,
                    tag,
                )
            }
            _ => false,
        }
    }

    /// Every [`IO_STATS_LOG_PERIOD`], the socket's counters at debug level (batching and GSO/GRO
    /// at work, or not).
    fn log_io_stats(&mut self, io: &LinkIo) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let now = Instant::now();
        if self
            .last_io_stats_log
            .is_some_and(|at| now.duration_since(at) < IO_STATS_LOG_PERIOD)
        {
            return;
        }
        self.last_io_stats_log = Some(now);
        tracing::debug!("link {}: {:?}", self.link, io.stats());
    }

    fn publish_snapshot(&mut self, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last_snapshot
                .is_some_and(|at| now.duration_since(at) < SNAPSHOT_PERIOD)
        {
            return;
        }
        self.last_snapshot = Some(now);
        let mut snapshot = self
            .snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshot.clear();
        snapshot.extend(self.peers.iter().map(|p| PeerSnapshot {
            node: p.node,
            addr: p.addr,
            state: p.heartbeat.state(),
            rtt: p.heartbeat.rtt(),
            rtt_p99: p.heartbeat.rtt_quantile(0.99),
        }));
    }
}

/// Reuses an empty vector's allocation for another lifetime of its borrowed items (the in-place
/// collect keeps the allocation because the layouts are equal; the closure never runs).
fn recycle<'b>(mut list: Vec<(SocketAddr, &[u8])>) -> Vec<(SocketAddr, &'b [u8])> {
    list.clear();
    list.into_iter().map(|(addr, _)| (addr, &[][..])).collect()
}
