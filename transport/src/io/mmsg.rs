//! The recvmmsg/sendmmsg backend: one syscall per batch in each direction, `ppoll` to wait on the
//! socket and the waker's eventfd. Used when io_uring is unavailable or `TOTEM_IO=mmsg`.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

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
    pending_errors: Vec<PathError>,
    stats: IoStats,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` are rewritten at the start of every call
// and only dereferenced by the kernel during that call; nothing is shared between threads.
unsafe impl Send for MmsgIo {}

impl MmsgIo {
    /// Binds `bind` with the buffers of `opts`.
    pub fn open(bind: SocketAddr, opts: &IoOptions) -> io::Result<MmsgIo> {
        opts.validate()?;
        let socket = bind_udp(bind, opts.socket_buffer_bytes)?;
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
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub(crate) fn send_batch(&mut self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in datagrams.chunks(self.opts.batch_max) {
            for (i, (dest, data)) in chunk.iter().enumerate() {
                let name_len = sockaddr::write(dest, &mut self.names[i]);
                self.iovecs[i] = libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                };
                let hdr = &mut self.headers[i].msg_hdr;
                hdr.msg_name = (&mut self.names[i] as *mut RawSockAddr).cast();
                hdr.msg_namelen = name_len;
                hdr.msg_iov = &mut self.iovecs[i];
                hdr.msg_iovlen = 1;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
            }
            let mut offset = 0;
            while offset < chunk.len() {
                self.stats.syscalls += 1;
                // SAFETY: headers[offset..chunk.len()] point at names/iovecs set above and at the
                // caller's payload slices, all alive for this call.
                let rc = unsafe {
                    libc::sendmmsg(
                        self.fd(),
                        self.headers[offset..].as_mut_ptr(),
                        (chunk.len() - offset) as u32,
                        0,
                    )
                };
                if rc >= 0 {
                    offset += rc as usize;
                    sent += rc as usize;
                    self.stats.tx_datagrams += rc as u64;
                    continue;
                }
                let err = io::Error::last_os_error();
                let errno = err.raw_os_error().unwrap_or(0);
                match errno {
                    libc::EINTR => {}
                    libc::EAGAIN => self.wait_writable()?,
                    e if is_path_errno(e) => {
                        // An ICMP error pending on the socket is returned by whichever send comes
                        // next; the error queue names the destination it really concerns.
                        let pending = &mut self.pending_errors;
                        let drained =
                            drain_errqueue(self.socket.as_raw_fd(), |pe| pending.push(pe));
                        if drained == 0 {
                            self.pending_errors.push(PathError {
                                dest: chunk[offset].0,
                                errno: e,
                            });
                        }
                        self.stats.tx_errors += 1;
                        offset += 1;
                    }
                    _ => return Err(err),
                }
            }
        }
        Ok(sent)
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

    /// One non-blocking recvmmsg into `out`; returns (datagrams read, datagrams kept).
    fn recvmmsg_into(&mut self, out: &mut RecvBatch) -> io::Result<(usize, usize)> {
        let n = out.capacity().min(self.opts.batch_max);
        let slot = out.slot_bytes;
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
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
        }
        self.stats.syscalls += 1;
        // SAFETY: the first n headers point at live names, iovecs and slots of `out`.
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
        out.meta.clear();
        let mut kept = 0;
        for i in 0..rc as usize {
            let hdr = &self.headers[i];
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let from = sockaddr::read_raw(&self.names[i], hdr.msg_hdr.msg_namelen);
            match (truncated, from) {
                (false, Some(from)) => {
                    if kept != i {
                        out.storage
                            .copy_within(i * slot..i * slot + hdr.msg_len as usize, kept * slot);
                    }
                    out.meta.push((from, hdr.msg_len as usize));
                    kept += 1;
                }
                _ => self.stats.rx_truncated += 1,
            }
        }
        self.stats.rx_datagrams += kept as u64;
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
