//! The reference: two plain UDP sockets, a sender thread looping on `sendmmsg` and a receiver
//! thread looping on `recvmmsg` (`MSG_WAITFORONE`), batches of [`crate::BATCH`] (nix wrappers).

use std::io::IoSlice;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrIn,
};

use crate::{Run, BATCH, POLL};

/// Socket buffers like the transport's (knet `KNET_RING_RCVBUFF` 8 MiB).
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

fn socket(addr: &str) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER_BYTES)?;
    }
    if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER_BYTES)?;
    }
    Ok(socket)
}

/// Starts the baseline's two threads.
pub fn start(run: &Run, payload: usize) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let rx = socket("127.0.0.1:0")?;
    rx.set_read_timeout(Some(POLL))?;
    let tx = socket("127.0.0.1:0")?;
    let SocketAddr::V4(dest) = rx.local_addr()? else {
        anyhow::bail!("expected IPv4")
    };
    let dest = SockaddrIn::from(dest);
    let receiver = {
        let run = run.clone();
        std::thread::spawn(move || {
            let mut storage = vec![vec![0u8; payload.max(1) + 64]; BATCH];
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
            while !run.stopped() {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    storage.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(
                    rx.as_raw_fd(),
                    &mut headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => run.count(results.count() as u64),
                    Err(_) => continue, // EAGAIN at the read timeout: look at the stop flag
                }
            }
        })
    };
    let sender = {
        let run = run.clone();
        std::thread::spawn(move || {
            let data = vec![0x5au8; payload];
            let slices: Vec<[IoSlice<'_>; 1]> = (0..BATCH).map(|_| [IoSlice::new(&data)]).collect();
            let addrs = vec![Some(dest); BATCH];
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
            while !run.stopped() {
                let _ = sendmmsg(
                    tx.as_raw_fd(),
                    &mut headers,
                    slices.iter(),
                    &addrs,
                    [],
                    MsgFlags::empty(),
                );
            }
        })
    };
    Ok(vec![receiver, sender])
}
