//! Conversions between `std::net::SocketAddr` and the kernel's `sockaddr_in`/`sockaddr_in6`.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for either address family; its size is what msg_namelen gets for receives.
pub(crate) type RawSockAddr = libc::sockaddr_in6;

/// Bytes of [`RawSockAddr`].
pub(crate) const RAW_SOCKADDR_LEN: libc::socklen_t =
    mem::size_of::<RawSockAddr>() as libc::socklen_t;

/// A zeroed address buffer.
pub(crate) fn zeroed() -> RawSockAddr {
    // SAFETY: sockaddr_in6 is plain old data; all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

/// Writes `addr` into `out`; returns the length to put in msg_namelen.
pub(crate) fn write(addr: &SocketAddr, out: &mut RawSockAddr) -> libc::socklen_t {
    *out = zeroed();
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in (16 bytes) fits in sockaddr_in6 (28 bytes); both are POD and the
            // write is unaligned-safe.
            unsafe {
                std::ptr::write_unaligned(
                    (out as *mut RawSockAddr).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            out.sin6_scope_id = a.scope_id();
            RAW_SOCKADDR_LEN
        }
    }
}

/// Reads an address from raw name bytes as the kernel returned them; `None` for another family or
/// a short buffer.
pub(crate) fn read(bytes: &[u8]) -> Option<SocketAddr> {
    if bytes.len() < 2 {
        return None;
    }
    let family = libc::sa_family_t::from_ne_bytes([bytes[0], bytes[1]]);
    match i32::from(family) {
        libc::AF_INET if bytes.len() >= mem::size_of::<libc::sockaddr_in>() => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if bytes.len() >= mem::size_of::<libc::sockaddr_in6>() => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let flowinfo = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes[8..24]);
            let scope_id = u32::from_ne_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                flowinfo,
                scope_id,
            )))
        }
        _ => None,
    }
}

/// Reads the first `len` bytes of `raw` as an address.
pub(crate) fn read_raw(raw: &RawSockAddr, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = (len as usize).min(mem::size_of::<RawSockAddr>());
    // SAFETY: `raw` is a live sockaddr_in6 of size_of bytes and `len` is clamped to that size.
    let bytes =
        unsafe { std::slice::from_raw_parts((raw as *const RawSockAddr).cast::<u8>(), len) };
    read(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_round_trip() {
        for addr in ["127.0.0.2:5405", "[::1]:5406", "[fe80::1%3]:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut raw = zeroed();
            let len = write(&addr, &mut raw);
            assert_eq!(read_raw(&raw, len), Some(addr));
        }
    }

    #[test]
    fn short_or_foreign_names_are_rejected() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[2, 0, 1]), None);
        assert_eq!(
            read(&[0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }
}
