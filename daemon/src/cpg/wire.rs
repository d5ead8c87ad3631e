//! The process-group messages the daemons exchange through Totem, and their byte encoding.
//!
//! ```text
//! Join  : 0x01 | name_len u8 | name | pid u32
//! Leave : 0x02 | name_len u8 | name | pid u32 | died u8 (0|1)
//! Mcast : 0x03 | name_len u8 | name | pid u32 | payload_len u32 | payload
//! Sync  : 0x04 | count u16 | count × (name_len u8 | name | pid u32)
//! ```
//! Integers are big-endian. Decoding never panics and rejects trailing bytes, so every accepted
//! message has exactly one encoding.

use thiserror::Error;
pub use totem_client::proto::{GroupName, MAX_GROUP_NAME_BYTES as GROUP_NAME_MAX};

/// Largest multicast payload: the largest message a client may send (1 MiB).
pub const PAYLOAD_MAX: usize = totem_client::proto::MAX_MULTICAST_PAYLOAD_BYTES;
/// Most members one sync may list; a node has far fewer client processes than this.
pub const SYNC_MEMBERS_MAX: usize = 4096;

const TAG_JOIN: u8 = 1;
const TAG_LEAVE: u8 = 2;
const TAG_MCAST: u8 = 3;
const TAG_SYNC: u8 = 4;

/// One process-group message; the sending node is known from the Totem delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpgMsg {
    /// Process `pid` on the sender joins `group`.
    Join { group: GroupName, pid: u32 },
    /// Process `pid` leaves `group`; `died` when its connection ended without a leave.
    Leave {
        group: GroupName,
        pid: u32,
        died: bool,
    },
    /// A message from process `pid` to every member of `group`.
    Mcast {
        group: GroupName,
        pid: u32,
        payload: Vec<u8>,
    },
    /// The sender's complete list of local members, sent after each regular configuration.
    Sync { members: Vec<(GroupName, u32)> },
}

/// Why bytes are not a process-group message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// The message ended before a field did.
    #[error("process-group message truncated")]
    Truncated,
    /// The first byte names no message kind.
    #[error("unknown process-group message kind {0}")]
    UnknownKind(u8),
    /// A group name is empty, too long, not UTF-8 or has a NUL byte.
    #[error("bad process-group name")]
    BadGroupName,
    /// A length field exceeds its limit.
    #[error("process-group message field too large")]
    TooLarge,
    /// A flag byte is neither 0 nor 1.
    #[error("bad flag byte")]
    BadFlag,
    /// Bytes follow a complete message.
    #[error("trailing bytes after process-group message")]
    Trailing,
}

/// Appends the encoding of a [`CpgMsg::Mcast`] from borrowed parts (the daemon encodes a
/// client's payload without moving it into a message first).
pub fn encode_mcast(
    out: &mut Vec<u8>,
    group: &GroupName,
    pid: u32,
    payload: &[u8],
) -> Result<(), WireError> {
    if payload.len() > PAYLOAD_MAX {
        return Err(WireError::TooLarge);
    }
    let len = u32::try_from(payload.len()).map_err(|_| WireError::TooLarge)?;
    out.reserve(1 + 1 + group.as_str().len() + 4 + 4 + payload.len());
    out.push(TAG_MCAST);
    put_name(out, group);
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

impl CpgMsg {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            CpgMsg::Join { group, pid } => {
                out.push(TAG_JOIN);
                put_name(out, group);
                out.extend_from_slice(&pid.to_be_bytes());
            }
            CpgMsg::Leave { group, pid, died } => {
                out.push(TAG_LEAVE);
                put_name(out, group);
                out.extend_from_slice(&pid.to_be_bytes());
                out.push(u8::from(*died));
            }
            CpgMsg::Mcast {
                group,
                pid,
                payload,
            } => encode_mcast(out, group, *pid, payload)?,
            CpgMsg::Sync { members } => {
                let count = u16::try_from(members.len()).map_err(|_| WireError::TooLarge)?;
                if members.len() > SYNC_MEMBERS_MAX {
                    return Err(WireError::TooLarge);
                }
                out.push(TAG_SYNC);
                out.extend_from_slice(&count.to_be_bytes());
                for (group, pid) in members {
                    put_name(out, group);
                    out.extend_from_slice(&pid.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    /// Decodes exactly one message from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<CpgMsg, WireError> {
        let mut r = Reader(bytes);
        let msg = match r.u8()? {
            TAG_JOIN => CpgMsg::Join {
                group: r.name()?,
                pid: r.u32()?,
            },
            TAG_LEAVE => CpgMsg::Leave {
                group: r.name()?,
                pid: r.u32()?,
                died: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::BadFlag),
                },
            },
            TAG_MCAST => {
                let group = r.name()?;
                let pid = r.u32()?;
                let len = usize::try_from(r.u32()?).map_err(|_| WireError::TooLarge)?;
                if len > PAYLOAD_MAX {
                    return Err(WireError::TooLarge);
                }
                CpgMsg::Mcast {
                    group,
                    pid,
                    payload: r.take(len)?.to_vec(),
                }
            }
            TAG_SYNC => {
                let count = usize::from(r.u16()?);
                if count > SYNC_MEMBERS_MAX {
                    return Err(WireError::TooLarge);
                }
                let mut members = Vec::with_capacity(count);
                for _ in 0..count {
                    members.push((r.name()?, r.u32()?));
                }
                CpgMsg::Sync { members }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        if !r.0.is_empty() {
            return Err(WireError::Trailing);
        }
        Ok(msg)
    }
}

fn put_name(out: &mut Vec<u8>, name: &GroupName) {
    // GroupName guarantees 1..=GROUP_NAME_MAX (128) bytes, so the length fits a byte.
    const _: () = assert!(GROUP_NAME_MAX <= u8::MAX as usize);
    let bytes = name.as_str().as_bytes();
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// A cursor that returns errors instead of panicking when the input is short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(WireError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn name(&mut self) -> Result<GroupName, WireError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| WireError::BadGroupName)?;
        GroupName::new(s).map_err(|_| WireError::BadGroupName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = GroupName> {
        "[a-zA-Z0-9_.-]{1,40}".prop_map(|s| GroupName::new(&s).expect("strategy makes valid names"))
    }

    fn msg() -> impl Strategy<Value = CpgMsg> {
        prop_oneof![
            (name(), any::<u32>()).prop_map(|(group, pid)| CpgMsg::Join { group, pid }),
            (name(), any::<u32>(), any::<bool>()).prop_map(|(group, pid, died)| CpgMsg::Leave {
                group,
                pid,
                died
            }),
            (
                name(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(group, pid, payload)| CpgMsg::Mcast {
                    group,
                    pid,
                    payload
                }),
            proptest::collection::vec((name(), any::<u32>()), 0..20)
                .prop_map(|members| CpgMsg::Sync { members }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(m in msg()) {
            let mut buf = Vec::new();
            m.encode(&mut buf).expect("valid message encodes");
            prop_assert_eq!(CpgMsg::decode(&buf), Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_reencode_exactly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = CpgMsg::decode(&bytes) {
                let mut again = Vec::new();
                m.encode(&mut again).expect("decoded message encodes");
                prop_assert_eq!(again, bytes);
            }
        }

        #[test]
        fn every_truncation_is_an_error(m in msg()) {
            let mut buf = Vec::new();
            m.encode(&mut buf).expect("valid message encodes");
            for cut in 0..buf.len() {
                prop_assert!(CpgMsg::decode(&buf[..cut]).is_err());
            }
        }
    }

    #[test]
    fn bad_inputs_have_clear_errors() {
        assert_eq!(CpgMsg::decode(&[9]), Err(WireError::UnknownKind(9)));
        assert_eq!(
            CpgMsg::decode(&[TAG_JOIN, 0, 0, 0, 0, 1]),
            Err(WireError::BadGroupName)
        );
        assert_eq!(
            CpgMsg::decode(&[TAG_LEAVE, 1, b'a', 0, 0, 0, 1, 2]),
            Err(WireError::BadFlag)
        );
        assert_eq!(
            CpgMsg::decode(&[TAG_JOIN, 1, b'a', 0, 0, 0, 1, 0]),
            Err(WireError::Trailing)
        );
        assert!(GroupName::new("x".repeat(129)).is_err());
    }
}
