//! Client load: numbered, self-checking payloads.
//!
//! Each payload names its sender and a per-sender counter in a fixed header; the remaining bytes are
//! a pattern derived from both, so a checker can tell a genuine message from a corrupted, truncated
//! or invented one without keeping a copy of what was sent.

use crate::NodeId;

/// "SIM1": marks a simulator payload.
const PAYLOAD_MAGIC: u32 = 0x5349_4D31;
/// Magic (4) + sender (4) + counter (8) + safe flag (1) + total length (4).
pub const PAYLOAD_HEADER_BYTES: usize = 21;
/// The largest client message the issue requires the core to carry (issue 3 §1: "up to 1 MiB").
pub const PAYLOAD_MAX_BYTES: usize = 1 << 20;

/// Identifies one submitted client message: who sent it and its number at that sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    /// The submitting node.
    pub sender: NodeId,
    /// 0, 1, 2, ... per sender, across restarts (the simulator keeps it).
    pub counter: u64,
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.sender, self.counter)
    }
}

/// Why a delivered payload is not one the simulator could have submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Shorter than the header.
    #[error("payload of {len} bytes is shorter than the {PAYLOAD_HEADER_BYTES}-byte header")]
    Short {
        /// Its length.
        len: usize,
    },
    /// The magic number is wrong.
    #[error("payload magic {found:#x} is not {PAYLOAD_MAGIC:#x}")]
    Magic {
        /// What was there.
        found: u32,
    },
    /// The length in the header differs from the delivered length.
    #[error("payload {id} claims {claimed} bytes but {actual} were delivered")]
    Length {
        /// The message.
        id: MsgId,
        /// Length in the header.
        claimed: usize,
        /// Delivered length.
        actual: usize,
    },
    /// A body byte differs from the pattern.
    #[error("payload {id} is corrupted at byte {offset}")]
    Corrupted {
        /// The message.
        id: MsgId,
        /// The first wrong byte.
        offset: usize,
    },
}

/// The decoded header of a simulator payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadInfo {
    /// The message.
    pub id: MsgId,
    /// Whether it was submitted with safe order.
    pub safe: bool,
    /// Total payload length.
    pub len: usize,
}

fn pattern_word(id: MsgId) -> u64 {
    super::rng::split_seed(u64::from(id.sender), id.counter)
}

fn body_byte(word: u64, offset: usize) -> u8 {
    let shift = (offset % 8) * 8;
    ((word >> shift) as u8) ^ ((offset / 8) as u8)
}

/// Builds the payload for `id` of `len` bytes (at least the header size).
pub fn make_payload(id: MsgId, safe: bool, len: usize) -> Vec<u8> {
    let len = len.clamp(PAYLOAD_HEADER_BYTES, PAYLOAD_MAX_BYTES);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&PAYLOAD_MAGIC.to_le_bytes());
    out.extend_from_slice(&id.sender.to_le_bytes());
    out.extend_from_slice(&id.counter.to_le_bytes());
    out.push(u8::from(safe));
    let len_u32 = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len_u32.to_le_bytes());
    let word = pattern_word(id);
    out.extend((PAYLOAD_HEADER_BYTES..len).map(|offset| body_byte(word, offset)));
    debug_assert_eq!(out.len(), len);
    out
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The first body offset whose byte differs from [`body_byte`], eight bytes at a time (the
/// simulator checks every delivered byte; byte by byte this was a third of a soak's time). Eight
/// bytes at offset `8k` are `word`'s little-endian bytes, each xored with `k as u8`.
fn first_wrong_body_byte(bytes: &[u8], word: u64) -> Option<usize> {
    const EVERY_BYTE: u64 = 0x0101_0101_0101_0101;
    let bytewise = |range: std::ops::Range<usize>| {
        range
            .into_iter()
            .find(|&offset| bytes[offset] != body_byte(word, offset))
    };
    let aligned = PAYLOAD_HEADER_BYTES.next_multiple_of(8).min(bytes.len());
    if let Some(offset) = bytewise(PAYLOAD_HEADER_BYTES..aligned) {
        return Some(offset);
    }
    let mut offset = aligned;
    while offset + 8 <= bytes.len() {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&bytes[offset..offset + 8]);
        let expected = word ^ (u64::from((offset / 8) as u8) * EVERY_BYTE);
        if u64::from_le_bytes(chunk) != expected {
            return bytewise(offset..offset + 8);
        }
        offset += 8;
    }
    bytewise(offset..bytes.len())
}

/// Decodes and fully verifies a delivered payload.
pub fn check_payload(bytes: &[u8]) -> Result<PayloadInfo, PayloadError> {
    if bytes.len() < PAYLOAD_HEADER_BYTES {
        return Err(PayloadError::Short { len: bytes.len() });
    }
    let magic = read_u32(bytes, 0);
    if magic != PAYLOAD_MAGIC {
        return Err(PayloadError::Magic { found: magic });
    }
    let sender = read_u32(bytes, 4);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&bytes[8..16]);
    let id = MsgId {
        sender,
        counter: u64::from_le_bytes(counter),
    };
    let safe = bytes[16] != 0;
    let claimed = read_u32(bytes, 17) as usize;
    if claimed != bytes.len() {
        return Err(PayloadError::Length {
            id,
            claimed,
            actual: bytes.len(),
        });
    }
    if let Some(offset) = first_wrong_body_byte(bytes, pattern_word(id)) {
        return Err(PayloadError::Corrupted { id, offset });
    }
    Ok(PayloadInfo {
        id,
        safe,
        len: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let id = MsgId {
            sender: 3,
            counter: 77,
        };
        let p = make_payload(id, true, 300);
        assert_eq!(
            check_payload(&p),
            Ok(PayloadInfo {
                id,
                safe: true,
                len: 300
            })
        );
        let mut bad = p.clone();
        bad[200] ^= 1;
        assert_eq!(
            check_payload(&bad),
            Err(PayloadError::Corrupted { id, offset: 200 })
        );
        assert!(matches!(
            check_payload(&p[..299]),
            Err(PayloadError::Length { .. })
        ));
        assert!(matches!(
            check_payload(&p[..5]),
            Err(PayloadError::Short { len: 5 })
        ));
        let small = make_payload(id, false, 0);
        assert_eq!(small.len(), PAYLOAD_HEADER_BYTES);
        assert!(check_payload(&small).is_ok());
    }

    /// The word-at-a-time check finds exactly the first wrong byte the byte-wise rule finds, for
    /// every length around the alignment boundaries and every corrupted offset.
    #[test]
    fn fast_body_check_matches_the_bytewise_rule() {
        let id = MsgId {
            sender: 9,
            counter: 123_456,
        };
        let word = pattern_word(id);
        for len in PAYLOAD_HEADER_BYTES..PAYLOAD_HEADER_BYTES + 80 {
            let good = make_payload(id, false, len);
            assert_eq!(first_wrong_body_byte(&good, word), None, "len {len}");
            for at in PAYLOAD_HEADER_BYTES..len {
                for later in [None, Some(len - 1)] {
                    let mut bad = good.clone();
                    bad[at] ^= 0x40;
                    if let Some(l) = later.filter(|&l| l > at) {
                        bad[l] ^= 1;
                    }
                    assert_eq!(
                        first_wrong_body_byte(&bad, word),
                        Some(at),
                        "len {len} at {at}"
                    );
                }
            }
        }
        // Past 256 chunks the chunk index wraps in the pattern as it does in `body_byte`.
        let long = make_payload(id, true, 5000);
        assert_eq!(first_wrong_body_byte(&long, word), None);
        let mut bad = long.clone();
        bad[4093] ^= 0xff;
        assert_eq!(first_wrong_body_byte(&bad, word), Some(4093));
    }
}

/// Client load on every live node: a Poisson stream of numbered messages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadOptions {
    /// Mean submissions per second per node (0: no load).
    pub rate_hz: f64,
    /// Fraction submitted with safe order (the rest agreed).
    pub safe_fraction: f64,
    /// Largest ordinary message.
    pub small_max_bytes: usize,
    /// Fraction of messages of 1 KiB..64 KiB.
    pub large_fraction: f64,
    /// Fraction of messages of 64 KiB..1 MiB.
    pub huge_fraction: f64,
}

/// 1 KiB.
const KIB: usize = 1024;

impl LoadOptions {
    /// No client load.
    pub const OFF: LoadOptions = LoadOptions {
        rate_hz: 0.0,
        safe_fraction: 0.0,
        small_max_bytes: 256,
        large_fraction: 0.0,
        huge_fraction: 0.0,
    };

    /// A steady mixed load: 200 msg/s per node, a quarter safe, a few large, rarely 1 MiB.
    pub const MIXED: LoadOptions = LoadOptions {
        rate_hz: 200.0,
        safe_fraction: 0.25,
        small_max_bytes: 256,
        large_fraction: 0.02,
        huge_fraction: 0.001,
    };

    /// Draws one message's size and order.
    pub fn draw(&self, rng: &mut super::rng::SimRng) -> (usize, crate::totem::Order) {
        let order = if rng.chance(self.safe_fraction) {
            crate::totem::Order::Safe
        } else {
            crate::totem::Order::Agreed
        };
        let roll = rng.unit();
        let len = if roll < self.huge_fraction {
            rng.range_u64(64 * KIB as u64, PAYLOAD_MAX_BYTES as u64)
        } else if roll < self.huge_fraction + self.large_fraction {
            rng.range_u64(KIB as u64, 64 * KIB as u64)
        } else {
            rng.range_u64(PAYLOAD_HEADER_BYTES as u64, self.small_max_bytes as u64)
        };
        (usize::try_from(len).unwrap_or(PAYLOAD_MAX_BYTES), order)
    }
}
