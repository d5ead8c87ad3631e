//! [`Client`]: a connection to the local totemd over its control socket — what libcpg and
//! libvotequorum are to corosync. Blocking calls; events that arrive while waiting for a reply are
//! queued and handed out by [`Client::next_event`].

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::{
    encode_frame, ClientMessage, DaemonMessage, ErrorReply, Event, FillError, FrameError,
    FrameReader, GroupName, JoinOptions, LinksStatus, Membership, NodeId, Ordering, QuorumStatus,
    Request, Response, MAX_MULTICAST_PAYLOAD_BYTES,
};

/// Control socket path when neither `--socket` nor [`SOCKET_ENV`] says otherwise (DESIGN.md
/// "Daemon"; issue 5: defaults under /run/totemd).
pub const DEFAULT_SOCKET_PATH: &str = "/run/totemd/totemd.sock";

/// Environment variable naming the control socket (issue 5).
pub const SOCKET_ENV: &str = "TOTEMD_SOCKET";

/// The socket path to use: `explicit` if given, else [`SOCKET_ENV`] if set and not empty, else
/// [`DEFAULT_SOCKET_PATH`].
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_SOCKET_PATH),
    }
}

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket: the daemon is not running (or the path is wrong).
    #[error("cannot connect to totemd at {}: {source} - is totemd running?", path.display())]
    NotRunning {
        /// Socket path tried.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// The socket exists but connecting failed otherwise (permissions, for one).
    #[error("cannot connect to totemd at {}: {source}", path.display())]
    Connect {
        /// Socket path tried.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("control socket I/O: {0}")]
    Io(#[from] io::Error),
    /// A frame could not be encoded or the daemon sent an invalid one.
    #[error("control protocol: {0}")]
    Protocol(#[from] FrameError),
    /// The daemon closed the connection.
    #[error("totemd closed the connection")]
    Closed,
    /// The daemon refused the request. [`ErrorReply::TryAgain`] is back-pressure: retry later.
    #[error(transparent)]
    Daemon(#[from] ErrorReply),
    /// The daemon answered with a response of the wrong kind.
    #[error("unexpected response from totemd: {0}")]
    UnexpectedResponse(&'static str),
    /// The multicast payload is larger than the protocol allows.
    #[error("multicast payload of {0} bytes exceeds the limit of {MAX_MULTICAST_PAYLOAD_BYTES}")]
    PayloadTooLarge(usize),
}

impl ClientError {
    /// Whether the daemon asked to retry later (back-pressure), as corosync's `CS_ERR_TRY_AGAIN`.
    pub fn is_try_again(&self) -> bool {
        matches!(self, ClientError::Daemon(ErrorReply::TryAgain))
    }

    /// Whether a multicast was refused because the local node is not quorate and the group was
    /// joined with [`JoinOptions::require_quorum`]: nothing was sent; retry once quorate.
    pub fn is_no_quorum(&self) -> bool {
        matches!(self, ClientError::Daemon(ErrorReply::NoQuorum))
    }
}

impl From<FillError> for ClientError {
    fn from(error: FillError) -> ClientError {
        match error {
            FillError::Io(error) => ClientError::Io(error),
            FillError::Frame(error) => ClientError::Protocol(error),
            FillError::UnexpectedEof { .. } => ClientError::Closed,
        }
    }
}

/// A connection to totemd.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    reader: FrameReader,
    next_request_id: u32,
    events: VecDeque<Event>,
}

impl Client {
    /// Connects to the daemon's control socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| {
            let path = path.to_owned();
            match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning { path, source }
                }
                _ => ClientError::Connect { path, source },
            }
        })?;
        Ok(Client {
            stream,
            reader: FrameReader::new(),
            next_request_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Connects to the socket [`socket_path`] finds.
    pub fn connect_default() -> Result<Client, ClientError> {
        Client::connect(socket_path(None))
    }

    /// Sends `request` and waits for its reply; events arriving meanwhile are queued.
    pub fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        let frame = encode_frame(&ClientMessage {
            request_id,
            request,
        })?;
        self.stream.write_all(&frame)?;
        self.stream.set_read_timeout(None)?;
        loop {
            match self.read_message()? {
                DaemonMessage::Reply {
                    request_id: answered,
                    result,
                } if answered == request_id => return Ok(result?),
                // A reply to no request of ours can only be the daemon refusing a frame it could
                // not decode (id 0); surface its error.
                DaemonMessage::Reply {
                    result: Err(error), ..
                } => return Err(ClientError::Daemon(error)),
                DaemonMessage::Reply { .. } => {
                    return Err(ClientError::UnexpectedResponse("reply to another request"))
                }
                DaemonMessage::Event(event) => self.events.push_back(event),
            }
        }
    }

    /// The quorum status snapshot (`pvecm status`).
    pub fn status(&mut self) -> Result<QuorumStatus, ClientError> {
        match self.request(Request::Status)? {
            Response::Status(status) => Ok(status),
            _ => Err(ClientError::UnexpectedResponse("expected a status")),
        }
    }

    /// The current membership (`pvecm nodes`).
    pub fn nodes(&mut self) -> Result<Membership, ClientError> {
        match self.request(Request::Nodes)? {
            Response::Nodes(membership) => Ok(membership),
            _ => Err(ClientError::UnexpectedResponse("expected a node list")),
        }
    }

    /// Link status towards every node (`pvecm links`).
    pub fn links(&mut self) -> Result<LinksStatus, ClientError> {
        match self.request(Request::Links)? {
            Response::Links(links) => Ok(links),
            _ => Err(ClientError::UnexpectedResponse("expected a link status")),
        }
    }

    /// Sets expected votes cluster-wide (`pvecm expected`).
    pub fn set_expected_votes(&mut self, expected: u32) -> Result<(), ClientError> {
        self.request_done(Request::SetExpectedVotes { expected })
    }

    /// Sets the votes of `node` (the local node when `None`).
    pub fn set_votes(&mut self, node: Option<NodeId>, votes: u32) -> Result<(), ClientError> {
        self.request_done(Request::SetVotes { node, votes })
    }

    /// Asks the daemon to reload its configuration file.
    pub fn reload_config(&mut self) -> Result<(), ClientError> {
        self.request_done(Request::ReloadConfig)
    }

    /// Joins `group` with corosync CPG's semantics (multicasts are sent with or without
    /// quorum); its membership changes and deliveries then arrive as events.
    pub fn join(&mut self, group: &GroupName) -> Result<(), ClientError> {
        self.join_with(group, JoinOptions::default())
    }

    /// Joins `group` with `options`; with [`JoinOptions::require_quorum`] this connection's
    /// multicasts to the group fail with [`ClientError::is_no_quorum`] while the local node is
    /// not quorate.
    pub fn join_with(
        &mut self,
        group: &GroupName,
        options: JoinOptions,
    ) -> Result<(), ClientError> {
        self.request_done(Request::JoinGroup {
            group: group.clone(),
            options,
        })
    }

    /// Leaves `group`.
    pub fn leave(&mut self, group: &GroupName) -> Result<(), ClientError> {
        self.request_done(Request::LeaveGroup {
            group: group.clone(),
        })
    }

    /// Multicasts `payload` to `group` with the given ordering. A [`ClientError::is_try_again`]
    /// error means the daemon's queue is full: nothing was sent, retry later. A
    /// [`ClientError::is_no_quorum`] error (only for a group joined with
    /// [`JoinOptions::require_quorum`]) means the local node is not quorate: nothing was sent,
    /// retry once a quorum event says quorate.
    pub fn multicast(
        &mut self,
        group: &GroupName,
        ordering: Ordering,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        if payload.len() > MAX_MULTICAST_PAYLOAD_BYTES {
            return Err(ClientError::PayloadTooLarge(payload.len()));
        }
        self.request_done(Request::Multicast {
            group: group.clone(),
            ordering,
            payload: payload.to_vec(),
        })
    }

    /// The next event: a queued one, else one read from the socket, waiting at most `timeout`
    /// (forever when `None`). `Ok(None)` when the timeout passed without an event.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        // A zero timeout means "block" to the socket; wait at least a microsecond instead.
        let timeout = timeout.map(|timeout| timeout.max(Duration::from_micros(1)));
        self.stream.set_read_timeout(timeout)?;
        let message = match self.read_message() {
            Ok(message) => message,
            Err(ClientError::Io(error))
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        match message {
            DaemonMessage::Event(event) => Ok(Some(event)),
            DaemonMessage::Reply { .. } => {
                Err(ClientError::UnexpectedResponse("reply without a request"))
            }
        }
    }

    /// Sends a request whose success answer is [`Response::Done`].
    fn request_done(&mut self, request: Request) -> Result<(), ClientError> {
        match self.request(request)? {
            Response::Done => Ok(()),
            _ => Err(ClientError::UnexpectedResponse(
                "expected an acknowledgement",
            )),
        }
    }

    /// Reads and decodes one message (keeping a partial frame across timeouts).
    fn read_message(&mut self) -> Result<DaemonMessage, ClientError> {
        let frame = self
            .reader
            .read_from(&mut self.stream)?
            .ok_or(ClientError::Closed)?;
        Ok(frame.decode()?)
    }
}
