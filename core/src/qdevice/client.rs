//! The qdevice-net client (what corosync-qdevice does toward qnetd) as a sans-IO state machine.
//!
//! Driving order: create with [`QdeviceClient::new`] once the TCP connection is up; write out every
//! [`ClientAction::Send`]; feed received bytes to [`QdeviceClient::handle_bytes`]; report Totem /
//! votequorum changes with `set_membership`, `set_quorum`, `set_config`; call
//! [`QdeviceClient::handle_timeout`] at [`QdeviceClient::poll_timeout`]; after every call drain
//! [`QdeviceClient::poll_action`]. [`ClientAction::Poll`] is the device's vote for votequorum
//! (`Votequorum::qdevice_poll`); [`ClientAction::Disconnect`] means close the socket and, later,
//! connect again with a new client.
//!
//! Protocol (REFERENCE.md §5): PREINIT → PREINIT_REPLY → INIT → INIT_REPLY → [SET_OPTION] →
//! NODE_LIST(initial config) → NODE_LIST(membership) → NODE_LIST(quorum); then ECHO_REQUEST every
//! heartbeat interval (an unanswered one at the next tick drops the connection), NODE_LIST on each
//! change, VOTE_INFO_REPLY for every VOTE_INFO. A vote only counts for the ring it was given for.
//!
//! One addition to corosync-qdevice's timers, found by the split-brain simulation
//! (`core/tests/sim_quorum.rs`): a **vote lease**. qnetd may hand the vote to another partition
//! 1.5 heartbeats after it last heard from us (dead-peer detection), while corosync-qdevice only
//! notices a dead server after up to 2 heartbeats and votequorum keeps a cast vote up to
//! `quorum.device.timeout` longer. So an ACK is cast only while the lease holds: until 1.25
//! heartbeats after the send time of the last request the server answered; when it lapses the
//! client polls `cast_vote: false` at once, and casts again when a heartbeat is answered.

use std::collections::VecDeque;

use super::timing::Timing;
use super::wire::{
    DecisionAlgorithm, DecodeError, ErrorCode, FrameReader, Message, MsgType, NodeInfo,
    NodeListType, NodeState, OptionType, RingId, TieBreaker, TlsSupported, Vote,
};
use crate::time::MonoTime;
use crate::NodeId;

/// The messages this client sends and understands, announced in INIT.
const SUPPORTED_MESSAGES: [MsgType; 16] = [
    MsgType::Preinit,
    MsgType::PreinitReply,
    MsgType::Init,
    MsgType::InitReply,
    MsgType::ServerError,
    MsgType::SetOption,
    MsgType::SetOptionReply,
    MsgType::EchoRequest,
    MsgType::EchoReply,
    MsgType::NodeList,
    MsgType::NodeListReply,
    MsgType::AskForVote,
    MsgType::AskForVoteReply,
    MsgType::VoteInfo,
    MsgType::VoteInfoReply,
    MsgType::HeuristicsChangeReply,
];

/// How one qdevice client is set up (`quorum.device` and `quorum.device.net`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `totem.cluster_name`: qnetd groups clients by it.
    pub cluster_name: String,
    /// This node's id.
    pub node_id: NodeId,
    /// `quorum.device.net.algorithm` (ffsplit by default).
    pub algorithm: DecisionAlgorithm,
    /// `quorum.device.net.tie_breaker` (lowest by default).
    pub tie_breaker: TieBreaker,
    /// Timers derived from `quorum.device.timeout`.
    pub timing: Timing,
    /// `keep_active_partition_tie_breaker` (client default on).
    pub keep_active_partition_tie_breaker: bool,
    /// `quorum.wait_for_all` (lms keeps its vote across a lost qnetd when quorate with it).
    pub wait_for_all: bool,
}

impl ClientConfig {
    /// Defaults of corosync-qdevice for `cluster_name` and `node_id`.
    pub fn new(cluster_name: &str, node_id: NodeId) -> ClientConfig {
        ClientConfig {
            cluster_name: cluster_name.to_string(),
            node_id,
            algorithm: DecisionAlgorithm::Ffsplit,
            tie_breaker: TieBreaker::LOWEST,
            timing: Timing::default(),
            keep_active_partition_tie_breaker: true,
            wait_for_all: false,
        }
    }
}

/// Cluster view the client reports to qnetd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// Configured node ids (nodelist).
    pub config_nodes: Vec<NodeId>,
    /// `totem.config_version`, if set.
    pub config_version: Option<u64>,
    /// Current ring id.
    pub ring_id: RingId,
    /// Current members.
    pub members: Vec<NodeId>,
    /// Whether votequorum is quorate.
    pub quorate: bool,
}

/// Why the connection is being dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// The server sent SERVER_ERROR or a reply with an error code.
    #[error("server sent error {0:?}")]
    ServerError(ErrorCode),
    /// A message arrived in a state where it makes no sense.
    #[error("unexpected {0:?} message")]
    UnexpectedMessage(MsgType),
    /// A reply lacks an option it must carry.
    #[error("{0:?} message lacks a required option")]
    MissingOption(MsgType),
    /// The bytes were not a valid message.
    #[error("undecodable message: {0}")]
    Decode(DecodeError),
    /// The server requires TLS, which this client does not do.
    #[error("server requires TLS")]
    TlsRequired,
    /// The server does not offer our decision algorithm.
    #[error("server does not support the decision algorithm")]
    AlgorithmUnsupported,
    /// The server's size limits are below what we need.
    #[error("server message size limits are incompatible")]
    IncompatibleSizes,
    /// An echo request went unanswered for a heartbeat interval.
    #[error("server did not answer the heartbeat")]
    EchoTimeout,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Write these bytes (one whole message) to the server.
    Send(Vec<u8>),
    /// Poll votequorum: the device's vote for `ring_id`.
    Poll {
        /// Ring the vote is for.
        ring_id: RingId,
        /// Whether the device gives its votes.
        cast_vote: bool,
    },
    /// Close the connection.
    Disconnect(DisconnectReason),
}

/// Connection phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// PREINIT sent.
    WaitingPreinitReply,
    /// INIT sent.
    WaitingInitReply,
    /// Handshake done; node lists and votes flow.
    Connected,
    /// Dropped; create a new client to reconnect.
    Closed,
}

/// The qdevice-net client for one connection. See the module documentation.
#[derive(Debug)]
pub struct QdeviceClient {
    config: ClientConfig,
    view: ClusterView,
    phase: Phase,
    reader: FrameReader,
    last_seq: u32,
    last_sent_ring_id: RingId,
    echo_expected_seq: Option<u32>,
    echo_answered: bool,
    echo_deadline: Option<MonoTime>,
    echo_sent_at: Option<MonoTime>,
    init_sent_at: Option<MonoTime>,
    lease_until: Option<MonoTime>,
    lease_lapsed: bool,
    vote: Vote,
    cast_deadline: Option<MonoTime>,
    server_supports_kaptb: bool,
    outbox: VecDeque<ClientAction>,
}

impl QdeviceClient {
    /// Start a connection: queues PREINIT.
    pub fn new(config: ClientConfig, view: ClusterView) -> QdeviceClient {
        let mut client = QdeviceClient {
            last_sent_ring_id: view.ring_id,
            config,
            view,
            phase: Phase::WaitingPreinitReply,
            reader: FrameReader::new(),
            last_seq: 0,
            echo_expected_seq: None,
            echo_answered: true,
            echo_deadline: None,
            echo_sent_at: None,
            init_sent_at: None,
            lease_until: None,
            lease_lapsed: true,
            vote: Vote::AskLater,
            cast_deadline: None,
            server_supports_kaptb: false,
            outbox: VecDeque::new(),
        };
        let mut preinit = Message::new(MsgType::Preinit).with_seq(client.next_seq());
        preinit.cluster_name = Some(client.config.cluster_name.as_bytes().to_vec());
        client.send(preinit);
        client
    }

    /// Connection phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The vote the server last gave (ACK / NACK), or the waiting state.
    pub fn vote(&self) -> Vote {
        self.vote
    }

    /// Whether the device currently gives its votes for the current ring.
    pub fn casting(&self) -> bool {
        self.vote == Vote::Ack && self.phase == Phase::Connected && !self.lease_lapsed
    }

    /// How long an answered request keeps the vote castable: 1.25 heartbeats, below qnetd's
    /// 1.5-heartbeat dead-peer detection.
    fn lease_ms(&self) -> u64 {
        let heartbeat = u64::from(self.config.timing.heartbeat_interval_ms);
        super::timing::dpd_interval_ms(self.config.timing.heartbeat_interval_ms) - heartbeat / 4
    }

    fn renew_lease(&mut self, now: MonoTime, request_sent_at: Option<MonoTime>) {
        let Some(sent) = request_sent_at else { return };
        self.lease_until = Some(sent.plus_ms(self.lease_ms()));
        let was_lapsed = self.lease_lapsed;
        self.lease_lapsed = self.lease_until.is_some_and(|until| until <= now);
        if was_lapsed && !self.lease_lapsed && self.vote == Vote::Ack {
            self.emit_poll(now);
        }
    }

    /// Next instant for [`QdeviceClient::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        let lease = self.lease_until.filter(|_| !self.lease_lapsed);
        [self.echo_deadline, self.cast_deadline, lease]
            .into_iter()
            .flatten()
            .min()
    }

    /// Next action; drain after every call.
    pub fn poll_action(&mut self) -> Option<ClientAction> {
        self.outbox.pop_front()
    }

    /// Bytes received from the server (any split).
    pub fn handle_bytes(&mut self, now: MonoTime, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.reader.push(bytes);
        loop {
            match self.reader.next_frame() {
                Ok(Some(frame)) => match Message::decode(&frame) {
                    Ok(msg) => self.handle_message(now, msg),
                    Err(e) => self.disconnect(DisconnectReason::Decode(e)),
                },
                Ok(None) => break,
                Err(e) => self.disconnect(DisconnectReason::Decode(e)),
            }
            if self.phase == Phase::Closed {
                break;
            }
        }
    }

    /// Timers: heartbeat and vote re-casting.
    pub fn handle_timeout(&mut self, now: MonoTime) {
        if !self.lease_lapsed && self.lease_until.is_some_and(|at| at <= now) {
            self.lease_lapsed = true;
            if self.vote == Vote::Ack {
                self.emit_poll(now); // casts false now that the lease lapsed
            }
        }
        if self.echo_deadline.is_some_and(|at| at <= now) {
            if !self.echo_answered {
                self.disconnect(DisconnectReason::EchoTimeout);
                return;
            }
            let seq = self.next_seq();
            self.send(Message::new(MsgType::EchoRequest).with_seq(seq));
            self.echo_expected_seq = Some(seq);
            self.echo_answered = false;
            self.echo_sent_at = Some(now);
            self.echo_deadline =
                Some(now.plus_ms(u64::from(self.config.timing.heartbeat_interval_ms)));
        }
        if self.cast_deadline.is_some_and(|at| at <= now) {
            self.emit_poll(now);
        }
    }

    /// Totem formed a new membership: report it and stop voting until the server answers for it.
    pub fn set_membership(&mut self, now: MonoTime, ring_id: RingId, members: &[NodeId]) {
        self.view.ring_id = ring_id;
        self.view.members = members.to_vec();
        if self.phase != Phase::Connected {
            return;
        }
        self.update_vote(now, Vote::WaitForReply);
        self.send_membership();
    }

    /// votequorum's quorate state changed.
    pub fn set_quorum(&mut self, quorate: bool) {
        self.view.quorate = quorate;
        if self.phase == Phase::Connected {
            self.send_quorum();
        }
    }

    /// The nodelist changed (corosync.conf reload).
    pub fn set_config(&mut self, nodes: &[NodeId], config_version: Option<u64>) {
        self.view.config_nodes = nodes.to_vec();
        self.view.config_version = config_version;
        if self.phase == Phase::Connected {
            self.send_config(NodeListType::ChangedConfig);
        }
    }

    fn handle_message(&mut self, now: MonoTime, msg: Message) {
        match (self.phase, msg.msg_type) {
            (_, MsgType::ServerError) => {
                let code = msg.reply_error_code.unwrap_or(ErrorCode::InternalError);
                self.disconnect(DisconnectReason::ServerError(code));
            }
            (Phase::WaitingPreinitReply, MsgType::PreinitReply) => {
                self.init_sent_at = Some(now);
                self.on_preinit_reply(&msg)
            }
            (Phase::WaitingInitReply, MsgType::InitReply) => self.on_init_reply(now, &msg),
            (Phase::Connected, MsgType::SetOptionReply) => {}
            (Phase::Connected, MsgType::EchoReply) => {
                if msg.seq_number.is_none() {
                    self.disconnect(DisconnectReason::MissingOption(msg.msg_type));
                } else if msg.seq_number == self.echo_expected_seq && !self.echo_answered {
                    self.echo_answered = true;
                    self.renew_lease(now, self.echo_sent_at);
                }
            }
            (Phase::Connected, MsgType::NodeListReply)
            | (Phase::Connected, MsgType::AskForVoteReply)
            | (Phase::Connected, MsgType::HeuristicsChangeReply) => self.on_vote_reply(now, &msg),
            (Phase::Connected, MsgType::VoteInfo) => {
                self.on_vote_reply(now, &msg);
                if let (Some(seq), Phase::Connected) = (msg.seq_number, self.phase) {
                    self.send(Message::new(MsgType::VoteInfoReply).with_seq(seq));
                }
            }
            (_, other) => self.disconnect(DisconnectReason::UnexpectedMessage(other)),
        }
    }

    fn on_preinit_reply(&mut self, msg: &Message) {
        if msg.seq_number != Some(self.last_seq)
            || msg.tls_supported.is_none()
            || msg.tls_client_cert_required.is_none()
        {
            return self.disconnect(DisconnectReason::MissingOption(msg.msg_type));
        }
        if msg.tls_supported == Some(TlsSupported::Required) {
            return self.disconnect(DisconnectReason::TlsRequired);
        }
        let mut init = Message::new(MsgType::Init).with_seq(self.next_seq());
        init.supported_messages = Some(SUPPORTED_MESSAGES.iter().map(|m| m.to_wire()).collect());
        init.supported_options = Some(OptionType::ALL.iter().map(|o| o.to_wire()).collect());
        init.node_id = Some(self.config.node_id);
        init.decision_algorithm = Some(self.config.algorithm);
        init.heartbeat_interval = Some(self.config.timing.heartbeat_interval_ms);
        init.tie_breaker = Some(self.config.tie_breaker);
        init.ring_id = Some(self.view.ring_id);
        self.last_sent_ring_id = self.view.ring_id;
        self.send(init);
        self.phase = Phase::WaitingInitReply;
    }

    fn on_init_reply(&mut self, now: MonoTime, msg: &Message) {
        if msg.seq_number != Some(self.last_seq) {
            return self.disconnect(DisconnectReason::MissingOption(msg.msg_type));
        }
        match msg.reply_error_code {
            None => return self.disconnect(DisconnectReason::MissingOption(msg.msg_type)),
            Some(ErrorCode::NoError) => {}
            Some(code) => return self.disconnect(DisconnectReason::ServerError(code)),
        }
        let (Some(request_max), Some(_), Some(options), Some(algorithms)) = (
            msg.server_maximum_request_size,
            msg.server_maximum_reply_size,
            &msg.supported_options,
            &msg.supported_decision_algorithms,
        ) else {
            return self.disconnect(DisconnectReason::MissingOption(msg.msg_type));
        };
        if msg.supported_messages.is_none() {
            return self.disconnect(DisconnectReason::MissingOption(msg.msg_type));
        }
        // corosync-qdevice needs room for its 32 KiB messages (QDEVICE_NET_DEFAULT_MIN_MSG_SEND_SIZE).
        if usize::try_from(request_max).unwrap_or(usize::MAX) < super::wire::MESSAGE_SIZE_MAX {
            return self.disconnect(DisconnectReason::IncompatibleSizes);
        }
        if !algorithms.contains(&self.config.algorithm.to_wire()) {
            return self.disconnect(DisconnectReason::AlgorithmUnsupported);
        }
        self.server_supports_kaptb =
            options.contains(&OptionType::KeepActivePartitionTieBreaker.to_wire());
        self.phase = Phase::Connected;
        if self.server_supports_kaptb {
            let mut set = Message::new(MsgType::SetOption).with_seq(self.next_seq());
            set.keep_active_partition_tie_breaker =
                Some(self.config.keep_active_partition_tie_breaker);
            self.send(set);
        }
        self.send_config(NodeListType::InitialConfig);
        self.send_membership();
        self.send_quorum();
        self.echo_answered = true;
        self.echo_deadline = Some(now.plus_ms(u64::from(self.config.timing.heartbeat_interval_ms)));
        self.renew_lease(now, self.init_sent_at);
    }

    fn on_vote_reply(&mut self, now: MonoTime, msg: &Message) {
        let (Some(vote), Some(_), Some(ring_id)) = (msg.vote, msg.seq_number, msg.ring_id) else {
            return self.disconnect(DisconnectReason::MissingOption(msg.msg_type));
        };
        if ring_id != self.last_sent_ring_id {
            return; // a vote for a ring we no longer report: ignore (corosync: NO_CHANGE)
        }
        self.update_vote(now, vote);
    }

    /// corosync-qdevice's `cast_vote_timer_update`.
    fn update_vote(&mut self, now: MonoTime, vote: Vote) {
        match vote {
            Vote::NoChange | Vote::Undefined => {}
            Vote::Ack | Vote::Nack => {
                self.vote = vote;
                self.emit_poll(now);
            }
            Vote::AskLater | Vote::WaitForReply => {
                self.vote = vote;
                self.cast_deadline = None;
            }
        }
    }

    fn emit_poll(&mut self, now: MonoTime) {
        let cast_vote = self.vote == Vote::Ack && !self.lease_lapsed;
        self.outbox.push_back(ClientAction::Poll {
            ring_id: self.view.ring_id,
            cast_vote,
        });
        self.cast_deadline = Some(now.plus_ms(self.config.timing.cast_vote_interval_ms));
    }

    fn send_config(&mut self, list_type: NodeListType) {
        let mut msg = Message::new(MsgType::NodeList).with_seq(self.next_seq());
        msg.node_list_type = Some(list_type);
        msg.config_version = self.view.config_version;
        msg.nodes = self
            .view
            .config_nodes
            .iter()
            .map(|id| NodeInfo::id(*id))
            .collect();
        self.send(msg);
    }

    fn send_membership(&mut self) {
        let mut msg = Message::new(MsgType::NodeList).with_seq(self.next_seq());
        msg.node_list_type = Some(NodeListType::Membership);
        msg.ring_id = Some(self.view.ring_id);
        msg.nodes = self
            .view
            .members
            .iter()
            .map(|id| NodeInfo::id(*id))
            .collect();
        self.last_sent_ring_id = self.view.ring_id;
        self.send(msg);
    }

    fn send_quorum(&mut self) {
        let mut msg = Message::new(MsgType::NodeList).with_seq(self.next_seq());
        msg.node_list_type = Some(NodeListType::Quorum);
        msg.quorate = Some(self.view.quorate);
        msg.nodes = self
            .view
            .members
            .iter()
            .map(|id| NodeInfo {
                node_id: *id,
                data_center_id: 0,
                node_state: Some(NodeState::Member),
            })
            .collect();
        self.send(msg);
    }

    fn disconnect(&mut self, reason: DisconnectReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.echo_deadline = None;
        self.cast_deadline = None;
        // ffsplit always withdraws the vote; lms keeps it when quorate with wait_for_all
        // (qdevice-net-algo-lms.c `disconnected`).
        let keep = self.config.algorithm == DecisionAlgorithm::Lms
            && self.view.quorate
            && self.config.wait_for_all
            && self.vote == Vote::Ack;
        if !keep {
            self.vote = Vote::Nack;
            self.outbox.push_back(ClientAction::Poll {
                ring_id: self.view.ring_id,
                cast_vote: false,
            });
        }
        self.outbox.push_back(ClientAction::Disconnect(reason));
    }

    fn next_seq(&mut self) -> u32 {
        self.last_seq = self.last_seq.wrapping_add(1);
        self.last_seq
    }

    fn send(&mut self, msg: Message) {
        self.outbox.push_back(ClientAction::Send(msg.to_bytes()));
    }
}
