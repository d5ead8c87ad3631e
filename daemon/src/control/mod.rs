//! The control socket: a Unix stream socket where `pvecm` and client applications talk to the
//! daemon with length-prefixed, versioned frames ([`totem_client::proto`]).
//!
//! One thread ([`ControlServer::run`]) owns the listener and every connection (non-blocking, mio).
//! It checks each connection's peer credentials (SO_PEERCRED): root may do everything, members of
//! the configured read group may only read, anybody else gets a clear `PermissionDenied` reply.
//! Decoded requests go to the core thread through a bounded queue ([`ToCore`]); a full queue is
//! answered with `TryAgain` at once, so a flood of clients can never stall the core. Replies and
//! events come back through [`ToControl`] and a mio waker. Malformed, oversized or unknown
//! frames get an error reply and close that connection only: its byte stream can no longer be
//! trusted to be in step, and nothing else is disturbed.

pub mod access;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use totem_client::proto::{
    encode_frame, ClientMessage, DaemonMessage, ErrorReply, FrameError, FrameReader,
    PROTOCOL_VERSION,
};

pub use access::{Access, AccessPolicy, Credentials};

/// Identifies one connection for its whole life (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// What the control thread hands the core thread.
#[derive(Debug)]
pub enum ToCore {
    /// A decoded request from an allowed client.
    Request {
        /// The connection.
        client: ClientId,
        /// Who is on the other end.
        creds: Credentials,
        /// The request.
        msg: ClientMessage,
    },
    /// The connection closed (cleanly or not): its groups must be left.
    Gone {
        /// The connection.
        client: ClientId,
    },
}

/// What the core thread hands the control thread.
#[derive(Debug)]
pub enum ToControl {
    /// Send a frame to one connection.
    Send {
        /// The connection.
        client: ClientId,
        /// Reply or event.
        msg: DaemonMessage,
    },
}

/// Bytes a connection may have waiting to be written before it counts as stuck and is closed.
/// A client that does not read its deliveries must not make the daemon buffer without bound;
/// 64 MiB is 64 of the largest multicasts.
pub const OUTBOX_BYTES_MAX: usize = 64 << 20;
/// Most connections at once; one more is accepted, told why, and closed.
pub const CLIENTS_MAX: usize = 1024;
/// Bytes read from a socket per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;

/// Handles the core thread uses to reach the control thread.
#[derive(Clone)]
pub struct ControlHandle {
    /// Replies and events.
    pub tx: Sender<ToControl>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl ControlHandle {
    /// Queues a frame for a connection and wakes the control thread.
    pub fn send(&self, client: ClientId, msg: DaemonMessage) {
        // The channel is unbounded on purpose: the core never blocks on a slow client; each
        // connection's outbox has its own bound (OUTBOX_BYTES_MAX) enforced by the control thread.
        if self.tx.send(ToControl::Send { client, msg }).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Asks the control thread to finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle").finish_non_exhaustive()
    }
}

struct Session {
    stream: UnixStream,
    creds: Credentials,
    access: Access,
    reader: FrameReader,
    outbox: VecDeque<Vec<u8>>,
    outbox_bytes: usize,
    written: usize,
    /// Close once the outbox is flushed (after a fatal error reply).
    closing: bool,
}

/// The control socket's thread state.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    poll: Poll,
    handle: ControlHandle,
    from_core: Receiver<ToControl>,
    to_core: Sender<ToCore>,
    core_waker: Arc<Waker>,
    policy: AccessPolicy,
    sessions: HashMap<Token, (ClientId, Session)>,
    by_client: HashMap<ClientId, Token>,
    next_token: usize,
    next_client: u64,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Binds the socket at `path` (replacing a stale one), world-connectable: who may do what is
    /// decided per connection from its credentials, so that refused users get a clear answer
    /// instead of a bare EACCES.
    pub fn bind(
        path: &Path,
        policy: AccessPolicy,
        to_core: Sender<ToCore>,
        core_waker: Arc<Waker>,
    ) -> io::Result<(ControlServer, ControlHandle)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, from_core) = crossbeam_channel::unbounded();
        let handle = ControlHandle {
            tx,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let server = ControlServer {
            path: path.to_path_buf(),
            listener,
            poll,
            handle: handle.clone(),
            from_core,
            to_core,
            core_waker,
            policy,
            sessions: HashMap::new(),
            by_client: HashMap::new(),
            next_token: FIRST_CLIENT,
            next_client: 1,
        };
        Ok((server, handle))
    }

    /// Serves until [`ControlHandle::stop`]; removes the socket file on the way out.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.handle.stop.load(Ordering::SeqCst) {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    token => {
                        if event.is_readable() || event.is_read_closed() {
                            self.read_session(token);
                        }
                        if event.is_writable() {
                            self.flush_session(token);
                        }
                    }
                }
            }
            self.drain_core();
        }
        let _ = std::fs::remove_file(&self.path);
        Ok(())
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let creds = match access::peer_credentials(&stream) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("control socket: cannot read peer credentials: {e}");
                            continue;
                        }
                    };
                    let access = self.policy.access(&creds);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!("control socket: cannot register client: {e}");
                        continue;
                    }
                    let client = ClientId(self.next_client);
                    self.next_client += 1;
                    let mut session = Session {
                        stream,
                        creds,
                        access,
                        reader: FrameReader::new(),
                        outbox: VecDeque::new(),
                        outbox_bytes: 0,
                        written: 0,
                        closing: false,
                    };
                    if self.sessions.len() >= CLIENTS_MAX {
                        queue_reply(
                            &mut session,
                            0,
                            Err(ErrorReply::Failed {
                                detail: format!("too many clients (limit {CLIENTS_MAX})"),
                            }),
                        );
                        session.closing = true;
                    }
                    self.sessions.insert(token, (client, session));
                    self.by_client.insert(client, token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn read_session(&mut self, token: Token) {
        let mut buf = [0u8; READ_CHUNK_BYTES];
        let mut closed = false;
        let mut requests = Vec::new();
        let Some((client, session)) = self.sessions.get_mut(&token) else {
            return;
        };
        let client = *client;
        loop {
            if session.closing {
                break;
            }
            match session.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    if let Err(e) = feed_frames(session, &buf[..n], &mut requests) {
                        queue_reply(session, 0, Err(frame_error_reply(&e)));
                        session.closing = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        for msg in requests {
            self.dispatch(token, client, msg);
        }
        if closed {
            self.drop_session(token);
        } else {
            self.flush_session(token);
        }
    }

    /// Checks permission and hands a request to the core, or answers it here.
    fn dispatch(&mut self, token: Token, client: ClientId, msg: ClientMessage) {
        let Some((_, session)) = self.sessions.get_mut(&token) else {
            return;
        };
        let refusal = match session.access {
            Access::None => Some(format!(
                "uid {} gid {} may not use the totemd control socket (root only{})",
                session.creds.uid,
                session.creds.gid,
                self.policy.describe_read_group()
            )),
            Access::ReadOnly if msg.request.is_mutating() => Some(format!(
                "uid {} may only read cluster status; this request needs root",
                session.creds.uid
            )),
            _ => None,
        };
        if let Some(detail) = refusal {
            queue_reply(
                session,
                msg.request_id,
                Err(ErrorReply::PermissionDenied { detail }),
            );
            return;
        }
        let request_id = msg.request_id;
        let creds = session.creds;
        match self
            .to_core
            .try_send(ToCore::Request { client, creds, msg })
        {
            Ok(()) => {
                let _ = self.core_waker.wake();
            }
            Err(TrySendError::Full(_)) => {
                queue_reply(session, request_id, Err(ErrorReply::TryAgain))
            }
            Err(TrySendError::Disconnected(_)) => queue_reply(
                session,
                request_id,
                Err(ErrorReply::Failed {
                    detail: "the daemon is shutting down".into(),
                }),
            ),
        }
    }

    fn drain_core(&mut self) {
        while let Ok(ToControl::Send { client, msg }) = self.from_core.try_recv() {
            let Some(&token) = self.by_client.get(&client) else {
                continue;
            };
            if let Some((_, session)) = self.sessions.get_mut(&token) {
                match encode_frame(&msg) {
                    Ok(frame) => push_out(session, frame),
                    Err(e) => tracing::error!("control socket: cannot encode a reply: {e}"),
                }
            }
            self.flush_session(token);
        }
    }

    fn flush_session(&mut self, token: Token) {
        let Some((_, session)) = self.sessions.get_mut(&token) else {
            return;
        };
        let mut broken = false;
        while let Some(front) = session.outbox.front() {
            match session.stream.write(&front[session.written..]) {
                Ok(n) => {
                    session.written += n;
                    if session.written == front.len() {
                        session.outbox_bytes -= front.len();
                        session.outbox.pop_front();
                        session.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        let stuck = session.outbox_bytes > OUTBOX_BYTES_MAX;
        if stuck {
            tracing::warn!(
                "control socket: client pid {} does not read its messages ({} bytes waiting); closing it",
                session.creds.pid,
                session.outbox_bytes
            );
        }
        let done = session.closing && session.outbox.is_empty();
        if broken || stuck || done {
            self.drop_session(token);
        }
    }

    fn drop_session(&mut self, token: Token) {
        if let Some((client, mut session)) = self.sessions.remove(&token) {
            let _ = self.poll.registry().deregister(&mut session.stream);
            self.by_client.remove(&client);
            // The core must learn of it even when its queue is full, or the client's groups
            // would keep a dead member: block briefly rather than lose it.
            let _ = self.to_core.send(ToCore::Gone { client });
            let _ = self.core_waker.wake();
        }
    }
}

fn feed_frames(
    session: &mut Session,
    mut input: &[u8],
    requests: &mut Vec<ClientMessage>,
) -> Result<(), FrameError> {
    while !input.is_empty() {
        let (taken, frame) = session.reader.feed(input)?;
        input = &input[taken..];
        if let Some(frame) = frame {
            requests.push(frame.decode::<ClientMessage>()?);
        }
    }
    Ok(())
}

fn frame_error_reply(e: &FrameError) -> ErrorReply {
    match e {
        FrameError::UnsupportedVersion { received } => ErrorReply::VersionMismatch {
            daemon: PROTOCOL_VERSION,
            client: *received,
        },
        other => ErrorReply::BadRequest {
            detail: other.to_string(),
        },
    }
}

fn queue_reply(
    session: &mut Session,
    request_id: u32,
    result: Result<totem_client::proto::Response, ErrorReply>,
) {
    match encode_frame(&DaemonMessage::Reply { request_id, result }) {
        Ok(frame) => push_out(session, frame),
        Err(e) => tracing::error!("control socket: cannot encode a reply: {e}"),
    }
}

fn push_out(session: &mut Session, frame: Vec<u8>) {
    session.outbox_bytes += frame.len();
    session.outbox.push_back(frame);
}
