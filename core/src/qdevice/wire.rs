//! The corosync-qdevice <-> corosync-qnetd message format (REFERENCE.md §5; facts from
//! corosync-qdevice `qdevices/msg.c`, `tlv.c`, `tlv.h`), as a decoder that never panics and an
//! encoder into a caller's buffer.
//!
//! ```text
//! message: type u16 BE | length u32 BE (bytes after this 6-byte header) | TLV*
//! TLV:     option u16 BE | length u16 BE | value
//! ```
//! Values: integers big-endian; strings unterminated; arrays of u16; ring id = node u32 + seq u64;
//! tie breaker = mode u8 + node u32; node info = a nested TLV list (node id, data center id,
//! node state). Unknown options are skipped, as corosync's `msg_decode` does; unknown enum values
//! and wrong value sizes are errors.

use crate::NodeId;

/// Size of the message header (type + length).
pub const HEADER_SIZE: usize = 6;
/// Largest message we accept or send: corosync-qnetd's default `max_client_receive_size` and
/// `max_client_send_size`, 32 KiB (`QNETD_DEFAULT_MAX_CLIENT_*_SIZE`, `qnet-config.h`).
pub const MESSAGE_SIZE_MAX: usize = 1 << 15;
const TLV_HEADER_SIZE: usize = 4;
/// Most node-info entries one message may carry (bounded: a cluster has at most a few hundred).
pub const NODES_PER_MESSAGE_MAX: usize = 1024;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident : $repr:ty { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }
        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// The wire number.
            pub fn to_wire(self) -> $repr { match self { $($name::$variant => $value,)* } }
            /// The value for a wire number, if known.
            pub fn from_wire(raw: $repr) -> Option<$name> {
                match raw { $($value => Some($name::$variant),)* _ => None }
            }
        }
    };
}

wire_enum!(
    /// Message types (`msg.h`).
    MsgType: u16 {
        /// Client's first message: cluster name.
        Preinit = 0,
        /// Server's TLS capabilities.
        PreinitReply = 1,
        /// Client starts TLS.
        StartTls = 2,
        /// Client parameters.
        Init = 3,
        /// Server limits, error code.
        InitReply = 4,
        /// Server refuses a message.
        ServerError = 5,
        /// Client changes heartbeat / keep-active option.
        SetOption = 6,
        /// Reply to SetOption.
        SetOptionReply = 7,
        /// Heartbeat.
        EchoRequest = 8,
        /// Heartbeat reply (the request with its type changed).
        EchoReply = 9,
        /// Config, membership or quorum node list.
        NodeList = 10,
        /// Vote for a node list.
        NodeListReply = 11,
        /// Client asks for a vote.
        AskForVote = 12,
        /// Reply to AskForVote.
        AskForVoteReply = 13,
        /// Server pushes a vote.
        VoteInfo = 14,
        /// Client acknowledges a VoteInfo.
        VoteInfoReply = 15,
        /// Client heuristics result changed.
        HeuristicsChange = 16,
        /// Reply to HeuristicsChange.
        HeuristicsChangeReply = 17,
    }
);

wire_enum!(
    /// TLV option types (`tlv.h`).
    OptionType: u16 {
        /// Message sequence number.
        MsgSeqNumber = 0,
        /// Cluster name.
        ClusterName = 1,
        /// TLS support.
        TlsSupported = 2,
        /// Client certificate required.
        TlsClientCertRequired = 3,
        /// Supported message types.
        SupportedMessages = 4,
        /// Supported options.
        SupportedOptions = 5,
        /// Reply error code.
        ReplyErrorCode = 6,
        /// Server's maximum request size.
        ServerMaximumRequestSize = 7,
        /// Server's maximum reply size.
        ServerMaximumReplySize = 8,
        /// Node id.
        NodeId = 9,
        /// Supported decision algorithms.
        SupportedDecisionAlgorithms = 10,
        /// Decision algorithm.
        DecisionAlgorithm = 11,
        /// Heartbeat interval (ms).
        HeartbeatInterval = 12,
        /// Ring id.
        RingId = 13,
        /// Config version.
        ConfigVersion = 14,
        /// Data center id.
        DataCenterId = 15,
        /// Node state.
        NodeState = 16,
        /// Node info (nested).
        NodeInfo = 17,
        /// Node list type.
        NodeListType = 18,
        /// Vote.
        Vote = 19,
        /// Quorate.
        Quorate = 20,
        /// Tie breaker.
        TieBreaker = 21,
        /// Heuristics result.
        Heuristics = 22,
        /// Keep active partition tie breaker.
        KeepActivePartitionTieBreaker = 23,
    }
);

wire_enum!(
    /// TLS capability (`enum tlv_tls_supported`).
    TlsSupported: u8 {
        /// No TLS.
        Unsupported = 0,
        /// TLS optional.
        Supported = 1,
        /// TLS required.
        Required = 2,
    }
);

wire_enum!(
    /// Decision algorithms (`enum tlv_decision_algorithm_type`).
    DecisionAlgorithm: u16 {
        /// Test algorithm.
        Test = 0,
        /// Fifty-fifty split.
        Ffsplit = 1,
        /// Two-node last man standing.
        TwoNodeLms = 2,
        /// Last man standing.
        Lms = 3,
    }
);

wire_enum!(
    /// Node states (`enum tlv_node_state`; NOT_SET is the absence of the option).
    NodeState: u8 {
        /// Member.
        Member = 1,
        /// Dead.
        Dead = 2,
        /// Leaving.
        Leaving = 3,
    }
);

wire_enum!(
    /// Node list types.
    NodeListType: u8 {
        /// The configured nodes at connect time.
        InitialConfig = 0,
        /// The configured nodes after a change.
        ChangedConfig = 1,
        /// The current membership.
        Membership = 2,
        /// The current quorum view.
        Quorum = 3,
    }
);

wire_enum!(
    /// Votes (`enum tlv_vote`).
    Vote: u8 {
        /// Not set.
        Undefined = 0,
        /// Vote granted.
        Ack = 1,
        /// Vote refused.
        Nack = 2,
        /// Ask again later.
        AskLater = 3,
        /// A VoteInfo will follow.
        WaitForReply = 4,
        /// Keep the previous vote.
        NoChange = 5,
    }
);

wire_enum!(
    /// Tie-breaker modes (`enum tlv_tie_breaker_mode`).
    TieBreakerMode: u8 {
        /// Partition with the lowest node id.
        Lowest = 1,
        /// Partition with the highest node id.
        Highest = 2,
        /// Partition with a given node id.
        NodeId = 3,
    }
);

wire_enum!(
    /// Heuristics results (UNDEFINED is the absence of the option).
    Heuristics: u8 {
        /// Passed.
        Pass = 1,
        /// Failed.
        Fail = 2,
    }
);

wire_enum!(
    /// Reply error codes (`enum tlv_reply_error_code`).
    ErrorCode: u16 {
        /// No error.
        NoError = 0,
        /// A needed message is unsupported.
        UnsupportedNeededMessage = 1,
        /// A needed option is unsupported.
        UnsupportedNeededOption = 2,
        /// TLS is required.
        TlsRequired = 3,
        /// Message unsupported.
        UnsupportedMessage = 4,
        /// Message too long.
        MessageTooLong = 5,
        /// PREINIT required first.
        PreinitRequired = 6,
        /// A required option is missing.
        DoesntContainRequiredOption = 7,
        /// Message unexpected now.
        UnexpectedMessage = 8,
        /// Message undecodable.
        ErrorDecodingMsg = 9,
        /// Server internal error.
        InternalError = 10,
        /// INIT required first.
        InitRequired = 11,
        /// Decision algorithm unsupported.
        UnsupportedDecisionAlgorithm = 12,
        /// Heartbeat interval outside the server's limits.
        InvalidHeartbeatInterval = 13,
        /// Message not supported by the algorithm.
        UnsupportedDecisionAlgorithmMessage = 14,
        /// Tie breaker differs from the cluster's other nodes.
        TieBreakerDiffersFromOtherNodes = 15,
        /// Algorithm differs from the cluster's other nodes.
        AlgorithmDiffersFromOtherNodes = 16,
        /// Another client has this node id.
        DuplicateNodeId = 17,
        /// Bad config node list.
        InvalidConfigNodeList = 18,
        /// Bad membership node list.
        InvalidMembershipNodeList = 19,
    }
);

/// A ring id as qdevice sends it: representative node and sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingId {
    /// Representative node id.
    pub node_id: NodeId,
    /// Sequence number.
    pub seq: u64,
}

/// The tie breaker a client is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TieBreaker {
    /// Mode.
    pub mode: TieBreakerMode,
    /// Node id for [`TieBreakerMode::NodeId`] (0 otherwise, as on the wire).
    pub node_id: NodeId,
}

impl TieBreaker {
    /// `lowest`, the default.
    pub const LOWEST: TieBreaker = TieBreaker {
        mode: TieBreakerMode::Lowest,
        node_id: 0,
    };
    /// `highest`.
    pub const HIGHEST: TieBreaker = TieBreaker {
        mode: TieBreakerMode::Highest,
        node_id: 0,
    };
    /// A specific node.
    pub fn node(node_id: NodeId) -> TieBreaker {
        TieBreaker {
            mode: TieBreakerMode::NodeId,
            node_id,
        }
    }
}

/// One entry of a node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: NodeId,
    /// Data center id (0 = unset, not sent).
    pub data_center_id: u32,
    /// State, if sent.
    pub node_state: Option<NodeState>,
}

impl NodeInfo {
    /// A node with only its id.
    pub fn id(node_id: NodeId) -> NodeInfo {
        NodeInfo {
            node_id,
            data_center_id: 0,
            node_state: None,
        }
    }
}

/// A decoded message: its type and every option it carried (all optional, as in corosync's
/// `struct msg_decoded`; which ones a type requires is checked by the state machines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message type.
    pub msg_type: MsgType,
    /// Sequence number.
    pub seq_number: Option<u32>,
    /// Cluster name (bytes as sent).
    pub cluster_name: Option<Vec<u8>>,
    /// TLS capability.
    pub tls_supported: Option<TlsSupported>,
    /// Client certificate required.
    pub tls_client_cert_required: Option<bool>,
    /// Supported message type numbers.
    pub supported_messages: Option<Vec<u16>>,
    /// Supported option numbers.
    pub supported_options: Option<Vec<u16>>,
    /// Reply error code.
    pub reply_error_code: Option<ErrorCode>,
    /// Server's maximum request size.
    pub server_maximum_request_size: Option<u32>,
    /// Server's maximum reply size.
    pub server_maximum_reply_size: Option<u32>,
    /// Node id.
    pub node_id: Option<NodeId>,
    /// Supported decision algorithm numbers.
    pub supported_decision_algorithms: Option<Vec<u16>>,
    /// Decision algorithm.
    pub decision_algorithm: Option<DecisionAlgorithm>,
    /// Heartbeat interval (ms).
    pub heartbeat_interval: Option<u32>,
    /// Ring id.
    pub ring_id: Option<RingId>,
    /// Config version.
    pub config_version: Option<u64>,
    /// Data center id.
    pub data_center_id: Option<u32>,
    /// Node state.
    pub node_state: Option<NodeState>,
    /// Node list entries.
    pub nodes: Vec<NodeInfo>,
    /// Node list type.
    pub node_list_type: Option<NodeListType>,
    /// Vote.
    pub vote: Option<Vote>,
    /// Quorate.
    pub quorate: Option<bool>,
    /// Tie breaker.
    pub tie_breaker: Option<TieBreaker>,
    /// Heuristics result.
    pub heuristics: Option<Heuristics>,
    /// Keep active partition tie breaker.
    pub keep_active_partition_tie_breaker: Option<bool>,
}

/// Why bytes are not a qdevice message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header announces more than [`MESSAGE_SIZE_MAX`].
    #[error("qdevice message of {0} bytes exceeds the {MESSAGE_SIZE_MAX}-byte limit")]
    TooLong(usize),
    /// Fewer bytes than the header says.
    #[error("qdevice message truncated")]
    Truncated,
    /// An unknown message type.
    #[error("unknown qdevice message type {0}")]
    UnknownType(u16),
    /// An option runs past the end of the message.
    #[error("qdevice option {0} runs past the end of the message")]
    OptionOverrun(u16),
    /// An option with the wrong value size.
    #[error("qdevice option {option} has length {len}")]
    BadLength {
        /// Option number.
        option: u16,
        /// Its length.
        len: usize,
    },
    /// An option with a value outside its enum.
    #[error("qdevice option {option} has unknown value {value}")]
    BadValue {
        /// Option number.
        option: u16,
        /// The value.
        value: u32,
    },
    /// More node entries than [`NODES_PER_MESSAGE_MAX`].
    #[error("qdevice message carries too many nodes")]
    TooManyNodes,
}

impl Message {
    /// A message of `msg_type` with no options.
    pub fn new(msg_type: MsgType) -> Message {
        Message {
            msg_type,
            seq_number: None,
            cluster_name: None,
            tls_supported: None,
            tls_client_cert_required: None,
            supported_messages: None,
            supported_options: None,
            reply_error_code: None,
            server_maximum_request_size: None,
            server_maximum_reply_size: None,
            node_id: None,
            supported_decision_algorithms: None,
            decision_algorithm: None,
            heartbeat_interval: None,
            ring_id: None,
            config_version: None,
            data_center_id: None,
            node_state: None,
            nodes: Vec::new(),
            node_list_type: None,
            vote: None,
            quorate: None,
            tie_breaker: None,
            heuristics: None,
            keep_active_partition_tie_breaker: None,
        }
    }

    /// The same message with a sequence number.
    pub fn with_seq(mut self, seq: u32) -> Message {
        self.seq_number = Some(seq);
        self
    }

    /// Append the encoding (header and options) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.msg_type.to_wire().to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        self.encode_options(out);
        let payload = u32::try_from(out.len() - start - HEADER_SIZE).unwrap_or(u32::MAX);
        out[start + 2..start + HEADER_SIZE].copy_from_slice(&payload.to_be_bytes());
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }

    fn encode_options(&self, out: &mut Vec<u8>) {
        use OptionType as O;
        if let Some(v) = self.seq_number {
            tlv(out, O::MsgSeqNumber, &v.to_be_bytes());
        }
        if let Some(v) = &self.cluster_name {
            tlv(out, O::ClusterName, v);
        }
        if let Some(v) = self.tls_supported {
            tlv(out, O::TlsSupported, &[v.to_wire()]);
        }
        if let Some(v) = self.tls_client_cert_required {
            tlv(out, O::TlsClientCertRequired, &[u8::from(v)]);
        }
        if let Some(v) = &self.supported_messages {
            tlv(out, O::SupportedMessages, &u16_array(v));
        }
        if let Some(v) = &self.supported_options {
            tlv(out, O::SupportedOptions, &u16_array(v));
        }
        if let Some(v) = self.reply_error_code {
            tlv(out, O::ReplyErrorCode, &v.to_wire().to_be_bytes());
        }
        if let Some(v) = self.server_maximum_request_size {
            tlv(out, O::ServerMaximumRequestSize, &v.to_be_bytes());
        }
        if let Some(v) = self.server_maximum_reply_size {
            tlv(out, O::ServerMaximumReplySize, &v.to_be_bytes());
        }
        if let Some(v) = self.node_id {
            tlv(out, O::NodeId, &v.to_be_bytes());
        }
        if let Some(v) = &self.supported_decision_algorithms {
            tlv(out, O::SupportedDecisionAlgorithms, &u16_array(v));
        }
        if let Some(v) = self.decision_algorithm {
            tlv(out, O::DecisionAlgorithm, &v.to_wire().to_be_bytes());
        }
        if let Some(v) = self.heartbeat_interval {
            tlv(out, O::HeartbeatInterval, &v.to_be_bytes());
        }
        if let Some(v) = self.ring_id {
            let mut value = [0u8; 12];
            value[..4].copy_from_slice(&v.node_id.to_be_bytes());
            value[4..].copy_from_slice(&v.seq.to_be_bytes());
            tlv(out, O::RingId, &value);
        }
        if let Some(v) = self.config_version {
            tlv(out, O::ConfigVersion, &v.to_be_bytes());
        }
        if let Some(v) = self.data_center_id {
            tlv(out, O::DataCenterId, &v.to_be_bytes());
        }
        if let Some(v) = self.node_state {
            tlv(out, O::NodeState, &[v.to_wire()]);
        }
        if let Some(v) = self.node_list_type {
            tlv(out, O::NodeListType, &[v.to_wire()]);
        }
        if let Some(v) = self.vote {
            tlv(out, O::Vote, &[v.to_wire()]);
        }
        if let Some(v) = self.quorate {
            tlv(out, O::Quorate, &[u8::from(v)]);
        }
        if let Some(v) = self.tie_breaker {
            let mut value = [0u8; 5];
            value[0] = v.mode.to_wire();
            if v.mode == TieBreakerMode::NodeId {
                value[1..].copy_from_slice(&v.node_id.to_be_bytes());
            }
            tlv(out, O::TieBreaker, &value);
        }
        for node in &self.nodes {
            let mut nested = Vec::with_capacity(24);
            tlv(&mut nested, O::NodeId, &node.node_id.to_be_bytes());
            if node.data_center_id != 0 {
                tlv(
                    &mut nested,
                    O::DataCenterId,
                    &node.data_center_id.to_be_bytes(),
                );
            }
            if let Some(state) = node.node_state {
                tlv(&mut nested, O::NodeState, &[state.to_wire()]);
            }
            tlv(out, O::NodeInfo, &nested);
        }
        if let Some(v) = self.heuristics {
            tlv(out, O::Heuristics, &[v.to_wire()]);
        }
        if let Some(v) = self.keep_active_partition_tie_breaker {
            tlv(out, O::KeepActivePartitionTieBreaker, &[u8::from(v)]);
        }
    }

    /// Decode one whole message (`bytes` must be exactly header + payload).
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let (msg_type, payload_len) = peek_header(bytes)?.ok_or(DecodeError::Truncated)?;
        let payload = bytes.get(HEADER_SIZE..).ok_or(DecodeError::Truncated)?;
        if payload.len() != payload_len {
            return Err(DecodeError::Truncated);
        }
        let mut msg = Message::new(msg_type);
        for item in TlvIter(payload) {
            let (option, value) = item?;
            msg.apply_option(option, value)?;
        }
        Ok(msg)
    }

    fn apply_option(&mut self, option: u16, value: &[u8]) -> Result<(), DecodeError> {
        let Some(kind) = OptionType::from_wire(option) else {
            return Ok(()); // unknown options are skipped, like corosync's msg_decode
        };
        use OptionType as O;
        match kind {
            O::MsgSeqNumber => self.seq_number = Some(be_u32(option, value)?),
            O::ClusterName => self.cluster_name = Some(value.to_vec()),
            O::TlsSupported => {
                self.tls_supported = Some(enum_u8(option, value, TlsSupported::from_wire)?)
            }
            O::TlsClientCertRequired => {
                self.tls_client_cert_required = Some(bool_u8(option, value)?)
            }
            O::SupportedMessages => self.supported_messages = Some(u16_list(option, value)?),
            O::SupportedOptions => self.supported_options = Some(u16_list(option, value)?),
            O::ReplyErrorCode => {
                let raw = be_u16(option, value)?;
                self.reply_error_code =
                    Some(ErrorCode::from_wire(raw).ok_or(DecodeError::BadValue {
                        option,
                        value: u32::from(raw),
                    })?);
            }
            O::ServerMaximumRequestSize => {
                self.server_maximum_request_size = Some(be_u32(option, value)?)
            }
            O::ServerMaximumReplySize => {
                self.server_maximum_reply_size = Some(be_u32(option, value)?)
            }
            O::NodeId => self.node_id = Some(be_u32(option, value)?),
            O::SupportedDecisionAlgorithms => {
                self.supported_decision_algorithms = Some(u16_list(option, value)?)
            }
            O::DecisionAlgorithm => {
                let raw = be_u16(option, value)?;
                self.decision_algorithm = Some(DecisionAlgorithm::from_wire(raw).ok_or(
                    DecodeError::BadValue {
                        option,
                        value: u32::from(raw),
                    },
                )?);
            }
            O::HeartbeatInterval => self.heartbeat_interval = Some(be_u32(option, value)?),
            O::RingId => {
                let fixed = fixed::<12>(option, value)?;
                let (node, seq) = fixed.split_at(4);
                self.ring_id = Some(RingId {
                    node_id: be_u32(option, node)?,
                    seq: be_u64(option, seq)?,
                });
            }
            O::ConfigVersion => self.config_version = Some(be_u64(option, value)?),
            O::DataCenterId => self.data_center_id = Some(be_u32(option, value)?),
            O::NodeState => self.node_state = Some(enum_u8(option, value, NodeState::from_wire)?),
            O::NodeInfo => {
                if self.nodes.len() >= NODES_PER_MESSAGE_MAX {
                    return Err(DecodeError::TooManyNodes);
                }
                self.nodes.push(decode_node_info(value)?);
            }
            O::NodeListType => {
                self.node_list_type = Some(enum_u8(option, value, NodeListType::from_wire)?)
            }
            O::Vote => self.vote = Some(enum_u8(option, value, Vote::from_wire)?),
            O::Quorate => self.quorate = Some(bool_u8(option, value)?),
            O::TieBreaker => {
                let fixed = fixed::<5>(option, value)?;
                let mode = TieBreakerMode::from_wire(fixed[0]).ok_or(DecodeError::BadValue {
                    option,
                    value: u32::from(fixed[0]),
                })?;
                let node_id = be_u32(option, &fixed[1..])?;
                let node_id = if mode == TieBreakerMode::NodeId {
                    node_id
                } else {
                    0
                };
                self.tie_breaker = Some(TieBreaker { mode, node_id });
            }
            O::Heuristics => {
                let raw = fixed::<1>(option, value)?[0];
                // UNDEFINED (0) is the absence of the option.
                self.heuristics = match raw {
                    0 => None,
                    _ => Some(Heuristics::from_wire(raw).ok_or(DecodeError::BadValue {
                        option,
                        value: u32::from(raw),
                    })?),
                };
            }
            O::KeepActivePartitionTieBreaker => {
                self.keep_active_partition_tie_breaker = Some(bool_u8(option, value)?)
            }
        }
        Ok(())
    }
}

/// Read the header of the message at the start of `bytes`: `Ok(None)` when fewer than
/// [`HEADER_SIZE`] bytes are there yet; the payload length is checked against the limit.
pub fn peek_header(bytes: &[u8]) -> Result<Option<(MsgType, usize)>, DecodeError> {
    let Some(header) = bytes.get(..HEADER_SIZE) else {
        return Ok(None);
    };
    let raw_type = u16::from_be_bytes([header[0], header[1]]);
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MESSAGE_SIZE_MAX - HEADER_SIZE {
        return Err(DecodeError::TooLong(len));
    }
    let msg_type = MsgType::from_wire(raw_type).ok_or(DecodeError::UnknownType(raw_type))?;
    Ok(Some((msg_type, len)))
}

/// Splits a byte stream into messages; feed it what the socket gives, take whole messages out.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message's bytes, if one has arrived. A bad header is an error the
    /// connection cannot recover from (the stream is out of sync).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let Some((_, len)) = peek_header(&self.buffer)? else {
            return Ok(None);
        };
        let total = HEADER_SIZE + len;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let rest = self.buffer.split_off(total);
        Ok(Some(std::mem::replace(&mut self.buffer, rest)))
    }

    /// Bytes held that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

struct TlvIter<'a>(&'a [u8]);

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<(u16, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let Some(header) = self.0.get(..TLV_HEADER_SIZE) else {
            self.0 = &[];
            return Some(Err(DecodeError::Truncated));
        };
        let option = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let Some(value) = self.0.get(TLV_HEADER_SIZE..TLV_HEADER_SIZE + len) else {
            self.0 = &[];
            return Some(Err(DecodeError::OptionOverrun(option)));
        };
        self.0 = &self.0[TLV_HEADER_SIZE + len..];
        Some(Ok((option, value)))
    }
}

fn decode_node_info(value: &[u8]) -> Result<NodeInfo, DecodeError> {
    let option = OptionType::NodeInfo.to_wire();
    let mut node_id = None;
    let mut info = NodeInfo::id(0);
    for item in TlvIter(value) {
        let (inner, inner_value) = item?;
        match OptionType::from_wire(inner) {
            Some(OptionType::NodeId) => node_id = Some(be_u32(inner, inner_value)?),
            Some(OptionType::DataCenterId) => info.data_center_id = be_u32(inner, inner_value)?,
            Some(OptionType::NodeState) => {
                info.node_state = Some(enum_u8(inner, inner_value, NodeState::from_wire)?)
            }
            _ => {}
        }
    }
    info.node_id = node_id.ok_or(DecodeError::BadLength {
        option,
        len: value.len(),
    })?;
    Ok(info)
}

fn tlv(out: &mut Vec<u8>, option: OptionType, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&option.to_wire().to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}

fn u16_array(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn fixed<const N: usize>(option: u16, value: &[u8]) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(value).map_err(|_| DecodeError::BadLength {
        option,
        len: value.len(),
    })
}

fn be_u16(option: u16, value: &[u8]) -> Result<u16, DecodeError> {
    fixed::<2>(option, value).map(u16::from_be_bytes)
}

fn be_u32(option: u16, value: &[u8]) -> Result<u32, DecodeError> {
    fixed::<4>(option, value).map(u32::from_be_bytes)
}

fn be_u64(option: u16, value: &[u8]) -> Result<u64, DecodeError> {
    fixed::<8>(option, value).map(u64::from_be_bytes)
}

fn enum_u8<T>(option: u16, value: &[u8], from: fn(u8) -> Option<T>) -> Result<T, DecodeError> {
    let raw = fixed::<1>(option, value)?[0];
    from(raw).ok_or(DecodeError::BadValue {
        option,
        value: u32::from(raw),
    })
}

fn bool_u8(option: u16, value: &[u8]) -> Result<bool, DecodeError> {
    match fixed::<1>(option, value)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(DecodeError::BadValue {
            option,
            value: u32::from(other),
        }),
    }
}

fn u16_list(option: u16, value: &[u8]) -> Result<Vec<u16>, DecodeError> {
    if value.len() % 2 != 0 {
        return Err(DecodeError::BadLength {
            option,
            len: value.len(),
        });
    }
    Ok(value
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// Decode, re-encode and decode again, asserting the two decodings agree: the fuzz target's body.
pub fn fuzz_round_trip(bytes: &[u8]) {
    let mut reader = FrameReader::new();
    reader.push(bytes);
    while let Ok(Some(frame)) = reader.next_frame() {
        if let Ok(msg) = Message::decode(&frame) {
            let again = Message::decode(&msg.to_bytes());
            assert_eq!(again.as_ref(), Ok(&msg), "re-encoding changed the message");
        }
    }
}
