//! Load: one client thread per node that joins a group with `require_quorum`, multicasts numbered
//! messages and records every delivery and membership event it sees, in order. Multicasts are
//! posted (no answer unless refused), so a client keeps one message in flight: it sends the next
//! once its own delivery of the last came back. A multicast refused for lack of quorum (by the
//! client library at once, or by the daemon later as a `MulticastRefused` event) is counted as
//! blocked and retried later with the same number.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use totem_client::proto::{ErrorReply, Event, GroupName, JoinOptions, Ordering, RingId};
use totem_client::Client;

use crate::common;

/// Group every load client joins.
pub const GROUP: &str = "netns-load";

/// Pause between two multicasts of one client: about 200 messages/s per node, enough to keep the
/// ring busy through every transition without starving the 2-core CI machine.
const SEND_INTERVAL: Duration = Duration::from_millis(5);

/// Pause before retrying a multicast refused for lack of quorum.
const RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// How every load client joins [`GROUP`]: sends are refused while its node is not quorate.
const JOIN: JoinOptions = JoinOptions {
    require_quorum: true,
};

/// Quiet time after which the logs count as settled at the end of a scenario.
/// Generous: an idle ring may hold the token (corosync's `hold`, REFERENCE.md §2.1) before the
/// retransmission a receiver still needs.
const SETTLE: Duration = Duration::from_millis(2500);

/// Bound on every load client seeing all the others join the group.
const JOIN_WITHIN: Duration = Duration::from_secs(20);

/// A message's identity: the sending node, its client incarnation (a restarted node's client
/// starts over) and the sequence number within that incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    pub node: u32,
    pub incarnation: u32,
    pub seq: u64,
}

impl MsgId {
    fn encode(&self) -> Vec<u8> {
        format!("{}:{}:{}", self.node, self.incarnation, self.seq).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<MsgId> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        let id = MsgId {
            node: parts.next()?.parse().ok()?,
            incarnation: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(id)
    }
}

/// What one client saw, in the order it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A message of the load group, ordered in `ring`.
    Deliver { ring: RingId, msg: MsgId },
    /// The node membership or quorum changed (a new configuration).
    Config {
        ring: RingId,
        members: Vec<u32>,
        quorate: bool,
        /// Own multicasts the daemon had accepted when the client logged this entry.
        sent: u64,
    },
}

/// One load client, running on its own thread.
pub struct Worker {
    /// Node the client is attached to.
    pub node: u32,
    /// The client's incarnation (see [`MsgId`]).
    pub incarnation: u32,
    log: Arc<Mutex<Vec<Entry>>>,
    sent: Arc<AtomicU64>,
    blocked: Arc<AtomicU64>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    group_size: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl Worker {
    /// Connects to `sock`, joins [`GROUP`] and, when `send` is set, starts sending.
    pub fn start(node: u32, incarnation: u32, sock: PathBuf, send: bool) -> Worker {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let blocked = Arc::new(AtomicU64::new(0));
        let sending = Arc::new(AtomicBool::new(send));
        let stop = Arc::new(AtomicBool::new(false));
        let group_size = Arc::new(AtomicU64::new(0));
        let mut client = common::connect(&sock, String::new);
        let group = GroupName::new(GROUP).expect("group name");
        client.join_with(&group, JOIN).expect("join");
        let flags = Flags {
            sent: sent.clone(),
            blocked: blocked.clone(),
            sending: sending.clone(),
            stop: stop.clone(),
            group_size: group_size.clone(),
        };
        let l = log.clone();
        let handle = std::thread::spawn(move || {
            run(client, group, node, incarnation, &l, &flags).map_err(|e| e.to_string())
        });
        Worker {
            node,
            incarnation,
            log,
            sent,
            blocked,
            sending,
            stop,
            group_size,
            handle: Some(handle),
        }
    }

    /// Multicasts the daemon refused because the node was not quorate (each retried later).
    pub fn blocked(&self) -> u64 {
        self.blocked.load(AtomicOrdering::SeqCst)
    }

    /// Messages the daemon accepted so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(AtomicOrdering::SeqCst)
    }

    /// Processes in the group in the last membership change this client saw.
    pub fn group_size(&self) -> u64 {
        self.group_size.load(AtomicOrdering::SeqCst)
    }

    /// Starts sending.
    pub fn resume(&self) {
        self.sending.store(true, AtomicOrdering::SeqCst);
    }

    /// Stops sending; the client keeps recording.
    pub fn pause(&self) {
        self.sending.store(false, AtomicOrdering::SeqCst);
    }

    /// A copy of the log so far.
    pub fn log(&self) -> Vec<Entry> {
        self.log.lock().expect("log lock").clone()
    }

    /// How many of this client's own messages it has delivered so far.
    pub fn self_delivered(&self) -> u64 {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|e| {
                matches!(e, Entry::Deliver { msg, .. }
                    if msg.node == self.node && msg.incarnation == self.incarnation)
            })
            .count() as u64
    }

    /// Stops the thread; returns the log and how the client ended (Err when its connection broke,
    /// as it must when its daemon is killed).
    pub fn finish(mut self) -> (Vec<Entry>, Result<(), String>) {
        self.stop.store(true, AtomicOrdering::SeqCst);
        let result = self
            .handle
            .take()
            .map(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .unwrap_or(Ok(()));
        (self.log(), result)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, AtomicOrdering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a worker thread shares with its [`Worker`].
struct Flags {
    sent: Arc<AtomicU64>,
    blocked: Arc<AtomicU64>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    group_size: Arc<AtomicU64>,
}

fn run(
    mut client: Client,
    group: GroupName,
    node: u32,
    incarnation: u32,
    log: &Mutex<Vec<Entry>>,
    flags: &Flags,
) -> Result<(), totem_client::ClientError> {
    let Flags {
        sent,
        blocked,
        sending,
        stop,
        group_size,
    } = flags;
    let mut next_send = Instant::now();
    // The posted multicast whose own delivery (or refusal) has not come back: (seq, request id).
    let mut in_flight: Option<(u64, u32)> = None;
    while !stop.load(AtomicOrdering::SeqCst) {
        if in_flight.is_none()
            && sending.load(AtomicOrdering::SeqCst)
            && Instant::now() >= next_send
        {
            let msg = MsgId {
                node,
                incarnation,
                seq: sent.load(AtomicOrdering::SeqCst),
            };
            match client.multicast(&group, Ordering::Agreed, &msg.encode()) {
                Ok(request_id) => {
                    sent.fetch_add(1, AtomicOrdering::SeqCst);
                    in_flight = Some((msg.seq, request_id));
                }
                Err(e) if e.is_no_quorum() => {
                    blocked.fetch_add(1, AtomicOrdering::SeqCst);
                    next_send = Instant::now() + RETRY_INTERVAL;
                }
                Err(e) => return Err(e),
            }
        }
        let wait = next_send
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if let Some(event) = client.next_event(Some(wait))? {
            let entry = match event {
                Event::Delivery(d) if d.group == group => match MsgId::decode(&d.payload) {
                    Some(msg) => {
                        let own = msg.node == node && msg.incarnation == incarnation;
                        if own && in_flight.is_some_and(|(seq, _)| seq == msg.seq) {
                            in_flight = None;
                            next_send = Instant::now() + SEND_INTERVAL;
                        }
                        Entry::Deliver {
                            ring: d.ring_id,
                            msg,
                        }
                    }
                    None => panic!("undecodable load payload {:?}", d.payload),
                },
                Event::GroupMembership(m) if m.group == group => {
                    group_size.store(m.members.len() as u64, AtomicOrdering::SeqCst);
                    continue;
                }
                Event::Quorum(q) => Entry::Config {
                    ring: q.ring_id,
                    members: q.members,
                    quorate: q.quorate,
                    sent: sent.load(AtomicOrdering::SeqCst),
                },
                Event::MulticastRefused(r)
                    if r.error == ErrorReply::NoQuorum
                        && in_flight.is_some_and(|(_, id)| id == r.request_id) =>
                {
                    // The quorum went before the client read of it: not sent after all.
                    sent.fetch_sub(1, AtomicOrdering::SeqCst);
                    blocked.fetch_add(1, AtomicOrdering::SeqCst);
                    in_flight = None;
                    next_send = Instant::now() + RETRY_INTERVAL;
                    continue;
                }
                Event::MulticastRefused(r) => panic!("the daemon refused a load message: {r:?}"),
                _ => continue,
            };
            log.lock().expect("log lock").push(entry);
        }
    }
    Ok(())
}

/// Load clients on a set of nodes.
pub struct Load {
    pub workers: Vec<Worker>,
    /// Logs of clients that already finished (their node was killed or restarted).
    pub finished: Vec<(u32, u32, Vec<Entry>)>,
}

impl Load {
    /// A client on each of `nodes`, incarnation 0; they all start sending once each sees all
    /// of them in the group, so every log covers every message.
    pub fn start(nodes: &[u32], sock: impl Fn(u32) -> PathBuf) -> Load {
        let workers: Vec<Worker> = nodes
            .iter()
            .map(|&n| Worker::start(n, 0, sock(n), false))
            .collect();
        let deadline = Instant::now() + JOIN_WITHIN;
        for w in &workers {
            while w.group_size() < workers.len() as u64 {
                assert!(
                    Instant::now() < deadline,
                    "node {}'s client sees {} of {} clients in the group",
                    w.node,
                    w.group_size(),
                    workers.len()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for w in &workers {
            w.resume();
        }
        Load {
            workers,
            finished: Vec::new(),
        }
    }

    /// The worker of `node`.
    pub fn worker(&self, node: u32) -> &Worker {
        self.workers
            .iter()
            .find(|w| w.node == node)
            .expect("worker of node")
    }

    /// Ends `node`'s client and keeps its log.
    pub fn retire(&mut self, node: u32) {
        let pos = self
            .workers
            .iter()
            .position(|w| w.node == node)
            .expect("worker of node");
        let w = self.workers.remove(pos);
        let inc = w.incarnation;
        let (log, _) = w.finish();
        self.finished.push((node, inc, log));
    }

    /// A new client on `node` with the next incarnation.
    pub fn restart(&mut self, node: u32, sock: PathBuf) {
        let inc = self
            .finished
            .iter()
            .filter(|f| f.0 == node)
            .map(|f| f.1 + 1)
            .max()
            .unwrap_or(0);
        self.workers.push(Worker::start(node, inc, sock, true));
    }

    /// Stops sending everywhere and waits until every live client delivered all it sent
    /// (self-delivery complete), then stops them all; returns every log.
    pub fn drain(self, within: Duration) -> Vec<(u32, u32, Vec<Entry>)> {
        for w in &self.workers {
            w.pause();
        }
        let deadline = Instant::now() + within;
        for w in &self.workers {
            while w.self_delivered() < w.sent() {
                assert!(
                    Instant::now() < deadline,
                    "node {} delivered {} of its {} messages",
                    w.node,
                    w.self_delivered(),
                    w.sent()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Let deliveries of the others' last messages arrive too: wait for the logs to settle.
        let total = |ws: &[Worker]| {
            ws.iter()
                .map(|w| w.log.lock().expect("log lock").len())
                .sum::<usize>()
        };
        let mut last = total(&self.workers);
        loop {
            std::thread::sleep(SETTLE);
            let now = total(&self.workers);
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        let mut logs = self.finished;
        for w in self.workers {
            let (node, inc) = (w.node, w.incarnation);
            let (log, result) = w.finish();
            assert!(result.is_ok(), "client on node {node} failed: {result:?}");
            logs.push((node, inc, log));
        }
        logs
    }
}
