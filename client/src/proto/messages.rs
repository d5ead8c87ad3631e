//! The messages of the control protocol: client requests, daemon replies and the events the
//! daemon pushes (deliveries, process-group and quorum changes).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::status::{LinksStatus, Membership, NodeId, QuorumStatus, RingId};

/// Longest process-group name in bytes (corosync's `CPG_MAX_NAME_LENGTH`, `include/corosync/cpg.h`).
pub const MAX_GROUP_NAME_BYTES: usize = 128;

/// Largest multicast payload in bytes a client may send or be delivered: 1 MiB, the order of
/// corosync's default IPC buffer (`ipc_buffer_size`, 1 MiB in `exec/main.c`).
pub const MAX_MULTICAST_PAYLOAD_BYTES: usize = 1 << 20;

/// A validated process-group name: 1 to [`MAX_GROUP_NAME_BYTES`] bytes of UTF-8 without NUL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

/// Why a string is not a [`GroupName`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupNameError {
    /// The name is empty.
    #[error("group name is empty")]
    Empty,
    /// The name is longer than [`MAX_GROUP_NAME_BYTES`].
    #[error("group name is {0} bytes long, the limit is {MAX_GROUP_NAME_BYTES}")]
    TooLong(usize),
    /// The name contains a NUL byte.
    #[error("group name contains a NUL byte")]
    ContainsNul,
}

impl GroupName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<GroupName, GroupNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(GroupNameError::Empty);
        }
        if name.len() > MAX_GROUP_NAME_BYTES {
            return Err(GroupNameError::TooLong(name.len()));
        }
        if name.contains('\0') {
            return Err(GroupNameError::ContainsNul);
        }
        Ok(GroupName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = GroupNameError;

    fn try_from(name: String) -> Result<GroupName, GroupNameError> {
        GroupName::new(name)
    }
}

impl From<GroupName> for String {
    fn from(name: GroupName) -> String {
        name.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The delivery guarantee a multicast asks for (the Totem paper's two orders).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ordering {
    /// Delivered in total order as soon as all earlier messages are delivered.
    Agreed,
    /// Delivered in total order once every member of the ring has received it.
    Safe,
}

/// How a connection joins a process group ([`Request::JoinGroup`], [`crate::Client::join_with`]).
///
/// The default is corosync CPG's behaviour: a partition that is not quorate still orders and
/// delivers its members' messages among itself (Pacemaker and similar stacks rely on that).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JoinOptions {
    /// Refuse this member's multicasts with [`ErrorReply::NoQuorum`] while the local node is
    /// not quorate. Only sends are refused: joins, leaves and deliveries are not held back, and
    /// a message the daemon accepted while quorate is still delivered (possibly inside the
    /// non-quorate partition, if the ring broke before it was ordered).
    pub require_quorum: bool,
}

/// A request from a client to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The quorum status snapshot ([`Response::Status`]).
    Status,
    /// The current membership ([`Response::Nodes`]).
    Nodes,
    /// Link status towards every node ([`Response::Links`]).
    Links,
    /// Set expected votes cluster-wide (`corosync-quorumtool -e`, REFERENCE.md §3.3).
    SetExpectedVotes {
        /// New expected votes, ≥ 1.
        expected: u32,
    },
    /// Set the votes of a node (`corosync-quorumtool -v`, `-n`).
    SetVotes {
        /// Node to change; `None` is the local node.
        node: Option<NodeId>,
        /// New votes.
        votes: u32,
    },
    /// Reload the configuration file (like SIGHUP).
    ReloadConfig,
    /// Join a process group; the daemon then pushes the group's membership changes and
    /// deliveries to this connection.
    JoinGroup {
        /// Group to join.
        group: GroupName,
        /// How (protocol version 2 and later).
        options: JoinOptions,
    },
    /// Leave a process group.
    LeaveGroup {
        /// Group to leave.
        group: GroupName,
    },
    /// Multicast to a group this connection has joined.
    ///
    /// Posted, not answered: the daemon sends nothing back when it takes the message, so a
    /// client can stream multicasts without a round trip each. Back-pressure is the socket
    /// itself: while Totem's submit queue is full the daemon stops reading the connection, and
    /// the client's writes wait (or report `TryAgain` when non-blocking). A refusal (not a
    /// member of the group, too large, no quorum for a group that requires it) comes back as
    /// [`Event::MulticastRefused`] carrying this request's id.
    Multicast {
        /// Destination group.
        group: GroupName,
        /// Requested delivery guarantee.
        ordering: Ordering,
        /// Message, at most [`MAX_MULTICAST_PAYLOAD_BYTES`].
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Change corosync.conf cluster-wide: the daemon edits its file, raises `config_version`
    /// and commits the new text through the ring; the answer ([`Response::ConfigCommitted`])
    /// comes once the local daemon has written and applied it.
    ChangeConfig(ConfigChange),
}

/// A cluster-wide configuration change ([`Request::ChangeConfig`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigChange {
    /// Add a node to the nodelist (`pvecm addnode`, and the join endpoint for `pvecm add`).
    AddNode {
        /// The node's name.
        name: String,
        /// Its node id; `None`: the smallest unused id ≥ 1.
        nodeid: Option<NodeId>,
        /// Its `quorum_votes`; `None`: 1.
        votes: Option<u32>,
        /// Its address on each link, `(link number, address)`; must name the cluster's links.
        links: Vec<(u8, String)>,
        /// Replace an existing entry of the same name instead of refusing it.
        force: bool,
    },
    /// Remove a node by name, node id or address (`pvecm delnode`).
    DelNode {
        /// Name, decimal node id or a `ringN_addr` value.
        node: String,
    },
    /// Write `quorum.device` for a qnetd arbiter (`pvecm qdevice setup`).
    QdeviceSetup {
        /// The arbiter's host.
        host: String,
        /// Accept an odd node count (lms) and replace an existing device.
        force: bool,
    },
    /// Remove `quorum.device` (`pvecm qdevice remove`).
    QdeviceRemove,
    /// Replace the whole file with `text` (its `config_version` must be higher).
    Replace {
        /// The new corosync.conf.
        text: String,
    },
}

/// Answer to [`Request::ChangeConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigCommitted {
    /// The committed `totem.config_version`.
    pub config_version: u64,
    /// The node id given to an added node.
    pub nodeid: Option<NodeId>,
    /// The committed corosync.conf.
    pub text: String,
}

impl Request {
    /// Whether the request changes state (and so needs write permission on the socket).
    pub fn is_mutating(&self) -> bool {
        !matches!(self, Request::Status | Request::Nodes | Request::Links)
    }
}

/// A successful answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(QuorumStatus),
    /// Answer to [`Request::Nodes`].
    Nodes(Membership),
    /// Answer to [`Request::Links`].
    Links(LinksStatus),
    /// The request was carried out (set, reload, join, leave).
    Done,
    /// Answer to [`Request::ChangeConfig`].
    ConfigCommitted(ConfigCommitted),
}

/// Why the daemon refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ErrorReply {
    /// Back-pressure: the daemon's queue is full; retry after a delivery or a short wait
    /// (corosync's `CS_ERR_TRY_AGAIN`).
    #[error("the daemon is busy, try again")]
    TryAgain,
    /// The peer's credentials do not allow the request.
    #[error("permission denied: {detail}")]
    PermissionDenied {
        /// What was refused and why.
        detail: String,
    },
    /// The request could not be decoded or makes no sense in this state.
    #[error("bad request: {detail}")]
    BadRequest {
        /// What was wrong.
        detail: String,
    },
    /// The request is well formed but a value is refused (corosync's `CS_ERR_INVALID_PARAM`).
    #[error("invalid parameter: {detail}")]
    InvalidParam {
        /// Which value and why.
        detail: String,
    },
    /// The client spoke a protocol version the daemon does not.
    #[error("protocol version mismatch: daemon speaks {daemon}, client sent {client}")]
    VersionMismatch {
        /// Version the daemon speaks.
        daemon: u8,
        /// Version the client sent.
        client: u8,
    },
    /// The daemon failed to carry out a valid request.
    #[error("daemon error: {detail}")]
    Failed {
        /// What failed.
        detail: String,
    },
    /// The connection joined the group with [`JoinOptions::require_quorum`] and the local node
    /// is not quorate: nothing was sent. Retry once a [`Event::Quorum`] says quorate (the
    /// wording is pvecm's for a write without quorum).
    #[error("cluster not ready - no quorum? (the group was joined with require_quorum)")]
    NoQuorum,
}

/// A frame a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMessage {
    /// Chosen by the client; echoed in the reply.
    pub request_id: u32,
    /// What the client asks.
    pub request: Request,
}

/// A frame the daemon sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DaemonMessage {
    /// The answer to the request with the same id.
    Reply {
        /// The request's id (0 when the request could not be decoded).
        request_id: u32,
        /// The outcome.
        result: Result<Response, ErrorReply>,
    },
    /// Something happened that the connection subscribed to.
    Event(Event),
}

/// A message delivered to a group member, in the ring's total order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Group the message was sent to.
    pub group: GroupName,
    /// The sending process.
    pub sender: GroupMember,
    /// Ring the message was ordered in.
    pub ring_id: RingId,
    /// Guarantee the sender asked for.
    pub ordering: Ordering,
    /// The message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A [`DaemonMessage::Event`] of an [`Event::Delivery`] made of borrowed parts, so the daemon
/// encodes a delivery once for all its local members without first copying the payload into an
/// owned [`Delivery`]. It serializes to exactly the bytes of the owned message (checked by a
/// property test in `tests/proto_roundtrip.rs`).
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRef<'a> {
    /// Group the message was sent to.
    pub group: &'a GroupName,
    /// The sending process.
    pub sender: GroupMember,
    /// Ring the message was ordered in.
    pub ring_id: RingId,
    /// Guarantee the sender asked for.
    pub ordering: Ordering,
    /// The message.
    pub payload: &'a [u8],
}

/// A [`ClientMessage`] carrying a [`Request::Multicast`], made of borrowed parts so a client
/// encodes a multicast without first copying its payload into an owned [`Request`]. It
/// serializes to exactly the bytes of the owned message (property test in
/// `tests/proto_roundtrip.rs`).
#[derive(Clone, Copy, Debug)]
pub struct MulticastRef<'a> {
    /// The request id.
    pub request_id: u32,
    /// Destination group.
    pub group: &'a GroupName,
    /// Requested delivery guarantee.
    pub ordering: Ordering,
    /// The message.
    pub payload: &'a [u8],
}

/// Variant index of [`Request::Multicast`] (declaration order; serde's index).
const REQUEST_MULTICAST: u32 = 8;

impl Serialize for MulticastRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeStruct, SerializeStructVariant};
        /// The [`Request::Multicast`] layer, fields in declaration order.
        struct AsRequest<'b, 'a>(&'b MulticastRef<'a>);
        impl Serialize for AsRequest<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let m = self.0;
                let mut s = serializer.serialize_struct_variant(
                    "Request",
                    REQUEST_MULTICAST,
                    "Multicast",
                    3,
                )?;
                s.serialize_field("group", m.group)?;
                s.serialize_field("ordering", &m.ordering)?;
                s.serialize_field("payload", serde_bytes::Bytes::new(m.payload))?;
                s.end()
            }
        }
        let mut s = serializer.serialize_struct("ClientMessage", 2)?;
        s.serialize_field("request_id", &self.request_id)?;
        s.serialize_field("request", &AsRequest(self))?;
        s.end()
    }
}

/// Variant index of [`DaemonMessage::Event`] (declaration order; serde's index).
const DAEMON_MESSAGE_EVENT: u32 = 1;
/// Variant index of [`Event::Delivery`].
const EVENT_DELIVERY: u32 = 0;

impl Serialize for DeliveryRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The [`Event::Delivery`] layer.
        struct AsEvent<'b, 'a>(&'b DeliveryRef<'a>);
        /// The [`Delivery`] struct layer, fields in declaration order.
        struct AsDelivery<'b, 'a>(&'b DeliveryRef<'a>);
        impl Serialize for AsEvent<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_newtype_variant(
                    "Event",
                    EVENT_DELIVERY,
                    "Delivery",
                    &AsDelivery(self.0),
                )
            }
        }
        impl Serialize for AsDelivery<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let d = self.0;
                let mut s = serializer.serialize_struct("Delivery", 5)?;
                s.serialize_field("group", d.group)?;
                s.serialize_field("sender", &d.sender)?;
                s.serialize_field("ring_id", &d.ring_id)?;
                s.serialize_field("ordering", &d.ordering)?;
                s.serialize_field("payload", serde_bytes::Bytes::new(d.payload))?;
                s.end()
            }
        }
        serializer.serialize_newtype_variant(
            "DaemonMessage",
            DAEMON_MESSAGE_EVENT,
            "Event",
            &AsEvent(self),
        )
    }
}

/// One process in a group: a client connection on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupMember {
    /// Node the process runs on.
    pub node: NodeId,
    /// Process id of the client on that node.
    pub pid: u32,
}

/// Why a process left a group (corosync's `cpg_reason_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaveReason {
    /// The process left the group.
    Left,
    /// The process's connection to its daemon closed.
    ProcessDown,
    /// The process's node left the membership.
    NodeDown,
}

/// A process that left a group, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeftMember {
    /// The process.
    pub member: GroupMember,
    /// Why it left.
    pub reason: LeaveReason,
}

/// The membership of a group changed (corosync's confchg callback).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembershipChange {
    /// The group.
    pub group: GroupName,
    /// Ring in which the change is ordered.
    pub ring_id: RingId,
    /// Members after the change.
    pub members: Vec<GroupMember>,
    /// Processes that joined.
    pub joined: Vec<GroupMember>,
    /// Processes that left.
    pub left: Vec<LeftMember>,
}

/// The quorum state or the node membership changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumChange {
    /// Whether the partition is quorate now.
    pub quorate: bool,
    /// The new ring.
    pub ring_id: RingId,
    /// Node ids of the new membership.
    pub members: Vec<NodeId>,
}

/// An unsolicited message from the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A message for a joined group.
    Delivery(Delivery),
    /// A joined group's membership changed.
    GroupMembership(GroupMembershipChange),
    /// Quorum or node membership changed (sent to every connection that joined a group).
    Quorum(QuorumChange),
    /// A posted [`Request::Multicast`] was not sent to the ring.
    MulticastRefused(MulticastRefused),
}

/// A posted multicast the daemon refused; nothing of it reached the ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MulticastRefused {
    /// The id of the refused [`Request::Multicast`].
    pub request_id: u32,
    /// The group it was sent to.
    pub group: GroupName,
    /// Why.
    pub error: ErrorReply,
}
