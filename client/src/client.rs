//! [`Client`]: a connection to the local totemd over its control socket — what libcpg and
//! libvotequorum are to corosync.
//!
//! Requests (status, join, leave, ...) wait for their reply; events that arrive meanwhile are
//! queued and handed out by [`Client::next_event`]. Multicasts are posted: [`Client::multicast`]
//! returns once the message is written to the socket, without a round trip, so a sender streams
//! as fast as the daemon takes messages; a refusal arrives later as
//! [`Event::MulticastRefused`] with the id `multicast` returned.
//!
//! The socket is non-blocking underneath and every wait is one `ppoll(2)` with a nanosecond
//! timeout, so [`Client::next_event`] with a 100 µs timeout waits 100 µs, not a scheduler tick.
//! Applications with their own event loop poll [`Client::as_raw_fd`] for readability (and for
//! writability while [`Client::wants_write`]) and call [`Client::try_next_event`] /
//! [`Client::try_multicast`] / [`Client::flush`].

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;

use crate::proto::{
    decode_frame, encode_frame, ClientMessage, DaemonMessage, ErrorReply, Event, FrameError,
    GroupName, JoinOptions, LinksStatus, Membership, MulticastRef, NodeId, Ordering, QuorumStatus,
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
    /// A multicast to a group this connection has not joined.
    #[error("not a member of group {0}; join it first")]
    NotJoined(GroupName),
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

/// Bytes asked of the socket per read: deliveries arrive in batches, so one read takes many.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The id the daemon echoes for a request; for a posted multicast, the id a
/// [`Event::MulticastRefused`] names.
pub type RequestId = u32;

/// A connection to totemd.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    /// Bytes read and not yet decoded: `inbuf[in_pos..in_end]`; the rest of `inbuf` is room for
    /// the next read (zeroed once when the buffer grows, not before every read).
    inbuf: Vec<u8>,
    in_pos: usize,
    in_end: usize,
    /// Bytes accepted but not yet written: `outbuf[out_pos..]`.
    outbuf: Vec<u8>,
    out_pos: usize,
    next_request_id: RequestId,
    events: VecDeque<Event>,
    /// Groups this connection joined, with their options (a multicast elsewhere is refused
    /// here, at once).
    joined: BTreeMap<GroupName, JoinOptions>,
    /// Quorum as the last quorum event read from the socket said (`None` before the first).
    quorate: Option<bool>,
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
        stream.set_nonblocking(true)?;
        Ok(Client {
            stream,
            inbuf: vec![0; READ_CHUNK_BYTES],
            in_pos: 0,
            in_end: 0,
            outbuf: Vec::new(),
            out_pos: 0,
            next_request_id: 1,
            events: VecDeque::new(),
            joined: BTreeMap::new(),
            quorate: None,
        })
    }

    /// Connects to the socket [`socket_path`] finds.
    pub fn connect_default() -> Result<Client, ClientError> {
        Client::connect(socket_path(None))
    }

    /// Sends `request` and waits for its reply; events arriving meanwhile are queued.
    pub fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let request_id = self.take_request_id();
        let frame = encode_frame(&ClientMessage {
            request_id,
            request,
        })?;
        self.outbuf.extend_from_slice(&frame);
        self.flush()?;
        loop {
            while let Some(message) = self.decode_one()? {
                match message {
                    DaemonMessage::Reply {
                        request_id: answered,
                        result,
                    } if answered == request_id => return Ok(result?),
                    // A reply to no request of ours can only be the daemon refusing a frame it
                    // could not decode (id 0); surface its error.
                    DaemonMessage::Reply {
                        result: Err(error), ..
                    } => return Err(ClientError::Daemon(error)),
                    DaemonMessage::Reply { .. } => {
                        return Err(ClientError::UnexpectedResponse("reply to another request"))
                    }
                    DaemonMessage::Event(event) => self.events.push_back(event),
                }
            }
            self.wait(true, false, None)?;
            self.read_some()?;
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
        })?;
        self.joined.insert(group.clone(), options);
        Ok(())
    }

    /// Leaves `group`.
    pub fn leave(&mut self, group: &GroupName) -> Result<(), ClientError> {
        self.request_done(Request::LeaveGroup {
            group: group.clone(),
        })?;
        self.joined.remove(group);
        Ok(())
    }

    /// Multicasts `payload` to `group` with the given ordering, waiting while the daemon does
    /// not take more (back-pressure: Totem's queue is full). Returns once the message is
    /// written to the socket, with the request id a later [`Event::MulticastRefused`] would
    /// name. Events arriving while it waits are queued for [`Client::next_event`].
    ///
    /// For a group joined with [`JoinOptions::require_quorum`], a [`ClientError::is_no_quorum`]
    /// error means the last quorum event this client read said not quorate: nothing was sent,
    /// retry once a quorum event says quorate. A quorum loss the client has not read yet is
    /// caught by the daemon: the message comes back as [`Event::MulticastRefused`] with
    /// `ErrorReply::NoQuorum`.
    pub fn multicast(
        &mut self,
        group: &GroupName,
        ordering: Ordering,
        payload: &[u8],
    ) -> Result<RequestId, ClientError> {
        self.flush()?;
        let request_id = self.queue_multicast(group, ordering, payload)?;
        self.flush()?;
        Ok(request_id)
    }

    /// [`Client::multicast`] without waiting: `TryAgain` ([`ClientError::is_try_again`]) when
    /// the daemon is not taking messages now, and then nothing was queued. A message it accepts
    /// may still sit partly in this client's buffer; every later call, and [`Client::flush`],
    /// writes it out (poll for writability while [`Client::wants_write`]).
    pub fn try_multicast(
        &mut self,
        group: &GroupName,
        ordering: Ordering,
        payload: &[u8],
    ) -> Result<RequestId, ClientError> {
        if !self.write_some()? {
            return Err(ClientError::Daemon(ErrorReply::TryAgain));
        }
        let request_id = self.queue_multicast(group, ordering, payload)?;
        self.write_some()?;
        Ok(request_id)
    }

    /// The next event: a queued one, else one read from the socket, waiting at most `timeout`
    /// (forever when `None`). `Ok(None)` when the timeout passed without an event. Pending
    /// output is written meanwhile.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(event) = self.try_next_event()? {
                return Ok(Some(event));
            }
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            self.wait(true, self.wants_write(), remaining)?;
        }
    }

    /// The next event if one is queued or can be read without waiting; writes pending output.
    pub fn try_next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        self.write_some()?;
        loop {
            if let Some(message) = self.decode_one()? {
                return match message {
                    DaemonMessage::Event(event) => Ok(Some(event)),
                    DaemonMessage::Reply { .. } => {
                        Err(ClientError::UnexpectedResponse("reply without a request"))
                    }
                };
            }
            if self.read_some()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Writes out everything accepted so far, waiting as long as needed; events arriving
    /// meanwhile are queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        while !self.write_some()? {
            self.wait(true, true, None)?;
            // Keep reading while the daemon is not taking our bytes, so that it can always
            // write its deliveries to us (neither side then waits on the other).
            self.read_some()?;
            while let Some(message) = self.decode_one()? {
                match message {
                    DaemonMessage::Event(event) => self.events.push_back(event),
                    DaemonMessage::Reply { .. } => {
                        return Err(ClientError::UnexpectedResponse("reply without a request"))
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether accepted output still waits to be written (then poll the descriptor for
    /// writability too and call [`Client::flush`] or [`Client::try_next_event`]).
    pub fn wants_write(&self) -> bool {
        self.out_pos < self.outbuf.len()
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

    fn take_request_id(&mut self) -> RequestId {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        id
    }

    /// Checks and encodes a multicast into the output buffer.
    fn queue_multicast(
        &mut self,
        group: &GroupName,
        ordering: Ordering,
        payload: &[u8],
    ) -> Result<RequestId, ClientError> {
        if payload.len() > MAX_MULTICAST_PAYLOAD_BYTES {
            return Err(ClientError::PayloadTooLarge(payload.len()));
        }
        let Some(options) = self.joined.get(group) else {
            return Err(ClientError::NotJoined(group.clone()));
        };
        if options.require_quorum && self.quorate == Some(false) {
            return Err(ClientError::Daemon(ErrorReply::NoQuorum));
        }
        let request_id = self.take_request_id();
        let frame = encode_frame(&MulticastRef {
            request_id,
            group,
            ordering,
            payload,
        })?;
        self.outbuf.extend_from_slice(&frame);
        Ok(request_id)
    }

    /// Writes what the socket takes now; `true` when nothing is left to write.
    fn write_some(&mut self) -> Result<bool, ClientError> {
        while self.out_pos < self.outbuf.len() {
            match self.stream.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(ClientError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
        self.outbuf.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Reads what the socket has now into the input buffer; the byte count (0: nothing now).
    fn read_some(&mut self) -> Result<usize, ClientError> {
        if self.in_pos > 0 {
            // Keep only the undecoded tail (usually part of one frame), at the front.
            self.inbuf.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        if self.inbuf.len() - self.in_end < READ_CHUNK_BYTES {
            // A frame longer than the buffer is on its way (the length prefix was checked
            // against the protocol's limit when it was decoded as truncated).
            self.inbuf.resize(self.in_end + READ_CHUNK_BYTES, 0);
        }
        loop {
            match self.stream.read(&mut self.inbuf[self.in_end..]) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => {
                    self.in_end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decodes the next complete message of the input buffer, if there is one. The length
    /// prefix is checked against the protocol's limit before the buffer grows for the body.
    fn decode_one(&mut self) -> Result<Option<DaemonMessage>, ClientError> {
        match decode_frame::<DaemonMessage>(&self.inbuf[self.in_pos..self.in_end]) {
            Ok((message, used)) => {
                self.in_pos += used;
                if let DaemonMessage::Event(Event::Quorum(change)) = &message {
                    self.quorate = Some(change.quorate);
                }
                Ok(Some(message))
            }
            Err(FrameError::Truncated { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Waits until the socket is readable (`read`) or writable (`write`), or `timeout` passes.
    fn wait(&self, read: bool, write: bool, timeout: Option<Duration>) -> Result<(), ClientError> {
        let mut flags = PollFlags::empty();
        if read {
            flags |= PollFlags::POLLIN;
        }
        if write {
            flags |= PollFlags::POLLOUT;
        }
        let mut fds = [PollFd::new(self.stream.as_fd(), flags)];
        let timeout = timeout.map(TimeSpec::from_duration);
        match nix::poll::ppoll(&mut fds, timeout, None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(errno) => Err(ClientError::Io(errno.into())),
        }
    }
}

impl AsRawFd for Client {
    /// The control socket, for an application's own poll loop.
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl Drop for Client {
    /// Writes out accepted multicasts before the connection closes (bounded: a daemon that
    /// stopped reading cannot hold the application forever).
    fn drop(&mut self) {
        let deadline = Instant::now() + DROP_FLUSH_WITHIN;
        while let Ok(false) = self.write_some() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            if self.wait(false, true, Some(left)).is_err() {
                return;
            }
        }
    }
}

/// How long dropping a client waits to write out accepted multicasts.
const DROP_FLUSH_WITHIN: Duration = Duration::from_secs(5);
