//! The control-socket protocol between totemd and its clients (`pvecm`, the [`crate::Client`]
//! library): framing, message types and the status snapshots the daemon reports.
//!
//! A connection carries frames in both directions:
//!
//! ```text
//!  0               4       5
//! +---------------+-------+--------------------------------------+
//! | length u32 BE | ver u8| postcard-encoded message              |
//! +---------------+-------+--------------------------------------+
//!                  <------------------ length ------------------->
//! ```
//!
//! `length` counts the version byte and the payload and is at most [`MAX_FRAME_BYTES`]; `ver` is
//! [`PROTOCOL_VERSION`]. Clients send [`ClientMessage`]s (a request id and a [`Request`]); the
//! daemon answers each with a [`DaemonMessage::Reply`] carrying the same id — except multicasts,
//! which are posted: no answer unless refused ([`Event::MulticastRefused`]) — and pushes
//! [`DaemonMessage::Event`]s (deliveries, group and quorum changes) at any time in between.
//!
//! The payload encoding is postcard 1.x: compact varints, a frozen and documented wire
//! specification, no self-describing `deserialize_any` paths an attacker could steer, and an
//! actively maintained crate (bincode, the other compact candidate, is no longer maintained;
//! JSON would triple the size of every multicast payload).

mod frame;
mod messages;
mod status;

pub use frame::{
    decode_body, decode_frame, encode_frame, FillError, FrameError, FrameReader, RawFrame,
    FRAME_HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
pub use messages::{
    ClientMessage, ConfigChange, ConfigCommitted, DaemonMessage, Delivery, DeliveryRef, ErrorReply,
    Event, GroupMember, GroupMembershipChange, GroupName, GroupNameError, JoinOptions, LeaveReason,
    LeftMember, MulticastRef, MulticastRefused, Ordering, QuorumChange, Request, Response,
    MAX_GROUP_NAME_BYTES, MAX_MULTICAST_PAYLOAD_BYTES,
};
pub use status::{
    ClusterInfo, LinkMode, LinksStatus, LocalLink, MemberNode, Membership, NodeId, NodeLinks,
    PeerLink, QdeviceDevice, QuorumFlags, QuorumStatus, RingId, RttStats,
};
