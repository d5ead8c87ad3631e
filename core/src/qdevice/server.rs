//! The qnetd side as a sans-IO state machine: connections, the handshake, per-cluster state,
//! the ffsplit and lms decisions ([`super::algorithm`]) and dead-peer detection. Clusters are
//! created on the first client that names them, so one server serves any number of clusters
//! without configuration.
//!
//! Driving order: [`QnetdServer::accept`] for each new TCP connection, then
//! [`QnetdServer::handle_bytes`] with what it sends, [`QnetdServer::handle_closed`] when it goes
//! away, [`QnetdServer::handle_timeout`] at [`QnetdServer::poll_timeout`]; after each call drain
//! [`QnetdServer::poll_action`] (bytes to send to a connection, connections to close, events to
//! log).

use std::collections::{BTreeMap, VecDeque};

use super::algorithm::{self, ClientView};
use super::timing::{self, HEARTBEAT_INTERVAL_MAX_MS, HEARTBEAT_INTERVAL_MIN_MS};
use super::wire::{
    DecisionAlgorithm, ErrorCode, FrameReader, Heuristics, Message, MsgType, NodeListType,
    OptionType, RingId, TieBreaker, TlsSupported, Vote, MESSAGE_SIZE_MAX,
};
use crate::time::MonoTime;
use crate::NodeId;

/// A connection, numbered by the server.
pub type ConnId = u64;

/// The heartbeat assumed before INIT tells the real one (the qdevice default, 8 s).
const HEARTBEAT_BEFORE_INIT_MS: u32 = 8_000;
/// Algorithms this server implements, announced in INIT_REPLY.
const SUPPORTED_ALGORITHMS: [DecisionAlgorithm; 2] =
    [DecisionAlgorithm::Ffsplit, DecisionAlgorithm::Lms];

/// Server settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Drop clients silent for 1.5 heartbeats (qnetd `dpd_enabled`, default on).
    pub dpd_enabled: bool,
    /// Server default for keep_active_partition_tie_breaker (qnetd default off).
    pub keep_active_partition_tie_breaker: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            dpd_enabled: true,
            keep_active_partition_tie_breaker: false,
        }
    }
}

/// Something the server reports for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A client completed INIT.
    ClientJoined {
        /// Connection.
        conn: ConnId,
        /// Cluster name.
        cluster: String,
        /// Node id.
        node_id: NodeId,
        /// Algorithm.
        algorithm: DecisionAlgorithm,
    },
    /// A vote was sent to a client.
    VoteSent {
        /// Connection.
        conn: ConnId,
        /// Cluster name.
        cluster: String,
        /// Node id.
        node_id: NodeId,
        /// The vote.
        vote: Vote,
        /// Ring the vote is for.
        ring_id: RingId,
    },
    /// A client sent something the server refused.
    ClientError {
        /// Connection.
        conn: ConnId,
        /// The error sent back.
        code: ErrorCode,
    },
    /// A client was dropped by dead-peer detection.
    DeadPeer {
        /// Connection.
        conn: ConnId,
        /// Silence that triggered it (ms).
        silent_ms: u64,
    },
    /// A client left (connection closed or dropped).
    ClientLeft {
        /// Connection.
        conn: ConnId,
        /// Cluster, if it had joined one.
        cluster: Option<String>,
        /// Node id, if known.
        node_id: Option<NodeId>,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAction {
    /// Write these bytes to the connection.
    Send(ConnId, Vec<u8>),
    /// Close the connection (after writing what was queued for it).
    Close(ConnId),
    /// Log this.
    Event(ServerEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FfClientState {
    WaitingForChange,
    SendingNack,
    SendingAck,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FfClusterState {
    WaitingForChange,
    WaitingForStableMembership,
    SendingNacks,
    SendingAcks,
}

#[derive(Debug)]
struct Client {
    reader: FrameReader,
    preinit_received: bool,
    init_received: bool,
    cluster: Option<String>,
    node_id: NodeId,
    algorithm: DecisionAlgorithm,
    tie_breaker: TieBreaker,
    heartbeat_interval_ms: u32,
    dpd_deadline: Option<MonoTime>,
    config_nodes: Vec<NodeId>,
    membership: Vec<NodeId>,
    ring_id: RingId,
    heuristics: Option<Heuristics>,
    keep_active: bool,
    ff_state: FfClientState,
    vote_info_seq: u32,
    lms_last_result: Option<Vote>,
    /// lms: sequence number of a revoking NACK not yet acknowledged.
    lms_nack_pending: Option<u32>,
    algo_deadline: Option<MonoTime>,
}

#[derive(Debug)]
struct Cluster {
    conns: Vec<ConnId>,
    ff_state: FfClusterState,
    quorate_partition: Vec<NodeId>,
}

/// The arbiter's logic for all its connections and clusters.
#[derive(Debug)]
pub struct QnetdServer {
    config: ServerConfig,
    next_conn: ConnId,
    clients: BTreeMap<ConnId, Client>,
    clusters: BTreeMap<String, Cluster>,
    outbox: VecDeque<ServerAction>,
}

impl QnetdServer {
    /// A server with no connections.
    pub fn new(config: ServerConfig) -> QnetdServer {
        QnetdServer {
            config,
            next_conn: 1,
            clients: BTreeMap::new(),
            clusters: BTreeMap::new(),
            outbox: VecDeque::new(),
        }
    }

    /// Number of clusters with at least one client.
    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.clients.len()
    }

    /// Next action; drain after every call.
    pub fn poll_action(&mut self) -> Option<ServerAction> {
        self.outbox.pop_front()
    }

    /// Next instant for [`QnetdServer::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        self.clients
            .values()
            .flat_map(|c| [c.dpd_deadline, c.algo_deadline])
            .flatten()
            .min()
    }

    /// A new TCP connection.
    pub fn accept(&mut self, now: MonoTime) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let dpd_deadline = self
            .config
            .dpd_enabled
            .then(|| now.plus_ms(timing::dpd_interval_ms(HEARTBEAT_BEFORE_INIT_MS)));
        self.clients.insert(
            conn,
            Client {
                reader: FrameReader::new(),
                preinit_received: false,
                init_received: false,
                cluster: None,
                node_id: 0,
                algorithm: DecisionAlgorithm::Ffsplit,
                tie_breaker: TieBreaker::LOWEST,
                heartbeat_interval_ms: HEARTBEAT_BEFORE_INIT_MS,
                dpd_deadline,
                config_nodes: Vec::new(),
                membership: Vec::new(),
                ring_id: RingId::default(),
                heuristics: None,
                keep_active: self.config.keep_active_partition_tie_breaker,
                ff_state: FfClientState::WaitingForChange,
                vote_info_seq: 0,
                lms_last_result: None,
                lms_nack_pending: None,
                algo_deadline: None,
            },
        );
        conn
    }

    /// Bytes received on `conn`.
    pub fn handle_bytes(&mut self, now: MonoTime, conn: ConnId, bytes: &[u8]) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.reader.push(bytes);
        loop {
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            match client.reader.next_frame() {
                Ok(None) => return,
                Ok(Some(frame)) => match Message::decode(&frame) {
                    Ok(msg) => self.on_message(now, conn, msg),
                    Err(_) => {
                        self.send_error(conn, None, ErrorCode::ErrorDecodingMsg);
                        return self.drop_client(conn);
                    }
                },
                Err(_) => {
                    let code = ErrorCode::MessageTooLong;
                    self.send_error(conn, None, code);
                    return self.drop_client(conn);
                }
            }
        }
    }

    /// The connection closed (by the peer or after an I/O error).
    pub fn handle_closed(&mut self, conn: ConnId) {
        self.remove_client(conn);
    }

    /// Timers: dead-peer detection and the lms re-check.
    pub fn handle_timeout(&mut self, now: MonoTime) {
        let due: Vec<(ConnId, bool, bool)> = self
            .clients
            .iter()
            .map(|(id, c)| {
                (
                    *id,
                    c.dpd_deadline.is_some_and(|t| t <= now),
                    c.algo_deadline.is_some_and(|t| t <= now),
                )
            })
            .filter(|(_, dpd, algo)| *dpd || *algo)
            .collect();
        for (conn, dpd, algo) in due {
            if dpd {
                let silent_ms = self
                    .clients
                    .get(&conn)
                    .map(|c| timing::dpd_interval_ms(c.heartbeat_interval_ms))
                    .unwrap_or(0);
                self.event(ServerEvent::DeadPeer { conn, silent_ms });
                self.drop_client(conn);
                continue;
            }
            if algo {
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.algo_deadline = None;
                }
                self.lms_timer(now, conn);
            }
        }
    }

    // ----- messages --------------------------------------------------------------------------

    fn on_message(&mut self, now: MonoTime, conn: ConnId, msg: Message) {
        if let Some(client) = self.clients.get_mut(&conn) {
            if let Some(deadline) = client.dpd_deadline.as_mut() {
                *deadline = now.plus_ms(timing::dpd_interval_ms(client.heartbeat_interval_ms));
            }
        }
        let seq = msg.seq_number;
        let needs_init = !matches!(
            msg.msg_type,
            MsgType::Preinit | MsgType::Init | MsgType::StartTls
        );
        if needs_init && !self.clients.get(&conn).is_some_and(|c| c.init_received) {
            if is_client_message(msg.msg_type) {
                return self.send_error(conn, seq, ErrorCode::InitRequired);
            }
            return self.send_error(conn, seq, ErrorCode::UnexpectedMessage);
        }
        match msg.msg_type {
            MsgType::Preinit => self.on_preinit(conn, &msg),
            MsgType::Init => self.on_init(now, conn, &msg),
            MsgType::SetOption => self.on_set_option(now, conn, &msg),
            MsgType::EchoRequest => {
                let mut reply = msg.clone();
                reply.msg_type = MsgType::EchoReply;
                self.send(conn, &reply);
            }
            MsgType::NodeList => self.on_node_list(now, conn, &msg),
            MsgType::AskForVote => self.on_ask_for_vote(now, conn, &msg),
            MsgType::VoteInfoReply => self.on_vote_info_reply(conn, &msg),
            MsgType::HeuristicsChange => self.on_heuristics_change(now, conn, &msg),
            // STARTTLS with TLS off, and every server-to-client type, are unexpected here.
            _ => self.send_error(conn, seq, ErrorCode::UnexpectedMessage),
        }
    }

    fn on_preinit(&mut self, conn: ConnId, msg: &Message) {
        let Some(name) = &msg.cluster_name else {
            return self.send_error(conn, msg.seq_number, ErrorCode::DoesntContainRequiredOption);
        };
        if let Some(client) = self.clients.get_mut(&conn) {
            client.cluster = Some(String::from_utf8_lossy(name).into_owned());
            client.preinit_received = true;
        }
        let mut reply = Message::new(MsgType::PreinitReply);
        reply.seq_number = msg.seq_number;
        reply.tls_supported = Some(TlsSupported::Unsupported);
        reply.tls_client_cert_required = Some(false);
        self.send(conn, &reply);
    }

    fn init_error(&self, conn: ConnId, msg: &Message) -> ErrorCode {
        let Some(client) = self.clients.get(&conn) else {
            return ErrorCode::InternalError;
        };
        if !client.preinit_received {
            return ErrorCode::PreinitRequired;
        }
        let (Some(node_id), Some(_), Some(heartbeat), Some(tie_breaker), Some(algorithm)) = (
            msg.node_id,
            msg.ring_id,
            msg.heartbeat_interval,
            msg.tie_breaker,
            msg.decision_algorithm,
        ) else {
            return ErrorCode::DoesntContainRequiredOption;
        };
        if !(HEARTBEAT_INTERVAL_MIN_MS..=HEARTBEAT_INTERVAL_MAX_MS).contains(&heartbeat) {
            return ErrorCode::InvalidHeartbeatInterval;
        }
        if !SUPPORTED_ALGORITHMS.contains(&algorithm) {
            return ErrorCode::UnsupportedDecisionAlgorithm;
        }
        let cluster = client
            .cluster
            .as_ref()
            .and_then(|name| self.clusters.get(name));
        for other in cluster.map(|c| c.conns.as_slice()).unwrap_or(&[]) {
            let Some(other) = self.clients.get(other) else {
                continue;
            };
            if other.tie_breaker != tie_breaker {
                return ErrorCode::TieBreakerDiffersFromOtherNodes;
            }
            if other.algorithm != algorithm {
                return ErrorCode::AlgorithmDiffersFromOtherNodes;
            }
            if other.node_id == node_id {
                return ErrorCode::DuplicateNodeId;
            }
        }
        ErrorCode::NoError
    }

    fn on_init(&mut self, now: MonoTime, conn: ConnId, msg: &Message) {
        let code = self.init_error(conn, msg);
        let mut reply = Message::new(MsgType::InitReply);
        reply.seq_number = msg.seq_number;
        reply.reply_error_code = Some(code);
        reply.supported_messages = Some(MsgType::ALL.iter().map(|m| m.to_wire()).collect());
        reply.supported_options = Some(OptionType::ALL.iter().map(|o| o.to_wire()).collect());
        let size = u32::try_from(MESSAGE_SIZE_MAX).unwrap_or(u32::MAX);
        reply.server_maximum_request_size = Some(size);
        reply.server_maximum_reply_size = Some(size);
        reply.supported_decision_algorithms =
            Some(SUPPORTED_ALGORITHMS.iter().map(|a| a.to_wire()).collect());
        if code == ErrorCode::NoError {
            self.join_cluster(now, conn, msg);
        }
        self.send(conn, &reply);
    }

    fn join_cluster(&mut self, now: MonoTime, conn: ConnId, msg: &Message) {
        let dpd = self.config.dpd_enabled;
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.node_id = msg.node_id.unwrap_or(0);
        client.ring_id = msg.ring_id.unwrap_or_default();
        client.heartbeat_interval_ms = msg.heartbeat_interval.unwrap_or(HEARTBEAT_BEFORE_INIT_MS);
        client.tie_breaker = msg.tie_breaker.unwrap_or(TieBreaker::LOWEST);
        client.algorithm = msg.decision_algorithm.unwrap_or(DecisionAlgorithm::Ffsplit);
        client.init_received = true;
        if dpd {
            client.dpd_deadline =
                Some(now.plus_ms(timing::dpd_interval_ms(client.heartbeat_interval_ms)));
        }
        let name = client.cluster.clone().unwrap_or_default();
        let (node_id, algorithm) = (client.node_id, client.algorithm);
        self.clusters
            .entry(name.clone())
            .or_insert_with(|| Cluster {
                conns: Vec::new(),
                ff_state: FfClusterState::WaitingForChange,
                quorate_partition: Vec::new(),
            })
            .conns
            .push(conn);
        self.event(ServerEvent::ClientJoined {
            conn,
            cluster: name,
            node_id,
            algorithm,
        });
    }

    fn on_set_option(&mut self, now: MonoTime, conn: ConnId, msg: &Message) {
        if let Some(hb) = msg.heartbeat_interval {
            if !(HEARTBEAT_INTERVAL_MIN_MS..=HEARTBEAT_INTERVAL_MAX_MS).contains(&hb) {
                return self.send_error(conn, msg.seq_number, ErrorCode::InvalidHeartbeatInterval);
            }
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if let Some(hb) = msg.heartbeat_interval {
            client.heartbeat_interval_ms = hb;
            if client.dpd_deadline.is_some() {
                client.dpd_deadline = Some(now.plus_ms(timing::dpd_interval_ms(hb)));
            }
        }
        if let Some(kaptb) = msg.keep_active_partition_tie_breaker {
            client.keep_active = kaptb;
        }
        let mut reply = Message::new(MsgType::SetOptionReply);
        reply.seq_number = msg.seq_number;
        reply.heartbeat_interval = msg.heartbeat_interval.map(|_| client.heartbeat_interval_ms);
        reply.keep_active_partition_tie_breaker = msg
            .keep_active_partition_tie_breaker
            .map(|_| client.keep_active);
        self.send(conn, &reply);
    }

    fn on_node_list(&mut self, now: MonoTime, conn: ConnId, msg: &Message) {
        let (Some(list_type), Some(seq)) = (msg.node_list_type, msg.seq_number) else {
            return self.send_error(conn, msg.seq_number, ErrorCode::DoesntContainRequiredOption);
        };
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let algorithm = client.algorithm;
        let node_id = client.node_id;
        let nodes: Vec<NodeId> = msg.nodes.iter().map(|n| n.node_id).collect();
        let result = match list_type {
            NodeListType::InitialConfig | NodeListType::ChangedConfig => {
                if nodes.is_empty() || !nodes.contains(&node_id) {
                    Err(ErrorCode::InvalidConfigNodeList)
                } else {
                    let had_membership = !client.membership.is_empty();
                    let initial = list_type == NodeListType::InitialConfig;
                    self.update_client(conn, |c| c.config_nodes = nodes);
                    Ok(self.after_config(now, conn, algorithm, initial || !had_membership))
                }
            }
            NodeListType::Membership => {
                if msg.ring_id.is_none() {
                    Err(ErrorCode::DoesntContainRequiredOption)
                } else if nodes.is_empty() || !nodes.contains(&node_id) {
                    Err(ErrorCode::InvalidMembershipNodeList)
                } else {
                    let ring_id = msg.ring_id.unwrap_or_default();
                    let heuristics = msg.heuristics;
                    let has_config = !client.config_nodes.is_empty();
                    self.update_client(conn, |c| {
                        c.membership = nodes;
                        c.ring_id = ring_id;
                        c.heuristics = heuristics;
                    });
                    Ok(self.after_membership(now, conn, algorithm, has_config))
                }
            }
            NodeListType::Quorum => {
                if msg.quorate.is_none() {
                    Err(ErrorCode::DoesntContainRequiredOption)
                } else if algorithm == DecisionAlgorithm::Lms {
                    Ok(self.lms_run(now, conn))
                } else {
                    Ok(Vote::NoChange)
                }
            }
        };
        match result {
            Err(code) => self.send_error(conn, Some(seq), code),
            Ok(vote) => {
                let ring_id = self
                    .clients
                    .get(&conn)
                    .map(|c| c.ring_id)
                    .unwrap_or_default();
                let mut reply = Message::new(MsgType::NodeListReply).with_seq(seq);
                reply.node_list_type = Some(list_type);
                reply.ring_id = Some(ring_id);
                reply.vote = Some(vote);
                self.note_vote(conn, vote, ring_id);
                self.send(conn, &reply);
            }
        }
    }

    fn after_config(
        &mut self,
        now: MonoTime,
        conn: ConnId,
        algo: DecisionAlgorithm,
        wait: bool,
    ) -> Vote {
        match algo {
            DecisionAlgorithm::Ffsplit if wait => Vote::AskLater,
            DecisionAlgorithm::Ffsplit => self.ffsplit_do(now, conn, false),
            _ => Vote::NoChange,
        }
    }

    fn after_membership(
        &mut self,
        now: MonoTime,
        conn: ConnId,
        algo: DecisionAlgorithm,
        has_config: bool,
    ) -> Vote {
        match algo {
            DecisionAlgorithm::Ffsplit if !has_config => Vote::AskLater,
            DecisionAlgorithm::Ffsplit => self.ffsplit_do(now, conn, false),
            _ => self.lms_run(now, conn),
        }
    }

    fn on_ask_for_vote(&mut self, now: MonoTime, conn: ConnId, msg: &Message) {
        let Some(seq) = msg.seq_number else {
            return self.send_error(conn, None, ErrorCode::DoesntContainRequiredOption);
        };
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        if client.algorithm != DecisionAlgorithm::Lms {
            return self.send_error(
                conn,
                Some(seq),
                ErrorCode::UnsupportedDecisionAlgorithmMessage,
            );
        }
        let vote = self.lms_run(now, conn);
        let ring_id = self
            .clients
            .get(&conn)
            .map(|c| c.ring_id)
            .unwrap_or_default();
        let mut reply = Message::new(MsgType::AskForVoteReply).with_seq(seq);
        reply.ring_id = Some(ring_id);
        reply.vote = Some(vote);
        self.note_vote(conn, vote, ring_id);
        self.send(conn, &reply);
    }

    fn on_heuristics_change(&mut self, now: MonoTime, conn: ConnId, msg: &Message) {
        let (Some(seq), Some(heuristics)) = (msg.seq_number, msg.heuristics) else {
            return self.send_error(conn, msg.seq_number, ErrorCode::DoesntContainRequiredOption);
        };
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let ready = !client.config_nodes.is_empty() && !client.membership.is_empty();
        let algorithm = client.algorithm;
        self.update_client(conn, |c| c.heuristics = Some(heuristics));
        let vote = if algorithm == DecisionAlgorithm::Ffsplit && ready {
            self.ffsplit_do(now, conn, false)
        } else {
            Vote::NoChange
        };
        let ring_id = self
            .clients
            .get(&conn)
            .map(|c| c.ring_id)
            .unwrap_or_default();
        let mut reply = Message::new(MsgType::HeuristicsChangeReply).with_seq(seq);
        reply.ring_id = Some(ring_id);
        reply.heuristics = Some(heuristics);
        reply.vote = Some(vote);
        self.send(conn, &reply);
    }

    fn on_vote_info_reply(&mut self, conn: ConnId, msg: &Message) {
        let Some(seq) = msg.seq_number else {
            return self.send_error(conn, None, ErrorCode::DoesntContainRequiredOption);
        };
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.algorithm == DecisionAlgorithm::Lms && client.lms_nack_pending == Some(seq) {
            client.lms_nack_pending = None;
            return;
        }
        if client.algorithm != DecisionAlgorithm::Ffsplit || client.vote_info_seq != seq {
            return;
        }
        client.ff_state = FfClientState::WaitingForChange;
        let Some(name) = client.cluster.clone() else {
            return;
        };
        let state = self.clusters.get(&name).map(|c| c.ff_state);
        let nacks_done = self.count_in_state(&name, FfClientState::SendingNack) == 0;
        let acks_done = self.count_in_state(&name, FfClientState::SendingAck) == 0;
        match state {
            // Every NACKed client confirmed: only now may the ACKs go out.
            Some(FfClusterState::SendingNacks) if nacks_done => {
                self.set_cluster_state(&name, FfClusterState::SendingAcks);
                if self.send_votes(&name, None, true) == 0 {
                    self.set_cluster_state(&name, FfClusterState::WaitingForChange);
                }
            }
            Some(FfClusterState::SendingAcks) if acks_done => {
                self.set_cluster_state(&name, FfClusterState::WaitingForChange);
            }
            _ => {}
        }
    }

    // ----- ffsplit -------------------------------------------------------------------------

    fn views(&self, name: &str, leaving: Option<ConnId>) -> (Vec<ConnId>, Vec<ClientView>) {
        let conns: Vec<ConnId> = self
            .clusters
            .get(name)
            .map(|c| {
                c.conns
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != leaving)
                    .collect()
            })
            .unwrap_or_default();
        let views = conns
            .iter()
            .filter_map(|id| self.clients.get(id))
            .map(|c| ClientView {
                node_id: c.node_id,
                config_nodes: c.config_nodes.clone(),
                membership: c.membership.clone(),
                ring_id: c.ring_id,
                heuristics: c.heuristics,
                tie_breaker: c.tie_breaker,
                keep_active_partition_tie_breaker: c.keep_active,
                lms_last_result: c.lms_last_result,
            })
            .collect();
        (conns, views)
    }

    /// `qnetd_algo_ffsplit_do`: returns the vote for the triggering client's reply.
    fn ffsplit_do(&mut self, _now: MonoTime, conn: ConnId, leaving: bool) -> Vote {
        let Some(name) = self.clients.get(&conn).and_then(|c| c.cluster.clone()) else {
            return Vote::NoChange;
        };
        let leaving_conn = leaving.then_some(conn);
        self.set_cluster_state(&name, FfClusterState::WaitingForStableMembership);
        let (conns, views) = self.views(&name, leaving_conn);
        if !algorithm::ffsplit_membership_stable(&views) {
            return Vote::WaitForReply;
        }
        let previous = self
            .clusters
            .get(&name)
            .map(|c| c.quorate_partition.clone())
            .unwrap_or_default();
        let winner = algorithm::ffsplit_select_partition(&views, &previous);
        if let Some(cluster) = self.clusters.get_mut(&name) {
            cluster.quorate_partition = winner.clone().unwrap_or_default();
        }
        for (id, view) in conns.iter().zip(&views) {
            let ack = winner.as_ref().is_some_and(|w| w.contains(&view.node_id));
            self.update_client(*id, |c| {
                c.ff_state = if ack {
                    FfClientState::SendingAck
                } else {
                    FfClientState::SendingNack
                };
            });
        }
        if let Some(id) = leaving_conn {
            self.update_client(id, |c| c.ff_state = FfClientState::WaitingForChange);
        }
        self.set_cluster_state(&name, FfClusterState::SendingNacks);
        if self.send_votes(&name, leaving_conn, false) == 0 {
            self.set_cluster_state(&name, FfClusterState::SendingAcks);
            if self.send_votes(&name, leaving_conn, true) == 0 {
                self.set_cluster_state(&name, FfClusterState::WaitingForChange);
            }
        }
        Vote::NoChange
    }

    fn send_votes(&mut self, name: &str, leaving: Option<ConnId>, acks: bool) -> usize {
        let (conns, _) = self.views(name, leaving);
        let wanted = if acks {
            FfClientState::SendingAck
        } else {
            FfClientState::SendingNack
        };
        let vote = if acks { Vote::Ack } else { Vote::Nack };
        let mut sent = 0;
        for conn in conns {
            let Some(client) = self.clients.get_mut(&conn) else {
                continue;
            };
            if client.ff_state != wanted {
                continue;
            }
            client.vote_info_seq = client.vote_info_seq.wrapping_add(1);
            let seq = client.vote_info_seq;
            let ring_id = client.ring_id;
            self.send_vote_info(conn, seq, ring_id, vote);
            sent += 1;
        }
        sent
    }

    fn count_in_state(&self, name: &str, state: FfClientState) -> usize {
        let (conns, _) = self.views(name, None);
        conns
            .iter()
            .filter(|id| self.clients.get(id).is_some_and(|c| c.ff_state == state))
            .count()
    }

    fn set_cluster_state(&mut self, name: &str, state: FfClusterState) {
        if let Some(cluster) = self.clusters.get_mut(name) {
            cluster.ff_state = state;
        }
    }

    // ----- lms -----------------------------------------------------------------------------

    fn lms_run(&mut self, now: MonoTime, conn: ConnId) -> Vote {
        let Some(name) = self.clients.get(&conn).and_then(|c| c.cluster.clone()) else {
            return Vote::NoChange;
        };
        let (conns, views) = self.views(&name, None);
        let Some(index) = conns.iter().position(|id| *id == conn) else {
            return Vote::NoChange;
        };
        let mut vote = algorithm::lms_decide(&views, index);
        if vote == Vote::Ack && self.lms_revoke_others(&name, conn) {
            // Another partition still holds an ACK: it is NACKed first and this client waits
            // until that NACK is acknowledged (or its holder is gone), as ffsplit does. Upstream
            // lms does not; the split-brain simulation (core/tests/sim_quorum.rs) showed two
            // disjoint partitions holding the vote without it.
            vote = Vote::WaitForReply;
        }
        let retry_ms = self
            .clients
            .get(&conn)
            .map(|c| u64::from(c.heartbeat_interval_ms) / 4);
        self.update_client(conn, |c| {
            c.algo_deadline = None;
            match vote {
                Vote::WaitForReply => {
                    c.lms_last_result = Some(vote);
                    c.algo_deadline = retry_ms.map(|ms| now.plus_ms(ms));
                }
                Vote::Ack => c.lms_last_result = Some(vote),
                Vote::Nack if c.lms_last_result.is_some() => c.lms_last_result = Some(vote),
                _ => {}
            }
        });
        vote
    }

    /// NACK every other client of the cluster that holds an ACK for another ring; true while any
    /// such NACK is unacknowledged.
    fn lms_revoke_others(&mut self, name: &str, conn: ConnId) -> bool {
        let Some(ring_id) = self.clients.get(&conn).map(|c| c.ring_id) else {
            return false;
        };
        let (conns, _) = self.views(name, None);
        let mut waiting = false;
        for other in conns.into_iter().filter(|id| *id != conn) {
            let Some(o) = self.clients.get_mut(&other) else {
                continue;
            };
            if o.lms_nack_pending.is_some() {
                waiting = true;
                continue;
            }
            if o.lms_last_result == Some(Vote::Ack) && o.ring_id != ring_id {
                o.lms_last_result = Some(Vote::Nack);
                o.vote_info_seq = o.vote_info_seq.wrapping_add(1);
                o.lms_nack_pending = Some(o.vote_info_seq);
                let (seq, other_ring) = (o.vote_info_seq, o.ring_id);
                self.send_vote_info(other, seq, other_ring, Vote::Nack);
                waiting = true;
            }
        }
        waiting
    }

    fn lms_timer(&mut self, now: MonoTime, conn: ConnId) {
        let vote = self.lms_run(now, conn);
        if matches!(vote, Vote::Ack | Vote::Nack) {
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            client.vote_info_seq = client.vote_info_seq.wrapping_add(1);
            let (seq, ring_id) = (client.vote_info_seq, client.ring_id);
            self.send_vote_info(conn, seq, ring_id, vote);
        }
    }

    // ----- plumbing ------------------------------------------------------------------------

    fn update_client(&mut self, conn: ConnId, f: impl FnOnce(&mut Client)) {
        if let Some(client) = self.clients.get_mut(&conn) {
            f(client);
        }
    }

    fn send_vote_info(&mut self, conn: ConnId, seq: u32, ring_id: RingId, vote: Vote) {
        let mut msg = Message::new(MsgType::VoteInfo).with_seq(seq);
        msg.ring_id = Some(ring_id);
        msg.vote = Some(vote);
        self.note_vote(conn, vote, ring_id);
        self.send(conn, &msg);
    }

    fn note_vote(&mut self, conn: ConnId, vote: Vote, ring_id: RingId) {
        if !matches!(vote, Vote::Ack | Vote::Nack) {
            return;
        }
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let (cluster, node_id) = (client.cluster.clone().unwrap_or_default(), client.node_id);
        self.event(ServerEvent::VoteSent {
            conn,
            cluster,
            node_id,
            vote,
            ring_id,
        });
    }

    fn send(&mut self, conn: ConnId, msg: &Message) {
        self.outbox
            .push_back(ServerAction::Send(conn, msg.to_bytes()));
    }

    fn send_error(&mut self, conn: ConnId, seq: Option<u32>, code: ErrorCode) {
        let mut msg = Message::new(MsgType::ServerError);
        msg.seq_number = seq;
        msg.reply_error_code = Some(code);
        self.event(ServerEvent::ClientError { conn, code });
        self.send(conn, &msg);
    }

    fn event(&mut self, event: ServerEvent) {
        self.outbox.push_back(ServerAction::Event(event));
    }

    /// Drop a client the server gave up on: decide without it, then close.
    fn drop_client(&mut self, conn: ConnId) {
        self.remove_client(conn);
        self.outbox.push_back(ServerAction::Close(conn));
    }

    fn remove_client(&mut self, conn: ConnId) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let cluster = client.cluster.clone();
        let node_id = client.init_received.then_some(client.node_id);
        if client.init_received && client.algorithm == DecisionAlgorithm::Ffsplit {
            let _ = self.ffsplit_do(MonoTime::ZERO, conn, true);
        }
        self.clients.remove(&conn);
        if let Some(name) = &cluster {
            if let Some(c) = self.clusters.get_mut(name) {
                c.conns.retain(|id| *id != conn);
                if c.conns.is_empty() {
                    self.clusters.remove(name);
                }
            }
        }
        self.event(ServerEvent::ClientLeft {
            conn,
            cluster,
            node_id,
        });
    }
}

/// Types a client sends (so INIT_REQUIRED is the right complaint when they come too early).
fn is_client_message(msg_type: MsgType) -> bool {
    matches!(
        msg_type,
        MsgType::SetOption
            | MsgType::EchoRequest
            | MsgType::NodeList
            | MsgType::AskForVote
            | MsgType::VoteInfoReply
            | MsgType::HeuristicsChange
    )
}
