//! The recvmmsg/sendmmsg backend: one syscall per batch in each direction, `ppoll` to wait on the
//! socket and the waker's eventfd. Used when io_uring is unavailable or `TOTEM_IO=mmsg`.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use super::gso_plan::SendPlan;
use super::offload::{
    count_received, count_sent, gro_segment_bytes, resend_failed_run, Offload, OffloadStatus,
    RecvControl, RunFailure, SendControl, RECV_CONTROL_BYTES,
};
use super::sockaddr::{self, RawSockAddr};
use super::sockopt::{bind_udp, drain_errqueue, is_path_errno};
use super::{remaining, Incoming, IoOptions, IoStats, PathError, RecvBatch, RecvSummary, Waker};

/// Longest single `ppoll` wait while sending into a full socket buffer before trying again.
const SEND_BUFFER_WAIT_MS: i32 = 100;

/// A UDP socket driven with recvmmsg/sendmmsg.
pub struct MmsgIo {
    socket: UdpSocket,
    opts: IoOptions,
    waker: Waker,
    scratch: RecvBatch,
    names: Vec<RawSockAddr>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    send_controls: Vec<SendControl>,
    recv_controls: Vec<RecvControl>,
    plan: SendPlan,
    offload: Offload,
    pending_errors: Vec<PathError>,
    stats: IoStats,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` (into `names`, `iovecs` and the control
// buffers) are rewritten at the start of every call and only dereferenced by the kernel during
// that call; nothing is shared between threads.
unsafe impl Send for MmsgIo {}

impl MmsgIo {
    /// Binds `bind` with the buffers of `opts`.
    pub fn open(bind: SocketAddr, opts: &IoOptions) -> io::Result<MmsgIo> {
        opts.validate()?;
        let socket = bind_udp(bind, opts.socket_buffer_bytes)?;
        let offload = Offload::open(
            socket.as_raw_fd(),
            opts.udp_offload,
            opts.max_datagram_bytes,
        );
        Ok(MmsgIo {
            socket,
            opts: opts.clone(),
            waker: Waker::new()?,
            scratch: RecvBatch::new(opts),
            names: vec![sockaddr::zeroed(); opts.batch_max],
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                opts.batch_max
            ],
            // SAFETY: mmsghdr is POD; zero is a valid value (null pointers, zero lengths).
            headers: vec![unsafe { mem::zeroed::<libc::mmsghdr>() }; opts.batch_max],
            send_controls: vec![SendControl::zeroed(); opts.batch_max],
            recv_controls: vec![RecvControl::zeroed(); opts.batch_max],
            plan: SendPlan::with_capacity(opts.batch_max),
            offload,
            pending_errors: Vec::with_capacity(opts.batch_max),
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

    pub(crate) fn send_batch(&mut self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in datagrams.chunks(self.opts.batch_max) {
            self.plan.plan(chunk, self.offload.max_segments());
            self.prepare_send(chunk);
            let runs = self.plan.runs().len();
            let mut offset = 0;
            while offset < runs {
                self.stats.syscalls += 1;
                // SAFETY: headers[offset..runs] point at names, iovecs and controls set by
                // prepare_send and at the caller's payload slices, all alive for this call.
                let rc = unsafe {
                    libc::sendmmsg(
                        self.fd(),
                        self.headers[offset..].as_mut_ptr(),
                        (runs - offset) as u32,
                        0,
                    )
                };
                if rc >= 0 {
                    for run in &self.plan.runs()[offset..offset + rc as usize] {
                        sent += run.count;
                        count_sent(&mut self.stats, run.count);
                    }
                    offset += rc as usize;
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error().unwrap_or(0) {
                    libc::EINTR => {}
                    libc::EAGAIN => self.wait_writable()?,
                    errno => {
                        sent += self.on_run_error(chunk, offset, errno, err)?;
                        offset += 1;
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Points one mmsghdr per planned run at its destination, its datagrams (one iovec each, in
    /// plan order, no copy) and, for a run of several, a `UDP_SEGMENT` control message.
    fn prepare_send(&mut self, chunk: &[(SocketAddr, &[u8])]) {
        for (k, &index) in self.plan.order().iter().enumerate() {
            let data = chunk[index].1;
            self.iovecs[k] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
        }
        for (r, run) in self.plan.runs().iter().enumerate() {
            let name_len = sockaddr::write(&run.dest, &mut self.names[r]);
            let hdr = &mut self.headers[r].msg_hdr;
            hdr.msg_name = (&mut self.names[r] as *mut RawSockAddr).cast();
            hdr.msg_namelen = name_len;
            hdr.msg_iov = &mut self.iovecs[run.first];
            hdr.msg_iovlen = run.count;
            if run.count > 1 {
                // The planner keeps runs of several within 65527 bytes, so a segment fits a u16.
                let segment = u16::try_from(run.segment_bytes).unwrap_or(u16::MAX);
                hdr.msg_controllen = self.send_controls[r].write_segment(segment);
                hdr.msg_control = self.send_controls[r].as_mut_ptr();
            } else {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            hdr.msg_flags = 0;
        }
    }

    /// The run at `offset` failed with `errno`: a single datagram is handled as before GSO (a
    /// per-destination error is reported and counted, anything else fails the batch); a run of
    /// several is resent one datagram per `sendmsg` when [`Offload::on_run_failed`] says so.
    /// Returns how many datagrams the resend got out.
    fn on_run_error(
        &mut self,
        chunk: &[(SocketAddr, &[u8])],
        offset: usize,
        errno: i32,
        err: io::Error,
    ) -> io::Result<usize> {
        let run = self.plan.runs()[offset];
        let fd = self.fd();
        if run.count == 1 {
            if !is_path_errno(errno) {
                return Err(err);
            }
            // An ICMP error pending on the socket is returned by whichever send comes next; the
            // error queue names the destination it really concerns.
            let pending = &mut self.pending_errors;
            let sent_to = Some(run.dest);
            if drain_errqueue(fd, |pe| pending.push(pe.attributed_to(sent_to))) == 0 {
                self.pending_errors.push(PathError::new(run.dest, errno));
            }
            self.stats.tx_errors += 1;
            return Ok(0);
        }
        let local = self.socket.local_addr().ok();
        if self.offload.on_run_failed(errno, local) == RunFailure::Fail {
            return Err(err);
        }
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

    fn wait_writable(&mut self) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        self.stats.syscalls += 1;
        // SAFETY: one live pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, SEND_BUFFER_WAIT_MS) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
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
        let mut batch = mem::replace(&mut self.scratch, RecvBatch::empty());
        batch.clear();
        let result = self.recv_into(&mut batch, deadline);
        let summary = RecvSummary {
            datagrams: batch.len(),
            path_errors: batch.path_errors().len(),
            woken: batch.woken(),
            timed_out: result.is_ok()
                && batch.is_empty()
                && batch.path_errors().is_empty()
                && !batch.woken(),
        };
        for e in batch.path_errors() {
            f(Incoming::PathError(*e));
        }
        for (from, data) in batch.iter() {
            f(Incoming::Datagram { from, data });
        }
        self.scratch = batch;
        result.map(|()| summary)
    }

    /// Receives straight into `out` (already cleared by the caller).
    pub(crate) fn recv_into(
        &mut self,
        out: &mut RecvBatch,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        out.path_errors.append(&mut self.pending_errors);
        loop {
            match self.recvmmsg_into(out) {
                Ok((_, kept)) if kept > 0 => return Ok(()),
                Ok((read, _)) if read > 0 => continue, // all dropped as truncated: read on
                Ok(_) => {}
                Err(e) => match e.raw_os_error().unwrap_or(0) {
                    libc::EAGAIN => {}
                    libc::EINTR => continue,
                    errno if is_path_errno(errno) => {
                        let fd = self.fd();
                        drain_errqueue(fd, |pe| out.path_errors.push(pe));
                        continue;
                    }
                    _ => return Err(e),
                },
            }
            if !out.path_errors.is_empty() || out.woken {
                return Ok(());
            }
            if !self.wait_readable(out, deadline)? {
                return Ok(()); // deadline passed
            }
        }
    }

    /// One non-blocking recvmmsg into `out`; returns (receives read, receives kept). With GRO each
    /// entry has a control buffer for the `UDP_GRO` segment size.
    fn recvmmsg_into(&mut self, out: &mut RecvBatch) -> io::Result<(usize, usize)> {
        let n = out.capacity().min(self.opts.batch_max);
        let slot = out.slot_bytes;
        let control_bytes = if self.offload.status().gro {
            RECV_CONTROL_BYTES
        } else {
            0
        };
        for i in 0..n {
            self.iovecs[i] = libc::iovec {
                // SAFETY: slot i lies inside `out.storage` (capacity() slots of slot_bytes each).
                iov_base: unsafe { out.storage.as_mut_ptr().add(i * slot) }.cast(),
                iov_len: slot,
            };
            let hdr = &mut self.headers[i];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = (&mut self.names[i] as *mut RawSockAddr).cast();
            hdr.msg_hdr.msg_namelen = sockaddr::RAW_SOCKADDR_LEN;
            hdr.msg_hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = if control_bytes > 0 {
                self.recv_controls[i].0.as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            hdr.msg_hdr.msg_controllen = control_bytes;
            hdr.msg_hdr.msg_flags = 0;
        }
        self.stats.syscalls += 1;
        // SAFETY: the first n headers point at live names, iovecs, control buffers and slots of
        // `out`.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd(),
                self.headers.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        out.clear_received();
        let mut kept = 0;
        for i in 0..rc as usize {
            let hdr = &self.headers[i];
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let from = sockaddr::read_raw(&self.names[i], hdr.msg_hdr.msg_namelen);
            match (truncated, from) {
                (false, Some(from)) => {
                    let len = hdr.msg_len as usize;
                    let control_len = hdr.msg_hdr.msg_controllen.min(control_bytes);
                    let segment_bytes = gro_segment_bytes(&self.recv_controls[i].0[..control_len]);
                    if kept != i {
                        out.storage
                            .copy_within(i * slot..i * slot + len, kept * slot);
                    }
                    out.push_meta(from, len, segment_bytes);
                    count_received(&mut self.stats, len, segment_bytes);
                    kept += 1;
                }
                _ => self.stats.rx_truncated += 1,
            }
        }
        Ok((rc as usize, kept))
    }

    /// Waits for the socket or the waker; false when the deadline passed first.
    fn wait_readable(
        &mut self,
        out: &mut RecvBatch,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = deadline.map(|d| {
            let left = remaining(d);
            libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let ts_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        self.stats.syscalls += 1;
        // SAFETY: two live pollfds, an optional live timespec, no signal mask.
        let rc = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(true)
            } else {
                Err(err)
            };
        }
        if rc == 0 {
            return Ok(false);
        }
        if fds[0].revents & libc::POLLERR != 0 {
            let fd = self.fd();
            drain_errqueue(fd, |pe| out.path_errors.push(pe));
        }
        if fds[1].revents & libc::POLLIN != 0 {
            self.waker.drain();
            out.woken = true;
        }
        Ok(true)
    }
}
