//! UDP segmentation offload on one link socket: the GSO probe and GRO switch at open, the
//! `UDP_SEGMENT` control message of a GSO send, the `UDP_GRO` control message of a coalesced
//! receive and the split of such a receive into its datagrams, what to do when the kernel
//! refuses a GSO send at run time, and the plain one-datagram-per-`sendmsg` resend of a refused
//! run. Shared by both backends.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::gso_plan::{GSO_SEGMENTS_MAX, RUN_BYTES_MAX_V6};
use super::sockaddr::{self, RawSockAddr};
use super::sockopt::{drain_errqueue, is_path_errno, setsockopt_int};
use super::{IoStats, PathError};

/// Segment size used only to ask the kernel whether it knows `UDP_SEGMENT` (any valid size does).
const GSO_PROBE_SEGMENT_BYTES: i32 = 1200;

/// Smallest `max_datagram_bytes` with which GRO is turned on: a coalesced receive can carry up to
/// the largest UDP payload (65527 bytes), and a buffer that cannot hold it would truncate, i.e.
/// lose, a whole batch of datagrams.
pub(crate) const GRO_RECV_BYTES_MIN: usize = RUN_BYTES_MAX_V6;

/// Longest single `poll` wait while resending into a full socket buffer before trying again.
const RESEND_WAIT_MS: i32 = 100;

// SAFETY (the three constants): CMSG_LEN / CMSG_SPACE are arithmetic on their argument only.
/// Bytes of a control message header including its alignment padding (`CMSG_LEN(0)`): where the
/// data starts.
const CMSG_HEADER_BYTES: usize = unsafe { libc::CMSG_LEN(0) } as usize;
/// `cmsg_len` of a `UDP_SEGMENT` message (a `u16` segment size, udp(7)).
const SEGMENT_CMSG_LEN: usize = unsafe { libc::CMSG_LEN(mem::size_of::<u16>() as u32) } as usize;
/// `msg_controllen` of a send carrying one `UDP_SEGMENT` message.
pub(crate) const SEGMENT_CONTROL_BYTES: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;

/// Room for the control messages of one receive: `UDP_GRO` (an `int`) with plenty to spare, so a
/// message we did not ask for cannot truncate it away.
pub(crate) const RECV_CONTROL_BYTES: usize = 64;

/// An 8-aligned control buffer for one send (the kernel reads `cmsghdr`s from it).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct SendControl([u8; 32]);

const _: () = assert!(SEGMENT_CONTROL_BYTES <= mem::size_of::<SendControl>());
const _: () = assert!(CMSG_HEADER_BYTES + mem::size_of::<i32>() <= RECV_CONTROL_BYTES);

impl SendControl {
    pub(crate) const fn zeroed() -> SendControl {
        SendControl([0; 32])
    }

    /// Writes one `SOL_UDP / UDP_SEGMENT` message saying `segment_bytes`; returns the
    /// `msg_controllen` to use.
    pub(crate) fn write_segment(&mut self, segment_bytes: u16) -> usize {
        self.0 = [0; 32];
        // SAFETY: cmsghdr is plain old data; all-zero bytes are a valid value.
        let mut header: libc::cmsghdr = unsafe { mem::zeroed() };
        header.cmsg_len = SEGMENT_CMSG_LEN;
        header.cmsg_level = libc::SOL_UDP;
        header.cmsg_type = libc::UDP_SEGMENT;
        // SAFETY: the buffer is 32 bytes and 8-aligned; a cmsghdr (16 bytes on 64-bit, 12 on
        // 32-bit) fits at its start.
        unsafe { std::ptr::write_unaligned(self.0.as_mut_ptr().cast::<libc::cmsghdr>(), header) };
        self.0[CMSG_HEADER_BYTES..CMSG_HEADER_BYTES + 2]
            .copy_from_slice(&segment_bytes.to_ne_bytes());
        SEGMENT_CONTROL_BYTES
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.0.as_mut_ptr().cast()
    }
}

/// An 8-aligned control buffer for one receive.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct RecvControl(pub(crate) [u8; RECV_CONTROL_BYTES]);

impl RecvControl {
    pub(crate) const fn zeroed() -> RecvControl {
        RecvControl([0; RECV_CONTROL_BYTES])
    }
}

/// The segment size of a coalesced receive, from the control messages the kernel returned
/// (`SOL_UDP / UDP_GRO`, an `int`); `None` when there is none (one plain datagram). Reads
/// `control` as bytes at any alignment and stops at the first malformed header.
pub(crate) fn gro_segment_bytes(control: &[u8]) -> Option<usize> {
    let mut offset = 0;
    while control.len().saturating_sub(offset) >= CMSG_HEADER_BYTES {
        let rest = &control[offset..];
        // SAFETY: `rest` holds at least CMSG_HEADER_BYTES >= size_of::<cmsghdr>() bytes; cmsghdr
        // is plain old data, read without alignment assumptions.
        let header = unsafe { std::ptr::read_unaligned(rest.as_ptr().cast::<libc::cmsghdr>()) };
        let len: usize = header.cmsg_len;
        if len < CMSG_HEADER_BYTES || len > rest.len() {
            return None;
        }
        if header.cmsg_level == libc::SOL_UDP
            && header.cmsg_type == libc::UDP_GRO
            && len >= CMSG_HEADER_BYTES + mem::size_of::<i32>()
        {
            let mut value = [0u8; 4];
            value.copy_from_slice(&rest[CMSG_HEADER_BYTES..CMSG_HEADER_BYTES + 4]);
            return usize::try_from(i32::from_ne_bytes(value))
                .ok()
                .filter(|&s| s > 0);
        }
        // CMSG_NXTHDR: the next header starts at the aligned end of this one.
        let align = mem::size_of::<usize>();
        offset += len.div_ceil(align) * align;
    }
    None
}

/// The datagrams of one receive: `payload` cut into pieces of `segment_bytes` (the last may be
/// shorter), or `payload` whole when it is no longer than a segment or there is no segment size.
/// An empty payload is one empty datagram.
pub(crate) fn segments(payload: &[u8], segment_bytes: Option<usize>) -> Segments<'_> {
    let step = match segment_bytes {
        Some(s) if s > 0 && s < payload.len() => s,
        _ => payload.len().max(1),
    };
    Segments {
        rest: payload,
        step,
        first: true,
    }
}

/// How many datagrams [`segments`] yields.
pub(crate) fn segment_count(payload_len: usize, segment_bytes: Option<usize>) -> usize {
    match segment_bytes {
        Some(s) if s > 0 && s < payload_len => payload_len.div_ceil(s),
        _ => 1,
    }
}

/// Iterator of [`segments`].
pub(crate) struct Segments<'a> {
    rest: &'a [u8],
    step: usize,
    first: bool,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() && !mem::take(&mut self.first) {
            return None;
        }
        self.first = false;
        let (head, tail) = self.rest.split_at(self.step.min(self.rest.len()));
        self.rest = tail;
        Some(head)
    }
}

/// Counts a run of `count` datagrams sent with one `sendmsg`.
pub(crate) fn count_sent(stats: &mut IoStats, count: usize) {
    stats.tx_datagrams += count as u64;
    if count > 1 {
        stats.tx_gso_runs += 1;
        stats.tx_gso_segments += count as u64;
    }
}

/// Counts one receive of `payload_len` bytes and the datagrams it carries.
pub(crate) fn count_received(
    stats: &mut IoStats,
    payload_len: usize,
    segment_bytes: Option<usize>,
) {
    let count = segment_count(payload_len, segment_bytes) as u64;
    stats.rx_datagrams += count;
    if count > 1 {
        stats.rx_gro_receives += 1;
        stats.rx_gro_segments += count;
    }
}

/// Which offloads a link socket uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStatus {
    /// UDP GSO on send: runs of equal-size datagrams to one destination leave in one `sendmsg`.
    pub gso: bool,
    /// UDP GRO on receive: the kernel may hand over several datagrams in one receive.
    pub gro: bool,
}

/// What the send path does after a GSO run failed as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunFailure {
    /// Resend the run's datagrams one `sendmsg` each (their errors then count as usual).
    Resend,
    /// Not a per-run problem: fail the batch as any other socket error does.
    Fail,
}

/// GSO/GRO state of one socket: decided at open, GSO switched off for good when the kernel
/// refuses it.
#[derive(Debug)]
pub(crate) struct Offload {
    status: OffloadStatus,
}

impl Offload {
    /// Probes GSO and turns GRO on when `wanted` (GRO only when buffers of `max_datagram_bytes`
    /// can hold a coalesced receive). A kernel without either simply runs without it.
    pub(crate) fn open(fd: RawFd, wanted: bool, max_datagram_bytes: usize) -> Offload {
        if !wanted {
            return Offload {
                status: OffloadStatus::default(),
            };
        }
        // Setting UDP_SEGMENT on the socket proves the kernel knows it (4.18+); it is reset to 0
        // at once so that only sends carrying the control message are segmented.
        let gso = setsockopt_int(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            GSO_PROBE_SEGMENT_BYTES,
        )
        .is_ok()
            && setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok();
        let gro = max_datagram_bytes >= GRO_RECV_BYTES_MIN
            && setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        Offload {
            status: OffloadStatus { gso, gro },
        }
    }

    pub(crate) fn status(&self) -> OffloadStatus {
        self.status
    }

    /// Datagrams per run for the planner: 1 when GSO is off.
    pub(crate) fn max_segments(&self) -> usize {
        if self.status.gso {
            GSO_SEGMENTS_MAX
        } else {
            1
        }
    }

    /// A run of several datagrams failed with `errno`. `EIO` (the device cannot checksum the
    /// segments, or the route is IPsec) and `EINVAL` (the kernel refuses this GSO send) switch
    /// GSO off for this socket, logged once; the run is resent unsegmented. A per-destination
    /// error (`EMSGSIZE` when a segment exceeds the path MTU, a pending ICMP error, ...) also
    /// resends unsegmented, so each datagram meets its own fate as without GSO.
    pub(crate) fn on_run_failed(&mut self, errno: i32, local: Option<SocketAddr>) -> RunFailure {
        match errno {
            libc::EIO | libc::EINVAL => {
                if self.status.gso {
                    self.status.gso = false;
                    let local = local.map_or_else(|| "?".to_string(), |a| a.to_string());
                    tracing::warn!(
                        "link socket {local}: the kernel refused a UDP GSO send ({}); \
                         sending one datagram per sendmsg from now on",
                        io::Error::from_raw_os_error(errno)
                    );
                }
                RunFailure::Resend
            }
            e if is_path_errno(e) => RunFailure::Resend,
            _ => RunFailure::Fail,
        }
    }
}

/// A run of several datagrams to `dest` failed as a whole with `errno` (and GSO stays on or was
/// just switched off): the error queue is drained first when the error concerns a destination
/// (local errors there name port 0 and are attributed to `dest`), then the run is resent one
/// datagram per `sendto` ([`resend_singly`]) so each meets its own fate. Both backends' run
/// fallback.
pub(crate) fn resend_failed_run<'a>(
    fd: RawFd,
    errno: i32,
    dest: SocketAddr,
    datagrams: impl Iterator<Item = &'a [u8]>,
    stats: &mut IoStats,
    pending: &mut Vec<PathError>,
) -> io::Result<usize> {
    if is_path_errno(errno) {
        let sent_to = Some(dest);
        drain_errqueue(fd, |pe| pending.push(pe.attributed_to(sent_to)));
    }
    resend_singly(fd, dest, datagrams, stats, pending)
}

/// Sends each datagram to `dest` with its own `sendto` (no GSO): the fallback for a run the
/// kernel refused (counted in `tx_gso_resends`). Errors are handled as both backends handle them
/// for single datagrams: a per-destination error is queued in `pending` (named by the error
/// queue when it holds the ICMP error, else by `dest`) and counted; any other error ends the
/// call. Waits while the socket buffer is full. Returns how many were sent.
pub(crate) fn resend_singly<'a>(
    fd: RawFd,
    dest: SocketAddr,
    datagrams: impl Iterator<Item = &'a [u8]>,
    stats: &mut IoStats,
    pending: &mut Vec<PathError>,
) -> io::Result<usize> {
    stats.tx_gso_resends += 1;
    let mut name: RawSockAddr = sockaddr::zeroed();
    let name_len = sockaddr::write(&dest, &mut name);
    let mut sent = 0;
    for data in datagrams {
        loop {
            stats.syscalls += 1;
            // SAFETY: `data` and `name` are live for the call and their lengths are exact.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    data.as_ptr().cast(),
                    data.len(),
                    0,
                    (&name as *const RawSockAddr).cast(),
                    name_len,
                )
            };
            if rc >= 0 {
                sent += 1;
                stats.tx_datagrams += 1;
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error().unwrap_or(0) {
                libc::EINTR => {}
                libc::EAGAIN => wait_writable(fd, stats)?,
                e if is_path_errno(e) => {
                    stats.tx_errors += 1;
                    let sent_to = Some(dest);
                    if drain_errqueue(fd, |pe| pending.push(pe.attributed_to(sent_to))) == 0 {
                        pending.push(PathError::new(dest, e));
                    }
                    break;
                }
                _ => return Err(err),
            }
        }
    }
    Ok(sent)
}

fn wait_writable(fd: RawFd, stats: &mut IoStats) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    stats.syscalls += 1;
    // SAFETY: one live pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, RESEND_WAIT_MS) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constants_match_the_c_macros() {
        assert_eq!(CMSG_HEADER_BYTES, unsafe { libc::CMSG_LEN(0) } as usize);
        assert!(CMSG_HEADER_BYTES >= mem::size_of::<libc::cmsghdr>());
        assert_eq!(SEGMENT_CONTROL_BYTES, unsafe { libc::CMSG_SPACE(2) }
            as usize);
    }

    /// A control buffer as the kernel writes it, through the C macros (not our writer).
    fn kernel_style(messages: &[(i32, i32, &[u8])]) -> Vec<u8> {
        let mut buf = vec![0u64; 64];
        // SAFETY: msghdr is POD; the CMSG_* macros walk `buf`, which is large enough for the
        // messages used in these tests.
        unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_control = buf.as_mut_ptr().cast();
            msg.msg_controllen = buf.len() * 8;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            let mut used = 0;
            for (level, kind, data) in messages {
                (*cmsg).cmsg_level = *level;
                (*cmsg).cmsg_type = *kind;
                (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as usize;
                std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
                used += libc::CMSG_SPACE(data.len() as u32) as usize;
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            let bytes = std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), used);
            bytes.to_vec()
        }
    }

    #[test]
    fn gro_segment_size_is_found_after_other_messages() {
        let ctl = kernel_style(&[
            (libc::IPPROTO_IP, libc::IP_TOS, &[0]),
            (libc::SOL_UDP, libc::UDP_GRO, &1400i32.to_ne_bytes()),
        ]);
        assert_eq!(gro_segment_bytes(&ctl), Some(1400));
        let ctl = kernel_style(&[(libc::IPPROTO_IP, libc::IP_TOS, &[0])]);
        assert_eq!(gro_segment_bytes(&ctl), None);
        assert_eq!(gro_segment_bytes(&[]), None);
        // At an odd offset, as in an io_uring multishot buffer.
        let mut shifted = vec![0xAA; 3];
        shifted.extend(kernel_style(&[(
            libc::SOL_UDP,
            libc::UDP_GRO,
            &64i32.to_ne_bytes(),
        )]));
        assert_eq!(gro_segment_bytes(&shifted[3..]), Some(64));
    }

    #[test]
    fn our_segment_message_reads_back_through_the_c_macros() {
        let mut ctl = SendControl::zeroed();
        let len = ctl.write_segment(1452);
        // SAFETY: msghdr is POD; the macros read inside `ctl` (len bytes).
        unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_control = ctl.as_mut_ptr();
            msg.msg_controllen = len;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null());
            assert_eq!((*cmsg).cmsg_level, libc::SOL_UDP);
            assert_eq!((*cmsg).cmsg_type, libc::UDP_SEGMENT);
            assert_eq!((*cmsg).cmsg_len, libc::CMSG_LEN(2) as usize);
            let value = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>());
            assert_eq!(value, 1452);
            assert!(libc::CMSG_NXTHDR(&msg, cmsg).is_null());
        }
    }

    #[test]
    fn segments_split_with_a_short_last_piece() {
        let payload: Vec<u8> = (0..10).collect();
        let pieces: Vec<&[u8]> = segments(&payload, Some(4)).collect();
        assert_eq!(pieces, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(segment_count(10, Some(4)), 3);
        assert_eq!(segments(&payload, None).count(), 1);
        assert_eq!(segments(&payload, Some(10)).count(), 1);
        assert_eq!(segments(&payload, Some(0)).count(), 1);
        let empty: Vec<&[u8]> = segments(&[], Some(4)).collect();
        assert_eq!(empty, vec![&[][..]]);
        assert_eq!(segment_count(0, Some(4)), 1);
    }

    proptest! {
        #[test]
        fn gro_parser_never_panics_and_never_reads_past_the_buffer(bytes in prop::collection::vec(any::<u8>(), 0..200), start in 0usize..8) {
            let start = start.min(bytes.len());
            let _ = gro_segment_bytes(&bytes[start..]);
        }

        #[test]
        fn gro_parser_finds_what_the_kernel_wrote(size in 1i32..65_536, before in 0usize..3) {
            let tos = [0u8];
            let value = size.to_ne_bytes();
            let mut messages: Vec<(i32, i32, &[u8])> = vec![(libc::IPPROTO_IP, libc::IP_TOS, &tos); before];
            messages.push((libc::SOL_UDP, libc::UDP_GRO, &value));
            prop_assert_eq!(gro_segment_bytes(&kernel_style(&messages)), Some(size as usize));
        }

        #[test]
        fn segments_rebuild_the_payload(len in 0usize..5000, seg in prop::option::of(0usize..3000)) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let pieces: Vec<&[u8]> = segments(&payload, seg).collect();
            prop_assert_eq!(pieces.len(), segment_count(len, seg));
            prop_assert_eq!(pieces.concat(), payload.clone());
            if let Some(s) = seg.filter(|&s| s > 0 && s < len) {
                let (last, rest) = pieces.split_last().unwrap();
                prop_assert!(rest.iter().all(|p| p.len() == s));
                prop_assert!(!last.is_empty() && last.len() <= s);
            }
        }
    }
}
