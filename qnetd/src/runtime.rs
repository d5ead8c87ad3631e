//! totem-qnetd's I/O: a TCP listener, one thread per connection, one timer thread, and the
//! sans-IO [`QnetdServer`] from totem-core behind one mutex.
//!
//! Why threads and not an event loop: an arbiter has one connection per cluster node (tens to a
//! few hundred), each sending a few dozen bytes every 8 s. Blocking reads on a thread each cost
//! nothing measurable at that scale, need no runtime dependency, and keep the code a straight
//! line. One lock around the server state matches the core (a vote decision spans every
//! connection of a cluster); it is held only to feed an input and flush the resulting writes.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use totem_core::qdevice::{ConnId, QnetdServer, ServerAction, ServerConfig, ServerEvent};
use totem_core::time::MonoTime;
use tracing::{debug, info, warn};

use crate::channel::{self, ChannelKey, Role, SecureChannel};

/// Longest sleep of the timer thread, so shutdown is noticed promptly.
const TIMER_TICK_MAX: Duration = Duration::from_millis(200);
/// A client must finish the secure hello within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A write blocked this long means the peer stopped reading: drop it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer per connection (a qdevice message is at most 32 KiB; reads may split them).
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// How totem-qnetd runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// With a key, every client must use the secure channel ([`crate::channel`]).
    pub authkey: Option<ChannelKey>,
    /// Algorithm settings.
    pub server: ServerConfig,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    channel: Option<SecureChannel>,
    /// Cluster the secure hello named; PREINIT must name the same one.
    bound_cluster: Option<String>,
}

struct Shared {
    core: QnetdServer,
    conns: HashMap<ConnId, Conn>,
    epoch: Instant,
}

impl Shared {
    fn now(&self) -> MonoTime {
        MonoTime(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Perform everything the core asked for.
    fn flush(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                ServerAction::Send(conn, bytes) => self.write(conn, &bytes),
                ServerAction::Close(conn) => {
                    if let Some(c) = self.conns.remove(&conn) {
                        let _ = c.stream.shutdown(Shutdown::Both);
                    }
                }
                ServerAction::Event(event) => self.log(event),
            }
        }
    }

    fn write(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let sealed;
        let out = match c.channel.as_mut() {
            Some(ch) => match ch.seal(bytes) {
                Ok(record) => {
                    sealed = record;
                    &sealed[..]
                }
                Err(e) => {
                    warn!(peer = %c.peer, "cannot seal reply: {e}; disconnecting");
                    let _ = c.stream.shutdown(Shutdown::Both);
                    return;
                }
            },
            None => bytes,
        };
        if let Err(e) = c.stream.write_all(out) {
            warn!(peer = %c.peer, "write failed: {e}; disconnecting");
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    fn log(&mut self, event: ServerEvent) {
        let peer = |conns: &HashMap<ConnId, Conn>, conn: ConnId| {
            conns
                .get(&conn)
                .map(|c| c.peer.to_string())
                .unwrap_or_else(|| "-".into())
        };
        match event {
            ServerEvent::ClientJoined {
                conn,
                cluster,
                node_id,
                algorithm,
            } => {
                info!(
                    "client {} joined cluster {cluster} as node {node_id} (algorithm {algorithm:?})",
                    peer(&self.conns, conn)
                );
                let bound = self.conns.get(&conn).and_then(|c| c.bound_cluster.clone());
                if bound.is_some_and(|b| b != cluster) {
                    warn!(
                        "client {} named another cluster than its secure hello: disconnecting",
                        peer(&self.conns, conn)
                    );
                    self.core.handle_closed(conn);
                    if let Some(c) = self.conns.remove(&conn) {
                        let _ = c.stream.shutdown(Shutdown::Both);
                    }
                }
            }
            ServerEvent::VoteSent {
                conn,
                cluster,
                node_id,
                vote,
                ring_id,
            } => info!(
                "cluster {cluster} node {node_id} ({}): vote {vote:?} for ring {:x}.{:x}",
                peer(&self.conns, conn),
                ring_id.node_id,
                ring_id.seq
            ),
            ServerEvent::ClientError { conn, code } => {
                warn!("client {}: refused with {code:?}", peer(&self.conns, conn))
            }
            ServerEvent::DeadPeer { conn, silent_ms } => warn!(
                "client {} sent nothing for {silent_ms} ms: disconnecting",
                peer(&self.conns, conn)
            ),
            ServerEvent::ClientLeft {
                conn,
                cluster,
                node_id,
            } => info!(
                "client {} left (cluster {}, node {})",
                peer(&self.conns, conn),
                cluster.as_deref().unwrap_or("-"),
                node_id.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
            ),
        }
    }
}

/// A running arbiter; dropping it does not stop it, call [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting and timing; open connections end when their peers close.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection to ourselves.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Block until the acceptor ends (i.e. forever, for the daemon).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic in another connection thread must not take the arbiter down with it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bind and start serving.
pub fn spawn(options: Options) -> io::Result<RunningServer> {
    let listener = TcpListener::bind(options.listen)?;
    let local_addr = listener.local_addr()?;
    info!(
        "totem-qnetd listening on {local_addr} (TLS off, secure channel {})",
        if options.authkey.is_some() {
            "required"
        } else {
            "off"
        }
    );
    let shared = Arc::new(Mutex::new(Shared {
        core: QnetdServer::new(options.server),
        conns: HashMap::new(),
        epoch: Instant::now(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let (shared, stop) = (shared.clone(), stop.clone());
        thread::Builder::new()
            .name("qnetd-timer".into())
            .spawn(move || timer_loop(&shared, &stop))?
    };
    let acceptor = {
        let (shared, stop) = (shared.clone(), stop.clone());
        let authkey = options.authkey.clone();
        thread::Builder::new()
            .name("qnetd-accept".into())
            .spawn(move || accept_loop(listener, shared, stop, authkey))?
    };
    Ok(RunningServer {
        local_addr,
        stop,
        threads: vec![acceptor, timer],
    })
}

fn timer_loop(shared: &Mutex<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let sleep = {
            let mut s = lock(shared);
            let now = s.now();
            if s.core.poll_timeout().is_some_and(|at| at <= now) {
                s.core.handle_timeout(now);
                s.flush();
            }
            match s.core.poll_timeout() {
                Some(at) => at.saturating_since(now).min(TIMER_TICK_MAX),
                None => TIMER_TICK_MAX,
            }
        };
        thread::sleep(sleep.max(Duration::from_millis(1)));
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    authkey: Option<ChannelKey>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("accept failed: {e}");
                continue;
            }
        };
        let (shared, authkey) = (shared.clone(), authkey.clone());
        let spawned = thread::Builder::new()
            .name("qnetd-conn".into())
            .spawn(move || serve_connection(stream, &shared, authkey.as_ref()));
        if let Err(e) = spawned {
            warn!("cannot start a connection thread: {e}");
        }
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Mutex<Shared>, authkey: Option<&ChannelKey>) {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    debug!("connection from {peer}");
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut leftover = Vec::new();
    let (channel, bound_cluster) = match authkey {
        None => (None, None),
        Some(key) => match secure_hello(&mut stream, key, &mut leftover) {
            Ok((ch, cluster)) => (Some(ch), Some(cluster)),
            Err(e) => {
                warn!("client {peer}: secure channel refused: {e}");
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        },
    };
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let conn = {
        let mut s = lock(shared);
        let now = s.now();
        let conn = s.core.accept(now);
        s.conns.insert(
            conn,
            Conn {
                stream: writer,
                peer,
                channel,
                bound_cluster,
            },
        );
        s.flush();
        conn
    };
    if !leftover.is_empty() && !feed(shared, conn, &leftover) {
        return close(shared, conn);
    }
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !feed(shared, conn, &buf[..n]) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                debug!("client {peer}: read failed: {e}");
                break;
            }
        }
    }
    close(shared, conn);
}

/// Hand received bytes to the core; false when the connection is gone or must go.
fn feed(shared: &Mutex<Shared>, conn: ConnId, bytes: &[u8]) -> bool {
    let mut s = lock(shared);
    let now = s.now();
    let Some(c) = s.conns.get_mut(&conn) else {
        return false;
    };
    let plain = match c.channel.as_mut() {
        None => bytes.to_vec(),
        Some(ch) => match ch.open(bytes) {
            Ok(p) => p,
            Err(e) => {
                warn!("client {}: {e}; disconnecting", c.peer);
                return false;
            }
        },
    };
    s.core.handle_bytes(now, conn, &plain);
    s.flush();
    s.conns.contains_key(&conn)
}

fn close(shared: &Mutex<Shared>, conn: ConnId) {
    let mut s = lock(shared);
    s.core.handle_closed(conn);
    if let Some(c) = s.conns.remove(&conn) {
        let _ = c.stream.shutdown(Shutdown::Both);
    }
    s.flush();
}

/// Server side of the secure hello; bytes read past the hello are returned in `leftover`.
fn secure_hello(
    stream: &mut TcpStream,
    key: &ChannelKey,
    leftover: &mut Vec<u8>,
) -> Result<(SecureChannel, String), Box<dyn std::error::Error>> {
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let (client_salt, cluster, used) = loop {
        if let Some(hello) = channel::parse_client_hello(&got)? {
            break hello;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err("closed during hello".into());
        }
        got.extend_from_slice(&buf[..n]);
    };
    leftover.extend_from_slice(&got[used..]);
    let server_salt = channel::random_salt()?;
    stream.write_all(&channel::server_hello(&server_salt))?;
    stream.set_read_timeout(None)?;
    Ok((
        SecureChannel::new(key, &cluster, &client_salt, &server_salt, Role::Server),
        cluster,
    ))
}
