//! The transport's batched socket alone: a sender thread calling `send_batch` with
//! [`crate::BATCH`] datagrams and a receiver thread calling `recv_each`, on one backend.

use std::net::SocketAddr;
use std::time::Instant;

use totem_transport::io::{self, Backend, Incoming, IoOptions};

use crate::{Run, BATCH, POLL};

/// Starts the path's two threads on `backend` (each socket is opened here and first used on its
/// thread).
pub fn start(
    run: &Run,
    backend: Backend,
    payload: usize,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let opts = IoOptions {
        max_datagram_bytes: 2048,
        batch_max: BATCH,
        ..IoOptions::default()
    };
    let local: SocketAddr = "127.0.0.1:0".parse()?;
    let mut rx = io::open(local, backend, &opts)?;
    let mut tx = io::open(local, backend, &opts)?;
    let dest = rx.local_addr()?;
    let receiver = {
        let run = run.clone();
        std::thread::spawn(move || {
            while !run.stopped() {
                let mut n = 0u64;
                let result = rx.recv_each(Some(Instant::now() + POLL), |item| {
                    if let Incoming::Datagram { .. } = item {
                        n += 1;
                    }
                });
                if result.is_err() {
                    break;
                }
                run.count(n);
            }
        })
    };
    let sender = {
        let run = run.clone();
        std::thread::spawn(move || {
            let data = vec![0x5au8; payload];
            let batch: Vec<(SocketAddr, &[u8])> =
                (0..BATCH).map(|_| (dest, data.as_slice())).collect();
            while !run.stopped() {
                if tx.send_batch(&batch).is_err() {
                    break;
                }
            }
        })
    };
    Ok(vec![receiver, sender])
}
