//! Batched datagram I/O for one link socket, with two interchangeable backends.
//!
//! [`LinkIo`] owns one bound UDP socket and moves datagrams in batches:
//! - [`uring`]: io_uring with a multishot `RECVMSG` on a provided-buffer ring and batched `SENDMSG`
//!   submissions (one `io_uring_enter` per batch);
//! - [`mmsg`]: `recvmmsg`/`sendmmsg` with `ppoll`, used when io_uring is unavailable (kernel too old,
//!   `io_uring_disabled`, seccomp) or forced with `TOTEM_IO=mmsg`.
//!
//! [`open`] probes once and logs once which backend runs. Both backends report an unreachable
//! destination (ICMP port/host unreachable via `IP_RECVERR`, or a synchronous `ENETUNREACH` from a
//! send) as a per-destination [`PathError`], never as an error of the whole socket, and never spin
//! on it. A [`Waker`] interrupts a blocked receive from another thread (an eventfd write).
//!
//! UDP segmentation offload (on by default, [`IoOptions::udp_offload`], `TOTEM_GSO=off`): a send
//! batch is planned as runs of equal-size datagrams to one destination (`gso_plan.rs`, which also
//! states the order rule), each run leaving in one `sendmsg` with a `UDP_SEGMENT` control
//! message; with `UDP_GRO` the kernel may hand over several datagrams in one receive, which is
//! split again before anything above this module sees it (`offload.rs`). A kernel that refuses
//! GSO at run time gets the run again one datagram per `sendmsg`, and GSO is switched off for that
//! socket with one warning.
//!
//! Threading: a [`LinkIo`] may be moved to another thread before its first I/O call; after that,
//! use it from that thread only (the io_uring ring is created `SINGLE_ISSUER`).

mod gso_plan;
pub mod mmsg;
mod offload;
mod sockaddr;
mod sockopt;
pub mod uring;

pub use offload::OffloadStatus;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

/// Which backend to use when opening a link socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// io_uring when the probe succeeds, otherwise recvmmsg/sendmmsg; `TOTEM_IO` overrides.
    #[default]
    Auto,
    /// io_uring only; opening fails when it is unavailable.
    Uring,
    /// recvmmsg/sendmmsg only.
    Mmsg,
}

/// Environment variable that forces a backend: `uring`, `mmsg` or `auto` (DESIGN.md "The packet path").
pub const BACKEND_ENV_VAR: &str = "TOTEM_IO";

impl Backend {
    /// The backend named by `TOTEM_IO`, or `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Backend>, ParseBackendError> {
        match std::env::var(BACKEND_ENV_VAR) {
            Ok(value) if !value.trim().is_empty() => value.parse().map(Some),
            _ => Ok(None),
        }
    }
}

/// A `TOTEM_IO` value that names no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown I/O backend {0:?}: expected uring, mmsg or auto")]
pub struct ParseBackendError(pub String);

impl FromStr for Backend {
    type Err = ParseBackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "mmsg" => Ok(Backend::Mmsg),
            _ => Err(ParseBackendError(s.to_string())),
        }
    }
}

/// The backend a [`LinkIo`] actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// io_uring (multishot recvmsg + provided buffers, batched sendmsg).
    Uring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Uring => "io_uring",
            BackendKind::Mmsg => "mmsg",
        })
    }
}

/// Largest datagram a link carries: knet's `KNET_MAX_PACKET_SIZE` 65536 (REFERENCE.md §1.5).
pub const MAX_DATAGRAM_BYTES: usize = 65_536;
/// Socket buffer size asked for: knet's `KNET_RING_RCVBUFF` 8 MiB (REFERENCE.md §1.5).
pub const SOCKET_BUFFER_BYTES_DEFAULT: usize = 8 * 1024 * 1024;
/// Datagrams per batch: recvmmsg gains flatten above 8-16 (REFERENCE.md §8, honk PR #80); 64 keeps
/// syscalls per datagram low under bursts without large per-batch latency.
pub const BATCH_MAX_DEFAULT: usize = 64;
/// Receive buffers in the io_uring provided-buffer ring (a power of two, at most 32768).
pub const RECV_BUFFERS_DEFAULT: u16 = 256;

/// Sizes of one link socket's buffers. Fixed at open: nothing grows afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoOptions {
    /// Largest datagram received intact; longer ones are counted as truncated and dropped.
    pub max_datagram_bytes: usize,
    /// Most datagrams moved per send or receive batch.
    pub batch_max: usize,
    /// Entries of the io_uring provided-buffer ring (rounded up to a power of two).
    pub recv_buffers: u16,
    /// SO_RCVBUF / SO_SNDBUF asked for (the kernel may clamp it unless we are root).
    pub socket_buffer_bytes: usize,
    /// UDP GSO on send and GRO on receive, where the kernel has them (default on; `TOTEM_GSO=off`
    /// turns them off for comparison runs). GRO is only turned on when `max_datagram_bytes` can
    /// hold a coalesced receive (at least 65527 bytes): smaller buffers would truncate it.
    pub udp_offload: bool,
}

impl Default for IoOptions {
    fn default() -> Self {
        IoOptions {
            max_datagram_bytes: MAX_DATAGRAM_BYTES,
            batch_max: BATCH_MAX_DEFAULT,
            recv_buffers: RECV_BUFFERS_DEFAULT,
            socket_buffer_bytes: SOCKET_BUFFER_BYTES_DEFAULT,
            udp_offload: true,
        }
    }
}

impl IoOptions {
    fn validate(&self) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if self.max_datagram_bytes == 0 || self.max_datagram_bytes > MAX_DATAGRAM_BYTES {
            return Err(invalid("max_datagram_bytes must be 1..=65536"));
        }
        if self.batch_max == 0 || self.batch_max > 1024 {
            return Err(invalid("batch_max must be 1..=1024"));
        }
        if self.recv_buffers == 0 || self.recv_buffers > 32_768 {
            return Err(invalid("recv_buffers must be 1..=32768"));
        }
        Ok(())
    }
}

/// Environment variable that turns UDP GSO/GRO off for every link socket of the process: `off`
/// (also `0`, `no`, `false`); `on` or unset leaves [`IoOptions::udp_offload`] as it is.
pub const OFFLOAD_ENV_VAR: &str = "TOTEM_GSO";

/// False when `TOTEM_GSO` turns offload off (logged once per process); an unknown value is an
/// error, like an unknown `TOTEM_IO`.
fn offload_allowed_by_env() -> io::Result<bool> {
    let Ok(value) = std::env::var(OFFLOAD_ENV_VAR) else {
        return Ok(true);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "on" | "1" | "yes" | "true" | "auto" => Ok(true),
        "off" | "0" | "no" | "false" => {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                tracing::info!("UDP GSO/GRO turned off by {OFFLOAD_ENV_VAR}={value}")
            });
            Ok(false)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown {OFFLOAD_ENV_VAR} value {value:?}: expected on or off"),
        )),
    }
}

/// A destination (or the path to it) reported an error: ICMP unreachable, ENETUNREACH, EMSGSIZE...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathError {
    /// The destination the failed datagram was sent to.
    pub dest: SocketAddr,
    /// The errno (`ECONNREFUSED`, `EHOSTUNREACH`, `ENETUNREACH`, `EMSGSIZE`, ...).
    pub errno: i32,
    /// With `EMSGSIZE`: the MTU the kernel reported (the error queue's `ee_info`), when known.
    pub mtu: Option<u32>,
}

impl PathError {
    /// An error about `dest` with no further detail.
    pub fn new(dest: SocketAddr, errno: i32) -> PathError {
        PathError {
            dest,
            errno,
            mtu: None,
        }
    }

    /// Names `sent_to` as the destination when the error queue could not: a local error (the
    /// kernel refusing a send, e.g. `EMSGSIZE` above the interface MTU) carries the socket's
    /// connected port, 0 for our unconnected sockets, so only the failing send knows the port.
    pub(crate) fn attributed_to(mut self, sent_to: Option<SocketAddr>) -> PathError {
        if let Some(dest) = sent_to {
            if self.dest.port() == 0 && self.dest.ip() == dest.ip() {
                self.dest = dest;
            }
        }
        self
    }

    /// The error as an [`io::Error`], for logging.
    pub fn to_io_error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
    /// True when the peer or the path is unreachable (as opposed to e.g. a too large datagram).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.errno,
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
        )
    }
}

/// One item handed to the callback of [`LinkIo::recv_each`].
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A datagram received from `from`.
    Datagram {
        /// Source address.
        from: SocketAddr,
        /// Payload, valid during the callback only.
        data: &'a [u8],
    },
    /// A send to `dest` failed, now or asynchronously (ICMP).
    PathError(PathError),
}

/// What one receive call saw besides datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvSummary {
    /// Datagrams handed over.
    pub datagrams: usize,
    /// Path errors handed over.
    pub path_errors: usize,
    /// The [`Waker`] fired during this call.
    pub woken: bool,
    /// The deadline passed with nothing to report.
    pub timed_out: bool,
}

/// Counters of one link socket (monotonic since open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Datagrams received and handed over.
    pub rx_datagrams: u64,
    /// Datagrams longer than `max_datagram_bytes`, dropped.
    pub rx_truncated: u64,
    /// Datagrams sent successfully.
    pub tx_datagrams: u64,
    /// Sends that failed with a per-destination error.
    pub tx_errors: u64,
    /// Receive (re-)arms after the multishot ended (io_uring only).
    pub recv_rearms: u64,
    /// Times the provided-buffer ring ran empty (io_uring only).
    pub recv_no_buffers: u64,
    /// System calls that waited for or reaped completions (io_uring_enter / recvmmsg / sendmmsg / ppoll).
    pub syscalls: u64,
    /// GSO sends: runs of more than one datagram sent with one `sendmsg` (`UDP_SEGMENT`).
    pub tx_gso_runs: u64,
    /// Datagrams sent inside those runs (included in `tx_datagrams`).
    pub tx_gso_segments: u64,
    /// GSO runs the kernel refused as a whole and that were resent one datagram per `sendmsg`.
    pub tx_gso_resends: u64,
    /// Receives that carried more than one datagram (GRO).
    pub rx_gro_receives: u64,
    /// Datagrams that arrived inside those receives (included in `rx_datagrams`).
    pub rx_gro_segments: u64,
}

/// One receive as the kernel returned it: one datagram, or with GRO several of `segment_bytes`
/// each (the last may be shorter) from the same source, or a path error.
#[derive(Debug)]
pub(crate) enum RecvUnit<'a> {
    /// `payload` from `from`; see [`offload::segments`] for how it splits into datagrams.
    Received {
        from: SocketAddr,
        payload: &'a [u8],
        segment_bytes: Option<usize>,
    },
    /// As [`Incoming::PathError`].
    PathError(PathError),
}

impl RecvUnit<'_> {
    /// Hands the unit to a per-datagram callback, one [`Incoming::Datagram`] per segment.
    pub(crate) fn split_into<F: FnMut(Incoming<'_>)>(self, f: &mut F) {
        match self {
            RecvUnit::Received {
                from,
                payload,
                segment_bytes,
            } => {
                for data in offload::segments(payload, segment_bytes) {
                    f(Incoming::Datagram { from, data });
                }
            }
            RecvUnit::PathError(e) => f(Incoming::PathError(e)),
        }
    }
}

/// Where one receive of a [`RecvBatch`] came from and how it splits.
#[derive(Clone, Copy, Debug)]
struct SlotMeta {
    from: SocketAddr,
    len: usize,
    segment_bytes: Option<usize>,
}

/// A reusable batch of received datagrams: `batch_max` slots of `max_datagram_bytes`, allocated
/// once. A slot holds one receive: one datagram, or with GRO several from one source, which
/// [`RecvBatch::iter`] and [`RecvBatch::get`] hand out as separate datagrams.
pub struct RecvBatch {
    slot_bytes: usize,
    storage: Box<[u8]>,
    meta: Vec<SlotMeta>,
    datagrams: usize,
    path_errors: Vec<PathError>,
    woken: bool,
}

impl RecvBatch {
    /// Storage sized for `opts` (use the options the socket was opened with).
    pub fn new(opts: &IoOptions) -> RecvBatch {
        RecvBatch {
            slot_bytes: opts.max_datagram_bytes,
            storage: vec![0u8; opts.max_datagram_bytes * opts.batch_max].into_boxed_slice(),
            meta: Vec::with_capacity(opts.batch_max),
            datagrams: 0,
            path_errors: Vec::with_capacity(opts.batch_max),
            woken: false,
        }
    }
    /// A batch without storage, used as a placeholder while the real one is lent out.
    fn empty() -> RecvBatch {
        RecvBatch {
            slot_bytes: 1,
            storage: Box::new([]),
            meta: Vec::new(),
            datagrams: 0,
            path_errors: Vec::new(),
            woken: false,
        }
    }
    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.datagrams
    }
    /// True when no datagram is held.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }
    /// Most receives one call can hold: as many datagrams, or more when GRO coalesced some.
    pub fn capacity(&self) -> usize {
        self.storage.len() / self.slot_bytes.max(1)
    }
    /// Receives held (fewer than [`RecvBatch::len`] when GRO coalesced datagrams).
    pub fn receives(&self) -> usize {
        self.meta.len()
    }
    /// Datagram `i` (in arrival order) as (source, payload).
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        self.iter().nth(i)
    }
    /// All datagrams held, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.meta.iter().enumerate().flat_map(move |(slot, m)| {
            let start = slot * self.slot_bytes;
            offload::segments(&self.storage[start..start + m.len], m.segment_bytes)
                .map(move |data| (m.from, data))
        })
    }
    /// Per-destination errors seen during the call.
    pub fn path_errors(&self) -> &[PathError] {
        &self.path_errors
    }
    /// True when the [`Waker`] fired during the call.
    pub fn woken(&self) -> bool {
        self.woken
    }
    fn clear(&mut self) {
        self.clear_received();
        self.path_errors.clear();
        self.woken = false;
    }
    /// Forgets the receives (not the path errors).
    fn clear_received(&mut self) {
        self.meta.clear();
        self.datagrams = 0;
    }
    fn is_full(&self) -> bool {
        self.meta.len() >= self.capacity()
    }
    /// Records that slot `meta.len()` holds `len` bytes from `from`.
    fn push_meta(&mut self, from: SocketAddr, len: usize, segment_bytes: Option<usize>) {
        self.meta.push(SlotMeta {
            from,
            len,
            segment_bytes,
        });
        self.datagrams += offload::segment_count(len, segment_bytes);
    }
    /// Copies one receive in; false when the batch is full or the payload too long.
    fn push_copy(&mut self, from: SocketAddr, data: &[u8], segment_bytes: Option<usize>) -> bool {
        if self.is_full() || data.len() > self.slot_bytes {
            return false;
        }
        let start = self.meta.len() * self.slot_bytes;
        self.storage[start..start + data.len()].copy_from_slice(data);
        self.push_meta(from, data.len(), segment_bytes);
        true
    }
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.datagrams)
            .field("receives", &self.meta.len())
            .field("path_errors", &self.path_errors)
            .field("woken", &self.woken)
            .finish()
    }
}

/// Wakes a [`LinkIo`] blocked in a receive call, from any thread (an eventfd write).
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// A new eventfd-backed waker.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd has no pointer arguments; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd: Arc::new(fd) })
    }

    /// Makes the current or next receive call return (with `woken` set). Never blocks.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we hold open. A failure can only be
        // EAGAIN at counter overflow (2^64-2 pending wakes), when the reader is woken anyway.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// The eventfd: readable after [`Waker::wake`] until [`Waker::wait`] consumes the wake.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Blocks until a [`Waker::wake`] or `timeout`; consumes pending wakes. True when woken.
    pub fn wait(&self, timeout: std::time::Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one live pollfd, a live timespec, no signal mask.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        if rc > 0 && pfd.revents & libc::POLLIN != 0 {
            self.drain();
            return Ok(true);
        }
        Ok(false)
    }

    /// Clears pending wakes; only called after poll said the eventfd is readable.
    fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; the eventfd is readable so this does not block.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

// One value per link socket, created once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Uring(uring::UringIo),
    Mmsg(mmsg::MmsgIo),
}

/// One bound UDP socket with batched I/O on the backend chosen at [`open`].
pub struct LinkIo {
    inner: Inner,
}

impl fmt::Debug for LinkIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkIo")
            .field("kind", &self.kind())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// Opens a UDP socket bound to `bind` on the requested backend.
///
/// `Backend::Auto` honours `TOTEM_IO`, then probes io_uring and falls back to mmsg; the choice is
/// logged once per process at info level (and the reason of a fallback at warn level).
pub fn open(bind: SocketAddr, backend: Backend, opts: &IoOptions) -> io::Result<LinkIo> {
    opts.validate()?;
    let mut opts = opts.clone();
    if opts.udp_offload && !offload_allowed_by_env()? {
        opts.udp_offload = false;
    }
    let opts = &opts;
    let requested = match backend {
        Backend::Auto => Backend::from_env()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .unwrap_or(Backend::Auto),
        forced => forced,
    };
    let inner = match requested {
        Backend::Uring => Inner::Uring(uring::UringIo::open(bind, opts)?),
        Backend::Mmsg => Inner::Mmsg(mmsg::MmsgIo::open(bind, opts)?),
        Backend::Auto => match uring::UringIo::open(bind, opts) {
            Ok(io) => Inner::Uring(io),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    || e.kind() == io::ErrorKind::AddrNotAvailable =>
            {
                return Err(e)
            }
            Err(e) => {
                log_fallback_once(&e);
                Inner::Mmsg(mmsg::MmsgIo::open(bind, opts)?)
            }
        },
    };
    let io = LinkIo { inner };
    log_backend_once(io.kind(), io.offload());
    Ok(io)
}

fn log_backend_once(kind: BackendKind, offload: OffloadStatus) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    let on_off = |on: bool| if on { "on" } else { "off" };
    LOGGED.call_once(|| {
        tracing::info!(
            "link I/O backend: {kind}, UDP GSO {}, GRO {}",
            on_off(offload.gso),
            on_off(offload.gro)
        )
    });
}

fn log_fallback_once(e: &io::Error) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::warn!("io_uring unavailable ({e}); falling back to recvmmsg/sendmmsg")
    });
}

/// The bound socket, for socket options the link layer does not set itself (e.g. totem-ping's
/// multicast group membership, TTL and outgoing interface). Options only: reading or writing
/// through this descriptor would bypass (and on io_uring race with) the batched I/O.
impl AsFd for LinkIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            Inner::Uring(io) => io.socket().as_fd(),
            Inner::Mmsg(io) => io.socket().as_fd(),
        }
    }
}

impl LinkIo {
    /// The backend in use.
    pub fn kind(&self) -> BackendKind {
        match &self.inner {
            Inner::Uring(_) => BackendKind::Uring,
            Inner::Mmsg(_) => BackendKind::Mmsg,
        }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Inner::Uring(io) => io.local_addr(),
            Inner::Mmsg(io) => io.local_addr(),
        }
    }

    /// The options the socket was opened with.
    pub fn options(&self) -> &IoOptions {
        match &self.inner {
            Inner::Uring(io) => io.options(),
            Inner::Mmsg(io) => io.options(),
        }
    }

    /// A handle that interrupts a blocked receive from another thread.
    pub fn waker(&self) -> Waker {
        match &self.inner {
            Inner::Uring(io) => io.waker(),
            Inner::Mmsg(io) => io.waker(),
        }
    }

    /// Which UDP offloads the socket uses now (GSO may have been switched off since open).
    pub fn offload(&self) -> OffloadStatus {
        match &self.inner {
            Inner::Uring(io) => io.offload(),
            Inner::Mmsg(io) => io.offload(),
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> IoStats {
        match &self.inner {
            Inner::Uring(io) => io.stats(),
            Inner::Mmsg(io) => io.stats(),
        }
    }

    /// Sends every datagram, in batches of `batch_max` (one submission / one sendmmsg per batch
    /// when the socket buffer has room). Returns how many were sent; a datagram whose destination
    /// failed is not counted and is reported as a [`PathError`] by the next receive call. Waits
    /// for socket buffer space when it is full.
    ///
    /// With GSO on, each batch of `batch_max` is regrouped by destination (each destination's
    /// order kept, the batch's last datagram still last: `gso_plan.rs`) and runs of equal-size
    /// datagrams to one destination leave in one `sendmsg`. Both backends send the planned runs
    /// strictly in order (sendmmsg; a linked chain of SENDMSG entries on io_uring) and deal with a
    /// failed run before the next one goes out: a run the kernel refuses as a whole is resent
    /// one datagram per `sendmsg` in its place.
    pub fn send_batch(&mut self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Uring(io) => io.send_batch(datagrams),
            Inner::Mmsg(io) => io.send_batch(datagrams),
        }
    }

    /// Hands up to `batch_max` received datagrams and pending path errors to `f`, waiting until
    /// at least one arrives, the [`Waker`] fires or `deadline` passes (`None`: wait indefinitely).
    /// With GRO one receive may carry up to 64 datagrams from one source; each is handed over as
    /// its own [`Incoming::Datagram`], in order, and a receive is never split between calls, so a
    /// call may hand over more than `batch_max` (on io_uring at most 63 more; with recvmmsg up to
    /// `batch_max` receives). On io_uring the payload is read straight from the provided buffer
    /// (no copy).
    pub fn recv_each<F>(&mut self, deadline: Option<Instant>, f: F) -> io::Result<RecvSummary>
    where
        F: FnMut(Incoming<'_>),
    {
        match &mut self.inner {
            Inner::Uring(io) => io.recv_each(deadline, f),
            Inner::Mmsg(io) => io.recv_each(deadline, f),
        }
    }

    /// Fills `out` (cleared first) like [`LinkIo::recv_each`] (at most `out.capacity()` receives);
    /// returns the number of datagrams, a GRO receive counting as the datagrams it carries, each
    /// handed out separately by [`RecvBatch::iter`]. On mmsg the kernel writes straight into
    /// `out`; on io_uring each receive is copied once from the provided buffer.
    pub fn recv_batch(
        &mut self,
        out: &mut RecvBatch,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        out.clear();
        match &mut self.inner {
            Inner::Uring(io) => {
                let summary =
                    io.recv_units_limited(deadline, out.capacity(), |unit| match unit {
                        RecvUnit::Received {
                            from,
                            payload,
                            segment_bytes,
                        } => {
                            // Cannot fail: recv_units_limited hands at most `capacity` receives of
                            // at most max_datagram_bytes (longer ones are dropped as truncated).
                            let _ = out.push_copy(from, payload, segment_bytes);
                        }
                        RecvUnit::PathError(e) => out.path_errors.push(e),
                    })?;
                out.woken = summary.woken;
            }
            Inner::Mmsg(io) => io.recv_into(out, deadline)?,
        }
        Ok(out.len())
    }
}

/// Milliseconds-or-less remaining until `deadline`, saturating at zero.
fn remaining(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Pins the calling thread to CPU `cpu` (for a link reactor's thread).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} out of range"),
        ));
    }
    // SAFETY: cpu_set_t is POD (zero = empty set); CPU_SET writes inside it (cpu checked above);
    // sched_setaffinity reads the set of the size passed, for the calling thread (pid 0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Puts the calling thread in SCHED_RR at the highest realtime priority, which the threads it
/// starts afterwards inherit; returns the priority. Needs CAP_SYS_NICE (and a realtime budget in
/// the thread's cgroup).
pub fn set_round_robin_max() -> io::Result<i32> {
    // SAFETY: plain syscall wrappers; `param` is an initialised sched_param the kernel only reads;
    // pid 0 is the calling thread.
    unsafe {
        let priority = libc::sched_get_priority_max(libc::SCHED_RR);
        if priority == -1 {
            return Err(io::Error::last_os_error());
        }
        let param = libc::sched_param {
            sched_priority: priority,
        };
        if libc::sched_setscheduler(0, libc::SCHED_RR, &param) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(priority)
    }
}

/// Sets the calling thread's nice value, which the threads it starts afterwards inherit.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall wrapper; who = 0 is the calling thread on Linux.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
