//! Framing of the control protocol: `u32` big-endian length, a version byte, a postcard payload;
//! the encoder, a one-shot decoder for a byte slice and an incremental reader for a stream that
//! enforces the size limit before it allocates.

use std::io::{self, Read};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::messages::MAX_MULTICAST_PAYLOAD_BYTES;

/// Version byte of every frame this build sends and the only one it decodes. Postcard encodes
/// fields by position, so any change to a message's fields or variants bumps it. History:
/// 1, the first; 2 (development only), multicasts posted; 3, multicasts posted (no reply on
/// success, refusals as `Event::MulticastRefused`), `Request::JoinGroup` gained `options` and
/// `ErrorReply` gained `NoQuorum`.
pub const PROTOCOL_VERSION: u8 = 3;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Bytes before the payload: the length prefix and the version byte.
pub const FRAME_HEADER_BYTES: usize = LENGTH_PREFIX_BYTES + 1;

/// Headroom in bytes above the largest multicast payload for the rest of a message (group name,
/// ids, encoding overhead); also far above the largest status snapshot of a 256-node cluster.
const FRAME_OVERHEAD_BYTES: usize = 64 * 1024;

/// Largest value of the length prefix (version byte plus payload) a peer may send.
pub const MAX_FRAME_BYTES: usize = MAX_MULTICAST_PAYLOAD_BYTES + FRAME_OVERHEAD_BYTES;

/// Why bytes are not a valid frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Announced length.
        length: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The length prefix is 0, so there is not even a version byte.
    #[error("empty frame: no version byte")]
    Empty,
    /// The slice ends before the frame does.
    #[error("truncated frame: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The version byte is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {received}, this side speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// The version byte received.
        received: u8,
    },
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The payload decodes but bytes follow it.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Why [`FrameReader::read_from`] returned no frame.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// Reading failed (including `WouldBlock` on a non-blocking source: call again later, the
    /// partial frame is kept).
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
    /// The bytes read are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame ({received} of {expected} bytes received)")]
    UnexpectedEof {
        /// Bytes of the frame received (prefix included).
        received: usize,
        /// Bytes the frame has (prefix included).
        expected: usize,
    },
}

/// A complete frame whose payload is not decoded yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The version byte followed by the payload; never empty.
    bytes: Vec<u8>,
}

impl RawFrame {
    /// The version byte.
    pub fn version(&self) -> u8 {
        self.bytes.first().copied().unwrap_or_default()
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(1..).unwrap_or_default()
    }

    /// Decodes the payload as `T`, checking the version first.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        decode_body(self.version(), self.payload())
    }
}

/// Encodes `message` as one frame.
///
/// Fails with [`FrameError::Oversized`] when the frame would exceed [`MAX_FRAME_BYTES`] (the
/// peer would refuse it) and with [`FrameError::Malformed`] if serde refuses the value.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    frame[LENGTH_PREFIX_BYTES] = PROTOCOL_VERSION;
    let mut frame = postcard::to_extend(message, frame)?;
    let length = frame.len() - LENGTH_PREFIX_BYTES;
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::Oversized {
            length,
            limit: MAX_FRAME_BYTES,
        });
    }
    // `length` ≤ MAX_FRAME_BYTES, far below u32::MAX.
    let prefix = u32::try_from(length).map_err(|_| FrameError::Oversized {
        length,
        limit: MAX_FRAME_BYTES,
    })?;
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Decodes the frame at the start of `bytes`; returns the message and the bytes it took.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), FrameError> {
    let Some(prefix) = bytes.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Err(FrameError::Truncated {
            needed: LENGTH_PREFIX_BYTES,
            available: bytes.len(),
        });
    };
    let length = checked_length(*prefix, MAX_FRAME_BYTES)?;
    let total = LENGTH_PREFIX_BYTES + length;
    let Some(frame) = bytes.get(LENGTH_PREFIX_BYTES..total) else {
        return Err(FrameError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    };
    let (version, payload) = frame.split_first().ok_or(FrameError::Empty)?;
    Ok((decode_body(*version, payload)?, total))
}

/// Decodes a frame's payload given its version byte. The payload must hold exactly one message.
pub fn decode_body<T: DeserializeOwned>(version: u8, payload: &[u8]) -> Result<T, FrameError> {
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { received: version });
    }
    let (message, rest) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

/// The length a prefix announces, refused when empty or above `limit`.
fn checked_length(prefix: [u8; LENGTH_PREFIX_BYTES], limit: usize) -> Result<usize, FrameError> {
    let length = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if length == 0 {
        return Err(FrameError::Empty);
    }
    if length > limit {
        return Err(FrameError::Oversized { length, limit });
    }
    Ok(length)
}

/// Where the reader is inside the current frame.
#[derive(Debug)]
enum ReadState {
    /// Collecting the length prefix; `filled` bytes of it are in `prefix`.
    Prefix {
        prefix: [u8; LENGTH_PREFIX_BYTES],
        filled: usize,
    },
    /// Collecting the version byte and payload into a buffer of exactly the announced length.
    Body { body: Vec<u8>, filled: usize },
}

impl ReadState {
    fn start() -> ReadState {
        ReadState::Prefix {
            prefix: [0; LENGTH_PREFIX_BYTES],
            filled: 0,
        }
    }
}

/// Reassembles frames from a byte stream that arrives in pieces of any size.
///
/// The length prefix is checked against the limit before the frame's buffer is allocated, and
/// the reader never takes more bytes from its source than the current frame needs, so it can
/// share a socket with nothing else to buffer. After an error the stream is out of step; the
/// connection should be closed.
#[derive(Debug)]
pub struct FrameReader {
    state: ReadState,
    limit: usize,
}

impl Default for FrameReader {
    fn default() -> FrameReader {
        FrameReader::new()
    }
}

impl FrameReader {
    /// A reader with the protocol's limit, [`MAX_FRAME_BYTES`].
    pub fn new() -> FrameReader {
        FrameReader::with_limit(MAX_FRAME_BYTES)
    }

    /// A reader refusing frames longer than `limit` bytes (version byte plus payload).
    pub fn with_limit(limit: usize) -> FrameReader {
        FrameReader {
            state: ReadState::start(),
            limit,
        }
    }

    /// Whether the reader holds part of a frame.
    pub fn is_mid_frame(&self) -> bool {
        !matches!(self.state, ReadState::Prefix { filled: 0, .. })
    }

    /// Takes bytes from `input` up to the end of the current frame. Returns how many bytes were
    /// taken and the frame when it is complete; call again with the rest of `input`.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<RawFrame>), FrameError> {
        let mut taken = 0;
        loop {
            let wanted = self.unfilled();
            let chunk = wanted.min(input.len() - taken);
            self.filled_slot()[..chunk].copy_from_slice(&input[taken..taken + chunk]);
            taken += chunk;
            if let Some(frame) = self.advance(chunk)? {
                return Ok((taken, Some(frame)));
            }
            if taken == input.len() {
                return Ok((taken, None));
            }
        }
    }

    /// Reads from `source` until one frame is complete.
    ///
    /// Returns `Ok(None)` when the stream ends cleanly between frames. `Interrupted` reads are
    /// retried; other I/O errors, `WouldBlock` included, are returned as [`FillError::Io`] with
    /// the partial frame kept, so a non-blocking caller retries when the source is readable.
    pub fn read_from<R: Read + ?Sized>(
        &mut self,
        source: &mut R,
    ) -> Result<Option<RawFrame>, FillError> {
        loop {
            let slot = self.filled_slot();
            let read = match source.read(slot) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(FillError::Io(error)),
            };
            if read == 0 {
                return match &self.state {
                    ReadState::Prefix { filled: 0, .. } => Ok(None),
                    ReadState::Prefix { filled, .. } => Err(FillError::UnexpectedEof {
                        received: *filled,
                        expected: LENGTH_PREFIX_BYTES,
                    }),
                    ReadState::Body { body, filled } => Err(FillError::UnexpectedEof {
                        received: LENGTH_PREFIX_BYTES + filled,
                        expected: LENGTH_PREFIX_BYTES + body.len(),
                    }),
                };
            }
            if let Some(frame) = self.advance(read)? {
                return Ok(Some(frame));
            }
        }
    }

    /// Bytes still missing from the current part (prefix or body).
    fn unfilled(&self) -> usize {
        match &self.state {
            ReadState::Prefix { filled, .. } => LENGTH_PREFIX_BYTES - filled,
            ReadState::Body { body, filled } => body.len() - filled,
        }
    }

    /// The unfilled part of the current buffer.
    fn filled_slot(&mut self) -> &mut [u8] {
        match &mut self.state {
            ReadState::Prefix { prefix, filled } => &mut prefix[*filled..],
            ReadState::Body { body, filled } => &mut body[*filled..],
        }
    }

    /// Records `count` new bytes in the current buffer and moves to the next state.
    fn advance(&mut self, count: usize) -> Result<Option<RawFrame>, FrameError> {
        match &mut self.state {
            ReadState::Prefix { prefix, filled } => {
                *filled += count;
                if *filled == LENGTH_PREFIX_BYTES {
                    let prefix = *prefix;
                    self.state = ReadState::start();
                    let length = checked_length(prefix, self.limit)?;
                    self.state = ReadState::Body {
                        body: vec![0; length],
                        filled: 0,
                    };
                }
                Ok(None)
            }
            ReadState::Body { body, filled } => {
                *filled += count;
                if *filled < body.len() {
                    return Ok(None);
                }
                // `checked_length` refused empty frames, so `bytes` holds the version byte.
                let bytes = std::mem::take(body);
                self.state = ReadState::start();
                Ok(Some(RawFrame { bytes }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-blocking source: hands out one byte per read, `WouldBlock` in between.
    struct Trickle<'a> {
        bytes: &'a [u8],
        blocked: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            self.blocked = !self.blocked;
            if self.blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let Some((&first, rest)) = self.bytes.split_first() else {
                return Ok(0);
            };
            let Some(slot) = buffer.first_mut() else {
                return Ok(0);
            };
            *slot = first;
            self.bytes = rest;
            Ok(1)
        }
    }

    #[test]
    fn would_block_keeps_the_partial_frame() {
        let messages = [7u32, 300, 70_000];
        let mut stream = Vec::new();
        for message in messages {
            stream.extend(encode_frame(&message).expect("encodes"));
        }
        let mut source = Trickle {
            bytes: &stream,
            blocked: false,
        };
        let mut reader = FrameReader::new();
        let mut decoded = Vec::new();
        let mut would_blocks = 0;
        loop {
            match reader.read_from(&mut source) {
                Ok(Some(frame)) => decoded.push(frame.decode::<u32>().expect("valid")),
                Ok(None) => break,
                Err(FillError::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    would_blocks += 1;
                }
                Err(error) => panic!("unexpected error: {error}"),
            }
        }
        assert_eq!(decoded, messages);
        assert_eq!(would_blocks, stream.len() + 1);
    }

    #[test]
    fn feed_takes_only_the_current_frame() {
        let first = encode_frame(&1u8).expect("encodes");
        let second = encode_frame(&2u8).expect("encodes");
        let stream = [first.clone(), second].concat();
        let mut reader = FrameReader::new();
        let (taken, frame) = reader.feed(&stream).expect("valid");
        assert_eq!(taken, first.len());
        assert_eq!(frame.expect("complete").decode::<u8>().expect("valid"), 1);
        let (taken, frame) = reader.feed(&stream[first.len()..]).expect("valid");
        assert_eq!(taken, stream.len() - first.len());
        assert_eq!(frame.expect("complete").decode::<u8>().expect("valid"), 2);
        assert!(!reader.is_mid_frame());
    }

    #[test]
    fn oversized_messages_are_refused_by_the_encoder() {
        let payload = vec![0u8; MAX_FRAME_BYTES];
        assert!(matches!(
            encode_frame(&payload),
            Err(FrameError::Oversized { .. })
        ));
    }
}
