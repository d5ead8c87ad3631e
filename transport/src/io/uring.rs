//! The io_uring backend: a multishot `RECVMSG` on a provided-buffer ring (armed once, re-armed on
//! `ENOBUFS` or whenever a completion lacks `IORING_CQE_F_MORE`), batched `SENDMSG` entries
//! submitted with one `io_uring_enter` per batch, a `READ` on the waker's eventfd, and
//! `submit_with_args` + timespec for deadlines (no timerfd).
//!
//! The ring is set up `SINGLE_ISSUER | DEFER_TASKRUN` (created disabled and enabled by the first
//! thread that does I/O), falling back to `COOP_TASKRUN`, then to a plain ring.
//! Buffer ids are recycled as soon as the callback returns and the ring tail is published once
//! per batch (one `Release` store).

use std::alloc::{self, Layout};
use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use super::gso_plan::SendPlan;
use super::offload::{
    count_received, count_sent, gro_segment_bytes, resend_failed_run, segment_count, Offload,
    OffloadStatus, RunFailure, SendControl, RECV_CONTROL_BYTES,
};
use super::sockaddr::{self, RawSockAddr};
use super::sockopt::{bind_udp, drain_errqueue, is_path_errno};
use super::{remaining, Incoming, IoOptions, IoStats, PathError, RecvSummary, RecvUnit, Waker};

/// `user_data` of the multishot receive.
const TOKEN_RECV: u64 = 1;
/// `user_data` of the read on the waker's eventfd.
const TOKEN_WAKE: u64 = 2;
/// `user_data` of the cancellations issued on drop.
const TOKEN_CANCEL: u64 = 3;
/// `user_data` of send slot `i` is `TOKEN_SEND_BASE + i`.
const TOKEN_SEND_BASE: u64 = 1 << 32;
/// The provided-buffer group of the receive (one ring per socket, so one group).
const BUFFER_GROUP_ID: u16 = 0;
/// Page alignment the kernel requires of a provided-buffer ring (io_uring_register_buf_ring.3).
const PAGE_BYTES: usize = 4096;
/// Bytes the kernel writes before the name in a multishot recvmsg buffer (`io_uring_recvmsg_out`);
/// then come the name, the control messages (when `msg_controllen` asks for them) and the payload.
const RECVMSG_OUT_HEADER_BYTES: usize = 16;
/// How long drop waits for the kernel to acknowledge cancelling the receive and the eventfd read.
const DROP_CANCEL_WAIT: Duration = Duration::from_millis(200);

/// A provided-buffer ring and the buffers it hands to the kernel. Owned by one [`UringIo`].
struct BufRing {
    entries: *mut types::BufRingEntry,
    layout: Layout,
    data: Box<[u8]>,
    buf_bytes: usize,
    count: u16,
    local_tail: u16,
}

impl BufRing {
    fn new(count: u16, buf_bytes: usize) -> io::Result<BufRing> {
        debug_assert!(count.is_power_of_two());
        let bytes = usize::from(count) * mem::size_of::<types::BufRingEntry>();
        let layout = Layout::from_size_align(bytes.max(PAGE_BYTES), PAGE_BYTES)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size; zeroed memory is a valid BufRingEntry array.
        let entries = unsafe { alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(BufRing {
            entries,
            layout,
            data: vec![0u8; usize::from(count) * buf_bytes].into_boxed_slice(),
            buf_bytes,
            count,
            local_tail: 0,
        })
    }

    /// Puts buffer `bid` back at the local tail (visible to the kernel after [`BufRing::publish`]).
    fn provide(&mut self, bid: u16) {
        let index = usize::from(self.local_tail & (self.count - 1));
        let addr = self.data.as_ptr() as u64 + (usize::from(bid) * self.buf_bytes) as u64;
        // SAFETY: `index` < count, so the entry lies inside the allocation of `count` entries.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.buf_bytes as u32);
        entry.set_bid(bid);
        self.local_tail = self.local_tail.wrapping_add(1);
    }

    /// Publishes every buffer provided since the last call: one `Release` store of the tail.
    fn publish(&self) {
        // SAFETY: `entries` is the ring base; the tail is a u16 inside entry 0 that only we write
        // and the kernel reads, so an atomic view of it is sound.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.local_tail, Ordering::Release);
    }

    fn buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        let start = usize::from(bid).checked_mul(self.buf_bytes)?;
        self.data.get(start..start + len.min(self.buf_bytes))
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.entries.is_null() {
            return; // the placeholder left behind when a poisoned ring leaked the real one
        }
        // SAFETY: allocated in `new` with exactly this layout; the owning UringIo drops the ring
        // (or leaks this BufRing) before this runs.
        unsafe { alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

/// What one send entry (one planned run) points at; boxed in a slice so the addresses stay put
/// while in flight. The run's iovecs live in [`UringIo::iovecs`].
struct SendSlot {
    header: libc::msghdr,
    name: RawSockAddr,
    control: SendControl,
    dest: Option<SocketAddr>,
    /// Datagrams in the run.
    count: usize,
    /// The run went out (or failed for good): not submitted again when its chain is resumed.
    done: bool,
}

/// A completion copied out of the completion queue.
#[derive(Clone, Copy)]
struct Completion {
    user_data: u64,
    result: i32,
    flags: u32,
}

/// A UDP socket driven through its own io_uring.
pub struct UringIo {
    // Field order matters: the ring is dropped (closed) before the memory it points into.
    ring: IoUring,
    bufs: BufRing,
    recv_header: Box<libc::msghdr>,
    slots: Box<[SendSlot]>,
    /// One per datagram of a send chunk, in plan order; each slot's msghdr points at its run's.
    iovecs: Box<[libc::iovec]>,
    wake_value: Box<u64>,
    socket: UdpSocket,
    waker: Waker,
    opts: IoOptions,
    needs_enable: bool,
    recv_armed: bool,
    wake_armed: bool,
    /// Set when the ring can no longer be driven safely; drop then leaks the buffers.
    poisoned: bool,
    stash: Vec<Completion>,
    reaped: Vec<Completion>,
    pending_errors: Vec<PathError>,
    plan: SendPlan,
    offload: Offload,
    /// Send runs of the current round that failed: (run index, errno).
    failures: Vec<(usize, i32)>,
    stats: IoStats,
}

// SAFETY: the raw pointers (buffer ring, msghdrs) point into memory owned by this value, which
// moves with it; the ring itself is only driven through &mut self, i.e. by one thread at a time.
unsafe impl Send for UringIo {}

impl UringIo {
    /// Probes io_uring and binds `bind`; fails (so the caller can fall back) when a needed
    /// opcode, feature or registration is missing.
    pub fn open(bind: SocketAddr, opts: &IoOptions) -> io::Result<UringIo> {
        opts.validate()?;
        let buffer_count = opts
            .recv_buffers
            .checked_next_power_of_two()
            .unwrap_or(32_768)
            .min(32_768);
        let sq_entries = (opts.batch_max as u32 + 8).next_power_of_two();
        let cq_entries =
            (2 * (u32::from(buffer_count) + opts.batch_max as u32 + 8)).next_power_of_two();
        let (ring, needs_enable) = build_ring(sq_entries, cq_entries)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(unsupported("IORING_FEAT_EXT_ARG (kernel >= 5.11)"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::RecvMsgMulti::CODE, "RECVMSG"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::Read::CODE, "READ"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(unsupported(name));
            }
        }
        let socket = bind_udp(bind, opts.socket_buffer_bytes)?;
        let offload = Offload::open(
            socket.as_raw_fd(),
            opts.udp_offload,
            opts.max_datagram_bytes,
        );
        let control_bytes = if offload.status().gro {
            RECV_CONTROL_BYTES
        } else {
            0
        };
        let buf_bytes = RECVMSG_OUT_HEADER_BYTES
            + sockaddr::RAW_SOCKADDR_LEN as usize
            + control_bytes
            + opts.max_datagram_bytes;
        let mut bufs = BufRing::new(buffer_count, buf_bytes)?;
        // SAFETY: the ring memory stays allocated and unmoved until the ring is closed (field
        // order in UringIo and the leak-on-poison in Drop guarantee it).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.entries as u64, buffer_count, BUFFER_GROUP_ID, 0)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("io_uring provided-buffer ring: {e}"))
                })?;
        }
        for bid in 0..buffer_count {
            bufs.provide(bid);
        }
        bufs.publish();

        // SAFETY: msghdr is POD; zero is valid. Multishot recvmsg reads only namelen/controllen:
        // they fix the layout of every receive buffer (name, control messages, payload).
        let mut recv_header: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        recv_header.msg_namelen = sockaddr::RAW_SOCKADDR_LEN;
        recv_header.msg_controllen = control_bytes;
        let slots = (0..opts.batch_max)
            .map(|_| SendSlot {
                // SAFETY: as above.
                header: unsafe { mem::zeroed() },
                name: sockaddr::zeroed(),
                control: SendControl::zeroed(),
                dest: None,
                count: 0,
                done: false,
            })
            .collect();
        let iovecs = (0..opts.batch_max)
            .map(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            })
            .collect();
        Ok(UringIo {
            ring,
            bufs,
            recv_header,
            slots,
            iovecs,
            wake_value: Box::new(0),
            socket,
            waker: Waker::new()?,
            opts: opts.clone(),
            needs_enable,
            recv_armed: false,
            wake_armed: false,
            poisoned: false,
            stash: Vec::with_capacity(cq_entries as usize),
            reaped: Vec::with_capacity(cq_entries as usize),
            pending_errors: Vec::with_capacity(opts.batch_max),
            plan: SendPlan::with_capacity(opts.batch_max),
            offload,
            failures: Vec::with_capacity(opts.batch_max),
            stats: IoStats::default(),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.socket
    }
    pub(crate) fn options(&self) -> &IoOptions {
        &self.opts
    }
    pub(crate) fn waker(&self) -> Waker {
        self.waker.clone()
    }
    pub(crate) fn stats(&self) -> IoStats {
        self.stats
    }
    pub(crate) fn offload(&self) -> OffloadStatus {
        self.offload.status()
    }
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Enables the ring on first use (binding SINGLE_ISSUER to this thread) and arms the receive
    /// and the eventfd read when they are not armed.
    fn prepare(&mut self) -> io::Result<()> {
        if self.poisoned {
            return Err(io::Error::other(
                "io_uring link socket is unusable after an earlier error",
            ));
        }
        if self.needs_enable {
            self.ring.submitter().register_enable_rings()?;
            self.needs_enable = false;
        }
        if !self.recv_armed {
            let entry = opcode::RecvMsgMulti::new(
                types::Fd(self.fd()),
                &*self.recv_header,
                BUFFER_GROUP_ID,
            )
            .build()
            .user_data(TOKEN_RECV);
            // SAFETY: recv_header is boxed and lives as long as the ring.
            unsafe { self.push(&entry)? };
            self.recv_armed = true;
            self.stats.recv_rearms += 1;
        }
        if !self.wake_armed {
            let entry = opcode::Read::new(
                types::Fd(self.waker.raw_fd()),
                (&mut *self.wake_value as *mut u64).cast(),
                8,
            )
            .build()
            .user_data(TOKEN_WAKE);
            // SAFETY: wake_value is boxed and lives as long as the ring; the eventfd is held open
            // by self.waker.
            unsafe { self.push(&entry)? };
            self.wake_armed = true;
        }
        Ok(())
    }

    /// Pushes one entry, submitting first when the submission queue is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.enter(0, None)?;
        // SAFETY: forwarded to the caller.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Submits and waits for `want` completions or the deadline. Timeouts, signals and a busy
    /// completion queue are not errors; anything else poisons the ring.
    fn enter(&mut self, want: usize, deadline: Option<Instant>) -> io::Result<()> {
        self.stats.syscalls += 1;
        let result = match deadline {
            Some(deadline) if want > 0 => {
                let ts = types::Timespec::from(remaining(deadline));
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            _ => self.ring.submitter().submit_and_wait(want),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => {
                // Entries may still sit in the submission queue pointing at caller memory.
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Copies up to `max` completions out of the completion queue into `self.reaped`.
    fn reap(&mut self, max: usize) {
        self.reaped.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in cq.by_ref().take(max) {
            self.reaped.push(Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }

    /// Sends the batch chunk by chunk, one SENDMSG entry per planned run.
    ///
    /// With GSO on, a chunk's runs form one linked chain, so they leave strictly in plan order (as
    /// with sendmmsg) even when one has to wait for socket buffer space, and when a run fails the
    /// kernel cancels the rest: the failed run is dealt with (a per-destination error reported, or
    /// a refused GSO run resent one datagram per `sendmsg`) and the rest is submitted again as a
    /// new chain. With GSO off the entries are independent, as they were before GSO.
    pub(crate) fn send_batch(&mut self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        self.prepare()?;
        let mut sent = 0;
        let mut first_error = None;
        for chunk in datagrams.chunks(self.slots.len()) {
            let max_segments = self.offload.max_segments();
            let linked = max_segments > 1;
            self.plan.plan(chunk, max_segments);
            self.prepare_runs(chunk);
            loop {
                let submitted = self.submit_runs(linked)?;
                if submitted == 0 {
                    break;
                }
                let (chain_sent, settled) = self.complete_runs(submitted)?;
                sent += chain_sent;
                self.failures.sort_unstable();
                for k in 0..self.failures.len() {
                    let (index, errno) = self.failures[k];
                    match self.on_run_failed(chunk, index, errno) {
                        Ok(n) => sent += n,
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if settled == 0 && self.failures.is_empty() {
                    // Only cancellations nobody asked for: give up rather than loop.
                    first_error.get_or_insert(io::Error::from_raw_os_error(libc::ECANCELED));
                    break;
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Points each planned run's slot at its destination, one iovec per datagram (in plan order,
    /// no copy) and, for a run of several, a `UDP_SEGMENT` control message.
    fn prepare_runs(&mut self, chunk: &[(SocketAddr, &[u8])]) {
        for (k, &index) in self.plan.order().iter().enumerate() {
            let data = chunk[index].1;
            self.iovecs[k] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
        }
        for (r, run) in self.plan.runs().iter().enumerate() {
            let slot = &mut self.slots[r];
            let name_len = sockaddr::write(&run.dest, &mut slot.name);
            slot.header.msg_name = (&mut slot.name as *mut RawSockAddr).cast();
            slot.header.msg_namelen = name_len;
            slot.header.msg_iov = &mut self.iovecs[run.first];
            slot.header.msg_iovlen = run.count;
            if run.count > 1 {
                // The planner keeps runs of several within 65527 bytes, so a segment fits a u16.
                let segment = u16::try_from(run.segment_bytes).unwrap_or(u16::MAX);
                slot.header.msg_controllen = slot.control.write_segment(segment);
                slot.header.msg_control = slot.control.as_mut_ptr();
            } else {
                slot.header.msg_control = std::ptr::null_mut();
                slot.header.msg_controllen = 0;
            }
            slot.dest = Some(run.dest);
            slot.count = run.count;
            slot.done = false;
        }
    }

    /// Submits every planned run that has not gone out yet, as one linked chain when `linked`;
    /// returns how many.
    fn submit_runs(&mut self, linked: bool) -> io::Result<usize> {
        let runs = self.plan.runs().len();
        let pending: usize = (0..runs).filter(|&r| !self.slots[r].done).count();
        // A chain must sit in the submission queue at once: split over two submissions it would
        // end at the split.
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if room < pending {
            self.enter(0, None)?;
        }
        let fd = self.fd();
        let mut left = pending;
        for r in 0..runs {
            if self.slots[r].done {
                continue;
            }
            left -= 1;
            let mut entry = opcode::SendMsg::new(types::Fd(fd), &self.slots[r].header)
                .build()
                .user_data(TOKEN_SEND_BASE + r as u64);
            if linked && left > 0 {
                entry = entry.flags(squeue::Flags::IO_LINK);
            }
            // SAFETY: the slot and the iovecs are boxed; the payload is borrowed for the
            // send_batch call and we do not return before every send submitted completed (or the
            // ring is poisoned and never entered again).
            unsafe { self.push(&entry)? };
        }
        Ok(pending)
    }

    /// Waits for `submitted` send completions; returns the datagrams sent and how many runs
    /// succeeded. Failed runs (not the ones cancelled because an earlier run of their chain
    /// failed) are left in `self.failures` as (run index, errno).
    fn complete_runs(&mut self, submitted: usize) -> io::Result<(usize, usize)> {
        let mut sent = 0;
        let mut succeeded = 0;
        self.failures.clear();
        let mut in_flight = submitted;
        while in_flight > 0 {
            self.enter(in_flight, None)?;
            self.reap(usize::MAX);
            for k in 0..self.reaped.len() {
                let c = self.reaped[k];
                if c.user_data < TOKEN_SEND_BASE {
                    self.stash.push(c);
                    continue;
                }
                in_flight = in_flight.saturating_sub(1);
                let index = (c.user_data - TOKEN_SEND_BASE) as usize;
                let Some(slot) = self.slots.get_mut(index) else {
                    continue;
                };
                if c.result >= 0 {
                    slot.done = true;
                    succeeded += 1;
                    sent += slot.count;
                    count_sent(&mut self.stats, slot.count);
                } else if -c.result != libc::ECANCELED {
                    self.failures.push((index, -c.result));
                }
            }
        }
        Ok((sent, succeeded))
    }

    /// Run `index` of the chunk failed with `errno`: a single datagram is handled as before GSO
    /// (a per-destination error is reported and counted, anything else fails the batch); a run of
    /// several is resent one datagram per `sendmsg` when [`Offload::on_run_failed`] says so.
    /// Returns how many datagrams the resend got out.
    fn on_run_failed(
        &mut self,
        chunk: &[(SocketAddr, &[u8])],
        index: usize,
        errno: i32,
    ) -> io::Result<usize> {
        let run = self.plan.runs()[index];
        self.slots[index].done = true;
        if run.count == 1 {
            self.on_send_error(index, errno)?;
            return Ok(0);
        }
        let local = self.socket.local_addr().ok();
        if self.offload.on_run_failed(errno, local) == RunFailure::Fail {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let fd = self.fd();
        let datagrams = self.plan.indices(&run).iter().map(|&i| chunk[i].1);
        resend_failed_run(
            fd,
            errno,
            run.dest,
            datagrams,
            &mut self.stats,
            &mut self.pending_errors,
        )
    }

    /// A single-datagram send to slot `index` failed with `errno`: a per-destination error is
    /// queued for the next receive call and counted; anything else is returned.
    fn on_send_error(&mut self, index: usize, errno: i32) -> io::Result<()> {
        let dest = self.slots.get(index).and_then(|s| s.dest);
        if !is_path_errno(errno) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.stats.tx_errors += 1;
        // A pending ICMP error is returned by whichever send comes next; the error queue names the
        // destination it really concerns.
        let fd = self.fd();
        let pending = &mut self.pending_errors;
        let drained = drain_errqueue(fd, |pe| pending.push(pe.attributed_to(dest)));
        if drained == 0 {
            if let Some(dest) = dest {
                self.pending_errors.push(PathError::new(dest, errno));
            }
        }
        Ok(())
    }

    pub(crate) fn recv_each<F>(
        &mut self,
        deadline: Option<Instant>,
        mut f: F,
    ) -> io::Result<RecvSummary>
    where
        F: FnMut(Incoming<'_>),
    {
        let limit = self.opts.batch_max;
        self.recv_units_limited(deadline, limit, |unit| unit.split_into(&mut f))
    }

    /// Hands receives (and any path errors) to `f` until `limit` datagrams were handed; a receive
    /// is one datagram or, with GRO, several from one source, and is never split, so a call may
    /// hand over up to 63 datagrams more than `limit` but never more than `limit` receives.
    pub(crate) fn recv_units_limited<F>(
        &mut self,
        deadline: Option<Instant>,
        limit: usize,
        mut f: F,
    ) -> io::Result<RecvSummary>
    where
        F: FnMut(RecvUnit<'_>),
    {
        self.prepare()?;
        let mut summary = RecvSummary::default();
        for e in self.pending_errors.drain(..) {
            f(RecvUnit::PathError(e));
            summary.path_errors += 1;
        }
        // Completions reaped while waiting for sends come first, in order.
        let mut stashed = mem::take(&mut self.stash);
        let mut used = 0;
        for (k, c) in stashed.iter().enumerate() {
            if summary.datagrams >= limit {
                break;
            }
            self.on_completion(*c, &mut summary, &mut f)?;
            used = k + 1;
        }
        stashed.drain(..used);
        self.stash = stashed;

        if summary.datagrams == 0
            && summary.path_errors == 0
            && !summary.woken
            && self.stash.is_empty()
        {
            self.enter(1, deadline)?;
        } else if !self.ring.submission().is_empty() {
            self.enter(0, None)?;
        }
        let room = limit.saturating_sub(summary.datagrams);
        if room > 0 {
            self.reap(room);
            let reaped = mem::take(&mut self.reaped);
            let mut result = Ok(());
            for (k, c) in reaped.iter().enumerate() {
                if summary.datagrams >= limit {
                    // Coalesced receives filled the call: the rest waits for the next one (the
                    // stash is empty here, it was drained above before anything was reaped).
                    self.stash.extend_from_slice(&reaped[k..]);
                    break;
                }
                if let Err(e) = self.on_completion(*c, &mut summary, &mut f) {
                    result = Err(e);
                    break;
                }
            }
            self.reaped = reaped;
            result?;
        }
        self.bufs.publish();
        if !self.recv_armed || !self.wake_armed {
            self.prepare()?;
            self.enter(0, None)?;
        }
        summary.timed_out = summary.datagrams == 0 && summary.path_errors == 0 && !summary.woken;
        Ok(summary)
    }

    /// Handles one completion.
    fn on_completion<F>(
        &mut self,
        c: Completion,
        summary: &mut RecvSummary,
        f: &mut F,
    ) -> io::Result<()>
    where
        F: FnMut(RecvUnit<'_>),
    {
        match c.user_data {
            TOKEN_RECV => self.on_recv(c, summary, f),
            TOKEN_WAKE => {
                self.wake_armed = false;
                summary.woken = true;
                Ok(())
            }
            TOKEN_CANCEL => Ok(()),
            _ if c.user_data >= TOKEN_SEND_BASE => {
                // A send left over from a batch that failed part-way: account it as usual.
                if c.result < 0 && -c.result != libc::ECANCELED {
                    let index = (c.user_data - TOKEN_SEND_BASE) as usize;
                    self.on_send_error(index, -c.result)?;
                    for e in self.pending_errors.drain(..) {
                        f(RecvUnit::PathError(e));
                        summary.path_errors += 1;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_recv<F>(&mut self, c: Completion, summary: &mut RecvSummary, f: &mut F) -> io::Result<()>
    where
        F: FnMut(RecvUnit<'_>),
    {
        if !cqueue::more(c.flags) {
            self.recv_armed = false;
        }
        if c.result < 0 {
            let errno = -c.result;
            return match errno {
                libc::ENOBUFS => {
                    self.stats.recv_no_buffers += 1;
                    Ok(())
                }
                libc::ECANCELED => Ok(()),
                e if is_path_errno(e) => {
                    let fd = self.fd();
                    drain_errqueue(fd, |pe| {
                        f(RecvUnit::PathError(pe));
                        summary.path_errors += 1;
                    });
                    Ok(())
                }
                _ => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        let Some(bid) = cqueue::buffer_select(c.flags) else {
            return Ok(());
        };
        let gro = self.offload.status().gro;
        if let Some(buffer) = self.bufs.buffer(bid, c.result as usize) {
            match types::RecvMsgOut::parse(buffer, &self.recv_header) {
                Ok(msg) if !msg.is_payload_truncated() && !msg.is_name_data_truncated() => {
                    match sockaddr::read(msg.name_data()) {
                        Some(from) => {
                            let payload = msg.payload_data();
                            let segment_bytes = if gro {
                                gro_segment_bytes(msg.control_data())
                            } else {
                                None
                            };
                            count_received(&mut self.stats, payload.len(), segment_bytes);
                            summary.datagrams += segment_count(payload.len(), segment_bytes);
                            f(RecvUnit::Received {
                                from,
                                payload,
                                segment_bytes,
                            });
                        }
                        None => self.stats.rx_truncated += 1,
                    }
                }
                _ => self.stats.rx_truncated += 1,
            }
        }
        self.bufs.provide(bid);
        Ok(())
    }

    /// Cancels the receive and the eventfd read and waits for the kernel to let go of our memory.
    fn cancel_in_flight(&mut self) -> bool {
        if self.needs_enable {
            return true; // never enabled: nothing was submitted
        }
        let mut outstanding = 0;
        for token in [TOKEN_RECV, TOKEN_WAKE] {
            let armed = if token == TOKEN_RECV {
                self.recv_armed
            } else {
                self.wake_armed
            };
            if !armed {
                continue;
            }
            outstanding += 1;
            let entry = opcode::AsyncCancel::new(token)
                .build()
                .user_data(TOKEN_CANCEL);
            // SAFETY: a cancel entry holds no pointers.
            if unsafe { self.push(&entry) }.is_err() {
                return false;
            }
        }
        let deadline = Instant::now() + DROP_CANCEL_WAIT;
        while outstanding > 0 && Instant::now() < deadline {
            if self.enter(1, Some(deadline)).is_err() {
                return false;
            }
            self.reap(usize::MAX);
            for c in &self.reaped {
                let finished = match c.user_data {
                    TOKEN_RECV => !cqueue::more(c.flags),
                    TOKEN_WAKE => true,
                    _ => false,
                };
                if finished {
                    outstanding -= 1;
                }
            }
        }
        outstanding == 0
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        if self.poisoned || !self.cancel_in_flight() {
            // The kernel may still write into these buffers: leak them rather than free them.
            let bufs = mem::replace(
                &mut self.bufs,
                BufRing {
                    entries: std::ptr::null_mut(),
                    layout: Layout::new::<u8>(),
                    data: Box::new([]),
                    buf_bytes: 0,
                    count: 0,
                    local_tail: 0,
                },
            );
            mem::forget(bufs);
            mem::forget(mem::take(&mut self.wake_value));
            tracing::warn!(
                "io_uring link socket dropped with operations in flight; leaked its buffers"
            );
        }
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("io_uring lacks {what}"))
}

/// Builds the ring with the best set-up flags the kernel accepts; returns whether it was created
/// disabled (and must be enabled by the thread that will drive it).
fn build_ring(sq_entries: u32, cq_entries: u32) -> io::Result<(IoUring, bool)> {
    let single_issuer = IoUring::builder()
        .setup_cqsize(cq_entries)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_r_disabled()
        .build(sq_entries);
    if let Ok(ring) = single_issuer {
        return Ok((ring, true));
    }
    let coop = IoUring::builder()
        .setup_cqsize(cq_entries)
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(sq_entries);
    if let Ok(ring) = coop {
        return Ok((ring, false));
    }
    IoUring::builder()
        .setup_cqsize(cq_entries)
        .build(sq_entries)
        .map(|ring| (ring, false))
}
