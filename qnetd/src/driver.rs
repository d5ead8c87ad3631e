//! A blocking TCP driver for totem-core's [`QdeviceClient`]: connects to a qnetd (ours or
//! corosync-qnetd), runs the handshake and timers on the wall clock, and records the votes the
//! device would cast. Tests and tools use it; the daemon embeds the same client in its own loop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use totem_core::qdevice::wire::{RingId, Vote};
use totem_core::qdevice::{ClientAction, ClientConfig, ClusterView, Phase, QdeviceClient};
use totem_core::time::MonoTime;
use totem_core::NodeId;

use crate::channel::{self, ChannelKey, Role, SecureChannel};

/// Longest blocking read before timers are checked again.
const POLL_SLICE: Duration = Duration::from_millis(20);

/// One qdevice client over TCP.
pub struct TcpQdevice {
    client: QdeviceClient,
    stream: TcpStream,
    channel: Option<SecureChannel>,
    epoch: Instant,
    /// Every `Poll` the client emitted: (when, ring, cast_vote).
    pub polls: Vec<(Instant, RingId, bool)>,
    /// Set once the client asked to disconnect (or the server closed).
    pub closed: Option<String>,
}

impl std::fmt::Debug for TcpQdevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpQdevice")
            .field("phase", &self.client.phase())
            .finish_non_exhaustive()
    }
}

impl TcpQdevice {
    /// Connect and start the handshake; with `authkey`, over the secure channel.
    pub fn connect(
        addr: SocketAddr,
        config: ClientConfig,
        view: ClusterView,
        authkey: Option<&ChannelKey>,
    ) -> io::Result<TcpQdevice> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        let channel = match authkey {
            None => None,
            Some(key) => Some(client_hello(&mut stream, key, &config.cluster_name)?),
        };
        stream.set_read_timeout(Some(POLL_SLICE))?;
        let client = QdeviceClient::new(config, view);
        let mut driver = TcpQdevice {
            client,
            stream,
            channel,
            epoch: Instant::now(),
            polls: Vec::new(),
            closed: None,
        };
        driver.flush()?;
        Ok(driver)
    }

    fn now(&self) -> MonoTime {
        MonoTime(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The client's phase.
    pub fn phase(&self) -> Phase {
        self.client.phase()
    }

    /// The last vote the server gave.
    pub fn vote(&self) -> Vote {
        self.client.vote()
    }

    /// Report a new membership (as Totem would).
    pub fn set_membership(&mut self, ring_id: RingId, members: &[NodeId]) -> io::Result<()> {
        let now = self.now();
        self.client.set_membership(now, ring_id, members);
        self.flush()
    }

    /// Run I/O and timers until `done` holds or `timeout` passes; returns whether `done` held.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&TcpQdevice) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if done(self) {
                return true;
            }
            if self.closed.is_some() {
                return done(self);
            }
            if let Err(e) = self.step() {
                self.closed = Some(format!("i/o: {e}"));
            }
        }
        done(self)
    }

    /// Run for `duration` regardless (keeps heartbeats going).
    pub fn run_for(&mut self, duration: Duration) {
        let _ = self.run_until(duration, |_| false);
    }

    /// One round: wait up to 20 ms for bytes, run due timers, send what the client queued.
    pub fn step(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.closed = Some("server closed the connection".into());
                return Ok(());
            }
            Ok(n) => {
                let plain = match self.channel.as_mut() {
                    Some(ch) => ch
                        .open(&buf[..n])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                    None => buf[..n].to_vec(),
                };
                let now = self.now();
                self.client.handle_bytes(now, &plain);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        let now = self.now();
        if self.client.poll_timeout().is_some_and(|at| at <= now) {
            self.client.handle_timeout(now);
        }
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        while let Some(action) = self.client.poll_action() {
            match action {
                ClientAction::Send(bytes) => {
                    let out = match self.channel.as_mut() {
                        Some(ch) => ch
                            .seal(&bytes)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                        None => bytes,
                    };
                    self.stream.write_all(&out)?;
                }
                ClientAction::Poll { ring_id, cast_vote } => {
                    self.polls.push((Instant::now(), ring_id, cast_vote))
                }
                ClientAction::Disconnect(reason) => {
                    self.closed = Some(reason.to_string());
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        Ok(())
    }

    /// Close the connection abruptly (as a killed process would).
    pub fn kill(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn client_hello(
    stream: &mut TcpStream,
    key: &ChannelKey,
    cluster: &str,
) -> io::Result<SecureChannel> {
    let invalid = |e: channel::ChannelError| io::Error::new(io::ErrorKind::InvalidData, e);
    let client_salt = channel::random_salt().map_err(invalid)?;
    stream.write_all(&channel::client_hello(&client_salt, cluster))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        if let Some(server_salt) = channel::parse_server_hello(&got).map_err(invalid)? {
            return Ok(SecureChannel::new(
                key,
                cluster,
                &client_salt,
                &server_salt,
                Role::Client,
            ));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during hello",
            ));
        }
        got.extend_from_slice(&buf[..n]);
    }
}
