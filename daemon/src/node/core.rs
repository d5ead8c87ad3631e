//! The core: the Totem state machine, votequorum, the process groups and the control socket's
//! connections, behind one mutex. The core thread runs it for everything; a link reactor that
//! received a small batch runs it for those frames when it is free (see [`Core::run`]).
//!
//! It sleeps in one `poll` on the link set's wake-up descriptor, a waker (signals, the qdevice
//! thread) and the control socket with its connections, with the earliest protocol deadline as
//! timeout. Per wake-up it drains received messages into Totem, takes client requests (until
//! Totem's queue is full: then the clients wait, see [`crate::control`]), fires due timers,
//! carries out every action the state machines queued (frames to the link set, deliveries to
//! process groups and votequorum, replies and events to clients) until none is left, and then
//! writes the clients' output, many frames per write.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use totem_client::proto::{
    encode_frame, ClientMessage, ConfigChange, ConfigCommitted, DaemonMessage, DeliveryRef,
    ErrorReply, Event as ClientEvent, GroupMember, GroupMembershipChange, GroupName, JoinOptions,
    LeaveReason, LeftMember, MulticastRefused, Ordering as ClientOrder, QuorumChange, Request,
    Response, RingId as ClientRingId,
};
use totem_core::quorum::{self, Votequorum};
use totem_core::time::MonoTime;
use totem_core::totem::{self, ConfKind, Order, Srp, SubmitError, MAX_MESSAGE_BYTES};
use totem_transport::heartbeat::LinkEvent as HeartbeatEvent;
use totem_transport::linkset::{Dest as LinkDest, Event as LinkEvent, LinkSet, SendError};

use super::confchange;
use super::qdevice::QdeviceLink;
use super::ringseq::RingSeqFile;
use super::status::{self, StaticInfo};
use crate::config::{self, SystemResolver};
use crate::control::{ClientId, ControlServer, Input};
use crate::cpg::local::{not_joined, Joined};
use crate::cpg::{self, CpgMsg, GroupChange, ProcessGroups, Reason};
use crate::notify;
use crate::service::{self, Service};

/// Token of the link set's wake-up descriptor in the core's poll.
const LINKS: Token = Token(0);
/// Token of the core's waker (signals, the qdevice thread).
pub const WAKE: Token = Token(1);
/// Token of the control socket's listener; its connections take the tokens above.
pub const CONTROL_FIRST_TOKEN: usize = 2;
/// Internal messages (votequorum state, process-group syncs and leaves) waiting for room in
/// Totem's submit queue. They are small and few per configuration change; the bound only guards
/// against a bug, and reaching it is logged.
const INTERNAL_BACKLOG_MAX: usize = 65_536;
/// Bytes of process-group framing around a client payload (service byte, kind, name, pid, length).
const CPG_OVERHEAD_BYTES: usize = 1 + 1 + 1 + cpg::GROUP_NAME_MAX + 4 + 4;
/// Largest client multicast payload that fits one Totem message with its framing.
pub const MCAST_PAYLOAD_MAX: usize = MAX_MESSAGE_BYTES - CPG_OVERHEAD_BYTES;
/// Messages handled per wake-up before timers and control get a turn.
const LINK_EVENTS_PER_WAKE_MAX: usize = 4096;
/// Client requests taken per wake-up before the links get a turn again: enough for a socket
/// read's worth of small multicasts, few enough that a token waiting in the link queue is not
/// held up by a burst of clients.
const CLIENT_INPUTS_PER_WAKE_MAX: usize = 1024;

/// Flags the signal thread and the control thread raise.
#[derive(Debug, Default)]
pub struct Flags {
    /// SIGTERM/SIGINT: leave the ring and stop.
    pub stop: AtomicBool,
    /// SIGHUP: reload the configuration.
    pub reload: AtomicBool,
}

/// A control connection as the core sees it.
#[derive(Debug, Default)]
struct Session {
    pid: u32,
    groups: Joined,
}

/// What a successful reload changes in the core.
#[derive(Debug)]
pub struct Reloaded {
    /// The status answers' new fixed part.
    pub info: StaticInfo,
    /// `quorum.expected_votes` of the new file, when it changed.
    pub expected_votes: Option<u32>,
    /// The local node's `quorum_votes`, when it changed.
    pub local_votes: Option<u32>,
    /// One line for the log.
    pub summary: String,
}

/// Reloads the configuration file and applies the link changes to the link set; `Err` is the
/// reason the new file was refused (the running configuration then stays as it is).
pub type Reloader = Box<dyn FnMut(&LinkSet) -> Result<Reloaded, String> + Send>;

/// Everything the core thread owns.
pub struct Core {
    me: u32,
    origin: Instant,
    srp: Srp,
    quorum: Votequorum,
    groups: ProcessGroups,
    links: Arc<LinkSet>,
    /// The core thread's poll registry (connections are registered and re-armed from
    /// whichever thread runs the core).
    registry: Registry,
    /// Wakes the core thread.
    waker: Arc<Waker>,
    /// The end of the core thread's current sleep (`None`: no timeout). A reactor that ran the
    /// core and moved its next deadline earlier wakes the core thread.
    sleeps_until: Option<MonoTime>,
    control: ControlServer,
    /// Totem's submit queue is full (or daemon messages wait for room): client input waits
    /// until [`totem::Action::SubmitReady`].
    clients_wait: bool,
    flags: Arc<Flags>,
    ringseq: RingSeqFile,
    info: StaticInfo,
    sessions: BTreeMap<ClientId, Session>,
    internal: VecDeque<Vec<u8>>,
    ring_id: totem::RingId,
    last_quorate: Option<bool>,
    watchdog_every: Option<Duration>,
    next_watchdog: Instant,
    reloader: Reloader,
    send_full: u64,
    config_path: PathBuf,
    /// The quorum device client thread, when `quorum.device` is configured.
    qdevice: Option<QdeviceLink>,
    /// Configuration commits this node proposed, by commit id: who to answer once delivered.
    pending_commits: BTreeMap<u64, PendingCommit>,
    next_commit: u64,
    /// Expected votes a reload took from the nodelist that the membership refused (a node
    /// `pvecm delnode` removed was still a member, so its votes still counted): applied at the
    /// first membership that allows it.
    pending_expected: Option<u32>,
}

/// A client waiting for its configuration change to come back through the ring.
#[derive(Debug)]
struct PendingCommit {
    client: ClientId,
    request_id: u32,
    nodeid: Option<u32>,
}

/// Why a client's group operation did not go through now.
#[derive(Debug)]
enum Refusal<T> {
    /// Totem's queue is full: retry once it has room, with what the operation needs again.
    Wait(T),
    /// Refused for good, with the answer for the client.
    Refused(ErrorReply),
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// What [`Core::new`] takes.
pub struct CoreParts {
    /// Local node id.
    pub me: u32,
    /// Clock origin shared with the Totem core's `now`.
    pub origin: Instant,
    /// Totem.
    pub srp: Srp,
    /// votequorum.
    pub quorum: Votequorum,
    /// The links.
    pub links: Arc<LinkSet>,
    /// The poll the waker was made on.
    pub poll: Poll,
    /// The waker of `poll`.
    pub waker: Arc<Waker>,
    /// The control socket, registered in `poll` from [`CONTROL_FIRST_TOKEN`] on.
    pub control: ControlServer,
    /// Stop and reload.
    pub flags: Arc<Flags>,
    /// Persisted ring sequence.
    pub ringseq: RingSeqFile,
    /// Status answers' fixed part.
    pub info: StaticInfo,
    /// Reload hook.
    pub reloader: Reloader,
    /// corosync.conf: configuration commits are written here, then reloaded.
    pub config_path: PathBuf,
    /// The quorum device client thread, when `quorum.device` is configured.
    pub qdevice: Option<QdeviceLink>,
}

impl Core {
    /// Registers the link set's descriptor and prepares the loop; the core thread sleeps in
    /// the returned poll.
    pub fn new(parts: CoreParts) -> io::Result<(Core, Poll)> {
        let fd = parts.links.wait_fd();
        parts
            .poll
            .registry()
            .register(&mut SourceFd(&fd), LINKS, Interest::READABLE)?;
        let registry = parts.poll.registry().try_clone()?;
        let watchdog_every = notify::watchdog_interval();
        let ring_id = parts.srp.ring_id();
        let core = Core {
            me: parts.me,
            origin: parts.origin,
            srp: parts.srp,
            quorum: parts.quorum,
            groups: ProcessGroups::new(),
            links: parts.links,
            registry,
            waker: parts.waker,
            sleeps_until: None,
            control: parts.control,
            clients_wait: false,
            flags: parts.flags,
            ringseq: parts.ringseq,
            info: parts.info,
            sessions: BTreeMap::new(),
            internal: VecDeque::new(),
            ring_id,
            last_quorate: None,
            watchdog_every,
            next_watchdog: Instant::now(),
            reloader: parts.reloader,
            send_full: 0,
            config_path: parts.config_path,
            qdevice: parts.qdevice,
            pending_commits: BTreeMap::new(),
            next_commit: 0,
            pending_expected: None,
        };
        Ok((core, parts.poll))
    }

    fn now(&self) -> MonoTime {
        MonoTime(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Runs the core thread until the stop flag: then leaves the ring cleanly and returns.
    ///
    /// The core is shared with the link reactors: a reactor that received frames runs
    /// [`Core::take_frames`] itself when the core is free (the token then goes on to the next
    /// node from the reactor that received it, without waking this thread), and this thread
    /// does everything else.
    pub fn run(self, mut poll: Poll) -> io::Result<()> {
        let links = Arc::clone(&self.links);
        let core = Arc::new(Mutex::new(self));
        let inline = Arc::clone(&core);
        links.set_inline_consumer(Some(Arc::new(move || match inline.try_lock() {
            Ok(mut core) => {
                let taken = std::panic::catch_unwind(AssertUnwindSafe(|| core.take_frames()));
                // A panic half-way through the state machines leaves them unusable, as it did
                // when only the core thread ran them (the daemon stopped): stop the daemon.
                taken.unwrap_or_else(|_| std::process::abort())
            }
            // Busy in the core thread: wake it for the frames.
            Err(_) => false,
        })));
        let result = Core::run_thread(&core, &mut poll);
        links.set_inline_consumer(None);
        result
    }

    fn run_thread(core: &Mutex<Core>, poll: &mut Poll) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        notify::ready();
        loop {
            let timeout = {
                let mut core = lock_core(core);
                let now = core.now();
                let timeout = core.next_deadline(now);
                core.sleeps_until = timeout.map(|t| now + t);
                timeout
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let mut core = lock_core(core);
            if core.turn(&events) {
                return Ok(());
            }
        }
    }

    /// One turn of the core thread after its poll returned; `true` when the daemon stops.
    fn turn(&mut self, events: &Events) -> bool {
        for event in events.iter() {
            if self.control.owns(event.token()) {
                self.control.on_event(&self.registry, event);
            }
        }
        let now = self.now();
        self.drain_links(now);
        self.drain_clients(now);
        if let Some(device) = self.qdevice.as_mut() {
            device.apply(now, &mut self.quorum);
        }
        self.srp.handle_timeout(now);
        self.quorum.handle_timeout(now);
        self.drain_actions(now);
        self.ping_watchdog();
        if self.flags.reload.swap(false, Ordering::SeqCst) {
            let _ = self.reload();
        }
        self.control.flush(&self.registry);
        if self.flags.stop.load(Ordering::SeqCst) {
            self.leave();
            self.control.flush(&self.registry);
            self.control.remove_socket_file();
            return true;
        }
        false
    }

    /// Run by a link reactor on its own thread: takes the received frames through Totem, writes
    /// the clients' output, and wakes the core thread if that moved the next deadline before
    /// the end of its sleep. `false` when frames are left (the per-wake budget): the reactor then
    /// wakes the core thread for them.
    fn take_frames(&mut self) -> bool {
        let now = self.now();
        let all = self.drain_links(now);
        self.control.flush(&self.registry);
        let due = self.next_deadline(now).map(|t| now + t);
        let earlier = match (due, self.sleeps_until) {
            (Some(due), Some(until)) => due < until,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            self.sleeps_until = due;
            if let Err(e) = self.waker.wake() {
                tracing::error!("cannot wake the core thread: {e}");
            }
        }
        all
    }

    fn next_deadline(&self, now: MonoTime) -> Option<Duration> {
        if !self.clients_wait && self.control.has_input() {
            // Client input is left over from the last turn: take it without sleeping.
            return Some(Duration::ZERO);
        }
        let protocol = [self.srp.poll_timeout(), self.quorum.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_since(now));
        let watchdog = self
            .watchdog_every
            .map(|_| self.next_watchdog.saturating_duration_since(Instant::now()));
        [protocol, watchdog].into_iter().flatten().min()
    }

    fn ping_watchdog(&mut self) {
        if let Some(every) = self.watchdog_every {
            if Instant::now() >= self.next_watchdog {
                notify::watchdog();
                self.next_watchdog = Instant::now() + every;
            }
        }
    }

    /// Leaves the ring cleanly so peers re-form at once, and gives the frames a moment to go.
    fn leave(&mut self) {
        notify::stopping();
        let now = self.now();
        self.quorum.leave();
        self.srp.leave(now);
        self.drain_actions(now);
        // The link reactors send asynchronously; give them a few milliseconds before the
        // threads are stopped so the leave reaches the peers.
        std::thread::sleep(Duration::from_millis(50));
        tracing::info!("totemd leaves the cluster");
    }

    /// Feeds received messages and link events to Totem; `false` when the budget ran out first.
    fn drain_links(&mut self, now: MonoTime) -> bool {
        for _ in 0..LINK_EVENTS_PER_WAKE_MAX {
            let Some(event) = self.links.recv(None) else {
                return true;
            };
            match event {
                LinkEvent::Message { from, data, .. } => {
                    if let Err(e) = self.srp.handle_frame(now, from, &data) {
                        tracing::debug!("dropped totem frame from node {from}: {e}");
                    }
                    self.links.recycle(data);
                    self.drain_actions(now);
                }
                LinkEvent::Link(change) => {
                    tracing::info!("[KNET  ] {change}");
                    // A link to the peer failed (another may carry on): a token sent on it just
                    // before is resent now rather than after token_retransmit.
                    if let HeartbeatEvent::Suspect { host_id, .. }
                    | HeartbeatEvent::LinkDown { host_id, .. } = change
                    {
                        self.srp.path_changed(now, host_id);
                        self.drain_actions(now);
                    }
                }
                LinkEvent::PeerUnreachable { node, link } => {
                    // A port-unreachable on one link says nothing against the peer when
                    // another link to it is up (e.g. a link just added by a reload that the
                    // peer has not opened yet): only a peer unreachable everywhere is a hint.
                    let elsewhere = self
                        .links
                        .status()
                        .iter()
                        .any(|s| s.node_id == node && s.link != link && s.connected);
                    tracing::debug!(
                        "node {node} unreachable on link {link}{}",
                        if elsewhere {
                            " (up on another link)"
                        } else {
                            ""
                        }
                    );
                    if !elsewhere {
                        self.srp.peer_unreachable(now, node);
                        self.drain_actions(now);
                    }
                }
            }
        }
        false
    }

    /// Takes client requests until none is left, the per-wake budget is spent, or Totem's
    /// queue is full (the request that found it full is put back, and clients wait).
    fn drain_clients(&mut self, now: MonoTime) {
        for _ in 0..CLIENT_INPUTS_PER_WAKE_MAX {
            if self.clients_wait {
                return;
            }
            let Some(input) = self.control.next_input(&self.registry) else {
                return;
            };
            match input {
                Input::Request { client, creds, msg } => {
                    self.sessions.entry(client).or_default().pid = creds.pid;
                    self.handle_client_message(now, client, msg);
                }
                Input::Gone { client } => self.client_gone(client),
            }
            self.drain_actions(now);
        }
    }

    fn handle_client_message(&mut self, now: MonoTime, client: ClientId, msg: ClientMessage) {
        let request_id = msg.request_id;
        match msg.request {
            Request::ChangeConfig(change) => {
                if let Err(e) = self.propose(now, client, request_id, &change) {
                    self.reply(client, request_id, Err(e));
                }
            }
            Request::Multicast {
                group,
                ordering,
                payload,
            } => match self.multicast(now, client, &group, ordering, payload) {
                Ok(()) => {}
                Err(Refusal::Wait(payload)) => {
                    // Put back as it came; it is taken again once Totem has room.
                    let request = Request::Multicast {
                        group,
                        ordering,
                        payload,
                    };
                    self.wait_for_room(
                        client,
                        ClientMessage {
                            request_id,
                            request,
                        },
                    );
                }
                Err(Refusal::Refused(error)) => {
                    let refused = MulticastRefused {
                        request_id,
                        group,
                        error,
                    };
                    self.control.send(
                        client,
                        &DaemonMessage::Event(ClientEvent::MulticastRefused(refused)),
                    );
                }
            },
            request @ (Request::JoinGroup { .. } | Request::LeaveGroup { .. }) => {
                let result = match &request {
                    Request::JoinGroup { group, options } => {
                        self.join_group(now, client, group, *options)
                    }
                    Request::LeaveGroup { group } => self.leave_group(now, client, group),
                    _ => return,
                };
                match result {
                    Err(Refusal::Wait(())) => {
                        self.wait_for_room(
                            client,
                            ClientMessage {
                                request_id,
                                request,
                            },
                        );
                    }
                    Err(Refusal::Refused(e)) => self.reply(client, request_id, Err(e)),
                    Ok(()) => self.reply(client, request_id, Ok(Response::Done)),
                }
            }
            request => {
                let result = self.handle_request(request);
                self.reply(client, request_id, result);
            }
        }
    }

    fn reply(&mut self, client: ClientId, request_id: u32, result: Result<Response, ErrorReply>) {
        self.control
            .send(client, &DaemonMessage::Reply { request_id, result });
    }

    /// Totem's queue is full: `msg` goes back to its connection and clients wait for room.
    fn wait_for_room(&mut self, client: ClientId, msg: ClientMessage) {
        self.control.put_back(client, msg);
        self.clients_wait = true;
    }

    /// Answers the requests that need nothing of Totem's queue.
    fn handle_request(&mut self, request: Request) -> Result<Response, ErrorReply> {
        match request {
            Request::Status => Ok(Response::Status(status::quorum_status(
                &self.info,
                &self.quorum.status(),
            ))),
            Request::Nodes => Ok(Response::Nodes(status::membership(
                &self.info,
                &self.quorum.status(),
            ))),
            Request::Links => Ok(Response::Links(status::links_status(
                &self.info,
                &self.links.status(),
            ))),
            Request::SetExpectedVotes { expected } => {
                let result = self.quorum.set_expected(expected);
                if result.is_ok() {
                    // The operator's value wins over one a reload left pending.
                    self.pending_expected = None;
                }
                result
                    .map(|()| Response::Done)
                    .map_err(|e| ErrorReply::InvalidParam {
                        detail: e.to_string(),
                    })
            }
            Request::SetVotes { node, votes } => self
                .quorum
                .set_votes(node.unwrap_or(self.me), votes)
                .map(|()| Response::Done)
                .map_err(|e| ErrorReply::InvalidParam {
                    detail: e.to_string(),
                }),
            Request::ReloadConfig => self
                .reload()
                .map(|()| Response::Done)
                .map_err(|detail| ErrorReply::Failed { detail }),
            Request::ChangeConfig(_)
            | Request::JoinGroup { .. }
            | Request::LeaveGroup { .. }
            | Request::Multicast { .. } => Err(ErrorReply::BadRequest {
                detail: "request handled elsewhere".into(),
            }),
        }
    }

    fn join_group(
        &mut self,
        now: MonoTime,
        client: ClientId,
        group: &GroupName,
        options: JoinOptions,
    ) -> Result<(), Refusal<()>> {
        let pid = self.sessions.get(&client).map_or(0, |s| s.pid);
        let taken = self
            .sessions
            .values()
            .any(|s| s.pid == pid && s.groups.contains(group));
        if taken {
            return Err(Refusal::Refused(ErrorReply::InvalidParam {
                detail: format!("process {pid} already joined group {group}"),
            }));
        }
        let msg = CpgMsg::Join {
            group: group.clone(),
            pid,
        };
        self.submit_cpg(now, &msg)?;
        self.sessions
            .entry(client)
            .or_default()
            .groups
            .insert(group.clone(), options);
        Ok(())
    }

    fn leave_group(
        &mut self,
        now: MonoTime,
        client: ClientId,
        group: &GroupName,
    ) -> Result<(), Refusal<()>> {
        let Some(session) = self.sessions.get(&client) else {
            return Err(Refusal::Refused(not_joined(group)));
        };
        if !session.groups.contains(group) {
            return Err(Refusal::Refused(not_joined(group)));
        }
        let msg = CpgMsg::Leave {
            group: group.clone(),
            pid: session.pid,
            died: false,
        };
        self.submit_cpg(now, &msg)?;
        if let Some(s) = self.sessions.get_mut(&client) {
            s.groups.remove(group);
        }
        Ok(())
    }

    /// Submits a client's multicast; when Totem's queue is full the payload comes back in
    /// [`Refusal::Wait`] to be retried as it is.
    fn multicast(
        &mut self,
        now: MonoTime,
        client: ClientId,
        group: &GroupName,
        ordering: ClientOrder,
        payload: Vec<u8>,
    ) -> Result<(), Refusal<Vec<u8>>> {
        let Some(session) = self.sessions.get(&client) else {
            return Err(Refusal::Refused(not_joined(group)));
        };
        if !session.groups.contains(group) {
            return Err(Refusal::Refused(not_joined(group)));
        }
        if payload.len() > MCAST_PAYLOAD_MAX {
            return Err(Refusal::Refused(ErrorReply::InvalidParam {
                detail: format!(
                    "message of {} bytes exceeds the limit of {MCAST_PAYLOAD_MAX} bytes",
                    payload.len()
                ),
            }));
        }
        // After the size check: a message too large stays refused whatever the quorum.
        session
            .groups
            .may_send(group, self.quorum.is_quorate())
            .map_err(Refusal::Refused)?;
        let order = match ordering {
            ClientOrder::Agreed => Order::Agreed,
            ClientOrder::Safe => Order::Safe,
        };
        let mut bytes = vec![Service::ProcessGroups as u8];
        cpg::wire::encode_mcast(&mut bytes, group, session.pid, &payload).map_err(|e| {
            Refusal::Refused(ErrorReply::InvalidParam {
                detail: e.to_string(),
            })
        })?;
        match self.submit_client(now, &bytes, order) {
            Err(Refusal::Wait(())) => Err(Refusal::Wait(payload)),
            Err(Refusal::Refused(e)) => Err(Refusal::Refused(e)),
            Ok(()) => Ok(()),
        }
    }

    /// Submits a client's join or leave.
    fn submit_cpg(&mut self, now: MonoTime, msg: &CpgMsg) -> Result<(), Refusal<()>> {
        let mut bytes = vec![Service::ProcessGroups as u8];
        msg.encode(&mut bytes).map_err(|e| {
            Refusal::Refused(ErrorReply::InvalidParam {
                detail: e.to_string(),
            })
        })?;
        self.submit_client(now, &bytes, Order::Agreed)
    }

    /// Submits a client's message to Totem; [`Refusal::Wait`] when its queue is full or the
    /// daemon's own messages wait for room (they go first).
    fn submit_client(
        &mut self,
        now: MonoTime,
        bytes: &[u8],
        order: Order,
    ) -> Result<(), Refusal<()>> {
        if !self.internal.is_empty() {
            return Err(Refusal::Wait(()));
        }
        match self.srp.submit(now, bytes, order) {
            Ok(()) => Ok(()),
            Err(SubmitError::QueueFull) => Err(Refusal::Wait(())),
            Err(e) => Err(Refusal::Refused(ErrorReply::Failed {
                detail: e.to_string(),
            })),
        }
    }

    /// Queues a message the daemon itself must get through (never refused to a client).
    fn submit_internal(&mut self, now: MonoTime, bytes: Vec<u8>) {
        if self.internal.len() >= INTERNAL_BACKLOG_MAX {
            tracing::error!("internal message backlog full; dropping a daemon message");
            return;
        }
        self.internal.push_back(bytes);
        self.flush_internal(now);
    }

    fn flush_internal(&mut self, now: MonoTime) {
        while let Some(front) = self.internal.front() {
            match self.srp.submit(now, front, Order::Agreed) {
                Ok(()) => {
                    self.internal.pop_front();
                }
                Err(SubmitError::QueueFull) => return,
                Err(e) => {
                    tracing::warn!("daemon message not sent: {e}");
                    self.internal.pop_front();
                }
            }
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        let Some(session) = self.sessions.remove(&client) else {
            return;
        };
        let now = self.now();
        for group in session.groups.names().cloned() {
            let msg = CpgMsg::Leave {
                group,
                pid: session.pid,
                died: true,
            };
            let mut body = Vec::new();
            if msg.encode(&mut body).is_ok() {
                self.submit_internal(now, service::wrap(Service::ProcessGroups, &body));
            }
        }
    }

    /// Carries out actions until both state machines are quiet, then wakes the link reactors
    /// once for every frame queued meanwhile (one batch per reactor: a token visit's frames to
    /// one peer leave as one GSO run).
    fn drain_actions(&mut self, now: MonoTime) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.srp.poll_action() {
                progressed = true;
                self.on_totem_action(now, action);
            }
            while let Some(action) = self.quorum.poll_action() {
                progressed = true;
                self.on_quorum_action(now, action);
            }
            if !progressed {
                self.links.flush();
                return;
            }
        }
    }

    fn on_totem_action(&mut self, now: MonoTime, action: totem::Action) {
        match action {
            totem::Action::Send { to, frame } => {
                let dest = match to {
                    totem::Dest::Node(n) => LinkDest::Node(n),
                    totem::Dest::All => LinkDest::AllPeers,
                };
                let sent = self.links.send_deferred(dest, &frame);
                if matches!(to, totem::Dest::Node(_)) {
                    // A token (or commit token) ends a visit's frames: off they go together,
                    // before the deliveries Totem queues after it.
                    self.links.flush();
                }
                match sent {
                    Ok(()) | Err(SendError::NoLink(_)) => {}
                    Err(SendError::Full) => {
                        // Totem retransmits what is lost; count it like a lost frame.
                        self.send_full += 1;
                        if self.send_full.is_power_of_two() {
                            tracing::warn!(
                                "link transmit queue full ({} frames so far): frames dropped, Totem will retransmit",
                                self.send_full
                            );
                        }
                    }
                    Err(e) => tracing::warn!("cannot send a totem frame: {e}"),
                }
            }
            totem::Action::Deliver(d) => self.on_delivery(now, d),
            totem::Action::Conf(change) => self.on_configuration(now, change),
            totem::Action::PersistRingSeq(seq) => {
                if let Err(e) = self.ringseq.store(seq) {
                    // Carrying on could reuse a ring sequence after a restart; corosync also
                    // treats a failed ringid write as fatal.
                    tracing::error!("cannot store the ring sequence: {e}; stopping");
                    self.flags.stop.store(true, Ordering::SeqCst);
                }
            }
            totem::Action::SubmitReady => {
                self.flush_internal(now);
                if self.internal.is_empty() {
                    self.clients_wait = false;
                }
            }
        }
    }

    fn on_delivery(&mut self, now: MonoTime, d: totem::Delivery) {
        let (service, body) = match service::unwrap(&d.payload) {
            Ok(split) => split,
            Err(e) => {
                tracing::warn!("delivery from node {}: {e}", d.sender);
                return;
            }
        };
        match service {
            Service::ProcessGroups => match CpgMsg::decode(body) {
                Ok(msg) => self.on_cpg(d.sender, d.ring_id, d.order, msg),
                Err(e) => tracing::warn!("process-group message from node {}: {e}", d.sender),
            },
            Service::Votequorum => {
                if let Err(e) = self.quorum.handle_bytes(d.sender, body) {
                    tracing::warn!("votequorum message from node {}: {e}", d.sender);
                }
            }
            Service::Configuration => self.on_commit(d.sender, body),
        }
        let _ = now;
    }

    fn on_cpg(&mut self, from: u32, ring: totem::RingId, order: Order, msg: CpgMsg) {
        if let CpgMsg::Mcast {
            group,
            pid,
            payload,
        } = &msg
        {
            // Encoded once, written to every local member.
            let delivery = DeliveryRef {
                group,
                sender: GroupMember {
                    node: from,
                    pid: *pid,
                },
                ring_id: client_ring(ring),
                ordering: match order {
                    Order::Agreed => ClientOrder::Agreed,
                    Order::Safe => ClientOrder::Safe,
                },
                payload,
            };
            let frame = match encode_frame(&delivery) {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::error!("cannot encode a delivery for local clients: {e}");
                    return;
                }
            };
            for client in self.members_of(group) {
                self.control.send_frame(client, &frame);
            }
            return;
        }
        let changes = self.groups.apply(from, &msg);
        self.announce(ring, changes);
    }

    fn members_of(&self, group: &GroupName) -> Vec<ClientId> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.groups.contains(group))
            .map(|(c, _)| *c)
            .collect()
    }

    fn announce(&mut self, ring: totem::RingId, changes: Vec<GroupChange>) {
        for change in changes {
            let event = GroupMembershipChange {
                group: change.group.clone(),
                ring_id: client_ring(ring),
                members: change.members.iter().map(|m| member(*m)).collect(),
                joined: change.joined.iter().map(|(m, _)| member(*m)).collect(),
                left: change
                    .left
                    .iter()
                    .map(|(m, r)| LeftMember {
                        member: member(*m),
                        reason: match r {
                            Reason::Leave => LeaveReason::Left,
                            Reason::ProcDown => LeaveReason::ProcessDown,
                            _ => LeaveReason::NodeDown,
                        },
                    })
                    .collect(),
            };
            for client in self.members_of(&change.group) {
                self.control.send(
                    client,
                    &DaemonMessage::Event(ClientEvent::GroupMembership(event.clone())),
                );
            }
        }
    }

    fn on_configuration(&mut self, now: MonoTime, change: totem::ConfChange) {
        match change.kind {
            ConfKind::Transitional => {
                tracing::debug!(
                    "transitional membership ({}): {:?}",
                    change.ring_id,
                    change.members
                );
            }
            ConfKind::Regular => {
                self.ring_id = change.ring_id;
                let mut line = format!("A new membership ({}) was formed.", change.ring_id);
                if !change.joined.is_empty() {
                    line.push_str(&format!(" Members joined: {}", ids(&change.joined)));
                }
                if !change.left.is_empty() {
                    line.push_str(&format!(" Members left: {}", ids(&change.left)));
                }
                tracing::info!("[TOTEM ] {line}");
                let ring = change.ring_id;
                self.quorum.handle_membership(now, ring, &change.members);
                self.apply_pending_expected();
                if let Some(device) = &self.qdevice {
                    device.membership(ring, &change.members);
                }
                let gone = self.groups.apply_configuration(&change.members);
                self.announce(change.ring_id, gone);
                // Tell the others which processes live here (see crate::cpg).
                let sync = CpgMsg::Sync {
                    members: self.local_members(),
                };
                let mut body = Vec::new();
                if sync.encode(&mut body).is_ok() {
                    self.submit_internal(now, service::wrap(Service::ProcessGroups, &body));
                }
            }
        }
    }

    fn local_members(&self) -> Vec<(GroupName, u32)> {
        let mut out = Vec::new();
        for s in self.sessions.values() {
            for g in s.groups.names() {
                out.push((g.clone(), s.pid));
            }
        }
        out
    }

    fn on_quorum_action(&mut self, now: MonoTime, action: quorum::Action) {
        match action {
            quorum::Action::Multicast(msg) => {
                self.submit_internal(now, service::wrap(Service::Votequorum, &msg.to_bytes()));
            }
            quorum::Action::QuorumChanged {
                quorate,
                members,
                ring_id,
            } => {
                if let Some(device) = &self.qdevice {
                    device.quorate(quorate);
                }
                tracing::info!("[QUORUM] Members[{}]: {}", members.len(), ids(&members));
                if self.last_quorate != Some(quorate) {
                    if quorate {
                        tracing::info!(
                            "[QUORUM] This node is within the primary component and will provide service."
                        );
                    } else {
                        tracing::info!(
                            "[QUORUM] This node is within the non-primary component and will NOT provide any services."
                        );
                    }
                    self.last_quorate = Some(quorate);
                }
                let event = QuorumChange {
                    quorate,
                    ring_id: ClientRingId {
                        rep: ring_id.rep,
                        seq: ring_id.seq,
                    },
                    members,
                };
                let subscribed: Vec<ClientId> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| !s.groups.is_empty())
                    .map(|(c, _)| *c)
                    .collect();
                for client in subscribed {
                    self.control.send(
                        client,
                        &DaemonMessage::Event(ClientEvent::Quorum(event.clone())),
                    );
                }
            }
        }
    }

    /// Applies expected votes a reload could not apply, if the membership now allows it.
    fn apply_pending_expected(&mut self) {
        let Some(expected) = self.pending_expected else {
            return;
        };
        if self.quorum.set_expected(expected).is_ok() {
            tracing::info!("[CFG   ] expected_votes {expected} from the nodelist applied");
            self.pending_expected = None;
        }
    }

    /// Reloads the configuration (SIGHUP or a control request) and applies what corosync applies
    /// live: links and addresses (done by the reloader on the link set), votes and expected votes.
    fn reload(&mut self) -> Result<(), String> {
        let links = Arc::clone(&self.links);
        let reloaded = match (self.reloader)(&links) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    "[CFG   ] configuration reload refused: {e}; the running configuration stays"
                );
                return Err(e);
            }
        };
        if let Some(device) = &self.qdevice {
            device.config(&reloaded.info);
        }
        self.info = reloaded.info;
        if let Some(votes) = reloaded.local_votes {
            if let Err(e) = self.quorum.set_votes(self.me, votes) {
                tracing::warn!("[CFG   ] new quorum_votes {votes} not applied: {e}");
            }
        }
        if let Some(expected) = reloaded.expected_votes {
            match self.quorum.set_expected(expected) {
                Ok(()) => self.pending_expected = None,
                Err(e) => {
                    // A node deleted from the nodelist still counts while it is a member;
                    // corosync would then keep the higher value until someone runs
                    // `pvecm expected`. Apply it once that node is gone instead.
                    tracing::info!(
                        "[CFG   ] new expected_votes {expected} not applicable yet ({e}); it \
                         applies once the membership allows it"
                    );
                    self.pending_expected = Some(expected);
                }
            }
        }
        tracing::info!("[CFG   ] configuration reloaded: {}", reloaded.summary);
        let now = self.now();
        self.drain_actions(now);
        Ok(())
    }
}

impl Core {
    /// Checks a configuration change against the file, and sends the new text through the ring;
    /// the client is answered when it is delivered back here ([`Core::on_commit`]).
    fn propose(
        &mut self,
        now: MonoTime,
        client: ClientId,
        request_id: u32,
        change: &ConfigChange,
    ) -> Result<(), ErrorReply> {
        if !self.quorum.is_quorate() {
            // pmxcfs refuses writes without quorum; `pvecm expected` is the documented way out.
            return Err(ErrorReply::Failed {
                detail: "cluster not ready - no quorum? (set `pvecm expected` to the number of \
                         nodes present to write the configuration)"
                    .into(),
            });
        }
        let running = config::load_file(&self.config_path, &SystemResolver).map_err(|e| {
            ErrorReply::Failed {
                detail: format!("{}: {e}", self.config_path.display()),
            }
        })?;
        let edited = confchange::edit(&running, change, self.me, &SystemResolver)
            .map_err(|detail| ErrorReply::InvalidParam { detail })?;
        let commit_id = (u64::from(self.me) << 32) | (self.next_commit & 0xffff_ffff);
        self.next_commit = self.next_commit.wrapping_add(1);
        let body = confchange::encode_commit(commit_id, &edited.text);
        if body.len() + 1 > MAX_MESSAGE_BYTES {
            return Err(ErrorReply::InvalidParam {
                detail: format!("configuration of {} bytes is too large", body.len()),
            });
        }
        self.pending_commits.insert(
            commit_id,
            PendingCommit {
                client,
                request_id,
                nodeid: edited.nodeid,
            },
        );
        tracing::info!(
            "[CFG   ] committing config_version {} through the ring",
            edited.config_version
        );
        self.submit_internal(now, service::wrap(Service::Configuration, &body));
        Ok(())
    }

    /// A configuration commit delivered in the ring's total order: every member writes the same
    /// file and reloads it; the proposer answers its client.
    fn on_commit(&mut self, sender: u32, body: &[u8]) {
        let (commit_id, text) = match confchange::decode_commit(body) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!("[CFG   ] configuration commit from node {sender}: {e}");
                return;
            }
        };
        let pending = if sender == self.me {
            self.pending_commits.remove(&commit_id)
        } else {
            None
        };
        let result = self.apply_commit(sender, text);
        if let Some(p) = pending {
            let result = result
                .map(|config_version| {
                    Response::ConfigCommitted(ConfigCommitted {
                        config_version,
                        nodeid: p.nodeid,
                        text: text.to_owned(),
                    })
                })
                .map_err(|detail| ErrorReply::Failed { detail });
            self.reply(p.client, p.request_id, result);
        }
    }

    fn apply_commit(&mut self, sender: u32, text: &str) -> Result<u64, String> {
        let loaded = config::load_str(text, &SystemResolver).map_err(|e| {
            let why = format!("configuration from node {sender} refused: {e}");
            tracing::error!("[CFG   ] {why}");
            why
        })?;
        let version = loaded.config.totem.config_version;
        let running = self.info.cluster.config_version.unwrap_or(0);
        if version <= running {
            let why = format!(
                "config_version {version} is not higher than the running {running} (another \
                 change was committed first; retry)"
            );
            tracing::warn!("[CFG   ] configuration from node {sender} refused: {why}");
            return Err(why);
        }
        if !loaded.nodes.iter().any(|n| n.nodeid == self.me) {
            tracing::error!(
                "[CFG   ] this node ({}) was removed from the cluster (config_version {version}); \
                 leaving the ring, the local configuration is kept as it was",
                self.me
            );
            self.flags.stop.store(true, Ordering::SeqCst);
            return Err("this node was removed from the cluster".into());
        }
        config::write_atomic(&self.config_path, text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", self.config_path.display()))?;
        self.reload()?;
        Ok(version)
    }
}

/// The core, for the core thread. A reactor that panics in the core aborts the process, so a
/// poisoned lock can only be the core thread's own, which is unwinding: taken as it is.
fn lock_core(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn member(m: cpg::Member) -> GroupMember {
    GroupMember {
        node: m.node,
        pid: m.pid,
    }
}

fn client_ring(r: totem::RingId) -> ClientRingId {
    ClientRingId {
        rep: r.rep,
        seq: r.seq,
    }
}

fn ids(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}
