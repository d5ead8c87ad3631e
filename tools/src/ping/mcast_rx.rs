//! totem-ping's multicast receiver: a thread that owns the socket bound to the group, stamps
//! every datagram on arrival and hands it to the main loop through a bounded queue, waking the
//! main loop's receive. The main loop blocks on its unicast socket only, so without this thread a
//! multicast answer would wait (and its round trip grow) until the next unicast datagram.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use totem_transport::io::Waker;

use crate::link::{Event, Link, LinkError};
use crate::wire::Body;

/// Datagrams queued between the receiver thread and the main loop. The main loop drains the queue
/// at least every 100 ms and after every wake-up; 65536 answers is over a minute of `-c 10000 -i
/// 0.001` with 6 peers, so overflow means the main loop is stuck, and it is counted, not hidden.
pub const QUEUE_DEPTH: usize = 65_536;
/// Longest receive wait of the thread, so it sees the stop flag even if a wake-up is lost.
const POLL_PERIOD: Duration = Duration::from_millis(100);

/// One received multicast datagram (or rejection) and when it arrived.
#[derive(Debug)]
pub struct Arrival {
    /// Arrival time, taken as the receive call hands the datagram over.
    pub at: Instant,
    /// The decoded datagram.
    pub event: Event,
}

/// The running receiver thread.
pub struct McastReceiver {
    queue: Receiver<Arrival>,
    stop: Arc<AtomicBool>,
    overflow: Arc<AtomicU64>,
    thread_waker: Waker,
    thread: Option<JoinHandle<Result<(), LinkError>>>,
}

impl McastReceiver {
    /// Starts the thread on `link` (the socket bound to the group); `main` is woken when
    /// datagrams are queued.
    pub fn spawn(mut link: Link, main: Waker) -> std::io::Result<McastReceiver> {
        let (tx, queue) = mpsc::sync_channel(QUEUE_DEPTH);
        let stop = Arc::new(AtomicBool::new(false));
        let overflow = Arc::new(AtomicU64::new(0));
        let thread_waker = link.waker();
        let (stop_t, overflow_t) = (stop.clone(), overflow.clone());
        let thread = std::thread::Builder::new()
            .name("totem-ping-mcast".into())
            .spawn(move || receive_loop(&mut link, &tx, &main, &stop_t, &overflow_t))?;
        Ok(McastReceiver {
            queue,
            stop,
            overflow,
            thread_waker,
            thread: Some(thread),
        })
    }

    /// Hands every queued arrival to `f`. An error when the thread ended on a socket error.
    pub fn drain(&mut self, mut f: impl FnMut(Arrival)) -> Result<(), LinkError> {
        loop {
            match self.queue.try_recv() {
                Ok(arrival) => f(arrival),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return self.join(),
            }
        }
    }

    /// Datagrams dropped because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns its result.
    pub fn stop(mut self) -> Result<(), LinkError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread_waker.wake();
        self.join()
    }

    fn join(&mut self) -> Result<(), LinkError> {
        match self.thread.take() {
            None => Ok(()),
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(LinkError::Io(std::io::Error::other(
                    "the multicast receiver thread panicked",
                )))
            }),
        }
    }
}

impl Drop for McastReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread_waker.wake();
        let _ = self.join();
    }
}

fn receive_loop(
    link: &mut Link,
    tx: &SyncSender<Arrival>,
    main: &Waker,
    stop: &AtomicBool,
    overflow: &AtomicU64,
) -> Result<(), LinkError> {
    while !stop.load(Ordering::Relaxed) {
        let mut queued = false;
        link.recv(Some(Instant::now() + POLL_PERIOD), |event| {
            let at = Instant::now();
            // Only answers travel by multicast (omping ignores other multicast messages), and
            // rejections, so a peer with another key is named. Path errors concern sends, and
            // nothing is sent on this socket.
            let keep = matches!(
                event,
                Event::Message {
                    body: Body::Answer { .. },
                    ..
                } | Event::Rejected { .. }
            );
            if !keep {
                return;
            }
            match tx.try_send(Arrival { at, event }) {
                Ok(()) => queued = true,
                Err(TrySendError::Full(_)) => {
                    overflow.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => stop.store(true, Ordering::Relaxed),
            }
        })?;
        if queued {
            main.wake();
        }
    }
    Ok(())
}
