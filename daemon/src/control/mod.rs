//! The control socket: a Unix stream socket where `pvecm` and client applications talk to the
//! daemon with length-prefixed, versioned frames ([`totem_client::proto`]).
//!
//! [`ControlServer`] is owned and driven by the core thread: its listener and connections are
//! registered in the core's own `poll`, so a client's multicast reaches Totem and a delivery
//! reaches the client without a hop through another thread. It checks each connection's peer
//! credentials (SO_PEERCRED): root may do everything, members of the configured read group may
//! only read, anybody else gets a clear `PermissionDenied` reply.
//!
//! Input: [`ControlServer::next_input`] hands out one decoded request at a time, round-robin over
//! the connections that have input, reading a connection only when its decoded requests are used
//! up; the core stops asking while Totem's queue is full, and that is the back-pressure: the
//! connections' socket buffers fill and the clients' writes wait. Output: replies and events
//! are appended to a per-connection buffer and written by [`ControlServer::flush`] once per
//! core loop, many frames per `write`. Malformed, oversized or unknown frames get an error reply
//! and close that connection only: its byte stream can no longer be trusted to be in step.

pub mod access;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mio::event::Event;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use totem_client::proto::{
    encode_frame, ClientMessage, DaemonMessage, ErrorReply, FrameError, FrameReader,
    PROTOCOL_VERSION,
};

pub use access::{Access, AccessPolicy, Credentials};

/// Identifies one connection for its whole life (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// What the control server hands the core.
#[derive(Debug)]
pub enum Input {
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

/// Bytes a connection may have waiting to be written before it counts as stuck and is closed.
/// A client that does not read its deliveries must not make the daemon buffer without bound;
/// 64 MiB is 64 of the largest multicasts.
pub const OUTBOX_BYTES_MAX: usize = 64 << 20;
/// Bytes waiting to be written above which a connection is not read: a client takes its
/// deliveries before it may send more, so a fast sender that reads slowly is paced by its own
/// reading instead of filling the daemon's memory (other connections go on). The client library
/// reads while it waits to write, so this never deadlocks it. 4 MiB: a few hundred milliseconds
/// of deliveries at the benchmark's rates, and 4 of the largest multicasts.
pub const OUTBOX_PAUSE_BYTES: usize = 4 << 20;
/// Most connections at once; one more is accepted, told why, and closed.
pub const CLIENTS_MAX: usize = 1024;
/// Bytes read from a socket per read call: a batch of posted multicasts (about 700 of 64 bytes).
const READ_CHUNK_BYTES: usize = 64 * 1024;

struct Session {
    client: ClientId,
    stream: UnixStream,
    creds: Credentials,
    access: Access,
    reader: FrameReader,
    /// Requests decoded and not yet handed to the core.
    pending: VecDeque<ClientMessage>,
    /// The socket may have unread bytes (an edge was seen and no read said `WouldBlock` since).
    readable: bool,
    /// In `ControlServer::ready`.
    queued: bool,
    /// Bytes to write: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// In `ControlServer::dirty`.
    dirty: bool,
    /// Close once the output is flushed (after a fatal error reply); read nothing more.
    closing: bool,
}

impl Session {
    fn has_input(&self) -> bool {
        !self.closing && !self.paused() && (self.readable || !self.pending.is_empty())
    }

    /// Too much output waits for the client: its input is left alone until it reads.
    fn paused(&self) -> bool {
        self.out_bytes() > OUTBOX_PAUSE_BYTES
    }

    fn out_bytes(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// The control socket's state, driven by the core thread's poll.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    listener_token: Token,
    policy: AccessPolicy,
    sessions: HashMap<Token, Session>,
    by_client: HashMap<ClientId, Token>,
    /// Connections with input, in round-robin order.
    ready: VecDeque<Token>,
    /// Connections with output to write.
    dirty: Vec<Token>,
    /// Connections that closed, for the core to learn of first.
    gone: VecDeque<ClientId>,
    next_token: usize,
    next_client: u64,
    read_buf: Box<[u8]>,
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
    /// instead of a bare EACCES. The listener is registered in `registry` as `first_token`;
    /// connections take the tokens above it, so the caller's own tokens must be below.
    pub fn bind(
        path: &Path,
        policy: AccessPolicy,
        registry: &Registry,
        first_token: usize,
    ) -> io::Result<ControlServer> {
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
        let listener_token = Token(first_token);
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener,
            listener_token,
            policy,
            sessions: HashMap::new(),
            by_client: HashMap::new(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            gone: VecDeque::new(),
            next_token: first_token + 1,
            next_client: 1,
            read_buf: vec![0u8; READ_CHUNK_BYTES].into_boxed_slice(),
        })
    }

    /// Whether `token` is the listener's or a connection's.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.listener_token.0
    }

    /// Takes a readiness event of one of [`ControlServer::owns`]'s tokens.
    pub fn on_event(&mut self, registry: &Registry, event: &Event) {
        let token = event.token();
        if token == self.listener_token {
            self.accept_all(registry);
            return;
        }
        let Some(session) = self.sessions.get_mut(&token) else {
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            session.readable = true;
            if session.has_input() && !session.queued {
                session.queued = true;
                self.ready.push_back(token);
            }
        }
        if event.is_writable() && session.out_bytes() > 0 && !session.dirty {
            session.dirty = true;
            self.dirty.push(token);
        }
    }

    /// Whether [`ControlServer::next_input`] has something without waiting for the socket.
    pub fn has_input(&self) -> bool {
        !self.ready.is_empty() || !self.gone.is_empty()
    }

    /// The next request or departure, round-robin over the connections with input.
    pub fn next_input(&mut self, registry: &Registry) -> Option<Input> {
        if let Some(client) = self.gone.pop_front() {
            return Some(Input::Gone { client });
        }
        while let Some(token) = self.ready.pop_front() {
            let Some(session) = self.sessions.get_mut(&token) else {
                continue;
            };
            session.queued = false;
            if session.paused() {
                // `flush` queues it again once the client has read enough.
                continue;
            }
            if session.pending.is_empty() && session.readable && !session.closing {
                let closed = read_into(session, &mut self.read_buf);
                if closed {
                    self.drop_session(registry, token);
                    return self.gone.pop_front().map(|client| Input::Gone { client });
                }
            }
            let Some(session) = self.sessions.get_mut(&token) else {
                continue;
            };
            if session.closing && !session.dirty {
                session.dirty = true;
                self.dirty.push(token);
            }
            let Some(msg) = session.pending.pop_front() else {
                continue;
            };
            if session.has_input() {
                session.queued = true;
                self.ready.push_back(token);
            }
            let client = session.client;
            let creds = session.creds;
            if let Some(detail) = refusal(&self.policy, session, &msg) {
                queue_frame(
                    session,
                    &DaemonMessage::Reply {
                        request_id: msg.request_id,
                        result: Err(ErrorReply::PermissionDenied { detail }),
                    },
                );
                mark_dirty(&mut self.dirty, token, session);
                continue;
            }
            return Some(Input::Request { client, creds, msg });
        }
        None
    }

    /// Puts back a request [`ControlServer::next_input`] handed out, to be handed out again
    /// first for its connection (the core could not take it yet).
    pub fn put_back(&mut self, client: ClientId, msg: ClientMessage) {
        let Some(&token) = self.by_client.get(&client) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&token) {
            session.pending.push_front(msg);
            if !session.queued {
                session.queued = true;
                self.ready.push_front(token);
            }
        }
    }

    /// Queues a reply or event for a connection (written by [`ControlServer::flush`]).
    pub fn send(&mut self, client: ClientId, msg: &DaemonMessage) {
        match encode_frame(msg) {
            Ok(frame) => self.send_frame(client, &frame),
            Err(e) => tracing::error!("control socket: cannot encode a message: {e}"),
        }
    }

    /// Queues an already encoded frame for a connection.
    pub fn send_frame(&mut self, client: ClientId, frame: &[u8]) {
        let Some(&token) = self.by_client.get(&client) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&token) {
            session.out.extend_from_slice(frame);
            mark_dirty(&mut self.dirty, token, session);
        }
    }

    /// Writes every connection's queued output that its socket takes now; closes connections
    /// that are broken, done, or do not read (more than [`OUTBOX_BYTES_MAX`] waiting).
    pub fn flush(&mut self, registry: &Registry) {
        let dirty = std::mem::take(&mut self.dirty);
        for token in dirty {
            let Some(session) = self.sessions.get_mut(&token) else {
                continue;
            };
            session.dirty = false;
            let broken = write_out(session);
            let stuck = session.out_bytes() > OUTBOX_BYTES_MAX;
            if stuck {
                tracing::warn!(
                    "control socket: client pid {} does not read its messages ({} bytes waiting); closing it",
                    session.creds.pid,
                    session.out_bytes()
                );
            }
            let done = session.closing && session.out_bytes() == 0;
            if broken || stuck || done {
                self.drop_session(registry, token);
            } else if session.has_input() && !session.queued {
                // Output drained below the pause mark: its requests are read again.
                session.queued = true;
                self.ready.push_back(token);
            }
        }
    }

    /// Removes the socket file (the connections close with the server).
    pub fn remove_socket_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    fn accept_all(&mut self, registry: &Registry) {
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
                    if let Err(e) = registry.register(
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
                        client,
                        stream,
                        creds,
                        access,
                        reader: FrameReader::new(),
                        pending: VecDeque::new(),
                        readable: false,
                        queued: false,
                        out: Vec::new(),
                        out_pos: 0,
                        dirty: false,
                        closing: false,
                    };
                    if self.sessions.len() >= CLIENTS_MAX {
                        queue_frame(
                            &mut session,
                            &DaemonMessage::Reply {
                                request_id: 0,
                                result: Err(ErrorReply::Failed {
                                    detail: format!("too many clients (limit {CLIENTS_MAX})"),
                                }),
                            },
                        );
                        session.closing = true;
                        mark_dirty(&mut self.dirty, token, &mut session);
                    }
                    self.sessions.insert(token, session);
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

    fn drop_session(&mut self, registry: &Registry, token: Token) {
        if let Some(mut session) = self.sessions.remove(&token) {
            let _ = registry.deregister(&mut session.stream);
            self.by_client.remove(&session.client);
            self.gone.push_back(session.client);
        }
    }
}

/// Why `msg` is refused to `session`, if it is.
fn refusal(policy: &AccessPolicy, session: &Session, msg: &ClientMessage) -> Option<String> {
    match session.access {
        Access::None => Some(format!(
            "uid {} gid {} may not use the totemd control socket (root only{})",
            session.creds.uid,
            session.creds.gid,
            policy.describe_read_group()
        )),
        Access::ReadOnly if msg.request.is_mutating() => Some(format!(
            "uid {} may only read cluster status; this request needs root",
            session.creds.uid
        )),
        _ => None,
    }
}

/// Reads one chunk and decodes its complete frames into `session.pending`; `true` when the
/// connection is closed or broken. A frame error queues an error reply and closes the
/// connection once that is written.
fn read_into(session: &mut Session, buf: &mut [u8]) -> bool {
    loop {
        match session.stream.read(buf) {
            Ok(0) => return true,
            Ok(n) => {
                if let Err(e) = feed_frames(session, &buf[..n]) {
                    queue_frame(
                        session,
                        &DaemonMessage::Reply {
                            request_id: 0,
                            result: Err(frame_error_reply(&e)),
                        },
                    );
                    session.closing = true;
                }
                if n < buf.len() {
                    // A short read: the socket is most likely empty now, and the next edge
                    // says when it is not; saves a read that would say `WouldBlock`.
                    session.readable = false;
                }
                return false;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                session.readable = false;
                return false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Writes what the socket takes now; `true` when the connection is broken.
fn write_out(session: &mut Session) -> bool {
    while session.out_pos < session.out.len() {
        match session.stream.write(&session.out[session.out_pos..]) {
            Ok(0) => return true,
            Ok(n) => session.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    if session.out_pos == session.out.len() {
        session.out.clear();
        session.out_pos = 0;
    } else if session.out_pos >= session.out.len() / 2 {
        session.out.drain(..session.out_pos);
        session.out_pos = 0;
    }
    false
}

fn mark_dirty(dirty: &mut Vec<Token>, token: Token, session: &mut Session) {
    if !session.dirty {
        session.dirty = true;
        dirty.push(token);
    }
}

fn queue_frame(session: &mut Session, msg: &DaemonMessage) {
    match encode_frame(msg) {
        Ok(frame) => session.out.extend_from_slice(&frame),
        Err(e) => tracing::error!("control socket: cannot encode a reply: {e}"),
    }
}

fn feed_frames(session: &mut Session, mut input: &[u8]) -> Result<(), FrameError> {
    while !input.is_empty() {
        let (taken, frame) = session.reader.feed(input)?;
        input = &input[taken..];
        if let Some(frame) = frame {
            session.pending.push_back(frame.decode::<ClientMessage>()?);
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
