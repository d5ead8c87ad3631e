//! The quorum device client (corosync-qdevice's job, model `net`, TLS off) as a thread of the
//! daemon: it connects to the arbiter (qnetd) over TCP, reconnecting with backoff, runs
//! totem-core's sans-IO [`QdeviceClient`] on the wall clock, and hands the device's votes to the
//! core thread, which owns votequorum.
//!
//! ```text
//! core thread ──ToDevice (membership, quorate)──▶ qdevice thread ◀──TCP──▶ qnetd
//!      ▲                                                │
//!      └───────FromDevice (register, poll) + waker──────┘
//! ```
//!
//! The core calls [`QdeviceLink::membership`] on every regular configuration,
//! [`QdeviceLink::quorate`] on every quorum change, [`QdeviceLink::config`] after a reload, and [`QdeviceLink::apply`] on every wake-up
//! (turning the thread's polls into `Votequorum::qdevice_poll`). As corosync-qdevice does, the
//! device registers with votequorum when it starts, whether qnetd is reachable or not, and polls
//! `cast_vote: false` while it has no connection, so `pvecm status` shows it alive but not voting.
//! Facts: REFERENCE.md §3.4, §5.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::Waker;
use totem_core::qdevice::wire::TieBreaker;
use totem_core::qdevice::{
    ClientAction, ClientConfig, ClusterView, DecisionAlgorithm, Phase, QdeviceClient, RingId,
    Timing,
};
use totem_core::quorum::{self, Votequorum};
use totem_core::time::MonoTime;
use totem_core::NodeId;

use super::status::StaticInfo;
use crate::config::Loaded;

/// Name the device registers under in votequorum (corosync-qdevice registers as `Qdevice`).
pub const DEVICE_NAME: &str = "Qdevice";
/// Longest blocking read before the thread looks at the core's messages and its timers again.
const READ_SLICE: Duration = Duration::from_millis(20);
/// First wait before reconnecting after a failed or lost connection. corosync-qdevice waits
/// about a second between attempts (`qdevice-net-instance.c`, reconnect on the next heartbeat
/// timer tick); we start there and double up to [`RECONNECT_BACKOFF_MAX`].
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(1_000);
/// Longest wait between reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(8_000);
/// A connection that stayed up this long resets the backoff to its minimum.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Read buffer size; qnetd messages are small (node lists of a few hundred bytes).
const READ_BUFFER_BYTES: usize = 4096;

/// Why `quorum.device` cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum QdeviceSetupError {
    /// `quorum.device.model` is missing or not `net`.
    #[error("quorum.device.model {0:?} is not supported: totemd runs model net only")]
    Model(Option<String>),
    /// No `quorum.device.net` section.
    #[error("quorum.device.model is net but there is no quorum.device.net section")]
    NoNetSection,
    /// No `quorum.device.net.host`.
    #[error("quorum.device.net.host is missing")]
    NoHost,
    /// An algorithm other than ffsplit or lms.
    #[error("quorum.device.net.algorithm {0:?} is not supported: use ffsplit or lms")]
    Algorithm(String),
    /// A tie breaker that is not lowest, highest or a node id.
    #[error("quorum.device.net.tie_breaker {0:?}: expected lowest, highest or a node id")]
    TieBreaker(String),
    /// `tls: required`: this client only speaks TLS off.
    #[error("quorum.device.net.tls is required, but totemd's qdevice client speaks TLS off only")]
    TlsRequired,
    /// The thread could not be started.
    #[error("starting the qdevice thread: {0}")]
    Spawn(io::Error),
}

/// Everything the qdevice thread needs, taken from corosync.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdeviceSettings {
    /// `quorum.device.net.host` (a name is resolved at every connection attempt).
    pub host: String,
    /// `quorum.device.net.port` (5403 by default).
    pub port: u16,
    /// The client state machine's settings.
    pub client: ClientConfig,
    /// Node ids of the nodelist.
    pub config_nodes: Vec<NodeId>,
    /// `totem.config_version`.
    pub config_version: Option<u64>,
}

impl QdeviceSettings {
    /// The device settings of `loaded` for node `me`; `Ok(None)` without `quorum.device`.
    pub fn from_config(
        loaded: &Loaded,
        me: NodeId,
    ) -> Result<Option<QdeviceSettings>, QdeviceSetupError> {
        let quorum = &loaded.config.quorum;
        let Some(device) = &quorum.device else {
            return Ok(None);
        };
        if device.model.as_deref() != Some("net") {
            return Err(QdeviceSetupError::Model(device.model.clone()));
        }
        let net = device.net.as_ref().ok_or(QdeviceSetupError::NoNetSection)?;
        let host = net.host.clone().ok_or(QdeviceSetupError::NoHost)?;
        let algorithm = match net.algorithm.as_deref() {
            None | Some("ffsplit") => DecisionAlgorithm::Ffsplit,
            Some("lms") => DecisionAlgorithm::Lms,
            Some(other) => return Err(QdeviceSetupError::Algorithm(other.to_string())),
        };
        let tie_breaker = match net.tie_breaker.as_deref() {
            None | Some("lowest") => TieBreaker::LOWEST,
            Some("highest") => TieBreaker::HIGHEST,
            Some(text) => match text.parse::<NodeId>() {
                Ok(node) if node > 0 => TieBreaker::node(node),
                _ => return Err(QdeviceSetupError::TieBreaker(text.to_string())),
            },
        };
        match net.tls.as_deref() {
            Some("required") => return Err(QdeviceSetupError::TlsRequired),
            // corosync-qdevice's default is `on` (TLS when the server offers it); we never
            // offer it, so qnetd must run with TLS off or optional.
            None | Some("on") => tracing::warn!(
                "[QDEVICE] quorum.device.net.tls is on: totemd connects without TLS; qnetd must run with -s off (or on, not required)"
            ),
            Some(_) => {}
        }
        let timing = device
            .timeout_ms
            .map(|ms| Timing::from_timeout_ms(u64::from(ms)))
            .unwrap_or_default();
        let cluster_name = loaded.config.totem.cluster_name.clone().unwrap_or_default();
        let mut client = ClientConfig::new(&cluster_name, me);
        client.algorithm = algorithm;
        client.tie_breaker = tie_breaker;
        client.timing = timing;
        client.wait_for_all = quorum.wait_for_all.unwrap_or(false);
        Ok(Some(QdeviceSettings {
            host,
            port: net.port,
            client,
            config_nodes: loaded.nodes.iter().map(|n| n.nodeid).collect(),
            config_version: Some(loaded.config.totem.config_version),
        }))
    }
}

/// What the core tells the qdevice thread.
#[derive(Debug)]
enum ToDevice {
    Membership {
        ring_id: RingId,
        members: Vec<NodeId>,
    },
    Quorate(bool),
    Config {
        nodes: Vec<NodeId>,
        config_version: Option<u64>,
    },
    Stop,
}

/// What the qdevice thread asks the core to do to votequorum.
#[derive(Debug, PartialEq, Eq)]
enum FromDevice {
    Register,
    Poll { ring_id: RingId, cast_vote: bool },
}

/// The core thread's end of the qdevice thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct QdeviceLink {
    to_device: Sender<ToDevice>,
    from_device: Receiver<FromDevice>,
    thread: Option<JoinHandle<()>>,
}

impl QdeviceLink {
    /// Starts the qdevice thread; it wakes the core through `waker` when it has work for it.
    pub fn start(
        settings: QdeviceSettings,
        waker: Arc<Waker>,
    ) -> Result<QdeviceLink, QdeviceSetupError> {
        let (to_device, from_core) = crossbeam_channel::unbounded();
        let (to_core, from_device) = crossbeam_channel::unbounded();
        let me = settings.client.node_id;
        let worker = Worker {
            view: ClusterView {
                config_nodes: settings.config_nodes.clone(),
                config_version: settings.config_version,
                ring_id: RingId {
                    node_id: me,
                    seq: 0,
                },
                members: vec![me],
                quorate: false,
            },
            settings,
            from_core,
            to_core,
            waker,
            epoch: Instant::now(),
            stopped: false,
        };
        let thread = std::thread::Builder::new()
            .name("totemd-qdevice".into())
            .spawn(move || worker.run())
            .map_err(QdeviceSetupError::Spawn)?;
        Ok(QdeviceLink {
            to_device,
            from_device,
            thread: Some(thread),
        })
    }

    /// Totem formed a regular configuration.
    pub fn membership(&self, ring_id: quorum::RingId, members: &[NodeId]) {
        let _ = self.to_device.send(ToDevice::Membership {
            ring_id: RingId {
                node_id: ring_id.rep,
                seq: ring_id.seq,
            },
            members: members.to_vec(),
        });
    }

    /// votequorum's quorate state (sent on every quorum change; the thread forwards changes).
    pub fn quorate(&self, quorate: bool) {
        let _ = self.to_device.send(ToDevice::Quorate(quorate));
    }

    /// The configuration was reloaded: report the (possibly changed) nodelist to qnetd.
    pub fn config(&self, info: &StaticInfo) {
        let _ = self.to_device.send(ToDevice::Config {
            nodes: info.nodes.keys().copied().collect(),
            config_version: info.cluster.config_version,
        });
    }

    /// Applies what the thread asked for to votequorum; the caller then drains votequorum's
    /// actions. A poll for a ring votequorum has already left is dropped (the thread polls again
    /// for the new ring once qnetd answers for it).
    pub fn apply(&mut self, now: MonoTime, quorum: &mut Votequorum) {
        while let Ok(request) = self.from_device.try_recv() {
            match request {
                FromDevice::Register => match quorum.qdevice_register(DEVICE_NAME) {
                    Ok(()) => tracing::info!("[QDEVICE] {DEVICE_NAME} registered with votequorum"),
                    Err(e) => tracing::error!("[QDEVICE] cannot register with votequorum: {e}"),
                },
                FromDevice::Poll { ring_id, cast_vote } => {
                    let ring = quorum::RingId {
                        rep: ring_id.node_id,
                        seq: ring_id.seq,
                    };
                    if let Err(e) = quorum.qdevice_poll(now, ring, cast_vote) {
                        tracing::debug!("[QDEVICE] poll for ring {ring} dropped: {e}");
                    }
                }
            }
        }
    }
}

impl Drop for QdeviceLink {
    fn drop(&mut self) {
        let _ = self.to_device.send(ToDevice::Stop);
        // The thread notices within one read slice unless it is inside a connect attempt
        // (bounded by the connect timeout); do not hold the daemon's exit for that.
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// How one connection ended.
enum Ended {
    Stop,
    Lost(String),
}

/// The qdevice thread's state.
struct Worker {
    settings: QdeviceSettings,
    view: ClusterView,
    from_core: Receiver<ToDevice>,
    to_core: Sender<FromDevice>,
    waker: Arc<Waker>,
    epoch: Instant,
    stopped: bool,
}

impl Worker {
    fn now(&self) -> MonoTime {
        MonoTime(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    fn run(mut self) {
        self.tell_core(FromDevice::Register);
        let mut backoff = RECONNECT_BACKOFF_MIN;
        let mut last_error: Option<String> = None;
        while !self.stopped {
            match self.connect() {
                Ok((stream, addr)) => {
                    last_error = None;
                    tracing::info!("[QDEVICE] connected to qnetd at {addr}");
                    let since = Instant::now();
                    match self.serve(stream) {
                        Ended::Stop => return,
                        Ended::Lost(reason) => tracing::warn!(
                            "[QDEVICE] connection to qnetd at {addr} lost: {reason}; the device does not vote until it is back"
                        ),
                    }
                    if since.elapsed() >= STABLE_CONNECTION {
                        backoff = RECONNECT_BACKOFF_MIN;
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(
                            "[QDEVICE] cannot connect to qnetd at {}: {text}; retrying with backoff up to {:?}",
                            self.endpoint(),
                            RECONNECT_BACKOFF_MAX
                        );
                    } else {
                        tracing::debug!("[QDEVICE] still cannot connect to qnetd: {text}");
                    }
                    last_error = Some(text);
                }
            }
            self.wait_disconnected(backoff);
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    }

    fn tell_core(&self, request: FromDevice) {
        if self.to_core.send(request).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Without a connection: keep the core's messages current and poll `cast_vote: false` every
    /// cast-vote interval (votequorum then shows the device alive, not voting).
    fn wait_disconnected(&mut self, wait: Duration) {
        let end = Instant::now() + wait;
        let every = Duration::from_millis(self.settings.client.timing.cast_vote_interval_ms.max(1));
        let mut next_poll = Instant::now();
        while !self.stopped && Instant::now() < end {
            if Instant::now() >= next_poll {
                self.tell_core(FromDevice::Poll {
                    ring_id: self.view.ring_id,
                    cast_vote: false,
                });
                next_poll = Instant::now() + every;
            }
            self.take_core_messages(None);
            std::thread::sleep(READ_SLICE);
        }
    }

    fn connect(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let timeout = Duration::from_millis(self.settings.client.timing.connect_timeout_ms.max(1));
        let addrs: Vec<SocketAddr> = (self.settings.host.as_str(), self.settings.port)
            .to_socket_addrs()?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolves to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(READ_SLICE))?;
                    return Ok((stream, addr));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Applies the core's messages to the view and, when connected, to the client.
    fn take_core_messages(&mut self, mut client: Option<&mut QdeviceClient>) {
        loop {
            match self.from_core.try_recv() {
                Ok(ToDevice::Membership { ring_id, members }) => {
                    self.view.ring_id = ring_id;
                    self.view.members.clone_from(&members);
                    let now = self.now();
                    if let Some(c) = client.as_deref_mut() {
                        c.set_membership(now, ring_id, &members);
                    }
                }
                Ok(ToDevice::Quorate(quorate)) => {
                    if self.view.quorate != quorate {
                        self.view.quorate = quorate;
                        if let Some(c) = client.as_deref_mut() {
                            c.set_quorum(quorate);
                        }
                    }
                }
                Ok(ToDevice::Config {
                    nodes,
                    config_version,
                }) => {
                    let changed = self.view.config_nodes != nodes
                        || self.view.config_version != config_version;
                    if changed {
                        self.view.config_nodes.clone_from(&nodes);
                        self.view.config_version = config_version;
                        if let Some(c) = client.as_deref_mut() {
                            c.set_config(&nodes, config_version);
                        }
                    }
                }
                Ok(ToDevice::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stopped = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Runs one connection until it ends.
    fn serve(&mut self, mut stream: TcpStream) -> Ended {
        let mut client = QdeviceClient::new(self.settings.client.clone(), self.view.clone());
        let mut was_connected = false;
        let mut buf = [0u8; READ_BUFFER_BYTES];
        let ended = loop {
            self.take_core_messages(Some(&mut client));
            if self.stopped {
                break Ended::Stop;
            }
            if let Err(reason) = self.flush(&mut client, &mut stream) {
                break Ended::Lost(reason);
            }
            if !was_connected && client.phase() == Phase::Connected {
                was_connected = true;
                tracing::info!(
                    "[QDEVICE] registered with qnetd as node {} of cluster {:?} ({:?}, heartbeat {} ms)",
                    self.settings.client.node_id,
                    self.settings.client.cluster_name,
                    self.settings.client.algorithm,
                    self.settings.client.timing.heartbeat_interval_ms
                );
            }
            match stream.read(&mut buf) {
                Ok(0) => break Ended::Lost("qnetd closed the connection".into()),
                Ok(n) => {
                    let now = self.now();
                    client.handle_bytes(now, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => break Ended::Lost(format!("read: {e}")),
            }
            let now = self.now();
            if client.poll_timeout().is_some_and(|at| at <= now) {
                client.handle_timeout(now);
            }
        };
        // Whatever the client still queued (a last vote withdrawal) goes to the core.
        let _ = self.flush(&mut client, &mut stream);
        let _ = stream.shutdown(Shutdown::Both);
        // A lost server means no vote: withdraw it at once rather than at votequorum's timeout.
        self.tell_core(FromDevice::Poll {
            ring_id: self.view.ring_id,
            cast_vote: false,
        });
        ended
    }

    /// Carries out the client's actions; `Err` is why the connection must end.
    fn flush(&self, client: &mut QdeviceClient, stream: &mut TcpStream) -> Result<(), String> {
        while let Some(action) = client.poll_action() {
            match action {
                ClientAction::Send(bytes) => {
                    stream
                        .write_all(&bytes)
                        .map_err(|e| format!("write: {e}"))?;
                }
                ClientAction::Poll { ring_id, cast_vote } => {
                    tracing::debug!("[QDEVICE] vote for ring {ring_id:?}: cast {cast_vote}");
                    self.tell_core(FromDevice::Poll { ring_id, cast_vote });
                }
                ClientAction::Disconnect(reason) => return Err(reason.to_string()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, SystemResolver};

    fn load(quorum: &str) -> Loaded {
        let text = format!(
            "totem {{\n version: 2\n cluster_name: qd\n config_version: 4\n}}\nnodelist {{\n node {{\n  nodeid: 1\n  ring0_addr: 127.0.0.1\n }}\n node {{\n  nodeid: 2\n  ring0_addr: 127.0.0.2\n }}\n}}\nquorum {{\n provider: corosync_votequorum\n{quorum}}}\n"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("corosync.conf");
        std::fs::write(&path, text).expect("write");
        config::load_file(&path, &SystemResolver).expect("valid config")
    }

    #[test]
    fn no_device_means_no_thread() {
        assert_eq!(
            QdeviceSettings::from_config(&load(""), 1).expect("settings accepted"),
            None
        );
    }

    #[test]
    fn net_device_settings_follow_the_file() {
        let loaded = load(
            " device {\n  model: net\n  votes: 1\n  timeout: 2000\n  net {\n   host: 127.0.0.9\n   port: 5999\n   algorithm: lms\n   tie_breaker: 2\n   tls: off\n  }\n }\n",
        );
        let s = QdeviceSettings::from_config(&loaded, 2)
            .expect("settings accepted")
            .expect("device");
        assert_eq!(s.host, "127.0.0.9");
        assert_eq!(s.port, 5999);
        assert_eq!(s.client.node_id, 2);
        assert_eq!(s.client.cluster_name, "qd");
        assert_eq!(s.client.algorithm, DecisionAlgorithm::Lms);
        assert_eq!(s.client.tie_breaker, TieBreaker::node(2));
        assert_eq!(s.client.timing, Timing::from_timeout_ms(2000));
        assert_eq!(s.config_nodes, vec![1, 2]);
        assert_eq!(s.config_version, Some(4));
    }

    #[test]
    fn defaults_are_corosync_qdevice_defaults() {
        let loaded = load(" device {\n  model: net\n  net {\n   host: qnetd.example\n  }\n }\n");
        let s = QdeviceSettings::from_config(&loaded, 1)
            .expect("settings accepted")
            .expect("device");
        assert_eq!(s.port, 5403);
        assert_eq!(s.client.algorithm, DecisionAlgorithm::Ffsplit);
        assert_eq!(s.client.tie_breaker, TieBreaker::LOWEST);
        assert_eq!(s.client.timing, Timing::default());
    }

    #[test]
    fn unsupported_settings_are_refused_with_the_reason() {
        // The config layer refuses some of these already; the device layer checks on its own.
        type Spoil = fn(&mut crate::config::model::Qdevice);
        let cases: [(Spoil, &str); 6] = [
            (|d| d.model = Some("disk".into()), "model"),
            (|d| d.net = None, "no quorum.device.net"),
            (|d| d.net.iter_mut().for_each(|n| n.host = None), "host"),
            (
                |d| {
                    d.net
                        .iter_mut()
                        .for_each(|n| n.algorithm = Some("test".into()))
                },
                "algorithm",
            ),
            (
                |d| {
                    d.net
                        .iter_mut()
                        .for_each(|n| n.tie_breaker = Some("middle".into()))
                },
                "tie_breaker",
            ),
            (
                |d| {
                    d.net
                        .iter_mut()
                        .for_each(|n| n.tls = Some("required".into()))
                },
                "tls",
            ),
        ];
        for (spoil, want) in cases {
            let mut loaded = load(" device {\n  model: net\n  net {\n   host: h\n  }\n }\n");
            let device = loaded.config.quorum.device.as_mut().expect("device");
            spoil(device);
            let err = QdeviceSettings::from_config(&loaded, 1).expect_err("settings refused");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn core_messages_update_the_view_reported_at_the_next_connection() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let (to_device, from_core) = crossbeam_channel::unbounded();
        let (to_core, from_device) = crossbeam_channel::unbounded();
        let loaded = load(" device {\n  model: net\n  net {\n   host: h\n  }\n }\n");
        let settings = QdeviceSettings::from_config(&loaded, 1)
            .expect("settings accepted")
            .expect("device");
        let mut worker = Worker {
            view: ClusterView {
                config_nodes: vec![1, 2],
                config_version: Some(4),
                ring_id: RingId { node_id: 1, seq: 0 },
                members: vec![1],
                quorate: false,
            },
            settings,
            from_core,
            to_core,
            waker,
            epoch: Instant::now(),
            stopped: false,
        };
        let ring = RingId { node_id: 1, seq: 8 };
        for msg in [
            ToDevice::Membership {
                ring_id: ring,
                members: vec![1, 2],
            },
            ToDevice::Quorate(true),
            ToDevice::Config {
                nodes: vec![1, 2, 3],
                config_version: Some(5),
            },
        ] {
            to_device.send(msg).expect("send");
        }
        worker.take_core_messages(None);
        assert_eq!(worker.view.ring_id, ring);
        assert_eq!(worker.view.members, vec![1, 2]);
        assert!(worker.view.quorate);
        assert_eq!(worker.view.config_nodes, vec![1, 2, 3]);
        assert_eq!(worker.view.config_version, Some(5));
        assert!(!worker.stopped);

        // Disconnected: the device stays registered and polls "no vote" for the current ring.
        worker.tell_core(FromDevice::Register);
        worker.wait_disconnected(Duration::from_millis(1));
        assert_eq!(from_device.try_recv(), Ok(FromDevice::Register));
        assert_eq!(
            from_device.try_recv(),
            Ok(FromDevice::Poll {
                ring_id: ring,
                cast_vote: false
            })
        );

        to_device.send(ToDevice::Stop).expect("send");
        worker.take_core_messages(None);
        assert!(worker.stopped);
    }
}
