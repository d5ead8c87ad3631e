//! Benchmark harnesses shared code: the packets-per-second paths measured by `link-pps`.
//!
//! Every path runs a sender and a receiver over one loopback UDP link and counts datagrams (or
//! messages) delivered to the receiving application during a fixed window after a warm-up:
//! * [`raw`]: plain sockets with `sendmmsg`/`recvmmsg` (batches of [`BATCH`]), the reference;
//! * [`link_io`]: the transport's batched socket ([`totem_transport::io::LinkIo`]) on a backend;
//! * [`link_set`]: the whole transport ([`totem_transport::linkset::LinkSet`]): header, optional
//!   AES-256-GCM, reactor threads, queues, dedupe, delivery.
#![forbid(unsafe_code)]

pub mod link_io;
pub mod link_set;
pub mod raw;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams per sendmmsg/recvmmsg call in the baseline and per `send_batch` in the io path
/// (the transport's default batch, `totem_transport::io::BATCH_MAX_DEFAULT`).
pub const BATCH: usize = 64;
/// Traffic before the measurement window starts (socket buffers and caches warm).
pub const WARMUP: Duration = Duration::from_millis(300);
/// How long a receiver blocks at most before looking at the stop flag.
pub const POLL: Duration = Duration::from_millis(50);

/// Shared between a path's threads and the measuring thread.
#[derive(Clone, Default)]
pub struct Run {
    /// Datagrams or messages received so far.
    pub received: Arc<AtomicU64>,
    /// Set when the threads must end.
    pub stop: Arc<AtomicBool>,
}

impl Run {
    /// True once the measurement is over.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    /// Adds `n` received items.
    pub fn count(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }
}

/// Lets the threads started by `start` run for the warm-up, counts what the receiver gets during
/// `window`, stops and joins them; returns items per second.
pub fn measure(
    window: Duration,
    start: impl FnOnce(&Run) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>>,
) -> anyhow::Result<f64> {
    let run = Run::default();
    let threads = start(&run)?;
    std::thread::sleep(WARMUP);
    let (c0, t0) = (run.received.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (run.received.load(Ordering::Relaxed), Instant::now());
    run.stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?;
    }
    Ok((c1 - c0) as f64 / (t1 - t0).as_secs_f64())
}

/// The median of `values` (0 for none).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
