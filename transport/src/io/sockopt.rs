//! Socket set-up shared by both backends and the error-queue reader behind [`super::PathError`].

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use super::sockaddr::{self, RawSockAddr};
use super::PathError;

/// Most error-queue entries read per call, so a flood of ICMP errors cannot starve receives.
const ERRQUEUE_DRAIN_MAX: usize = 64;

pub(crate) fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds a non-blocking UDP socket with large buffers, `IP_RECVERR` (ICMP errors per destination)
/// and the DF bit (`IP_PMTUDISC_PROBE`, so path MTU probes are not fragmented).
pub(crate) fn bind_udp(bind: SocketAddr, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    let size = i32::try_from(buffer_bytes).unwrap_or(i32::MAX);
    // The FORCE variants pass the rmem_max/wmem_max limits when we have CAP_NET_ADMIN.
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
    }
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, size)?;
    }
    match bind {
        SocketAddr::V4(_) => {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
            setsockopt_int(
                fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_PROBE,
            )?;
        }
        SocketAddr::V6(_) => {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
            setsockopt_int(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_PROBE,
            )?;
        }
    }
    Ok(socket)
}

/// True for errors that concern one destination rather than the socket.
pub(crate) fn is_path_errno(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN
            | libc::EMSGSIZE
            | libc::EPERM
            | libc::EACCES
            | libc::EADDRNOTAVAIL
    )
}

/// Reads queued ICMP errors (`MSG_ERRQUEUE`) and reports each with the destination it concerns.
/// Returns how many were read; stops at [`ERRQUEUE_DRAIN_MAX`] or when the queue is empty.
pub(crate) fn drain_errqueue(fd: RawFd, mut report: impl FnMut(PathError)) -> usize {
    let mut drained = 0;
    while drained < ERRQUEUE_DRAIN_MAX {
        let mut name: RawSockAddr = sockaddr::zeroed();
        let mut payload = [0u8; 64];
        let mut control = [0u64; 64]; // 512 bytes, 8-aligned for cmsghdr
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: msghdr is POD; zero is a valid initial value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut name as *mut RawSockAddr).cast();
        msg.msg_namelen = sockaddr::RAW_SOCKADDR_LEN;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` refers to a live local buffer of the stated length.
        let rc = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if rc < 0 {
            break;
        }
        drained += 1;
        let Some(dest) = sockaddr::read_raw(&name, msg.msg_namelen) else {
            continue;
        };
        // SAFETY: walks the control buffer the kernel filled, with the CMSG_* helpers and the
        // controllen it returned; each sock_extended_err is read unaligned from inside it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let is_ip = c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR;
                let is_ip6 =
                    c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR;
                if (is_ip || is_ip6)
                    && c.cmsg_len
                        >= libc::CMSG_LEN(mem::size_of::<libc::sock_extended_err>() as u32) as usize
                {
                    let ee = std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>(),
                    );
                    let errno = ee.ee_errno as i32;
                    report(PathError {
                        dest,
                        errno,
                        mtu: (errno == libc::EMSGSIZE && ee.ee_info > 0).then_some(ee.ee_info),
                    });
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
    }
    drained
}
