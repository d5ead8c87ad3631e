//! Quorum across the ring: votequorum on top of the Totem SRP core, on a seeded simulated network
//! with partitions, with and without a quorum device (the qnetd server logic and one qdevice
//! client per node, linked by in-memory TCP-like streams that a cut holds back).
//!
//! Checker, after every event: any two nodes that consider themselves quorate either share their
//! ring or their rings' member sets intersect — two disjoint partitions are never quorate at the
//! same instant. After the fault phase the network heals and every node must be quorate in one
//! ring (liveness). A failing seed prints its number; `SIM_QUORUM_SEEDS=n` runs more.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use totem_core::qdevice::wire::{DecisionAlgorithm, RingId as QRingId, TieBreaker};
use totem_core::qdevice::{
    ClientAction, ClientConfig, ClusterView, ConnId, Phase, QdeviceClient, QnetdServer,
    ServerAction, ServerConfig,
};
use totem_core::quorum::{self, Action as QAction, QdeviceConfig, QuorumConfig, Votequorum};
use totem_core::time::MonoTime;
use totem_core::totem::{Action, ConfKind, Dest, Order, Srp, SubmitError, TotemConfig};
use totem_core::NodeId;

const NS_PER_MS: u64 = 1_000_000;
/// Seeds per configuration in CI (each seed simulates about two minutes).
const SEEDS_DEFAULT: u64 = 100;
/// Settle time after healing before liveness is judged: Totem merge + qnetd DPD + device polls.
const LIVENESS_MS: u64 = 90_000;
/// Wait before a qdevice client reconnects after its connection ended.
const RECONNECT_MS: u64 = 2_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

struct Link {
    client: QdeviceClient,
    conn: ConnId,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    server_closed: bool,
}

struct Node {
    id: NodeId,
    srp: Srp,
    vq: Votequorum,
    pending: VecDeque<Vec<u8>>,
    ring: (quorum::RingId, Vec<NodeId>),
    link: Option<Link>,
    reconnect_at: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Packet {
    at: u64,
    seq: u64,
    from: NodeId,
    to: NodeId,
    frame: Vec<u8>,
}

struct World {
    now: u64,
    rng: Rng,
    nodes: Vec<Node>,
    packets: BinaryHeap<Reverse<Packet>>,
    packet_seq: u64,
    group: BTreeMap<NodeId, u32>,
    loss_per_mille: u64,
    server: Option<QnetdServer>,
    qnetd_reachable: BTreeSet<NodeId>,
    algorithm: DecisionAlgorithm,
    node_count: u32,
}

fn trace_on() -> bool {
    std::env::var_os("SIM_QUORUM_TRACE").is_some()
}

fn qring(r: quorum::RingId) -> QRingId {
    QRingId {
        node_id: r.rep,
        seq: r.seq,
    }
}

impl World {
    fn new(seed: u64, node_count: u32, with_qdevice: bool) -> World {
        let ids: Vec<NodeId> = (1..=node_count).collect();
        let (algorithm, device_votes) = totem_core::qdevice::recommended_device(node_count);
        let mut nodes = Vec::new();
        for id in &ids {
            let srp = Srp::new(
                TotemConfig::for_nodes(&ids),
                *id,
                seed ^ u64::from(*id),
                0,
                MonoTime::ZERO,
            )
            .expect("totem config");
            let mut cfg = QuorumConfig::simple(*id, node_count);
            if with_qdevice {
                cfg.qdevice = Some(QdeviceConfig {
                    votes: Some(device_votes),
                    ..QdeviceConfig::default()
                });
            }
            let mut vq = Votequorum::new(&cfg).expect("quorum config");
            if with_qdevice {
                vq.qdevice_register("Qdevice").expect("register");
            }
            nodes.push(Node {
                id: *id,
                srp,
                vq,
                pending: VecDeque::new(),
                ring: (quorum::RingId { rep: *id, seq: 0 }, vec![*id]),
                link: None,
                reconnect_at: 0,
            });
        }
        World {
            now: 0,
            rng: Rng(seed),
            nodes,
            packets: BinaryHeap::new(),
            packet_seq: 0,
            group: ids.iter().map(|id| (*id, 0)).collect(),
            loss_per_mille: 0,
            server: with_qdevice.then(|| QnetdServer::new(ServerConfig::default())),
            qnetd_reachable: ids.iter().copied().collect(),
            algorithm,
            node_count,
        }
    }

    fn mono(&self) -> MonoTime {
        MonoTime(self.now)
    }

    fn next_event(&self) -> Option<u64> {
        let mut next: Option<u64> = self.packets.peek().map(|p| p.0.at);
        let mut consider = |t: Option<MonoTime>| {
            if let Some(t) = t {
                next = Some(next.map_or(t.0, |n| n.min(t.0)));
            }
        };
        for n in &self.nodes {
            consider(n.srp.poll_timeout());
            consider(n.vq.poll_timeout());
            if let Some(link) = &n.link {
                consider(link.client.poll_timeout());
            } else if self.server.is_some() && self.qnetd_reachable.contains(&n.id) {
                consider(Some(MonoTime(n.reconnect_at.max(self.now))));
            }
        }
        if let Some(server) = &self.server {
            consider(server.poll_timeout());
        }
        next
    }

    /// Run until `end_ns`, checking the invariant after every event.
    fn run_until(&mut self, end_ns: u64) -> Result<(), String> {
        let mut same_instant = 0u32;
        while let Some(at) = self.next_event().filter(|t| *t <= end_ns) {
            if at <= self.now {
                same_instant += 1;
                if same_instant > 10_000 {
                    return Err(format!("no progress at {} ms", self.now / NS_PER_MS));
                }
            } else {
                same_instant = 0;
            }
            self.now = self.now.max(at);
            self.fire_due();
            self.settle()?;
            self.check_safety()?;
        }
        self.now = end_ns;
        Ok(())
    }

    fn fire_due(&mut self) {
        let now = self.mono();
        while self.packets.peek().is_some_and(|p| p.0.at <= self.now) {
            let Some(Reverse(p)) = self.packets.pop() else {
                break;
            };
            if self.group[&p.from] != self.group[&p.to] {
                continue; // partitioned at arrival
            }
            let node = &mut self.nodes[(p.to - 1) as usize];
            node.srp
                .handle_frame(now, p.from, &p.frame)
                .expect("frames from cores decode");
        }
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            if n.srp.poll_timeout().is_some_and(|t| t <= now) {
                n.srp.handle_timeout(now);
            }
            if n.vq.poll_timeout().is_some_and(|t| t <= now) {
                n.vq.handle_timeout(now);
            }
            if let Some(link) = n.link.as_mut() {
                if link.client.poll_timeout().is_some_and(|t| t <= now) {
                    link.client.handle_timeout(now);
                }
            }
        }
        if let Some(server) = self.server.as_mut() {
            if server.poll_timeout().is_some_and(|t| t <= now) {
                server.handle_timeout(now);
            }
        }
        self.reconnect_due();
    }

    fn reconnect_due(&mut self) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        for n in &mut self.nodes {
            if n.link.is_none()
                && n.reconnect_at <= self.now
                && self.qnetd_reachable.contains(&n.id)
            {
                let conn = server.accept(MonoTime(self.now));
                let mut cfg = ClientConfig::new("sim", n.id);
                cfg.algorithm = self.algorithm;
                cfg.tie_breaker = TieBreaker::LOWEST;
                let view = ClusterView {
                    config_nodes: (1..=self.node_count).collect(),
                    config_version: None,
                    ring_id: qring(n.ring.0),
                    members: n.ring.1.clone(),
                    quorate: n.vq.is_quorate(),
                };
                n.link = Some(Link {
                    client: QdeviceClient::new(cfg, view),
                    conn,
                    to_server: VecDeque::new(),
                    to_client: VecDeque::new(),
                    server_closed: false,
                });
            }
        }
    }

    /// Move every queued action until nothing moves.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.drain_totem(i);
                moved |= self.drain_votequorum(i);
                moved |= self.drain_client(i);
            }
            moved |= self.drain_server();
            if !moved {
                return Ok(());
            }
        }
        Err("actions never settled".into())
    }

    fn drain_totem(&mut self, i: usize) -> bool {
        let now = self.mono();
        let mut moved = false;
        while let Some(action) = self.nodes[i].srp.poll_action() {
            moved = true;
            let id = self.nodes[i].id;
            match action {
                Action::Send { to, frame } => {
                    let targets: Vec<NodeId> = match to {
                        Dest::Node(peer) => vec![peer],
                        Dest::All => (1..=self.node_count).filter(|p| *p != id).collect(),
                    };
                    for to in targets {
                        if self.rng.chance(self.loss_per_mille) {
                            continue;
                        }
                        let delay = 100_000 + self.rng.below(2 * NS_PER_MS);
                        self.packet_seq += 1;
                        self.packets.push(Reverse(Packet {
                            at: self.now + delay,
                            seq: self.packet_seq,
                            from: id,
                            to,
                            frame: frame.clone(),
                        }));
                    }
                }
                Action::Deliver(d) => {
                    let node = &mut self.nodes[i];
                    node.vq
                        .handle_bytes(d.sender, &d.payload)
                        .expect("quorum messages decode");
                }
                Action::Conf(c) if c.kind == ConfKind::Regular => {
                    let node = &mut self.nodes[i];
                    let ring = quorum::RingId {
                        rep: c.ring_id.rep,
                        seq: c.ring_id.seq,
                    };
                    node.ring = (ring, c.members.clone());
                    node.vq.handle_membership(now, ring, &c.members);
                    if let Some(link) = node.link.as_mut() {
                        link.client.set_membership(now, qring(ring), &c.members);
                    }
                }
                Action::Conf(_) | Action::PersistRingSeq(_) | Action::SubmitReady => {}
            }
        }
        // Submit what votequorum queued while the submit queue was full.
        let node = &mut self.nodes[i];
        while let Some(bytes) = node.pending.front() {
            match node.srp.submit(now, bytes, Order::Agreed) {
                Ok(()) => {
                    node.pending.pop_front();
                    moved = true;
                }
                Err(SubmitError::QueueFull) => break,
                Err(e) => panic!("submit refused: {e}"),
            }
        }
        moved
    }

    fn drain_votequorum(&mut self, i: usize) -> bool {
        let mut moved = false;
        let node = &mut self.nodes[i];
        while let Some(action) = node.vq.poll_action() {
            moved = true;
            match action {
                QAction::Multicast(msg) => node.pending.push_back(msg.to_bytes()),
                QAction::QuorumChanged {
                    quorate, ring_id, ..
                } => {
                    if trace_on() {
                        let ms = self.now / NS_PER_MS;
                        eprintln!("{ms} ms n{}: quorate {quorate} ring {ring_id}", node.id);
                    }
                    if let Some(link) = node.link.as_mut() {
                        link.client.set_quorum(quorate);
                    }
                }
            }
        }
        moved
    }

    fn drain_client(&mut self, i: usize) -> bool {
        let now = self.mono();
        let reachable = self.qnetd_reachable.contains(&self.nodes[i].id);
        let node = &mut self.nodes[i];
        let Some(link) = node.link.as_mut() else {
            return false;
        };
        let mut moved = false;
        let mut disconnect = false;
        while let Some(action) = link.client.poll_action() {
            moved = true;
            match action {
                ClientAction::Send(bytes) => link.to_server.push_back(bytes),
                ClientAction::Poll { ring_id, cast_vote } => {
                    let ring = quorum::RingId {
                        rep: ring_id.node_id,
                        seq: ring_id.seq,
                    };
                    if trace_on() {
                        let ms = self.now / NS_PER_MS;
                        eprintln!(
                            "{ms} ms n{}: device poll ring {ring} cast {cast_vote}",
                            node.id
                        );
                    }
                    let _ = node.vq.qdevice_poll(now, ring, cast_vote); // stale rings are refused
                }
                ClientAction::Disconnect(_) => disconnect = true,
            }
        }
        if reachable {
            while let Some(bytes) = link.to_client.pop_front() {
                moved = true;
                link.client.handle_bytes(now, &bytes);
            }
            if link.server_closed && link.client.phase() != Phase::Closed {
                // EOF: the client withdraws its vote like on any disconnect.
                let _ = node.vq.qdevice_poll(now, node.ring.0, false);
                disconnect = true;
            }
        }
        if disconnect {
            let conn = link.conn;
            node.link = None;
            node.reconnect_at = self.now + RECONNECT_MS * NS_PER_MS;
            if reachable {
                if let Some(server) = self.server.as_mut() {
                    server.handle_closed(conn);
                }
            }
            return true;
        }
        if reachable {
            if let Some(server) = self.server.as_mut() {
                while let Some(bytes) = link.to_server.pop_front() {
                    moved = true;
                    server.handle_bytes(now, link.conn, &bytes);
                }
            }
        }
        moved
    }

    fn drain_server(&mut self) -> bool {
        let Some(server) = self.server.as_mut() else {
            return false;
        };
        let mut moved = false;
        while let Some(action) = server.poll_action() {
            moved = true;
            match action {
                ServerAction::Send(conn, bytes) => {
                    if let Some(link) = self
                        .nodes
                        .iter_mut()
                        .filter_map(|n| n.link.as_mut())
                        .find(|l| l.conn == conn)
                    {
                        link.to_client.push_back(bytes);
                    }
                }
                ServerAction::Close(conn) => {
                    if let Some(link) = self
                        .nodes
                        .iter_mut()
                        .filter_map(|n| n.link.as_mut())
                        .find(|l| l.conn == conn)
                    {
                        link.server_closed = true;
                    }
                }
                ServerAction::Event(e) => {
                    if trace_on() {
                        eprintln!("{} ms qnetd: {e:?}", self.now / NS_PER_MS);
                    }
                }
            }
        }
        moved
    }

    fn check_safety(&self) -> Result<(), String> {
        let quorate: Vec<&Node> = self.nodes.iter().filter(|n| n.vq.is_quorate()).collect();
        for (x, a) in quorate.iter().enumerate() {
            for b in &quorate[x + 1..] {
                if a.ring.0 == b.ring.0 {
                    continue;
                }
                if !a.ring.1.iter().any(|m| b.ring.1.contains(m)) {
                    return Err(format!(
                        "split brain at {} ms: node {} quorate in {} {:?} and node {} quorate in {} {:?}",
                        self.now / NS_PER_MS,
                        a.id,
                        a.ring.0,
                        a.ring.1,
                        b.id,
                        b.ring.0,
                        b.ring.1
                    ));
                }
            }
        }
        Ok(())
    }

    /// A random fault: split the nodes into up to three groups, cut some from qnetd, change loss.
    fn random_fault(&mut self) {
        let groups = 1 + self.rng.below(3) as u32;
        let ids: Vec<NodeId> = (1..=self.node_count).collect();
        for id in &ids {
            let g = self.rng.below(u64::from(groups)) as u32;
            self.group.insert(*id, g);
        }
        self.qnetd_reachable = ids
            .iter()
            .copied()
            .filter(|_| !self.rng.chance(250))
            .collect();
        self.loss_per_mille = self.rng.below(3) * 5;
        if trace_on() {
            eprintln!(
                "{} ms FAULT groups {:?} qnetd reachable {:?} loss {}/1000",
                self.now / NS_PER_MS,
                self.group,
                self.qnetd_reachable,
                self.loss_per_mille
            );
        }
    }

    fn heal(&mut self) {
        for g in self.group.values_mut() {
            *g = 0;
        }
        self.qnetd_reachable = (1..=self.node_count).collect();
        self.loss_per_mille = 0;
    }

    fn all_quorate_in_one_ring(&self) -> bool {
        let first = self.nodes[0].ring.0;
        self.nodes
            .iter()
            .all(|n| n.vq.is_quorate() && n.ring.0 == first && n.ring.1.len() == self.nodes.len())
    }
}

/// One seed: start, let the ring form, then 6 faults of 3..20 s each, heal, check liveness.
fn run_seed(seed: u64, with_qdevice: bool) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let node_count = 2 + rng.below(4) as u32; // 2..=5
    let mut w = World::new(seed, node_count, with_qdevice);
    w.reconnect_due();
    w.settle()?;
    w.run_until(20_000 * NS_PER_MS)?;
    for _ in 0..6 {
        w.random_fault();
        let span = (3_000 + rng.below(17_000)) * NS_PER_MS;
        w.run_until(w.now + span)?;
    }
    w.heal();
    let end = w.now + LIVENESS_MS * NS_PER_MS;
    w.run_until(end)?;
    if !w.all_quorate_in_one_ring() {
        let states: Vec<String> = w
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "n{} quorate={} ring={} {:?}",
                    n.id,
                    n.vq.is_quorate(),
                    n.ring.0,
                    n.ring.1
                )
            })
            .collect();
        return Err(format!(
            "{node_count} nodes not all quorate in one ring after healing: {states:?}"
        ));
    }
    Ok(())
}

fn seed_list() -> Vec<u64> {
    if let Some(one) = std::env::var("SIM_QUORUM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    (1..=seeds()).collect()
}

fn seeds() -> u64 {
    std::env::var("SIM_QUORUM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS_DEFAULT)
}

fn run_many(with_qdevice: bool) {
    let list = seed_list();
    let count = list.len();
    let mut failures = Vec::new();
    for seed in list {
        if let Err(e) = run_seed(seed, with_qdevice) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    println!(
        "sim_quorum (qdevice: {with_qdevice}): {count} seeds, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_two_disjoint_partitions_quorate_without_qdevice() {
    run_many(false);
}

#[test]
fn no_two_disjoint_partitions_quorate_with_qdevice() {
    run_many(true);
}
