//! A fake totemd control socket for tests: a real Unix socket, the real framing, canned status
//! snapshots and a one-node process-group service that orders multicasts under one lock.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use totem_client::proto::{
    encode_frame, ClientMessage, DaemonMessage, Delivery, ErrorReply, Event, FillError,
    FrameReader, GroupMember, GroupMembershipChange, GroupName, LeaveReason, LeftMember,
    MulticastRefused, QuorumChange, QuorumStatus, Request, Response, PROTOCOL_VERSION,
};

use super::snapshots::{self, State};

/// Node id the fake daemon runs as.
const LOCAL_NODE: u32 = 1;

/// One client connection known to the fake.
struct Connection {
    id: u32,
    writer: UnixStream,
    groups: Vec<GroupName>,
}

/// State shared by the connection threads.
struct Shared {
    state: State,
    status: QuorumStatus,
    /// While set, connection threads read nothing (Totem's queue is "full"): the clients'
    /// socket buffers fill, which is the real daemon's back-pressure.
    busy: bool,
    /// While set, every multicast is refused with this error.
    refuse: Option<ErrorReply>,
    connections: Vec<Connection>,
    next_connection: u32,
    requests_seen: Vec<Request>,
}

/// A fake daemon listening on a socket in a temporary directory.
pub struct FakeServer {
    /// The socket path.
    pub path: PathBuf,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    _dir: tempfile::TempDir,
}

impl FakeServer {
    /// Starts a fake daemon reporting `state`.
    pub fn start(state: State) -> FakeServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("totemd.sock");
        let listener = UnixListener::bind(&path).expect("bind fake socket");
        let shared = Arc::new((
            Mutex::new(Shared {
                state,
                status: snapshots::quorum_status(state),
                busy: false,
                refuse: None,
                connections: Vec::new(),
                next_connection: 1,
                requests_seen: Vec::new(),
            }),
            Condvar::new(),
        ));
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = Arc::clone(&accept_shared);
                thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeServer {
            path,
            shared,
            _dir: dir,
        }
    }

    /// Stops reading every connection while `busy` (back-pressure, as the daemon does when
    /// Totem's queue is full).
    pub fn set_busy(&self, busy: bool) {
        self.lock().busy = busy;
        self.shared.1.notify_all();
    }

    /// Refuses every multicast with `error` while set.
    pub fn set_refuse(&self, error: Option<ErrorReply>) {
        self.lock().refuse = error;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.0.lock().expect("fake state")
    }

    /// The requests received so far.
    pub fn requests_seen(&self) -> Vec<Request> {
        self.lock().requests_seen.clone()
    }

    /// Pushes a quorum change to every connection that joined a group.
    pub fn announce_quorum(&self, change: QuorumChange) {
        let mut shared = self.lock();
        let targets: Vec<u32> = shared
            .connections
            .iter()
            .filter(|connection| !connection.groups.is_empty())
            .map(|connection| connection.id)
            .collect();
        for target in targets {
            send(
                &mut shared,
                target,
                &DaemonMessage::Event(Event::Quorum(change.clone())),
            );
        }
    }

    /// The expected votes the fake holds now.
    pub fn expected_votes(&self) -> u32 {
        self.lock().status.expected_votes
    }
}

/// Serves one connection until it closes or sends garbage.
fn serve(stream: UnixStream, shared: &(Mutex<Shared>, Condvar)) {
    let (shared, not_busy) = shared;
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let id = {
        let mut shared = shared.lock().expect("fake state");
        let id = shared.next_connection;
        shared.next_connection += 1;
        shared.connections.push(Connection {
            id,
            writer,
            groups: Vec::new(),
        });
        id
    };
    let mut reader = FrameReader::new();
    let mut stream = stream;
    loop {
        let frame = match reader.read_from(&mut stream) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(FillError::Io(_)) | Err(FillError::UnexpectedEof { .. }) => break,
            Err(FillError::Frame(error)) => {
                let detail = error.to_string();
                let mut shared = shared.lock().expect("fake state");
                send(
                    &mut shared,
                    id,
                    &reply(0, Err(ErrorReply::BadRequest { detail })),
                );
                break;
            }
        };
        // A busy daemon takes nothing: the frame just read waits, and nothing more is read.
        let mut shared = not_busy
            .wait_while(shared.lock().expect("fake state"), |state| state.busy)
            .expect("fake state");
        if frame.version() != PROTOCOL_VERSION {
            let error = ErrorReply::VersionMismatch {
                daemon: PROTOCOL_VERSION,
                client: frame.version(),
            };
            send(&mut shared, id, &reply(0, Err(error)));
            continue;
        }
        match frame.decode::<ClientMessage>() {
            Ok(message) => handle(&mut shared, id, message),
            Err(error) => {
                let detail = error.to_string();
                send(
                    &mut shared,
                    id,
                    &reply(0, Err(ErrorReply::BadRequest { detail })),
                );
            }
        }
    }
    let mut shared = shared.lock().expect("fake state");
    let groups = shared
        .connections
        .iter()
        .find(|connection| connection.id == id)
        .map(|connection| connection.groups.clone())
        .unwrap_or_default();
    shared.connections.retain(|connection| connection.id != id);
    for group in groups {
        announce(
            &mut shared,
            &group,
            None,
            Some((id, LeaveReason::ProcessDown)),
        );
    }
}

/// Answers one request, then pushes the events it causes.
fn handle(shared: &mut Shared, id: u32, message: ClientMessage) {
    let ClientMessage {
        request_id,
        request,
    } = message;
    shared.requests_seen.push(request.clone());
    match request {
        Request::Status => {
            let status = shared.status.clone();
            send(shared, id, &reply(request_id, Ok(Response::Status(status))));
        }
        Request::Nodes => {
            let membership = shared.status.membership.clone();
            send(
                shared,
                id,
                &reply(request_id, Ok(Response::Nodes(membership))),
            );
        }
        Request::Links => {
            let links = snapshots::links_status(shared.state);
            send(shared, id, &reply(request_id, Ok(Response::Links(links))));
        }
        Request::SetExpectedVotes { expected } => {
            // corosync's check (REFERENCE.md §3.3): never below the votes present.
            let result = if expected < shared.status.total_votes {
                Err(ErrorReply::InvalidParam {
                    detail: format!(
                        "expected votes {expected} below total votes {}",
                        shared.status.total_votes
                    ),
                })
            } else {
                shared.status.expected_votes = expected;
                Ok(Response::Done)
            };
            send(shared, id, &reply(request_id, result));
        }
        Request::SetVotes { .. } | Request::ReloadConfig | Request::ChangeConfig(_) => {
            send(shared, id, &reply(request_id, Ok(Response::Done)));
        }
        Request::JoinGroup { group, .. } => {
            let joined = connection(shared, id).map(|connection| {
                let fresh = !connection.groups.contains(&group);
                if fresh {
                    connection.groups.push(group.clone());
                }
                fresh
            });
            if joined != Some(true) {
                let detail = format!("already a member of {group}");
                send(
                    shared,
                    id,
                    &reply(request_id, Err(ErrorReply::BadRequest { detail })),
                );
                return;
            }
            send(shared, id, &reply(request_id, Ok(Response::Done)));
            announce(shared, &group, Some(id), None);
        }
        Request::LeaveGroup { group } => {
            let left = connection(shared, id).is_some_and(|connection| {
                let before = connection.groups.len();
                connection.groups.retain(|joined| *joined != group);
                connection.groups.len() != before
            });
            if !left {
                let detail = format!("not a member of {group}");
                send(
                    shared,
                    id,
                    &reply(request_id, Err(ErrorReply::BadRequest { detail })),
                );
                return;
            }
            send(shared, id, &reply(request_id, Ok(Response::Done)));
            announce(shared, &group, None, Some((id, LeaveReason::Left)));
        }
        Request::Multicast {
            group,
            ordering,
            payload,
        } => {
            // Posted: no answer unless refused.
            let refusal = match shared.refuse.clone() {
                Some(error) => Some(error),
                None if !connection(shared, id)
                    .is_some_and(|connection| connection.groups.contains(&group)) =>
                {
                    Some(ErrorReply::InvalidParam {
                        detail: format!("not a member of {group}"),
                    })
                }
                None => None,
            };
            if let Some(error) = refusal {
                let refused = MulticastRefused {
                    request_id,
                    group,
                    error,
                };
                send(
                    shared,
                    id,
                    &DaemonMessage::Event(Event::MulticastRefused(refused)),
                );
                return;
            }
            let delivery = Event::Delivery(Delivery {
                group: group.clone(),
                sender: member(id),
                ring_id: shared.status.ring_id,
                ordering,
                payload,
            });
            for target in members_of(shared, &group) {
                send(shared, target, &DaemonMessage::Event(delivery.clone()));
            }
        }
    }
}

/// Tells every member of `group` that `joined` joined or `left` left.
fn announce(
    shared: &mut Shared,
    group: &GroupName,
    joined: Option<u32>,
    left: Option<(u32, LeaveReason)>,
) {
    let targets = members_of(shared, group);
    let change = Event::GroupMembership(GroupMembershipChange {
        group: group.clone(),
        ring_id: shared.status.ring_id,
        members: targets.iter().copied().map(member).collect(),
        joined: joined.into_iter().map(member).collect(),
        left: left
            .into_iter()
            .map(|(id, reason)| LeftMember {
                member: member(id),
                reason,
            })
            .collect(),
    });
    for target in targets {
        send(shared, target, &DaemonMessage::Event(change.clone()));
    }
}

/// Connections that joined `group`, in connection order.
fn members_of(shared: &Shared, group: &GroupName) -> Vec<u32> {
    shared
        .connections
        .iter()
        .filter(|connection| connection.groups.contains(group))
        .map(|connection| connection.id)
        .collect()
}

/// The group member a connection stands for (the connection id plays the pid).
fn member(id: u32) -> GroupMember {
    GroupMember {
        node: LOCAL_NODE,
        pid: id,
    }
}

fn connection(shared: &mut Shared, id: u32) -> Option<&mut Connection> {
    shared
        .connections
        .iter_mut()
        .find(|connection| connection.id == id)
}

fn reply(request_id: u32, result: Result<Response, ErrorReply>) -> DaemonMessage {
    DaemonMessage::Reply { request_id, result }
}

/// Writes `message` to connection `id` (a closed peer is ignored).
fn send(shared: &mut Shared, id: u32, message: &DaemonMessage) {
    let frame = encode_frame(message).expect("encodable reply");
    if let Some(connection) = connection(shared, id) {
        let _ = connection.writer.write_all(&frame);
    }
}
